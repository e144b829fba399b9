#include "core/miss_resolver.h"

#include <algorithm>
#include <utility>

#include "core/context.h"

namespace kv {

MissResolver::MissResolver(Context& ctx, BridgeCalls& calls)
    : ctx_(ctx),
      calls_(calls),
      breaker_(ctx.config.legacy_breaker_failures, ctx.config.legacy_breaker_open_ms) {}

std::optional<std::optional<Record>> MissResolver::remembered(const std::string& key,
                                                              std::uint64_t started_ms,
                                                              std::uint64_t now_ms) {
  auto it = resolved_.find(key);
  if (it == resolved_.end() || now_ms >= it->second.expires_ms) return std::nullopt;
  const Resolved& r = it->second;
  const bool under_way = started_ms <= r.resolved_ms;
  if (!under_way && (r.record || now_ms >= r.resolved_ms + ctx_.config.legacy_negative_ttl_ms)) {
    return std::nullopt;
  }
  ++ctx_.stats.miss_cache_hits;
  return r.record;
}

std::optional<Settlement> MissResolver::join(const std::string& key, std::uint64_t req,
                                             std::uint64_t now_ms) {
  auto [it, fresh] = misses_.try_emplace(key);
  it->second.waiters.push_back(req);
  if (!fresh) {
    ++ctx_.stats.misses_coalesced;
    return std::nullopt;
  }
  if (ctx_.config.pg_mode != PgMode::off) {
    it->second.call = calls_.make(BridgeKind::pg_lookup, key, 0);
    return std::nullopt;
  }
  return start_legacy(key, it->second, now_ms);
}

// The legacy API, unless its breaker is open: then the waiting reads fail at once.
std::optional<Settlement> MissResolver::start_legacy(const std::string& key, Miss& miss,
                                                     std::uint64_t now_ms) {
  if (!ctx_.config.legacy) return finish(key, std::nullopt, now_ms);
  if (!breaker_.admit(now_ms)) {
    ++ctx_.stats.breaker_rejected;
    return fail(key, breaker_.refusal(now_ms));
  }
  miss.call = calls_.make(BridgeKind::legacy_fetch, key, 0);
  return std::nullopt;
}

std::optional<Settlement> MissResolver::on_lookup_reply(const Call& c, const BridgeReply& r,
                                                        bool ok, const std::string& detail,
                                                        std::uint64_t now_ms) {
  auto miss = misses_.find(c.key);
  if (miss == misses_.end() || miss->second.call != r.id) return std::nullopt;
  if (!ok) return fail(c.key, "PostgreSQL lookup failed (" + detail + ")");
  if (r.record) return finish(c.key, r.record, now_ms);
  return start_legacy(c.key, miss->second, now_ms);
}

std::optional<Settlement> MissResolver::on_legacy_reply(const Call& c, const BridgeReply& r,
                                                        std::uint64_t now_ms) {
  auto miss = misses_.find(c.key);
  if (miss == misses_.end() || miss->second.call != r.id) return std::nullopt;
  breaker_.settled();
  const std::size_t value_bytes_max = ctx_.config.value_bytes_max;
  if (r.error || (r.record && r.record->value.size() > value_bytes_max)) {
    ++ctx_.stats.legacy_errors;
    if (breaker_.failed(now_ms)) ++ctx_.stats.breaker_opened;
    return fail(c.key, r.error ? r.detail
                               : "legacy API value exceeds value_bytes_max (" +
                                     std::to_string(value_bytes_max) + ")");
  }
  breaker_.succeeded();
  if (!r.record) {
    ++ctx_.stats.legacy_not_found;
    return finish(c.key, std::nullopt, now_ms);
  }
  // Whatever version the driver sent, a legacy value is a hydration: the zero version (C7).
  return finish(c.key, Record{Version{}, false, r.record->value}, now_ms);
}

Settlement MissResolver::finish(const std::string& key, const std::optional<Record>& found,
                                std::uint64_t now_ms) {
  auto it = misses_.find(key);
  if (it == misses_.end()) return {};
  Settlement s{std::move(it->second.waiters), false, found, {}};
  misses_.erase(it);
  remember(key, found, now_ms);
  if (found) {
    // Hydration: the replicas keep what was found, at its own version (PostgreSQL's stamp, or
    // the zero version for the legacy API's value), so a client write always wins over it.
    ++ctx_.stats.hydrations;
    for (NodeId n : ctx_.placement(key).writes) {
      ctx_.send(n, WriteReq{0, WriteKind::repair, key, *found, 0});
    }
  }
  return s;
}

Settlement MissResolver::fail(const std::string& key, std::string detail) {
  auto it = misses_.find(key);
  if (it == misses_.end()) return {};
  Settlement s{std::move(it->second.waiters), true, std::nullopt, std::move(detail)};
  misses_.erase(it);
  return s;
}

// A finished resolution is kept for the reads that started before it finished (so that a burst
// of misses makes one call even when some of them finish their quorum read late) and, when it
// found nothing, for legacy_negative_ttl_ms for every read. Bounded by miss_cache_max.
void MissResolver::remember(const std::string& key, const std::optional<Record>& found,
                            std::uint64_t now_ms) {
  const ReplicaConfig& c = ctx_.config;
  const std::uint64_t ttl =
      found ? c.request_timeout_ms : std::max(c.legacy_negative_ttl_ms, c.request_timeout_ms);
  expire_resolved(now_ms, c.miss_cache_max);  // room for one more
  if (c.miss_cache_max == 0) return;
  resolved_[key] = Resolved{found, now_ms, now_ms + ttl};
  resolved_expiry_.emplace(now_ms + ttl, key);
}

void MissResolver::expire_resolved(std::uint64_t now_ms, std::size_t size_max) {
  while (!resolved_expiry_.empty() &&
         (resolved_expiry_.begin()->first <= now_ms || resolved_.size() >= size_max)) {
    auto first = resolved_expiry_.begin();
    auto r = resolved_.find(first->second);
    if (r != resolved_.end() && r->second.expires_ms == first->first) resolved_.erase(r);
    resolved_expiry_.erase(first);
  }
}

std::string MissResolver::check_invariants() const {
  for (const auto& [key, miss] : misses_) {
    const Call* c = calls_.find(miss.call);
    if (c == nullptr || c->key != key || c->req != 0 || c->kind == BridgeKind::pg_write) {
      return "resolution of " + key + " waits on a call not made";
    }
    if (miss.waiters.empty()) return "resolution of " + key + " with no read waiting";
  }
  if (resolved_.size() > ctx_.config.miss_cache_max) return "miss_cache_max exceeded";
  return breaker_.check_invariants();
}

}  // namespace kv
