// The simulated world: an event queue in virtual time, a hostile network, disks that lose what
// was not synced, processes that crash and restart from what their disk kept, skewed clocks,
// clients that keep a history. It drives kv::Replica exactly as kvnode does: inputs in, one Ready
// batch out, persisted (group commit) before any of its outputs leave.
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <queue>
#include <set>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "core/replica.h"
#include "sim/history.h"
#include "sim/rng.h"
#include "sim/sim.h"

namespace kv::sim {

// Bounds on a run, so that a livelock shows up as a failure instead of a hang.
inline constexpr std::uint64_t run_events_max = 20'000'000;
inline constexpr std::uint64_t run_sim_time_us_max = 900'000'000;  // 15 virtual minutes
inline constexpr std::uint32_t final_read_attempts_max = 20;
inline constexpr std::uint64_t final_read_retry_ms = 500;
inline constexpr std::uint64_t settle_ms = 5000;  // after the final reads, before C2 is checked
// Liveness: after healing, the cluster must fall quiet (every hint delivered, every request
// finished, every queue drained) within quiet_ms * liveness_quiet_factor, plus the hint-delivery
// rounds its limits need; quiet is polled every quiet_poll_ms.
inline constexpr std::uint64_t liveness_quiet_factor = 6;
inline constexpr std::uint64_t quiet_poll_ms = 250;
// With anti-entropy on, quiet also means converged; the bound grows by this many exchange
// intervals per node (each node exchanges with one peer per interval).
inline constexpr std::uint64_t liveness_ae_rounds_per_node = 6;
inline constexpr std::uint64_t clock_base_ms = 1'700'000'000'000;

class World {
 public:
  World(const Scenario& scenario, const RunOptions& options);
  RunResult run();

 private:
  enum class Ev : std::uint8_t {
    deliver, tick, fsync_done, client_next, client_timeout,
    fault_start, fault_end, restart, heal, final_reads, final_check, bridge_reply, quiet_poll,
    die, remove,
  };
  struct Event {
    std::uint64_t at_us;
    std::uint64_t seq;
    Ev kind;
    NodeId node;
    std::uint64_t a, b;  // meaning depends on kind (incarnation, generation, op id, index)
  };
  struct Later {
    bool operator()(const Event& x, const Event& y) const {
      return x.at_us != y.at_us ? x.at_us > y.at_us : x.seq > y.seq;
    }
  };
  struct Held {
    Ready ready;
    std::size_t sync_point;  // this batch may leave once the log is durable up to here
  };
  struct Node {
    NodeId id = 0;
    bool up = false;
    std::uint64_t incarnation = 0;
    std::optional<Replica> replica;
    std::string wal;               // every byte appended; [0, wal_synced) is durable
    std::size_t wal_synced = 0;
    std::optional<std::string> snapshot;
    std::deque<Held> held;         // batches waiting for their bytes to be durable (FIFO)
    bool fsync_in_flight = false;
    std::size_t fsync_target = 0;
    std::uint64_t tick_generation = 0;
    std::optional<std::uint64_t> tick_at_us;
    std::optional<std::size_t> crash_after_ack;  // armed crash fault, by index
    std::int64_t clock_stepped_ms = 0;             // the sum of its clock's steps so far
    std::uint64_t clock_stepped_back_ms = 0;       // the sum of its backward steps so far
    std::uint64_t clogged_until_us = 0;            // its links hold messages until then
    std::vector<std::uint64_t> crashed_at_us;      // every crash and disk loss, in true time
    bool kept_down = false;  // liveness mode: crashed at the heal, never restarted
  };
  // A bridge call on its way to a service: what the service will do is decided when it is made.
  struct BridgeInFlight {
    NodeId node = 0;
    std::uint64_t incarnation = 0;
    BridgeCall call;
    bool fails = false;            // the answer is an error
    bool applied_anyway = false;   // a write that fails after it was applied (the reply is lost)
    std::string detail;
  };
  struct Client {
    std::size_t next_op = 0;
    std::optional<std::size_t> current;  // index into history_
    std::uint64_t issued = 0;
  };

  // Event loop
  void schedule(std::uint64_t at_us, Ev kind, NodeId node, std::uint64_t a = 0, std::uint64_t b = 0);
  void step(const Event& e);
  void trace(const Event& e, const std::string& what);
  std::uint64_t local_ms(NodeId node) const;
  Node& node(NodeId id) { return nodes_[id - 1]; }
  const Node& node(NodeId id) const { return nodes_[id - 1]; }

  // Processes and disks
  void boot(Node& n);
  void crash(Node& n, std::uint32_t torn_mode);
  void crash_and_schedule_restart(Node& n, const Fault& f);
  void after_input(Node& n);
  void release_durable(Node& n);
  void release(Node& n, Ready& ready);
  void start_fsync(Node& n);
  void on_fsync_done(Node& n, std::uint64_t incarnation);
  void maybe_snapshot(Node& n);
  void on_tick(Node& n, std::uint64_t incarnation, std::uint64_t generation);

  // Bridges: PostgreSQL and the legacy API
  void call_bridge(Node& n, const BridgeCall& call);
  void on_bridge_reply(std::uint64_t id);
  void wipe_cluster(const Fault& f);
  void lose_disk(Node& n, const Fault& f);
  std::optional<std::string> legacy_value(const std::string& key) const;

  // Network
  void send(const Message& m);
  void on_deliver(std::uint64_t message_id);
  bool blocked(NodeId from, NodeId to) const;
  void set_partition(const Fault& f, int delta);

  // Clients
  void client_next(std::uint32_t client);
  void issue(std::uint32_t client, const ClientOp& op, bool final_read, std::uint32_t key);
  void complete(std::size_t index, Outcome outcome, const ClientReply* reply);
  void on_reply(const ClientReply& reply);
  void on_client_timeout(std::size_t index);
  void maybe_heal();
  void heal();
  void die(Node& n);  // liveness mode: n crashes, if it is up, and never restarts
  // The operator's kvctl remove of the node kept down, at a live node; retried while refused.
  void remove_dead(std::uint64_t attempt);
  // The node being taken out (knob remove_after_ms), or 0.
  NodeId removing() const;
  bool removal_done() const;
  // The first node to move reads to the ring without the node removed: every live replica of
  // every key on that ring must hold its newest acknowledged write by now (the pulls' promise).
  void check_reads_moved(const Node& n);
  bool reads_moved_checked_ = false;
  bool doomed(const Node& n) const { return (sc_.knobs.kept_down_mask >> (n.id - 1)) & 1; }
  void poll_quiet();
  void on_collected(const Node& n, const WalDrop& drop);
  std::string still_busy() const;  // what keeps the cluster from being quiet; empty: quiet
  void check_at_quiet();
  void next_final_read();
  void final_check();
  void check_bridges();
  void check_in_postgres(const Op& write);

  void collect_stats(const Replica& r);
  void check_recovered(const Node& n, const DurableState& state);
  void check_snapshot(const Node& n);
  // What the world sees of a request on the wire (the coordinator's peers' answers).
  void observe_sent(const Message& m);
  void observe_delivered(const Message& m);
  void lost_to_crash(const Node& n);
  // Counts a rare path or fault; `name` must be one of probe_names() (world.cc).
  void probe(std::string_view name, std::uint64_t n = 1);
  void violation(std::string property, std::string detail);
  // Tells options_.mark, if set; `text` is made only then.
  template <typename Text>
  void mark(Mark::Kind kind, NodeId node, NodeId peer, std::uint64_t id, Text&& text) {
    if (options_.mark) options_.mark(Mark{now_us_, kind, node, peer, id, std::string(text())});
  }
  void mark(Mark::Kind kind, NodeId node, NodeId peer = 0, std::uint64_t id = 0) {
    mark(kind, node, peer, id, [] { return ""; });
  }

  const Scenario& sc_;
  const RunOptions& options_;
  Rng net_rng_, disk_rng_, crash_rng_, bridge_rng_, wire_rng_;
  std::priority_queue<Event, std::vector<Event>, Later> queue_;
  std::uint64_t now_us_ = 0;
  std::uint64_t seq_ = 0;
  std::uint64_t trace_hash_ = 0;
  std::vector<Node> nodes_;
  // Messages on the wire, as the peer codec's frames; looked up by id, iterated only to count.
  struct Frame {
    std::string bytes;
    bool damaged = false;  // a bit was flipped on the way: the decoder must refuse it
    std::uint64_t mark_id = 0;  // pairs its send and arrival marks (only if marks are made)
    // The processes at both ends when it was sent, and whether the receiver was up then.
    std::uint64_t from_incarnation = 0, to_incarnation = 0;
    bool to_was_up = false;
    NodeId to = 0;
    bool background = false;  // anti-entropy's tree exchange, which never stops: not work pending
  };
  std::uint64_t marked_messages_ = 0;
  std::unordered_map<std::uint64_t, Frame> in_flight_;
  std::size_t frame_bytes_max_ = 0;  // every link's payload limit, as kvnode's default
  std::map<std::pair<NodeId, NodeId>, int> blocked_;       // directed links cut, with overlap count
  std::map<std::string, Record> pg_table_;                    // PostgreSQL's rows
  int pg_down_ = 0, legacy_down_ = 0;                          // outages under way
  std::unordered_map<std::uint64_t, BridgeInFlight> bridge_in_flight_;  // by id, never iterated
  bool faults_active_ = true;
  bool healed_ = false;
  bool finished_ = false;
  std::vector<Client> clients_;
  std::vector<Op> history_;
  std::unordered_map<std::uint64_t, std::size_t> by_request_;  // request id -> history index
  std::unordered_map<std::string, std::size_t> by_value_;      // put value -> history index
  std::unordered_set<std::uint64_t> replied_;                  // request ids answered so far
  Ring ring_;                         // every node's ring: they are all built alike
  std::optional<std::size_t> issuing_;  // the history index of the request being handed over
  std::map<std::pair<NodeId, std::uint64_t>, std::size_t> by_internal_;  // (coordinator, req)
  // The newest version each replica acknowledged or answered for a key: it never answers older.
  std::map<std::pair<NodeId, std::string>, Version> replica_floor_;
  // Tombstone collection: every drop, by key (the checks; a collected tombstone is answered as
  // nothing).
  std::map<std::string, std::vector<Collected>> collected_;
  std::vector<DiskLoss> disk_losses_;
  std::set<std::string> raw_exempt_;  // keys the checks at quiet skip, with the reason below
  std::map<std::string, std::string> raw_exempt_why_;
  // Exempts `key` from the checks at quiet. A reason anti-entropy repairs (a replica's disk lost,
  // a hint refused) exempts nothing when it is on: the replicas must converge regardless.
  void exempt_at_quiet(const std::string& key, const std::function<std::string()>& why,
                       bool repaired_by_anti_entropy);
  bool anti_entropy() const { return sc_.knobs.ae_interval_ms != 0; }
  bool collecting() const { return replica_config(1, 0).collects_tombstones(); }
  ReplicaConfig replica_config(NodeId self, std::uint64_t incarnation) const;
  std::set<std::size_t> pg_exempt_;   // async writes whose coordinator died with them queued
  std::map<NodeId, std::set<std::string>> hinted_to_;  // keys each node was sent hints for
  CheckContext check_context() const;
  std::uint64_t healed_at_us_ = 0;
  std::uint32_t final_key_ = 0;       // the key the final reader is reading
  std::uint32_t final_attempts_ = 0;  // attempts at final_key_
  RunResult result_;
};

}  // namespace kv::sim
