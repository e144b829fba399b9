// The simulated world (see world.h): event loop, processes, disks and network. Clients and the
// final phase are in workload.cc.
#include "sim/world.h"

#include <algorithm>
#include <cassert>
#include <string_view>
#include <vector>

#include "core/hash.h"
#include "core/wal.h"
#include "net/peer_codec.h"

namespace kv::sim {

namespace {

std::uint64_t mix(std::uint64_t h, std::uint64_t v) {
  h ^= v + 0x9e3779b97f4a7c15ULL + (h << 6) + (h >> 2);
  h ^= h >> 31;
  h *= 0xbf58476d1ce4e5b9ULL;
  return h ^ (h >> 29);
}

const char* event_name(int kind) {
  static const char* names[] = {"deliver", "tick", "fsync", "client", "client-timeout",
                                "fault", "fault-end", "restart", "heal", "final-reads",
                                "final-check", "bridge", "quiet-poll", "die", "remove"};
  return names[kind];
}

std::string describe(const Message& m) {
  return std::visit(
      [&](const auto& b) -> std::string {
        using T = std::decay_t<decltype(b)>;
        std::string s = "n" + std::to_string(m.from) + "->n" + std::to_string(m.to) + " ";
        if constexpr (std::is_same_v<T, ReadReq>) s += "ReadReq";
        if constexpr (std::is_same_v<T, ReadResp>) {
          s += "ReadResp " + (b.record ? b.record->version.to_string() : std::string("none"));
        }
        if constexpr (std::is_same_v<T, WriteReq>) {
          s += "WriteReq kind=" + std::to_string(static_cast<int>(b.kind)) + " " +
               b.record.version.to_string() + (b.record.tombstone ? " tombstone" : "") +
               (b.hint_for ? " hint_for=n" + std::to_string(b.hint_for) : "");
        }
        if constexpr (std::is_same_v<T, WriteAck>) s += "WriteAck " + b.version.to_string();
        if constexpr (std::is_same_v<T, AeTreeReq>) s += "AeTreeReq ranges=" + std::to_string(b.ranges.size());
        if constexpr (std::is_same_v<T, AeTreeResp>) s += "AeTreeResp ranges=" + std::to_string(b.ranges.size());
        if constexpr (std::is_same_v<T, AeKeysReq>) {
          s += "AeKeysReq buckets=" + std::to_string(b.buckets.size()) + " keys=" + std::to_string(b.keys.size());
        }
        if constexpr (std::is_same_v<T, AeKeysResp>) s += "AeKeysResp want=" + std::to_string(b.want.size());
        if constexpr (std::is_same_v<T, Heartbeat>) {
          s += "Heartbeat generation=" + std::to_string(b.generation) + " table=" + std::to_string(b.table);
        }
        if constexpr (std::is_same_v<T, Gossip>) s += "Gossip members=" + std::to_string(b.members.size());
        if constexpr (requires { b.req; }) s += " req=" + std::to_string(b.req);
        if constexpr (keyed_message_v<T>) s += " key=" + b.key;
        return s;
      },
      m.body);
}

std::uint64_t digest(const Message& m) {
  return std::visit(
      [&](const auto& b) {
        using T = std::decay_t<decltype(b)>;
        std::uint64_t h = mix(m.from, m.to);
        if constexpr (keyed_message_v<T>) {
          h = mix(h, mix(b.req, hash64(b.key)));
        } else if constexpr (requires { b.req; }) {
          h = mix(h, b.req);
        }
        if constexpr (std::is_same_v<T, Heartbeat>) h = mix(h, mix(b.generation, b.table));
        if constexpr (std::is_same_v<T, Gossip>) h = mix(h, b.members.size());
        if constexpr (std::is_same_v<T, AeTreeReq> || std::is_same_v<T, AeTreeResp>) h = mix(h, b.ranges.size());
        if constexpr (std::is_same_v<T, AeKeysReq>) h = mix(h, mix(b.buckets.size(), b.keys.size()));
        if constexpr (std::is_same_v<T, AeKeysResp>) h = mix(h, b.want.size());
        if constexpr (std::is_same_v<T, WriteReq>) {
          h = mix(h, b.record.version.physical_ms ^ b.record.version.counter);
        }
        return mix(h, m.body.index());
      },
      m.body);
}

}  // namespace

// Every probe a run can count, registered before the run starts, so that a report lists the
// ones no seed reached as "never hit": the world's own faults and paths, then every counter of
// the replicas (core/stats.h).
namespace {

const std::vector<std::string_view>& probe_names() {
  static const std::vector<std::string_view> names = [] {
    std::vector<std::string_view> all = {
        "bridge_error", "bridge_reply_lost", "client_timeout", "clock_step_backward",
        "clock_step_forward", "clog", "cluster_wipe", "crash", "crash_after_ack",
        "crash_lost_unsynced", "crash_torn_garbage", "disk_loss", "disk_loss_at_heal", "frame_damaged", "frame_refused",
        "fsync_slow", "kept_down_after_heal", "remove_started", "remove_refused", "removal_reads_moved",
        "legacy_outage", "message_clogged", "message_dropped", "message_duplicated",
        "message_long_tail", "message_partitioned", "partition", "partition_one_way",
        "pg_async_lost_in_crash", "pg_outage", "power_loss", "quiet_check_key_exempt",
        "recovered_from_snapshot", "snapshot_taken", "wal_corrupt_tail_cut", "wal_torn_tail_cut",
    };
    for (const StatField& f : replica_stat_fields) all.push_back(f.name);
    return all;
  }();
  return names;
}

}  // namespace

const std::map<std::string, std::string, std::less<>>& probes_not_required() {
  static const std::map<std::string, std::string, std::less<>> reasons = {
      {"invalid", "the simulated clients send only valid requests; invalid input is covered by "
                  "tests/testdata/protocol/invalid_input.txt and the fuzzers"},
      {"ae_refused", "the simulated nodes share one ring and send only well-formed anti-entropy "
                     "messages (damaged frames die at the checksum); foreign input is covered by "
                     "tests/peer_codec_test.cc and the fuzzers"},
      {"gossip_refused", "the simulated nodes share one list of members; a table naming a stranger "
                         "is covered by tests/membership_test.cc"},
      {"hints_dropped_with_tombstone",
       "a second line of defence: a hint older than a tombstone has expired (at half the grace) "
       "before the tombstone can be collected (at the whole grace), unless hint delivery lags a "
       "whole half grace behind; tests/anti_entropy_test.cc drives it"},
  };
  return reasons;
}

void World::probe(std::string_view name, std::uint64_t n) {
  auto it = result_.probes.find(name);
  assert(it != result_.probes.end() && "a probe missing from probe_names()");
  it->second += n;
}

World::World(const Scenario& scenario, const RunOptions& options)
    : sc_(scenario),
      options_(options),
      net_rng_(Rng(scenario.seed).child("network")),
      disk_rng_(Rng(scenario.seed).child("disk")),
      crash_rng_(Rng(scenario.seed).child("crash")),
      bridge_rng_(Rng(scenario.seed).child("bridge")),
      wire_rng_(Rng(scenario.seed).child("wire-damage")),
      frame_bytes_max_(peer_frame_bytes_max_for(replica_defaults.key_bytes_max,
                                                replica_defaults.value_bytes_max)),
      ring_(scenario.knobs.vnodes_per_node) {
  const Knobs& k = sc_.knobs;
  assert(k.nodes >= 1 && k.clock_skew_ms.size() == k.nodes && k.clock_drift_ppm.size() == k.nodes);
  nodes_.resize(k.nodes);
  for (NodeId id = 1; id <= k.nodes; ++id) {
    node(id).id = id;
    ring_.add_node(id);
  }
  clients_.resize(sc_.clients.size());
  result_.seed = sc_.seed;
  for (std::string_view name : probe_names()) result_.probes.emplace(name, 0);
}

RunResult World::run() {
  for (Node& n : nodes_) boot(n);
  for (std::size_t i = 0; i < sc_.faults.size(); ++i) {
    schedule(sc_.faults[i].at_ms * 1000, Ev::fault_start, 0, i);
  }
  for (std::uint32_t c = 0; c < clients_.size(); ++c) {
    if (!sc_.clients[c].empty()) {
      schedule(sc_.clients[c][0].think_ms * 1000, Ev::client_next, 0, c);
    }
  }
  if (sc_.knobs.kept_down_mask && sc_.knobs.kept_down_at_ms) {
    schedule(sc_.knobs.kept_down_at_ms * 1000, Ev::die, 0);
  }
  maybe_heal();  // a scenario without operations heals at once
  while (!queue_.empty() && !finished_) {
    const Event e = queue_.top();
    queue_.pop();
    now_us_ = e.at_us;
    if (++result_.events > run_events_max || now_us_ > run_sim_time_us_max) {
      violation("liveness", "the run did not finish within " + std::to_string(run_events_max) +
                                " events and " + std::to_string(run_sim_time_us_max / 1000000) +
                                " virtual seconds");
      break;
    }
    step(e);
    if (options_.keep_event_hashes) result_.event_hashes.push_back(trace_hash_);
  }
  if (!finished_ && result_.violations.empty()) {
    violation("liveness", "the event queue ran dry before the final check");
  }
  result_.trace_hash = trace_hash_;
  result_.sim_time_us = now_us_;
  for (const Op& op : history_) {
    if (op.final_read) continue;
    ++result_.ops_invoked;
    if (op.outcome == Outcome::ok) ++result_.ops_ok;
    if (op.outcome == Outcome::failed) ++result_.ops_failed;
    if (op.outcome == Outcome::unknown) ++result_.ops_unknown;
  }
  return std::move(result_);
}

void World::schedule(std::uint64_t at_us, Ev kind, NodeId n, std::uint64_t a, std::uint64_t b) {
  queue_.push(Event{at_us, seq_++, kind, n, a, b});
}

void World::trace(const Event& e, const std::string& what) {
  if (!options_.trace_line) return;
  std::string line = std::to_string(e.at_us / 1000) + "." + std::to_string(e.at_us % 1000 + 1000).substr(1) +
                     "ms " + event_name(static_cast<int>(e.kind));
  if (e.node) line += " n" + std::to_string(e.node);
  if (!what.empty()) line += " " + what;
  options_.trace_line(line);
}

std::uint64_t World::local_ms(NodeId id) const {
  const auto i = id - 1;
  const auto t = static_cast<std::int64_t>(now_us_);
  const std::int64_t drifted = t + t * sc_.knobs.clock_drift_ppm[i] / static_cast<std::int64_t>(ppm_one);
  return static_cast<std::uint64_t>(static_cast<std::int64_t>(clock_base_ms) +
                                    sc_.knobs.clock_skew_ms[i] + nodes_[i].clock_stepped_ms +
                                    drifted / 1000);
}

void World::step(const Event& e) {
  trace_hash_ = mix(mix(trace_hash_, e.at_us), mix(static_cast<std::uint64_t>(e.kind) << 32 | e.node,
                                                   mix(e.a, e.b)));
  switch (e.kind) {
    case Ev::deliver: return on_deliver(e.a);
    case Ev::tick: trace(e, ""); return on_tick(node(e.node), e.a, e.b);
    case Ev::fsync_done: trace(e, ""); return on_fsync_done(node(e.node), e.a);
    case Ev::client_next: return client_next(static_cast<std::uint32_t>(e.a));
    case Ev::client_timeout: return on_client_timeout(e.a);
    case Ev::fault_start:
    case Ev::fault_end: {
      if (!faults_active_) return;
      const Fault& f = sc_.faults[e.a];
      if (f.kind == FaultKind::pg_outage || f.kind == FaultKind::legacy_outage) {
        const bool pg = f.kind == FaultKind::pg_outage;
        const int delta = e.kind == Ev::fault_start ? 1 : -1;
        (pg ? pg_down_ : legacy_down_) += delta;
        trace(e, std::string(pg ? "PostgreSQL" : "legacy API") + (delta > 0 ? " down" : " up"));
        if (delta > 0) {
          probe(pg ? "pg_outage" : "legacy_outage");
          schedule(now_us_ + f.duration_ms * 1000, Ev::fault_end, 0, e.a);
        }
        return;
      }
      if (f.kind == FaultKind::wipe) {
        trace(e, "the whole cluster loses its disks");
        return wipe_cluster(f);
      }
      if (f.kind == FaultKind::disk_loss) {
        for (NodeId id : f.group) {
          if (!node(id).up) continue;
          trace(e, "n" + std::to_string(id) + " loses its disk");
          lose_disk(node(id), f);
        }
        return;
      }
      if (f.kind == FaultKind::clock_step) {
        for (NodeId id : f.group) {
          node(id).clock_stepped_ms += f.step_ms;
          if (f.step_ms < 0) node(id).clock_stepped_back_ms += static_cast<std::uint64_t>(-f.step_ms);
          trace(e, "n" + std::to_string(id) + " clock steps " + std::to_string(f.step_ms) + "ms");
          mark(Mark::Kind::clock_step, id, 0, 0, [&] {
            return "clock steps " + std::string(f.step_ms > 0 ? "+" : "") + std::to_string(f.step_ms) + " ms";
          });
          probe(f.step_ms < 0 ? "clock_step_backward" : "clock_step_forward");
        }
        return;
      }
      if (f.kind == FaultKind::clog) {
        // Each node unclogs in its turn: the first after duration/size, the last at the end.
        for (std::size_t i = 0; i < f.group.size(); ++i) {
          Node& n = node(f.group[i]);
          const std::uint64_t until =
              now_us_ + f.duration_ms * 1000 * (i + 1) / f.group.size();
          n.clogged_until_us = std::max(n.clogged_until_us, until);
          trace(e, "n" + std::to_string(n.id) + " clogged until " +
                       std::to_string(until / 1000) + "ms");
          mark(Mark::Kind::clog, n.id, 0, until);
        }
        probe("clog");
        return;
      }
      if (f.kind == FaultKind::crash) {
        if (f.group.size() > 1) probe("power_loss");
        for (NodeId id : f.group) {
          Node& n = node(id);
          if (!n.up) continue;
          trace(e, "crash n" + std::to_string(id) + " torn_mode=" + std::to_string(f.torn_mode) +
                       (f.after_ack ? " (armed: after its next acknowledgement)" : ""));
          if (f.after_ack) {
            n.crash_after_ack = e.a;
          } else {
            crash_and_schedule_restart(n, f);
          }
        }
        return;
      }
      trace(e, std::string(f.kind == FaultKind::partition ? "partition" : "one-way partition") +
                   " of " + std::to_string(f.group.size()) + " node(s)");
      set_partition(f, e.kind == Ev::fault_start ? 1 : -1);
      for (NodeId id : f.group) {
        mark(e.kind == Ev::fault_start ? Mark::Kind::cut : Mark::Kind::uncut, id, 0, e.a, [&] {
          return f.kind == FaultKind::partition ? "partitioned from the rest"
                                                : "cut off from the rest (its messages out are lost)";
        });
      }
      if (e.kind == Ev::fault_start) {
        probe(f.kind == FaultKind::partition ? "partition" : "partition_one_way");
        schedule(now_us_ + f.duration_ms * 1000, Ev::fault_end, 0, e.a);
      }
      return;
    }
    case Ev::restart: {
      Node& n = node(e.node);
      if (n.up || n.incarnation != e.a || n.kept_down) return;
      trace(e, "");
      return boot(n);
    }
    case Ev::heal: trace(e, ""); return heal();
    case Ev::final_reads: trace(e, ""); return next_final_read();
    case Ev::final_check: trace(e, ""); return final_check();
    case Ev::bridge_reply: return on_bridge_reply(e.a);
    case Ev::quiet_poll: return poll_quiet();
    case Ev::die:
      trace(e, "dies for good");
      for (Node& n : nodes_) {
        if (doomed(n)) die(n);
      }
      return;
    case Ev::remove: return remove_dead(e.a);
  }
}

// ---------------------------------------------------------------------------------------------
// Processes and disks

// Starts a node from what its disk kept: the shared recovery path, then a fresh replica.
void World::boot(Node& n) {
  auto recovered = recover(n.snapshot ? std::optional<std::string_view>(*n.snapshot) : std::nullopt, n.wal);
  if (!recovered) {
    violation("recovery", "n" + std::to_string(n.id) + ": " + recovered.error().message());
    finished_ = true;
    return;
  }
  Recovered& r = recovered.value();
  check_recovered(n, r.state);
  if (r.wal_tail != WalTail::clean) probe(r.wal_tail == WalTail::torn ? "wal_torn_tail_cut" : "wal_corrupt_tail_cut");
  if (n.snapshot && n.incarnation > 0) probe("recovered_from_snapshot");
  n.wal.resize(r.wal_valid_bytes);
  n.wal_synced = n.wal.size();
  ++n.incarnation;
  n.up = true;
  if (n.incarnation > 1) {
    mark(Mark::Kind::restart, n.id, 0, 0, [&] {
      return "restarts (incarnation " + std::to_string(n.incarnation) + ")";
    });
  }
  n.tick_at_us.reset();
  ++n.tick_generation;

  n.replica.emplace(replica_config(n.id, n.incarnation), std::move(r.state), local_ms(n.id));
  after_input(n);
}

// The replica's configuration: the seed's knobs, for node `self` in its `incarnation`.
ReplicaConfig World::replica_config(NodeId self, std::uint64_t incarnation) const {
  ReplicaConfig cfg;
  const Knobs& k = sc_.knobs;
  cfg.self = self;
  for (NodeId id = 1; id <= k.nodes; ++id) cfg.members.push_back(id);
  cfg.vnodes_per_node = k.vnodes_per_node;
  cfg.replicas = k.replicas;
  cfg.read_quorum = k.read_quorum;
  cfg.write_quorum = k.write_quorum;
  cfg.sloppy_quorum = k.sloppy_quorum;
  cfg.request_timeout_ms = k.request_timeout_ms;
  cfg.retry_interval_ms = k.retry_interval_ms;
  cfg.sloppy_after_ms = k.sloppy_after_ms;
  cfg.hint_interval_ms = k.hint_interval_ms;
  cfg.ae_interval_ms = k.ae_interval_ms;
  cfg.ae_bytes_per_s = k.ae_bytes_per_s;
  cfg.tombstone_grace_ms = k.tombstone_grace_ms;
  cfg.heartbeat_interval_ms = k.heartbeat_interval_ms;
  cfg.fd_phi_threshold = static_cast<double>(k.fd_phi_threshold_tenths) / 10.0;
  cfg.peer_addr = "sim:" + std::to_string(self);
  cfg.tick_interval_ms = k.tick_interval_ms;
  cfg.hints_max = k.hints_max;
  cfg.requests_in_flight_max = k.requests_in_flight_max;
  cfg.hint_deliveries_per_interval_max = k.hint_deliveries_per_interval_max;
  cfg.request_id_base = incarnation << 40;
  cfg.pg_mode = k.pg_mode == 1 ? PgMode::sync : k.pg_mode == 2 ? PgMode::async : PgMode::off;
  cfg.pg_queue_max = k.pg_queue_max;
  cfg.legacy = k.legacy;
  cfg.legacy_negative_ttl_ms = k.legacy_negative_ttl_ms;
  cfg.legacy_breaker_failures = k.legacy_breaker_failures;
  cfg.legacy_breaker_open_ms = k.legacy_breaker_open_ms;
  return cfg;
}

// The process dies: what was not synced is lost, wholly or torn (see Fault::torn_mode). Modes 2
// and 3 keep the tail's length with bytes that were never written: zeros or junk, in a record
// whose header looks whole. Only the checksum can tell.
void World::crash(Node& n, std::uint32_t torn_mode) {
  probe("crash");
  mark(Mark::Kind::crash, n.id, 0, 0, [&] {
    static constexpr const char* kept[] = {"nothing unsynced", "a prefix of the unsynced tail",
                                           "the unsynced tail's length, garbage from some point",
                                           "the unsynced tail with some sectors never written"};
    return std::string("crash; the disk keeps ") + kept[torn_mode % 4];
  });
  n.crashed_at_us.push_back(now_us_);
  lost_to_crash(n);
  collect_stats(*n.replica);
  n.up = false;
  n.crash_after_ack.reset();
  n.replica.reset();
  n.held.clear();
  n.fsync_in_flight = false;
  const std::size_t unsynced = n.wal.size() - n.wal_synced;
  if (unsynced > 0) probe("crash_lost_unsynced");
  if (torn_mode == 0 || unsynced == 0) {
    n.wal.resize(n.wal_synced);
  } else if (torn_mode == 1) {
    n.wal.resize(n.wal_synced + crash_rng_.below(unsynced + 1));
  } else if (torn_mode == 2) {
    const std::size_t from = n.wal_synced + crash_rng_.below(unsynced);
    const bool zeros = crash_rng_.chance_ppm(500'000);
    for (std::size_t i = from; i < n.wal.size(); ++i) {
      n.wal[i] = zeros ? '\0' : static_cast<char>(crash_rng_.next());
    }
  } else {
    // The disk wrote the tail's 512-byte sectors in any order and the crash caught it half way.
    constexpr std::size_t sector_bytes = 512;
    for (std::size_t start = n.wal_synced; start < n.wal.size();) {
      const std::size_t end = std::min(n.wal.size(), (start / sector_bytes + 1) * sector_bytes);
      if (crash_rng_.chance_ppm(500'000)) {
        const bool zeros = crash_rng_.chance_ppm(500'000);
        for (std::size_t i = start; i < end; ++i) {
          n.wal[i] = zeros ? '\0' : static_cast<char>(crash_rng_.next());
        }
      }
      start = end;
    }
    probe("crash_torn_garbage");
  }
}

// Takes the replica's batch and holds it until every byte it appended is durable (group commit:
// one fsync covers every batch that arrived while the previous one was running).
void World::after_input(Node& n) {
  if (!n.up) return;
  if (std::string broken = n.replica->check_invariants(); !broken.empty()) {
    violation("invariant", "n" + std::to_string(n.id) + ": " + broken);
    finished_ = true;
    return;
  }
  Ready ready = n.replica->take_ready();
  if (!reads_moved_checked_ && removing() != 0 && n.replica->members().at(removing()).moved) {
    check_reads_moved(n);
  }
  if (issuing_) {  // the request just handed over: its peer messages name its internal id
    for (const Message& m : ready.messages) {
      std::visit([&](const auto& b) {
        if constexpr (requires { b.req; }) by_internal_.emplace(std::pair{n.id, b.req}, *issuing_);
      }, m.body);
    }
    issuing_.reset();
  }
  for (const ClientReply& r : ready.replies) {
    if (auto it = by_request_.find(r.id); it != by_request_.end()) history_[it->second].decided = true;
  }
  for (const auto& [target, key] : ready.hints_refused) {
    exempt_at_quiet(key, [&] { return "n" + std::to_string(n.id) + " refused a hint for it (hints_max)"; },
                    true);
  }
  if (ready.next_tick_ms) {
    const std::uint64_t local = local_ms(n.id);
    const std::uint64_t wait_ms = *ready.next_tick_ms > local ? *ready.next_tick_ms - local : 0;
    const std::uint64_t at = now_us_ + wait_ms * 1000;
    if (!n.tick_at_us || at < *n.tick_at_us) {
      n.tick_at_us = at;
      schedule(at, Ev::tick, n.id, n.incarnation, ++n.tick_generation);
    }
  }
  for (const WalEntry& e : ready.persist) {
    wal_encode(e, n.wal);
    if (const auto* drop = std::get_if<WalDrop>(&e)) on_collected(n, *drop);
  }
  if (ready.has_outputs()) n.held.push_back(Held{std::move(ready), n.wal.size()});
  release_durable(n);
  start_fsync(n);
}

// A node collected (dropped) a tombstone: kept for the checks, and C6 at that moment: no replica
// that is up still holds a value the tombstone removed (anti-entropy would spread it back).
void World::on_collected(const Node& n, const WalDrop& drop) {
  if (options_.trace_line) {
    trace(Event{now_us_, 0, Ev::tick, n.id, 0, 0},
          "drops the tombstone of " + drop.key + " at " + drop.version.to_string());
  }
  collected_[drop.key].push_back(Collected{now_us_, n.id, drop.version});
  for (NodeId o : ring_.preference_list(drop.key, sc_.knobs.replicas)) {
    const Node& peer = node(o);
    if (o == n.id || !peer.up) continue;
    const Record* held = peer.replica->state().store.find(drop.key);
    if (held && !held->tombstone && held->version < drop.version) {
      violation("C6", "n" + std::to_string(n.id) + " collected the tombstone of " + drop.key +
                          " at version " + drop.version.to_string() + " while n" + std::to_string(o) +
                          ", one of its replicas, still holds the value at " +
                          held->version.to_string() + " that it removed");
    }
  }
}

void World::release_durable(Node& n) {
  while (n.up && !n.held.empty() && n.held.front().sync_point <= n.wal_synced) {
    Held h = std::move(n.held.front());
    n.held.pop_front();
    release(n, h.ready);
  }
}

void World::release(Node& n, Ready& ready) {
  bool acked = false;
  for (const Message& m : ready.messages) {
    send(m);
    const auto* ack = std::get_if<WriteAck>(&m.body);
    acked = acked || (ack && ack->kind == WriteKind::client);
  }
  for (const ClientReply& r : ready.replies) on_reply(r);
  for (const BridgeCall& c : ready.bridge_calls) call_bridge(n, c);
  if (acked && n.crash_after_ack && faults_active_) {
    probe("crash_after_ack");
    crash_and_schedule_restart(n, sc_.faults[*n.crash_after_ack]);
  }
}

void World::crash_and_schedule_restart(Node& n, const Fault& f) {
  crash(n, f.torn_mode);
  schedule(now_us_ + f.duration_ms * 1000, Ev::restart, n.id, n.incarnation);
}

void World::start_fsync(Node& n) {
  if (!n.up || n.fsync_in_flight || n.wal_synced == n.wal.size()) return;
  const Knobs& k = sc_.knobs;
  std::uint64_t us = k.fsync_us_min + disk_rng_.below(k.fsync_us_jitter + 1);
  if (faults_active_ && disk_rng_.chance_ppm(k.fsync_slow_ppm)) {
    us += disk_rng_.long_tail(k.fsync_slow_us_max);
    probe("fsync_slow");
  }
  n.fsync_in_flight = true;
  n.fsync_target = n.wal.size();
  schedule(now_us_ + us, Ev::fsync_done, n.id, n.incarnation);
}

void World::on_fsync_done(Node& n, std::uint64_t incarnation) {
  if (!n.up || n.incarnation != incarnation || !n.fsync_in_flight) return;
  n.fsync_in_flight = false;
  n.wal_synced = n.fsync_target;
  release_durable(n);
  maybe_snapshot(n);
  start_fsync(n);
}

// Once the log is long and wholly durable, the state is written as a snapshot (atomically, as
// write-to-temporary, fsync, rename would) and the log starts over: recovery time stays bounded.
void World::maybe_snapshot(Node& n) {
  if (!n.up || n.wal.size() < sc_.knobs.snapshot_wal_bytes || n.wal_synced != n.wal.size()) return;
  n.snapshot = snapshot_encode(n.replica->state());
  n.wal.clear();
  n.wal_synced = 0;
  probe("snapshot_taken");
  check_snapshot(n);
}

// A snapshot is checked the moment it is written: recovering it alone must give back exactly the
// state it was taken from, every record and every hint. A restart may come much later, or never.
void World::check_snapshot(const Node& n) {
  auto back = recover(std::string_view(*n.snapshot), std::string_view());
  const DurableState& live = n.replica->state();
  if (!back) {
    return violation("snapshot", "n" + std::to_string(n.id) + ": the snapshot just written " +
                                     "does not recover: " + back.error().message());
  }
  if (back.value().state.store == live.store && back.value().state.hints.hints() == live.hints.hints()) {
    return;
  }
  std::string diff;
  for (const Store::Entry* e : live.store.sorted()) {
    const auto r = back.value().state.store.get(e->first);
    if (r != e->second) {
      diff = e->first + ": live " + e->second.version.to_string() + ", recovered " +
             (r ? r->version.to_string() + (r->tombstone ? " tombstone" : "") : "nothing");
      break;
    }
  }
  violation("snapshot", "n" + std::to_string(n.id) + ": recovering the snapshot just written " +
                            "gives another state (" + std::to_string(live.store.size()) +
                            " records and " + std::to_string(live.hints.size()) +
                            " hints live, " + std::to_string(back.value().state.store.size()) +
                            " and " + std::to_string(back.value().state.hints.size()) +
                            " recovered)" + (diff.empty() ? "" : "; first difference: " + diff));
}

void World::on_tick(Node& n, std::uint64_t incarnation, std::uint64_t generation) {
  if (!n.up || n.incarnation != incarnation || n.tick_generation != generation) return;
  n.tick_at_us.reset();
  n.replica->on_tick(local_ms(n.id));
  after_input(n);
}

// ---------------------------------------------------------------------------------------------
// Bridges: PostgreSQL is a version-guarded table, the legacy API a fixed map. Each call is
// answered after a latency; while a service is down a call is refused at once or times out;
// otherwise it may fail, and a failing write may have been applied before its reply was lost.
// The service acts when it answers, whatever became of the node that called.

std::optional<std::string> World::legacy_value(const std::string& key) const {
  for (std::uint32_t k = 0; k < sc_.keys && k < 64; ++k) {
    if ((sc_.knobs.legacy_key_mask >> k & 1) && key_name(k) == key) return "legacy." + key;
  }
  return std::nullopt;
}

void World::call_bridge(Node& n, const BridgeCall& call) {
  const Knobs& k = sc_.knobs;
  BridgeInFlight b{n.id, n.incarnation, call};
  const bool pg = call.kind != BridgeKind::legacy_fetch;
  std::uint64_t us = k.bridge_us_min + bridge_rng_.below(k.bridge_us_jitter + 1);
  if ((pg ? pg_down_ : legacy_down_) > 0) {
    b.fails = true;
    if (bridge_rng_.chance_ppm(500'000)) {
      b.detail = "connection refused";
    } else {
      b.detail = "timed out";
      us = k.bridge_timeout_ms * 1000;
    }
  } else if (faults_active_ && bridge_rng_.chance_ppm(k.bridge_error_ppm)) {
    b.fails = true;
    b.applied_anyway = call.kind == BridgeKind::pg_write && bridge_rng_.chance_ppm(500'000);
    b.detail = b.applied_anyway ? "connection lost after commit" : "server error";
    probe(b.applied_anyway ? "bridge_reply_lost" : "bridge_error");
  }
  const std::uint64_t id = seq_;
  bridge_in_flight_.emplace(id, std::move(b));
  schedule(now_us_ + us, Ev::bridge_reply, n.id, id);
}

void World::on_bridge_reply(std::uint64_t id) {
  auto it = bridge_in_flight_.find(id);
  assert(it != bridge_in_flight_.end());
  const BridgeInFlight b = std::move(it->second);
  bridge_in_flight_.erase(it);
  BridgeReply reply{b.call.id, b.call.kind, {}, {}, {}};
  if (b.fails) {
    reply.error = make_error_code(Errc::unavailable);
    reply.detail = std::string(bridge_name(b.call.kind)) + ": " + b.detail;
  }
  if (!b.fails || b.applied_anyway) {
    if (b.call.kind == BridgeKind::pg_write) {
      auto [row, fresh] = pg_table_.try_emplace(b.call.key, *b.call.record);
      if (!fresh && row->second.version < b.call.record->version) row->second = *b.call.record;
    } else if (b.call.kind == BridgeKind::pg_lookup && !b.fails) {
      if (auto row = pg_table_.find(b.call.key); row != pg_table_.end()) reply.record = row->second;
    } else if (!b.fails) {
      if (auto v = legacy_value(b.call.key)) reply.record = Record{Version{}, false, *v};
    }
  }
  trace_hash_ = mix(trace_hash_, mix(b.call.id, static_cast<std::uint64_t>(b.fails)));
  Node& n = node(b.node);
  if (options_.trace_line) {
    trace(Event{now_us_, 0, Ev::bridge_reply, b.node, 0, 0},
          std::string(bridge_name(b.call.kind)) + " " + b.call.key +
              (b.call.record ? " " + b.call.record->version.to_string() : "") + " -> " +
              (b.fails ? reply.detail + (b.applied_anyway ? " (applied)" : "")
                       : reply.record ? reply.record->version.to_string() +
                                            (reply.record->tombstone ? " tombstone" : "")
                                      : "none") +
              (!n.up || n.incarnation != b.incarnation ? " (caller gone)" : ""));
  }
  if (!n.up || n.incarnation != b.incarnation) return;
  n.replica->on_bridge_reply(reply, local_ms(n.id));
  after_input(n);
}

// Whole-cluster loss: every node down at once, every disk gone; they come back empty. Only
// PostgreSQL (sync mode) still has the acknowledged writes.
void World::wipe_cluster(const Fault& f) {
  probe("cluster_wipe");
  // Only PostgreSQL holds what was written so far; reads bring it back, key by key.
  for (const Op& op : history_) {
    if (op.op != OpType::get) {
      exempt_at_quiet(op.key, [] { return "the whole cluster lost its disks after it was written"; }, false);
    }
  }
  for (Node& n : nodes_) {
    if (n.up) crash(n, 0);
    n.wal.clear();
    n.wal_synced = 0;
    n.snapshot.reset();
    schedule(now_us_ + f.duration_ms * 1000, Ev::restart, n.id, n.incarnation);
  }
  replica_floor_.clear();
  disk_losses_.push_back(DiskLoss{0, now_us_, now_us_ + f.duration_ms * 1000});
}

// One node loses its disk: it crashes and comes back empty. Its keys now live on N-1 replicas
// until reads repair them (no anti-entropy yet), and whatever hints it held are gone.
void World::lose_disk(Node& n, const Fault& f) {
  probe("disk_loss");
  mark(Mark::Kind::disk_loss, n.id, 0, 0, [] { return "loses its disk: it comes back empty"; });
  for (const auto& [hint_key, record] : n.replica->state().hints.hints()) {
    exempt_at_quiet(hint_key.second,
                    [&] { return "a hint for it was lost with n" + std::to_string(n.id) + "'s disk"; }, false);
  }
  crash(n, 0);
  n.wal.clear();
  n.wal_synced = 0;
  n.snapshot.reset();
  disk_losses_.push_back(DiskLoss{n.id, now_us_, now_us_ + f.duration_ms * 1000});
  for (auto it = replica_floor_.begin(); it != replica_floor_.end();) {
    it = it->first.first == n.id ? replica_floor_.erase(it) : std::next(it);
  }
  schedule(now_us_ + f.duration_ms * 1000, Ev::restart, n.id, n.incarnation);
}

void World::exempt_at_quiet(const std::string& key, const std::function<std::string()>& why,
                            bool repaired_by_anti_entropy) {
  if (repaired_by_anti_entropy && anti_entropy()) return;
  if (raw_exempt_.insert(key).second) raw_exempt_why_[key] = why();
}

// Async mode: the write-behind queue lives in memory, so a coordinator that crashes loses the
// acknowledged writes it had not yet handed to PostgreSQL (a known gap, counted as a probe).
void World::lost_to_crash(const Node& n) {
  if (sc_.knobs.pg_mode != 2) return;
  for (std::size_t i = 0; i < history_.size(); ++i) {
    const Op& op = history_[i];
    if (op.coordinator != n.id || op.op == OpType::get || op.outcome == Outcome::failed) continue;
    auto row = pg_table_.find(op.key);
    if (op.outcome == Outcome::ok && row != pg_table_.end() && row->second.version >= op.version) {
      continue;
    }
    if (pg_exempt_.insert(i).second && op.outcome == Outcome::ok) probe("pg_async_lost_in_crash");
  }
}

// ---------------------------------------------------------------------------------------------
// Network: loss, duplication, delay with a long tail (and so reordering), partitions.

// Every message travels as the peer codec's frame (net/peer_codec.h), as it does between kvnode
// processes: what the receiver gets is what the decoder makes of the bytes, within the same
// frame limit, so a codec bug is a bug the simulation sees.
void World::send(const Message& m) {
  const Knobs& k = sc_.knobs;
  observe_sent(m);
  std::string frame;
  encode_message(m, frame);
  Message back;
  const FrameDecode d = decode_message(frame, frame_bytes_max_, back);
  if (d.status != FrameDecode::Status::complete || d.consumed != frame.size() || !(back == m)) {
    violation("codec", describe(m) + ": its frame of " + std::to_string(frame.size()) +
                           " bytes " +
                           (d.status == FrameDecode::Status::error ? "is refused: " + d.error
                            : d.status == FrameDecode::Status::incomplete
                                ? std::string("decodes as incomplete")
                                : "decodes to a different message: " + describe(back)));
    finished_ = true;
    return;
  }
  auto lost_at_send = [&](const char* why) {
    if (!options_.mark) return;
    const std::uint64_t id = ++marked_messages_;
    mark(Mark::Kind::send, m.from, m.to, id, [&] { return describe(m); });
    mark(Mark::Kind::lost, m.from, m.to, id, [&] { return why; });
  };
  if (blocked(m.from, m.to)) {
    probe("message_partitioned");
    return lost_at_send("cut off by a partition");
  }
  if (faults_active_ && net_rng_.chance_ppm(k.drop_ppm)) {
    probe("message_dropped");
    return lost_at_send("dropped");
  }
  const int copies = faults_active_ && net_rng_.chance_ppm(k.duplicate_ppm) ? 2 : 1;
  if (copies == 2) probe("message_duplicated");
  for (int c = 0; c < copies; ++c) {
    std::uint64_t us = k.latency_us_min + net_rng_.below(k.latency_us_jitter + 1);
    if (faults_active_ && net_rng_.chance_ppm(k.long_tail_ppm)) {
      us += net_rng_.long_tail(k.long_tail_us_max);
      probe("message_long_tail");
    }
    // A clogged link holds the message until both ends are unclogged.
    const std::uint64_t leaves = std::max({now_us_, node(m.from).clogged_until_us,
                                           node(m.to).clogged_until_us});
    if (leaves > now_us_) probe("message_clogged");
    const std::uint64_t id = seq_;
    Frame f{c + 1 < copies ? frame : std::move(frame)};
    f.from_incarnation = node(m.from).incarnation;
    f.to_incarnation = node(m.to).incarnation;
    f.to_was_up = node(m.to).up;
    f.to = m.to;
    f.background = std::visit([](const auto& b) { return !keyed_message_v<std::decay_t<decltype(b)>>; }, m.body);
    if (faults_active_ && k.corrupt_ppm && wire_rng_.chance_ppm(k.corrupt_ppm)) {
      const std::uint64_t bit = wire_rng_.below(f.bytes.size() * 8);
      f.bytes[bit / 8] = static_cast<char>(f.bytes[bit / 8] ^ (1 << (bit % 8)));
      f.damaged = true;
      probe("frame_damaged");
    }
    if (options_.mark) {
      f.mark_id = ++marked_messages_;
      mark(Mark::Kind::send, m.from, m.to, f.mark_id, [&] {
        return describe(m) + (c > 0 ? " (a duplicate)" : "") + (f.damaged ? " (damaged on the way)" : "");
      });
    }
    in_flight_.emplace(id, std::move(f));
    schedule(leaves + us, Ev::deliver, m.to, id);
  }
}

void World::on_deliver(std::uint64_t message_id) {
  auto it = in_flight_.find(message_id);
  assert(it != in_flight_.end());
  const Frame frame = std::move(it->second);
  in_flight_.erase(it);
  Message m;
  const FrameDecode d = decode_message(frame.bytes, frame_bytes_max_, m);
  const bool whole = d.status == FrameDecode::Status::complete && d.consumed == frame.bytes.size();
  if (frame.damaged) {
    if (whole) {
      violation("codec", "a frame with a flipped bit was accepted as " + describe(m));
      finished_ = true;
      return;
    }
    // kvnode closes the link on a frame it refuses (a length that now claims more bytes than
    // came leaves the frame incomplete until the link is closed): the message is lost.
    probe("frame_refused");
    mark(Mark::Kind::lost, 0, 0, frame.mark_id, [] { return "its checksum refused it"; });
    if (options_.trace_line) trace(Event{now_us_, 0, Ev::deliver, 0, 0, 0}, "a damaged frame, refused");
    return;
  }
  if (!whole) {  // it decoded at send time
    violation("codec", "a frame of " + std::to_string(frame.bytes.size()) +
                           " bytes that decoded when sent did not at delivery");
    finished_ = true;
    return;
  }
  trace_hash_ = mix(trace_hash_, digest(m));
  // As kvnode's peer links carry it: a frame sent to a live process travels on a TCP connection
  // to that process, and if the receiver crashed since, the connection died with it and the
  // restarted process never sees the frame. A frame for a peer that was down waits in the
  // sender's queue and goes out when the link reconnects, unless the sender died meanwhile
  // and its queue with it.
  Node& n = node(m.to);
  const Node& sender = node(m.from);
  const bool restarted = frame.to_was_up
                             ? n.incarnation != frame.to_incarnation
                             : !sender.up || sender.incarnation != frame.from_incarnation;
  const bool lost = !n.up || restarted || blocked(m.from, m.to);
  if (options_.trace_line) {
    trace(Event{now_us_, 0, Ev::deliver, 0, 0, 0}, describe(m) + (lost ? " (lost)" : ""));
  }
  if (lost) {
    mark(Mark::Kind::lost, m.to, m.from, frame.mark_id,
         [&] { return !n.up ? "its node is down"
                      : restarted ? (frame.to_was_up ? "its node restarted since it was sent"
                                                     : "its sender died with it queued")
                                  : "cut off by a partition"; });
    return;
  }
  mark(Mark::Kind::arrive, m.to, m.from, frame.mark_id);
  observe_delivered(m);
  n.replica->on_message(m, local_ms(n.id));
  after_input(n);
}

bool World::blocked(NodeId from, NodeId to) const {
  return blocked_.contains({from, to});
}

void World::set_partition(const Fault& f, int delta) {
  auto in_group = [&](NodeId x) { return std::find(f.group.begin(), f.group.end(), x) != f.group.end(); };
  auto cut = [&](NodeId a, NodeId b) {
    auto& count = blocked_[{a, b}];
    count += delta;
    if (count <= 0) blocked_.erase({a, b});
  };
  for (NodeId a = 1; a <= sc_.knobs.nodes; ++a) {
    for (NodeId b = 1; b <= sc_.knobs.nodes; ++b) {
      if (!in_group(a) || in_group(b)) continue;
      cut(a, b);
      if (f.kind == FaultKind::partition) cut(b, a);
    }
  }
}

// C3 at rest: everything a node recovers from its disk was written by some client, at the
// version that client's write was given. Reads could miss a damaged record that merge happens to
// rank below the good copy; this sees it the moment it is recovered.
void World::check_recovered(const Node& n, const DurableState& state) {
  auto check = [&](const std::string& key, const Record& r, const char* where) {
    if (r.tombstone) return;
    auto it = by_value_.find(r.value);
    const Op* op = it == by_value_.end() ? nullptr : &history_[it->second];
    if (op && op->key == key && (op->outcome != Outcome::ok || op->version == r.version)) return;
    if (r.version.is_zero() && legacy_value(key) == r.value) return;  // a legacy hydration
    violation("C3", "n" + std::to_string(n.id) + " recovered " + where + key + " = " +
                        value_label(r.value) + " at version " + r.version.to_string() +
                        (op ? ", which differs from what its put wrote" : ", which no client wrote"));
  };
  for (const Store::Entry* e : state.store.sorted()) check(e->first, e->second, "");
  for (const auto& [hint_key, record] : state.hints.hints()) check(hint_key.second, record, "a hint for ");
}

// Replica-level promise, checked on every answer a node sends: a replica never answers a read
// with something older than what it already acknowledged or answered for that key (its store
// only moves forward, except when its disk is lost). Only preference-list replicas store client
// writes; a stand-in keeps them as hints.
void World::observe_sent(const Message& m) {
  const std::string* key = nullptr;
  Version v;
  bool answer = false;
  if (const auto* ack = std::get_if<WriteAck>(&m.body)) {
    key = &ack->key;
    v = ack->version;
  } else if (const auto* resp = std::get_if<ReadResp>(&m.body)) {
    key = &resp->key;
    v = resp->record ? resp->record->version : Version{};
    answer = true;
  }
  if (!key) return;
  const auto owners = ring_.preference_list(*key, sc_.knobs.replicas);
  if (std::find(owners.begin(), owners.end(), m.from) == owners.end()) return;
  Version& floor = replica_floor_[{m.from, *key}];
  // A collected tombstone is answered as nothing: the node dropped one at least as new.
  auto dropped_since = [&] {
    auto it = collected_.find(*key);
    return it != collected_.end() && std::any_of(it->second.begin(), it->second.end(), [&](const Collected& c) {
             return c.node == m.from && c.version >= floor;
           });
  };
  if (answer && v < floor && !(v.is_zero() && dropped_since())) {
    violation("replica", "n" + std::to_string(m.from) + " answered a read of " + *key + " with " +
                             (v.is_zero() ? std::string("nothing") : "version " + v.to_string()) +
                             " after it had acknowledged or answered version " +
                             floor.to_string());
  }
  floor = std::max(floor, v);
}

// What a coordinator received for a client's request before it decided the reply.
void World::observe_delivered(const Message& m) {
  std::visit(
      [&](const auto& b) {
        using T = std::decay_t<decltype(b)>;
        if constexpr (std::is_same_v<T, WriteReq>) {
          if (b.hint_for != 0) hinted_to_[m.to].insert(b.key);  // it holds a hint for the key
        }
        if constexpr (std::is_same_v<T, ReadResp> || std::is_same_v<T, WriteAck>) {
          auto it = by_internal_.find({m.to, b.req});
          if (it == by_internal_.end()) return;
          Op& op = history_[it->second];
          if (op.decided || op.key != b.key) return;
          if constexpr (std::is_same_v<T, ReadResp>) {
            if (op.op != OpType::get) return;
            for (const auto& [from, version] : op.responded) {
              if (from == m.from) return;  // the coordinator takes a replica's first answer
            }
            op.responded.emplace_back(m.from, b.record ? b.record->version : Version{});
          } else {
            const auto owners = ring_.preference_list(b.key, sc_.knobs.replicas);
            if (std::find(owners.begin(), owners.end(), m.from) == owners.end()) return;
            if (std::find(op.acked_by.begin(), op.acked_by.end(), m.from) != op.acked_by.end()) return;
            op.acked_by.push_back(m.from);
          }
        }
      },
      m.body);
}

CheckContext World::check_context() const {
  CheckContext ctx{sc_.seed, sc_.knobs.replicas, sc_.knobs.sloppy_quorum, {}, &ring_, disk_losses_, {},
                   collecting(), collected_};
  for (const Node& n : nodes_) {
    if (n.kept_down) ctx.kept_down.insert(n.id);
  }
  for (std::uint32_t k = 0; k < sc_.keys; ++k) {
    if (auto v = legacy_value(key_name(k))) ctx.legacy[key_name(k)] = *v;
  }
  return ctx;
}

// The replica's counters die with it: fold them into the run's probes first.
void World::collect_stats(const Replica& r) {
  for (const StatField& f : replica_stat_fields) probe(f.name, r.stats().*f.member);
}

void World::violation(std::string property, std::string detail) {
  mark(Mark::Kind::violation, 0, 0, 0, [&] { return property + ": " + detail; });
  result_.violations.push_back(Violation{std::move(property), std::move(detail)});
}

RunResult run(const Scenario& scenario, const RunOptions& options) {
  World world(scenario, options);
  return world.run();
}

}  // namespace kv::sim
