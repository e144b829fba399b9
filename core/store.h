// The durable state of one replica: its versioned records and the hints it holds for others.
//
// Records live in a hash map: a lookup is on the path of every read and write, and a tree of
// string keys spent 15% of a node's CPU on comparisons. Iteration order must never leak (it
// reaches snapshots and messages, which must be the same on every run and platform), so the
// records are only ever visited in key order, through sorted(). Hints stay an ordered map: hint
// delivery walks it in order. Neither does I/O; the replica emits WAL entries for every change
// and recovery rebuilds this state from them.
#pragma once

#include <cstddef>
#include <functional>
#include <map>
#include <unordered_map>
#include <vector>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "core/member.h"
#include "core/version.h"

namespace kv {

class Store {
 public:
  using Entry = std::pair<const std::string, Record>;

  // Merges `r` into the record of `key`. Returns true if the stored record changed.
  bool apply(const std::string& key, const Record& r);
  std::optional<Record> get(std::string_view key) const;
  // Removes the record of `key` if it is a tombstone at exactly `version` (a collected
  // tombstone, anti_entropy.h). Returns true if it was removed.
  bool drop_tombstone(std::string_view key, const Version& version);
  // The stored record of `key`, or null; valid until the next apply.
  const Record* find(std::string_view key) const;
  // Every record, in key order.
  std::vector<const Entry*> sorted() const;
  // True if `pred` holds for some record. The visit is in no order, but only a yes or no leaves
  // it: cheap enough for checks that run after every input, where sorting is not.
  template <typename Pred>
  bool any_of(Pred pred) const {
    for (const Entry& e : records_) {
      if (pred(e)) return true;
    }
    return false;
  }
  // Every record, in no order: whatever the caller keeps of the visit, it must sort.
  template <typename F>
  void for_each(F f) const {
    for (const Entry& e : records_) f(e);
  }
  std::size_t size() const { return records_.size(); }
  bool operator==(const Store& other) const { return records_ == other.records_; }

 private:
  struct KeyHash {
    using is_transparent = void;
    std::size_t operator()(std::string_view key) const { return std::hash<std::string_view>{}(key); }
  };
  std::unordered_map<std::string, Record, KeyHash, std::equal_to<>> records_;
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
  // The hints held for `key`, whatever their target, in target order.
  std::vector<std::pair<NodeId, const Record*>> for_key(const std::string& key,
                                                        const std::vector<NodeId>& targets) const;
  const std::map<HintKey, Record>& hints() const { return hints_; }
  std::size_t size() const { return hints_.size(); }

 private:
  std::map<HintKey, Record> hints_;
};

// Everything a replica keeps on disk; what recovery rebuilds.
struct DurableState {
  Store store;
  HintStore hints;
  std::vector<Member> members;  // the members table last applied; empty: none yet (membership.h)
};

}  // namespace kv
