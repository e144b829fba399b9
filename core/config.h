// What one node's replication core is told: the cluster, the quorums, the timers, the limits
// and the bridges. These are the defaults of every knob; kvnode's flags and the simulator start
// from them (node/config.cc, sim/sim.h) and never restate them.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "core/ring.h"
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

  // Anti-entropy (anti_entropy.h): every ae_interval_ms this node compares the ranges it shares
  // with one peer (the next in turn) and the two push each other what the other lacks; 0 = off.
  std::uint64_t ae_interval_ms = 1000;
  std::uint64_t ae_bytes_per_s = 8u << 20;          // records pushed, key + value; 0 = no limit
  std::size_t ae_message_bytes_max = 1u << 20;      // a key list or want list stops here
  std::size_t ae_ranges_per_exchange_max = 4096;    // roots sent in one exchange
  std::size_t ae_ranges_diff_max = 256;             // differing ranges answered in one exchange
  // Tombstone collection (anti_entropy.h): a tombstone is dropped once every other replica of
  // its range was seen holding it by an exchange, and its version is this old; hints are then
  // dropped undelivered once their version is half this old. 0 = tombstones are kept forever.
  // Only without bridges (PostgreSQL or the legacy API could bring a collected key back) and
  // without sloppy quorums.
  // Clocks must agree, and a message must arrive, within a quarter of it.
  std::uint64_t tombstone_grace_ms = 600'000;

  // Membership (membership.h): a heartbeat to every other member every heartbeat_interval_ms; a
  // peer is down once its silence makes phi reach fd_phi_threshold (phi accrual: with heartbeats
  // every 200 ms, about 3.7 s of silence at 8). The coordinator then skips it, and fails at once
  // what its quorum cannot reach without it. 0 = no heartbeats, every peer taken as up.
  std::uint64_t heartbeat_interval_ms = 200;
  double fd_phi_threshold = 8.0;
  // What this node announces in its members entry (opaque to the core; empty: unknown).
  std::string peer_addr;
  std::string client_addr;

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
  // is never taken for a reply to a new request. It must grow from one incarnation to the next:
  // it is also the generation of the node's members entry (membership.h).
  std::uint64_t request_id_base = 0;

  // Whether tombstones are collected (and hints expire): see tombstone_grace_ms. The proofs come
  // from the exchanges this node starts, so anti-entropy must be on; and not with sloppy
  // quorums, where a stand-in's hint may be a write's only copy and must never expire.
  bool collects_tombstones() const {
    return tombstone_grace_ms != 0 && ae_interval_ms != 0 && !sloppy_quorum &&
           pg_mode == PgMode::off && !legacy;
  }
};

}  // namespace kv
