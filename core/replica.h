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
// Bridges (optional): with PostgreSQL on, the coordinator of a client write writes it to
// PostgreSQL, once (sync: the client is answered only after W replicas and PostgreSQL have it;
// async: through a bounded write-behind queue, coalesced per key and retried with backoff). In
// sync mode a write of a key the majority does not hold first looks the key up in PostgreSQL and
// stamps past the stored version, so a write after the whole cluster lost its disks is still the
// newest.
// A get whose quorum finds nothing (no value, no tombstone) resolves the miss: PostgreSQL first,
// then the legacy API; what is found is handed to the client and written to the replicas
// (hydration: at its stored version from PostgreSQL, at the zero version from the legacy API, so
// any client write wins, C7). Concurrent misses of one key share one resolution; a resolved miss
// is remembered (a not-found for legacy_negative_ttl_ms, a value for the reads already under way)
// and forgotten as soon as the key is written here; a circuit breaker stops calling a failing
// legacy API for a while, and meanwhile such reads fail with Errc::unavailable, never a false
// not-found.
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

enum class PgMode : std::uint8_t { off, sync, async };

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

  // Bridges.
  PgMode pg_mode = PgMode::off;
  std::size_t pg_queue_max = 10000;             // async: keys waiting to be written
  std::size_t pg_writes_in_flight_max = 64;     // async: write calls outstanding at once
  std::uint64_t pg_retry_initial_ms = 100;      // async: first retry after a failed write,
  std::uint64_t pg_retry_max_ms = 5000;         //   doubling up to this
  bool legacy = false;                          // read-through to the legacy API
  std::uint64_t legacy_negative_ttl_ms = 5000;  // how long a not-found is remembered
  std::uint32_t legacy_breaker_failures = 5;    // consecutive failures that open the breaker
  std::uint64_t legacy_breaker_open_ms = 5000;  // how long it stays open before one probe
  std::size_t miss_cache_max = 100000;          // remembered miss resolutions

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
  // Bridges
  std::uint64_t pg_writes = 0, pg_write_errors = 0;        // calls made, calls that failed
  std::uint64_t pg_lookups = 0, pg_lookup_errors = 0;
  std::uint64_t pg_queue_full = 0;                         // async: writes refused, queue full
  std::uint64_t pg_queue_coalesced = 0;                    // async: a queued write superseded
  std::uint64_t legacy_fetches = 0, legacy_errors = 0, legacy_not_found = 0;
  std::uint64_t misses_coalesced = 0;     // a read joined a resolution already under way
  std::uint64_t miss_cache_hits = 0;      // a read answered from a remembered resolution
  std::uint64_t hydrations = 0;           // resolutions that found a record and wrote it back
  std::uint64_t breaker_opened = 0;
  std::uint64_t breaker_rejected = 0;     // reads failed at once because the breaker was open
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
  // Async write-behind: keys waiting for PostgreSQL, and since when the oldest has waited
  // (its lag; nullopt when the queue is empty).
  std::size_t pg_queue_size() const { return pg_queue_.size(); }
  std::optional<std::uint64_t> pg_queue_oldest_ms() const;
  bool legacy_breaker_open(std::uint64_t now_ms) const { return now_ms < breaker_open_until_ms_; }

 private:
  // read: asking replicas; resolve: the read quorum found nothing and waits for the key's miss
  // resolution; discover: a write asking a majority for versions (and PostgreSQL, for a key the
  // majority does not hold); write: sending the stamped record.
  enum class Phase : std::uint8_t { read, resolve, discover, write };

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
    bool failed = false;       // the reply was an error
    bool sloppy_tried = false;
    bool pg_pending = false;  // discover: the PostgreSQL lookup; write (sync): the PostgreSQL write
  };

  // A call to a bridge in flight: what it is for.
  struct Call {
    BridgeKind kind = BridgeKind::pg_write;
    std::string key;
    std::uint64_t req = 0;  // the client request waiting on it (0: a resolution or the queue)
    std::uint64_t started_ms = 0;
  };
  // One resolution of a missed key, shared by every read that missed it meanwhile.
  struct Miss {
    std::uint64_t call = 0;
    std::vector<std::uint64_t> waiters;  // requests in Phase::resolve
  };
  // A finished resolution: `record` (nullopt: not found) for the reads started at or before
  // `resolved_ms`; a not-found also for every read within legacy_negative_ttl_ms of it.
  struct Resolved {
    std::optional<Record> record;
    std::uint64_t resolved_ms = 0;
    std::uint64_t expires_ms = 0;
  };
  // Async write-behind: the newest record of a key not yet in PostgreSQL.
  struct Queued {
    Record record;
    std::uint64_t enqueued_ms = 0;
    std::uint64_t not_before_ms = 0;
    std::uint32_t failures = 0;
    std::uint64_t call = 0;       // the write in flight, 0 if none
    Version call_version;         // the version that write carries
  };

  // Coordinator
  void start_read(std::uint64_t req, Pending& p);
  // False if the request ended instead (refused: the write-behind queue is full).
  bool start_write(std::uint64_t req, Pending& p, std::uint64_t now_ms);
  void discovered(std::uint64_t req, Pending& p, std::uint64_t now_ms);
  void on_read_resp(NodeId from, const ReadResp& m, std::uint64_t now_ms);
  void on_write_ack(NodeId from, const WriteAck& m);
  void repair_stale(std::uint64_t req, Pending& p);
  void tick_request(std::uint64_t req, Pending& p, std::uint64_t now_ms);
  void try_fallbacks(std::uint64_t req, Pending& p);
  bool unheard(const Pending& p, const Target& t) const;
  bool finish_if_done(std::uint64_t req);
  void expire(std::uint64_t req, Pending& p);
  void reply_error(std::uint64_t client_id, Errc e, std::string detail);
  void fail(Pending& p, Errc e, std::string detail);
  std::size_t answered(const Pending& p) const;
  std::size_t majority() const { return config_.replicas / 2 + 1; }

  // Bridges
  std::uint64_t call(BridgeKind kind, const std::string& key, std::uint64_t req,
                     std::optional<Record> record = {});
  void resolve_miss(std::uint64_t req, Pending& p, std::uint64_t now_ms);
  void start_legacy(const std::string& key, Miss& miss, std::uint64_t now_ms);
  void reply_resolved(Pending& p, const std::optional<Record>& found);
  void expire_calls(std::uint64_t now_ms);
  void finish_resolution(const std::string& key, const std::optional<Record>& found,
                         std::uint64_t now_ms);
  void fail_resolution(const std::string& key, const std::string& detail);
  void remember(const std::string& key, const std::optional<Record>& found, std::uint64_t now_ms);
  void forget(const std::string& key);
  void expire_resolved(std::uint64_t now_ms, std::size_t size_max = SIZE_MAX);
  void on_pg_write_reply(const Call& c, const BridgeReply& r, std::uint64_t now_ms);
  void on_pg_lookup_reply(const Call& c, const BridgeReply& r, std::uint64_t now_ms);
  void on_legacy_reply(const Call& c, const BridgeReply& r, std::uint64_t now_ms);
  void enqueue_pg(const std::string& key, const Record& r, std::uint64_t now_ms);
  void pump_pg_queue(std::uint64_t now_ms);
  bool bridges_on() const { return config_.pg_mode != PgMode::off || config_.legacy; }

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
  std::map<std::uint64_t, Call> calls_;       // bridge calls in flight, by id
  std::map<std::string, Miss> misses_;        // resolutions under way, by key
  std::map<std::string, Resolved> resolved_;  // finished resolutions still remembered
  std::multimap<std::uint64_t, std::string> resolved_expiry_;  // expires_ms -> key (lazy)
  std::map<std::string, Queued> pg_queue_;    // async write-behind, by key
  std::size_t pg_queue_in_flight_ = 0;
  std::uint32_t breaker_failures_ = 0;        // consecutive legacy failures
  std::uint64_t breaker_open_until_ms_ = 0;
  bool breaker_probing_ = false;              // half-open: one call allowed through
  Ready ready_;
};

}  // namespace kv
