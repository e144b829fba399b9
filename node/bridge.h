// Bridges carry the core's calls to services outside the cluster (core/messages.h, BridgeCall):
// PostgreSQL (write-through and lookup, node/pg_bridge) and the legacy HTTP API (read-through,
// node/legacy_bridge). Both run on the node's event loop, never block it, and answer every call
// exactly once, a timeout included; when and why to call is the core's business, not theirs.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/messages.h"

namespace kv {

struct PgOptions {
  std::string url;                // libpq connection string or postgresql:// URL; empty: off
  std::string table = "kv";       // created if missing
  std::size_t pool = 4;           // connections
  std::size_t batch_max = 256;    // writes pipelined into one round trip and one commit
  std::uint64_t timeout_ms = 2000;  // a call not answered by then fails
  std::uint64_t reconnect_initial_ms = 100, reconnect_max_ms = 5000;
};

struct LegacyOptions {
  std::string url_template;       // http://host:port/path/{key}; empty: off
  std::string field = "value";    // the JSON member holding the value
  std::uint64_t timeout_ms = 1000;
  std::size_t connections_max = 64;  // concurrent requests (and reused connections)
  std::size_t body_bytes_max = 2 * 1024 * 1024;  // a larger response is an error
};

class Bridge {
 public:
  using Done = std::function<void(BridgeReply)>;
  virtual ~Bridge() = default;
  // Connects (in the background: calls made before the service is reachable wait or fail).
  virtual void start() = 0;
  // Carries out `call`; `done` runs later on the event loop, never inside call().
  virtual void call(const BridgeCall& call, Done done) = 0;
  // Fails every call in flight and closes the connections.
  virtual void stop() = 0;
  // Prometheus lines of the bridge's own metrics (connections, latency, errors).
  virtual void write_metrics(std::string& out) const = 0;
};

// A bridge's answers, run later from one posted handler: never inside call(), and never in the
// middle of the bridge's own bookkeeping (an answer may make the core issue new calls). Answers
// still waiting when this is destroyed are dropped with it.
class BridgeAnswers {
 public:
  explicit BridgeAnswers(boost::asio::io_context& io) : io_(io) {}
  void add(Bridge::Done done, BridgeReply reply) {
    pending_.emplace_back(std::move(done), std::move(reply));
    if (posted_) return;
    posted_ = true;
    boost::asio::post(io_, [this, alive = std::weak_ptr<char>(alive_)] {
      if (alive.expired()) return;
      posted_ = false;
      auto batch = std::move(pending_);
      pending_.clear();
      for (auto& [answer, r] : batch) answer(std::move(r));
    });
  }

 private:
  boost::asio::io_context& io_;
  std::vector<std::pair<Bridge::Done, BridgeReply>> pending_;
  bool posted_ = false;
  std::shared_ptr<char> alive_ = std::make_shared<char>(0);
};

}  // namespace kv
