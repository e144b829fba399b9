#include "core/membership.h"

#include <algorithm>
#include <string>
#include <tuple>

#include "core/anti_entropy.h"
#include "core/context.h"
#include "core/hash.h"

namespace kv {
namespace {

// Removal outranks everything its member could write for itself: a node taken out stays out,
// whatever generation it comes back with.
int rank(MemberState s) {
  return s == MemberState::joining ? 0 : s == MemberState::normal ? 1 : s == MemberState::leaving ? 2 : 3;
}

}  // namespace

bool newer(const Member& a, const Member& b) {
  return std::tuple(rank(a.state), a.moved, a.generation, a.epoch) >
         std::tuple(rank(b.state), b.moved, b.generation, b.epoch);
}

Membership::Membership(Context& ctx, AntiEntropy& ae, std::uint64_t now_ms)
    : ctx_(ctx), ae_(ae), next_round_ms_(now_ms) {
  for (NodeId id : ctx.config.members) members_[id] = Member{.id = id};
  // What the log kept of the table: a change this node took part in survives its restart.
  for (const Member& m : ctx.state.members) {
    auto it = members_.find(m.id);
    if (it != members_.end() && newer(m, it->second)) it->second = m;
  }
  Member& self = members_[ctx.config.self];
  if (rank(self.state) <= rank(MemberState::normal)) {
    self.generation = ctx.config.request_id_base;
    self.epoch = 1;  // past the entries made from the configuration, even at generation 0
    self.peer_addr = ctx.config.peer_addr.substr(0, member_addr_bytes_max);
    self.client_addr = ctx.config.client_addr.substr(0, member_addr_bytes_max);
  }
  for (NodeId id : ctx.config.members) {
    if (id != ctx.config.self) was_up_[id] = true;
  }
  apply_view();
}

std::uint64_t Membership::view_of(const std::map<NodeId, Member>& members) {
  std::string text;
  for (const auto& [id, m] : members) {
    text += std::to_string(id) + "/" + std::to_string(static_cast<int>(m.state)) + (m.moved ? "m;" : ";");
  }
  return hash64(text);
}

void Membership::rehash() {
  std::string text;
  for (const auto& [id, m] : members_) {
    text += std::to_string(id) + "/" + std::to_string(static_cast<int>(m.state)) + "/" +
            std::to_string(m.generation) + "/" + std::to_string(m.epoch) + "/" + m.peer_addr + "/" +
            m.client_addr + "/" + std::to_string(m.moved) + "/" + std::to_string(m.ring_seen) + "/" +
            std::to_string(m.streamed) + ";";
  }
  hash_ = hash64(text);
}

bool Membership::removed() const {
  return rank(members_.at(ctx_.config.self).state) > rank(MemberState::normal);
}

// The ring view changed (or this is the start): rings, anti-entropy and hints follow it, the log
// keeps the table, and this node says it has applied the view.
void Membership::apply_view() {
  const std::uint64_t view = view_of(members_);
  if (view != view_ || !ctx_.ring.node_count()) {
    const bool first = view_ == 0;
    view_ = view;
    ctx_.set_rings(members_);
    if (!first || ctx_.changing || ctx_.ring.node_count() != ctx_.config.members.size()) ae_.rebuild();
    // Hints for a member that left can never be delivered: anti-entropy repairs the copies.
    for (const auto& [id, m] : members_) {
      if (m.state != MemberState::left) continue;
      std::vector<std::pair<std::string, Version>> gone;
      for (const auto& [hint_key, record] : ctx_.state.hints.hints()) {
        if (hint_key.first == id) gone.emplace_back(hint_key.second, record.version);
      }
      for (const auto& [key, version] : gone) {
        ctx_.state.hints.remove_delivered(id, key, version);
        ctx_.ready.persist.push_back(WalHintDone{id, key, version});
      }
    }
    seen_all_ms_.reset();
    pull_since_.reset();
    if (!first) persist();
  }
  ctx_.self_removed = removed();
  Member& self = members_.at(ctx_.config.self);
  if (!removed() && self.ring_seen != view_) {
    self.ring_seen = view_;
    ++self.epoch;
  }
  rehash();
}

void Membership::persist() {
  WalMembers w;
  for (const auto& [id, m] : members_) w.members.push_back(m);
  ctx_.state.members = w.members;
  ctx_.ready.persist.push_back(std::move(w));
}

std::optional<std::uint64_t> Membership::next_round_ms() const {
  if (ctx_.config.heartbeat_interval_ms == 0 || members_.size() < 2) return std::nullopt;
  return next_round_ms_;
}

const Member* Membership::leaving() const {
  for (const auto& [id, m] : members_) {
    if (m.state == MemberState::leaving) return &m;
  }
  return nullptr;
}

// Every member other than the one leaving has applied this view, and this node has known so for
// two request timeouts: no request started under an older view can still be writing.
bool Membership::settled(std::uint64_t now_ms) {
  const Member* target = leaving();
  for (const auto& [id, m] : members_) {
    if (m.state == MemberState::left || (target && id == target->id)) continue;
    if (m.ring_seen != view_) {
      seen_all_ms_.reset();
      return false;
    }
  }
  if (!seen_all_ms_) seen_all_ms_ = now_ms;
  return now_ms >= *seen_all_ms_ + 2 * ctx_.config.request_timeout_ms;
}

// Drives a change under way, the same way on every node: whichever node sees a step's condition
// first writes the next entry of the member leaving, and every node that does writes the same.
void Membership::advance(std::uint64_t now_ms) {
  const Member* target = leaving();
  if (!target || removed() || !settled(now_ms)) return;
  Member next = *target;
  if (!target->moved) {
    // Step 1: writes reach both rings. Pull what the change gives this node, then say so.
    Member& self = members_.at(ctx_.config.self);
    if (!pull_since_) pull_since_ = ae_.exchanges_started();
    if (self.streamed != view_ && ae_.pulled(*pull_since_, target->id)) {
      self.streamed = view_;
      ++self.epoch;
      ++ctx_.stats.ranges_pulled;
      rehash();
    }
    for (const auto& [id, m] : members_) {
      if (m.state == MemberState::left || id == target->id) continue;
      if (m.streamed != view_) return;
    }
    next.moved = true;  // step 2: reads move to the ring without it
  } else {
    next.state = MemberState::left;  // step 3: it is out
    next.moved = false;
  }
  ++next.epoch;
  members_[next.id] = next;
  ++ctx_.stats.membership_steps;
  apply_view();
}

std::string Membership::remove(NodeId target) {
  const std::string name = "n" + std::to_string(target);
  auto it = members_.find(target);
  if (it == members_.end()) return name + " is not a member";
  if (target == ctx_.config.self) return "a node cannot remove itself";
  if (it->second.state == MemberState::left) return name + " has left already";
  if (const Member* under_way = leaving()) {
    return "n" + std::to_string(under_way->id) + " is being removed: one change at a time";
  }
  if (ctx_.config.heartbeat_interval_ms == 0 || ctx_.config.ae_interval_ms == 0) {
    return "removing a member needs heartbeats and anti-entropy on (it spreads by gossip and "
           "its ranges are copied by anti-entropy)";
  }
  if (ctx_.config.sloppy_quorum) return "not with sloppy quorums";
  if (ctx_.peer_up(target)) {
    return name + " is up: only a member the failure detector takes as down can be removed";
  }
  std::size_t staying = 0;
  for (const auto& [id, m] : members_) staying += m.state != MemberState::left && id != target;
  if (staying < ctx_.config.replicas) {
    return "removing " + name + " would leave " + std::to_string(staying) + " members, fewer than N=" +
           std::to_string(ctx_.config.replicas);
  }
  for (const auto& [id, m] : members_) {
    if (m.state != MemberState::left && id != target && id != ctx_.config.self && !ctx_.peer_up(id)) {
      return "n" + std::to_string(id) + " is down too: every other member must take part";
    }
  }
  Member next = it->second;
  next.state = MemberState::leaving;
  next.moved = false;
  ++next.epoch;
  it->second = next;
  ++ctx_.stats.membership_steps;
  apply_view();
  return {};
}

void Membership::tick(std::uint64_t now_ms) {
  for (auto& [peer, was_up] : was_up_) {
    const bool up = ctx_.peer_up(peer);
    if (was_up && !up) ++ctx_.stats.peers_marked_down;
    was_up = up;
  }
  advance(now_ms);
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

void Membership::on_gossip(NodeId /*from*/, const Gossip& m, std::uint64_t now_ms) {
  for (const Member& e : m.members) {
    if (!members_.contains(e.id)) {
      ++ctx_.stats.gossip_refused;
      return;
    }
  }
  std::map<NodeId, Member> merged = members_;
  std::size_t taken = 0;
  for (const Member& e : m.members) {
    Member& held = merged.at(e.id);
    // This node writes its own entry, unless another took it out: that it adopts.
    if (e.id == ctx_.config.self && rank(e.state) <= rank(MemberState::normal)) continue;
    if (!newer(e, held)) continue;
    held = e;
    ++taken;
  }
  if (taken == 0) return;
  // What no node of this build writes is refused whole: a joining member, two changes at once,
  // or a ring of fewer than N members.
  std::size_t changing = 0, staying = 0;
  for (const auto& [id, e] : merged) {
    if (e.state == MemberState::joining) changing += 2;
    changing += e.state == MemberState::leaving;
    staying += e.state == MemberState::normal;
  }
  if (changing > 1 || staying < ctx_.config.replicas) {
    ++ctx_.stats.gossip_refused;
    return;
  }
  members_ = std::move(merged);
  ctx_.stats.gossip_entries_applied += taken;
  apply_view();
  advance(now_ms);
}

std::string Membership::check_invariants() const {
  for (const auto& [id, m] : members_) {
    if (m.id != id) return "members entry filed under n" + std::to_string(id) + " is for n" + std::to_string(m.id);
    if (m.peer_addr.size() > member_addr_bytes_max || m.client_addr.size() > member_addr_bytes_max) {
      return "n" + std::to_string(id) + "'s announced address is over member_addr_bytes_max";
    }
  }
  if (members_.size() != ctx_.config.members.size()) return "the members table lost or gained a member";
  if (!removed() && members_.at(ctx_.config.self).generation != ctx_.config.request_id_base) {
    return "this node's own entry is not at its generation";
  }
  if (view_of(members_) != view_) return "the rings are not built from the members table";
  std::size_t changing = 0;
  for (const auto& [id, m] : members_) changing += m.state == MemberState::leaving || m.state == MemberState::joining;
  if (changing > 1) return "more than one member changing at once";
  return {};
}

}  // namespace kv
