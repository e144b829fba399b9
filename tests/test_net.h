// The in-test network of replicas, shared by the replica unit tests and the data-driven protocol
// scenarios: every message is delivered in order unless its node is down or its link is cut,
// and time moves only when a test says so. Each node's clock is the network's time plus that
// node's skew. Services stands in for PostgreSQL and the legacy API.
//
// Two ways to drive it: pump()/advance()/call() deliver one message at a time until the network
// is quiet (the unit tests); collect() and deliver() are the steps a test can sequence itself
// (the protocol scenarios deliver in rounds and print every batch).
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "core/replica.h"
#include "core/wal.h"

namespace kv::test {

// Stand-ins for PostgreSQL (a version-guarded table) and the legacy API (a map), answering the
// bridge calls of the nodes; they can be taken down.
struct Services {
  std::map<std::string, Record> table;
  std::map<std::string, std::string> legacy;
  bool pg_down = false, legacy_down = false;
  std::optional<std::string> down_detail;  // what a down service says (default: refused)
  int legacy_calls = 0, pg_calls = 0;

  BridgeReply answer(const BridgeCall& c) {
    BridgeReply r{c.id, c.kind, {}, {}, {}};
    const bool down = c.kind == BridgeKind::legacy_fetch ? legacy_down : pg_down;
    ++(c.kind == BridgeKind::legacy_fetch ? legacy_calls : pg_calls);
    if (down) {
      r.error = make_error_code(Errc::unavailable);
      r.detail = down_detail ? *down_detail : std::string(bridge_name(c.kind)) + ": connection refused";
      return r;
    }
    if (c.kind == BridgeKind::pg_write) {
      auto [it, fresh] = table.try_emplace(c.key, *c.record);
      if (!fresh && it->second.version < c.record->version) it->second = *c.record;
    } else if (c.kind == BridgeKind::pg_lookup) {
      if (auto it = table.find(c.key); it != table.end()) r.record = it->second;
    } else if (auto it = legacy.find(c.key); it != legacy.end()) {
      r.record = Record{Version{}, false, it->second};
    }
    return r;
  }
};

class TestNet {
 public:
  using Tweak = std::function<void(ReplicaConfig&)>;
  // Called with every non-empty batch a node hands out, before its outputs are carried out.
  using Observer = std::function<void(NodeId, const Ready&)>;

  // The time every node's clock starts from (plus its skew).
  static constexpr std::uint64_t start_ms = 1'000'000;
  // Incarnation k of a node numbers its requests from k * this (see ReplicaConfig).
  static constexpr std::uint64_t request_id_base_step = 1'000'000;

  explicit TestNet(std::uint32_t nodes, bool sloppy = false, std::vector<std::int64_t> skew_ms = {},
                   Tweak tweak = {}, std::shared_ptr<Services> services = {})
      : services_(services ? services : std::make_shared<Services>()) {
    for (NodeId id = 1; id <= nodes; ++id) {
      ReplicaConfig c;
      c.self = id;
      for (NodeId m = 1; m <= nodes; ++m) c.members.push_back(m);
      c.sloppy_quorum = sloppy;
      // No heartbeats unless a test is about them: they add messages to every tick.
      c.heartbeat_interval_ms = 0;
      if (tweak) tweak(c);
      skew_[id] = id - 1 < skew_ms.size() ? skew_ms[id - 1] : 0;
      configs_.emplace(id, c);
      replicas_.emplace(id, Replica(c, DurableState{}, clock(id)));
    }
  }

  std::uint64_t clock(NodeId id) { return static_cast<std::uint64_t>(static_cast<std::int64_t>(now_ms_) + skew_[id]); }
  Replica& at(NodeId id) { return replicas_.at(id); }
  std::uint32_t size() const { return static_cast<std::uint32_t>(replicas_.size()); }
  std::uint64_t now_ms() const { return now_ms_; }
  void set_skew(NodeId id, std::int64_t skew_ms) { skew_.at(id) = skew_ms; }
  std::int64_t skew(NodeId id) const { return skew_.at(id); }

  // Starts a request without waiting for its reply.
  std::uint64_t send(NodeId coordinator, ClientRequest rq) {
    rq.id = ++next_client_id_;
    at(coordinator).on_client(rq, clock(coordinator));
    return rq.id;
  }

  ClientReply call(NodeId coordinator, ClientRequest rq) {
    rq.id = ++next_client_id_;
    at(coordinator).on_client(rq, clock(coordinator));
    pump();
    for (int i = 0; i < 400 && !reply_for(rq.id); ++i) advance(10);
    auto r = reply_for(rq.id);
    EXPECT_TRUE(r) << "no reply";
    return r ? *r : ClientReply{};
  }

  // Takes every node's batch (in node order, down nodes included: what a node produced before
  // it went down still leaves it) and queues its outputs. True if any batch had outputs.
  bool collect() {
    bool any = false;
    for (auto& [id, r] : replicas_) {
      Ready ready = r.take_ready();
      if (!ready.has_outputs()) continue;
      any = true;
      if (observer_) observer_(id, ready);
      persisted_[id].insert(persisted_[id].end(), ready.persist.begin(), ready.persist.end());
      for (auto& m : ready.messages) wire_.push_back(m);
      for (auto& c : ready.replies) replies_.push_back(c);
      for (auto& c : ready.bridge_calls) calls_.emplace_back(id, c);
    }
    return any;
  }

  // Why a message would not arrive now: empty if it would.
  std::string blocked(const Message& m) const {
    if (down_.contains(m.to)) return "n" + std::to_string(m.to) + " down";
    if (down_.contains(m.from)) return "n" + std::to_string(m.from) + " down";
    if (cut_.contains({std::min(m.from, m.to), std::max(m.from, m.to)})) return "link cut";
    return {};
  }

  // Hands a message to its receiver unless it is blocked (then it is lost). True if delivered.
  bool deliver(const Message& m) {
    if (!blocked(m).empty()) return false;
    at(m.to).on_message(m, clock(m.to));
    return true;
  }

  // Delivers every pending message (to nodes that are up) until the network is quiet.
  void pump() {
    for (int round = 0; round < 10000; ++round) {
      collect();
      if (!hold_bridges_ && !calls_.empty()) {
        auto [node, c] = calls_.front();
        calls_.pop_front();
        at(node).on_bridge_reply(services_->answer(c), clock(node));
        continue;
      }
      if (wire_.empty()) return;
      Message m = wire_.front();
      wire_.pop_front();
      deliver(m);
    }
    FAIL() << "network never went quiet";
  }

  // Moves time on and ticks every node that is up (without delivering anything).
  void tick(std::uint64_t ms) {
    now_ms_ += ms;
    for (auto& [id, r] : replicas_) {
      if (!down_.contains(id)) r.on_tick(clock(id));
    }
  }

  void advance(std::uint64_t ms) {
    tick(ms);
    pump();
  }

  // A crash and restart: the node loses everything it had not handed out as durable, and its
  // next incarnation starts from what its persisted entries rebuild.
  void restart(NodeId id) {
    DurableState state;
    for (const WalEntry& e : persisted_[id]) wal_apply(e, state);
    ReplicaConfig c = configs_.at(id);
    c.request_id_base = ++restarts_[id] * request_id_base_step;
    replicas_.erase(id);
    replicas_.emplace(id, Replica(c, std::move(state), clock(id)));
  }

  std::optional<ClientReply> reply_for(std::uint64_t id) const {
    for (const auto& r : replies_) {
      if (r.id == id) return r;
    }
    return std::nullopt;
  }

  std::set<NodeId> down_;
  std::set<std::pair<NodeId, NodeId>> cut_;  // (lower id, higher id): both directions lost
  std::map<NodeId, std::vector<WalEntry>> persisted_;
  bool hold_bridges_ = false;  // bridge calls wait until this is cleared and pump() runs
  std::shared_ptr<Services> services_;
  Observer observer_;
  std::deque<Message> wire_;                          // sent, not yet delivered
  std::deque<std::pair<NodeId, BridgeCall>> calls_;   // bridge calls not yet answered

 private:
  std::map<NodeId, ReplicaConfig> configs_;
  std::map<NodeId, Replica> replicas_;
  std::map<NodeId, std::int64_t> skew_;
  std::map<NodeId, std::uint64_t> restarts_;
  std::vector<ClientReply> replies_;
  std::uint64_t now_ms_ = start_ms;
  std::uint64_t next_client_id_ = 0;
};

inline ClientRequest put(std::string key, std::string value, std::uint32_t w = 0) {
  return ClientRequest{0, OpType::put, std::move(key), std::move(value), 0, w};
}
inline ClientRequest get(std::string key, std::uint32_t r = 0) {
  return ClientRequest{0, OpType::get, std::move(key), {}, r, 0};
}
inline ClientRequest del(std::string key, std::uint32_t w = 0) {
  return ClientRequest{0, OpType::del, std::move(key), {}, 0, w};
}

}  // namespace kv::test
