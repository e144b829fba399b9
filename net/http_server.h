// The HTTP server of kvnode: Boost.Beast on the node's one io_context thread, in the shape of
// Beast's C++20 awaitable server. A session coroutine per connection reads one request, hands
// it to handle_http() (net/http_api.h), waits for the answer, writes it, and loops; so keep-alive
// works and pipelined requests are answered in order. Every read and write has a deadline.
//
// Limits and what a client sees when it crosses one:
//   header over header_bytes_max -> 431, body over body_bytes_max -> 413 (both name the limit),
//   unparseable request -> 400; each then closes that connection only.
//   more than connections_max connections -> the new one gets 503 and is closed.
//   idle_timeout between requests, read_timeout for a whole request (and for each write):
//   a client that stalls is disconnected.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/system/error_code.hpp>

#include "net/http_api.h"
#include "net/node_api.h"

namespace kv {

namespace detail {
struct HttpServerState;  // defined in http_server.cc
}  // namespace detail

struct HttpServerOptions {
  HttpLimits limits;
  std::size_t connections_max = 10000;
  std::chrono::milliseconds read_timeout{30000};   // to receive a whole request; also per write
  std::chrono::milliseconds idle_timeout{300000};  // a keep-alive connection with no request
};

// All members are to be called on the io_context's thread (or before it runs).
// REQUIRES: `io` and `api` outlive the server and every connection it started; connections end
// soon after stop() or the destructor, as the io_context runs.
class HttpServer {
 public:
  HttpServer(boost::asio::io_context& io, NodeApi& api, HttpServerOptions options);
  ~HttpServer();  // stop()s
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Binds and starts accepting. Port 0 picks a free port; see port().
  boost::system::error_code listen(const boost::asio::ip::tcp::endpoint& endpoint);

  // Stops accepting and closes every connection; a request the node is still working on is
  // dropped unanswered. Idempotent.
  void stop();
  // Closes the listener only: open connections go on, so that requests in flight are answered.
  void stop_accepting();

  std::uint16_t port() const;       // the bound port, 0 before listen()
  std::size_t connections() const;  // open connections (not counting refused ones)

 private:
  // Shared with the coroutines, which may outlive the server.
  std::shared_ptr<detail::HttpServerState> state_;
};

}  // namespace kv
