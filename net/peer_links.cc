// Peer links over Boost.Asio (see peer_links.h).
//
// Ownership: PeerLinks owns its outbound links and its listener; every asynchronous completion
// holds a shared_ptr to the object it belongs to (and that object to the shared Context), so a
// completion that runs after stop(), or after PeerLinks is gone, finds live memory, sees
// `stopped` and returns. Nothing else points back up, so there are no ownership cycles.
//
// An outbound link lives across connections; each connection attempt is a Conn of its own that
// carries its socket and buffers. A completion whose Conn is no longer the link's current one is
// stale and does nothing, which keeps the retry logic free of "which attempt was this" flags.
#include "net/peer_links.h"

#include <algorithm>
#include <array>
#include <cassert>
#include <cstdint>
#include <cstring>
#include <random>
#include <string_view>
#include <utility>
#include <vector>

#include <boost/asio/connect.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/socket_base.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>

#include "net/accept_loop.h"
#include "net/log.h"
#include "net/log_limit.h"

namespace kv {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using boost::system::error_code;

namespace {

// Inbound reads ask for at least this much room; a big frame arrives in a few such reads.
constexpr std::size_t read_chunk_bytes = 64u << 10;
// Connections that have not (yet) said which peer they are, beyond one per peer. They cost a
// socket and a small buffer each until the handshake timeout closes them.
constexpr std::size_t inbound_unidentified_max = 64;
// A buffer that grew past this for a burst (a queue backlog, a large frame) is released once it
// is empty again, so that idle links do not each keep the high-water mark of their past.
constexpr std::size_t buffer_keep_bytes_max = 1u << 20;
// Longest piece of a peer-supplied string copied into a log line.
constexpr std::size_t log_text_bytes_max = 64;
// What this file's log lines start with (net/log.h).
constexpr std::string_view log_source = "peer";

// A peer-supplied string made safe for a log line: bounded, control bytes replaced.
std::string printable(std::string_view text) {
  std::string out(text.substr(0, log_text_bytes_max));
  for (char& c : out) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = '?';
  }
  if (text.size() > log_text_bytes_max) out += "...";
  return out;
}

std::string address_of(const tcp::endpoint& endpoint) {
  return endpoint.address().to_string() + ":" + std::to_string(endpoint.port());
}

std::string describe(const error_code& ec) {
  if (ec == asio::error::eof) return "connection closed by peer";
  return ec.message();
}

void tune(tcp::socket& socket) {
  // Messages are small and latency-bound; batching happens in our own buffer, not in Nagle's.
  error_code ignored;
  socket.set_option(tcp::no_delay(true), ignored);
  socket.set_option(asio::socket_base::keep_alive(true), ignored);
}

}  // namespace

// ---- Context: what every link, session and the listener share ----

struct PeerLinks::Context {
  Context(asio::io_context& io_context, PeerLinksOptions opts,
          std::function<void(const Message&)> handler)
      : io(io_context),
        options(std::move(opts)),
        on_message(std::move(handler)),
        rng(options.self),
        inbound_log(std::make_shared<LogLimit>(io_context, std::string(log_source),
                                               "inbound connections")) {}

  Handshake own_handshake() const {
    return Handshake{options.cluster_id, options.self, peer_protocol_version};
  }

  // What is wrong with a peer's handshake, or an empty string. Both sides of a link apply it.
  std::string check_handshake(const Handshake& h) const {
    if (h.cluster_id != options.cluster_id) {
      return "cluster id '" + printable(h.cluster_id) + "' != '" + options.cluster_id + "'";
    }
    if (h.protocol_version != peer_protocol_version) {
      return "protocol version " + std::to_string(h.protocol_version) +
             " != " + std::to_string(peer_protocol_version);
    }
    if (h.node_id == options.self) return "node " + std::to_string(h.node_id) + " is this node";
    if (!options.peers.contains(h.node_id)) {
      return "node " + std::to_string(h.node_id) + " is not a peer of this node";
    }
    return {};
  }

  asio::io_context& io;
  const PeerLinksOptions options;
  const std::function<void(const Message&)> on_message;
  bool stopped = false;
  // Backoff jitter only: it needs to keep nodes from retrying in step, not to be unpredictable.
  // Seeding with the node id keeps runs repeatable.
  std::mt19937 rng;
  std::uint64_t next_inbound_id = 1;
  std::map<std::uint64_t, std::weak_ptr<Inbound>> inbound;  // every open session, for stop()
  std::map<NodeId, std::uint64_t> inbound_by_peer;           // the current session of a peer
  std::map<NodeId, std::uint64_t> frames_received;
  // Lines about inbound connections (refused handshakes, garbage, too many connections), which
  // anyone who can reach the peer port can cause: rate limited.
  const std::shared_ptr<LogLimit> inbound_log;
};

// ---- Outbound: this node's sending link to one peer ----

class PeerLinks::Outbound : public std::enable_shared_from_this<Outbound> {
 public:
  Outbound(std::shared_ptr<Context> ctx, NodeId peer, HostPort address)
      : ctx_(std::move(ctx)),
        peer_(peer),
        address_(std::move(address)),
        resolver_(ctx_->io),
        timer_(ctx_->io),
        backoff_(ctx_->options.backoff_min) {}

  void start() { connect(); }
  void send(const Message& message);
  void stop();
  LinkState state() const { return state_; }
  LinkStats stats() const;

 private:
  // One connection attempt: its socket and the buffers its pending operations use.
  struct Conn {
    explicit Conn(asio::io_context& io) : socket(io) {}
    tcp::socket socket;
    std::string out;             // the handshake, then the batch being written
    std::size_t out_frames = 0;  // messages in `out`
    bool writing = false;
    std::string in;              // the peer's handshake as it arrives
    std::array<char, 512> chunk{};
  };
  using ConnPtr = std::shared_ptr<Conn>;

  bool is_current(const ConnPtr& conn) const { return !ctx_->stopped && conn == conn_; }
  std::size_t queued_bytes() const {
    return queue_.size() + (conn_ && conn_->out_frames > 0 ? conn_->out.size() : 0);
  }

  void connect();
  void on_connect(const ConnPtr& conn, const error_code& ec);
  void read_handshake(const ConnPtr& conn);
  void on_handshake(const ConnPtr& conn, const Handshake& reply);
  void watch(const ConnPtr& conn);
  void flush(const ConnPtr& conn);
  void write(const ConnPtr& conn);
  void fail(const ConnPtr& conn, const std::string& why);
  std::chrono::milliseconds next_backoff();

  std::shared_ptr<Context> ctx_;
  const NodeId peer_;
  const HostPort address_;
  tcp::resolver resolver_;    // the address is looked up afresh on every attempt
  asio::steady_timer timer_;  // the lookup + connect + handshake deadline, then the backoff
  ConnPtr conn_;              // null while backing off or stopped
  LinkState state_ = LinkState::connecting;
  std::chrono::milliseconds backoff_;
  std::string queue_;  // encoded frames not yet handed to a write
  std::size_t queue_frames_ = 0;
  std::string last_failure_logged_;  // a link that keeps failing the same way logs it once
  std::uint64_t frames_sent_ = 0, bytes_sent_ = 0, reconnects_ = 0, dropped_queue_full_ = 0;
};

void PeerLinks::Outbound::send(const Message& message) {
  const std::size_t before = queue_.size();
  encode_message(message, queue_);
  const std::size_t payload_bytes = queue_.size() - before - peer_frame_header_bytes;
  if (payload_bytes > ctx_->options.frame_bytes_max) {
    // The peer would refuse the frame and drop the link: drop the message instead. The core
    // bounds keys and values well below the frame limit, so this means a misconfiguration.
    queue_.resize(before);
    log_line(log_source, "dropped a message of " + std::to_string(payload_bytes) +
                             " bytes to node " + std::to_string(peer_) +
                             ": over the frame limit of " +
                             std::to_string(ctx_->options.frame_bytes_max) + " bytes");
    return;
  }
  if (queued_bytes() > ctx_->options.queue_bytes_max) {
    // The peer is down or slower than we produce. Dropping is safe: the core retries what it
    // still needs (request retries, read repair, hints), and a bounded queue keeps an outage
    // of one peer from taking this node's memory with it.
    queue_.resize(before);
    ++dropped_queue_full_;
    return;
  }
  ++queue_frames_;
  if (conn_) flush(conn_);
}

void PeerLinks::Outbound::stop() {
  resolver_.cancel();
  if (conn_) {
    error_code ignored;
    conn_->socket.close(ignored);
    conn_.reset();
  }
  timer_.cancel();
}

PeerLinks::LinkStats PeerLinks::Outbound::stats() const {
  LinkStats s;
  s.state = state_;
  s.frames_sent = frames_sent_;
  s.bytes_sent = bytes_sent_;
  s.reconnects = reconnects_;
  s.dropped_queue_full = dropped_queue_full_;
  s.queued_bytes = queued_bytes();
  return s;
}

void PeerLinks::Outbound::connect() {
  state_ = LinkState::connecting;
  auto conn = std::make_shared<Conn>(ctx_->io);
  conn_ = conn;
  timer_.expires_after(ctx_->options.handshake_timeout);
  timer_.async_wait([self = shared_from_this(), conn](const error_code& ec) {
    if (ec == asio::error::operation_aborted) return;
    if (ec) log_line(log_source, "handshake timer: " + ec.message());
    if (self->is_current(conn) && self->state_ == LinkState::connecting) {
      self->fail(conn, "no handshake within " +
                           std::to_string(self->ctx_->options.handshake_timeout.count()) + " ms");
    }
  });
  resolver_.async_resolve(
      address_.host, std::to_string(address_.port), tcp::resolver::numeric_service,
      [self = shared_from_this(), conn](const error_code& ec, const tcp::resolver::results_type& found) {
        if (!self->is_current(conn)) return;
        if (ec) return self->fail(conn, "cannot resolve '" + self->address_.host + "': " + ec.message());
        asio::async_connect(conn->socket, found,
                            [self, conn](const error_code& connect_ec, const tcp::endpoint&) {
                              self->on_connect(conn, connect_ec);
                            });
      });
}

void PeerLinks::Outbound::on_connect(const ConnPtr& conn, const error_code& ec) {
  if (!is_current(conn)) return;
  if (ec) return fail(conn, "connect: " + describe(ec));
  tune(conn->socket);
  encode_handshake(ctx_->own_handshake(), conn->out);
  write(conn);
  read_handshake(conn);
}

void PeerLinks::Outbound::read_handshake(const ConnPtr& conn) {
  conn->socket.async_read_some(
      asio::buffer(conn->chunk),
      [self = shared_from_this(), conn](const error_code& ec, std::size_t n) {
        if (!self->is_current(conn)) return;
        if (ec) return self->fail(conn, "handshake: " + describe(ec));
        conn->in.append(conn->chunk.data(), n);
        Handshake reply;
        const FrameDecode d = decode_handshake(conn->in, peer_handshake_bytes_max, reply);
        switch (d.status) {
          case FrameDecode::Status::incomplete:
            return self->read_handshake(conn);
          case FrameDecode::Status::error:
            return self->fail(conn, "handshake: " + d.error);
          case FrameDecode::Status::complete:
            // The accepting side sends nothing after its handshake.
            if (d.consumed != conn->in.size()) return self->fail(conn, "data after handshake");
            return self->on_handshake(conn, reply);
        }
      });
}

void PeerLinks::Outbound::on_handshake(const ConnPtr& conn, const Handshake& reply) {
  if (std::string e = ctx_->check_handshake(reply); !e.empty()) {
    return fail(conn, "refused the peer's handshake: " + e);
  }
  if (reply.node_id != peer_) {
    return fail(conn, "the peer at this address is node " + std::to_string(reply.node_id));
  }
  state_ = LinkState::connected;
  timer_.cancel();
  backoff_ = ctx_->options.backoff_min;
  last_failure_logged_.clear();
  log_line(log_source,
           "link to node " + std::to_string(peer_) + " at " + address_.to_string() + " is up");
  watch(conn);
  flush(conn);
}

// The peer never sends on this connection after its handshake, so a pending read completes only
// when the connection breaks: this notices a dead peer even while there is nothing to write.
void PeerLinks::Outbound::watch(const ConnPtr& conn) {
  conn->socket.async_read_some(
      asio::buffer(conn->chunk), [self = shared_from_this(), conn](const error_code& ec, std::size_t) {
        if (!self->is_current(conn)) return;
        self->fail(conn, ec ? describe(ec) : std::string("unexpected data from the peer"));
      });
}

// Hands everything queued to one write. Frames queued while a write is in flight wait for it and
// then leave together: one system call per batch, not per message, is where throughput comes from.
void PeerLinks::Outbound::flush(const ConnPtr& conn) {
  if (state_ != LinkState::connected || conn->writing || queue_.empty()) return;
  conn->out.clear();
  conn->out.swap(queue_);  // the two buffers trade places and both keep their capacity
  conn->out_frames = std::exchange(queue_frames_, 0);
  write(conn);
}

void PeerLinks::Outbound::write(const ConnPtr& conn) {
  assert(!conn->writing && !conn->out.empty());
  conn->writing = true;
  asio::async_write(
      conn->socket, asio::buffer(conn->out),
      [self = shared_from_this(), conn](const error_code& ec, std::size_t n) {
        conn->writing = false;
        // A batch on a connection that broke is lost with it: some of it may have arrived and
        // resending could not tell which. The core retries what it still needs.
        if (!self->is_current(conn)) return;
        if (ec) return self->fail(conn, "write: " + describe(ec));
        if (conn->out_frames > 0) {
          self->frames_sent_ += conn->out_frames;
          self->bytes_sent_ += n;
        }
        conn->out.clear();
        if (conn->out.capacity() > buffer_keep_bytes_max) conn->out.shrink_to_fit();
        conn->out_frames = 0;
        self->flush(conn);
      });
}

void PeerLinks::Outbound::fail(const ConnPtr& conn, const std::string& why) {
  if (!is_current(conn)) return;
  error_code ignored;
  conn->socket.close(ignored);  // pending operations complete as aborted, and are then stale
  conn_.reset();
  state_ = LinkState::backing_off;
  const std::chrono::milliseconds delay = next_backoff();
  if (why != last_failure_logged_) {
    log_line(log_source, "link to node " + std::to_string(peer_) + " at " +
                             address_.to_string() + " failed: " + why + "; retrying in " +
                             std::to_string(delay.count()) + " ms");
    last_failure_logged_ = why;
  }
  timer_.expires_after(delay);
  timer_.async_wait([self = shared_from_this()](const error_code& ec) {
    if (ec == asio::error::operation_aborted) return;
    if (ec) log_line(log_source, "backoff timer: " + ec.message());
    if (self->ctx_->stopped || self->state_ != LinkState::backing_off) return;
    ++self->reconnects_;
    self->connect();
  });
}

// Exponential backoff with jitter: a delay in [backoff/2, backoff], then the backoff doubles.
std::chrono::milliseconds PeerLinks::Outbound::next_backoff() {
  const auto full = static_cast<std::uint64_t>(backoff_.count());
  const std::uint64_t half = full / 2;
  const std::uint64_t delay = half + ctx_->rng() % (full - half + 1);
  backoff_ = std::min(backoff_ * 2, ctx_->options.backoff_max);
  return std::chrono::milliseconds(delay);
}

// ---- Inbound: one accepted connection, on which a peer sends to this node ----

class PeerLinks::Inbound : public std::enable_shared_from_this<Inbound> {
 public:
  Inbound(std::shared_ptr<Context> ctx, tcp::socket socket, std::uint64_t id, std::string remote)
      : ctx_(std::move(ctx)),
        socket_(std::move(socket)),
        deadline_(ctx_->io),
        id_(id),
        remote_(std::move(remote)) {}

  void start();
  // Closes the connection; logs `line` unless it is empty.
  void close(const std::string& line);

 private:
  std::string name() const {
    return remote_ + (peer_ != 0 ? " (node " + std::to_string(peer_) + ")" : "");
  }
  void read();
  void on_read(const error_code& ec, std::size_t n);
  bool deliver();
  bool on_handshake(const Handshake& h);

  std::shared_ptr<Context> ctx_;
  tcp::socket socket_;
  asio::steady_timer deadline_;  // for the handshake
  const std::uint64_t id_;
  const std::string remote_;  // the peer's address, for logs
  NodeId peer_ = 0;           // 0 until its handshake is accepted
  bool open_ = true;
  std::string in_;              // received bytes; the first in_bytes_ are valid
  std::size_t in_bytes_ = 0;
  std::string reply_;           // our handshake, while it is written
};

void PeerLinks::Inbound::start() {
  tune(socket_);
  ctx_->inbound[id_] = weak_from_this();
  deadline_.expires_after(ctx_->options.handshake_timeout);
  deadline_.async_wait([self = shared_from_this()](const error_code& ec) {
    if (ec == asio::error::operation_aborted) return;
    if (ec) log_line(log_source, "handshake timer: " + ec.message());
    if (self->open_ && self->peer_ == 0) {
      self->close("closing link from " + self->name() + ": no handshake within " +
                  std::to_string(self->ctx_->options.handshake_timeout.count()) + " ms");
    }
  });
  read();
}

void PeerLinks::Inbound::close(const std::string& line) {
  if (!open_) return;
  open_ = false;
  if (!line.empty()) ctx_->inbound_log->log(line);
  error_code ignored;
  socket_.close(ignored);
  deadline_.cancel();
  ctx_->inbound.erase(id_);
  if (auto it = ctx_->inbound_by_peer.find(peer_);
      it != ctx_->inbound_by_peer.end() && it->second == id_) {
    ctx_->inbound_by_peer.erase(it);
  }
}

void PeerLinks::Inbound::read() {
  // A whole frame is at most header + frame max bytes, and decode() takes every whole frame out
  // before the next read, so the buffer never exceeds that plus one chunk.
  if (in_.size() - in_bytes_ < read_chunk_bytes) in_.resize(in_bytes_ + read_chunk_bytes);
  assert(in_.size() <= peer_frame_header_bytes + ctx_->options.frame_bytes_max + read_chunk_bytes);
  socket_.async_read_some(asio::buffer(in_.data() + in_bytes_, in_.size() - in_bytes_),
                          [self = shared_from_this()](const error_code& ec, std::size_t n) {
                            self->on_read(ec, n);
                          });
}

void PeerLinks::Inbound::on_read(const error_code& ec, std::size_t n) {
  if (!open_ || ctx_->stopped) return;
  if (ec == asio::error::eof) {
    // A peer that closes its link has nothing to report; a stranger that closes halfway
    // through its handshake is worth a line.
    return close(peer_ == 0 && in_bytes_ > 0
                     ? "link from " + name() + " closed before completing its handshake"
                     : "");
  }
  if (ec) return close("link from " + name() + " failed: " + describe(ec));
  in_bytes_ += n;
  if (deliver()) read();
}

// Decodes and delivers every whole frame received; false once the connection is closed.
bool PeerLinks::Inbound::deliver() {
  std::size_t at = 0;
  // on_message may stop the links (and so close this connection): check before every frame.
  while (open_ && !ctx_->stopped) {
    const std::string_view rest(in_.data() + at, in_bytes_ - at);
    FrameDecode d;
    if (peer_ == 0) {
      Handshake h;
      d = decode_handshake(rest, peer_handshake_bytes_max, h);
      if (d.status == FrameDecode::Status::complete) {
        at += d.consumed;
        if (!on_handshake(h)) return false;
        continue;
      }
    } else {
      Message m;
      d = decode_message(rest, ctx_->options.frame_bytes_max, m);
      if (d.status == FrameDecode::Status::complete) {
        at += d.consumed;
        if (m.from != peer_ || m.to != ctx_->options.self) {
          close("closing link from " + name() + ": it carried a message from node " +
                std::to_string(m.from) + " to node " + std::to_string(m.to));
          return false;
        }
        ++ctx_->frames_received[peer_];
        ctx_->on_message(m);
        continue;
      }
    }
    if (d.status == FrameDecode::Status::incomplete) break;
    close("closing link from " + name() + ": " + d.error);
    return false;
  }
  if (!open_ || ctx_->stopped) return false;
  std::memmove(in_.data(), in_.data() + at, in_bytes_ - at);
  in_bytes_ -= at;
  if (in_bytes_ == 0 && in_.size() > buffer_keep_bytes_max) std::string().swap(in_);
  return true;
}

bool PeerLinks::Inbound::on_handshake(const Handshake& h) {
  if (std::string e = ctx_->check_handshake(h); !e.empty()) {
    close("refused link from " + remote_ + ": " + e);
    return false;
  }
  peer_ = h.node_id;
  deadline_.cancel();
  // A peer reconnects only after it gave up on its previous connection: any older session of
  // this peer is a dead half-open one. Replace it (registry first: close() edits it).
  const auto previous = ctx_->inbound_by_peer.find(peer_);
  const std::uint64_t previous_id = previous != ctx_->inbound_by_peer.end() ? previous->second : 0;
  ctx_->inbound_by_peer[peer_] = id_;
  if (auto it = ctx_->inbound.find(previous_id); it != ctx_->inbound.end()) {
    if (auto old = it->second.lock()) old->close("");
  }
  encode_handshake(ctx_->own_handshake(), reply_);
  asio::async_write(socket_, asio::buffer(reply_),
                    [self = shared_from_this()](const error_code& ec, std::size_t) {
                      if (!self->open_ || self->ctx_->stopped || !ec) return;
                      self->close("link from " + self->name() +
                                  " failed: handshake reply: " + describe(ec));
                    });
  return true;
}

// ---- Inbound connections, from the accept loop ----

void PeerLinks::accept_inbound(const std::shared_ptr<Context>& ctx, tcp::socket socket) {
  if (ctx->stopped) return;
  error_code endpoint_ec;
  const tcp::endpoint remote = socket.remote_endpoint(endpoint_ec);
  const std::string remote_text = endpoint_ec ? std::string("unknown address") : address_of(remote);
  if (ctx->inbound.size() >= ctx->options.peers.size() + inbound_unidentified_max) {
    ctx->inbound_log->log("refused link from " + remote_text + ": too many inbound connections");
    error_code ignored;
    socket.close(ignored);
    return;
  }
  const std::uint64_t id = ctx->next_inbound_id++;
  std::make_shared<Inbound>(ctx, std::move(socket), id, remote_text)->start();
}

// ---- PeerLinks ----

PeerLinks::PeerLinks(asio::io_context& io, PeerLinksOptions options,
                     std::function<void(const Message&)> on_message)
    : ctx_(std::make_shared<Context>(io, std::move(options), std::move(on_message))) {
  const PeerLinksOptions& o = ctx_->options;
  assert(o.self != 0);
  assert(o.backoff_min.count() > 0 && o.backoff_max >= o.backoff_min);
  assert(o.frame_bytes_max <= INT32_MAX);
  for (const auto& [id, address] : o.peers) {
    assert(id != 0);
    if (id == o.self) continue;
    outbound_.emplace(id, std::make_shared<Outbound>(ctx_, id, address));
  }
}

PeerLinks::~PeerLinks() { stop(); }

boost::system::error_code PeerLinks::listen(const tcp::endpoint& endpoint) {
  if (listener_) return asio::error::already_open;
  if (ctx_->stopped) return asio::error::operation_aborted;
  auto listener = std::make_shared<AcceptLoop>(
      ctx_->io, "peer", [weak = std::weak_ptr<Context>(ctx_)](tcp::socket socket) {
        if (auto ctx = weak.lock()) accept_inbound(ctx, std::move(socket));
      });
  if (error_code ec = listener->listen(endpoint)) return ec;
  listener_ = std::move(listener);
  return {};
}

void PeerLinks::start() {
  assert(!started_);
  started_ = true;
  if (ctx_->stopped) return;
  for (auto& [id, link] : outbound_) link->start();
}

void PeerLinks::send(const Message& message) {
  assert(message.from == ctx_->options.self);
  if (ctx_->stopped) return;
  const auto it = outbound_.find(message.to);
  if (it == outbound_.end()) {
    log_line(log_source,
             "dropped a message to node " + std::to_string(message.to) + ": not a peer");
    return;
  }
  it->second->send(message);
}

void PeerLinks::stop() {
  if (ctx_->stopped) return;
  ctx_->stopped = true;
  if (listener_) listener_->close();
  for (auto& [id, link] : outbound_) link->stop();
  // close() edits the registry: collect first.
  std::vector<std::shared_ptr<Inbound>> sessions;
  for (auto& [id, weak] : ctx_->inbound) {
    if (auto session = weak.lock()) sessions.push_back(std::move(session));
  }
  for (auto& session : sessions) session->close("");
  ctx_->inbound_log->flush();
}

std::uint16_t PeerLinks::port() const { return listener_ ? listener_->port() : 0; }

std::map<NodeId, PeerLinks::LinkStats> PeerLinks::stats() const {
  std::map<NodeId, LinkStats> out;
  for (const auto& [id, link] : outbound_) {
    LinkStats s = link->stats();
    if (auto it = ctx_->frames_received.find(id); it != ctx_->frames_received.end()) {
      s.frames_received = it->second;
    }
    out.emplace(id, s);
  }
  return out;
}

std::size_t PeerLinks::connected_peers() const {
  return static_cast<std::size_t>(
      std::count_if(outbound_.begin(), outbound_.end(),
                    [](const auto& entry) { return entry.second->state() == LinkState::connected; }));
}

}  // namespace kv
