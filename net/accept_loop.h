// The one accept loop of kvnode's listeners (peer links, RESP, HTTP): binds a TCP listener and
// hands each accepted socket to the server that owns it. An accept that fails for lack of
// resources (EMFILE, ENFILE, ENOBUFS, ENOMEM) is logged and retried after accept_retry_delay,
// so that the open connections go on being served and the loop does not spin on the error; a
// client that gave up before it was accepted (ECONNABORTED) is skipped silently.
//
// Threading: one io_context thread. Make with std::make_shared: queued handlers hold a reference.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/system/error_code.hpp>

namespace kv {

class AcceptLoop : public std::enable_shared_from_this<AcceptLoop> {
 public:
  static constexpr std::chrono::milliseconds accept_retry_delay{100};

  using OnSocket = std::function<void(boost::asio::ip::tcp::socket)>;

  // `log_source` names the server in log lines (net/log.h). `on_socket` is called for each
  // accepted connection, on the io_context thread, never after close().
  AcceptLoop(boost::asio::io_context& io, std::string log_source, OnSocket on_socket);

  // Opens, binds (with SO_REUSEADDR, so that a restarted node takes its port back while old
  // connections sit in TIME_WAIT) and listens, then accepts until close(). Port 0 picks a free
  // port: see port(). The error of a failed bind comes back; nothing is thrown.
  boost::system::error_code listen(const boost::asio::ip::tcp::endpoint& endpoint);

  // Stops accepting; a pending retry is cancelled. Idempotent; listen() cannot follow.
  void close();

  bool is_open() const { return acceptor_.is_open(); }
  std::uint16_t port() const;  // the bound port, 0 when not listening

 private:
  void accept();
  void on_accept(const boost::system::error_code& ec, boost::asio::ip::tcp::socket socket);

  boost::asio::ip::tcp::acceptor acceptor_;
  boost::asio::steady_timer retry_;
  const std::string log_source_;
  const OnSocket on_socket_;
  bool closed_ = false;
};

}  // namespace kv
