// make_scenario: everything a run does, derived from its seed alone.
//
// Knobs are randomized per seed (FoundationDB's way): node count, quorums, timers, fault rates
// and the workload all vary, so a thousand seeds explore a thousand different clusters. The
// ranges are chosen so that every fault is on in every seed, at a rate that still lets most
// operations succeed; a cluster that fails everything proves nothing.
#include <algorithm>

#include "sim/rng.h"
#include "sim/sim.h"

namespace kv::sim {

namespace {

// The workload's size: about 1,000 client operations over about 20 s of virtual time.
constexpr std::uint64_t ops_total_min = 800;
constexpr std::uint64_t ops_total_max = 1200;
constexpr std::uint64_t workload_span_ms = 20000;

Knobs make_knobs(Rng& rng) {
  Knobs k;
  k.nodes = static_cast<std::uint32_t>(rng.between(3, 7));
  k.replicas = (k.nodes >= 5 && rng.chance_ppm(200'000)) ? 5 : 3;
  k.read_quorum = k.write_quorum = k.replicas / 2 + 1;
  k.sloppy_quorum = rng.chance_ppm(250'000);
  k.vnodes_per_node = static_cast<std::uint32_t>(rng.between(8, 64));
  k.request_timeout_ms = rng.between(800, 3000);
  k.retry_interval_ms = rng.between(40, 300);
  k.sloppy_after_ms = rng.between(50, 400);
  k.hint_interval_ms = rng.between(100, 1000);
  k.tick_interval_ms = rng.between(5, 40);
  if (rng.chance_ppm(300'000)) k.hints_max = rng.between(1, 20);
  if (rng.chance_ppm(200'000)) k.requests_in_flight_max = rng.between(1, 4);

  k.drop_ppm = static_cast<std::uint32_t>(rng.between(0, 60'000));
  k.duplicate_ppm = static_cast<std::uint32_t>(rng.between(0, 30'000));
  k.latency_us_min = rng.between(50, 2000);
  k.latency_us_jitter = rng.between(0, 5000);
  k.long_tail_ppm = static_cast<std::uint32_t>(rng.between(0, 20'000));
  k.long_tail_us_max = rng.between(10'000, 2'000'000);

  k.fsync_us_min = rng.between(100, 8000);  // from a fast SSD to a busy spinning disk
  k.fsync_us_jitter = rng.between(0, 20'000);
  k.fsync_slow_ppm = static_cast<std::uint32_t>(rng.between(0, 20'000));
  k.fsync_slow_us_max = rng.between(10'000, 500'000);
  k.snapshot_wal_bytes = rng.between(2048, 64 * 1024);

  for (std::uint32_t n = 0; n < k.nodes; ++n) {
    k.clock_skew_ms.push_back(rng.between_signed(-5000, 5000));
    k.clock_drift_ppm.push_back(static_cast<std::int32_t>(rng.between_signed(-20'000, 20'000)));
  }
  k.value_bytes_max = static_cast<std::uint32_t>(rng.between(0, 512));
  k.quiet_ms = 10000;
  k.client_timeout_ms = k.request_timeout_ms + 2000;
  return k;
}

std::vector<NodeId> random_group(Rng& rng, std::uint32_t nodes, std::uint32_t size) {
  std::vector<NodeId> all;
  for (NodeId n = 1; n <= nodes; ++n) all.push_back(n);
  for (std::uint32_t i = 0; i + 1 < all.size(); ++i) {  // Fisher-Yates, own draws
    std::swap(all[i], all[i + rng.below(all.size() - i)]);
  }
  all.resize(size);
  std::sort(all.begin(), all.end());
  return all;
}

std::vector<Fault> make_faults(Rng& rng, const Knobs& k) {
  std::vector<Fault> faults;
  const std::uint64_t partitions = rng.between(1, 8);
  for (std::uint64_t i = 0; i < partitions; ++i) {
    Fault f;
    f.at_ms = rng.below(workload_span_ms);
    f.kind = rng.chance_ppm(300'000) ? FaultKind::partition_one_way : FaultKind::partition;
    f.group = random_group(rng, k.nodes, static_cast<std::uint32_t>(rng.between(1, k.nodes / 2)));
    f.duration_ms = rng.between(200, 5000);
    faults.push_back(f);
  }
  const std::uint64_t crashes = rng.between(2, 12);
  for (std::uint64_t i = 0; i < crashes; ++i) {
    Fault f;
    f.at_ms = rng.below(workload_span_ms);
    f.kind = FaultKind::crash;
    // Mostly one process; sometimes a power loss that takes several nodes down together, the
    // case where unsynced writes vanish from every replica at once.
    const bool power_loss = rng.chance_ppm(250'000);
    f.group = random_group(rng, k.nodes,
                           power_loss ? static_cast<std::uint32_t>(rng.between(2, k.nodes)) : 1);
    f.duration_ms = rng.between(50, 5000);
    const std::uint64_t torn_roll = rng.below(10);
    f.torn_mode = torn_roll < 2 ? 0 : torn_roll < 5 ? 1 : torn_roll < 8 ? 2 : 3;
    f.after_ack = rng.chance_ppm(400'000);
    faults.push_back(f);
  }
  std::stable_sort(faults.begin(), faults.end(),
                   [](const Fault& a, const Fault& b) { return a.at_ms < b.at_ms; });
  return faults;
}

// Bridges come from their own streams, so that the rest of a seed's scenario is what it was
// before they existed.
void make_bridges(Rng& rng, Knobs& k, std::uint32_t keys) {
  const std::uint64_t roll = rng.below(10);
  k.pg_mode = roll < 4 ? 0 : roll < 8 ? 1 : 2;
  k.legacy = rng.chance_ppm(400'000);
  if (k.legacy) {
    for (std::uint32_t key = 0; key < keys && key < 64; ++key) {
      if (rng.chance_ppm(500'000)) k.legacy_key_mask |= std::uint64_t{1} << key;
    }
  }
  k.bridge_us_min = rng.between(100, 3000);
  k.bridge_us_jitter = rng.between(0, 20'000);
  k.bridge_error_ppm = static_cast<std::uint32_t>(rng.between(0, 50'000));
  k.bridge_timeout_ms = rng.between(200, 2000);
  if (rng.chance_ppm(200'000)) k.pg_queue_max = rng.between(1, 4);
  k.legacy_negative_ttl_ms = rng.between(0, 5000);
  k.legacy_breaker_failures = static_cast<std::uint32_t>(rng.between(1, 8));
  k.legacy_breaker_open_ms = rng.between(100, 3000);
}

void make_bridge_faults(Rng& rng, const Knobs& k, std::vector<Fault>& faults) {
  auto outages = [&](FaultKind kind) {
    for (std::uint64_t i = rng.below(4); i > 0; --i) {
      Fault f;
      f.at_ms = rng.below(workload_span_ms);
      f.kind = kind;
      f.duration_ms = rng.between(200, 5000);
      faults.push_back(f);
    }
  };
  if (k.pg_mode != 0) outages(FaultKind::pg_outage);
  if (k.legacy) outages(FaultKind::legacy_outage);
  if (k.pg_mode == 1 && rng.chance_ppm(300'000)) {
    Fault f;
    f.at_ms = rng.below(workload_span_ms);
    f.kind = FaultKind::wipe;
    f.duration_ms = rng.between(50, 2000);
    faults.push_back(f);
  }
  std::stable_sort(faults.begin(), faults.end(),
                   [](const Fault& a, const Fault& b) { return a.at_ms < b.at_ms; });
}

ClientOp make_op(Rng& rng, const Knobs& k, std::uint32_t keys, std::uint32_t mix_get_ppm,
                 std::uint32_t mix_del_ppm, std::uint64_t think_ms_max) {
  ClientOp op;
  const std::uint64_t roll = rng.below(ppm_one);
  op.op = roll < mix_get_ppm                 ? OpType::get
          : roll < mix_get_ppm + mix_del_ppm ? OpType::del
                                             : OpType::put;
  op.key = static_cast<std::uint32_t>(rng.below(keys));
  // Mostly the defaults, sometimes any quorum from 1 to N: mixed quorums in one history.
  if (rng.chance_ppm(300'000)) op.r = static_cast<std::uint32_t>(rng.between(1, k.replicas));
  if (rng.chance_ppm(300'000)) op.w = static_cast<std::uint32_t>(rng.between(1, k.replicas));
  op.coordinator = static_cast<NodeId>(rng.between(1, k.nodes));
  op.think_ms = rng.between(0, think_ms_max);
  return op;
}

}  // namespace

Scenario make_scenario(std::uint64_t seed) {
  Rng root(seed);
  Rng knob_rng = root.child("knobs");
  Rng fault_rng = root.child("faults");
  Rng work_rng = root.child("workload");

  Scenario s;
  s.seed = seed;
  s.knobs = make_knobs(knob_rng);
  s.keys = static_cast<std::uint32_t>(work_rng.between(2, 12));
  s.faults = make_faults(fault_rng, s.knobs);
  Rng bridge_rng = root.child("bridges");
  make_bridges(bridge_rng, s.knobs, s.keys);
  Rng bridge_fault_rng = root.child("bridge-faults");
  make_bridge_faults(bridge_fault_rng, s.knobs, s.faults);

  const std::uint64_t clients = work_rng.between(3, 8);
  const std::uint64_t ops_total = work_rng.between(ops_total_min, ops_total_max);
  const std::uint64_t ops_per_client = ops_total / clients;
  const auto mix_get_ppm = static_cast<std::uint32_t>(work_rng.between(200'000, 600'000));
  const auto mix_del_ppm = static_cast<std::uint32_t>(work_rng.between(50'000, 200'000));
  const std::uint64_t think_ms_max = 2 * workload_span_ms / ops_per_client;
  s.clients.resize(clients);
  for (auto& ops : s.clients) {
    for (std::uint64_t i = 0; i < ops_per_client; ++i) {
      ops.push_back(make_op(work_rng, s.knobs, s.keys, mix_get_ppm, mix_del_ppm, think_ms_max));
    }
  }
  return s;
}

}  // namespace kv::sim
