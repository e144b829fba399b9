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

class ErrcCategory final : public std::error_category {
 public:
  const char* name() const noexcept override { return "kv"; }
  std::string message(int e) const override {
    switch (static_cast<Errc>(e)) {
      case Errc::invalid_argument: return "invalid argument";
      case Errc::quorum_unavailable: return "quorum unavailable";
      case Errc::timeout: return "timed out, outcome unknown";
      case Errc::overloaded: return "overloaded";
    }
    return "unknown error";
  }
};

}  // namespace

const std::error_category& errc_category() {
  static const ErrcCategory category;
  return category;
}

std::error_code make_error_code(Errc e) { return {static_cast<int>(e), errc_category()}; }

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
    if (answered(p) >= majority()) start_write(m.req, p, now_ms);
    return;
  }
  if (!p.replied && answered(p) >= p.quorum) {
    ready_.replies.push_back(ClientReply{p.client_id, {}, {}, p.best, {}});
    p.replied = true;
  }
  if (p.replied) repair_stale(m.req, p);
  finish_if_done(m.req);
}

// Stamp past every version the majority reported (the clock has observed them all), then send
// the record to every replica. C5 rests on this: a write acknowledged by W > N/2 replicas shares
// at least one replica with this majority, so its version was seen and is exceeded.
void Replica::start_write(std::uint64_t req, Pending& p, std::uint64_t now_ms) {
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
  if (!p.replied && answered(p) >= p.quorum) {
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
    if (p.phase == Phase::read) {
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

void Replica::reply_error(std::uint64_t client_id, Errc e, std::string detail) {
  if (e == Errc::invalid_argument) ++stats_.invalid;
  ready_.replies.push_back(ClientReply{client_id, make_error_code(e), std::move(detail), {}, {}});
}

// ---------------------------------------------------------------------------------------------
// Replica

void Replica::on_read_req(NodeId from, const ReadReq& m) {
  send(from, ReadResp{m.req, m.key, state_.store.get(m.key)});
}

void Replica::on_write_req(NodeId from, const WriteReq& m) {
  if (m.record.tombstone && !m.record.value.empty()) return;  // malformed: drop, never store
  hlc_.observe(m.record.version);
  if (m.hint_for != 0 && m.hint_for != config_.self) {
    if (!store_hint(m.hint_for, m.key, m.record)) return;  // not kept: must not be acknowledged
  } else if (state_.store.apply(m.key, m.record)) {
    ready_.persist.push_back(WalPut{m.key, m.record});
    ++stats_.records_applied;
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
  drain_local(now_ms);
}

void Replica::on_bridge_reply(const BridgeReply& reply, std::uint64_t now_ms) {
  // The bridges (PostgreSQL, legacy API) issue no calls yet; a reply to a call this incarnation
  // did not make is ignored, as any stale reply is.
  now_ms_ = now_ms;
  (void)reply;
}

Ready Replica::take_ready() {
  if (!pending_.empty() || state_.hints.size() > 0) {
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
    if (p.replied && p.phase == Phase::write && answered(p) < p.quorum) {
      return where + "acknowledged with " + std::to_string(answered(p)) + " of W=" +
             std::to_string(p.quorum) + " acknowledgements";
    }
  }
  return {};
}

}  // namespace kv
