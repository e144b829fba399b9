// Protocol scenarios for the replica state machine on a tiny in-test network: every message is
// delivered in order unless its node is marked down, and time moves only when a test says so.
// The seeded simulator covers the hostile cases; these pin down the expected behaviour of each
// path one at a time.
#include <gtest/gtest.h>

#include <deque>
#include <map>
#include <set>

#include "core/replica.h"

namespace kv {
namespace {

class TestNet {
 public:
  explicit TestNet(std::uint32_t nodes, bool sloppy = false, std::vector<std::int64_t> skew_ms = {}) {
    for (NodeId id = 1; id <= nodes; ++id) {
      ReplicaConfig c;
      c.self = id;
      for (NodeId m = 1; m <= nodes; ++m) c.members.push_back(m);
      c.sloppy_quorum = sloppy;
      skew_[id] = id - 1 < skew_ms.size() ? skew_ms[id - 1] : 0;
      replicas_.emplace(id, Replica(c, DurableState{}, clock(id)));
    }
  }

  std::uint64_t clock(NodeId id) { return static_cast<std::uint64_t>(static_cast<std::int64_t>(now_ms_) + skew_[id]); }
  Replica& at(NodeId id) { return replicas_.at(id); }

  ClientReply call(NodeId coordinator, ClientRequest rq) {
    rq.id = ++next_client_id_;
    at(coordinator).on_client(rq, clock(coordinator));
    pump();
    for (int i = 0; i < 400 && !reply_for(rq.id); ++i) advance(10);
    auto r = reply_for(rq.id);
    EXPECT_TRUE(r) << "no reply";
    return r ? *r : ClientReply{};
  }

  // Delivers every pending message (to nodes that are up) until the network is quiet.
  void pump() {
    for (int round = 0; round < 10000; ++round) {
      for (auto& [id, r] : replicas_) {
        Ready ready = r.take_ready();
        persisted_[id].insert(persisted_[id].end(), ready.persist.begin(), ready.persist.end());
        for (auto& m : ready.messages) wire_.push_back(m);
        for (auto& c : ready.replies) replies_.push_back(c);
      }
      if (wire_.empty()) return;
      Message m = wire_.front();
      wire_.pop_front();
      if (down_.contains(m.to) || down_.contains(m.from)) continue;
      at(m.to).on_message(m, clock(m.to));
    }
    FAIL() << "network never went quiet";
  }

  void advance(std::uint64_t ms) {
    now_ms_ += ms;
    for (auto& [id, r] : replicas_) {
      if (!down_.contains(id)) r.on_tick(clock(id));
    }
    pump();
  }

  std::optional<ClientReply> reply_for(std::uint64_t id) const {
    for (const auto& r : replies_) {
      if (r.id == id) return r;
    }
    return std::nullopt;
  }

  std::set<NodeId> down_;
  std::map<NodeId, std::vector<WalEntry>> persisted_;

 private:
  std::map<NodeId, Replica> replicas_;
  std::map<NodeId, std::int64_t> skew_;
  std::deque<Message> wire_;
  std::vector<ClientReply> replies_;
  std::uint64_t now_ms_ = 1'000'000;
  std::uint64_t next_client_id_ = 0;
};

ClientRequest put(std::string key, std::string value, std::uint32_t w = 0) {
  return ClientRequest{0, OpType::put, std::move(key), std::move(value), 0, w};
}
ClientRequest get(std::string key, std::uint32_t r = 0) {
  return ClientRequest{0, OpType::get, std::move(key), {}, r, 0};
}
ClientRequest del(std::string key) { return ClientRequest{0, OpType::del, std::move(key), {}, 0, 0}; }

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

}  // namespace
}  // namespace kv
