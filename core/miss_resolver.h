// Resolving misses: a get whose read quorum holds nothing (no value, no tombstone) asks
// PostgreSQL, then the legacy API (behind its circuit breaker). Concurrent misses of one key
// share one resolution. What is found is written to the key's replicas (hydration: at its
// stored version from PostgreSQL, at the zero version from the legacy API, so any client write
// wins, C7). A finished resolution is remembered for the reads already under way and, when it
// found nothing, for legacy_negative_ttl_ms; a write of the key here forgets it.
//
// The resolver owns the resolutions; the reads waiting on them are the coordinator's. Whatever
// ends a resolution returns a Settlement, which the coordinator hands to its waiting reads.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "core/breaker.h"
#include "core/bridge_calls.h"
#include "core/version.h"

namespace kv {

struct Context;

// The end of a resolution, for the requests that waited on it.
struct Settlement {
  std::vector<std::uint64_t> waiters;  // may name requests that have ended meanwhile
  bool failed = false;           // the reads fail with Errc::unavailable and `error`
  std::optional<Record> found;   // else the record, or nullopt for not found
  std::string error;
};

class MissResolver {
 public:
  MissResolver(Context& ctx, BridgeCalls& calls);

  // A resolution a read that started at `started_ms` may use without a call (one that finished
  // after it started, or a remembered not-found): its record, or nullopt for not found.
  std::optional<std::optional<Record>> remembered(const std::string& key,
                                                  std::uint64_t started_ms,
                                                  std::uint64_t now_ms);
  // Request `req` waits for the resolution of `key`, joining the one under way or starting one.
  // A resolution can end at once (PostgreSQL is off and the legacy API's breaker is open).
  std::optional<Settlement> join(const std::string& key, std::uint64_t req, std::uint64_t now_ms);
  // The replies to the resolver's calls. `ok`: the lookup answered with a sane row.
  std::optional<Settlement> on_lookup_reply(const Call& c, const BridgeReply& r, bool ok,
                                            const std::string& detail, std::uint64_t now_ms);
  std::optional<Settlement> on_legacy_reply(const Call& c, const BridgeReply& r,
                                            std::uint64_t now_ms);

  // The key was written here: what was resolved for it no longer holds.
  void forget(const std::string& key) { resolved_.erase(key); }
  // Drops expired resolutions.
  void expire(std::uint64_t now_ms) { expire_resolved(now_ms, SIZE_MAX); }

  bool under_way(const std::string& key) const { return misses_.contains(key); }
  bool breaker_open(std::uint64_t now_ms) const { return breaker_.open(now_ms); }
  std::string check_invariants() const;

 private:
  // One resolution under way, shared by every read that missed the key meanwhile.
  struct Miss {
    std::uint64_t call = 0;
    std::vector<std::uint64_t> waiters;  // requests that entered Phase::resolve (some may be over)
  };
  // A finished resolution: `record` (nullopt: not found) for the reads started at or before
  // `resolved_ms`; a not-found also for every read within legacy_negative_ttl_ms of it.
  struct Resolved {
    std::optional<Record> record;
    std::uint64_t resolved_ms = 0;
    std::uint64_t expires_ms = 0;
  };

  std::optional<Settlement> start_legacy(const std::string& key, Miss& miss,
                                         std::uint64_t now_ms);
  Settlement finish(const std::string& key, const std::optional<Record>& found,
                    std::uint64_t now_ms);
  Settlement fail(const std::string& key, std::string detail);
  void remember(const std::string& key, const std::optional<Record>& found, std::uint64_t now_ms);
  // Drops expired resolutions, then the soonest to expire while `size_max` or more are kept.
  void expire_resolved(std::uint64_t now_ms, std::size_t size_max);

  Context& ctx_;
  BridgeCalls& calls_;
  Breaker breaker_;
  std::map<std::string, Miss> misses_;        // resolutions under way, by key
  std::map<std::string, Resolved> resolved_;  // finished resolutions still remembered
  std::multimap<std::uint64_t, std::string> resolved_expiry_;  // expires_ms -> key (lazy)
};

}  // namespace kv
