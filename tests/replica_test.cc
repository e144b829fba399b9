// Protocol scenarios for the replica state machine on the tiny in-test network of test_net.h:
// every message is delivered in order unless its node is marked down, and time moves only when a
// test says so. The seeded simulator covers the hostile cases; these pin down the expected
// behaviour of each path one at a time (tests/protocol_test.cc pins down their whole traces).
#include <gtest/gtest.h>

#include <algorithm>
#include <memory>

#include "core/replica.h"
#include "tests/test_net.h"

namespace kv {
namespace {

using namespace test;

std::vector<NodeId> owners(TestNet& net, const std::string& key) {
  return net.at(1).ring().preference_list(key, 3);
}

TEST(Replica, PutThenGetFromAnotherNode) {
  TestNet net(5);
  const auto w = net.call(1, put("a", "one"));
  ASSERT_FALSE(w.error) << w.detail;
  EXPECT_EQ(w.version.node, 1u);
  const auto r = net.call(4, get("a"));
  ASSERT_FALSE(r.error);
  ASSERT_TRUE(r.record);
  EXPECT_EQ(r.record->value, "one");
  EXPECT_EQ(r.record->version, w.version);
  for (NodeId n : owners(net, "a")) EXPECT_TRUE(net.at(n).state().store.get("a"));
}

TEST(Replica, MissingKeyAndDelete) {
  TestNet net(3);
  EXPECT_FALSE(net.call(2, get("nope")).record);
  net.call(1, put("k", "v"));
  const auto d = net.call(3, del("k"));
  ASSERT_FALSE(d.error);
  const auto r = net.call(2, get("k"));
  ASSERT_TRUE(r.record);
  EXPECT_TRUE(r.record->tombstone);
  EXPECT_EQ(r.record->version, d.version);
}

TEST(Replica, BadRequestsNameTheLimit) {
  TestNet net(3);
  auto e = net.call(1, put("", "v"));
  EXPECT_EQ(e.error, Errc::invalid_argument);
  EXPECT_NE(e.detail.find("key_bytes_max"), std::string::npos);
  e = net.call(1, put("k", std::string(1024 * 1024 + 1, 'x')));
  EXPECT_NE(e.detail.find("value_bytes_max"), std::string::npos);
  e = net.call(1, put("k", "v", 4));
  EXPECT_EQ(e.error, Errc::invalid_argument);
  EXPECT_NE(e.detail.find("replicas"), std::string::npos);
}

TEST(Replica, EveryAckIsInTheSameBatchAsItsPersist) {
  TestNet net(3);
  ClientRequest rq = put("k", "v");
  rq.id = 99;
  net.at(1).on_client(rq, net.clock(1));
  Ready first = net.at(1).take_ready();  // discovery: reads only, nothing to persist
  EXPECT_TRUE(first.persist.empty());
  ASSERT_FALSE(first.messages.empty());
  // Answer the discovery by hand, from a peer that holds nothing.
  for (const Message& m : first.messages) {
    const auto& q = std::get<ReadReq>(m.body);
    net.at(1).on_message(Message{m.to, 1, ReadResp{q.req, q.key, std::nullopt}}, net.clock(1));
  }
  Ready write = net.at(1).take_ready();
  for (const Message& m : write.messages) {
    const auto& w = std::get<WriteReq>(m.body);
    net.at(m.to).on_message(m, net.clock(m.to));
    Ready replica = net.at(m.to).take_ready();
    ASSERT_EQ(replica.persist.size(), 1u);  // the record, durable before ...
    ASSERT_EQ(replica.messages.size(), 1u);  // ... this acknowledgement leaves
    EXPECT_EQ(std::get<WriteAck>(replica.messages[0].body).version, w.record.version);
  }
}

TEST(Replica, QuorumUnavailableWritesNothing) {
  TestNet net(3);
  net.down_ = {2, 3};
  const auto e = net.call(1, put("k", "v"));
  EXPECT_EQ(e.error, Errc::quorum_unavailable);
  EXPECT_NE(e.detail.find("nothing written"), std::string::npos);
  EXPECT_FALSE(net.at(1).state().store.get("k"));
  EXPECT_TRUE(net.persisted_[1].empty());
}

TEST(Replica, ReadRepairBringsAStaleReplicaUpToDate) {
  TestNet net(3);
  net.call(1, put("k", "old"));
  net.down_ = {3};
  const auto w = net.call(1, put("k", "new"));
  ASSERT_FALSE(w.error);
  EXPECT_EQ(net.at(3).state().store.get("k")->value, "old");
  net.down_.clear();
  const auto r = net.call(2, get("k", 3));
  EXPECT_EQ(r.record->value, "new");
  EXPECT_EQ(net.at(3).state().store.get("k")->value, "new");
  EXPECT_GE(net.at(2).stats().read_repairs_sent, 1u);
}

TEST(Replica, HintIsKeptDurablyAndDeliveredWhenTheReplicaReturns) {
  TestNet net(3);
  net.down_ = {3};
  const auto w = net.call(1, put("k", "v"));
  ASSERT_FALSE(w.error);
  net.advance(3000);  // past the request deadline: replica 3 never acknowledged
  ASSERT_EQ(net.at(1).state().hints.size(), 1u);
  EXPECT_TRUE(std::holds_alternative<WalHint>(net.persisted_[1].back()));
  net.down_.clear();
  net.advance(1000);  // a hint round
  EXPECT_EQ(net.at(1).state().hints.size(), 0u);
  EXPECT_EQ(net.at(3).state().store.get("k")->version, w.version);
  EXPECT_TRUE(std::holds_alternative<WalHintDone>(net.persisted_[1].back()));
}

TEST(Replica, WriteOrderSurvivesClockSkew) {
  // Node 1's clock is 10 s ahead of node 2's. Plain last-write-wins would let node 1's earlier
  // write beat node 2's later one; stamping past the versions a majority reports prevents it.
  TestNet net(3, false, {10'000, 0, 0});
  const auto a = net.call(1, put("k", "first"));
  const auto b = net.call(2, put("k", "second"));
  ASSERT_FALSE(a.error);
  ASSERT_FALSE(b.error);
  EXPECT_GT(b.version, a.version);
  EXPECT_EQ(net.call(3, get("k")).record->value, "second");
}

TEST(Replica, SloppyQuorumWritesThroughFallbacksAndHandsOff) {
  TestNet net(5, true);
  const auto pref = owners(net, "k");
  NodeId coordinator = 0;
  for (NodeId n = 1; n <= 5; ++n) {
    if (std::find(pref.begin(), pref.end(), n) == pref.end()) coordinator = n;
  }
  net.down_ = {pref[1], pref[2]};
  const auto w = net.call(coordinator, put("k", "v"));
  ASSERT_FALSE(w.error) << w.detail;
  std::size_t hints = 0;
  for (NodeId n = 1; n <= 5; ++n) hints += net.at(n).state().hints.size();
  EXPECT_GE(hints, 1u);
  net.down_.clear();
  net.advance(4000);
  for (NodeId n = 1; n <= 5; ++n) EXPECT_EQ(net.at(n).state().hints.size(), 0u) << "n" << n;
  for (NodeId n : pref) EXPECT_EQ(net.at(n).state().store.get("k")->version, w.version);
}

TEST(Replica, StrictQuorumRefusesWhatSloppyAccepts) {
  TestNet net(5);
  const auto pref = owners(net, "k");
  net.down_ = {pref[1], pref[2]};
  const auto w = net.call(pref[0], put("k", "v"));
  EXPECT_TRUE(w.error);
}

TEST(Replica, InvariantsHoldThroughAScenario) {
  TestNet net(4);
  net.call(1, put("a", "1"));
  net.down_ = {2};
  net.call(3, put("a", "2"));
  net.call(4, del("b"));
  net.down_.clear();
  net.advance(3000);
  for (NodeId n = 1; n <= 4; ++n) EXPECT_EQ(net.at(n).check_invariants(), "") << "n" << n;
}

// ---- Bridges ----

TestNet::Tweak pg(PgMode mode, bool legacy = false) {
  return [=](ReplicaConfig& c) {
    c.pg_mode = mode;
    c.legacy = legacy;
    c.legacy_breaker_failures = 3;
    c.legacy_breaker_open_ms = 1000;
    c.pg_queue_max = 2;
  };
}

void expect_invariants(TestNet& net, NodeId nodes) {
  for (NodeId n = 1; n <= nodes; ++n) EXPECT_EQ(net.at(n).check_invariants(), "") << "n" << n;
}

TEST(Bridges, SyncWriteIsInPostgresBeforeItIsAcknowledged) {
  TestNet net(3, false, {}, pg(PgMode::sync));
  const auto w = net.call(1, put("k", "v1"));
  ASSERT_FALSE(w.error) << w.detail;
  ASSERT_TRUE(net.services_->table.contains("k"));
  EXPECT_EQ(net.services_->table["k"].version, w.version);
  EXPECT_EQ(net.services_->table["k"].value, "v1");
  net.call(2, del("k"));
  EXPECT_TRUE(net.services_->table["k"].tombstone);

  net.call(1, put("kept", "x"));
  net.services_->pg_down = true;
  const auto refused = net.call(1, put("kept", "y"));
  ASSERT_EQ(refused.error, Errc::unavailable);
  EXPECT_NE(refused.detail.find("PostgreSQL"), std::string::npos) << refused.detail;
  const auto r = net.call(2, get("kept"));  // reads go on while the database is down
  ASSERT_FALSE(r.error) << r.detail;
  ASSERT_TRUE(r.record);
  net.services_->pg_down = false;
  EXPECT_FALSE(net.call(3, put("kept", "z")).error);
  EXPECT_EQ(net.services_->table["kept"].value, "z");
  expect_invariants(net, 3);
}

TEST(Bridges, WholeClusterLossReadsBackFromPostgresAndNewWritesStampPastIt) {
  auto services = std::make_shared<Services>();
  Version before;
  {
    TestNet net(3, false, {}, pg(PgMode::sync), services);
    net.call(1, put("a", "1"));
    before = net.call(2, put("a", "2")).version;
    net.call(3, put("gone", "x"));
    net.call(3, del("gone"));
  }
  // Every disk lost, and the clocks now run 60 s behind the stamps in the table.
  TestNet net(3, false, {-60000, -60000, -60000}, pg(PgMode::sync), services);
  const auto r = net.call(1, get("a"));
  ASSERT_FALSE(r.error) << r.detail;
  ASSERT_TRUE(r.record);
  EXPECT_EQ(r.record->value, "2");
  EXPECT_EQ(r.record->version, before);
  for (NodeId n : owners(net, "a")) EXPECT_TRUE(net.at(n).state().store.get("a")) << "hydrated";
  const auto g = net.call(2, get("gone"));
  ASSERT_TRUE(g.record);
  EXPECT_TRUE(g.record->tombstone);
  // A key the new cluster never saw: the write looks it up first and stamps past it.
  services->table["b"] = Record{Version{before.physical_ms + 5, 0, 2}, false, "old"};
  const auto w = net.call(3, put("b", "new"));
  ASSERT_FALSE(w.error) << w.detail;
  EXPECT_GT(w.version, services->table.at("a").version);
  EXPECT_EQ(services->table["b"].value, "new");
  expect_invariants(net, 3);
}

TEST(Bridges, LegacyValueHydratesAtTheZeroVersionAndAnyWriteWins) {
  TestNet net(3, false, {}, pg(PgMode::off, true));
  net.services_->legacy["old"] = "L";
  const auto r = net.call(1, get("old"));
  ASSERT_FALSE(r.error) << r.detail;
  ASSERT_TRUE(r.record);
  EXPECT_EQ(r.record->value, "L");
  EXPECT_TRUE(r.record->version.is_zero());
  for (NodeId n : owners(net, "old")) EXPECT_EQ(net.at(n).state().store.get("old")->value, "L");
  net.services_->legacy_down = true;  // it stays in the cluster
  EXPECT_EQ(net.call(2, get("old")).record->value, "L");
  net.call(3, put("old", "mine"));
  EXPECT_EQ(net.call(1, get("old")).record->value, "mine");
  EXPECT_EQ(net.services_->legacy_calls, 1);
}

// An error reply is an error whatever its text says: a read must never take a failed legacy call
// for a not-found (a driver may well send an empty detail).
TEST(Bridges, AFailedLegacyCallWithoutADetailStillFailsTheRead) {
  TestNet net(3, false, {}, pg(PgMode::off, true));
  net.services_->legacy["k"] = "v";
  net.services_->legacy_down = true;
  net.services_->down_detail = "";
  const auto r = net.call(1, get("k"));
  EXPECT_EQ(r.error, make_error_code(Errc::unavailable));
  EXPECT_FALSE(r.record);
}

TEST(Bridges, AWriteRacingAHydrationWins) {
  TestNet net(3, false, {}, pg(PgMode::off, true));
  net.services_->legacy["k"] = "legacy";
  net.hold_bridges_ = true;
  const auto read = net.send(1, get("k"));
  net.pump();  // the quorum found nothing; the legacy call waits
  const auto w = net.call(2, put("k", "client"));
  ASSERT_FALSE(w.error) << w.detail;
  net.hold_bridges_ = false;
  net.pump();
  ASSERT_TRUE(net.reply_for(read));
  for (NodeId n : owners(net, "k")) EXPECT_EQ(net.at(n).state().store.get("k")->value, "client");
  EXPECT_EQ(net.call(3, get("k")).record->value, "client");
}

TEST(Bridges, ConcurrentMissesOfAKeyMakeOneLegacyCall) {
  TestNet net(3, false, {}, pg(PgMode::off, true));
  net.services_->legacy["hot"] = "v";
  net.hold_bridges_ = true;
  std::vector<std::uint64_t> ids;
  for (int i = 0; i < 50; ++i) ids.push_back(net.send(1, get("hot")));
  net.pump();
  net.hold_bridges_ = false;
  net.pump();
  for (int i = 0; i < 20; ++i) ids.push_back(net.send(1, get("hot")));  // after it resolved
  net.pump();
  for (auto id : ids) {
    auto r = net.reply_for(id);
    ASSERT_TRUE(r && r->record) << id;
    EXPECT_EQ(r->record->value, "v");
  }
  EXPECT_EQ(net.services_->legacy_calls, 1);
  EXPECT_GE(net.at(1).stats().misses_coalesced, 49u);
}

TEST(Bridges, NotFoundIsRememberedAndForgottenWhenTheKeyIsWritten) {
  TestNet net(3, false, {}, pg(PgMode::off, true));
  EXPECT_FALSE(net.call(1, get("k")).record);
  EXPECT_FALSE(net.call(1, get("k")).record);
  EXPECT_EQ(net.services_->legacy_calls, 1);
  net.call(1, put("k", "v"));
  EXPECT_EQ(net.call(1, get("k")).record->value, "v");
  net.advance(6000);  // past the TTL a miss asks again
  EXPECT_FALSE(net.call(1, get("other")).record);
  EXPECT_EQ(net.services_->legacy_calls, 2);
}

TEST(Bridges, BreakerOpensOnFailuresAndNeverAnswersAFalseNotFound) {
  TestNet net(3, false, {}, pg(PgMode::off, true));
  net.services_->legacy_down = true;
  for (int i = 0; i < 3; ++i) {
    const auto r = net.call(1, get("k" + std::to_string(i)));
    EXPECT_EQ(r.error, Errc::unavailable);
    EXPECT_FALSE(r.record);
  }
  const auto open = net.call(1, get("k9"));
  EXPECT_EQ(open.error, Errc::unavailable);
  EXPECT_NE(open.detail.find("circuit breaker"), std::string::npos) << open.detail;
  EXPECT_EQ(net.services_->legacy_calls, 3);
  net.services_->legacy_down = false;
  net.services_->legacy["k9"] = "back";
  net.advance(1100);
  const auto probe = net.call(1, get("k9"));
  ASSERT_FALSE(probe.error) << probe.detail;
  EXPECT_EQ(probe.record->value, "back");
  EXPECT_FALSE(net.at(1).legacy_breaker_open(2'000'000));
}

TEST(Bridges, PostgresIsAskedBeforeLegacyAndItsTombstoneIsFinal) {
  TestNet net(3, false, {}, pg(PgMode::sync, true));
  net.services_->table["d"] = Record{Version{5, 0, 1}, true, ""};
  net.services_->legacy["d"] = "stale";
  net.services_->legacy["l"] = "from-legacy";
  const auto d = net.call(1, get("d"));
  ASSERT_TRUE(d.record);
  EXPECT_TRUE(d.record->tombstone);
  EXPECT_EQ(net.call(2, get("l")).record->value, "from-legacy");
  EXPECT_EQ(net.services_->legacy_calls, 1);
  net.services_->pg_down = true;  // cannot tell absent from unreachable: an error, not a miss
  EXPECT_EQ(net.call(3, get("never")).error, Errc::unavailable);
}

TEST(Bridges, AsyncQueueCoalescesRetriesAndPushesBackWhenFull) {
  TestNet net(3, false, {}, pg(PgMode::async));
  net.services_->pg_down = true;
  ASSERT_FALSE(net.call(1, put("a", "1")).error);
  ASSERT_FALSE(net.call(1, put("a", "2")).error);
  ASSERT_FALSE(net.call(1, put("b", "1")).error);
  EXPECT_EQ(net.at(1).pg_queue_size(), 2u);
  const auto full = net.call(1, put("c", "1"));
  EXPECT_EQ(full.error, Errc::overloaded);
  EXPECT_FALSE(net.call(2, get("c")).record) << "a refused write wrote nothing";
  net.services_->pg_down = false;
  net.advance(6000);
  EXPECT_EQ(net.at(1).pg_queue_size(), 0u);
  EXPECT_EQ(net.services_->table["a"].value, "2");
  EXPECT_EQ(net.services_->table["b"].value, "1");
  expect_invariants(net, 3);
}

}  // namespace
}  // namespace kv
