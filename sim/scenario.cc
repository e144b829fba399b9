// make_scenario: everything a run does, derived from its seed alone.
//
// Knobs are randomized per seed (FoundationDB's way): node count, quorums, timers, fault rates
// and the workload all vary, so a thousand seeds explore a thousand different clusters. The
// rates are chosen so that most operations still succeed; a cluster that fails everything
// proves nothing. On top of that, swarm testing (Groce et al., "Swarm Testing", ISSTA 2012):
// each seed switches whole fault families off, so that a bug one fault hides behind another
// (a partition that masks a clock step, a crash that erases a clogged queue) gets seeds where
// only the fault it needs is on.
#include <algorithm>
#include <bit>
#include <cstdlib>

#include "sim/rng.h"
#include "sim/sim.h"

namespace kv::sim {

namespace {

// The workload's size: about 1,000 client operations over about 20 s of virtual time; a long
// run (some seeds) is long_run_factor times both.
constexpr std::uint64_t ops_total_min = 800;
constexpr std::uint64_t ops_total_max = 1200;
constexpr std::uint64_t workload_span_ms = 20000;
constexpr std::uint64_t long_run_factor = 3;

// The fault families a seed may switch off, each on in swarm_family_on_ppm of the seeds.
struct Swarm {
  bool partitions, crashes, disk_loss, clock_steps, clogging, drops, duplicates, long_tails,
      slow_fsync, skew, bridge_errors;
};
constexpr std::uint32_t swarm_family_on_ppm = 750'000;
constexpr std::uint32_t disk_loss_on_ppm = 350'000;  // a disk loss weakens C4/C5 (checker.cc)
constexpr std::uint32_t corrupt_on_ppm = 300'000;
constexpr std::uint32_t kept_down_seeds_ppm = 200'000;  // liveness with a core
constexpr std::uint32_t burst_seeds_ppm = 200'000;  // seeds with bursts
constexpr std::uint32_t burst_op_ppm = 300'000;     // in them, an operation repeats the last one's key
constexpr std::uint32_t ae_off_ppm = 150'000;       // seeds without anti-entropy
constexpr std::uint32_t ae_thin_ppm = 300'000;      // seeds where its bandwidth limit binds
constexpr std::uint32_t wiped_at_heal_ppm = 300'000;  // of the seeds that may have it
constexpr std::uint32_t tombstone_gc_ppm = 1'000'000;   // of the seeds that may collect tombstones
constexpr std::uint64_t tombstone_grace_ms_max = 20'000;  // longer, and nothing would be collected
constexpr std::uint32_t heartbeats_off_ppm = 150'000;     // seeds without heartbeats (every peer up)
constexpr std::uint32_t remove_seeds_ppm = 700'000;       // of the seeds that can remove a dead node

// Faults in the order they strike (a stable sort: ties keep the order they were drawn in).
void sort_by_time(std::vector<Fault>& faults) {
  std::stable_sort(faults.begin(), faults.end(),
                   [](const Fault& a, const Fault& b) { return a.at_ms < b.at_ms; });
}

Swarm make_swarm(Rng& rng) {
  auto on = [&rng](std::uint32_t ppm = swarm_family_on_ppm) { return rng.chance_ppm(ppm); };
  Swarm w{};
  w.partitions = on();
  w.crashes = on();
  w.disk_loss = on(disk_loss_on_ppm);
  w.clock_steps = on();
  w.clogging = on();
  w.drops = on();
  w.duplicates = on();
  w.long_tails = on();
  w.slow_fsync = on();
  w.skew = on();
  w.bridge_errors = on();
  return w;
}

Knobs make_knobs(Rng& rng, const Swarm& w) {
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
  if (rng.chance_ppm(200'000)) k.hint_deliveries_per_interval_max = rng.between(1, 8);

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
  k.value_bytes_max = static_cast<std::uint32_t>(
      rng.chance_ppm(50'000) ? rng.between(4096, 32 * 1024) : rng.between(0, 512));
  // A snapshot rewrites the whole state: with big values, every few writes rather than every one.
  k.snapshot_wal_bytes = std::max<std::uint64_t>(k.snapshot_wal_bytes, 16 * k.value_bytes_max);
  k.quiet_ms = 10000;
  k.client_timeout_ms = k.request_timeout_ms + 2000;

  if (!w.drops) k.drop_ppm = 0;
  if (!w.duplicates) k.duplicate_ppm = 0;
  if (!w.long_tails) k.long_tail_ppm = 0;
  if (!w.slow_fsync) k.fsync_slow_ppm = 0;
  if (!w.skew) {
    for (auto& v : k.clock_skew_ms) v = 0;
    for (auto& v : k.clock_drift_ppm) v = 0;
  }
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

std::vector<Fault> make_faults(Rng& rng, const Knobs& k, const Swarm& w, std::uint64_t span_ms) {
  std::vector<Fault> faults;
  const std::uint64_t partitions = w.partitions ? rng.between(1, 8) : 0;
  for (std::uint64_t i = 0; i < partitions; ++i) {
    Fault f;
    f.at_ms = rng.below(span_ms);
    f.kind = rng.chance_ppm(300'000) ? FaultKind::partition_one_way : FaultKind::partition;
    f.group = random_group(rng, k.nodes, static_cast<std::uint32_t>(rng.between(1, k.nodes / 2)));
    f.duration_ms = rng.between(200, 5000);
    faults.push_back(f);
  }
  const std::uint64_t crashes = w.crashes ? rng.between(2, 12) : 0;
  for (std::uint64_t i = 0; i < crashes; ++i) {
    Fault f;
    f.at_ms = rng.below(span_ms);
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
  if (w.disk_loss) {
    Fault f;
    f.at_ms = rng.below(span_ms);
    f.kind = FaultKind::disk_loss;
    f.group = random_group(rng, k.nodes, 1);
    f.duration_ms = rng.between(50, 5000);
    faults.push_back(f);
  }
  for (std::uint64_t i = w.clock_steps ? rng.between(1, 4) : 0; i > 0; --i) {
    Fault f;
    f.at_ms = rng.below(span_ms);
    f.kind = FaultKind::clock_step;
    f.group = random_group(rng, k.nodes, 1);
    f.step_ms = rng.between_signed(-8000, 8000);
    faults.push_back(f);
  }
  for (std::uint64_t i = w.clogging ? rng.between(1, 3) : 0; i > 0; --i) {
    Fault f;
    f.at_ms = rng.below(span_ms);
    f.kind = FaultKind::clog;
    // Unclogged in the group's order, which random_group sorted: shuffle it back.
    f.group = random_group(rng, k.nodes, static_cast<std::uint32_t>(rng.between(1, k.nodes - 1)));
    for (std::size_t j = 0; j + 1 < f.group.size(); ++j) {
      std::swap(f.group[j], f.group[j + rng.below(f.group.size() - j)]);
    }
    f.duration_ms = rng.between(500, 6000);
    faults.push_back(f);
  }
  sort_by_time(faults);
  return faults;
}

// Bridges come from their own streams, so that the rest of a seed's scenario is what it was
// before they existed.
void make_bridges(Rng& rng, Knobs& k, std::uint32_t keys, const Swarm& w) {
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
  if (!w.bridge_errors) k.bridge_error_ppm = 0;
  k.bridge_timeout_ms = rng.between(200, 2000);
  if (rng.chance_ppm(200'000)) k.pg_queue_max = rng.between(1, 4);
  k.legacy_negative_ttl_ms = rng.between(0, 5000);
  k.legacy_breaker_failures = static_cast<std::uint32_t>(rng.between(1, 8));
  k.legacy_breaker_open_ms = rng.between(100, 3000);
}

void make_bridge_faults(Rng& rng, const Knobs& k, std::vector<Fault>& faults,
                        std::uint64_t span_ms) {
  auto outages = [&](FaultKind kind) {
    for (std::uint64_t i = rng.below(4); i > 0; --i) {
      Fault f;
      f.at_ms = rng.below(span_ms);
      f.kind = kind;
      f.duration_ms = rng.between(200, 5000);
      faults.push_back(f);
    }
  };
  if (k.pg_mode != 0) outages(FaultKind::pg_outage);
  if (k.legacy) outages(FaultKind::legacy_outage);
  if (k.pg_mode == 1 && rng.chance_ppm(300'000)) {
    Fault f;
    f.at_ms = rng.below(span_ms);
    f.kind = FaultKind::wipe;
    f.duration_ms = rng.between(50, 2000);
    faults.push_back(f);
  }
  sort_by_time(faults);
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
  Rng swarm_rng = root.child("swarm");
  Rng shape_rng = root.child("shape");
  const Swarm swarm = make_swarm(swarm_rng);

  // The workload's shape: some seeds run long, some spread over many keys (hints pile up, hint
  // delivery takes many rounds); every seed has cold keys, each written once and never again, so
  // that a write lost mid-run is not hidden by a later write of the same key.
  const bool long_run = shape_rng.chance_ppm(100'000);
  const std::uint64_t span_ms = workload_span_ms * (long_run ? long_run_factor : 1);
  const std::uint64_t ops_factor = long_run ? long_run_factor : 1;
  const bool many_keys = shape_rng.chance_ppm(150'000);
  const auto cold_keys = static_cast<std::uint32_t>(shape_rng.between(4, 16));

  Scenario s;
  s.seed = seed;
  s.knobs = make_knobs(knob_rng, swarm);
  const auto hot_keys = static_cast<std::uint32_t>(work_rng.between(2, 12));
  const std::uint32_t hot = many_keys ? static_cast<std::uint32_t>(shape_rng.between(20, 200))
                                      : hot_keys;
  s.keys = hot + cold_keys;
  s.faults = make_faults(fault_rng, s.knobs, swarm, span_ms);
  Rng bridge_rng = root.child("bridges");
  make_bridges(bridge_rng, s.knobs, hot, swarm);
  Rng bridge_fault_rng = root.child("bridge-faults");
  make_bridge_faults(bridge_fault_rng, s.knobs, s.faults, span_ms);
  // Liveness with a core (its own stream): one node, or two of a larger cluster, stays down after
  // the heal; the rest must still fall quiet, converge and serve every key.
  Rng liveness_rng = root.child("liveness");
  if (liveness_rng.chance_ppm(kept_down_seeds_ppm)) {
    const std::uint32_t down =
        s.knobs.nodes >= 5 && s.knobs.replicas >= 3 && liveness_rng.chance_ppm(300'000) ? 2 : 1;
    for (NodeId n : random_group(liveness_rng, s.knobs.nodes, down)) {
      s.knobs.kept_down_mask |= std::uint64_t{1} << (n - 1);
    }
    // Half of them die mid-run, so that hints for them pile up while the workload goes on; and
    // half deliver few hints per round, so that hints that can never be delivered must not
    // starve the rest.
    if (liveness_rng.chance_ppm(500'000)) {
      s.knobs.kept_down_at_ms = liveness_rng.between(span_ms / 3, span_ms);
    }
    if (liveness_rng.chance_ppm(500'000)) {
      s.knobs.hint_deliveries_per_interval_max =
          std::min<std::uint64_t>(s.knobs.hint_deliveries_per_interval_max, liveness_rng.between(1, 4));
    }
  }
  // Damaged frames (a family of its own, from its own stream like the bridges): a bit flipped
  // on the wire, which the peer codec's checksum must refuse.
  Rng wire_rng = root.child("wire");
  if (wire_rng.chance_ppm(corrupt_on_ppm)) {
    s.knobs.corrupt_ppm = static_cast<std::uint32_t>(wire_rng.between(1, 20'000));
  }

  // Anti-entropy (its own stream): off in some seeds, and in others so thin that a refill of a
  // node takes many exchanges.
  Rng ae_rng = root.child("anti-entropy");
  if (ae_rng.chance_ppm(ae_off_ppm)) {
    s.knobs.ae_interval_ms = 0;
  } else {
    s.knobs.ae_interval_ms = ae_rng.between(100, 2000);
    // Thin only where values are small: a thin link refilling a node of big values would need
    // most of an hour of virtual time.
    if (ae_rng.chance_ppm(ae_thin_ppm) && s.knobs.value_bytes_max <= 512) {
      s.knobs.ae_bytes_per_s = ae_rng.between(1024, 16 * 1024);
    }
    const bool other_loss = std::any_of(s.faults.begin(), s.faults.end(), [](const Fault& f) {
      return f.kind == FaultKind::disk_loss;
    });
    if (ae_rng.chance_ppm(wiped_at_heal_ppm) && !other_loss && s.knobs.kept_down_mask == 0) {
      s.knobs.wiped_at_heal = static_cast<std::uint32_t>(ae_rng.between(1, s.knobs.nodes));
    }
  }

  // Tombstone collection (its own stream): where it can run (anti-entropy on, no bridges, strict
  // quorums), with a grace of a few seconds, yet longer than this seed's clocks and delays can
  // make nodes disagree. Seeds whose clocks and delays need more collect nothing.
  Rng gc_rng = root.child("tombstones");
  s.knobs.tombstone_grace_ms = 0;
  if (s.knobs.ae_interval_ms != 0 && s.knobs.pg_mode == 0 && !s.knobs.legacy &&
      !s.knobs.sloppy_quorum && gc_rng.chance_ppm(tombstone_gc_ppm)) {
    // What this seed needs (anti_entropy.h): hints expire at half the grace, so clocks must agree
    // within that; a write older than a tombstone can arrive up to two request timeouts plus a
    // message's delay after it, give or take the clocks.
    auto grace_min = [&] {
      const Knobs& k = s.knobs;
      const auto [lo, hi] = std::minmax_element(k.clock_skew_ms.begin(), k.clock_skew_ms.end());
      std::uint64_t clocks = static_cast<std::uint64_t>(*hi - *lo);
      std::uint64_t drift_ppm = 0;
      for (std::int32_t d : k.clock_drift_ppm) drift_ppm = std::max<std::uint64_t>(drift_ppm, std::abs(d));
      clocks += 2 * drift_ppm * (span_ms + 60'000) / 1'000'000;
      std::uint64_t linger = (k.latency_us_min + k.latency_us_jitter) / 1000 + 1;
      if (k.long_tail_ppm) linger += k.long_tail_us_max / 1000;
      if (k.fsync_slow_ppm) linger += k.fsync_slow_us_max / 1000;
      std::uint64_t clog = 0;
      for (const Fault& f : s.faults) {
        if (f.kind == FaultKind::clock_step) clocks += static_cast<std::uint64_t>(std::abs(f.step_ms));
        if (f.kind == FaultKind::clog) clog = std::max(clog, f.duration_ms);
      }
      linger += clog;
      return std::max(2 * clocks, 2 * k.request_timeout_ms + linger + clocks) + 1000;
    };
    // Most seeds whose clocks disagree too much for that get clocks ten times closer.
    if (grace_min() > tombstone_grace_ms_max && gc_rng.chance_ppm(800'000)) {
      for (auto& v : s.knobs.clock_skew_ms) v /= 10;
      for (auto& v : s.knobs.clock_drift_ppm) v /= 10;
      for (Fault& f : s.faults) f.step_ms /= 10;
    }
    if (const std::uint64_t min = grace_min(); min <= tombstone_grace_ms_max) {
      // Near the least it can be, so that deletes of the first half of the run get collected.
      s.knobs.tombstone_grace_ms = gc_rng.between(min, min + (tombstone_grace_ms_max - min) / 3);
      // Most of them cut one node off for longer than the grace: it misses deletes, keeps the
      // values they removed, and must not see their tombstones collected without it.
      if (gc_rng.chance_ppm(700'000)) {
        Fault f;
        f.at_ms = gc_rng.below(span_ms / 2);
        f.kind = FaultKind::partition;
        f.group = random_group(gc_rng, s.knobs.nodes, 1);
        f.duration_ms = s.knobs.tombstone_grace_ms + gc_rng.between(1000, 8000);
        s.faults.push_back(f);
        sort_by_time(s.faults);
      }
    }
  }

  // Membership (its own stream): heartbeats every 100 ms to 1 s, and a failure detector from
  // hair-trigger (phi 3: a few lost heartbeats) to patient (phi 12); off in some seeds.
  Rng members_rng = root.child("membership");
  if (members_rng.chance_ppm(heartbeats_off_ppm)) {
    s.knobs.heartbeat_interval_ms = 0;
  } else {
    s.knobs.heartbeat_interval_ms = members_rng.between(100, 1000);
    s.knobs.fd_phi_threshold_tenths = members_rng.between(30, 120);
  }

  // Removal (its own stream): most seeds with one node dead for good take it out of the cluster,
  // as an operator would with kvctl remove: mostly while the workload goes on, soon after the
  // death, before anti-entropy has made the survivors agree (then reads that move to the new
  // replicas too early, or pulls that skip a replica, lose writes); in some seeds after the heal.
  Rng remove_rng = root.child("remove");
  if (std::popcount(s.knobs.kept_down_mask) == 1 && s.knobs.heartbeat_interval_ms != 0 &&
      s.knobs.ae_interval_ms != 0 && !s.knobs.sloppy_quorum && s.knobs.nodes - 1 >= s.knobs.replicas &&
      remove_rng.chance_ppm(remove_seeds_ppm)) {
    if (s.knobs.kept_down_at_ms == 0 && remove_rng.chance_ppm(750'000)) {
      s.knobs.kept_down_at_ms = remove_rng.between(span_ms / 5, span_ms / 2);
    }
    s.knobs.remove_after_ms = remove_rng.chance_ppm(700'000) ? remove_rng.between(1, 1500)
                                                              : remove_rng.between(1500, 10'000);
  }

  const std::uint64_t clients = work_rng.between(3, 8);
  const std::uint64_t ops_total = work_rng.between(ops_total_min, ops_total_max) * ops_factor;
  const std::uint64_t ops_per_client = ops_total / clients;
  const auto mix_get_ppm = static_cast<std::uint32_t>(work_rng.between(200'000, 600'000));
  const auto mix_del_ppm = static_cast<std::uint32_t>(work_rng.between(50'000, 200'000));
  const std::uint64_t think_ms_max = 2 * span_ms / ops_per_client;
  s.clients.resize(clients);
  for (auto& ops : s.clients) {
    for (std::uint64_t i = 0; i < ops_per_client; ++i) {
      ops.push_back(make_op(work_rng, s.knobs, hot, mix_get_ppm, mix_del_ppm, think_ms_max));
    }
  }
  // Each cold key: one put at a random place in a random client's list, and up to two reads.
  for (std::uint32_t c = 0; c < cold_keys; ++c) {
    for (std::uint64_t n = shape_rng.between(1, 3); n > 0; --n) {
      ClientOp op = make_op(shape_rng, s.knobs, 1, 0, 0, think_ms_max);
      if (n > 1) op.op = OpType::get;
      op.key = hot + c;
      auto& ops = s.clients[shape_rng.below(clients)];
      ops.insert(ops.begin() + static_cast<std::ptrdiff_t>(shape_rng.below(ops.size() + 1)), op);
    }
  }
  // Bursts (some seeds): a client writes one key through one coordinator several times back to
  // back, as read-modify-write loops do, so that a node gets a newer write of a key while its
  // last one is still on its way to a replica or to PostgreSQL. From a stream of their own, so
  // other seeds keep their workload.
  Rng burst_rng = root.child("bursts");
  if (burst_rng.chance_ppm(burst_seeds_ppm)) {
    for (auto& ops : s.clients) {
      for (std::size_t i = 1; i < ops.size(); ++i) {
        if (!burst_rng.chance_ppm(burst_op_ppm) || ops[i - 1].key >= hot || ops[i].key >= hot) {
          continue;  // cold keys keep their one write
        }
        ops[i].op = OpType::put;
        ops[i].key = ops[i - 1].key;
        ops[i].coordinator = ops[i - 1].coordinator;
        ops[i].think_ms = 0;
      }
    }
  }
  return s;
}

}  // namespace kv::sim
