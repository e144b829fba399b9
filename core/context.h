// What every role of one node's replication core shares (see replica.h): the configuration, the
// ring, the durable state and the clock, the counters, the id counter, and the batch of outputs
// the current input is building. The roles hold a reference to it; only the facade owns it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <map>
#include <string_view>
#include <vector>
#include <string>

#include "core/config.h"
#include "core/failure_detector.h"
#include "core/messages.h"
#include "core/ring.h"
#include "core/stats.h"
#include "core/store.h"
#include "core/version.h"

namespace kv {

// Where a key's requests go (membership.h): normally its preference list for both. While a
// member leaves (or joins), the write set is the union of its lists on the ring before and after
// the change, and a write needs its quorum plus `extra` answers from it, so that it has its
// quorum on both rings; reads go to the ring before the change until they move to the one after.
struct Placement {
  std::vector<NodeId> reads;
  std::vector<NodeId> writes;
  std::size_t extra = 0;
};

struct Context {
  // Checks the configuration (asserts), builds the ring, and sets the clock past everything
  // `state` holds, so that stamps are past all this node ever stored whatever its clock says.
  Context(ReplicaConfig config, DurableState state, std::uint64_t now_ms);

  ReplicaConfig config;
  // Every member not left (the ranges anti-entropy numbers, who may send this node messages);
  // the ring before the change under way and after it (both equal to `ring` when none is);
  // whether reads have moved to the ring after it. Set by membership (set_rings).
  Ring ring;
  Ring old_ring, new_ring;
  bool changing = false;
  bool reads_moved = false;
  bool self_removed = false;  // this node was taken out of the cluster: it coordinates nothing
  DurableState state;
  Hlc hlc;
  FailureDetector fd;         // fed by membership's heartbeats (membership.h)
  ReplicaStats stats;
  std::uint64_t next_id;      // ids of requests and bridge calls alike: request_id_base + 1, 2, ..
  std::uint64_t now_ms;       // the clock at the latest input
  Ready ready;                // the outputs of the inputs since the last take_ready
  std::deque<Message> local;  // messages to self, handled within the input that sent them

  std::uint64_t new_id() { return next_id++; }
  // Whether `id` was handed out by this incarnation.
  bool issued(std::uint64_t id) const { return id > config.request_id_base && id < next_id; }
  std::size_t majority() const { return config.replicas / 2 + 1; }
  bool bridges_on() const { return config.pg_mode != PgMode::off || config.legacy; }
  bool collects_tombstones() const { return config.collects_tombstones(); }
  // Whether the failure detector takes `node` as up now (this node always is).
  bool peer_up(NodeId node) const { return peer_up_at(node, now_ms); }
  bool peer_up_at(NodeId node, std::uint64_t at_ms) const { return node == config.self || fd.up(node, at_ms); }
  // At or before the clock's latest stamp: nothing this node holds may be ahead of its clock.
  bool not_after_clock(const Version& v) const {
    const Version& last = hlc.last();
    return v.physical_ms < last.physical_ms ||
           (v.physical_ms == last.physical_ms && v.counter <= last.counter);
  }

  // Rebuilds the three rings from a members table: old = normal and leaving members, new =
  // normal and joining ones; reads move once a leaving member is marked moved.
  void set_rings(const std::map<NodeId, Member>& members);
  Placement placement(std::string_view key) const;

  void send(NodeId to, MessageBody body);
  void reply(ClientReply reply) { ready.replies.push_back(std::move(reply)); }
  void reply_error(std::uint64_t client_id, Errc e, std::string detail);
};

}  // namespace kv
