#include "core/context.h"

#include <algorithm>
#include <cassert>
#include <utility>

namespace kv {

Context::Context(ReplicaConfig c, DurableState s, std::uint64_t now)
    : config(std::move(c)),
      ring(config.vnodes_per_node),
      old_ring(config.vnodes_per_node),
      new_ring(config.vnodes_per_node),
      state(std::move(s)),
      hlc(config.self),
      fd(config.heartbeat_interval_ms, config.fd_phi_threshold, now),
      next_id(config.request_id_base + 1),
      now_ms(now) {
  assert(config.self != 0);
  assert(config.replicas >= 1 && config.replicas <= config.members.size());
  assert(config.read_quorum >= 1 && config.read_quorum <= config.replicas);
  assert(config.write_quorum >= 1 && config.write_quorum <= config.replicas);
  // A request's retries must be over well before a tombstone they could undo is collected.
  assert(config.tombstone_grace_ms == 0 || config.tombstone_grace_ms >= 2 * config.request_timeout_ms);
  for (NodeId m : config.members) {
    ring.add_node(m);
    old_ring.add_node(m);
    new_ring.add_node(m);
  }
  assert(ring.contains(config.self));
  for (const Store::Entry* e : state.store.sorted()) hlc.observe(e->second.version);
  for (const auto& [hint_key, record] : state.hints.hints()) hlc.observe(record.version);
}

void Context::set_rings(const std::map<NodeId, Member>& members) {
  ring = old_ring = new_ring = Ring(config.vnodes_per_node);
  changing = reads_moved = false;
  for (const auto& [id, m] : members) {
    if (m.state == MemberState::left) continue;
    ring.add_node(id);
    if (m.state != MemberState::joining) old_ring.add_node(id);
    if (m.state != MemberState::leaving) new_ring.add_node(id);
    if (m.state != MemberState::normal) changing = true;
    if (m.state == MemberState::leaving && m.moved) reads_moved = true;
  }
}

Placement Context::placement(std::string_view key) const {
  Placement p;
  if (!changing) {
    p.reads = ring.preference_list(key, config.replicas);
    p.writes = p.reads;
    return p;
  }
  std::vector<NodeId> before = old_ring.preference_list(key, config.replicas);
  std::vector<NodeId> after = new_ring.preference_list(key, config.replicas);
  p.writes = before;
  for (NodeId n : after) {
    if (std::find(before.begin(), before.end(), n) == before.end()) p.writes.push_back(n);
  }
  // A write answered by q + extra of the union has at least q on each ring's list.
  p.extra = p.writes.size() - std::min(before.size(), after.size());
  p.reads = reads_moved ? std::move(after) : std::move(before);
  return p;
}

void Context::send(NodeId to, MessageBody body) {
  Message m{config.self, to, std::move(body)};
  if (to == config.self) {
    local.push_back(std::move(m));
  } else {
    ready.messages.push_back(std::move(m));
  }
}

void Context::reply_error(std::uint64_t client_id, Errc e, std::string detail) {
  if (e == Errc::invalid_argument) ++stats.invalid;
  reply(ClientReply{client_id, make_error_code(e), std::move(detail), {}, {}});
}

}  // namespace kv
