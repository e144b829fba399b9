// The accept loop of the listeners (see accept_loop.h).
#include "net/accept_loop.h"

#include <utility>

#include <boost/asio/error.hpp>
#include <boost/asio/socket_base.hpp>

#include "net/log.h"

namespace kv {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using boost::system::error_code;

AcceptLoop::AcceptLoop(asio::io_context& io, std::string log_source, OnSocket on_socket)
    : acceptor_(io), retry_(io), log_source_(std::move(log_source)), on_socket_(std::move(on_socket)) {}

error_code AcceptLoop::listen(const tcp::endpoint& endpoint) {
  if (closed_) return asio::error::operation_aborted;
  if (acceptor_.is_open()) return asio::error::already_open;
  error_code ec;
  acceptor_.open(endpoint.protocol(), ec);
  if (!ec) acceptor_.set_option(tcp::acceptor::reuse_address(true), ec);
  if (!ec) acceptor_.bind(endpoint, ec);
  if (!ec) acceptor_.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    error_code ignored;
    acceptor_.close(ignored);
    return ec;
  }
  accept();
  return {};
}

void AcceptLoop::close() {
  closed_ = true;
  error_code ignored;
  acceptor_.close(ignored);
  retry_.cancel();
}

std::uint16_t AcceptLoop::port() const {
  error_code ec;
  const tcp::endpoint local = acceptor_.local_endpoint(ec);
  return ec ? 0 : local.port();
}

void AcceptLoop::accept() {
  acceptor_.async_accept([self = shared_from_this()](const error_code& ec, tcp::socket socket) {
    self->on_accept(ec, std::move(socket));
  });
}

void AcceptLoop::on_accept(const error_code& ec, tcp::socket socket) {
  if (closed_ || ec == asio::error::operation_aborted) return;
  if (ec == asio::error::connection_aborted) return accept();  // the client gave up first
  if (ec) {
    // Out of descriptors or memory: keep serving open connections and try again shortly.
    log_line(log_source_, "accept: " + ec.message() + "; retrying in " +
                              std::to_string(accept_retry_delay.count()) + " ms");
    retry_.expires_after(accept_retry_delay);
    retry_.async_wait([self = shared_from_this()](const error_code& wait_ec) {
      if (wait_ec || self->closed_) return;
      self->accept();
    });
    return;
  }
  on_socket_(std::move(socket));
  if (!closed_) accept();  // on_socket may have closed the loop (a server stopping)
}

}  // namespace kv
