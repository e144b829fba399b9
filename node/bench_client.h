// The client side of kvbench: one asynchronous RESP connection with its pipeline (commands and
// replies in the codec of net/resp.h), the routing table learned from the nodes' GET /cluster,
// and the checker behind --verify. The driver in kvbench.cc decides what to send and when; what is here
// only moves, parses and judges bytes, so that each piece can be reasoned about on its own.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <iosfwd>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>

#include "core/ring.h"
#include "net/host_port.h"
#include "net/resp.h"

namespace kv::bench {

using Clock = std::chrono::steady_clock;

// ---- What to send ----

enum class OpKind : std::uint8_t { get, set };
inline constexpr std::size_t op_kind_count = 2;

struct Op {
  OpKind kind = OpKind::get;
  std::uint32_t key = 0;  // index into the keyspace
};

// The sequence of operations: uniform keys, GET with probability read_ratio. splitmix64, so that
// a seed gives the same sequence on every platform (std::*_distribution does not).
class Workload {
 public:
  Workload(std::uint64_t seed, std::uint64_t keyspace, double read_ratio)
      : state_(seed), keyspace_(keyspace), read_ratio_(read_ratio) {}
  Op next();

 private:
  std::uint64_t draw();

  std::uint64_t state_;
  std::uint64_t keyspace_;
  double read_ratio_;
};

// Keys are "key:" and the index zero-padded to key_bytes, as redis-benchmark -r names them.
inline constexpr std::string_view key_name_prefix = "key:";
// REQUIRES: key_bytes leaves room for the prefix and every digit of `index`.
void key_name(std::uint32_t index, std::size_t key_bytes, std::string& out);

// ---- Requests and the connection that carries them ----

// A request written and waiting for its reply.
struct Request {
  Op op;
  // --verify: a SET's sequence number, or the supersede floor a GET started with.
  std::uint64_t check = 0;
  Clock::time_point sent;
};

class Connection;

// What a Connection reports to, all on the io_context's thread.
class ConnectionOwner {
 public:
  virtual ~ConnectionOwner() = default;
  // After every connect attempt; `error` is empty on success.
  virtual void on_connect_result(Connection& c, const std::string& error) = 0;
  // Just before request.op is written: stamp the request and append its command to `out`.
  virtual void on_send(Connection& c, Request& request, std::string& out) = 0;
  // The views in `reply` are valid during the call only.
  virtual void on_reply(Connection& c, const Request& request, const RespReply& reply) = 0;
  // A written request that will never get its reply (the connection went away).
  virtual void on_lost(Connection& c, const Request& request, std::string_view reason) = 0;
  // Queued ops that were never written when the connection went away: send them elsewhere.
  virtual void on_unsent(Connection& c, std::vector<Op>& ops) = 0;
  // Pipeline slots became free (replies arrived, or the connection came up).
  virtual void on_slots_free(Connection& c) = 0;
};

// One RESP connection with up to `pipeline` requests outstanding. Ops queued while a write is
// in flight go out together in the next write. A failure closes the socket, reports every
// outstanding request as lost, and reconnects after reconnect_delay.
// REQUIRES: the io_context and the owner outlive the connection; every member is called on the
// io_context's thread.
class Connection {
 public:
  static constexpr auto reconnect_delay = std::chrono::milliseconds(100);
  static constexpr std::size_t read_chunk_bytes = 64u << 10;

  Connection(boost::asio::io_context& io, ConnectionOwner& owner, std::size_t target,
             std::vector<boost::asio::ip::tcp::endpoint> endpoints, std::size_t pipeline);
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  void connect();
  // REQUIRES: free_slots() > 0.
  void enqueue(const Op& op);
  // Writes whatever is queued, unless a write is already under way (then it follows that one).
  void flush();
  // Closes the socket (reporting outstanding requests as lost) and reconnects later if asked.
  void drop(std::string_view reason, bool reconnect);
  // Drops the connection if its oldest request, or its connect attempt, is older than `limit`.
  void enforce_timeout(Clock::time_point now, Clock::duration limit);
  // Forgets ops queued but not yet written (the run is stopping); returns how many.
  std::size_t discard_queued();

  bool connected() const { return state_ == State::connected; }
  std::size_t target() const { return target_; }
  std::size_t outstanding() const { return queued_.size() + written_.size(); }
  std::size_t free_slots() const { return connected() ? pipeline_ - outstanding() : 0; }
  std::uint64_t drops() const { return drops_; }  // times an open connection went away

 private:
  enum class State : std::uint8_t { connecting, connected, waiting };

  void on_connect(const boost::system::error_code& ec);
  void read_more();
  void on_read(const boost::system::error_code& ec, std::size_t bytes);
  void on_write(const boost::system::error_code& ec);
  bool deliver_replies();

  ConnectionOwner& owner_;
  std::size_t target_;
  std::vector<boost::asio::ip::tcp::endpoint> endpoints_;
  std::size_t pipeline_;
  boost::asio::ip::tcp::socket socket_;
  boost::asio::steady_timer reconnect_timer_;
  State state_ = State::waiting;
  Clock::time_point state_since_;
  // Bumped on every drop, so that completions of operations on the old socket are ignored.
  std::uint64_t epoch_ = 0;
  std::uint64_t drops_ = 0;
  bool writing_ = false;
  std::vector<Op> queued_;        // not yet written
  std::deque<Request> written_;   // written, in reply order
  std::string write_buffer_;
  std::string read_buffer_;       // [0, read_bytes_) holds unparsed bytes
  std::size_t read_bytes_ = 0;
  RespReplyParser parser_;        // afresh on every connection
};

// ---- Routing (--route) ----

// A node's answer to GET /cluster, the parts routing needs.
struct ClusterView {
  std::string self_name;
  NodeId self_id = 0;
  std::string self_resp_addr;
  std::uint32_t vnodes_per_node = 0;
  std::vector<NodeId> members;
};

// The fetch blocks (up to `timeout`): it runs once per node before the benchmark starts.
Expected<ClusterView> parse_cluster_view(std::string_view json);
Expected<ClusterView> fetch_cluster_view(const HostPort& http, std::chrono::milliseconds timeout);

// Maps a key to targets in the order of its preference list, using the same ring as the nodes.
class Router {
 public:
  // target_nodes[i]: the node behind target i, or nullopt if it could not be learned.
  Router(const ClusterView& view, std::vector<std::optional<NodeId>> target_nodes);

  // Targets whose node is on the key's preference list, the key's first node first.
  void targets_for(std::string_view key, std::vector<std::size_t>& out) const;

 private:
  Ring ring_;
  std::vector<std::optional<NodeId>> target_nodes_;
};

// Learns the node behind each target from GET /cluster at http[i] (one per target, in the same
// order) and the ring they share. Each problem is one line on `log`; `verbose` also names each
// target's node. nullopt if no node answered. Blocks: it runs before the benchmark starts.
// REQUIRES: http.size() == targets.size().
std::optional<Router> learn_routes(const std::vector<HostPort>& targets, const std::vector<HostPort>& http,
                                   std::chrono::milliseconds timeout, bool verbose, std::ostream& log);

// ---- The --verify checker ----

// Judges every GET against the SETs of this run. The rule, for a GET that started at tick gs and
// completed at tick ge: it may return SET X if X was invoked before ge and X was not superseded,
// that is, no SET Y was invoked after X was acknowledged and then itself acknowledged before gs.
// A SET that got an error reply or lost its connection is never acknowledged: it may or may not
// have been applied, and may take effect at any later moment, so nothing supersedes it. Not-found
// and values this run did not write are the key's prior state, fine until some SET of this run
// is acknowledged before the GET starts. Ticks count the harness's own events on its one thread:
// a request is invoked when its write starts and completes when its reply is parsed, so every
// window the checker sees contains the real one and it never reports a false mismatch.
class Verifier {
 public:
  static constexpr std::size_t value_bytes_min = 32;
  static constexpr std::size_t mismatches_kept_max = 10;

  // 8 hex digits that differ between runs, so that the checker can tell this run's values from
  // those an earlier run left in the store.
  static std::string fresh_run_id();

  // REQUIRES: value_bytes >= value_bytes_min; run_id is 8 characters.
  Verifier(std::uint32_t keyspace, std::string run_id, std::size_t value_bytes);

  // A SET's value: run id and sequence number up front, then filler derived from the sequence
  // number, so that a torn or mixed value does not pass for a real one.
  void append_value(std::uint64_t seq, std::string& out) const;

  std::uint64_t set_invoked(std::uint32_t key);        // returns the SET's sequence number
  void set_acknowledged(std::uint64_t seq);
  std::uint64_t get_invoked(std::uint32_t key);  // returns the floor to hand back below
  // `value` is nullopt for not-found. `key_name` is only used to describe a mismatch.
  void get_completed(std::uint32_t key, std::uint64_t floor, std::optional<std::string_view> value,
                     std::string_view key_name);

  std::uint64_t checked() const { return checked_; }
  std::uint64_t mismatches() const { return mismatches_; }
  std::uint64_t prior_state_reads() const { return prior_state_reads_; }
  const std::vector<std::string>& first_mismatches() const { return first_mismatches_; }

 private:
  struct SetRecord {
    std::uint64_t invoked = 0;
    std::uint64_t acknowledged = 0;  // 0: not (yet, or ever)
    std::uint32_t key = 0;
  };

  std::string judge(std::uint32_t key, std::uint64_t floor, std::uint64_t now,
                    std::optional<std::string_view> value);

  std::string run_id_;
  std::size_t value_bytes_;
  std::uint64_t tick_ = 0;
  std::vector<SetRecord> sets_;  // indexed by sequence number
  // Per key: 1 + the sequence number of the acknowledged SET invoked last, 0 if none yet. Any
  // SET acknowledged before that one was invoked is superseded for every GET starting from now.
  // A GET carries the floor it started with, as its Request::check.
  std::vector<std::uint64_t> floors_;
  std::uint64_t checked_ = 0;
  std::uint64_t mismatches_ = 0;
  std::uint64_t prior_state_reads_ = 0;
  std::vector<std::string> first_mismatches_;
};

}  // namespace kv::bench
