// kvnode's driver of the core: one Asio event loop carries the replica's inputs in and its Ready
// batches out, in order, durable before they leave (Storage::when_durable). It is the
// production twin of the simulator's process model (sim/world.cc) and just as short.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <unordered_map>

#include "core/replica.h"
#include "net/http_server.h"
#include "net/log_limit.h"
#include "net/node_api.h"
#include "net/peer_links.h"
#include "net/resp_server.h"
#include "node/bridge.h"
#include "node/config.h"
#include "node/metrics.h"
#include "node/storage.h"

namespace kv {

class Node final : public NodeApi {
 public:
  Node(boost::asio::io_context& io, NodeConfig config, std::unique_ptr<Storage> storage);

  // Binds every listener and connects to the peers.
  Expected<void> start();
  // Stops accepting clients, lets in-flight requests finish (up to `grace`), then stops.
  void drain_and_stop(std::chrono::milliseconds grace, std::function<void()> done);

  void submit(ClientRequest request, std::function<void(const ClientReply&)> done) override;
  bool ready() const override;
  std::string metrics_text() const override;
  std::string cluster_json() const override;
  std::string info_text() const override;
  std::string remove_member(std::string_view name) override;

 private:
  struct InFlight {
    std::function<void(const ClientReply&)> done;
    OpType op;
    std::chrono::steady_clock::time_point started;
  };
  struct OpMetrics {
    std::uint64_t ok = 0, errors = 0;
    Histogram latency;
  };

  void on_peer_message(const Message& m);
  void on_timer();
  void process_ready();
  void release(Ready& ready);
  void arm_timer(std::uint64_t at_ms);
  void finish(const ClientReply& reply);
  void start_bridge_call(const BridgeCall& call);
  void on_bridge_reply(const BridgeReply& reply);
  std::uint64_t now_ms() const;

  boost::asio::io_context& io_;
  NodeConfig config_;
  std::unique_ptr<Storage> storage_;
  Replica replica_;
  PeerLinks links_;
  RespServer resp_;
  HttpServer http_;
  boost::asio::steady_timer timer_;
  std::shared_ptr<LogLimit> hints_refused_log_;
  std::optional<std::uint64_t> timer_at_ms_;
  std::unordered_map<std::uint64_t, InFlight> in_flight_;
  std::unique_ptr<Bridge> pg_;      // null unless --postgres
  std::unique_ptr<Bridge> legacy_;  // null unless --legacy-url
  std::uint64_t next_client_id_ = 1;
  bool draining_ = false;

  std::map<std::string, OpMetrics> op_metrics_;  // by operation name
  Histogram fsync_latency_;
  Histogram fsync_batch_{Histogram::count_bounds};
  std::chrono::steady_clock::time_point started_ = std::chrono::steady_clock::now();
};

}  // namespace kv
