// The Redis commands this store answers, over the node's get/put/del, and the bookkeeping that
// keeps pipelined replies in request order.
//
// Replies and errors copy Redis's texts where Redis has one, because client libraries and people
// match on them. The replication core's errors keep their detail behind a Redis-style code:
// QUORUM (nothing written, or a read that reached too few replicas), TIMEOUT (a write whose
// outcome is unknown), BUSY (overloaded), UNAVAILABLE (PostgreSQL or the legacy API failed),
// ERR invalid argument (a limit of the core, named).
#include "net/resp_session.h"

#include <cassert>
#include <map>
#include <set>

#include "core/parse.h"

namespace kv {

// Which node requests a command issues, so that it starts only when they fit in flight.
enum class RespRequests : std::uint8_t { none, one, per_key, per_pair };

enum class RespCmd : std::uint8_t {
  ping, echo, get, set, del, exists, mget, mset, info, quit, command, config, hello, select,
  client, auth,
};

struct RespCommandSpec {
  std::string_view name;
  int arity;  // Redis's convention: n exactly n arguments (name included), -n at least n
  RespRequests requests;
  RespCmd cmd;
};

namespace {

constexpr RespCommandSpec command_specs[] = {
    {"ping", -1, RespRequests::none, RespCmd::ping},
    {"echo", 2, RespRequests::none, RespCmd::echo},
    {"get", 2, RespRequests::one, RespCmd::get},
    {"set", -3, RespRequests::one, RespCmd::set},
    {"del", -2, RespRequests::per_key, RespCmd::del},
    {"exists", -2, RespRequests::per_key, RespCmd::exists},
    {"mget", -2, RespRequests::per_key, RespCmd::mget},
    {"mset", -3, RespRequests::per_pair, RespCmd::mset},
    {"info", -1, RespRequests::none, RespCmd::info},
    {"quit", -1, RespRequests::none, RespCmd::quit},
    {"command", -1, RespRequests::none, RespCmd::command},
    {"config", -2, RespRequests::none, RespCmd::config},
    {"hello", -1, RespRequests::none, RespCmd::hello},
    {"select", 2, RespRequests::none, RespCmd::select},
    {"client", -2, RespRequests::none, RespCmd::client},
    {"auth", -2, RespRequests::none, RespCmd::auth},
};

// What CONFIG GET reports. redis-benchmark asks for save and appendonly at start; the store
// persists through its own write-ahead log, which neither Redis setting describes.
constexpr std::pair<std::string_view, std::string_view> config_values[] = {
    {"save", ""},
    {"appendonly", "no"},
    {"databases", "1"},
};

// Announced by HELLO: the Redis version whose command set this front door follows, which
// client libraries read to decide which commands they may send.
constexpr std::string_view redis_version = "7.0.0";

// Redis quotes at most this much of an unknown command's arguments in its error.
constexpr std::size_t unknown_args_quoted_bytes_max = 128;

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

// Redis's glob subset that CONFIG GET patterns use in practice: `*` and `?`, ASCII case folded.
bool glob_match(std::string_view pattern, std::string_view text) {
  std::size_t p = 0, t = 0, star = std::string_view::npos, resume = 0;
  const auto fold = [](char c) {
    return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c;
  };
  const auto same = [&](char a, char b) { return fold(a) == fold(b); };
  while (t < text.size()) {
    if (p < pattern.size() && (pattern[p] == '?' || same(pattern[p], text[t]))) {
      ++p;
      ++t;
    } else if (p < pattern.size() && pattern[p] == '*') {
      star = p++;
      resume = t;
    } else if (star != std::string_view::npos) {
      p = star + 1;
      t = ++resume;
    } else {
      return false;
    }
  }
  while (p < pattern.size() && pattern[p] == '*') ++p;
  return p == pattern.size();
}

std::string error_bytes(std::string_view text) {
  std::string out;
  append_error(out, text);
  return out;
}

std::string bulk_bytes(std::string_view value) {
  std::string out;
  append_bulk(out, value);
  return out;
}

std::string integer_bytes(std::int64_t value) {
  std::string out;
  append_integer(out, value);
  return out;
}

constexpr std::string_view ok_bytes = "+OK\r\n";
constexpr std::string_view null_bulk_bytes = "$-1\r\n";
constexpr std::string_view empty_array_bytes = "*0\r\n";

std::string arity_error(std::string_view name) {
  return "ERR wrong number of arguments for '" + std::string(name) + "' command";
}

std::string unknown_subcommand(std::string_view sub, std::string_view command) {
  return "ERR unknown subcommand '" + std::string(sub.substr(0, unknown_args_quoted_bytes_max)) +
         "'. Try " + std::string(command) + " HELP.";
}

// Redis's exact shape, trailing space included: clients and people match on it.
std::string unknown_command(const std::vector<std::string>& args) {
  std::string quoted;
  for (std::size_t i = 1; i < args.size() && quoted.size() < unknown_args_quoted_bytes_max; ++i) {
    const std::size_t room = unknown_args_quoted_bytes_max - quoted.size();
    quoted += "'" + args[i].substr(0, room) + "' ";
  }
  return "ERR unknown command '" + args[0].substr(0, unknown_args_quoted_bytes_max) +
         "', with args beginning with: " + quoted;
}

// A core error as a Redis error line, keeping the core's detail.
std::string store_error(const ClientReply& reply) {
  const std::string detail = reply.detail.empty() ? reply.error.message() : reply.detail;
  if (reply.error == Errc::invalid_argument) return "ERR invalid argument: " + detail;
  if (reply.error == Errc::quorum_unavailable) return "QUORUM " + detail;
  if (reply.error == Errc::timeout) return "TIMEOUT " + detail;
  if (reply.error == Errc::overloaded) return "BUSY overloaded: " + detail;
  if (reply.error == Errc::unavailable) return "UNAVAILABLE " + detail;
  return "ERR " + reply.error.message() + ": " + detail;
}

// A get found a value: a tombstone or nothing at all both read as "no such key".
bool live(const ClientReply& reply) { return reply.record && !reply.record->tombstone; }

std::string value_bytes(const ClientReply& reply) {
  return live(reply) ? bulk_bytes(reply.record->value) : std::string(null_bulk_bytes);
}

const RespCommandSpec* find_command(std::string_view name) {
  for (const RespCommandSpec& spec : command_specs) {
    if (spec.name == name) return &spec;
  }
  return nullptr;
}

bool arity_ok(const RespCommandSpec& spec, std::size_t argc) {
  const auto n = static_cast<std::size_t>(spec.arity < 0 ? -spec.arity : spec.arity);
  return spec.arity < 0 ? argc >= n : argc == n;
}

std::size_t requests_needed(const RespCommandSpec& spec, std::size_t argc) {
  switch (spec.requests) {
    case RespRequests::none: return 0;
    case RespRequests::one: return 1;
    case RespRequests::per_key: return argc - 1;
    case RespRequests::per_pair: return (argc - 1) / 2;
  }
  return 0;
}

// The keys a store command touches: every argument after the name, or for MSET every other one.
std::vector<std::string> command_keys(const RespCommandSpec& spec, const std::vector<std::string>& args) {
  std::vector<std::string> keys;
  switch (spec.requests) {
    case RespRequests::none: break;
    case RespRequests::one: keys.push_back(args[1]); break;
    case RespRequests::per_key: keys.assign(args.begin() + 1, args.end()); break;
    case RespRequests::per_pair:
      for (std::size_t i = 1; i < args.size(); i += 2) keys.push_back(args[i]);
      break;
  }
  return keys;
}

}  // namespace

// A command that issues one request per key and answers once all of them are back. When several
// fail, the reply names the failure of the earliest key, so it does not depend on timing.
struct RespSession::Gather {
  std::uint64_t slot = 0;
  std::size_t remaining = 0;
  std::int64_t count = 0;
  std::vector<std::string> values;  // encoded bulk replies, for MGET
  std::optional<std::size_t> error_key;
  std::string error;

  void note_error(std::size_t key, const ClientReply& reply) {
    if (error_key && *error_key < key) return;
    error_key = key;
    error = store_error(reply);
  }
  bool done() { return --remaining == 0; }
};

RespSession::RespSession(NodeApi& node, RespLimits limits)
    : node_(node), limits_(limits), parser_(limits_) {}

RespSession::~RespSession() = default;

void RespSession::set_on_output(std::function<void()> on_output) {
  on_output_ = std::move(on_output);
}

bool RespSession::partial_command() const { return !closing_ && !parked_ && !input_.empty(); }

void RespSession::on_bytes(std::string_view bytes) {
  assert(!busy_);
  if (closing_) return;  // after QUIT or a protocol error, the rest of the input is ignored
  input_.append(bytes);
  busy_ = true;
  pump();
  busy_ = false;
}

std::string RespSession::take_output() {
  std::string out = std::move(output_);
  output_.clear();
  return out;
}

void RespSession::pump() {
  std::size_t pos = 0;  // the start of the next command in input_
  while (!closing_) {
    if (!parked_) {
      ParseResult parsed = parser_.parse(std::string_view(input_).substr(pos));
      if (parsed.status == ParseStatus::incomplete) break;
      if (parsed.status == ParseStatus::error) {
        // Redis answers a protocol error and closes: the stream cannot be resynchronised.
        close_reason_ = parsed.error;
        closing_ = true;
        slots_.emplace_back();
        reply_error(slots_base_ + slots_.size() - 1, "ERR " + parsed.error);
        break;
      }
      pos += parsed.consumed_bytes;
      ++commands_parsed_;
      if (parsed.status == ParseStatus::refused) {
        slots_.emplace_back();
        reply_error(slots_base_ + slots_.size() - 1, "ERR " + parsed.error);
        continue;
      }
      if (parsed.args.empty()) continue;  // an empty line or `*0`, which Redis skips too
      parked_ = std::move(parsed.args);
    }
    if (!start(*parked_)) break;  // no room in flight: wait for a completion
    parked_.reset();
  }
  // Erased once per pump, not per command, so a long pipeline is not copied over and over. The
  // parser's progress is relative to the command's first byte, which becomes input_[0].
  if (closing_) {
    input_.clear();
  } else {
    input_.erase(0, pos);
  }
  release_ready();
}

// Starts one command. False when its node requests do not fit in flight yet: it stays parked.
bool RespSession::start(Args& args) {
  const std::string name = lower(args[0]);
  const RespCommandSpec* spec = find_command(name);
  const auto open_slot = [this] {
    slots_.emplace_back();
    return slots_base_ + slots_.size() - 1;
  };
  if (spec == nullptr) {
    reply_error(open_slot(), unknown_command(args));
    return true;
  }
  if (!arity_ok(*spec, args.size()) || (spec->cmd == RespCmd::mset && args.size() % 2 == 0)) {
    reply_error(open_slot(), arity_error(spec->name));
    return true;
  }
  const std::size_t needed = requests_needed(*spec, args.size());
  if (needed > limits_.requests_in_flight_max) {
    reply_error(open_slot(), "ERR too many keys in one command: " + std::to_string(needed) +
                                 " exceeds requests_in_flight_per_connection_max (" +
                                 std::to_string(limits_.requests_in_flight_max) + ")");
    return true;
  }
  if (in_flight_ + needed > limits_.requests_in_flight_max) return false;
  std::vector<std::string> keys = command_keys(*spec, args);
  const bool writes = spec->cmd == RespCmd::set || spec->cmd == RespCmd::del || spec->cmd == RespCmd::mset;
  for (const std::string& key : keys) {
    auto it = busy_keys_.find(key);
    if (it != busy_keys_.end() && (writes || it->second.writers > 0)) return false;  // wait
  }
  const std::uint64_t slot = open_slot();
  for (const std::string& key : keys) ++(writes ? busy_keys_[key].writers : busy_keys_[key].readers);
  slots_.back().keys = std::move(keys);
  slots_.back().writes = writes;
  dispatch(*spec, args, slot);
  return true;
}

void RespSession::dispatch(const RespCommandSpec& spec, Args& args, std::uint64_t slot) {
  switch (spec.cmd) {
    case RespCmd::ping:
      if (args.size() > 2) return reply_error(slot, arity_error("ping"));
      return fill(slot, args.size() == 1 ? std::string("+PONG\r\n") : bulk_bytes(args[1]));
    case RespCmd::echo: return fill(slot, bulk_bytes(args[1]));
    case RespCmd::get: return cmd_get(args, slot);
    case RespCmd::set: return cmd_set(args, slot);
    case RespCmd::del: return cmd_del(args, slot);
    case RespCmd::exists: return cmd_exists(args, slot);
    case RespCmd::mget: return cmd_mget(args, slot);
    case RespCmd::mset: return cmd_mset(args, slot);
    case RespCmd::info:  // the whole text whatever the section: the node's INFO is short
      return fill(slot, bulk_bytes(node_.info_text()));
    case RespCmd::quit:
      closing_ = true;
      return fill(slot, std::string(ok_bytes));
    case RespCmd::command: return cmd_command(args, slot);
    case RespCmd::config: return cmd_config(args, slot);
    case RespCmd::hello: return cmd_hello(args, slot);
    case RespCmd::select: return cmd_select(args, slot);
    case RespCmd::client: return cmd_client(args, slot);
    case RespCmd::auth:
      // No password is configured: Redis's answer for that case, and OK for `AUTH user pass`
      // as Redis gives for its passwordless default user.
      if (args.size() == 2) {
        return reply_error(slot,
                           "ERR AUTH <password> called without any password configured for the "
                           "default user. Are you sure your configuration is correct?");
      }
      if (args.size() > 3) return reply_error(slot, "ERR syntax error");
      return fill(slot, std::string(ok_bytes));
  }
}

void RespSession::fill(std::uint64_t slot, std::string bytes) {
  assert(slot >= slots_base_ && slot - slots_base_ < slots_.size());
  Slot& s = slots_[slot - slots_base_];
  assert(!s.ready);
  s.ready = true;
  s.bytes = std::move(bytes);
  for (const std::string& key : s.keys) {
    auto it = busy_keys_.find(key);
    --(s.writes ? it->second.writers : it->second.readers);
    if (it->second.readers == 0 && it->second.writers == 0) busy_keys_.erase(it);
  }
  s.keys.clear();
}

void RespSession::reply_error(std::uint64_t slot, std::string_view text) {
  fill(slot, error_bytes(text));
}

void RespSession::release_ready() {
  while (!slots_.empty() && slots_.front().ready) {
    output_.append(slots_.front().bytes);
    slots_.pop_front();
    ++slots_base_;
  }
}

void RespSession::submit(OpType op, std::string key, std::string value, Done then) {
  ++in_flight_;
  std::weak_ptr<bool> alive = alive_;
  ClientRequest request{.op = op, .key = std::move(key), .value = std::move(value)};
  node_.submit(std::move(request), [this, alive = std::move(alive), then = std::move(then)](
                                       const ClientReply& reply) {
    if (alive.expired()) return;  // the connection closed while this request was in flight
    on_completion(then, reply);
  });
}

void RespSession::on_completion(const Done& then, const ClientReply& reply) {
  assert(in_flight_ > 0);
  --in_flight_;
  // A completion may arrive inside on_bytes or inside another completion (a node may answer
  // before submit returns): then it only fills its slot, and the outer call releases output.
  const bool outer = !busy_;
  busy_ = true;
  then(reply);
  if (!outer) return;
  pump();  // room in flight may let parked commands start
  busy_ = false;
  if (on_output_) on_output_();  // last: the callback may end the connection
}

// ---- Keys ----

void RespSession::cmd_get(Args& args, std::uint64_t slot) {
  submit(OpType::get, std::move(args[1]), {}, [this, slot](const ClientReply& reply) {
    fill(slot, reply.error ? error_bytes(store_error(reply)) : value_bytes(reply));
  });
}

// SET key value [NX|XX] [GET] [EX s|PX ms|EXAT s|PXAT ms|KEEPTTL]
void RespSession::cmd_set(Args& args, std::uint64_t slot) {
  bool nx = false, xx = false, get = false, expiry = false;
  for (std::size_t i = 3; i < args.size(); ++i) {
    const std::string opt = lower(args[i]);
    if (opt == "nx" && !xx) {
      nx = true;
    } else if (opt == "xx" && !nx) {
      xx = true;
    } else if (opt == "get") {
      get = true;
    } else if (opt == "keepttl" && !expiry) {
      expiry = true;
    } else if ((opt == "ex" || opt == "px" || opt == "exat" || opt == "pxat") && !expiry &&
               i + 1 < args.size()) {
      const auto t = parse_integer<std::int64_t>(args[++i]);
      if (!t) return reply_error(slot, "ERR value is not an integer or out of range");
      if (*t <= 0) return reply_error(slot, "ERR invalid expire time in 'set' command");
      expiry = true;
    } else {
      return reply_error(slot, "ERR syntax error");
    }
  }
  // Records carry no expiry yet; these options arrive with the store's TTL support. Refusing
  // them is better than storing a key that the client believes will go away.
  if (expiry) return reply_error(slot, "ERR SET with EX/PX is not supported yet");
  if (!nx && !xx && !get) {
    return put_then_reply(std::move(args[1]), std::move(args[2]), std::string(ok_bytes), slot);
  }
  set_conditional(std::move(args[1]), std::move(args[2]), nx, xx, get, slot);
}

// NX, XX and GET read the key with a quorum read, then write only if the condition holds. The
// check and the write are two requests: in a leaderless store another client may write the key
// between them, so NX/XX are not atomic against concurrent writers (unlike Redis).
void RespSession::set_conditional(std::string key, std::string value, bool nx, bool xx, bool get,
                                  std::uint64_t slot) {
  auto then = [this, key, value = std::move(value), nx, xx, get,
               slot](const ClientReply& reply) mutable {
    if (reply.error) return reply_error(slot, store_error(reply));
    const bool exists = live(reply);
    std::string old = get ? value_bytes(reply) : std::string(null_bulk_bytes);
    if ((nx && exists) || (xx && !exists)) return fill(slot, std::move(old));
    put_then_reply(std::move(key), std::move(value), get ? std::move(old) : std::string(ok_bytes),
                   slot);
  };
  submit(OpType::get, std::move(key), {}, std::move(then));
}

void RespSession::put_then_reply(std::string key, std::string value, std::string reply_bytes,
                                 std::uint64_t slot) {
  submit(OpType::put, std::move(key), std::move(value),
         [this, slot, ok = std::move(reply_bytes)](const ClientReply& reply) {
           fill(slot, reply.error ? error_bytes(store_error(reply)) : ok);
         });
}

// DEL answers how many of the keys held a live value, so each key is read first; the delete is
// then written whatever the read found, so that a write the read missed (one still in flight)
// is ordered before the tombstone and does not survive the DEL.
void RespSession::cmd_del(Args& args, std::uint64_t slot) {
  std::vector<std::string> keys;
  std::set<std::string_view> seen;  // DEL k k removes k once and counts it once, as Redis does
  for (std::size_t i = 1; i < args.size(); ++i) {
    if (seen.insert(args[i]).second) keys.push_back(args[i]);
  }
  auto g = std::make_shared<Gather>(Gather{.slot = slot, .remaining = keys.size()});
  const auto finish = [this, g] {
    if (g->done()) fill(g->slot, g->error_key ? error_bytes(g->error) : integer_bytes(g->count));
  };
  for (std::size_t i = 0; i < keys.size(); ++i) {
    submit(OpType::get, keys[i], {}, [this, g, i, key = keys[i], finish](const ClientReply& read) {
      if (read.error) {
        g->note_error(i, read);
        return finish();
      }
      if (live(read)) ++g->count;
      submit(OpType::del, key, {}, [g, i, finish](const ClientReply& written) {
        if (written.error) g->note_error(i, written);
        finish();
      });
    });
  }
}

void RespSession::cmd_exists(Args& args, std::uint64_t slot) {
  auto g = std::make_shared<Gather>(Gather{.slot = slot, .remaining = args.size() - 1});
  for (std::size_t i = 1; i < args.size(); ++i) {
    submit(OpType::get, std::move(args[i]), {}, [this, g, i](const ClientReply& reply) {
      if (reply.error) g->note_error(i, reply);
      if (live(reply)) ++g->count;
      if (g->done()) fill(g->slot, g->error_key ? error_bytes(g->error) : integer_bytes(g->count));
    });
  }
}

// A failed read is an error for the whole MGET, not a nil: nil would claim the key is absent.
void RespSession::cmd_mget(Args& args, std::uint64_t slot) {
  auto g = std::make_shared<Gather>(Gather{.slot = slot, .remaining = args.size() - 1});
  g->values.resize(args.size() - 1);
  for (std::size_t i = 1; i < args.size(); ++i) {
    submit(OpType::get, std::move(args[i]), {}, [this, g, i](const ClientReply& reply) {
      if (reply.error) {
        g->note_error(i, reply);
      } else {
        g->values[i - 1] = value_bytes(reply);
      }
      if (!g->done()) return;
      if (g->error_key) return reply_error(g->slot, g->error);
      std::string out;
      append_array_header(out, g->values.size());
      for (const std::string& v : g->values) out.append(v);
      fill(g->slot, std::move(out));
    });
  }
}

// The puts go out together and are not atomic as a group (Redis's MSET is): after an error,
// some keys may hold their new values. A key given twice is written once, with its last value,
// since two concurrent puts of one key would be ordered by timing, not by position.
void RespSession::cmd_mset(Args& args, std::uint64_t slot) {
  std::map<std::string_view, std::size_t> last;  // key -> index of its last occurrence
  for (std::size_t i = 1; i < args.size(); i += 2) last[args[i]] = i;
  std::vector<std::size_t> writes;
  for (std::size_t i = 1; i < args.size(); i += 2) {
    if (last[args[i]] == i) writes.push_back(i);
  }
  auto g = std::make_shared<Gather>(Gather{.slot = slot, .remaining = writes.size()});
  for (const std::size_t i : writes) {
    submit(OpType::put, std::move(args[i]), std::move(args[i + 1]),
           [this, g, i](const ClientReply& reply) {
             if (reply.error) g->note_error(i, reply);
             if (!g->done()) return;
             fill(g->slot, g->error_key ? error_bytes(g->error) : std::string(ok_bytes));
           });
  }
}

// ---- Connection and introspection ----

// redis-cli asks for COMMAND DOCS at start to show hints; an empty answer means "no hints".
void RespSession::cmd_command(Args& args, std::uint64_t slot) {
  if (args.size() == 1) return fill(slot, std::string(empty_array_bytes));
  const std::string sub = lower(args[1]);
  if (sub == "docs" || sub == "info") return fill(slot, std::string(empty_array_bytes));
  if (sub == "count") {
    return fill(slot, integer_bytes(static_cast<std::int64_t>(std::size(command_specs))));
  }
  if (sub == "list") {
    std::string out;
    append_array_header(out, std::size(command_specs));
    for (const RespCommandSpec& spec : command_specs) append_bulk(out, spec.name);
    return fill(slot, std::move(out));
  }
  reply_error(slot, unknown_subcommand(args[1], "COMMAND"));
}

void RespSession::cmd_config(Args& args, std::uint64_t slot) {
  const std::string sub = lower(args[1]);
  if (sub == "set") {
    return reply_error(slot, "ERR CONFIG SET is not supported: the node is configured by flags");
  }
  if (sub != "get") return reply_error(slot, unknown_subcommand(args[1], "CONFIG"));
  if (args.size() < 3) return reply_error(slot, arity_error("config|get"));
  std::vector<std::pair<std::string_view, std::string_view>> found;
  for (const auto& entry : config_values) {
    for (std::size_t i = 2; i < args.size(); ++i) {
      if (glob_match(args[i], entry.first)) {
        found.push_back(entry);
        break;
      }
    }
  }
  std::string out;
  append_array_header(out, found.size() * 2);
  for (const auto& [name, value] : found) {
    append_bulk(out, name);
    append_bulk(out, value);
  }
  fill(slot, std::move(out));
}

// HELLO [protover [AUTH user pass] [SETNAME name]]. Only RESP2 is spoken, so the reply is the
// flat array Redis gives for protocol 2, and HELLO 3 is refused the way Redis refuses a version.
void RespSession::cmd_hello(Args& args, std::uint64_t slot) {
  if (args.size() >= 2) {
    const auto version = parse_integer<std::int64_t>(args[1]);
    if (!version) {
      return reply_error(slot, "ERR Protocol version is not an integer or out of range");
    }
    if (*version != 2) {
      return reply_error(slot, "NOPROTO sorry, this protocol version is not supported");
    }
  }
  for (std::size_t i = 2; i < args.size(); ++i) {
    const std::string opt = lower(args[i]);
    if (opt == "auth" && i + 2 < args.size()) {
      i += 2;  // no password is configured: any credentials pass, as for Redis's default user
    } else if (opt == "setname" && i + 1 < args.size()) {
      client_name_ = args[++i];
    } else {
      return reply_error(slot, "ERR Syntax error in HELLO option '" + args[i] + "'");
    }
  }
  std::string out;
  append_array_header(out, 14);
  append_bulk(out, "server");
  append_bulk(out, "kv");
  append_bulk(out, "version");
  append_bulk(out, redis_version);
  append_bulk(out, "proto");
  append_integer(out, 2);
  append_bulk(out, "id");
  append_integer(out, static_cast<std::int64_t>(client_id_));
  append_bulk(out, "mode");
  append_bulk(out, "standalone");  // one keyspace behind every node: no cluster redirects
  append_bulk(out, "role");
  append_bulk(out, "master");
  append_bulk(out, "modules");
  append_array_header(out, 0);
  fill(slot, std::move(out));
}

void RespSession::cmd_select(Args& args, std::uint64_t slot) {
  const auto db = parse_integer<std::int64_t>(args[1]);
  if (!db) return reply_error(slot, "ERR value is not an integer or out of range");
  if (*db != 0) return reply_error(slot, "ERR DB index is out of range");
  fill(slot, std::string(ok_bytes));
}

void RespSession::cmd_client(Args& args, std::uint64_t slot) {
  const std::string sub = lower(args[1]);
  if (sub == "setname") {
    if (args.size() != 3) return reply_error(slot, arity_error("client|setname"));
    client_name_ = std::move(args[2]);
    return fill(slot, std::string(ok_bytes));
  }
  if (sub == "setinfo") {  // client libraries announce their name and version
    if (args.size() != 4) return reply_error(slot, arity_error("client|setinfo"));
    return fill(slot, std::string(ok_bytes));
  }
  if (sub == "getname") {
    return fill(slot, client_name_.empty() ? std::string(null_bulk_bytes)
                                           : bulk_bytes(client_name_));
  }
  if (sub == "id") return fill(slot, integer_bytes(static_cast<std::int64_t>(client_id_)));
  reply_error(slot, unknown_subcommand(args[1], "CLIENT"));
}

}  // namespace kv
