// One Redis client connection's logic, without the socket: bytes in, reply bytes out, requests
// to the node in between. The server owns the socket and moves bytes; everything a Redis client
// can observe (which commands exist, their replies and errors, pipelining order) is decided here,
// so it is tested with a fake node and no network.
//
// Pipelining: every complete command in the input is parsed and issued at once, and each gets a
// reply slot in request order. Node completions may arrive in any order; only the prefix of
// slots whose replies are ready is released as output, so replies leave in request order as
// RESP requires. At most RespLimits::requests_in_flight_max node requests are outstanding per
// connection: when that many are in flight, parsing pauses (the input stays buffered, nothing
// is dropped) and wants_input() turns false so that the server stops reading, which pushes back
// on the client through TCP.
//
// Threading: single-threaded. Node completions must arrive on the thread that calls on_bytes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <map>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/messages.h"
#include "net/node_api.h"
#include "net/resp.h"

namespace kv {

struct RespCommandSpec;  // one row of the command table, in resp_session.cc

class RespSession {
 public:
  // REQUIRES: `node` outlives this session. Destroying the session with requests in flight is
  // safe: their completions find the session gone and do nothing.
  RespSession(NodeApi& node, RespLimits limits);
  ~RespSession();
  RespSession(const RespSession&) = delete;
  RespSession& operator=(const RespSession&) = delete;

  // Bytes read from the client. Parses and issues every complete command that fits in flight.
  // REQUIRES: not called from inside the on_output callback.
  void on_bytes(std::string_view bytes);

  // The reply bytes ready to be written, in request order; empties the output.
  std::string take_output();

  // Called after a node completion (not after on_bytes, whose caller takes the output itself)
  // may have made output ready or room for more input. The server uses it to flush and to
  // resume reading. REQUIRES: the callback does not destroy this session synchronously.
  void set_on_output(std::function<void()> on_output);

  // Shown by HELLO and CLIENT ID; the server numbers its connections.
  void set_client_id(std::uint64_t id) { client_id_ = id; }

  // True once QUIT or a protocol error ended the conversation and every reply before it has
  // been released to the output: write what take_output() returns, then close.
  bool wants_close() const { return closing_ && slots_.empty(); }
  // Why the session is closing: the protocol error, or empty after QUIT.
  const std::string& close_reason() const { return close_reason_; }

  // False while parsing is paused (requests_in_flight_max in flight) or the session is closing:
  // the server should not read more.
  bool wants_input() const { return !closing_ && !parked_; }

  std::size_t in_flight() const { return in_flight_; }
  // Reply bytes ready but not yet taken.
  std::size_t output_bytes() const { return output_.size(); }
  // Bytes of a command that has not fully arrived are buffered (for the server's read timeout).
  bool partial_command() const;
  // Commands parsed so far; the server restarts its read timeout whenever this moves.
  std::uint64_t commands_parsed() const { return commands_parsed_; }

 private:
  struct Slot {
    bool ready = false;
    std::string bytes;
    std::vector<std::string> keys;  // the keys its command touches, busy until it is ready
    bool writes = false;            // whether the command changes them
  };
  struct KeyUse {
    std::size_t readers = 0, writers = 0;
  };
  struct Gather;  // the state of a command that issues one request per key
  using Args = std::vector<std::string>;
  using Done = std::function<void(const ClientReply&)>;

  void pump();
  bool start(Args& args);
  void dispatch(const RespCommandSpec& spec, Args& args, std::uint64_t slot);
  void fill(std::uint64_t slot, std::string bytes);
  void reply_error(std::uint64_t slot, std::string_view text);
  void release_ready();
  void submit(OpType op, std::string key, std::string value, Done then);
  void on_completion(const Done& then, const ClientReply& reply);

  void cmd_get(Args& args, std::uint64_t slot);
  void cmd_set(Args& args, std::uint64_t slot);
  void cmd_del(Args& args, std::uint64_t slot);
  void cmd_exists(Args& args, std::uint64_t slot);
  void cmd_mget(Args& args, std::uint64_t slot);
  void cmd_mset(Args& args, std::uint64_t slot);
  void cmd_command(Args& args, std::uint64_t slot);
  void cmd_config(Args& args, std::uint64_t slot);
  void cmd_hello(Args& args, std::uint64_t slot);
  void cmd_client(Args& args, std::uint64_t slot);
  void cmd_select(Args& args, std::uint64_t slot);
  void set_conditional(std::string key, std::string value, bool nx, bool xx, bool get,
                       std::uint64_t slot);
  void put_then_reply(std::string key, std::string value, std::string reply, std::uint64_t slot);

  NodeApi& node_;
  RespLimits limits_;
  RespParser parser_;
  std::string input_;
  std::optional<Args> parked_;  // parsed, waiting for room in flight
  std::deque<Slot> slots_;
  std::uint64_t slots_base_ = 0;  // the slot number of slots_.front()
  std::string output_;
  std::size_t in_flight_ = 0;
  // Keys touched by commands of this connection that have not answered yet. A command that would
  // conflict with one of them (anything after a write, a write after anything) waits, and every
  // command after it, to keep their order: `SET k a` then `GET k` in one pipeline reads `a`, as
  // Redis clients expect. Reads of one key still overlap.
  std::map<std::string, KeyUse, std::less<>> busy_keys_;
  std::uint64_t commands_parsed_ = 0;
  std::uint64_t client_id_ = 0;
  std::string client_name_;
  bool closing_ = false;
  std::string close_reason_;
  bool busy_ = false;  // inside on_bytes or a completion: nested completions only fill slots
  std::function<void()> on_output_;
  // Completions hold a weak pointer to this: expired means the session is gone.
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace kv
