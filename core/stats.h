// What one node's replication core counted. kvnode exports these on /metrics and the simulator
// reports how often each rare path was taken.
#pragma once

#include <cstdint>

namespace kv {

// Counters of what the replica did; the simulator reports how often each rare path was taken.
struct ReplicaStats {
  std::uint64_t gets = 0, puts = 0, dels = 0;
  std::uint64_t read_repairs_sent = 0;
  std::uint64_t records_applied = 0;
  std::uint64_t stale_writes_ignored = 0;   // a write older than what the store holds
  std::uint64_t quorum_unavailable = 0;
  std::uint64_t timeouts = 0;
  std::uint64_t retries_sent = 0;
  std::uint64_t stamps_past_seen = 0;       // C5: a replica's version was ahead of our clock
  std::uint64_t hints_stored = 0;
  std::uint64_t hints_delivered = 0;
  std::uint64_t hints_refused_full = 0;
  std::uint64_t sloppy_fallback_writes = 0;
  std::uint64_t overloaded = 0;
  std::uint64_t invalid = 0;
  // Bridges
  std::uint64_t pg_writes = 0, pg_write_errors = 0;        // calls made, calls that failed
  std::uint64_t pg_lookups = 0, pg_lookup_errors = 0;
  std::uint64_t pg_queue_full = 0;                         // async: writes refused, queue full
  std::uint64_t pg_queue_coalesced = 0;                    // async: a queued write superseded
  std::uint64_t legacy_fetches = 0, legacy_errors = 0, legacy_not_found = 0;
  std::uint64_t misses_coalesced = 0;     // a read joined a resolution already under way
  std::uint64_t miss_cache_hits = 0;      // a read answered from a remembered resolution
  std::uint64_t hydrations = 0;           // resolutions that found a record and wrote it back
  std::uint64_t breaker_opened = 0;
  std::uint64_t breaker_rejected = 0;     // reads failed at once because the breaker was open
};

}  // namespace kv
