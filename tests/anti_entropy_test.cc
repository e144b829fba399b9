// Anti-entropy (core/anti_entropy.h) as a property: three replicas start from arbitrary stores
// (overlapping keys, older and newer versions, tombstones, two records sharing a version) and
// run nothing but anti-entropy, with no client request. They must end holding the same store,
// equal to the merge of what they started with, with trees that match their stores; also when
// the key lists are cut into many small messages and the bandwidth limit lets one push through
// at a time.
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
    std::deque<Message> wire;
    for (Replica& r : replicas) {
      r.on_tick(now);
      for (Message& m : r.take_ready().messages) wire.push_back(std::move(m));
    }
    while (!wire.empty()) {
      const Message m = std::move(wire.front());
      wire.pop_front();
      Replica& to = replicas[m.to - 1];
      to.on_message(m, now);
      for (Message& out : to.take_ready().messages) wire.push_back(std::move(out));
    }
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

}  // namespace
}  // namespace kv
