#include "core/replica_role.h"

#include "core/context.h"

namespace kv {

void ReplicaRole::on_read_req(NodeId from, const ReadReq& m) {
  ctx_.send(from, ReadResp{m.req, m.key, ctx_.state.store.get(m.key)});
}

void ReplicaRole::on_write_req(NodeId from, const WriteReq& m) {
  if (m.record.tombstone && !m.record.value.empty()) return;  // malformed: drop, never store
  // A hint for a node outside this cluster (a peer configured with other members) could never
  // be delivered: refused, unacknowledged (found by fuzzing).
  if (m.hint_for != 0 && !ctx_.ring.contains(m.hint_for)) return;
  if (m.kind == WriteKind::reap) {  // not acknowledged: a lost reap leaves only a tombstone
    if (m.record.tombstone && m.hint_for == 0) ae_.on_reap(from, m.key, m.record);
    return;
  }
  const bool ae = m.kind == WriteKind::anti_entropy;
  if (ae && (m.hint_for != 0 || !ae_.replicates(m.key))) {  // pushed to a node not its replica
    ++ctx_.stats.ae_refused;
    return;
  }
  ctx_.hlc.observe(m.record.version);
  if (m.hint_for != 0 && m.hint_for != ctx_.config.self) {
    if (!store_hint(m.hint_for, m.key, m.record)) return;  // not kept: must not be acknowledged
  } else if (const Record* held = ctx_.state.store.find(m.key); held && compare(m.record, *held) <= 0) {
    ++ctx_.stats.stale_writes_ignored;
  } else {
    const std::uint64_t before = held ? AntiEntropy::digest(m.key, *held) : 0;
    ctx_.state.store.apply(m.key, m.record);
    ae_.changed(m.key, before, m.record);
    ctx_.ready.persist.push_back(WalPut{m.key, m.record});
    ++ctx_.stats.records_applied;
    if (ae) ++ctx_.stats.ae_records_applied;
    if (m.kind == WriteKind::client) misses_.forget(m.key);
  }
  if (!ae) ctx_.send(from, WriteAck{m.req, m.kind, m.key, m.record.version});  // nobody waits for it
}

bool ReplicaRole::store_hint(NodeId target, const std::string& key, const Record& r) {
  // A member that left while the write was in flight gets no hint: it replicates nothing now.
  if (!ctx_.ring.contains(target)) return false;
  const auto& hints = ctx_.state.hints.hints();
  if (hints.size() >= ctx_.config.hints_max && !hints.contains({target, key})) {
    ++ctx_.stats.hints_refused_full;
    ctx_.ready.hints_refused.emplace_back(target, key);
    return false;
  }
  if (ctx_.state.hints.add(target, key, r)) {
    ctx_.ready.persist.push_back(WalHint{target, key, r});
    ++ctx_.stats.hints_stored;
  }
  return true;
}

std::string ReplicaRole::check_invariants() const {
  auto broken = [this](const Store::Entry& e) {
    return e.first.empty() || e.first.size() > ctx_.config.key_bytes_max ||
           (e.second.tombstone && !e.second.value.empty()) ||
           !ctx_.not_after_clock(e.second.version);
  };
  if (!ctx_.state.store.any_of(broken)) return {};
  for (const Store::Entry* e : ctx_.state.store.sorted()) {  // name the first, in key order
    const auto& [key, r] = *e;
    if (key.empty() || key.size() > ctx_.config.key_bytes_max) return "stored key of bad size";
    if (r.tombstone && !r.value.empty()) return "tombstone with a value for " + key;
    if (!ctx_.not_after_clock(r.version)) {
      return "stored version " + r.version.to_string() + " of " + key + " is ahead of the clock " +
             ctx_.hlc.last().to_string();
    }
  }
  return {};
}

}  // namespace kv
