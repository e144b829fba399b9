#include "core/coordinator.h"

#include <algorithm>
#include <utility>

#include "core/context.h"

namespace kv {

void Coordinator::on_client(const ClientRequest& rq, std::uint64_t now_ms) {
  const ReplicaConfig& config = ctx_.config;
  const bool read = rq.op == OpType::get;
  const std::uint32_t quorum =
      read ? (rq.r ? rq.r : config.read_quorum) : (rq.w ? rq.w : config.write_quorum);
  if (rq.key.empty() || rq.key.size() > config.key_bytes_max) {
    return ctx_.reply_error(rq.id, Errc::invalid_argument,
                            "key must be 1 to " + std::to_string(config.key_bytes_max) +
                                " bytes (key_bytes_max), got " + std::to_string(rq.key.size()));
  }
  if (rq.op == OpType::put && rq.value.size() > config.value_bytes_max) {
    return ctx_.reply_error(rq.id, Errc::invalid_argument,
                            "value of " + std::to_string(rq.value.size()) +
                                " bytes exceeds value_bytes_max (" +
                                std::to_string(config.value_bytes_max) + ")");
  }
  if (quorum < 1 || quorum > config.replicas) {
    return ctx_.reply_error(rq.id, Errc::invalid_argument,
                            std::string(read ? "read" : "write") + " quorum " +
                                std::to_string(quorum) + " is outside 1.." +
                                std::to_string(config.replicas) + " (replicas)");
  }
  if (ctx_.self_removed) {
    return ctx_.reply_error(rq.id, Errc::unavailable,
                            "this node was removed from the cluster: ask another member");
  }
  if (requests_.size() >= config.requests_in_flight_max) {
    ++ctx_.stats.overloaded;
    return ctx_.reply_error(rq.id, Errc::overloaded,
                            "requests_in_flight_max (" +
                                std::to_string(config.requests_in_flight_max) + ") reached");
  }
  ++(read ? ctx_.stats.gets : rq.op == OpType::put ? ctx_.stats.puts : ctx_.stats.dels);
  if (!read) misses_.forget(rq.key);
  Placement placed = ctx_.placement(rq.key);
  const std::size_t extra = read ? 0 : placed.extra;
  const std::vector<NodeId> replicas = read ? std::move(placed.reads) : std::move(placed.writes);
  // Replicas known down cannot answer: fail now what cannot reach its quorum without them. Not
  // in sloppy mode, where stand-ins answer for them.
  if (!config.sloppy_quorum && ctx_.fd.enabled()) {
    const std::size_t needed = read ? quorum : std::max<std::size_t>(quorum, ctx_.majority()) + extra;
    std::string down;
    std::size_t up = 0;
    for (NodeId n : replicas) {
      if (ctx_.peer_up(n)) {
        ++up;
      } else {
        down += (down.empty() ? "n" : ", n") + std::to_string(n);
      }
    }
    if (up < needed) {
      ++ctx_.stats.quorum_unavailable;
      ++ctx_.stats.requests_failed_fast;
      return ctx_.reply_error(
          rq.id, Errc::quorum_unavailable,
          std::string(read ? "" : "nothing written: ") + std::to_string(needed) + " of the key's " +
              std::to_string(replicas.size()) + " replicas must answer " +
              (read ? "the read" : "to order and acknowledge the write") + ", and " + down +
              (replicas.size() - up == 1 ? " is" : " are") + " down (failure detector)");
    }
  }

  const std::uint64_t req = ctx_.new_id();
  Request& p = requests_[req];
  p.client_id = rq.id;
  p.op = rq.op;
  p.phase = read ? Phase::read : Phase::discover;
  p.key = rq.key;
  p.value = rq.value;
  p.quorum = quorum;
  p.extra = extra;
  p.started_ms = p.phase_started_ms = now_ms;
  p.deadline_ms = now_ms + config.request_timeout_ms;
  p.next_retry_ms = now_ms + config.retry_interval_ms;
  for (NodeId n : replicas) p.targets.push_back(Target{.node = n});
  start_read(req, p);
}

bool Coordinator::send_unless_down(NodeId to, MessageBody body) {
  if (!ctx_.peer_up(to)) {
    ++ctx_.stats.sends_skipped_down;
    return false;
  }
  ctx_.send(to, std::move(body));
  return true;
}

// Reads and write discovery both begin by asking every preference-list replica for its record.
void Coordinator::start_read(std::uint64_t req, Request& p) {
  for (const Target& t : p.targets) send_unless_down(t.node, ReadReq{req, p.key});
}

void Coordinator::on_read_resp(NodeId from, const ReadResp& m, std::uint64_t now_ms) {
  auto it = requests_.find(m.req);
  if (it == requests_.end()) return;  // late, duplicate or from a past incarnation
  Request& p = it->second;
  if (p.phase == Phase::write || p.key != m.key) return;
  auto t = std::find_if(p.targets.begin(), p.targets.end(),
                        [&](const Target& x) { return x.node == from && x.hint_for == 0; });
  if (t == p.targets.end() || t->answered) return;
  t->answered = true;
  t->record = m.record;
  if (m.record) ctx_.hlc.observe(m.record->version);
  p.newest = merge(p.newest, m.record);

  if (p.phase == Phase::discover) {
    if (answered(p) >= ctx_.majority() + p.extra && !p.pg_lookup_pending) discovered(m.req, p, now_ms);
    return;
  }
  // Replies after the quorum only feed repair: the client has its answer (found by fuzzing).
  if (p.phase == Phase::read && !p.replied && answered(p) >= p.quorum) {
    if (!p.newest && ctx_.bridges_on()) {
      resolve_miss(m.req, p, now_ms);  // the quorum holds nothing: ask PostgreSQL, legacy
      // A resolution that ends at once (breaker open) may have finished the request already.
      if (!requests_.contains(m.req)) return;
    } else {
      ctx_.reply(ClientReply{p.client_id, {}, {}, p.newest, {}});
      p.replied = true;
    }
  }
  if (p.replied) repair_stale(m.req, p);
  finish_if_done(m.req);
}

// A majority answered the write's discovery. A key none of them holds may still be in PostgreSQL
// (the cluster lost its disks): in sync mode, look it up, so the stamp is past its version. Async
// mode gives the cluster-loss guarantee up anyway, and its writes must not wait on PostgreSQL.
void Coordinator::discovered(std::uint64_t req, Request& p, std::uint64_t now_ms) {
  if (ctx_.config.pg_mode == PgMode::sync && !p.newest) {
    p.pg_lookup_pending = true;
    calls_.make(BridgeKind::pg_lookup, p.key, req);
    return;
  }
  start_write(req, p, now_ms);
}

// Stamp past every version the majority reported (the clock has observed them all), then send
// the record to every replica. C5 rests on this: a write acknowledged by W > N/2 replicas shares
// at least one replica with this majority, so its version was seen and is exceeded.
void Coordinator::start_write(std::uint64_t req, Request& p, std::uint64_t now_ms) {
  const PgMode pg = ctx_.config.pg_mode;
  if (pg == PgMode::async && queue_.full_for(p.key)) {
    ++ctx_.stats.pg_queue_full;
    fail(p, Errc::overloaded,
         "nothing written: the PostgreSQL write-behind queue is full (pg_queue_max " +
             std::to_string(ctx_.config.pg_queue_max) + " keys)");
    requests_.erase(req);
    return;
  }
  const bool deleting = p.op == OpType::del;
  const Version stamp = ctx_.hlc.now(now_ms);
  if (stamp.physical_ms > now_ms) ++ctx_.stats.stamps_past_seen;
  p.stamped = Record{stamp, deleting, deleting ? std::string() : std::move(p.value)};
  p.value.clear();
  p.phase = Phase::write;
  p.phase_started_ms = now_ms;
  p.next_retry_ms = now_ms + ctx_.config.retry_interval_ms;
  for (Target& t : p.targets) {
    t.answered = false;
    t.record.reset();
    send_unless_down(t.node, WriteReq{req, WriteKind::client, p.key, p.stamped, 0});
  }
  if (pg == PgMode::sync) {
    p.pg_write_pending = true;  // the client waits for PostgreSQL too
    calls_.make(BridgeKind::pg_write, p.key, req, p.stamped);
  } else if (pg == PgMode::async) {
    queue_.enqueue(p.key, p.stamped, now_ms);
  }
}

void Coordinator::on_write_ack(NodeId from, const WriteAck& m) {
  auto it = requests_.find(m.req);
  if (it == requests_.end()) return;
  Request& p = it->second;
  if (p.phase != Phase::write || p.stamped.version != m.version || p.key != m.key) return;
  auto t = std::find_if(p.targets.begin(), p.targets.end(),
                        [&](const Target& x) { return x.node == from; });
  if (t == p.targets.end() || t->answered) return;
  t->answered = true;
  if (!p.replied && !p.pg_write_pending && answered(p) >= p.quorum + p.extra) {
    ctx_.reply(ClientReply{p.client_id, {}, {}, {}, p.stamped.version});
    p.replied = true;
  }
  finish_if_done(m.req);
}

// Read repair: every replica that answered with something older than the newest record seen gets
// the newest record (replicas merge, so a repair can never roll a newer write back).
void Coordinator::repair_stale(std::uint64_t req, Request& p) {
  if (!p.newest) return;
  for (Target& t : p.targets) {
    if (!t.answered || (t.repaired && *t.repaired >= p.newest->version)) continue;
    if (t.record && compare(*t.record, *p.newest) >= 0) continue;
    t.repaired = p.newest->version;
    ++ctx_.stats.read_repairs_sent;
    ctx_.send(t.node, WriteReq{req, WriteKind::repair, p.key, *p.newest, 0});
  }
}

// The read quorum found nothing. A resolution this read may use answers at once; else the read
// waits for one.
void Coordinator::resolve_miss(std::uint64_t req, Request& p, std::uint64_t now_ms) {
  p.phase = Phase::resolve;
  if (auto found = misses_.remembered(p.key, p.started_ms, now_ms)) {
    return reply_resolved(p, *found);
  }
  settle(misses_.join(p.key, req, now_ms));
}

void Coordinator::reply_resolved(Request& p, const std::optional<Record>& found) {
  // A late replica answer may hold a client write newer than the resolution: the newer wins.
  ctx_.reply(ClientReply{p.client_id, {}, {}, merge(p.newest, found), {}});
  p.replied = true;
}

void Coordinator::settle(const std::optional<Settlement>& s) {
  if (!s) return;
  for (std::uint64_t req : s->waiters) {
    auto it = requests_.find(req);
    if (it == requests_.end() || it->second.phase != Phase::resolve || it->second.replied) {
      continue;
    }
    if (s->failed) {
      fail(it->second, Errc::unavailable, s->error);
    } else {
      reply_resolved(it->second, s->found);
    }
    finish_if_done(req);
  }
}

void Coordinator::tick(std::uint64_t now_ms) {
  for (auto it = requests_.begin(); it != requests_.end();) {
    auto current = it++;  // tick_request may erase `current`, never another request
    tick_request(current->first, current->second, now_ms);
  }
}

void Coordinator::tick_request(std::uint64_t req, Request& p, std::uint64_t now_ms) {
  if (now_ms >= p.deadline_ms) return expire(req, p);
  if (ctx_.config.sloppy_quorum && p.phase != Phase::read && !p.sloppy_tried &&
      now_ms >= p.phase_started_ms + ctx_.config.sloppy_after_ms) {
    if (p.phase == Phase::discover) {
      // Sloppy mode prefers availability: write with whatever versions arrived so far. But in
      // sync mode a key none of them holds is still looked up in PostgreSQL first, as with a
      // majority: the write cannot be acknowledged without PostgreSQL anyway, and a stamp below
      // the row's version (the cluster lost its disks, this clock is behind) would shadow the
      // row from every later read, losing an acknowledged write.
      if (!p.pg_lookup_pending) discovered(req, p, now_ms);
      return;
    }
    if (p.phase == Phase::resolve) return;
    p.sloppy_tried = true;
    if (answered(p) < p.quorum) try_fallbacks(req, p);
  }
  if (now_ms < p.next_retry_ms) return;
  p.next_retry_ms = now_ms + ctx_.config.retry_interval_ms;
  for (const Target& t : p.targets) {
    if (t.answered) continue;
    const bool sent =
        p.phase == Phase::write
            ? send_unless_down(t.node, WriteReq{req, WriteKind::client, p.key, p.stamped, t.hint_for})
            : send_unless_down(t.node, ReadReq{req, p.key});
    ctx_.stats.retries_sent += sent;
  }
}

// Sloppy quorum: each silent preference-list replica gets a stand-in from further along the ring,
// which keeps the write as a hint for it and counts toward W.
void Coordinator::try_fallbacks(std::uint64_t req, Request& p) {
  const auto walk = ctx_.ring.preference_list(p.key, ctx_.ring.node_count());
  std::size_t next = ctx_.config.replicas;
  const std::size_t preferred = p.targets.size();
  for (std::size_t i = 0; i < preferred; ++i) {
    if (p.targets[i].answered) continue;
    while (next < walk.size() &&
           std::any_of(p.targets.begin(), p.targets.end(),
                       [&](const Target& t) { return t.node == walk[next]; })) {
      ++next;
    }
    if (next >= walk.size()) return;
    const NodeId stand_in = walk[next++];
    const NodeId target = p.targets[i].node;
    p.targets.push_back(Target{.node = stand_in, .hint_for = target});
    ++ctx_.stats.sloppy_fallback_writes;
    ctx_.send(stand_in, WriteReq{req, WriteKind::client, p.key, p.stamped, target});
  }
}

void Coordinator::expire(std::uint64_t req, Request& p) {
  const std::uint64_t timeout_ms = ctx_.config.request_timeout_ms;
  const std::string counts = std::to_string(answered(p)) + " of " +
                             std::to_string(p.targets.size()) + " replicas answered within " +
                             std::to_string(timeout_ms) + " ms";
  if (!p.replied) {
    if (p.phase == Phase::resolve) {
      fail(p, Errc::unavailable,
           "the read quorum holds nothing and " +
               std::string(ctx_.config.pg_mode != PgMode::off ? "PostgreSQL or the legacy API"
                                                              : "the legacy API") +
               " did not answer within " + std::to_string(timeout_ms) + " ms");
    } else if (p.phase == Phase::discover && p.pg_lookup_pending) {
      fail(p, Errc::unavailable,
           "nothing written: PostgreSQL did not answer the lookup of this new key within " +
               std::to_string(timeout_ms) + " ms");
    } else if (p.phase == Phase::write && p.pg_write_pending && answered(p) >= p.quorum + p.extra) {
      ++ctx_.stats.timeouts;
      fail(p, Errc::timeout,
           "PostgreSQL did not confirm the write within " + std::to_string(timeout_ms) +
               " ms (the replicas have it); the write may or may not be in PostgreSQL");
    } else if (p.phase == Phase::read) {
      ++ctx_.stats.quorum_unavailable;
      ctx_.reply_error(p.client_id, Errc::quorum_unavailable,
                       "read quorum " + std::to_string(p.quorum) + " not reached: " + counts);
    } else if (p.phase == Phase::discover) {
      ++ctx_.stats.quorum_unavailable;
      ctx_.reply_error(p.client_id, Errc::quorum_unavailable,
                       "nothing written: a majority is needed to order the write, " + counts);
    } else {
      ++ctx_.stats.timeouts;
      ctx_.reply_error(p.client_id, Errc::timeout,
                       "write quorum " + std::to_string(p.quorum) + " not reached: " + counts +
                           "; the write may or may not be applied");
    }
  }
  if (p.phase == Phase::write) {
    for (const Target& t : p.targets) {
      if (unheard(p, t)) replica_.store_hint(t.node, p.key, p.stamped);
    }
  }
  requests_.erase(req);
}

void Coordinator::on_pg_write_reply(const Call& c, const BridgeReply& r) {
  if (r.error) ++ctx_.stats.pg_write_errors;
  auto it = requests_.find(c.req);
  if (it == requests_.end()) return;
  Request& p = it->second;
  if (p.phase != Phase::write || !p.pg_write_pending) return;
  p.pg_write_pending = false;
  if (r.error) {
    if (!p.replied) {
      fail(p, Errc::unavailable,
           "PostgreSQL write failed (" + r.detail +
               "); not acknowledged, the replicas may or may not have applied it");
    }
  } else if (!p.replied && answered(p) >= p.quorum + p.extra) {
    ctx_.reply(ClientReply{p.client_id, {}, {}, {}, p.stamped.version});
    p.replied = true;
  }
  finish_if_done(c.req);
}

void Coordinator::on_pg_lookup_reply(const Call& c, bool ok, const std::string& detail,
                                     std::uint64_t now_ms) {
  auto it = requests_.find(c.req);
  if (it == requests_.end() || it->second.phase != Phase::discover ||
      !it->second.pg_lookup_pending) {
    return;
  }
  Request& p = it->second;
  p.pg_lookup_pending = false;
  if (!ok) {
    fail(p, Errc::unavailable, "nothing written: PostgreSQL lookup failed (" + detail + ")");
    requests_.erase(it);
    return;
  }
  start_write(c.req, p, now_ms);
}

void Coordinator::fail(Request& p, Errc e, std::string detail) {
  ctx_.reply_error(p.client_id, e, std::move(detail));
  p.replied = true;
  p.failed = true;
}

void Coordinator::finish_if_done(std::uint64_t req) {
  auto it = requests_.find(req);
  if (it != requests_.end() && done(it->second)) requests_.erase(it);
}

std::string Coordinator::check_invariants() const {
  if (requests_.size() > ctx_.config.requests_in_flight_max) {
    return "requests_in_flight_max exceeded";
  }
  for (const auto& [req, p] : requests_) {
    if (std::string broken = kv::check_invariants(req, p, ctx_); !broken.empty()) return broken;
    if (p.phase == Phase::resolve && !p.replied && !misses_.under_way(p.key)) {
      return "request " + std::to_string(req) + " for " + p.key +
             ": waiting for a miss resolution that is not under way";
    }
  }
  return {};
}

}  // namespace kv
