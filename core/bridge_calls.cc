#include "core/bridge_calls.h"

#include <utility>

#include "core/context.h"

namespace kv {

namespace {

// A bridge call the driver never answered (it must answer every call, a timeout included) is
// failed after this many request timeouts, so a driver bug cannot wedge a key's resolution or
// the write-behind queue forever.
constexpr std::uint64_t bridge_call_deadline_timeouts = 3;

}  // namespace

std::uint64_t BridgeCalls::make(BridgeKind kind, const std::string& key, std::uint64_t req,
                                std::optional<Record> record) {
  const std::uint64_t id = ctx_.new_id();
  calls_[id] = Call{kind, key, req, ctx_.now_ms};
  ctx_.ready.bridge_calls.push_back(BridgeCall{id, kind, key, std::move(record)});
  ReplicaStats& s = ctx_.stats;
  ++(kind == BridgeKind::pg_write ? s.pg_writes
     : kind == BridgeKind::pg_lookup ? s.pg_lookups
                                     : s.legacy_fetches);
  return id;
}

std::optional<Call> BridgeCalls::take(const BridgeReply& reply) {
  auto it = calls_.find(reply.id);
  if (it == calls_.end() || it->second.kind != reply.kind) return std::nullopt;
  Call c = std::move(it->second);
  calls_.erase(it);
  return c;
}

std::vector<BridgeReply> BridgeCalls::overdue(std::uint64_t now_ms) const {
  const std::uint64_t limit = bridge_call_deadline_timeouts * ctx_.config.request_timeout_ms;
  std::vector<BridgeReply> out;
  for (const auto& [id, c] : calls_) {
    if (now_ms >= c.started_ms + limit) {
      out.push_back(BridgeReply{id, c.kind, make_error_code(Errc::unavailable),
                                std::string(bridge_name(c.kind)) + ": no answer within " +
                                    std::to_string(limit) + " ms",
                                {}});
    }
  }
  return out;
}

const Call* BridgeCalls::find(std::uint64_t id) const {
  auto it = calls_.find(id);
  return it == calls_.end() ? nullptr : &it->second;
}

std::string BridgeCalls::check_invariants() const {
  for (const auto& [id, c] : calls_) {
    if (!ctx_.issued(id)) return "bridge call id out of range";
    if (ctx_.config.pg_mode == PgMode::off && c.kind != BridgeKind::legacy_fetch) {
      return "PostgreSQL called while it is off";
    }
    if (c.kind == BridgeKind::legacy_fetch && !ctx_.config.legacy) {
      return "the legacy API called while it is off";
    }
  }
  return {};
}

}  // namespace kv
