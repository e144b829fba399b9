// The Beast session coroutines of the HTTP server (see http_server.h); connections come from
// the listeners' shared accept loop (net/accept_loop.h). The coroutines only do
// I/O: reading a request under the limits, waiting for handle_http's answer, writing it, and
// closing without losing an error reply. Every coroutine is spawned with a completion that logs
// how it ended if it ended by exception; client misbehaviour is expected and not logged.
#include "net/http_server.h"

#include <array>
#include <exception>
#include <limits>
#include <map>
#include <optional>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/experimental/channel.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/string.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/write.hpp>

#include "net/accept_loop.h"
#include "net/log.h"

namespace kv {

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using ErrorCode = boost::system::error_code;

// Completion tokens that hand errors back as values: a client's misbehaviour is not exceptional.
constexpr auto nothrow = asio::as_tuple(asio::use_awaitable);

// The answer to the request in hand, from handle_http's callback to the session.
using ReplyChannel = asio::experimental::channel<void(ErrorCode, HttpResponse)>;

// Bytes asked of the socket per read; the read buffer holds a full header plus one of these.
constexpr std::size_t read_chunk_bytes = 16 * 1024;
// After an error reply: how long, and how much, to keep reading before the close (see linger).
constexpr std::chrono::milliseconds linger_ms{1000};
constexpr std::size_t linger_bytes_max = 256 * 1024;
// Connections over connections_max being answered 503 at once; beyond, they are just closed.
constexpr std::size_t refusing_max = 256;
// What this file's log lines start with (net/log.h).
constexpr std::string_view log_source = "http";

// The completion of every co_spawn: a coroutine that ends by exception says so in one line.
auto log_exception(std::string what) {
  return [what = std::move(what)](std::exception_ptr e) {
    if (!e) return;
    try {
      std::rethrow_exception(e);
    } catch (const std::exception& ex) {
      log_line(log_source, what + ": " + ex.what());
    } catch (...) {
      log_line(log_source, what + ": unknown exception");
    }
  };
}

struct Session;

}  // namespace

namespace detail {

struct HttpServerState {
  HttpServerState(asio::io_context& io_in, NodeApi& api_in, HttpServerOptions options_in)
      : io(io_in), api(api_in), options(options_in) {}

  asio::io_context& io;
  NodeApi& api;
  const HttpServerOptions options;
  std::shared_ptr<AcceptLoop> acceptor;  // set once, right after construction
  // Open connections, so that stop() can close them; each removes itself when it ends.
  std::map<std::uint64_t, std::weak_ptr<Session>> sessions;
  std::uint64_t next_session_id = 1;
  std::size_t refusing = 0;
  bool stopped = false;
};

}  // namespace detail

namespace {

using State = detail::HttpServerState;

// One connection. Owned by its session coroutine; State only holds weak references.
struct Session {
  Session(std::shared_ptr<State> owner_in, std::uint64_t id_in, tcp::socket socket)
      : owner(std::move(owner_in)), id(id_in), stream(std::move(socket)) {}
  ~Session() {
    if (auto st = owner.lock()) st->sessions.erase(id);
  }
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  void close() {
    stream.close();
    if (reply) reply->cancel();
  }

  std::weak_ptr<State> owner;
  std::uint64_t id = 0;
  beast::tcp_stream stream;
  std::shared_ptr<ReplyChannel> reply;  // set while the node works on a request
};

// Closes after an error reply without losing it. Closing a socket with unread input makes the
// kernel send a reset, which can destroy the reply before the client reads it; so shut our side,
// read and drop what the client still sends (briefly, and only so much), then close.
asio::awaitable<void> linger_close(beast::tcp_stream& stream) {
  ErrorCode ec;
  stream.socket().shutdown(tcp::socket::shutdown_send, ec);
  std::array<char, 4096> sink{};
  std::size_t drained = 0;
  stream.expires_after(linger_ms);
  while (!ec && drained < linger_bytes_max) {
    std::size_t n = 0;
    std::tie(ec, n) = co_await stream.async_read_some(asio::buffer(sink), nothrow);
    drained += n;
  }
  stream.close();
}

// Over connections_max: say so, then close.
asio::awaitable<void> refuse(std::shared_ptr<State> st, tcp::socket socket) {
  beast::tcp_stream stream(std::move(socket));
  HttpResponse res =
      http_error_response(http::status::service_unavailable, "connections_max reached", 11, false);
  res.set(http::field::retry_after, "1");
  stream.expires_after(linger_ms);
  auto [ec, n] = co_await http::async_write(stream, res, nothrow);
  if (!ec) co_await linger_close(stream);
  --st->refusing;
}

// Answers a request that could not be read, if it deserves an answer; the connection then ends.
asio::awaitable<void> answer_read_error(const State& st, Session& s, ErrorCode ec) {
  const HttpLimits& limits = st.options.limits;
  HttpResponse res;
  if (ec == http::error::body_limit) {
    res = http_error_response(
        http::status::payload_too_large,
        "request body exceeds body_bytes_max (" + std::to_string(limits.body_bytes_max) + " bytes)",
        11, false);
  } else if (ec == http::error::header_limit || ec == http::error::buffer_overflow) {
    res = http_error_response(http::status::request_header_fields_too_large,
                              "request header exceeds header_bytes_max (" +
                                  std::to_string(limits.header_bytes_max) + " bytes)",
                              11, false);
  } else if (ec.category() == http::make_error_code(http::error::bad_target).category() &&
             ec != http::error::end_of_stream && ec != http::error::partial_message) {
    res = http_error_response(http::status::bad_request, "malformed request: " + ec.message(), 11,
                              false);
  } else {
    // The client left, stalled (the stream has already closed the socket) or we are stopping.
    s.stream.close();
    co_return;
  }
  s.stream.expires_after(st.options.read_timeout);
  auto [wec, n] = co_await http::async_write(s.stream, res, nothrow);
  if (!wec) co_await linger_close(s.stream);
  s.stream.close();
}

bool expects_continue(const HttpRequest& req) {
  return req.version() >= 11 && beast::iequals(req[http::field::expect], "100-continue");
}

// The next request on the connection, or nullopt when the connection is to end (answered here
// if the request was bad).
asio::awaitable<std::optional<HttpRequest>> read_request(const State& st, Session& s,
                                                         beast::flat_buffer& buffer) {
  const HttpServerOptions& options = st.options;
  ErrorCode ec;
  std::size_t n = 0;
  if (buffer.size() == 0) {
    // Between requests a client may wait idle_timeout; once it starts one, it has read_timeout
    // to send all of it (one deadline for the whole request, so a trickle cannot extend it).
    s.stream.expires_after(options.idle_timeout);
    std::tie(ec, n) = co_await s.stream.async_read_some(buffer.prepare(read_chunk_bytes), nothrow);
    if (ec) co_return std::nullopt;
    buffer.commit(n);
  }
  http::request_parser<http::string_body> parser;
  parser.header_limit(static_cast<std::uint32_t>(std::min<std::size_t>(
      options.limits.header_bytes_max, std::numeric_limits<std::uint32_t>::max())));
  parser.body_limit(options.limits.body_bytes_max);
  s.stream.expires_after(options.read_timeout);
  std::tie(ec, n) = co_await http::async_read_header(s.stream, buffer, parser, nothrow);
  if (!ec && !parser.is_done() && expects_continue(parser.get())) {
    // curl sends Expect: 100-continue for large bodies and would otherwise wait a second.
    http::response<http::empty_body> go_on{http::status::continue_, parser.get().version()};
    std::tie(ec, n) = co_await http::async_write(s.stream, go_on, nothrow);
  }
  if (!ec && !parser.is_done()) {
    std::tie(ec, n) = co_await http::async_read(s.stream, buffer, parser, nothrow);
  }
  if (ec) {
    co_await answer_read_error(st, s, ec);
    co_return std::nullopt;
  }
  co_return parser.release();
}

// Runs `req` through handle_http and waits for its answer; nullopt if stop() came first.
asio::awaitable<std::optional<HttpResponse>> handle(State& st, Session& s, const HttpRequest& req) {
  auto channel = std::make_shared<ReplyChannel>(st.io.get_executor(), 1);
  s.reply = channel;
  // Weak: the node may answer after the session has gone (the client left, or stop()). A
  // channel completes its receiver by posting, so the session never runs inside the node's
  // callback, and a second call of `respond` finds the channel full and is dropped.
  std::weak_ptr<ReplyChannel> weak = channel;
  handle_http(req, st.api, st.options.limits, [weak](HttpResponse res) {
    if (auto ch = weak.lock()) std::ignore = ch->try_send(ErrorCode{}, std::move(res));
  });
  auto [ec, res] = co_await channel->async_receive(nothrow);
  s.reply.reset();
  if (ec) co_return std::nullopt;
  co_return std::move(res);
}

asio::awaitable<void> run_session(std::shared_ptr<State> st, std::shared_ptr<Session> s) {
  beast::flat_buffer buffer(st->options.limits.header_bytes_max + read_chunk_bytes);
  for (;;) {
    std::optional<HttpRequest> req = co_await read_request(*st, *s, buffer);
    if (!req) co_return;
    std::optional<HttpResponse> res = co_await handle(*st, *s, *req);
    if (!res) co_return;
    const bool keep_alive = res->keep_alive();
    s->stream.expires_after(st->options.read_timeout);
    auto [ec, n] = co_await http::async_write(s->stream, *res, nothrow);
    if (ec) co_return;
    if (!keep_alive) {
      co_await linger_close(s->stream);
      co_return;
    }
  }
}

void start_connection(const std::shared_ptr<State>& st, tcp::socket socket) {
  if (st->sessions.size() >= st->options.connections_max) {
    if (st->refusing >= refusing_max) return;  // the socket closes as it goes out of scope
    ++st->refusing;
    asio::co_spawn(st->io, refuse(st, std::move(socket)), log_exception("refuse"));
    return;
  }
  const std::uint64_t id = st->next_session_id++;
  auto session = std::make_shared<Session>(st, id, std::move(socket));
  st->sessions.emplace(id, session);
  asio::co_spawn(st->io, run_session(st, std::move(session)), log_exception("session"));
}

}  // namespace

HttpServer::HttpServer(asio::io_context& io, NodeApi& api, HttpServerOptions options)
    : state_(std::make_shared<detail::HttpServerState>(io, api, options)) {
  state_->acceptor = std::make_shared<AcceptLoop>(
      io, "http", [weak = std::weak_ptr<State>(state_)](tcp::socket socket) {
        if (auto st = weak.lock(); st && !st->stopped) start_connection(st, std::move(socket));
      });
}

HttpServer::~HttpServer() { stop(); }

ErrorCode HttpServer::listen(const tcp::endpoint& endpoint) {
  if (state_->stopped) return asio::error::operation_aborted;
  return state_->acceptor->listen(endpoint);
}

void HttpServer::stop_accepting() {
  state_->acceptor->close();  // sessions go on
}

void HttpServer::stop() {
  State& st = *state_;
  st.stopped = true;
  st.acceptor->close();
  // Lock first, close after: closing does not end a session at once, but keep the map still.
  std::vector<std::shared_ptr<Session>> open;
  for (const auto& [id, weak] : st.sessions) {
    if (auto s = weak.lock()) open.push_back(std::move(s));
  }
  for (const auto& s : open) s->close();
}

std::uint16_t HttpServer::port() const { return state_->acceptor->port(); }

std::size_t HttpServer::connections() const { return state_->sessions.size(); }

}  // namespace kv
