// kvnode: one node of the store. Parses its configuration, recovers its data directory, serves
// peers, RESP and HTTP on one event loop, and drains cleanly on SIGTERM or SIGINT.
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>

#include "net/log.h"
#include "node/config.h"
#include "node/node.h"
#include "node/pg_bridge.h"

namespace {

const char* fsync_name(kv::FsyncMode mode) {
  return mode == kv::FsyncMode::always  ? "always"
         : mode == kv::FsyncMode::batch ? "batch"
                                        : "none";
}

void log_bridges(const kv::NodeConfig& config, const std::string& self) {
  if (config.pg.url.empty()) {
    kv::log_line(self, "PostgreSQL bridge off");
  } else {
    kv::log_line(self, std::string("PostgreSQL bridge on (") +
                           (config.replica.pg_mode == kv::PgMode::sync ? "sync" : "async") +
                           ", " + kv::redact_pg_url(config.pg.url) + ", table " +
                           config.pg.table + ", pool " + std::to_string(config.pg.pool) + ")");
  }
  if (config.legacy.url_template.empty()) {
    kv::log_line(self, "legacy API bridge off");
  } else {
    kv::log_line(self, "legacy API bridge on (" + config.legacy.url_template + ", field " +
                           config.legacy.field + ")");
  }
}

}  // namespace

int main(int argc, char** argv) {
  auto parsed = kv::parse_node_config(argc, argv);
  if (!parsed) {
    kv::log_line("kvnode", parsed.error().detail + "\nTry 'kvnode --help'.");
    return 2;
  }
  if (!parsed.value()) return 0;  // --help
  const kv::NodeConfig& config = *parsed.value();
  const std::string self = "kvnode " + config.name;

  boost::asio::io_context io(1);
  auto storage = kv::Storage::open(config.storage, io);
  if (!storage) {
    kv::log_line("kvnode", storage.error().detail);
    return 1;
  }
  const auto& st = storage.value()->stats();
  kv::log_line(self, "recovered " + config.storage.dir + " (" +
                         std::to_string(st.recovered_records) + " log records replayed" +
                         (st.recovered_tail_cut ? ", damaged tail cut" : "") + ")");

  kv::Node node(io, config, std::move(storage).value());
  if (auto started = node.start(); !started) {
    kv::log_line("kvnode", started.error().detail);
    return 1;
  }
  kv::log_line(self, "peers " + config.peer_addr.to_string() + ", RESP " +
                         config.resp_addr.to_string() + ", HTTP " + config.http_addr.to_string() +
                         ", fsync " + fsync_name(config.storage.fsync));
  log_bridges(config, self);

  boost::asio::signal_set signals(io, SIGTERM, SIGINT);
  signals.async_wait([&](const boost::system::error_code& ec, int sig) {
    if (ec) return;
    kv::log_line(self, "signal " + std::to_string(sig) + ", draining");
    node.drain_and_stop(std::chrono::milliseconds(5000), [&] { io.stop(); });
  });
  io.run();
  kv::log_line(self, "stopped");
  return 0;
}
