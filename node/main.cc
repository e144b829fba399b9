// kvnode: one node of the store. Parses its configuration, recovers its data directory, serves
// peers, RESP and HTTP on one event loop, and drains cleanly on SIGTERM or SIGINT.
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <iostream>

#include "node/config.h"
#include "node/node.h"
#include "node/pg_bridge.h"

int main(int argc, char** argv) {
  int exit_code = 0;
  auto config = kv::parse_node_config(argc, argv, exit_code);
  if (!config) return exit_code;

  boost::asio::io_context io(1);
  std::string error;
  auto storage = kv::Storage::open(config->storage, io, error);
  if (!storage) {
    std::cerr << "kvnode: " << error << std::endl;
    return 1;
  }
  const auto& st = storage.value()->stats();
  std::cerr << "kvnode " << config->name << ": recovered " << config->storage.dir << " ("
            << st.recovered_records << " log records replayed"
            << (st.recovered_tail_cut ? ", damaged tail cut" : "") << ")" << std::endl;

  kv::Node node(io, *config, std::move(storage.value()));
  if (auto e = node.start(); !e.empty()) {
    std::cerr << "kvnode: " << e << std::endl;
    return 1;
  }
  std::cerr << "kvnode " << config->name << ": peers " << config->peer_addr.to_string()
            << ", RESP " << config->resp_addr.to_string() << ", HTTP "
            << config->http_addr.to_string() << ", fsync "
            << (config->storage.fsync == kv::FsyncMode::always ? "always"
                : config->storage.fsync == kv::FsyncMode::batch ? "batch" : "none")
            << std::endl;

  if (config->pg.url.empty()) {
    std::cerr << "kvnode " << config->name << ": PostgreSQL bridge off" << std::endl;
  } else {
    std::cerr << "kvnode " << config->name << ": PostgreSQL bridge on ("
              << (config->replica.pg_mode == kv::PgMode::sync ? "sync" : "async") << ", "
              << kv::redact_pg_url(config->pg.url) << ", table " << config->pg.table << ", pool "
              << config->pg.pool << ")" << std::endl;
  }
  if (config->legacy.url_template.empty()) {
    std::cerr << "kvnode " << config->name << ": legacy API bridge off" << std::endl;
  } else {
    std::cerr << "kvnode " << config->name << ": legacy API bridge on (" << config->legacy.url_template
              << ", field " << config->legacy.field << ")" << std::endl;
  }

  boost::asio::signal_set signals(io, SIGTERM, SIGINT);
  signals.async_wait([&](const boost::system::error_code& ec, int sig) {
    if (ec) return;
    std::cerr << "kvnode " << config->name << ": signal " << sig << ", draining" << std::endl;
    node.drain_and_stop(std::chrono::milliseconds(5000), [&] { io.stop(); });
  });
  io.run();
  std::cerr << "kvnode " << config->name << ": stopped" << std::endl;
  return 0;
}
