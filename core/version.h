// Versions and records: what every replica stores and every merge compares.
//
// A version is a hybrid logical clock stamp (physical ms, logical counter, node id). Stamps are
// totally ordered, so "newest wins" needs no vector clocks and no siblings. Records (a value or a
// tombstone, with its version) are ordered by version first and then by content, which makes
// merge a true semilattice join (commutative, associative, idempotent) even in the one case where
// two different records could carry the same stamp: a node that crashed before its stamp became
// durable and issued it again after restart.
#pragma once

#include <compare>
#include <cstdint>
#include <optional>
#include <string>

namespace kv {

using NodeId = std::uint32_t;

struct Version {
  std::uint64_t physical_ms = 0;
  std::uint32_t counter = 0;
  NodeId node = 0;

  auto operator<=>(const Version&) const = default;
  bool operator==(const Version&) const = default;

  bool is_zero() const { return physical_ms == 0 && counter == 0 && node == 0; }
  std::string to_string() const;
};

// A stored value or tombstone. `tombstone` records carry an empty value.
struct Record {
  Version version;
  bool tombstone = false;
  std::string value;

  bool operator==(const Record&) const = default;
};

// Total order used by merge: version, then tombstone over value, then value bytes.
std::strong_ordering compare(const Record& a, const Record& b);

// The join of two records: the greater under compare(). Commutative, associative, idempotent.
const Record& merge(const Record& a, const Record& b);

// Join for optional records (absent is the bottom element).
std::optional<Record> merge(const std::optional<Record>& a, const std::optional<Record>& b);

// Hybrid logical clock (Kulkarni et al.): stamps never go backwards even when the wall clock does,
// and observe() lets a node stamp past a version it has seen from a node whose clock runs ahead.
class Hlc {
 public:
  explicit Hlc(NodeId node) : node_(node) {}

  // A fresh stamp, strictly greater than every stamp this clock issued or observed.
  Version now(std::uint64_t wall_ms);

  // Remember a version seen elsewhere, so that the next now() is greater than it.
  void observe(const Version& v);

  const Version& last() const { return last_; }

 private:
  NodeId node_;
  Version last_;
};

}  // namespace kv
