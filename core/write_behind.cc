#include "core/write_behind.h"

#include <algorithm>

#include "core/context.h"

namespace kv {

bool WriteBehind::full_for(const std::string& key) const {
  return queue_.size() >= ctx_.config.pg_queue_max && !queue_.contains(key);
}

void WriteBehind::enqueue(const std::string& key, const Record& r, std::uint64_t now_ms) {
  auto [it, fresh] = queue_.try_emplace(key, Queued{r, now_ms, now_ms});
  if (!fresh && compare(r, it->second.record) > 0) {
    it->second.record = r;  // only the newest record of a key needs to reach PostgreSQL
    ++ctx_.stats.pg_queue_coalesced;
  }
}

void WriteBehind::pump(std::uint64_t now_ms) {
  if (ctx_.config.pg_mode != PgMode::async) return;
  for (auto& [key, q] : queue_) {
    if (in_flight_ >= ctx_.config.pg_writes_in_flight_max) return;
    if (q.call != 0 || q.not_before_ms > now_ms) continue;
    q.call = calls_.make(BridgeKind::pg_write, key, 0, q.record);
    q.call_version = q.record.version;
    ++in_flight_;
  }
}

void WriteBehind::on_write_reply(const Call& c, const BridgeReply& r, std::uint64_t now_ms) {
  if (r.error) ++ctx_.stats.pg_write_errors;
  auto it = queue_.find(c.key);
  if (it == queue_.end() || it->second.call != r.id) return;
  Queued& q = it->second;
  q.call = 0;
  --in_flight_;
  if (r.error) {
    const std::uint32_t doublings = std::min<std::uint32_t>(q.failures++, 20);
    q.not_before_ms = now_ms + std::min(ctx_.config.pg_retry_max_ms,
                                        ctx_.config.pg_retry_initial_ms << doublings);
  } else if (q.record.version == q.call_version) {
    queue_.erase(it);
  } else {
    q.failures = 0;  // a newer write arrived meanwhile: it goes next
  }
}

std::optional<std::uint64_t> WriteBehind::oldest_ms() const {
  std::optional<std::uint64_t> oldest;
  for (const auto& [key, q] : queue_) {
    if (!oldest || q.enqueued_ms < *oldest) oldest = q.enqueued_ms;
  }
  return oldest;
}

std::string WriteBehind::check_invariants() const {
  if (queue_.size() > ctx_.config.pg_queue_max) return "pg_queue_max exceeded";
  if (!queue_.empty() && ctx_.config.pg_mode != PgMode::async) {
    return "write-behind queue used outside async mode";
  }
  std::size_t in_flight = 0;
  for (const auto& [key, q] : queue_) {
    if (q.call == 0) continue;
    ++in_flight;
    const Call* c = calls_.find(q.call);
    if (c == nullptr || c->kind != BridgeKind::pg_write || c->key != key || c->req != 0) {
      return "queued write of " + key + " waits on a call not made";
    }
  }
  if (in_flight != in_flight_ || in_flight > ctx_.config.pg_writes_in_flight_max) {
    return "write-behind calls in flight miscounted";
  }
  return {};
}

}  // namespace kv
