// Membership (core/membership.h): the phi-accrual failure detector on its own, then three nodes
// over TestNet with heartbeats on: their members tables converge (also after a restart), a table
// naming a stranger is refused, the coordinator fails at once what the replicas known down leave
// out of reach and skips them otherwise, and hints wait for their target to be back.
#include <gtest/gtest.h>

#include <algorithm>
#include <string>

#include "core/failure_detector.h"
#include "core/replica.h"
#include "tests/test_net.h"

namespace kv {
namespace {

using test::TestNet;

constexpr std::uint64_t beat_ms = 100;

TEST(FailureDetector, PhiGrowsWithSilenceAndAHeartbeatBringsThePeerBack) {
  FailureDetector fd(beat_ms, 8.0, 0);
  std::uint64_t now = 0;
  for (int i = 0; i < 20; ++i) fd.heard(2, now += beat_ms);
  EXPECT_DOUBLE_EQ(fd.mean_interval_ms(2), 100.0);
  EXPECT_DOUBLE_EQ(fd.phi(2, now), 0.0);
  EXPECT_TRUE(fd.up(2, now));
  // phi = elapsed / mean * log10(e): 8 is reached after 8 / 0.4343 = 18.4 mean intervals.
  EXPECT_NEAR(fd.phi(2, now + 1000), 4.343, 0.01);
  EXPECT_TRUE(fd.up(2, now + 1800));
  EXPECT_FALSE(fd.up(2, now + 1900));
  fd.heard(2, now + 1900);
  EXPECT_TRUE(fd.up(2, now + 1900));
  // The long silence was capped at four intervals: one outage barely moves the mean.
  EXPECT_LT(fd.mean_interval_ms(2), 115.0);
  // A clock stepped backwards counts as no time elapsed.
  EXPECT_DOUBLE_EQ(fd.phi(2, now), 0.0);
  // A peer never heard is taken as heard at the start; with no heartbeats, every peer is up.
  EXPECT_FALSE(fd.up(3, 10'000));
  FailureDetector off(0, 8.0, 0);
  EXPECT_TRUE(off.up(3, 1'000'000));
}

TestNet::Tweak with_heartbeats() {
  return [](ReplicaConfig& c) {
    c.heartbeat_interval_ms = beat_ms;
    c.peer_addr = "127.0.0.1:700" + std::to_string(c.self);
  };
}

bool tables_agree(TestNet& net) {
  for (NodeId id = 2; id <= net.size(); ++id) {
    if (net.at(id).members_hash() != net.at(1).members_hash()) return false;
  }
  return true;
}

TEST(Membership, TablesConvergeAndFollowARestart) {
  TestNet net(3, false, {}, with_heartbeats());
  EXPECT_FALSE(tables_agree(net));  // each knows only its own generation and address
  net.advance(beat_ms);
  net.advance(beat_ms);
  ASSERT_TRUE(tables_agree(net));
  EXPECT_EQ(net.at(1).members().at(3).peer_addr, "127.0.0.1:7003");
  EXPECT_EQ(net.at(1).members().at(3).state, MemberState::normal);

  net.restart(3);
  const std::uint64_t generation = net.at(3).members().at(3).generation;
  EXPECT_GT(generation, 0u);
  net.advance(beat_ms);
  net.advance(beat_ms);
  ASSERT_TRUE(tables_agree(net));
  EXPECT_EQ(net.at(1).members().at(3).generation, generation);
  EXPECT_GT(net.at(1).stats().gossip_entries_applied, 0u);
}

TEST(Membership, ATableNamingAStrangerOrShrinkingTheRingBelowNIsRefusedWhole) {
  TestNet net(3, false, {}, with_heartbeats());
  net.advance(beat_ms);
  net.advance(beat_ms);
  const std::uint64_t before = net.at(1).members_hash();
  Gossip g;
  g.members.push_back(Member{.id = 2, .generation = 1u << 30, .peer_addr = "elsewhere"});
  g.members.push_back(Member{.id = 9, .peer_addr = "a stranger"});
  net.at(1).on_message(Message{2, 1, g}, net.clock(1));
  EXPECT_EQ(net.at(1).stats().gossip_refused, 1u);
  EXPECT_EQ(net.at(1).members_hash(), before);
  EXPECT_EQ(net.at(1).members().count(9), 0u);
  // Nor is a table taken that would leave fewer than N members in the ring.
  Gossip out;
  out.members.push_back(Member{.id = 3, .state = MemberState::left, .generation = 1u << 30});
  net.at(1).on_message(Message{2, 1, out}, net.clock(1));
  EXPECT_EQ(net.at(1).stats().gossip_refused, 2u);
  EXPECT_EQ(net.at(1).members().at(3).state, MemberState::normal);
  EXPECT_EQ(net.at(1).ring().node_count(), 3u);
}

ClientRequest put(std::string key, std::uint32_t w = 0) {
  ClientRequest rq;
  rq.op = OpType::put;
  rq.key = std::move(key);
  rq.value = "v";
  rq.w = w;
  return rq;
}

// Every message of the wire to `to` that is a request's (a key's read or write).
std::size_t requests_to(const TestNet& net, NodeId to) {
  return static_cast<std::size_t>(std::count_if(net.wire_.begin(), net.wire_.end(), [&](const Message& m) {
    return m.to == to && (std::holds_alternative<ReadReq>(m.body) || std::holds_alternative<WriteReq>(m.body));
  }));
}

TEST(Membership, TheCoordinatorFailsAtOnceWhatDownReplicasLeaveOutOfReach) {
  TestNet net(3, false, {}, with_heartbeats());
  net.advance(beat_ms);
  net.down_ = {2, 3};
  for (int i = 0; i < 25; ++i) net.advance(beat_ms);  // 2.5 s: phi 8 at 1.84 s
  ASSERT_FALSE(net.at(1).peer_up(2, net.clock(1)));
  ASSERT_GT(net.at(1).stats().peers_marked_down, 0u);

  const std::uint64_t id = net.send(1, put("k"));
  net.collect();
  const auto reply = net.reply_for(id);  // answered within the input, with nothing sent
  ASSERT_TRUE(reply);
  EXPECT_EQ(reply->error, make_error_code(Errc::quorum_unavailable));
  EXPECT_NE(reply->detail.find("n2, n3 are down (failure detector)"), std::string::npos) << reply->detail;
  EXPECT_NE(reply->detail.find("nothing written"), std::string::npos);
  EXPECT_EQ(requests_to(net, 2) + requests_to(net, 3), 0u);
  EXPECT_EQ(net.at(1).stats().requests_failed_fast, 1u);
  EXPECT_FALSE(net.at(1).state().store.get("k"));

  // One replica back: its next heartbeat makes it up, and W=2 is reached without waiting for n3,
  // which is not even sent the write (it gets a hint).
  net.down_ = {3};
  net.advance(beat_ms);
  ASSERT_TRUE(net.at(1).peer_up(2, net.clock(1)));
  const std::uint64_t ok = net.send(1, put("k"));
  net.collect();
  EXPECT_EQ(requests_to(net, 3), 0u);
  net.pump();
  ASSERT_TRUE(net.reply_for(ok));
  EXPECT_FALSE(net.reply_for(ok)->error) << net.reply_for(ok)->detail;
  EXPECT_GT(net.at(1).stats().sends_skipped_down, 0u);
}

TEST(Membership, HintsWaitForTheirTargetToBeBack) {
  TestNet net(3, false, {}, with_heartbeats());
  net.advance(beat_ms);
  net.down_ = {3};
  for (int i = 0; i < 25; ++i) net.advance(beat_ms);
  ASSERT_FALSE(net.at(1).peer_up(3, net.clock(1)));
  ASSERT_FALSE(net.call(1, put("k")).error);
  for (int i = 0; i < 25; ++i) net.advance(beat_ms);  // past the deadline: n3 gets a hint
  ASSERT_EQ(net.at(1).state().hints.size(), 1u);
  // Hint rounds pass n3 over while it is down: nothing is offered to it.
  net.tick(1000);
  net.collect();
  EXPECT_EQ(requests_to(net, 3), 0u);
  net.pump();
  net.down_.clear();
  for (int i = 0; i < 10 && net.at(1).state().hints.size() > 0; ++i) net.advance(beat_ms * 5);
  EXPECT_EQ(net.at(1).state().hints.size(), 0u);
  EXPECT_EQ(net.at(1).stats().hints_delivered, 1u);
  ASSERT_TRUE(net.at(3).state().store.get("k"));
}


TestNet::Tweak removable() {
  return [](ReplicaConfig& c) {
    c.heartbeat_interval_ms = 100;
    c.ae_interval_ms = 100;
    c.request_timeout_ms = 500;
    c.retry_interval_ms = 100;
  };
}

ClientRequest request(OpType op, std::string key, std::string value = {}, std::uint32_t q = 0) {
  ClientRequest rq;
  rq.op = op;
  rq.key = std::move(key);
  rq.value = std::move(value);
  (op == OpType::get ? rq.r : rq.w) = q;
  return rq;
}

TEST(Membership, RemovalsAreRefusedWithAReason) {
  TestNet three(3, false, {}, removable());
  three.advance(100);
  three.down_ = {3};
  for (int i = 0; i < 30; ++i) three.advance(100);
  EXPECT_EQ(three.at(1).remove_member(3, three.clock(1)), "removing n3 would leave 2 members, fewer than N=3");
  TestNet net(4, false, {}, removable());
  net.advance(100);
  EXPECT_EQ(net.at(1).remove_member(1, net.clock(1)), "a node cannot remove itself");
  EXPECT_EQ(net.at(1).remove_member(9, net.clock(1)), "n9 is not a member");
  EXPECT_EQ(net.at(1).remove_member(4, net.clock(1)),
            "n4 is up: only a member the failure detector takes as down can be removed");
}

// n4 dies; n1 is told to remove it. Writes go on all along, through every coordinator. The steps
// run by themselves on every node: every table ends with n4 left, every key is on its three
// replicas of the ring without n4 (n3 or another node gained it by anti-entropy), and every
// acknowledged write reads back with R = 3.
TEST(Membership, ADeadMemberIsRemovedAndItsRangesReplicatedAgain) {
  TestNet net(4, false, {}, removable());
  net.advance(100);
  std::map<std::string, std::string> acked;
  int written = 0;
  auto write_some = [&](int count) {
    for (int i = 0; i < count; ++i, ++written) {
      const std::string key = "k" + std::to_string(written % 60), value = "v" + std::to_string(written);
      const NodeId via = static_cast<NodeId>(1 + written % 3);
      const ClientReply r = net.call(via, request(OpType::put, key, value));
      if (!r.error) acked[key] = value;
    }
  };
  write_some(60);
  net.down_ = {4};
  for (int i = 0; i < 30; ++i) net.advance(100);
  ASSERT_FALSE(net.at(1).peer_up(4, net.clock(1)));
  ASSERT_EQ(net.at(1).remove_member(4, net.clock(1)), "");
  EXPECT_EQ(net.at(2).remove_member(4, net.clock(2)), "");  // a second node may start it too
  EXPECT_EQ(net.at(1).remove_member(4, net.clock(1)), "n4 is being removed: one change at a time");
  EXPECT_EQ(net.at(1).members().at(4).state, MemberState::leaving);
  int steps = 0;
  for (; steps < 600 && net.at(1).members().at(4).state != MemberState::left; ++steps) {
    net.advance(100);
    if (steps % 5 == 0) write_some(1);
  }
  ASSERT_EQ(net.at(1).members().at(4).state, MemberState::left) << "after " << steps << " steps";
  for (int i = 0; i < 10; ++i) net.advance(100);
  for (NodeId n = 2; n <= 3; ++n) {
    EXPECT_EQ(net.at(n).members_hash(), net.at(1).members_hash()) << "n" << n;
    EXPECT_EQ(net.at(n).members().at(4).state, MemberState::left);
  }
  EXPECT_EQ(net.at(1).remove_member(4, net.clock(1)), "n4 has left already");
  // n1..n3 are the whole ring now: N = 3 means every key on every one of them.
  for (const auto& [key, value] : acked) {
    for (NodeId n = 1; n <= 3; ++n) {
      const auto held = net.at(n).state().store.get(key);
      ASSERT_TRUE(held) << key << " missing on n" << n;
    }
    const ClientReply r = net.call(1, request(OpType::get, key, {}, 3));
    ASSERT_FALSE(r.error) << key << ": " << r.detail;
    ASSERT_TRUE(r.record && !r.record->tombstone) << key;
    EXPECT_EQ(r.record->value, value) << key;
  }
  EXPECT_GT(net.at(1).stats().membership_steps + net.at(2).stats().membership_steps +
                net.at(3).stats().membership_steps, 2u);
  // The change survives a restart: the log kept the table.
  net.restart(2);
  EXPECT_EQ(net.at(2).members().at(4).state, MemberState::left);
  EXPECT_EQ(net.at(2).ring().node_count(), 3u);
}

}  // namespace
}  // namespace kv
