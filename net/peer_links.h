// Peer links: the TCP connections that carry kv::Message between the nodes of a cluster.
//
// Each node sends only on its own OUTBOUND connection to each peer and receives only on the
// INBOUND connections its listener accepted. One direction per connection keeps each side simple
// (a writer that never reads messages, a reader that never writes them) and makes message order
// per (sender, receiver) pair the order of one TCP stream.
//
// Every connection opens with a handshake (peer_codec.h): the connecting side sends its
// Handshake, the accepting side checks the cluster id, the protocol version and that the node is
// one of its peers, then answers with its own, which the connecting side checks the same way. A
// link between two clusters, or to a node that is not who the configuration says, is refused.
// The accepting side logs each refused or broken inbound connection once, with the remote
// address and the reason, at a bounded rate so that a flood of garbage cannot flood the log.
//
// Delivery is at most once and best effort: a message queued for a peer whose queue is full, or
// written on a connection that then breaks, is lost. The core resends whatever it still needs
// (retries, read repair, hints), so the links never buffer without bound to hide an outage.
//
// Everything runs on one io_context thread; no member may be called from another thread.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/system/error_code.hpp>

#include "core/messages.h"
#include "core/version.h"
#include "net/host_port.h"
#include "net/peer_codec.h"

namespace kv {

class AcceptLoop;  // net/accept_loop.h

struct PeerLinksOptions {
  std::string cluster_id;  // must match on both sides of a link
  NodeId self = 0;         // this node; not 0
  // Every other node of the cluster and the address of its peer listener (an entry for self is
  // ignored): an IP address or a host name, looked up again on every connection attempt (a pod
  // restarted elsewhere gets a new address under its old name).
  std::map<NodeId, HostPort> peers;
  std::size_t frame_bytes_max = peer_frame_bytes_max_default;  // largest payload sent or accepted
  std::size_t queue_bytes_max = 64u << 20;  // per peer: frames waiting or being written
  std::chrono::milliseconds backoff_min{50}, backoff_max{2000};  // between connection attempts
  std::chrono::milliseconds handshake_timeout{5000};  // connect + handshake, either side
};

enum class LinkState { connecting, connected, backing_off };

class PeerLinks {
 public:
  // `on_message` is called on the io_context thread for every message received, in the order
  // each peer sent them. It may call send() and stop().
  // REQUIRES: `io` outlives this object; options.self != 0; backoff_min > 0.
  PeerLinks(boost::asio::io_context& io, PeerLinksOptions options,
            std::function<void(const Message&)> on_message);
  ~PeerLinks();  // stop()s
  PeerLinks(const PeerLinks&) = delete;
  PeerLinks& operator=(const PeerLinks&) = delete;

  // Accepts inbound links on `endpoint` (port 0: an ephemeral port, see port()). At most once.
  boost::system::error_code listen(const boost::asio::ip::tcp::endpoint& endpoint);
  // Connects the outbound link to every peer, retrying with backoff for as long as it runs.
  // At most once.
  void start();
  // Queues `message` on the outbound link to message.to; it is sent once that link is up. Dropped
  // (and counted) when the peer's queue is full; dropped and logged when message.to is not a
  // peer or the message exceeds frame_bytes_max.
  // REQUIRES: message.from == options.self.
  void send(const Message& message);
  // Closes the listener and every link and cancels every timer, so that io_context::run()
  // returns once the cancelled operations have completed. Nothing is delivered afterwards.
  void stop();

  std::uint16_t port() const;  // of the listener; 0 before listen()

  struct LinkStats {
    LinkState state = LinkState::connecting;  // of the outbound link
    std::uint64_t frames_sent = 0;        // written to the outbound connection
    std::uint64_t frames_received = 0;    // delivered from inbound connections of this peer
    std::uint64_t bytes_sent = 0;
    std::uint64_t reconnects = 0;         // connection attempts after the first
    std::uint64_t dropped_queue_full = 0;
    std::size_t queued_bytes = 0;         // waiting or being written
  };
  std::map<NodeId, LinkStats> stats() const;
  std::size_t connected_peers() const;  // outbound links that completed their handshake

 private:
  struct Context;
  class Outbound;
  class Inbound;

  static void accept_inbound(const std::shared_ptr<Context>& ctx,
                             boost::asio::ip::tcp::socket socket);

  std::shared_ptr<Context> ctx_;
  std::map<NodeId, std::shared_ptr<Outbound>> outbound_;
  std::shared_ptr<AcceptLoop> listener_;
  bool started_ = false;
};

}  // namespace kv
