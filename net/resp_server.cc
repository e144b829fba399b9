// The RESP server's sockets and timers, with classic Asio completion handlers.
//
// Lifetime: each Connection is owned by a shared_ptr held by the server's table and by whichever
// of its own operations are queued. Node completions reach it only through its RespSession (which
// guards them with a weak token) and its output hook (which holds a weak_ptr), so a connection
// that closes with requests in flight is freed as soon as its last socket operation returns, and
// the late completions find nothing to touch.
//
// Output: the hook does not write on the spot; it posts one flush, so every reply that became
// ready in the same turn of the event loop leaves in one write, and no socket call happens inside
// a node callback.
#include "net/resp_server.h"

#include <array>
#include <map>
#include <string>

#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>

#include "net/accept_loop.h"
#include "net/log_limit.h"
#include "net/resp_session.h"

namespace kv {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;
using boost::system::error_code;

namespace {

// One read's buffer, per connection: small enough for many idle clients, large enough that
// a pipelined benchmark's burst arrives in few reads.
constexpr std::size_t read_chunk_bytes = 16u << 10;

constexpr std::string_view max_clients_reply = "-ERR max number of clients reached\r\n";

// After a protocol error the connection closes gracefully: the error is written, the write side
// shut (the client reads the error and then end of stream), and what the client is still sending
// is read and thrown away, up to these bounds, so that closing does not reset the connection
// under a client still writing (which would lose the error).
constexpr std::size_t linger_bytes_max = 64u << 20;
constexpr std::chrono::milliseconds linger_time_max{2000};

std::string describe(const tcp::socket& socket) {
  error_code ec;
  const tcp::endpoint remote = socket.remote_endpoint(ec);
  if (ec) return "client";
  return remote.address().to_string() + ":" + std::to_string(remote.port());
}

// Errors that are a client going away, not something an operator needs to read about.
bool routine(const error_code& ec) {
  return ec == asio::error::eof || ec == asio::error::connection_reset ||
         ec == asio::error::broken_pipe || ec == asio::error::operation_aborted ||
         ec == asio::error::connection_aborted;
}

Clock::time_point after(Clock::time_point start, std::chrono::milliseconds span) {
  return span.count() > 0 ? start + span : Clock::time_point::max();
}

}  // namespace

class RespServer::Impl : public std::enable_shared_from_this<Impl> {
 public:
  Impl(asio::io_context& io, NodeApi& node, RespServerOptions options)
      : io_(io),
        node_(node),
        options_(options),
        client_log_(std::make_shared<LogLimit>(io, "resp", "client connections")) {}

  error_code listen(const tcp::endpoint& endpoint);
  void stop();
  void stop_accepting() {
    if (acceptor_) acceptor_->close();
  }
  void forget(std::uint64_t id) { connections_.erase(id); }
  std::uint16_t port() const;
  std::size_t connections() const { return connections_.size(); }

 private:
  void on_accept(tcp::socket socket);
  static void refuse(tcp::socket socket);

  asio::io_context& io_;
  NodeApi& node_;
  RespServerOptions options_;
  std::shared_ptr<AcceptLoop> acceptor_;  // from listen() on
  // Why client connections were closed (protocol errors, timeouts): any client can cause these
  // lines, so they are rate limited.
  std::shared_ptr<LogLimit> client_log_;
  std::map<std::uint64_t, std::shared_ptr<Connection>> connections_;  // by client id
  std::uint64_t next_client_id_ = 1;
  bool stopped_ = false;
};

class RespServer::Connection : public std::enable_shared_from_this<Connection> {
 public:
  Connection(std::weak_ptr<Impl> server, tcp::socket socket, NodeApi& node,
             const RespServerOptions& options, std::uint64_t id, std::shared_ptr<LogLimit> log)
      : server_(std::move(server)),
        log_(std::move(log)),
        socket_(std::move(socket)),
        session_(node, options.limits),
        timer_(socket_.get_executor()),
        options_(options),
        id_(id),
        peer_(describe(socket_)) {}

  void start();
  void close(const std::string& why);

 private:
  void after_event();
  bool reading_allowed() const;
  void read();
  void on_read(const error_code& ec, std::size_t n);
  void flush();
  void on_write(const error_code& ec);
  void post_flush();
  void track_partial();
  Clock::time_point deadline() const;
  void arm_timer();
  void on_timer(const error_code& ec, std::uint64_t generation);
  // After a protocol error: shut the write side and drain the input (see linger_bytes_max).
  void linger();
  void drain();

  std::weak_ptr<Impl> server_;
  std::shared_ptr<LogLimit> log_;
  tcp::socket socket_;
  RespSession session_;
  asio::steady_timer timer_;
  RespServerOptions options_;
  std::uint64_t id_;
  std::string peer_;
  std::array<char, read_chunk_bytes> read_buffer_{};
  std::string write_buffer_;
  bool reading_ = false;
  bool writing_ = false;
  bool flush_posted_ = false;
  bool peer_done_ = false;  // the client sent FIN: answer what it asked, then close
  bool closed_ = false;
  bool lingering_ = false;
  std::size_t drained_bytes_ = 0;
  Clock::time_point last_activity_ = Clock::now();
  Clock::time_point write_since_;
  bool partial_timing_ = false;
  Clock::time_point partial_since_;
  std::uint64_t partial_parsed_mark_ = 0;
  bool timer_waiting_ = false;
  std::uint64_t timer_generation_ = 0;
};

// ---- Server ----

error_code RespServer::Impl::listen(const tcp::endpoint& endpoint) {
  if (stopped_) return asio::error::operation_aborted;
  if (acceptor_) return asio::error::already_open;
  acceptor_ = std::make_shared<AcceptLoop>(io_, "resp", [weak = weak_from_this()](tcp::socket s) {
    if (auto self = weak.lock()) self->on_accept(std::move(s));
  });
  return acceptor_->listen(endpoint);
}

std::uint16_t RespServer::Impl::port() const { return acceptor_ ? acceptor_->port() : 0; }

void RespServer::Impl::stop() {
  if (stopped_) return;
  stopped_ = true;
  if (acceptor_) acceptor_->close();
  auto open = std::move(connections_);
  connections_.clear();
  for (auto& [id, connection] : open) connection->close("");
  client_log_->flush();
}

void RespServer::Impl::on_accept(tcp::socket socket) {
  if (stopped_) return;
  if (connections_.size() >= options_.connections_max) {
    refuse(std::move(socket));
  } else {
    error_code ignored;
    socket.set_option(tcp::no_delay(true), ignored);  // replies are small and latency-bound
    const std::uint64_t id = next_client_id_++;
    auto connection =
        std::make_shared<Connection>(weak_from_this(), std::move(socket), node_, options_, id,
                                     client_log_);
    connections_.emplace(id, connection);
    connection->start();
  }
}

// What Redis does: one error line, written without waiting (a fresh socket's send buffer always
// has room for it), then close. Nothing is kept for a client we have no room for.
void RespServer::Impl::refuse(tcp::socket socket) {
  error_code ignored;
  socket.non_blocking(true, ignored);
  socket.write_some(asio::buffer(max_clients_reply), ignored);
  socket.shutdown(tcp::socket::shutdown_both, ignored);
  socket.close(ignored);
}

// ---- Connection ----

void RespServer::Connection::start() {
  session_.set_client_id(id_);
  session_.set_on_output([weak = weak_from_this()] {
    if (auto self = weak.lock()) self->post_flush();
  });
  after_event();
}

void RespServer::Connection::close(const std::string& why) {
  if (closed_) return;
  closed_ = true;
  if (!why.empty()) {
    log_->log(peer_ + ": " + why);
  } else if (!session_.close_reason().empty()) {
    log_->log(peer_ + ": " + session_.close_reason());
  }
  error_code ignored;
  socket_.shutdown(tcp::socket::shutdown_both, ignored);
  socket_.close(ignored);  // queued reads and writes complete with operation_aborted
  timer_.cancel();
  // Every caller holds its own reference, so dropping the server's does not free us here.
  if (auto server = server_.lock()) server->forget(id_);
}

// The one place that decides what a connection does next, after anything happened to it.
void RespServer::Connection::after_event() {
  if (closed_) return;
  flush();
  if (!writing_) {
    // Everything released so far has been written. Every unanswered request is in flight, so
    // after the client's FIN the connection stays until the last of them is answered.
    if (session_.wants_close()) return session_.close_reason().empty() ? close("") : linger();
    if (peer_done_ && session_.in_flight() == 0) return close("");
  }
  read();
  track_partial();
  arm_timer();
}

// Not while the session is paused or closing, and not while a client that does not read its
// replies has output_bytes_max waiting: then TCP pushes back on it.
bool RespServer::Connection::reading_allowed() const {
  return !peer_done_ && session_.wants_input() &&
         !(writing_ && session_.output_bytes() >= options_.limits.output_bytes_max);
}

void RespServer::Connection::linger() {
  if (lingering_ || closed_) return;
  lingering_ = true;
  error_code ignored;
  socket_.shutdown(tcp::socket::shutdown_send, ignored);
  ++timer_generation_;  // the read and idle timers are over: only the linger's bound is left
  timer_waiting_ = false;
  timer_.expires_after(linger_time_max);
  timer_.async_wait([self = shared_from_this()](const error_code& ec) {
    if (!ec) self->close("");
  });
  if (peer_done_) return close("");
  drain();
}

void RespServer::Connection::drain() {
  if (closed_ || reading_) return;
  reading_ = true;
  socket_.async_read_some(asio::buffer(read_buffer_),
                          [self = shared_from_this()](const error_code& ec, std::size_t n) {
                            self->reading_ = false;
                            if (self->closed_) return;
                            self->drained_bytes_ += n;
                            if (ec || self->drained_bytes_ >= linger_bytes_max) return self->close("");
                            self->drain();
                          });
}

void RespServer::Connection::read() {
  if (reading_ || !reading_allowed()) return;
  reading_ = true;
  socket_.async_read_some(asio::buffer(read_buffer_),
                          [self = shared_from_this()](const error_code& ec, std::size_t n) {
                            self->on_read(ec, n);
                          });
}

void RespServer::Connection::on_read(const error_code& ec, std::size_t n) {
  reading_ = false;
  if (closed_) return;
  if (ec == asio::error::eof) {
    peer_done_ = true;
    return after_event();
  }
  if (ec) return close(routine(ec) ? "" : "read: " + ec.message());
  last_activity_ = Clock::now();
  session_.on_bytes(std::string_view(read_buffer_.data(), n));
  after_event();
}

void RespServer::Connection::flush() {
  if (writing_ || closed_) return;
  std::string out = session_.take_output();
  if (out.empty()) return;
  write_buffer_ = std::move(out);
  writing_ = true;
  write_since_ = Clock::now();
  asio::async_write(socket_, asio::buffer(write_buffer_),
                    [self = shared_from_this()](const error_code& ec, std::size_t) {
                      self->on_write(ec);
                    });
}

void RespServer::Connection::on_write(const error_code& ec) {
  writing_ = false;
  if (closed_) return;
  if (ec) return close(routine(ec) ? "" : "write: " + ec.message());
  write_buffer_.clear();
  write_buffer_.shrink_to_fit();  // one large reply must not pin its memory for the idle hours
  last_activity_ = Clock::now();
  after_event();
}

void RespServer::Connection::post_flush() {
  if (flush_posted_ || closed_) return;
  flush_posted_ = true;
  asio::post(socket_.get_executor(), [self = shared_from_this()] {
    self->flush_posted_ = false;
    self->after_event();
  });
}

// The read timeout runs while a command is half-received and we are reading (a pause that is
// ours does not count); it restarts when a command completes, so a slow but steady pipeline is
// fine and a trickled single command is not.
void RespServer::Connection::track_partial() {
  if (!reading_allowed() || !session_.partial_command()) {
    partial_timing_ = false;
    return;
  }
  if (!partial_timing_ || session_.commands_parsed() != partial_parsed_mark_) {
    partial_timing_ = true;
    partial_since_ = Clock::now();
    partial_parsed_mark_ = session_.commands_parsed();
  }
}

Clock::time_point RespServer::Connection::deadline() const {
  Clock::time_point d = Clock::time_point::max();
  if (partial_timing_) d = std::min(d, after(partial_since_, options_.read_timeout));
  if (writing_) d = std::min(d, after(write_since_, options_.idle_timeout));
  if (!writing_ && !partial_timing_ && session_.in_flight() == 0) {
    d = std::min(d, after(last_activity_, options_.idle_timeout));
  }
  return d;
}

// One wait at a time. A later deadline leaves the wait alone (it wakes early and re-arms); an
// earlier one replaces it, and the generation tells the replaced handler to do nothing.
void RespServer::Connection::arm_timer() {
  if (lingering_) return;
  const Clock::time_point d = deadline();
  if (timer_waiting_ && d >= timer_.expiry()) return;
  if (!timer_waiting_ && d == Clock::time_point::max()) return;
  timer_.expires_at(d);
  timer_waiting_ = true;
  timer_.async_wait([self = shared_from_this(), generation = ++timer_generation_](
                        const error_code& ec) { self->on_timer(ec, generation); });
}

void RespServer::Connection::on_timer(const error_code& ec, std::uint64_t generation) {
  if (generation != timer_generation_ || closed_) return;
  timer_waiting_ = false;
  const Clock::time_point now = Clock::now();
  if (ec == asio::error::operation_aborted || now < deadline()) return arm_timer();
  if (partial_timing_ && now >= after(partial_since_, options_.read_timeout)) {
    return close("read timeout: a command stayed incomplete for " +
                 std::to_string(options_.read_timeout.count()) + " ms (read_timeout)");
  }
  if (writing_) {
    return close("write stalled for " + std::to_string(options_.idle_timeout.count()) +
                 " ms (idle_timeout): the client does not read its replies");
  }
  close("");  // idle: routine, as in Redis's `timeout`
}

// ---- RespServer ----

RespServer::RespServer(asio::io_context& io, NodeApi& node, RespServerOptions options)
    : impl_(std::make_shared<Impl>(io, node, options)) {}

RespServer::~RespServer() { impl_->stop(); }

error_code RespServer::listen(const tcp::endpoint& endpoint) { return impl_->listen(endpoint); }
void RespServer::stop() { impl_->stop(); }
void RespServer::stop_accepting() { impl_->stop_accepting(); }
std::uint16_t RespServer::port() const { return impl_->port(); }
std::size_t RespServer::connections() const { return impl_->connections(); }

}  // namespace kv
