// Membership: who is in the cluster, in what state, and who is up, as every node converges on it.
//
// The members table. One entry per member (messages.h: Member): its id, its membership state
// (joining, normal, leaving, left), its generation (the process start that wrote the entry; it
// grows with every restart) and epoch (changes within one generation), and the addresses it
// announced. Each member is the only author of its own entry; an entry with a greater
// (generation, epoch) replaces a held one everywhere, so tables merge in any order and converge.
// A node starts with the members its configuration lists, all normal at generation and epoch 0,
// and its own entry at its generation and epoch 1; it learns the rest by gossip.
//
// Gossip. Every heartbeat_interval_ms a node sends every other member a Heartbeat with its
// generation and the hash of its table. A receiver whose table hashes otherwise answers with its
// whole table (Gossip), at most once per interval per peer; the sender of a heartbeat gets the
// receiver's table, and the receiver gets the sender's with the sender's answer to its own
// heartbeat, so two nodes that hear each other agree within about two intervals, and a change
// spreads to every node that hears the one that made it.
//
// Failure detection. The heartbeats feed a phi-accrual detector (failure_detector.h) per peer;
// every role asks Context::peer_up: the coordinator skips down replicas and fails at once what
// its quorum cannot reach without them, hint delivery and anti-entropy pass them over.
//
// Inputs are distrusted: a table with an entry for a node that is not a member is refused as a
// whole and counted; entries for this node are ignored (it is the author of its own).
//
// This stop builds the table and its gossip over a fixed set of members; joining and leaving
// members at runtime (the states other than normal) build on it.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "core/messages.h"

namespace kv {

struct Context;

// Whether entry `a` replaces entry `b` of the same member.
bool newer(const Member& a, const Member& b);

class Membership {
 public:
  Membership(Context& ctx, std::uint64_t now_ms);

  // Sends the heartbeats when due, and notes which peers went down since the last tick.
  void tick(std::uint64_t now_ms);
  std::optional<std::uint64_t> next_round_ms() const;
  void on_heartbeat(NodeId from, const Heartbeat& m, std::uint64_t now_ms);
  void on_gossip(NodeId from, const Gossip& m);

  const std::map<NodeId, Member>& members() const { return members_; }
  std::uint64_t table_hash() const { return hash_; }
  std::string check_invariants() const;

 private:
  void rehash();

  Context& ctx_;
  std::map<NodeId, Member> members_;
  std::uint64_t hash_ = 0;
  std::uint64_t next_round_ms_;
  std::map<NodeId, std::uint64_t> gossip_sent_ms_;  // when this node last sent its table, per peer
  std::map<NodeId, bool> was_up_;                   // each peer's state at the last tick
};

}  // namespace kv
