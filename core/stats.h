// What one node's replication core counted, and the one table that names each counter: kvnode
// exports them on /metrics as kv_<name>_total, the simulator reports each as a rare-path probe,
// and the protocol tests print them, all from replica_stat_fields.
#pragma once

#include <array>
#include <cstdint>
#include <string_view>

namespace kv {

struct ReplicaStats {
  std::uint64_t gets = 0, puts = 0, dels = 0;
  std::uint64_t read_repairs_sent = 0;
  std::uint64_t records_applied = 0;
  std::uint64_t stale_writes_ignored = 0;
  std::uint64_t quorum_unavailable = 0;
  std::uint64_t timeouts = 0;
  std::uint64_t retries_sent = 0;
  std::uint64_t stamps_past_seen = 0;
  std::uint64_t hints_stored = 0;
  std::uint64_t hints_delivered = 0;
  std::uint64_t hints_refused_full = 0;
  std::uint64_t sloppy_fallback_writes = 0;
  std::uint64_t overloaded = 0;
  std::uint64_t invalid = 0;
  // Bridges
  std::uint64_t pg_writes = 0, pg_write_errors = 0;
  std::uint64_t pg_lookups = 0, pg_lookup_errors = 0;
  std::uint64_t pg_queue_full = 0;
  std::uint64_t pg_queue_coalesced = 0;
  std::uint64_t legacy_fetches = 0, legacy_errors = 0, legacy_not_found = 0;
  std::uint64_t misses_coalesced = 0;
  std::uint64_t miss_cache_hits = 0;
  std::uint64_t hydrations = 0;
  std::uint64_t breaker_opened = 0;
  std::uint64_t breaker_rejected = 0;
  // Anti-entropy
  std::uint64_t ae_exchanges = 0;
  std::uint64_t ae_ranges_differing = 0;
  std::uint64_t ae_records_pushed = 0;
  std::uint64_t ae_bytes_pushed = 0;
  std::uint64_t ae_records_applied = 0;
  std::uint64_t ae_pushes_deferred = 0;
  std::uint64_t ae_refused = 0;
  std::uint64_t tombstones_collected = 0;
  std::uint64_t tombstones_reaped = 0;
  std::uint64_t hints_dropped_with_tombstone = 0;
  std::uint64_t hints_expired = 0;
  // Membership and failure detection
  std::uint64_t peers_marked_down = 0;
  std::uint64_t requests_failed_fast = 0;
  std::uint64_t sends_skipped_down = 0;
  std::uint64_t gossip_sent = 0;
  std::uint64_t gossip_entries_applied = 0;
  std::uint64_t gossip_refused = 0;
  std::uint64_t membership_steps = 0;
  std::uint64_t ranges_pulled = 0;
};

struct StatField {
  std::string_view name;  // the member's own name
  std::uint64_t ReplicaStats::*member;
  std::string_view help;  // what one count means, for /metrics' HELP line
};

inline constexpr std::array replica_stat_fields = {
    StatField{"gets", &ReplicaStats::gets, "client gets coordinated"},
    StatField{"puts", &ReplicaStats::puts, "client puts coordinated"},
    StatField{"dels", &ReplicaStats::dels, "client deletes coordinated"},
    StatField{"read_repairs_sent", &ReplicaStats::read_repairs_sent,
              "stale replicas sent a newer record by a read"},
    StatField{"records_applied", &ReplicaStats::records_applied,
              "records merged into this node's store"},
    StatField{"stale_writes_ignored", &ReplicaStats::stale_writes_ignored,
              "writes older than what this node's store holds"},
    StatField{"quorum_unavailable", &ReplicaStats::quorum_unavailable,
              "requests failed: too few replicas answered; nothing written"},
    StatField{"timeouts", &ReplicaStats::timeouts,
              "writes failed with too few acknowledgements; outcome unknown"},
    StatField{"retries_sent", &ReplicaStats::retries_sent,
              "requests resent to replicas that had not answered"},
    StatField{"stamps_past_seen", &ReplicaStats::stamps_past_seen,
              "writes stamped past a version ahead of this node's clock (C5)"},
    StatField{"hints_stored", &ReplicaStats::hints_stored,
              "hints kept for replicas that did not acknowledge"},
    StatField{"hints_delivered", &ReplicaStats::hints_delivered, "hints handed to their target"},
    StatField{"hints_refused_full", &ReplicaStats::hints_refused_full,
              "hints not kept because hints_max was reached"},
    StatField{"sloppy_fallback_writes", &ReplicaStats::sloppy_fallback_writes,
              "sloppy mode: writes sent to a stand-in for a silent replica"},
    StatField{"overloaded", &ReplicaStats::overloaded,
              "requests refused: requests_in_flight_max reached"},
    StatField{"invalid", &ReplicaStats::invalid, "requests refused as invalid"},
    StatField{"pg_writes", &ReplicaStats::pg_writes, "PostgreSQL write calls made"},
    StatField{"pg_write_errors", &ReplicaStats::pg_write_errors, "PostgreSQL write calls failed"},
    StatField{"pg_lookups", &ReplicaStats::pg_lookups, "PostgreSQL lookup calls made"},
    StatField{"pg_lookup_errors", &ReplicaStats::pg_lookup_errors,
              "PostgreSQL lookups failed or answered with a malformed row"},
    StatField{"pg_queue_full", &ReplicaStats::pg_queue_full,
              "async: writes refused because the write-behind queue was full"},
    StatField{"pg_queue_coalesced", &ReplicaStats::pg_queue_coalesced,
              "async: queued writes superseded by a newer write of the key"},
    StatField{"legacy_fetches", &ReplicaStats::legacy_fetches, "legacy API calls made"},
    StatField{"legacy_errors", &ReplicaStats::legacy_errors,
              "legacy API calls failed or answered with a value too large"},
    StatField{"legacy_not_found", &ReplicaStats::legacy_not_found,
              "misses the legacy API answered with not found"},
    StatField{"misses_coalesced", &ReplicaStats::misses_coalesced,
              "reads that joined a miss resolution already under way"},
    StatField{"miss_cache_hits", &ReplicaStats::miss_cache_hits,
              "reads answered from a remembered miss resolution"},
    StatField{"hydrations", &ReplicaStats::hydrations,
              "miss resolutions that found a record and wrote it to the replicas"},
    StatField{"breaker_opened", &ReplicaStats::breaker_opened,
              "times the legacy API circuit breaker opened"},
    StatField{"breaker_rejected", &ReplicaStats::breaker_rejected,
              "reads failed at once because the legacy API circuit breaker was open"},
    StatField{"ae_exchanges", &ReplicaStats::ae_exchanges,
              "anti-entropy exchanges this node started with a peer"},
    StatField{"ae_ranges_differing", &ReplicaStats::ae_ranges_differing,
              "anti-entropy: ranges whose hash trees differed from a peer's"},
    StatField{"ae_records_pushed", &ReplicaStats::ae_records_pushed,
              "anti-entropy: records sent to a peer that lacked them"},
    StatField{"ae_bytes_pushed", &ReplicaStats::ae_bytes_pushed,
              "anti-entropy: bytes of key and value sent to peers"},
    StatField{"ae_records_applied", &ReplicaStats::ae_records_applied,
              "anti-entropy: records a peer sent that this node lacked"},
    StatField{"ae_pushes_deferred", &ReplicaStats::ae_pushes_deferred,
              "anti-entropy: records left for a later exchange by the bandwidth limit"},
    StatField{"ae_refused", &ReplicaStats::ae_refused,
              "anti-entropy: messages or records refused (another ring, a range not shared)"},
    StatField{"tombstones_collected", &ReplicaStats::tombstones_collected,
              "tombstones this node collected once every replica was seen holding them"},
    StatField{"tombstones_reaped", &ReplicaStats::tombstones_reaped,
              "tombstones dropped because another replica collected them"},
    StatField{"hints_dropped_with_tombstone", &ReplicaStats::hints_dropped_with_tombstone,
              "hints older than a collected tombstone, dropped with it"},
    StatField{"hints_expired", &ReplicaStats::hints_expired,
              "hints dropped undelivered at half the tombstone grace (anti-entropy repairs)"},
    StatField{"peers_marked_down", &ReplicaStats::peers_marked_down,
              "times the failure detector found a peer down (phi at the threshold)"},
    StatField{"requests_failed_fast", &ReplicaStats::requests_failed_fast,
              "requests failed at once: too few of the key's replicas are up; nothing written"},
    StatField{"sends_skipped_down", &ReplicaStats::sends_skipped_down,
              "request messages not sent because the failure detector took the peer as down"},
    StatField{"gossip_sent", &ReplicaStats::gossip_sent,
              "members tables sent to a peer whose heartbeat showed another table"},
    StatField{"gossip_entries_applied", &ReplicaStats::gossip_entries_applied,
              "members entries taken from a peer's table (newer than the one held)"},
    StatField{"gossip_refused", &ReplicaStats::gossip_refused,
              "members tables refused: an entry for a node that is not a member"},
    StatField{"membership_steps", &ReplicaStats::membership_steps,
              "steps of a member's removal this node wrote (leaving, moved, left)"},
    StatField{"ranges_pulled", &ReplicaStats::ranges_pulled,
              "removals for which this node finished pulling the ranges it gains"},
};
static_assert(replica_stat_fields.size() * sizeof(std::uint64_t) == sizeof(ReplicaStats),
              "every ReplicaStats member has its row in replica_stat_fields");

}  // namespace kv
