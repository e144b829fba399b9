// The replica state machine (see replica.h). Coordinator role first, then the replica role,
// then the plumbing shared by both.
#include "core/replica.h"

#include <algorithm>
#include <cassert>
#include <utility>

namespace kv {

namespace {

// Messages a node sends itself are handled within the input that produced them; this bounds how
// many one input may cause (a request fans out to at most N targets plus fallbacks).
constexpr std::size_t local_messages_per_input_max = 1u << 16;

// A bridge call the driver never answered (it must answer every call, a timeout included) is
// failed after this many request timeouts, so a driver bug cannot wedge a key's resolution or
// the write-behind queue forever.
constexpr std::uint64_t bridge_call_deadline_timeouts = 3;

// PostgreSQL's rows are trusted no more than a peer's records.
bool sane(const std::optional<Record>& r, std::size_t value_bytes_max) {
  return !r || (r->value.size() <= value_bytes_max && !(r->tombstone && !r->value.empty()));
}

}  // namespace

Replica::Replica(ReplicaConfig config, DurableState state, std::uint64_t now_ms)
    : config_(std::move(config)),
      ring_(config_.vnodes_per_node),
      state_(std::move(state)),
      hlc_(config_.self),
      next_req_(config_.request_id_base + 1),
      next_hint_round_ms_(now_ms + config_.hint_interval_ms),
      now_ms_(now_ms) {
  assert(config_.self != 0);
  assert(config_.replicas >= 1 && config_.replicas <= config_.members.size());
  assert(config_.read_quorum >= 1 && config_.read_quorum <= config_.replicas);
  assert(config_.write_quorum >= 1 && config_.write_quorum <= config_.replicas);
  for (NodeId m : config_.members) ring_.add_node(m);
  assert(ring_.contains(config_.self));
  // Stamps must be past everything this node ever stored, whatever its clock says now.
  for (const Store::Entry* e : state_.store.sorted()) hlc_.observe(e->second.version);
  for (const auto& [hint_key, record] : state_.hints.hints()) hlc_.observe(record.version);
}

// ---------------------------------------------------------------------------------------------
// Coordinator

void Replica::on_client(const ClientRequest& rq, std::uint64_t now_ms) {
  now_ms_ = now_ms;
  const bool read = rq.op == OpType::get;
  const std::uint32_t quorum =
      read ? (rq.r ? rq.r : config_.read_quorum) : (rq.w ? rq.w : config_.write_quorum);
  if (rq.key.empty() || rq.key.size() > config_.key_bytes_max) {
    return reply_error(rq.id, Errc::invalid_argument,
                       "key must be 1 to " + std::to_string(config_.key_bytes_max) +
                           " bytes (key_bytes_max), got " + std::to_string(rq.key.size()));
  }
  if (rq.op == OpType::put && rq.value.size() > config_.value_bytes_max) {
    return reply_error(rq.id, Errc::invalid_argument,
                       "value of " + std::to_string(rq.value.size()) +
                           " bytes exceeds value_bytes_max (" +
                           std::to_string(config_.value_bytes_max) + ")");
  }
  if (quorum < 1 || quorum > config_.replicas) {
    return reply_error(rq.id, Errc::invalid_argument,
                       std::string(read ? "read" : "write") + " quorum " + std::to_string(quorum) +
                           " is outside 1.." + std::to_string(config_.replicas) + " (replicas)");
  }
  if (pending_.size() >= config_.requests_in_flight_max) {
    ++stats_.overloaded;
    return reply_error(rq.id, Errc::overloaded,
                       "requests_in_flight_max (" +
                           std::to_string(config_.requests_in_flight_max) + ") reached");
  }
  ++(read ? stats_.gets : rq.op == OpType::put ? stats_.puts : stats_.dels);
  if (!read) forget(rq.key);

  const std::uint64_t req = next_req_++;
  Pending& p = pending_[req];
  p.client_id = rq.id;
  p.op = rq.op;
  p.phase = read ? Phase::read : Phase::discover;
  p.key = rq.key;
  p.value = rq.value;
  p.quorum = quorum;
  p.started_ms = p.phase_started_ms = now_ms;
  p.deadline_ms = now_ms + config_.request_timeout_ms;
  p.next_retry_ms = now_ms + config_.retry_interval_ms;
  for (NodeId n : ring_.preference_list(rq.key, config_.replicas)) p.targets.push_back(Target{.node = n});
  start_read(req, p);
  drain_local(now_ms);
}

// Reads and write discovery both begin by asking every preference-list replica for its record.
void Replica::start_read(std::uint64_t req, Pending& p) {
  for (const Target& t : p.targets) send(t.node, ReadReq{req, p.key});
}

void Replica::on_read_resp(NodeId from, const ReadResp& m, std::uint64_t now_ms) {
  auto it = pending_.find(m.req);
  if (it == pending_.end()) return;  // late, duplicate or from a past incarnation
  Pending& p = it->second;
  if (p.phase == Phase::write || p.key != m.key) return;
  auto t = std::find_if(p.targets.begin(), p.targets.end(),
                        [&](const Target& x) { return x.node == from && x.hint_for == 0; });
  if (t == p.targets.end() || t->answered) return;
  t->answered = true;
  t->record = m.record;
  if (m.record) hlc_.observe(m.record->version);
  p.best = merge(p.best, m.record);

  if (p.phase == Phase::discover) {
    if (answered(p) >= majority() && !p.pg_pending) discovered(m.req, p, now_ms);
    return;
  }
  // Replies after the quorum only feed repair: the client has its answer (found by fuzzing).
  if (p.phase == Phase::read && !p.replied && answered(p) >= p.quorum) {
    if (!p.best && bridges_on()) {
      resolve_miss(m.req, p, now_ms);  // the quorum holds nothing: ask PostgreSQL, legacy
      // A resolution that ends at once (breaker open) may have finished the request already.
      if (!pending_.contains(m.req)) return;
    } else {
      ready_.replies.push_back(ClientReply{p.client_id, {}, {}, p.best, {}});
      p.replied = true;
    }
  }
  if (p.replied) repair_stale(m.req, p);
  finish_if_done(m.req);
}

// A majority answered the write's discovery. A key none of them holds may still be in PostgreSQL
// (the cluster lost its disks): in sync mode, look it up, so the stamp is past its version. Async
// mode gives the cluster-loss guarantee up anyway, and its writes must not wait on PostgreSQL.
void Replica::discovered(std::uint64_t req, Pending& p, std::uint64_t now_ms) {
  if (config_.pg_mode == PgMode::sync && !p.best) {
    p.pg_pending = true;
    call(BridgeKind::pg_lookup, p.key, req);
    return;
  }
  start_write(req, p, now_ms);
}

// Stamp past every version the majority reported (the clock has observed them all), then send
// the record to every replica. C5 rests on this: a write acknowledged by W > N/2 replicas shares
// at least one replica with this majority, so its version was seen and is exceeded.
bool Replica::start_write(std::uint64_t req, Pending& p, std::uint64_t now_ms) {
  if (config_.pg_mode == PgMode::async && pg_queue_.size() >= config_.pg_queue_max &&
      !pg_queue_.contains(p.key)) {
    ++stats_.pg_queue_full;
    fail(p, Errc::overloaded,
         "nothing written: the PostgreSQL write-behind queue is full (pg_queue_max " +
             std::to_string(config_.pg_queue_max) + " keys)");
    pending_.erase(req);
    return false;
  }
  const bool deleting = p.op == OpType::del;
  const Version stamp = hlc_.now(now_ms);
  if (stamp.physical_ms > now_ms) ++stats_.stamps_past_seen;
  p.best = Record{stamp, deleting, deleting ? std::string() : std::move(p.value)};
  p.value.clear();
  p.phase = Phase::write;
  p.phase_started_ms = now_ms;
  p.next_retry_ms = now_ms + config_.retry_interval_ms;
  for (Target& t : p.targets) {
    t.answered = false;
    t.record.reset();
    send(t.node, WriteReq{req, WriteKind::client, p.key, *p.best, 0});
  }
  p.pg_pending = false;
  if (config_.pg_mode == PgMode::sync) {
    p.pg_pending = true;  // the client waits for PostgreSQL too
    call(BridgeKind::pg_write, p.key, req, *p.best);
  } else if (config_.pg_mode == PgMode::async) {
    enqueue_pg(p.key, *p.best, now_ms);
  }
  return true;
}

void Replica::on_write_ack(NodeId from, const WriteAck& m) {
  if (m.kind == WriteKind::hint_delivery) {
    if (state_.hints.remove_delivered(from, m.key, m.version)) {
      ready_.persist.push_back(WalHintDone{from, m.key, m.version});
      ++stats_.hints_delivered;
    }
    return;
  }
  if (m.kind != WriteKind::client) return;
  auto it = pending_.find(m.req);
  if (it == pending_.end()) return;
  Pending& p = it->second;
  if (p.phase != Phase::write || p.best->version != m.version || p.key != m.key) return;
  auto t = std::find_if(p.targets.begin(), p.targets.end(),
                        [&](const Target& x) { return x.node == from; });
  if (t == p.targets.end() || t->answered) return;
  t->answered = true;
  if (!p.replied && !p.pg_pending && answered(p) >= p.quorum) {
    ready_.replies.push_back(ClientReply{p.client_id, {}, {}, {}, p.best->version});
    p.replied = true;
  }
  finish_if_done(m.req);
}

// Read repair: every replica that answered with something older than the newest record seen gets
// the newest record (replicas merge, so a repair can never roll a newer write back).
void Replica::repair_stale(std::uint64_t req, Pending& p) {
  if (!p.best) return;
  for (Target& t : p.targets) {
    if (!t.answered || t.repaired >= p.best->version) continue;
    if (t.record && compare(*t.record, *p.best) >= 0) continue;
    t.repaired = p.best->version;
    ++stats_.read_repairs_sent;
    send(t.node, WriteReq{req, WriteKind::repair, p.key, *p.best, 0});
  }
}

std::size_t Replica::answered(const Pending& p) const {
  return static_cast<std::size_t>(
      std::count_if(p.targets.begin(), p.targets.end(), [](const Target& t) { return t.answered; }));
}

// A preference-list replica that has not answered, neither itself nor through a fallback that
// holds its hint.
bool Replica::unheard(const Pending& p, const Target& t) const {
  if (t.hint_for != 0 || t.answered) return false;
  return std::none_of(p.targets.begin(), p.targets.end(),
                      [&](const Target& f) { return f.hint_for == t.node && f.answered; });
}

// A request is finished once it replied and no preference-list replica is unheard; until then it
// stays, to repair or hint the stragglers.
bool Replica::finish_if_done(std::uint64_t req) {
  auto it = pending_.find(req);
  if (it == pending_.end()) return true;
  Pending& p = it->second;
  if (!p.replied) return false;
  for (const Target& t : p.targets) {
    if (unheard(p, t)) return false;
  }
  pending_.erase(it);
  return true;
}

void Replica::tick_request(std::uint64_t req, Pending& p, std::uint64_t now_ms) {
  if (now_ms >= p.deadline_ms) return expire(req, p);
  if (config_.sloppy_quorum && p.phase != Phase::read && !p.sloppy_tried &&
      now_ms >= p.phase_started_ms + config_.sloppy_after_ms) {
    if (p.phase == Phase::discover) {
      // Sloppy mode prefers availability: write with whatever versions arrived so far.
      start_write(req, p, now_ms);
      return;
    }
    if (p.phase == Phase::resolve) return;
    p.sloppy_tried = true;
    if (answered(p) < p.quorum) try_fallbacks(req, p);
  }
  if (now_ms < p.next_retry_ms) return;
  p.next_retry_ms = now_ms + config_.retry_interval_ms;
  for (const Target& t : p.targets) {
    if (t.answered) continue;
    ++stats_.retries_sent;
    if (p.phase == Phase::write) {
      send(t.node, WriteReq{req, WriteKind::client, p.key, *p.best, t.hint_for});
    } else {
      send(t.node, ReadReq{req, p.key});
    }
  }
}

// Sloppy quorum: each silent preference-list replica gets a stand-in from further along the ring,
// which keeps the write as a hint for it and counts toward W.
void Replica::try_fallbacks(std::uint64_t req, Pending& p) {
  const auto walk = ring_.preference_list(p.key, ring_.node_count());
  std::size_t next = config_.replicas;
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
    ++stats_.sloppy_fallback_writes;
    send(stand_in, WriteReq{req, WriteKind::client, p.key, *p.best, target});
  }
}

void Replica::expire(std::uint64_t req, Pending& p) {
  const std::string counts = std::to_string(answered(p)) + " of " +
                             std::to_string(p.targets.size()) + " replicas answered within " +
                             std::to_string(config_.request_timeout_ms) + " ms";
  if (!p.replied) {
    if (p.phase == Phase::resolve) {
      fail(p, Errc::unavailable,
           "the read quorum holds nothing and " +
               std::string(config_.pg_mode != PgMode::off ? "PostgreSQL or the legacy API"
                                                          : "the legacy API") +
               " did not answer within " + std::to_string(config_.request_timeout_ms) + " ms");
    } else if (p.phase == Phase::discover && p.pg_pending) {
      fail(p, Errc::unavailable,
           "nothing written: PostgreSQL did not answer the lookup of this new key within " +
               std::to_string(config_.request_timeout_ms) + " ms");
    } else if (p.phase == Phase::write && p.pg_pending && answered(p) >= p.quorum) {
      ++stats_.timeouts;
      fail(p, Errc::timeout,
           "PostgreSQL did not confirm the write within " +
               std::to_string(config_.request_timeout_ms) +
               " ms (the replicas have it); the write may or may not be in PostgreSQL");
    } else if (p.phase == Phase::read) {
      ++stats_.quorum_unavailable;
      reply_error(p.client_id, Errc::quorum_unavailable,
                  "read quorum " + std::to_string(p.quorum) + " not reached: " + counts);
    } else if (p.phase == Phase::discover) {
      ++stats_.quorum_unavailable;
      reply_error(p.client_id, Errc::quorum_unavailable,
                  "nothing written: a majority is needed to order the write, " + counts);
    } else {
      ++stats_.timeouts;
      reply_error(p.client_id, Errc::timeout,
                  "write quorum " + std::to_string(p.quorum) + " not reached: " + counts +
                      "; the write may or may not be applied");
    }
  }
  if (p.phase == Phase::write) {
    for (const Target& t : p.targets) {
      if (unheard(p, t)) store_hint(t.node, p.key, *p.best);
    }
  }
  pending_.erase(req);
}

void Replica::fail(Pending& p, Errc e, std::string detail) {
  reply_error(p.client_id, e, std::move(detail));
  p.replied = true;
  p.failed = true;
}

void Replica::reply_error(std::uint64_t client_id, Errc e, std::string detail) {
  if (e == Errc::invalid_argument) ++stats_.invalid;
  ready_.replies.push_back(ClientReply{client_id, make_error_code(e), std::move(detail), {}, {}});
}

// ---------------------------------------------------------------------------------------------
// Bridges

std::uint64_t Replica::call(BridgeKind kind, const std::string& key, std::uint64_t req,
                            std::optional<Record> record) {
  const std::uint64_t id = next_req_++;
  calls_[id] = Call{kind, key, req, now_ms_};
  ready_.bridge_calls.push_back(BridgeCall{id, kind, key, std::move(record)});
  ++(kind == BridgeKind::pg_write    ? stats_.pg_writes
     : kind == BridgeKind::pg_lookup ? stats_.pg_lookups
                                     : stats_.legacy_fetches);
  return id;
}

// The read quorum found nothing. A resolution this read may use (one that finished after it
// started, or a remembered not-found) answers at once; one under way is joined; else one starts.
void Replica::resolve_miss(std::uint64_t req, Pending& p, std::uint64_t now_ms) {
  p.phase = Phase::resolve;
  if (auto it = resolved_.find(p.key); it != resolved_.end() && now_ms < it->second.expires_ms) {
    const Resolved& r = it->second;
    const bool under_way = p.started_ms <= r.resolved_ms;
    if (under_way || (!r.record && now_ms < r.resolved_ms + config_.legacy_negative_ttl_ms)) {
      ++stats_.miss_cache_hits;
      return reply_resolved(p, r.record);
    }
  }
  auto [it, fresh] = misses_.try_emplace(p.key);
  it->second.waiters.push_back(req);
  if (!fresh) {
    ++stats_.misses_coalesced;
    return;
  }
  if (config_.pg_mode != PgMode::off) {
    it->second.call = call(BridgeKind::pg_lookup, p.key, 0);
  } else {
    start_legacy(p.key, it->second, now_ms);
  }
}

// The legacy API, unless its breaker is open: then the waiting reads fail at once.
void Replica::start_legacy(const std::string& key, Miss& miss, std::uint64_t now_ms) {
  if (!config_.legacy) return finish_resolution(key, std::nullopt, now_ms);
  const bool tripped = breaker_failures_ >= config_.legacy_breaker_failures;
  if (tripped && (now_ms < breaker_open_until_ms_ || breaker_probing_)) {
    ++stats_.breaker_rejected;
    const std::uint64_t wait = breaker_open_until_ms_ > now_ms ? breaker_open_until_ms_ - now_ms : 0;
    return fail_resolution(key, "legacy API unavailable: circuit breaker open after " +
                                    std::to_string(breaker_failures_) +
                                    " consecutive failures, next attempt in " +
                                    std::to_string(wait) + " ms");
  }
  breaker_probing_ = tripped;  // half-open: this call is the one probe
  miss.call = call(BridgeKind::legacy_fetch, key, 0);
}

void Replica::reply_resolved(Pending& p, const std::optional<Record>& found) {
  // A late replica answer may hold a client write newer than the resolution: the newer wins.
  ready_.replies.push_back(ClientReply{p.client_id, {}, {}, merge(p.best, found), {}});
  p.replied = true;
}

void Replica::finish_resolution(const std::string& key, const std::optional<Record>& found,
                                std::uint64_t now_ms) {
  auto it = misses_.find(key);
  if (it == misses_.end()) return;
  const std::vector<std::uint64_t> waiters = std::move(it->second.waiters);
  misses_.erase(it);
  remember(key, found, now_ms);
  if (found) {
    // Hydration: the replicas keep what was found, at its own version (PostgreSQL's stamp, or
    // the zero version for the legacy API's value), so a client write always wins over it.
    ++stats_.hydrations;
    for (NodeId n : ring_.preference_list(key, config_.replicas)) {
      send(n, WriteReq{0, WriteKind::repair, key, *found, 0});
    }
  }
  for (std::uint64_t req : waiters) {
    auto p = pending_.find(req);
    if (p == pending_.end() || p->second.phase != Phase::resolve || p->second.replied) continue;
    reply_resolved(p->second, found);
    finish_if_done(req);
  }
}

void Replica::fail_resolution(const std::string& key, const std::string& detail) {
  auto it = misses_.find(key);
  if (it == misses_.end()) return;
  const std::vector<std::uint64_t> waiters = std::move(it->second.waiters);
  misses_.erase(it);
  for (std::uint64_t req : waiters) {
    auto p = pending_.find(req);
    if (p == pending_.end() || p->second.phase != Phase::resolve || p->second.replied) continue;
    fail(p->second, Errc::unavailable, detail);
    finish_if_done(req);
  }
}

// A finished resolution is kept for the reads that started before it finished (so that a burst
// of misses makes one call even when some of them finish their quorum read late) and, when it
// found nothing, for legacy_negative_ttl_ms for every read. Bounded by miss_cache_max.
void Replica::remember(const std::string& key, const std::optional<Record>& found,
                       std::uint64_t now_ms) {
  const std::uint64_t ttl =
      found ? config_.request_timeout_ms
            : std::max(config_.legacy_negative_ttl_ms, config_.request_timeout_ms);
  expire_resolved(now_ms, config_.miss_cache_max);  // room for one more
  if (config_.miss_cache_max == 0) return;
  resolved_[key] = Resolved{found, now_ms, now_ms + ttl};
  resolved_expiry_.emplace(now_ms + ttl, key);
}

void Replica::forget(const std::string& key) { resolved_.erase(key); }

// Drops expired resolutions, then the soonest to expire while `size_max` or more are kept.
void Replica::expire_resolved(std::uint64_t now_ms, std::size_t size_max) {
  while (!resolved_expiry_.empty() &&
         (resolved_expiry_.begin()->first <= now_ms || resolved_.size() >= size_max)) {
    auto first = resolved_expiry_.begin();
    auto r = resolved_.find(first->second);
    if (r != resolved_.end() && r->second.expires_ms == first->first) resolved_.erase(r);
    resolved_expiry_.erase(first);
  }
}

// Calls the driver failed to answer in time are answered here, as errors.
void Replica::expire_calls(std::uint64_t now_ms) {
  const std::uint64_t limit = bridge_call_deadline_timeouts * config_.request_timeout_ms;
  std::vector<BridgeReply> overdue;
  for (const auto& [id, c] : calls_) {
    if (now_ms >= c.started_ms + limit) {
      overdue.push_back(BridgeReply{id, c.kind, make_error_code(Errc::unavailable),
                                    std::string(bridge_name(c.kind)) + ": no answer within " +
                                        std::to_string(limit) + " ms",
                                    {}});
    }
  }
  for (const BridgeReply& r : overdue) on_bridge_reply(r, now_ms);
}

void Replica::on_pg_write_reply(const Call& c, const BridgeReply& r, std::uint64_t now_ms) {
  if (r.error) ++stats_.pg_write_errors;
  if (c.req == 0) {  // the write-behind queue
    auto it = pg_queue_.find(c.key);
    if (it == pg_queue_.end() || it->second.call != r.id) return;
    Queued& q = it->second;
    q.call = 0;
    --pg_queue_in_flight_;
    if (r.error) {
      const std::uint32_t doublings = std::min<std::uint32_t>(q.failures++, 20);
      q.not_before_ms = now_ms + std::min(config_.pg_retry_max_ms,
                                          config_.pg_retry_initial_ms << doublings);
    } else if (q.record.version == q.call_version) {
      pg_queue_.erase(it);
    } else {
      q.failures = 0;  // a newer write arrived meanwhile: it goes next
    }
    return;
  }
  auto it = pending_.find(c.req);
  if (it == pending_.end()) return;
  Pending& p = it->second;
  if (p.phase != Phase::write || !p.pg_pending) return;
  p.pg_pending = false;
  if (r.error) {
    if (!p.replied) {
      fail(p, Errc::unavailable,
           "PostgreSQL write failed (" + r.detail +
               "); not acknowledged, the replicas may or may not have applied it");
    }
  } else if (!p.replied && answered(p) >= p.quorum) {
    ready_.replies.push_back(ClientReply{p.client_id, {}, {}, {}, p.best->version});
    p.replied = true;
  }
  finish_if_done(c.req);
}

void Replica::on_pg_lookup_reply(const Call& c, const BridgeReply& r, std::uint64_t now_ms) {
  const bool ok = !r.error && sane(r.record, config_.value_bytes_max);
  if (!ok) ++stats_.pg_lookup_errors;
  const std::string detail =
      r.error ? r.detail : "PostgreSQL returned a malformed row for the key";
  if (ok && r.record) hlc_.observe(r.record->version);
  if (c.req != 0) {  // a write's discovery
    auto it = pending_.find(c.req);
    if (it == pending_.end() || it->second.phase != Phase::discover || !it->second.pg_pending) {
      return;
    }
    Pending& p = it->second;
    p.pg_pending = false;
    if (!ok) {
      fail(p, Errc::unavailable, "nothing written: PostgreSQL lookup failed (" + detail + ")");
      pending_.erase(it);
      return;
    }
    start_write(c.req, p, now_ms);
    return;
  }
  auto miss = misses_.find(c.key);
  if (miss == misses_.end() || miss->second.call != r.id) return;
  if (!ok) return fail_resolution(c.key, "PostgreSQL lookup failed (" + detail + ")");
  if (r.record) return finish_resolution(c.key, r.record, now_ms);
  start_legacy(c.key, miss->second, now_ms);
}

void Replica::on_legacy_reply(const Call& c, const BridgeReply& r, std::uint64_t now_ms) {
  auto miss = misses_.find(c.key);
  if (miss == misses_.end() || miss->second.call != r.id) return;
  breaker_probing_ = false;
  if (r.error || (r.record && r.record->value.size() > config_.value_bytes_max)) {
    ++stats_.legacy_errors;
    if (++breaker_failures_ >= config_.legacy_breaker_failures) {
      breaker_open_until_ms_ = now_ms + config_.legacy_breaker_open_ms;
      ++stats_.breaker_opened;
    }
    return fail_resolution(c.key, r.error ? r.detail
                                          : "legacy API value exceeds value_bytes_max (" +
                                                std::to_string(config_.value_bytes_max) + ")");
  }
  breaker_failures_ = 0;
  if (!r.record) {
    ++stats_.legacy_not_found;
    return finish_resolution(c.key, std::nullopt, now_ms);
  }
  // Whatever version the driver sent, a legacy value is a hydration: the zero version (C7).
  finish_resolution(c.key, Record{Version{}, false, r.record->value}, now_ms);
}

void Replica::enqueue_pg(const std::string& key, const Record& r, std::uint64_t now_ms) {
  auto [it, fresh] = pg_queue_.try_emplace(key, Queued{r, now_ms, now_ms});
  if (!fresh && compare(r, it->second.record) > 0) {
    it->second.record = r;  // only the newest record of a key needs to reach PostgreSQL
    ++stats_.pg_queue_coalesced;
  }
}

void Replica::pump_pg_queue(std::uint64_t now_ms) {
  if (config_.pg_mode != PgMode::async) return;
  for (auto& [key, q] : pg_queue_) {
    if (pg_queue_in_flight_ >= config_.pg_writes_in_flight_max) return;
    if (q.call != 0 || q.not_before_ms > now_ms) continue;
    q.call = call(BridgeKind::pg_write, key, 0, q.record);
    q.call_version = q.record.version;
    ++pg_queue_in_flight_;
  }
}

std::optional<std::uint64_t> Replica::pg_queue_oldest_ms() const {
  std::optional<std::uint64_t> oldest;
  for (const auto& [key, q] : pg_queue_) {
    if (!oldest || q.enqueued_ms < *oldest) oldest = q.enqueued_ms;
  }
  return oldest;
}

// ---------------------------------------------------------------------------------------------
// Replica

void Replica::on_read_req(NodeId from, const ReadReq& m) {
  send(from, ReadResp{m.req, m.key, state_.store.get(m.key)});
}

void Replica::on_write_req(NodeId from, const WriteReq& m) {
  if (m.record.tombstone && !m.record.value.empty()) return;  // malformed: drop, never store
  // A hint for a node outside this cluster (a peer configured with other members) could never
  // be delivered: refused, unacknowledged (found by fuzzing).
  if (m.hint_for != 0 && !ring_.contains(m.hint_for)) return;
  hlc_.observe(m.record.version);
  if (m.hint_for != 0 && m.hint_for != config_.self) {
    if (!store_hint(m.hint_for, m.key, m.record)) return;  // not kept: must not be acknowledged
  } else if (state_.store.apply(m.key, m.record)) {
    ready_.persist.push_back(WalPut{m.key, m.record});
    ++stats_.records_applied;
    if (m.kind == WriteKind::client) forget(m.key);
  } else {
    ++stats_.stale_writes_ignored;
  }
  send(from, WriteAck{m.req, m.kind, m.key, m.record.version});
}

// Keeps a hint durably. False if it could not be kept (hints_max reached).
bool Replica::store_hint(NodeId target, const std::string& key, const Record& r) {
  const auto& hints = state_.hints.hints();
  if (hints.size() >= config_.hints_max && !hints.contains({target, key})) {
    ++stats_.hints_refused_full;
    return false;
  }
  if (state_.hints.add(target, key, r)) {
    ready_.persist.push_back(WalHint{target, key, r});
    ++stats_.hints_stored;
  }
  return true;
}

// Offers held hints to their targets, a bounded number per round, resuming where the last round
// stopped so that hints for a target that stays down do not starve the others.
void Replica::deliver_hints(std::uint64_t now_ms) {
  if (now_ms < next_hint_round_ms_ || state_.hints.size() == 0) return;
  next_hint_round_ms_ = now_ms + config_.hint_interval_ms;
  const auto& hints = state_.hints.hints();
  auto it = hints.lower_bound(hint_cursor_);
  for (std::size_t sent = 0; sent < config_.hint_deliveries_per_interval_max; ++sent) {
    if (it == hints.end()) it = hints.begin();
    const auto& [hint_key, record] = *it;
    send(hint_key.first, WriteReq{0, WriteKind::hint_delivery, hint_key.second, record, 0});
    ++it;
    if (sent + 1 == hints.size()) break;
  }
  hint_cursor_ = it == hints.end() ? HintStore::HintKey{} : it->first;
}

// ---------------------------------------------------------------------------------------------
// Plumbing

void Replica::on_message(const Message& message, std::uint64_t now_ms) {
  now_ms_ = now_ms;
  if (message.to != config_.self || !ring_.contains(message.from)) return;  // not for us
  dispatch(message, now_ms);
  drain_local(now_ms);
}

void Replica::on_tick(std::uint64_t now_ms) {
  now_ms_ = now_ms;
  for (auto it = pending_.begin(); it != pending_.end();) {
    auto current = it++;  // tick_request may erase `current`, never another request
    tick_request(current->first, current->second, now_ms);
  }
  deliver_hints(now_ms);
  expire_calls(now_ms);
  expire_resolved(now_ms);
  pump_pg_queue(now_ms);
  drain_local(now_ms);
}

void Replica::on_bridge_reply(const BridgeReply& reply, std::uint64_t now_ms) {
  now_ms_ = now_ms;
  auto it = calls_.find(reply.id);
  // A reply to a call this incarnation did not make, or a second reply, is ignored.
  if (it == calls_.end() || it->second.kind != reply.kind) return;
  const Call c = std::move(it->second);
  calls_.erase(it);
  switch (c.kind) {
    case BridgeKind::pg_write: on_pg_write_reply(c, reply, now_ms); break;
    case BridgeKind::pg_lookup: on_pg_lookup_reply(c, reply, now_ms); break;
    case BridgeKind::legacy_fetch: on_legacy_reply(c, reply, now_ms); break;
  }
  pump_pg_queue(now_ms);
  drain_local(now_ms);
}

Ready Replica::take_ready() {
  if (!pending_.empty() || state_.hints.size() > 0 || !calls_.empty() || !pg_queue_.empty()) {
    ready_.next_tick_ms = now_ms_ + config_.tick_interval_ms;
  }
  Ready out = std::move(ready_);
  ready_ = Ready{};
  return out;
}

void Replica::send(NodeId to, MessageBody body) {
  Message m{config_.self, to, std::move(body)};
  if (to == config_.self) {
    local_.push_back(std::move(m));
  } else {
    ready_.messages.push_back(std::move(m));
  }
}

void Replica::dispatch(const Message& message, std::uint64_t now_ms) {
  const NodeId from = message.from;
  std::visit(
      [&](const auto& body) {
        using T = std::decay_t<decltype(body)>;
        if (body.key.empty() || body.key.size() > config_.key_bytes_max) return;  // distrust
        if constexpr (std::is_same_v<T, ReadReq>) on_read_req(from, body);
        if constexpr (std::is_same_v<T, ReadResp>) on_read_resp(from, body, now_ms);
        if constexpr (std::is_same_v<T, WriteReq>) on_write_req(from, body);
        if constexpr (std::is_same_v<T, WriteAck>) on_write_ack(from, body);
      },
      message.body);
}

void Replica::drain_local(std::uint64_t now_ms) {
  for (std::size_t n = 0; !local_.empty(); ++n) {
    assert(n < local_messages_per_input_max);
    Message m = std::move(local_.front());
    local_.pop_front();
    dispatch(m, now_ms);
  }
}

std::string Replica::check_invariants() const {
  const Version& last = hlc_.last();
  auto not_after_clock = [&](const Version& v) {
    return v.physical_ms < last.physical_ms ||
           (v.physical_ms == last.physical_ms && v.counter <= last.counter);
  };
  if (!local_.empty()) return "self-addressed messages left unhandled";
  if (pending_.size() > config_.requests_in_flight_max) return "requests_in_flight_max exceeded";
  if (state_.hints.size() > config_.hints_max) return "hints_max exceeded";
  for (const Store::Entry* e : state_.store.sorted()) {
    const auto& [key, r] = *e;
    if (key.empty() || key.size() > config_.key_bytes_max) return "stored key of bad size";
    if (r.tombstone && !r.value.empty()) return "tombstone with a value for " + key;
    if (!not_after_clock(r.version)) {
      return "stored version " + r.version.to_string() + " of " + key + " is ahead of the clock " +
             last.to_string();
    }
  }
  for (const auto& [hint_key, r] : state_.hints.hints()) {
    if (hint_key.first == config_.self || !ring_.contains(hint_key.first)) {
      return "hint for n" + std::to_string(hint_key.first) + ", not another member";
    }
    if (!not_after_clock(r.version)) return "hint version ahead of the clock";
  }
  for (const auto& [req, p] : pending_) {
    const std::string where = "request " + std::to_string(req) + " for " + p.key + ": ";
    if (req <= config_.request_id_base || req >= next_req_) return where + "id out of range";
    if (p.quorum < 1 || p.quorum > config_.replicas) return where + "quorum out of range";
    if (p.targets.size() < config_.replicas || p.targets.size() > ring_.node_count()) {
      return where + "wrong number of targets";
    }
    if (p.deadline_ms <= p.started_ms) return where + "deadline before start";
    if (p.phase == Phase::write && !(p.best && p.best->version.node == config_.self &&
                                     not_after_clock(p.best->version))) {
      return where + "writing a record this node did not stamp";
    }
    if (p.replied && p.phase == Phase::discover) return where + "replied before writing";
    if (p.replied && !p.failed && p.phase == Phase::write &&
        (p.pg_pending && config_.pg_mode == PgMode::sync)) {
      return where + "acknowledged before PostgreSQL confirmed the write (sync mode)";
    }
    if (p.phase == Phase::resolve && !p.replied && !misses_.contains(p.key)) {
      return where + "waiting for a miss resolution that is not under way";
    }
    if (p.replied && !p.failed && p.phase == Phase::write && answered(p) < p.quorum) {
      return where + "acknowledged with " + std::to_string(answered(p)) + " of W=" +
             std::to_string(p.quorum) + " acknowledgements";
    }
  }
  if (pg_queue_.size() > config_.pg_queue_max) return "pg_queue_max exceeded";
  std::size_t queue_calls = 0;
  for (const auto& [key, q] : pg_queue_) {
    if (q.call == 0) continue;
    ++queue_calls;
    if (!calls_.contains(q.call)) return "queued write of " + key + " waits on a call not made";
  }
  if (queue_calls != pg_queue_in_flight_ || queue_calls > config_.pg_writes_in_flight_max) {
    return "write-behind calls in flight miscounted";
  }
  for (const auto& [key, miss] : misses_) {
    auto c = calls_.find(miss.call);
    if (c == calls_.end() || c->second.key != key || c->second.req != 0) {
      return "resolution of " + key + " waits on a call not made";
    }
  }
  for (const auto& [id, c] : calls_) {
    if (id <= config_.request_id_base || id >= next_req_) return "bridge call id out of range";
  }
  if (config_.pg_mode == PgMode::off) {
    for (const auto& [id, c] : calls_) {
      if (c.kind != BridgeKind::legacy_fetch) return "PostgreSQL called while it is off";
    }
  }
  return {};
}

}  // namespace kv
