// The durable state of one replica: its versioned records and the hints it holds for others.
//
// Both are ordered maps: iteration order reaches snapshots, hint delivery and traces, and must be
// the same on every run and every platform. Neither does I/O; the replica emits WAL entries for
// every change and recovery rebuilds this state from them.
#pragma once

#include <cstddef>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "core/version.h"

namespace kv {

class Store {
 public:
  // Merges `r` into the record of `key`. Returns true if the stored record changed.
  bool apply(const std::string& key, const Record& r);
  std::optional<Record> get(std::string_view key) const;
  const std::map<std::string, Record, std::less<>>& records() const { return records_; }
  std::size_t size() const { return records_.size(); }

 private:
  std::map<std::string, Record, std::less<>> records_;
};

// Hints: writes this node holds on behalf of a replica that did not acknowledge them, keyed by
// (target node, key). Only the newest record per (target, key) is kept: delivering it makes the
// older ones moot.
class HintStore {
 public:
  using HintKey = std::pair<NodeId, std::string>;

  // Merges `r` into the hint for (target, key). Returns true if the stored hint changed.
  bool add(NodeId target, const std::string& key, const Record& r);
  // Drops the hint for (target, key) if its version is at most `delivered`. True if dropped.
  bool remove_delivered(NodeId target, const std::string& key, const Version& delivered);
  const std::map<HintKey, Record>& hints() const { return hints_; }
  std::size_t size() const { return hints_.size(); }

 private:
  std::map<HintKey, Record> hints_;
};

// Everything a replica keeps on disk; what recovery rebuilds.
struct DurableState {
  Store store;
  HintStore hints;
};

}  // namespace kv
