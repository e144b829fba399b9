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
// Inputs are distrusted: a table with an entry for a node that is not a member, or one that would
// make this node's table something no node of this build writes (a joining member, two changes
// at once, fewer than N members in the ring), is refused as a whole and counted; entries for
// this node are ignored (it is the author of its own) unless they take it out.
//
// Removing a dead member (remove(), `kvctl remove`), in three steps, each entry of the member
// leaving written by whichever node sees the step's condition first (every node that does writes
// the same entry, so no one node must survive to finish it):
//   1. leaving: writes go to the key's preference lists with and without it (a write needs its
//      quorum on both: Placement in context.h), reads still to the ring with it. Once every other
//      member has applied this view (ring_seen) and two request timeouts have passed since (no
//      request of an older view can still be writing), each node pulls the ranges it gains, by
//      anti-entropy, from every other replica they had, and says so (streamed);
//   2. moved: once every other member has pulled, reads move to the ring without it; and once
//      every member has applied that view, plus two request timeouts,
//   3. left: the ring is without it, and its hints are dropped.
// Every view a node applies is kept in its log (WalMembers), so a restart resumes where it was.
// An entry that takes a member out outranks anything that member writes for itself, so a node
// taken out stays out; one that learns it was taken out refuses clients.
// Joining a new node at runtime, and a live node leaving, build on the same steps and are not
// built yet.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "core/messages.h"

namespace kv {

struct Context;

// Whether entry `a` replaces entry `b` of the same member: by state (joining < normal < leaving <
// left), then moved, generation and epoch.
bool newer(const Member& a, const Member& b);

class AntiEntropy;

class Membership {
 public:
  // Starts from the configuration's members, updated by the table the log kept (ctx.state).
  Membership(Context& ctx, AntiEntropy& ae, std::uint64_t now_ms);

  // Sends the heartbeats when due, and notes which peers went down since the last tick.
  void tick(std::uint64_t now_ms);
  std::optional<std::uint64_t> next_round_ms() const;
  void on_heartbeat(NodeId from, const Heartbeat& m, std::uint64_t now_ms);
  void on_gossip(NodeId from, const Gossip& m, std::uint64_t now_ms);
  // Starts removing `target` (kvctl remove): empty, or why it is refused (not a member, up, a
  // change under way, fewer than N members would be left, another member down, ...).
  std::string remove(NodeId target);
  // Whether this node was taken out of the cluster.
  bool removed() const;

  const std::map<NodeId, Member>& members() const { return members_; }
  std::uint64_t table_hash() const { return hash_; }
  std::string check_invariants() const;

 private:
  static std::uint64_t view_of(const std::map<NodeId, Member>& members);
  void rehash();
  void apply_view();
  void persist();
  const Member* leaving() const;
  bool settled(std::uint64_t now_ms);
  void advance(std::uint64_t now_ms);

  Context& ctx_;
  AntiEntropy& ae_;
  std::uint64_t view_ = 0;                  // the hash of the ring view applied (view_of)
  std::optional<std::uint64_t> seen_all_ms_;  // since when every member has applied it
  std::optional<std::uint64_t> pull_since_;   // step 1: exchanges started before pulling began
  std::map<NodeId, Member> members_;
  std::uint64_t hash_ = 0;
  std::uint64_t next_round_ms_;
  std::map<NodeId, std::uint64_t> gossip_sent_ms_;  // when this node last sent its table, per peer
  std::map<NodeId, bool> was_up_;                   // each peer's state at the last tick
};

}  // namespace kv
