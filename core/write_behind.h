// The asynchronous write-behind queue to PostgreSQL (pg_mode async): the newest record of every
// key not yet in PostgreSQL, coalesced per key, written by at most pg_writes_in_flight_max calls
// at once, each failed write retried with a doubling backoff. Bounded by pg_queue_max keys: a
// write of a new key into a full queue is refused before anything is written.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>

#include "core/bridge_calls.h"
#include "core/version.h"

namespace kv {

struct Context;

class WriteBehind {
 public:
  WriteBehind(Context& ctx, BridgeCalls& calls) : ctx_(ctx), calls_(calls) {}

  // A write of `key` would have to be refused: the queue is full and does not hold the key.
  bool full_for(const std::string& key) const;
  void enqueue(const std::string& key, const Record& r, std::uint64_t now_ms);
  // Issues the writes that are due, up to the in-flight bound.
  void pump(std::uint64_t now_ms);
  // The reply to one of the queue's writes.
  void on_write_reply(const Call& c, const BridgeReply& r, std::uint64_t now_ms);

  std::size_t size() const { return queue_.size(); }
  bool empty() const { return queue_.empty(); }
  // Since when the oldest key has waited (its lag); nullopt when the queue is empty.
  std::optional<std::uint64_t> oldest_ms() const;
  std::string check_invariants() const;

 private:
  struct Queued {
    Record record;
    std::uint64_t enqueued_ms = 0;
    std::uint64_t not_before_ms = 0;
    std::uint32_t failures = 0;
    std::uint64_t call = 0;  // the write in flight, 0 if none
    Version call_version;    // the version that write carries
  };

  Context& ctx_;
  BridgeCalls& calls_;
  std::map<std::string, Queued> queue_;
  std::size_t in_flight_ = 0;
};

}  // namespace kv
