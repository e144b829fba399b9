// Anti-entropy (core/anti_entropy.h) as a property: three replicas start from arbitrary stores
// (overlapping keys, older and newer versions, tombstones, two records sharing a version) and
// run nothing but anti-entropy, with no client request. They must end holding the same store,
// equal to the merge of what they started with, with trees that match their stores; also when
// the key lists are cut into many small messages and the bandwidth limit lets one push through
// at a time. And tombstone collection: only once every replica holds the tombstone.
#include <gtest/gtest.h>
#include <rapidcheck.h>
#include <rapidcheck/gtest.h>

#include <deque>
#include <map>
#include <string>
#include <vector>

#include "core/replica.h"

namespace kv {
namespace {

constexpr NodeId nodes = 3;
constexpr std::uint64_t tick_ms = 50;
constexpr int rounds_max = 4000;

rc::Gen<Record> gen_record() {
  return rc::gen::exec([] {
    Record r;
    r.version = Version{*rc::gen::inRange<std::uint64_t>(1, 6), *rc::gen::inRange<std::uint32_t>(0, 3),
                        *rc::gen::inRange<NodeId>(1, nodes + 1)};
    r.tombstone = *rc::gen::arbitrary<bool>();
    if (!r.tombstone) r.value = *rc::gen::container<std::string>(*rc::gen::inRange(0, 12), rc::gen::inRange('a', 'z'));
    return r;
  });
}

// One tick of every replica, then every message until the wire is empty; messages `cut` refuses
// are lost.
template <typename Cut>
void run_round(std::vector<Replica>& replicas, std::uint64_t now, Cut cut) {
  std::deque<Message> wire;
  for (Replica& r : replicas) {
    r.on_tick(now);
    for (Message& m : r.take_ready().messages) wire.push_back(std::move(m));
  }
  while (!wire.empty()) {
    const Message m = std::move(wire.front());
    wire.pop_front();
    if (cut(m)) continue;
    Replica& to = replicas[m.to - 1];
    to.on_message(m, now);
    for (Message& out : to.take_ready().messages) wire.push_back(std::move(out));
  }
}

std::map<std::string, Record> sorted_store(const Replica& r) {
  std::map<std::string, Record> out;
  for (const Store::Entry* e : r.state().store.sorted()) out.emplace(e->first, e->second);
  return out;
}

RC_GTEST_PROP(AntiEntropy, ReplicasConvergeOnTheMergeOfTheirStores, ()) {
  const auto vnodes = *rc::gen::inRange<std::uint32_t>(1, 5);
  const std::size_t message_bytes_max = *rc::gen::element<std::size_t>(60, 300, 1u << 20);
  const std::uint64_t bytes_per_s = *rc::gen::element<std::uint64_t>(0, 400, 1u << 20);
  std::map<std::string, Record> merged;
  std::vector<Replica> replicas;
  for (NodeId id = 1; id <= nodes; ++id) {
    DurableState state;
    const auto count = *rc::gen::inRange(0, 40);
    for (int i = 0; i < count; ++i) {
      const std::string key = "k" + std::to_string(*rc::gen::inRange(0, 60));
      const Record r = *gen_record();
      state.store.apply(key, r);
      auto [it, fresh] = merged.try_emplace(key, r);
      if (!fresh) it->second = merge(it->second, r);
    }
    ReplicaConfig c;
    c.self = id;
    for (NodeId m = 1; m <= nodes; ++m) c.members.push_back(m);
    c.vnodes_per_node = vnodes;
    c.ae_interval_ms = 100;
    c.ae_bytes_per_s = bytes_per_s;
    c.ae_message_bytes_max = message_bytes_max;
    replicas.emplace_back(c, std::move(state), 1000);
  }
  std::uint64_t now = 1000;
  int round = 0;
  for (; round < rounds_max; ++round) {
    now += tick_ms;
    run_round(replicas, now, [](const Message&) { return false; });
    for (const Replica& r : replicas) {
      RC_ASSERT(r.check_invariants() == "");
      RC_ASSERT(r.check_trees() == "");
    }
    if (sorted_store(replicas[0]) == merged && sorted_store(replicas[1]) == merged &&
        sorted_store(replicas[2]) == merged) {
      break;
    }
  }
  RC_ASSERT(round < rounds_max);
  RC_TAG(message_bytes_max < 1000 ? "cut key lists" : "whole key lists");
}

// Tombstone collection (repair-gated): a tombstone that one replica lacks (it holds the value
// the delete removed) is not collected, however old, until anti-entropy has brought it there;
// then every replica drops it, with the older hint one of them held, and the key never comes
// back. A live key is never dropped.
TEST(TombstoneCollection, OnlyOnceEveryReplicaHoldsTheTombstone) {
  const Record value{Version{50, 0, 3}, false, "old"};
  const Record tombstone{Version{100, 0, 1}, true, ""};
  const Record live{Version{70, 0, 2}, false, "live"};
  const std::uint64_t grace_ms = 5000;
  std::vector<Replica> replicas;
  for (NodeId id = 1; id <= nodes; ++id) {
    DurableState state;
    state.store.apply("gone", id == 3 ? value : tombstone);
    state.store.apply("kept", live);
    if (id == 1) state.hints.add(3, "gone", Record{Version{60, 0, 1}, false, "hinted"});
    ReplicaConfig c;
    c.self = id;
    for (NodeId m = 1; m <= nodes; ++m) c.members.push_back(m);
    c.vnodes_per_node = 2;
    c.ae_interval_ms = 100;
    c.tombstone_grace_ms = grace_ms;
    c.hint_interval_ms = 1'000'000'000;  // the hint is never offered: only collection drops it
    replicas.emplace_back(c, std::move(state), 1000);
  }
  // Node 3 is cut off: no exchange reaches it or leaves it, so it keeps the old value.
  std::uint64_t now = 1000;
  auto run = [&](int rounds, bool cut) {
    for (int round = 0; round < rounds; ++round) {
      now += tick_ms;
      run_round(replicas, now, [&](const Message& m) { return cut && (m.to == 3 || m.from == 3); });
      for (const Replica& r : replicas) {
        ASSERT_EQ(r.check_invariants(), "");
        ASSERT_EQ(r.check_trees(), "");
        ASSERT_EQ(r.state().store.get("kept"), live);
      }
    }
  };
  run(400, true);  // 20 s: far past the grace
  EXPECT_EQ(replicas[0].state().store.get("gone"), tombstone);
  EXPECT_EQ(replicas[1].state().store.get("gone"), tombstone);
  EXPECT_EQ(replicas[2].state().store.get("gone"), value);
  EXPECT_EQ(replicas[0].stats().tombstones_collected + replicas[1].stats().tombstones_collected, 0u);
  run(400, false);
  std::uint64_t collected = 0, reaped = 0;
  for (const Replica& r : replicas) {
    EXPECT_EQ(r.state().store.get("gone"), std::nullopt) << "n" << r.config().self;
    EXPECT_EQ(r.state().store.size(), 1u);
    collected += r.stats().tombstones_collected;
    reaped += r.stats().tombstones_reaped;
  }
  EXPECT_GE(collected, 1u);
  EXPECT_EQ(collected + reaped, 3u);
  EXPECT_EQ(replicas[0].state().hints.size(), 0u);
  EXPECT_EQ(replicas[0].stats().hints_dropped_with_tombstone, 1u);
}

// Without anti-entropy no exchange proves anything: tombstones are kept however old they are.
TEST(TombstoneCollection, NeverWithoutAntiEntropyOrWithBridges) {
  ReplicaConfig c;
  c.self = 1;
  c.members = {1, 2, 3};
  c.tombstone_grace_ms = 5000;
  c.ae_interval_ms = 0;
  EXPECT_FALSE(c.collects_tombstones());
  c.ae_interval_ms = 100;
  EXPECT_TRUE(c.collects_tombstones());
  c.legacy = true;
  EXPECT_FALSE(c.collects_tombstones());
  c.legacy = false;
  c.pg_mode = PgMode::sync;
  EXPECT_FALSE(c.collects_tombstones());
  c.pg_mode = PgMode::off;
  c.sloppy_quorum = true;
  EXPECT_FALSE(c.collects_tombstones());
}

}  // namespace
}  // namespace kv
