// The simulator's public face: a scenario (everything one seed decides), running it, and what a
// run reports. The kvsim command line (sim/cli/) is built on these and nothing else.
//
// A run is a pure function of its scenario: single-threaded, virtual time, one seeded generator
// split into named streams. The same scenario gives the same event trace, bit for bit.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "core/config.h"
#include "core/errors.h"
#include "core/messages.h"

namespace kv::sim {

// ---- Scenario: everything a seed decides, explicit so that it can be shrunk ----

// The replica's knobs default to ReplicaConfig's (core/config.h), the one place they are written;
// a seed draws most of them (scenario.cc).
inline const ReplicaConfig replica_defaults{};

struct Knobs {
  std::uint32_t nodes = 5;
  std::uint32_t replicas = replica_defaults.replicas;
  std::uint32_t read_quorum = replica_defaults.read_quorum;
  std::uint32_t write_quorum = replica_defaults.write_quorum;
  bool sloppy_quorum = replica_defaults.sloppy_quorum;
  std::uint32_t vnodes_per_node = replica_defaults.vnodes_per_node;
  std::uint64_t request_timeout_ms = replica_defaults.request_timeout_ms;
  std::uint64_t retry_interval_ms = replica_defaults.retry_interval_ms;
  std::uint64_t sloppy_after_ms = replica_defaults.sloppy_after_ms;
  std::uint64_t hint_interval_ms = replica_defaults.hint_interval_ms;
  std::uint64_t tick_interval_ms = replica_defaults.tick_interval_ms;
  std::uint64_t hints_max = replica_defaults.hints_max;  // small in some seeds: hints get refused
  // Small in some seeds: requests get refused.
  std::uint64_t requests_in_flight_max = replica_defaults.requests_in_flight_max;
  // Small in some seeds: hint delivery needs many rounds, and its fairness shows.
  std::uint64_t hint_deliveries_per_interval_max = replica_defaults.hint_deliveries_per_interval_max;
  // Anti-entropy: off (0) in some seeds, whose checks at quiet allow what only anti-entropy
  // repairs (a replica that lost its disk, a hint refused); slow or thin in others.
  std::uint64_t ae_interval_ms = replica_defaults.ae_interval_ms;
  std::uint64_t ae_bytes_per_s = replica_defaults.ae_bytes_per_s;
  // This node (0: none) loses its disk at the heal, after the last client operation: only anti-
  // entropy can refill it, and the checks at quiet come before any final read. Only with anti-
  // entropy on, in seeds with no other disk loss and no node kept down (two losses could take
  // every copy of a W=2 write).
  std::uint32_t wiped_at_heal = 0;
  // Tombstone collection (core/anti_entropy.h): 0 in most seeds; where it is on (no bridges,
  // anti-entropy on), a few seconds, yet longer than this seed's clocks and delays can disagree.
  std::uint64_t tombstone_grace_ms = replica_defaults.tombstone_grace_ms;
  // Membership (core/membership.h): heartbeats and gossip, and the failure detector they feed
  // (the coordinator skips replicas it takes as down); off (0) in some seeds. The threshold in
  // tenths of phi.
  std::uint64_t heartbeat_interval_ms = replica_defaults.heartbeat_interval_ms;
  std::uint64_t fd_phi_threshold_tenths = static_cast<std::uint64_t>(replica_defaults.fd_phi_threshold * 10);

  // Network (rates in parts per million of messages)
  std::uint32_t drop_ppm = 0;
  std::uint32_t duplicate_ppm = 0;
  std::uint64_t latency_us_min = 200;
  std::uint64_t latency_us_jitter = 800;
  std::uint32_t long_tail_ppm = 0;     // a message takes up to long_tail_us_max extra
  std::uint64_t long_tail_us_max = 0;
  std::uint32_t corrupt_ppm = 0;       // a frame gets one bit flipped: its checksum must refuse it

  // Disk
  std::uint64_t fsync_us_min = 500;
  std::uint64_t fsync_us_jitter = 2000;
  std::uint32_t fsync_slow_ppm = 0;    // an fsync takes up to fsync_slow_us_max extra
  std::uint64_t fsync_slow_us_max = 0;
  std::uint64_t snapshot_wal_bytes = 16 * 1024;  // take a snapshot once the log is this long

  // Clocks: per node offset and rate error
  std::vector<std::int64_t> clock_skew_ms;   // one per node
  std::vector<std::int32_t> clock_drift_ppm; // one per node

  // Workload: each put's value is its unique name padded to a length in [0, value_bytes_max],
  // so that the log holds realistic payloads and a torn record can land inside a value.
  std::uint32_t value_bytes_max = 64;

  // Timeline
  std::uint64_t quiet_ms = 10000;        // after healing, before the final reads
  // Liveness with a core (TigerBeetle's VOPR): the nodes of this mask (bit i: node i+1) stay
  // down after the heal, and only the others must fall quiet, converge and serve every key.
  // At most replicas - 1 of them, so that every key keeps a replica in the core.
  std::uint64_t kept_down_mask = 0;
  std::uint64_t kept_down_at_ms = 0;  // they die for good then (0, or after the workload: at the heal)
  // The operator takes the node kept down out of the cluster (kvctl remove) this long after it
  // died, retrying every second while a live member refuses (0: never). One node kept down only,
  // with heartbeats and anti-entropy on, strict quorums, and N members left.
  std::uint64_t remove_after_ms = 0;
  std::uint64_t client_timeout_ms = 5000;

  // Bridges: PostgreSQL (write-through, lookup) and the legacy API, modelled as services with
  // latency, errors and outages. The legacy API holds the keys whose bit is set in the mask,
  // each with the value "legacy.<key>".
  std::uint32_t pg_mode = 0;              // 0 off, 1 sync, 2 async
  bool legacy = false;
  std::uint64_t legacy_key_mask = 0;
  std::uint64_t bridge_us_min = 500;      // a service's answer takes this much
  std::uint64_t bridge_us_jitter = 2000;  //   plus up to this much
  std::uint32_t bridge_error_ppm = 0;     // a call fails (a write: half of them after applying)
  std::uint64_t bridge_timeout_ms = 1000; // what a driver waits for a service that is down
  std::uint64_t pg_queue_max = replica_defaults.pg_queue_max;
  std::uint64_t legacy_negative_ttl_ms = replica_defaults.legacy_negative_ttl_ms;
  std::uint32_t legacy_breaker_failures = replica_defaults.legacy_breaker_failures;
  std::uint64_t legacy_breaker_open_ms = replica_defaults.legacy_breaker_open_ms;
};

enum class FaultKind : std::uint8_t {
  partition,         // `group` cannot exchange messages with the rest, both ways
  partition_one_way, // messages from `group` to the rest are lost; the other way works
  crash,             // every node of `group` crashes at once (one node, or a power loss of
                     // several); they restart `duration_ms` later
  pg_outage,         // PostgreSQL is down for `duration_ms` (refuses or times out)
  legacy_outage,     // the legacy API is down for `duration_ms`
  wipe,              // the whole cluster is lost: every node crashes and loses its disk, and
                     // restarts empty `duration_ms` later (only with PostgreSQL in sync mode)
  disk_loss,         // the node of `group` crashes, its disk is replaced, and it restarts empty
                     // `duration_ms` later (at most one per seed: two could lose a W=2 write)
  clock_step,        // the clock of the node of `group` jumps by `step_ms` (either way), as an
                     // NTP step or an operator's date command would make it
  clog,              // every link to and from the nodes of `group` is clogged: messages are held,
                     // not lost; the nodes unclog one by one in `group` order over `duration_ms`
                     // (FoundationDB's swizzle-clogging)
};

struct Fault {
  std::uint64_t at_ms = 0;
  FaultKind kind = FaultKind::partition;
  std::vector<NodeId> group;
  std::uint64_t duration_ms = 0;
  std::uint32_t torn_mode = 0;  // crash: what the disk keeps of the unsynced tail: 0 nothing,
                                // 1 a prefix, 2 all its length with garbage from some point on,
                                // 3 all its length with some 512-byte sectors never written
  bool after_ack = false;       // crash: strike just after the node's next write acknowledgement
                                // leaves, the moment an early acknowledgement would be exposed
  std::int64_t step_ms = 0;     // clock_step: how far the clock jumps (negative: backwards)
};

struct ClientOp {
  OpType op = OpType::get;
  std::uint32_t key = 0;     // index into the key space
  std::uint32_t r = 0;       // 0: the default
  std::uint32_t w = 0;
  NodeId coordinator = 1;
  std::uint64_t think_ms = 0; // pause before this operation
};

struct Scenario {
  std::uint64_t seed = 0;
  Knobs knobs;
  std::uint32_t keys = 8;                      // hot keys first, then cold ones (written once)
  std::vector<Fault> faults;                   // ordered by at_ms
  std::vector<std::vector<ClientOp>> clients;  // each client runs its list in order
};

// Every parameter of a run, derived from the seed alone.
Scenario make_scenario(std::uint64_t seed);

// ---- Running ----

// One thing that happened, for a picture of the run (kvsim replay --html): nodes are lanes,
// messages go from lane to lane, faults and client operations sit on the lanes they touch.
struct Mark {
  enum class Kind : std::uint8_t {
    send,       // node -> peer; `id` pairs it with its arrive or lost mark
    arrive,     // message `id` reached `node`
    lost,       // message `id` never reaches `peer`: dropped, cut off, refused or its node down
    crash,      // `node` dies (text: how); disk_loss also wipes what it had
    disk_loss,
    restart,    // `node` is up again, recovered from its disk
    cut,        // links out of `node` to `peer` are cut (a partition, one direction); `id` pairs
    uncut,      //   the cut with its end
    clog,       // `node`'s links hold messages until the mark's `id` (virtual microseconds)
    clock_step, // `node`'s clock jumps (text: by how much)
    op_start,   // client operation `id` (its history index) reaches coordinator `node`
    op_end,     // it ends (text: the outcome)
    heal,       // the faults are over
    quiet,      // the cluster fell quiet: the checks at quiet and the final reads follow
    violation,  // text: the property and what broke
  };
  std::uint64_t at_us = 0;
  Kind kind = Kind::send;
  NodeId node = 0, peer = 0;
  std::uint64_t id = 0;
  std::string text;
};

struct RunOptions {
  // Called with one readable line per event (replay); null: no formatting at all (fast).
  std::function<void(std::string_view)> trace_line;
  // Called with every mark of the run (replay --html); null: none are made.
  std::function<void(const Mark&)> mark;
  bool keep_event_hashes = false;  // for check-determinism
};

struct Violation {
  std::string property;  // "C1" .. "C7", "invariant", "final-read", "pg-sync", ...
  std::string detail;    // keys, versions and operations involved
};

struct RunResult {
  std::uint64_t seed = 0;
  std::vector<Violation> violations;
  std::uint64_t trace_hash = 0;       // hash over every event of the run
  std::uint64_t events = 0;
  std::uint64_t sim_time_us = 0;      // virtual time at the end of the run
  std::uint64_t ops_invoked = 0, ops_ok = 0, ops_failed = 0, ops_unknown = 0;
  // Rare paths and faults: name -> times hit; every probe is listed, the unhit at 0.
  std::map<std::string, std::uint64_t, std::less<>> probes;
  std::vector<std::uint64_t> event_hashes;      // if keep_event_hashes: hash after each event

  bool ok() const { return violations.empty(); }
};

RunResult run(const Scenario& scenario, const RunOptions& options = {});

// Sometimes-assertions: every probe is a rare path that some seed of 1..sometimes_seeds_last
// must hit, except these, each with the reason it may not. `kvsim run` over a range covering
// those seeds fails if a required probe was never hit: a path no seed reaches is a path the
// simulator does not test.
inline constexpr std::uint64_t sometimes_seeds_last = 1000;
const std::map<std::string, std::string, std::less<>>& probes_not_required();

// ---- Shrinking ----

// Cuts the scenario's faults, operations and fault rates down while run() still reports a
// violation of the same property. `progress` is told about every attempt.
Scenario shrink(const Scenario& failing, const std::function<void(std::string_view)>& progress);

// A readable and re-readable text form of a scenario, for `kvsim shrink --out` and
// `kvsim replay --scenario`.
std::string scenario_to_text(const Scenario& s);
// The scenario, or why the text is not one ("line 12: ...").
Expected<Scenario> scenario_from_text(std::string_view text);

}  // namespace kv::sim
