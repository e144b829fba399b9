// The replica state machine: both roles of a node, with no I/O.
//
// Coordinator: any node takes a client's get, put or delete for any key and drives it against
// the key's preference list (N replicas from the ring):
//   get    ask N, answer with the newest of the first R replies, repair every stale replier;
//   put    first ask N for their current version and wait for a majority, so that the stamp is
//   del    past any write acknowledged by a majority whatever the clocks say (C5); then send the
//          stamped record to N and answer after W acknowledgements. Replicas that never
//          acknowledged get a hint, kept durably here and delivered when they answer again.
// Replica: merge records into the versioned store (newest wins), keep hints for others when
// acting as a fallback (sloppy mode), answer reads.
//
// Inputs are on_client, on_message, on_tick (and on_bridge_reply, for the bridges). Each input may
// produce outputs, collected into one Ready batch that take_ready() hands to the driver. The driver
// must make the batch's persist entries durable before sending anything from it (see Ready).
// Time is the node's own clock in ms, handed in with every input: it may be skewed and drift.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "core/messages.h"
#include "core/ring.h"
#include "core/store.h"
#include "core/version.h"

namespace kv {

struct ReplicaConfig {
  NodeId self = 0;                 // node ids are >= 1
  std::vector<NodeId> members;     // every node of the cluster, self included
  std::uint32_t vnodes_per_node = ring_vnodes_per_node_default;
  std::uint32_t replicas = 3;      // N
  std::uint32_t read_quorum = 2;   // R default
  std::uint32_t write_quorum = 2;  // W default
  bool sloppy_quorum = false;      // fallback nodes count toward W (trades C4/C5 for availability)

  std::uint64_t request_timeout_ms = 2000;  // a client request's deadline
  std::uint64_t retry_interval_ms = 150;    // resend to replicas that have not answered
  std::uint64_t sloppy_after_ms = 300;      // sloppy mode: when fallbacks are tried
  std::uint64_t hint_interval_ms = 400;     // how often held hints are offered to their targets
  std::uint64_t tick_interval_ms = 20;      // timer resolution while work is pending

  std::size_t key_bytes_max = 8 * 1024;
  std::size_t value_bytes_max = 1024 * 1024;
  std::size_t requests_in_flight_max = 10000;
  std::size_t hints_max = 100000;
  std::size_t hint_deliveries_per_interval_max = 256;

  // Request ids are request_id_base + a counter. The driver gives each incarnation of a node a
  // different base (restart count, boot time), so that a reply to a request sent before a crash
  // is never taken for a reply to a new request.
  std::uint64_t request_id_base = 0;
};

// Counters of what the replica did; the simulator reports how often each rare path was taken.
struct ReplicaStats {
  std::uint64_t gets = 0, puts = 0, dels = 0;
  std::uint64_t read_repairs_sent = 0;
  std::uint64_t records_applied = 0;
  std::uint64_t stale_writes_ignored = 0;   // a write older than what the store holds
  std::uint64_t quorum_unavailable = 0;
  std::uint64_t timeouts = 0;
  std::uint64_t retries_sent = 0;
  std::uint64_t stamps_past_seen = 0;       // C5: a replica's version was ahead of our clock
  std::uint64_t hints_stored = 0;
  std::uint64_t hints_delivered = 0;
  std::uint64_t hints_refused_full = 0;
  std::uint64_t sloppy_fallback_writes = 0;
  std::uint64_t overloaded = 0;
  std::uint64_t invalid = 0;
};

class Replica {
 public:
  // `state` is what recovery rebuilt from this node's disk (empty on first start).
  Replica(ReplicaConfig config, DurableState state, std::uint64_t now_ms);

  void on_client(const ClientRequest& request, std::uint64_t now_ms);
  void on_message(const Message& message, std::uint64_t now_ms);
  void on_tick(std::uint64_t now_ms);
  void on_bridge_reply(const BridgeReply& reply, std::uint64_t now_ms);

  // The outputs produced since the last call. Carry them out in order (see Ready).
  Ready take_ready();

  // Empty if every internal invariant holds, else a description of the first broken one.
  // Cheap enough to call after every step of a simulation (linear in the number of keys and
  // requests, both small there); a driver that finds one broken must stop the node.
  std::string check_invariants() const;

  const DurableState& state() const { return state_; }
  const ReplicaStats& stats() const { return stats_; }
  const ReplicaConfig& config() const { return config_; }
  const Ring& ring() const { return ring_; }
  std::size_t requests_in_flight() const { return pending_.size(); }

 private:
  enum class Phase : std::uint8_t { read, discover, write };

  struct Target {
    NodeId node = 0;
    NodeId hint_for = 0;  // a fallback standing in for this preference-list node
    bool answered = false;
    std::optional<Record> record;  // read/discover: what it answered
    Version repaired;              // read: the newest version sent to it as a repair
  };

  struct Pending {
    std::uint64_t client_id = 0;
    OpType op = OpType::get;
    Phase phase = Phase::read;
    std::string key;
    std::string value;
    std::uint32_t quorum = 0;  // R for a get, W for a put/del
    std::vector<Target> targets;
    std::optional<Record> best;  // read: the newest record seen; write: the stamped record
    std::uint64_t started_ms = 0, phase_started_ms = 0, deadline_ms = 0, next_retry_ms = 0;
    bool replied = false;
    bool sloppy_tried = false;
  };

  // Coordinator
  void start_read(std::uint64_t req, Pending& p);
  void start_write(std::uint64_t req, Pending& p, std::uint64_t now_ms);
  void on_read_resp(NodeId from, const ReadResp& m, std::uint64_t now_ms);
  void on_write_ack(NodeId from, const WriteAck& m);
  void repair_stale(std::uint64_t req, Pending& p);
  void tick_request(std::uint64_t req, Pending& p, std::uint64_t now_ms);
  void try_fallbacks(std::uint64_t req, Pending& p);
  bool unheard(const Pending& p, const Target& t) const;
  bool finish_if_done(std::uint64_t req);
  void expire(std::uint64_t req, Pending& p);
  void reply_error(std::uint64_t client_id, Errc e, std::string detail);
  std::size_t answered(const Pending& p) const;
  std::size_t majority() const { return config_.replicas / 2 + 1; }

  // Replica
  void on_read_req(NodeId from, const ReadReq& m);
  void on_write_req(NodeId from, const WriteReq& m);
  bool store_hint(NodeId target, const std::string& key, const Record& r);
  void deliver_hints(std::uint64_t now_ms);

  void send(NodeId to, MessageBody body);
  void dispatch(const Message& message, std::uint64_t now_ms);
  void drain_local(std::uint64_t now_ms);

  ReplicaConfig config_;
  Ring ring_;
  DurableState state_;
  Hlc hlc_;
  ReplicaStats stats_;
  std::uint64_t next_req_;
  std::uint64_t next_hint_round_ms_ = 0;
  HintStore::HintKey hint_cursor_;            // where the next hint round starts
  std::uint64_t now_ms_ = 0;                  // the clock at the latest input
  std::map<std::uint64_t, Pending> pending_;  // ordered: ticks visit requests in id order
  std::deque<Message> local_;                 // messages to self, handled within the same input
  Ready ready_;
};

}  // namespace kv
