#include "core/membership.h"

#include <algorithm>
#include <string>
#include <tuple>

#include "core/context.h"
#include "core/hash.h"

namespace kv {

bool newer(const Member& a, const Member& b) {
  return std::tie(a.generation, a.epoch) > std::tie(b.generation, b.epoch);
}

Membership::Membership(Context& ctx, std::uint64_t now_ms)
    : ctx_(ctx), next_round_ms_(now_ms) {
  for (NodeId id : ctx.config.members) members_[id] = Member{.id = id};
  Member& self = members_[ctx.config.self];
  self.generation = ctx.config.request_id_base;
  self.epoch = 1;  // past the entries made from the configuration, even at generation 0
  self.peer_addr = ctx.config.peer_addr.substr(0, member_addr_bytes_max);
  self.client_addr = ctx.config.client_addr.substr(0, member_addr_bytes_max);
  for (NodeId id : ctx.config.members) {
    if (id != ctx.config.self) was_up_[id] = true;
  }
  rehash();
}

void Membership::rehash() {
  std::string text;
  for (const auto& [id, m] : members_) {
    text += std::to_string(id) + "/" + std::to_string(static_cast<int>(m.state)) + "/" +
            std::to_string(m.generation) + "/" + std::to_string(m.epoch) + "/" + m.peer_addr + "/" +
            m.client_addr + ";";
  }
  hash_ = hash64(text);
}

std::optional<std::uint64_t> Membership::next_round_ms() const {
  if (ctx_.config.heartbeat_interval_ms == 0 || members_.size() < 2) return std::nullopt;
  return next_round_ms_;
}

void Membership::tick(std::uint64_t now_ms) {
  for (auto& [peer, was_up] : was_up_) {
    const bool up = ctx_.peer_up(peer);
    if (was_up && !up) ++ctx_.stats.peers_marked_down;
    was_up = up;
  }
  if (!next_round_ms() || now_ms < next_round_ms_) return;
  next_round_ms_ = now_ms + ctx_.config.heartbeat_interval_ms;
  const std::uint64_t generation = members_.at(ctx_.config.self).generation;
  for (const auto& [id, m] : members_) {
    if (id == ctx_.config.self || m.state == MemberState::left) continue;
    ctx_.send(id, Heartbeat{generation, hash_});
  }
}

void Membership::on_heartbeat(NodeId from, const Heartbeat& m, std::uint64_t now_ms) {
  ctx_.fd.heard(from, now_ms);
  if (m.table == hash_) return;
  auto& sent = gossip_sent_ms_[from];
  if (sent != 0 && now_ms < sent + ctx_.config.heartbeat_interval_ms) return;
  sent = std::max<std::uint64_t>(now_ms, 1);
  Gossip g;
  g.members.reserve(members_.size());
  for (const auto& [id, member] : members_) g.members.push_back(member);
  ++ctx_.stats.gossip_sent;
  ctx_.send(from, std::move(g));
}

void Membership::on_gossip(NodeId /*from*/, const Gossip& m) {
  for (const Member& e : m.members) {
    if (!members_.contains(e.id)) {
      ++ctx_.stats.gossip_refused;
      return;
    }
  }
  bool changed = false;
  for (const Member& e : m.members) {
    if (e.id == ctx_.config.self) continue;
    Member& held = members_.at(e.id);
    if (!newer(e, held)) continue;
    held = e;
    changed = true;
    ++ctx_.stats.gossip_entries_applied;
  }
  if (changed) rehash();
}

std::string Membership::check_invariants() const {
  for (const auto& [id, m] : members_) {
    if (m.id != id) return "members entry filed under n" + std::to_string(id) + " is for n" + std::to_string(m.id);
    if (m.peer_addr.size() > member_addr_bytes_max || m.client_addr.size() > member_addr_bytes_max) {
      return "n" + std::to_string(id) + "'s announced address is over member_addr_bytes_max";
    }
  }
  if (members_.size() != ctx_.config.members.size()) return "the members table lost or gained a member";
  if (members_.at(ctx_.config.self).generation != ctx_.config.request_id_base) {
    return "this node's own entry is not at its generation";
  }
  return {};
}

}  // namespace kv
