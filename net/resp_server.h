// The Redis protocol front door: accepts TCP connections, moves bytes between each socket and
// its RespSession, and enforces the per-connection limits that need a clock or a socket (how
// many clients, how long a client may stay idle or leave a command half-sent, how much reply
// data may wait for a client that does not read). Everything a client can observe beyond that
// lives in RespSession.
//
// A misbehaving client only ever loses its own connection: a protocol error is answered and that
// connection closed, a stalled one is timed out, and the server keeps serving everyone else.
//
// Threading: everything runs on the one thread that runs the io_context, the node's completions
// included. Call listen() before that thread starts or on it; call stop() and the accessors on
// it (or once it has stopped).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/system/error_code.hpp>

#include "net/resp.h"
#include "net/node_api.h"

namespace kv {

struct RespServerOptions {
  RespLimits limits;
  // Beyond this many open connections a new client gets Redis's error line and is closed.
  std::size_t connections_max = 10000;
  // A connection with nothing pending (no partial command, no request in flight, no reply
  // unsent) for this long is closed; so is one whose reply write makes no progress for this
  // long (a client that stopped reading). Zero: never.
  std::chrono::milliseconds idle_timeout{300000};
  // A half-received command must complete within this, counted from when its first bytes were
  // seen or the last command before it completed. Zero: never.
  std::chrono::milliseconds read_timeout{30000};
};

class RespServer {
 public:
  // REQUIRES: `io` and `node` outlive this server and every handler it leaves queued in `io`.
  RespServer(boost::asio::io_context& io, NodeApi& node, RespServerOptions options);
  ~RespServer();  // stop()
  RespServer(const RespServer&) = delete;
  RespServer& operator=(const RespServer&) = delete;

  // Binds and starts accepting; the error (address in use, permission) comes back, nothing is
  // thrown. Port 0 picks a free port: see port(). REQUIRES: called at most once.
  boost::system::error_code listen(const boost::asio::ip::tcp::endpoint& endpoint);

  // Stops accepting and closes every connection; requests in flight complete into nothing.
  void stop();
  // Closes the listener only: open connections go on, so that requests in flight are answered.
  void stop_accepting();

  std::uint16_t port() const;          // the bound port, 0 before listen()
  std::size_t connections() const;     // open client connections

 private:
  class Impl;
  class Connection;
  std::shared_ptr<Impl> impl_;  // shared with queued handlers, so none outlives what it uses
};

}  // namespace kv
