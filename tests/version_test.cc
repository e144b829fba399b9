// Tests of versions, record merge and the hybrid logical clock.
//
// Replicas converge only if merge is a semilattice join and the clock never issues a stamp at or
// below one it has issued or seen; both are stated here as rapidcheck properties. Generators draw
// from tiny ranges on purpose: equal stamps on different records (the crash-and-reissue case)
// must be common in the generated cases, not a one-in-a-billion accident.
#include <gtest/gtest.h>
#include <rapidcheck.h>
#include <rapidcheck/gtest.h>

#include <algorithm>
#include <compare>
#include <cstdint>
#include <limits>
#include <optional>
#include <ostream>
#include <string>
#include <tuple>
#include <vector>

#include "core/version.h"

namespace kv {

// Counterexample printing, found by rapidcheck through argument-dependent lookup. Internal
// linkage keeps these out of the way of any printer the library may gain.
[[maybe_unused]] static void showValue(const Version& v, std::ostream& os) {
  os << v.to_string();
}

[[maybe_unused]] static void showValue(const Record& r, std::ostream& os) {
  os << "{" << r.version.to_string() << (r.tombstone ? " tombstone" : " value=\"" + r.value + "\"")
     << "}";
}

[[maybe_unused]] static void showValue(const std::optional<Record>& r, std::ostream& os) {
  if (r) {
    showValue(*r, os);
  } else {
    os << "absent";
  }
}

}  // namespace kv

namespace {

constexpr std::uint32_t counter_max = std::numeric_limits<std::uint32_t>::max();

// Uniform over [lo, hi) at every rapidcheck size (plain inRange starts out pinned to lo), still
// shrinking towards lo.
template <typename T>
rc::Gen<T> uniform(T lo, T hi) {
  return rc::gen::resize(100, rc::gen::inRange<T>(lo, hi));
}

// Versions with both tiny fields and the extremes of each field, for the order properties.
rc::Gen<kv::Version> wide_version() {
  return rc::gen::build<kv::Version>(
      rc::gen::set(&kv::Version::physical_ms,
                   rc::gen::oneOf(uniform<std::uint64_t>(0, 3),
                                  rc::gen::element(std::uint64_t{1} << 32,
                                                   std::numeric_limits<std::uint64_t>::max()))),
      rc::gen::set(&kv::Version::counter,
                   rc::gen::oneOf(uniform<std::uint32_t>(0, 3), rc::gen::element(counter_max))),
      rc::gen::set(&kv::Version::node,
                   rc::gen::oneOf(uniform<kv::NodeId>(0, 3),
                                  rc::gen::element(std::numeric_limits<kv::NodeId>::max()))));
}

}  // namespace

namespace rc {

// 2 * 2 * 3 = 12 stamps: two random records share a stamp one time in twelve.
template <>
struct Arbitrary<kv::Version> {
  static Gen<kv::Version> arbitrary() {
    return gen::build<kv::Version>(gen::set(&kv::Version::physical_ms, uniform<std::uint64_t>(0, 2)),
                                   gen::set(&kv::Version::counter, uniform<std::uint32_t>(0, 2)),
                                   gen::set(&kv::Version::node, uniform<kv::NodeId>(0, 3)));
  }
};

// Tombstones carry an empty value, as stored records do; values come from a four-word alphabet so
// that equal stamps often come with different content.
template <>
struct Arbitrary<kv::Record> {
  static Gen<kv::Record> arbitrary() {
    return gen::apply(
        [](const kv::Version& version, bool tombstone, const std::string& value) {
          return kv::Record{version, tombstone, tombstone ? std::string() : value};
        },
        gen::arbitrary<kv::Version>(), gen::arbitrary<bool>(),
        gen::element<std::string>("", "a", "b", "ab"));
  }
};

}  // namespace rc

namespace kv {
namespace {

rc::Gen<std::optional<Record>> maybe_record() {
  return rc::gen::apply(
      [](bool present, const Record& r) { return present ? std::optional<Record>(r) : std::nullopt; },
      rc::gen::arbitrary<bool>(), rc::gen::arbitrary<Record>());
}

// ---------------------------------------------------------------------------------------------
// Version order

auto fields(const Version& v) { return std::tie(v.physical_ms, v.counter, v.node); }

RC_GTEST_PROP(VersionProperties, OrderIsFieldWiseLexicographic, ()) {
  const auto a = *wide_version();
  const auto b = *wide_version();
  const std::strong_ordering expected = fields(a) <=> fields(b);
  RC_ASSERT((a <=> b) == expected);
  RC_ASSERT((a == b) == (expected == 0));
  RC_ASSERT((a < b) == (expected < 0));
}

RC_GTEST_PROP(VersionProperties, OrderIsTotal, ()) {
  const auto a = *wide_version();
  const auto b = *wide_version();
  const auto c = *wide_version();
  RC_ASSERT(int(a < b) + int(a == b) + int(a > b) == 1);  // trichotomy
  RC_ASSERT((a <=> b) == (0 <=> (b <=> a)));               // antisymmetry
  if (a <= b && b <= c) RC_ASSERT(a <= c);                 // transitivity
  if (a == b) RC_ASSERT(a.to_string() == b.to_string());
}

TEST(VersionTest, ZeroAndToString) {
  EXPECT_TRUE(Version{}.is_zero());
  EXPECT_FALSE((Version{0, 0, 1}).is_zero());
  EXPECT_EQ((Version{1700000000000, 3, 7}).to_string(), "1700000000000.3@n7");
  // Physical time dominates the counter, and the counter dominates the node id.
  EXPECT_LT((Version{1, counter_max, 9}), (Version{2, 0, 0}));
  EXPECT_LT((Version{1, 1, 9}), (Version{1, 2, 0}));
}

// ---------------------------------------------------------------------------------------------
// Record order and merge

RC_GTEST_PROP(RecordProperties, CompareIsATotalOrderConsistentWithEquality,
              (const Record& a, const Record& b, const Record& c)) {
  RC_ASSERT((compare(a, b) == 0) == (a == b));
  RC_ASSERT(compare(a, b) == (0 <=> compare(b, a)));
  if (compare(a, b) <= 0 && compare(b, c) <= 0) RC_ASSERT(std::is_lteq(compare(a, c)));
  if (a.version != b.version) RC_ASSERT(compare(a, b) == (a.version <=> b.version));
}

RC_GTEST_PROP(RecordProperties, MergeIsCommutative, (const Record& a, const Record& b)) {
  RC_CLASSIFY(a.version == b.version && a != b, "same stamp, different content");
  RC_ASSERT(merge(a, b) == merge(b, a));
}

RC_GTEST_PROP(RecordProperties, MergeIsAssociative,
              (const Record& a, const Record& b, const Record& c)) {
  RC_ASSERT(merge(merge(a, b), c) == merge(a, merge(b, c)));
}

RC_GTEST_PROP(RecordProperties, MergeIsIdempotent, (const Record& a, const Record& b)) {
  RC_ASSERT(merge(a, a) == a);
  // Merging a record in again changes nothing: what anti-entropy repeats all day.
  RC_ASSERT(merge(merge(a, b), b) == merge(a, b));
}

// The join picks a winner, it never blends two records; and the winner is an upper bound.
RC_GTEST_PROP(RecordProperties, MergeReturnsOneOfItsInputs, (const Record& a, const Record& b)) {
  const Record& m = merge(a, b);
  RC_ASSERT(&m == &a || &m == &b);
  RC_ASSERT(std::is_gteq(compare(m, a)));
  RC_ASSERT(std::is_gteq(compare(m, b)));
  RC_ASSERT(m.version == std::max(a.version, b.version));
}

RC_GTEST_PROP(RecordProperties, OptionalMergeIsASemilatticeWithAbsentAsBottom, ()) {
  const auto a = *maybe_record();
  const auto b = *maybe_record();
  const auto c = *maybe_record();
  const std::optional<Record> absent;
  RC_ASSERT(merge(a, b) == merge(b, a));
  RC_ASSERT(merge(merge(a, b), c) == merge(a, merge(b, c)));
  RC_ASSERT(merge(a, a) == a);
  RC_ASSERT(merge(a, absent) == a);
  RC_ASSERT(merge(absent, a) == a);
  const auto m = merge(a, b);
  RC_ASSERT(m == a || m == b);
  if (a && b) RC_ASSERT(m == merge(*a, *b));
}

// The crash-and-reissue case, spelled out: same stamp, different content. Every replica must
// pick the same winner whatever order the two arrive in; tombstones win over values.
TEST(RecordTest, SameStampDifferentContentHasOneWinner) {
  const Version v{100, 0, 1};
  const Record a{v, false, "a"};
  const Record b{v, false, "b"};
  const Record dead{v, true, ""};
  EXPECT_EQ(merge(a, b), b);
  EXPECT_EQ(merge(b, a), b);
  EXPECT_EQ(merge(a, dead), dead);
  EXPECT_EQ(merge(dead, b), dead);
}

TEST(RecordTest, NewerVersionWinsWhateverTheContent) {
  const Record old_value{{100, 5, 9}, false, "zzz"};
  const Record new_tombstone{{101, 0, 1}, true, ""};
  const Record newer_value{{101, 1, 0}, false, ""};
  EXPECT_EQ(merge(old_value, new_tombstone), new_tombstone);
  EXPECT_EQ(merge(new_tombstone, newer_value), newer_value);
}

// ---------------------------------------------------------------------------------------------
// Hybrid logical clock

// One step of a clock's life: read the wall clock (which may jump back or stand still), or
// observe a version from another node. Counters near their maximum are drawn too, since a peer's
// version can carry any counter.
struct HlcStep {
  bool observe = false;
  std::uint64_t wall_ms = 0;
  Version seen;
};

rc::Gen<HlcStep> hlc_step() {
  return rc::gen::build<HlcStep>(
      rc::gen::set(&HlcStep::observe, rc::gen::arbitrary<bool>()),
      rc::gen::set(&HlcStep::wall_ms, uniform<std::uint64_t>(0, 6)),
      rc::gen::set(&HlcStep::seen,
                   rc::gen::build<Version>(
                       rc::gen::set(&Version::physical_ms, uniform<std::uint64_t>(0, 6)),
                       rc::gen::set(&Version::counter,
                                    rc::gen::oneOf(uniform<std::uint32_t>(0, 4),
                                                   rc::gen::element(counter_max - 1, counter_max))),
                       rc::gen::set(&Version::node, uniform<NodeId>(0, 4)))));
}

// Each stamp is strictly above everything the clock issued or observed before it, carries the
// clock's node id, and is what last() reports afterwards.
RC_GTEST_PROP(HlcProperties, NowIsStrictlyAboveEverythingIssuedOrObserved, ()) {
  const auto node = *uniform<NodeId>(0, 4);
  const auto steps = *rc::gen::container<std::vector<HlcStep>>(hlc_step());
  Hlc clock(node);
  Version high;  // the greatest stamp issued or observed so far
  bool any = false;
  for (const auto& step : steps) {
    if (step.observe) {
      clock.observe(step.seen);
      if (!any || step.seen > high) high = step.seen;
      any = true;
      continue;
    }
    const Version stamp = clock.now(step.wall_ms);
    if (any) RC_ASSERT(stamp > high);
    RC_ASSERT(stamp.node == node);
    RC_ASSERT(stamp.physical_ms >= step.wall_ms);  // never behind the wall clock
    RC_ASSERT(clock.last() == stamp);
    high = stamp;
    any = true;
  }
}

RC_GTEST_PROP(HlcProperties, NowIsStrictlyIncreasingWhateverTheWallClockDoes, ()) {
  const auto node = *uniform<NodeId>(0, 4);
  const auto walls = *rc::gen::container<std::vector<std::uint64_t>>(
      rc::gen::oneOf(uniform<std::uint64_t>(0, 10),
                     rc::gen::element(std::uint64_t{1700000000000}, std::uint64_t{1})));
  Hlc clock(node);
  Version previous;
  bool first = true;
  for (std::uint64_t wall : walls) {
    const Version stamp = clock.now(wall);
    if (!first) RC_ASSERT(stamp > previous);
    RC_ASSERT(stamp.node == node);
    previous = stamp;
    first = false;
  }
}

// Whatever the clock went through before, observing a version puts the very next stamp past it.
RC_GTEST_PROP(HlcProperties, NextNowIsAboveAnObservedVersion, ()) {
  const auto node = *uniform<NodeId>(0, 4);
  const auto history = *rc::gen::container<std::vector<HlcStep>>(hlc_step());
  const auto seen = (*hlc_step()).seen;
  const auto wall_ms = *uniform<std::uint64_t>(0, 6);
  Hlc clock(node);
  for (const auto& step : history) {
    if (step.observe) {
      clock.observe(step.seen);
    } else {
      clock.now(step.wall_ms);
    }
  }
  clock.observe(seen);
  const Version stamp = clock.now(wall_ms);
  RC_ASSERT(stamp > seen);
  RC_ASSERT(stamp.node == node);
}

TEST(HlcTest, FollowsTheWallClockWhileItMovesForward) {
  Hlc clock(7);
  EXPECT_EQ(clock.now(100), (Version{100, 0, 7}));
  EXPECT_EQ(clock.now(100), (Version{100, 1, 7}));
  EXPECT_EQ(clock.now(99), (Version{100, 2, 7}));  // wall clock stepped back
  EXPECT_EQ(clock.now(105), (Version{105, 0, 7}));
}

TEST(HlcTest, StampsPastAVersionFromAClockThatRunsAhead) {
  Hlc clock(1);
  clock.now(100);
  clock.observe(Version{200, 4, 9});
  EXPECT_EQ(clock.now(150), (Version{200, 5, 1}));
  EXPECT_EQ(clock.now(201), (Version{201, 0, 1}));
}

// A stamp with the same time and counter but a higher node id must still be passed.
TEST(HlcTest, PassesAnEqualStampFromAHigherNode) {
  Hlc clock(1);
  clock.now(100);
  clock.observe(Version{100, 0, 9});
  EXPECT_GT(clock.now(100), (Version{100, 0, 9}));
}

// A peer's version can carry the largest counter; the clock must move to the next millisecond
// rather than wrap the counter to zero and issue a stamp below the one it observed.
TEST(HlcTest, CounterExhaustionMovesToTheNextMillisecond) {
  Hlc clock(1);
  const Version seen{100, counter_max, 9};
  clock.observe(seen);
  const Version stamp = clock.now(50);
  EXPECT_GT(stamp, seen);
  EXPECT_EQ(stamp, (Version{101, 0, 1}));
}

}  // namespace
}  // namespace kv
