// The RESP front door: the parser (net/resp.h) and the logic of one connection
// (net/resp_session.h) over a fake node. The input is what a client sends on one connection.
//
// Properties:
// - the parser's results do not depend on how the bytes were split into reads (a whole-buffer
//   parse and a parse fed in pieces give the same commands, in order, and the same error);
//   under the default limits and under tiny ones, so that every limit is reachable;
// - a parsed command, re-encoded as a client library sends it, parses back to the same
//   arguments and consumes exactly its encoding;
// - the connection answers every command with exactly one well-formed RESP2 reply, in order, the
//   same bytes however the input was split; with completions held and returned out of order
//   and a tiny in-flight limit, it still answers everything once the node has answered;
// - the client's reply parser gives the same replies and the same error however its input was
//   split, and reads the connection's output as exactly as many replies as the oracle here.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/parse.h"
#include "fuzz/common.h"
#include "fuzz/fake_node.h"
#include "net/resp.h"
#include "net/resp_session.h"

namespace kv::fuzz {
namespace {

struct Outcome {
  ParseStatus status;
  std::vector<std::string> args;
  std::size_t consumed;
  std::string error;
  bool operator==(const Outcome&) const = default;
};

RespLimits tiny_limits() {
  RespLimits l;
  l.array_len_max = 4;
  l.bulk_bytes_max = 16;
  l.inline_bytes_max = 24;
  l.command_bytes_max = 64;
  l.requests_in_flight_max = 2;
  return l;
}

// Split points from a small generator seeded by the input, so a given input always splits alike.
class Splitter {
 public:
  explicit Splitter(std::string_view in) {
    for (char c : in.substr(0, 8)) state_ = state_ * 31 + static_cast<unsigned char>(c);
  }
  std::size_t next() {
    state_ = state_ * 6364136223846793005ull + 1442695040888963407ull;
    const std::size_t r = state_ >> 59;  // 0-31
    return r < 8 ? 1 : r;                // single bytes often: every boundary gets its turn
  }

 private:
  std::uint64_t state_ = 1;
};

// Every command of `in` as the connection parses it: the whole rest of the input at each call.
std::vector<Outcome> parse_whole(std::string_view in, const RespLimits& limits) {
  std::vector<Outcome> out;
  RespParser parser(limits);
  std::size_t at = 0;
  while (at < in.size()) {
    ParseResult r = parser.parse(in.substr(at));
    if (r.status == ParseStatus::incomplete) break;
    require(r.status == ParseStatus::error ||
                (r.consumed_bytes > 0 && r.consumed_bytes <= in.size() - at),
            "a complete command consumed " + std::to_string(r.consumed_bytes) + " bytes");
    out.push_back({r.status, r.args, r.consumed_bytes, r.error});
    if (r.status == ParseStatus::error) break;
    at += r.consumed_bytes;
  }
  return out;
}

// The same, but the bytes arrive a few at a time.
std::vector<Outcome> parse_split(std::string_view in, const RespLimits& limits) {
  std::vector<Outcome> out;
  RespParser parser(limits);
  Splitter split(in);
  std::size_t start = 0, arrived = 0;
  while (arrived < in.size()) {
    arrived = std::min(in.size(), arrived + split.next());
    for (;;) {
      if (start == arrived) break;
      ParseResult r = parser.parse(in.substr(start, arrived - start));
      if (r.status == ParseStatus::incomplete) break;
      out.push_back({r.status, r.args, r.consumed_bytes, r.error});
      if (r.status == ParseStatus::error) return out;
      start += r.consumed_bytes;
    }
  }
  return out;
}

void check_roundtrip(const std::vector<std::string>& args, const RespLimits& limits) {
  std::string encoded;
  append_command(encoded, args);
  const ParseResult r = parse_command(encoded, limits);
  require(r.status == ParseStatus::complete, "a re-encoded command does not parse: " + r.error);
  require(r.consumed_bytes == encoded.size(), "a re-encoded command is consumed in part");
  require(r.args == args, "a command changed in a round trip");
}

void check_parser(std::string_view in, const RespLimits& limits, const char* which) {
  const std::vector<Outcome> whole = parse_whole(in, limits);
  const std::vector<Outcome> split = parse_split(in, limits);
  require(whole == split, std::string("parse depends on how the input was split (") + which +
                              " limits): " + std::to_string(whole.size()) + " vs " +
                              std::to_string(split.size()) + " results");
  for (const Outcome& o : whole) {
    if (o.status == ParseStatus::complete) check_roundtrip(o.args, RespLimits{});
  }
}

// One RESP2 reply at `at`; returns the offset after it, or npos if malformed or cut short.
std::size_t skip_reply(std::string_view out, std::size_t at, int depth = 0) {
  constexpr std::size_t bad = std::string_view::npos;
  if (at >= out.size() || depth > 8) return bad;
  const std::size_t cr = out.find("\r\n", at);
  if (cr == std::string_view::npos) return bad;
  const std::string_view line = out.substr(at + 1, cr - at - 1);
  if (line.find_first_of("\r\n") != std::string_view::npos) return bad;
  switch (out[at]) {
    case '+':
    case '-':
      return cr + 2;
    case ':':
      return parse_integer<std::int64_t>(line) ? cr + 2 : bad;
    case '$': {
      const auto n = parse_integer<std::int64_t>(line);
      if (!n || *n < -1) return bad;
      if (*n == -1) return cr + 2;
      const std::size_t end = cr + 2 + static_cast<std::size_t>(*n);
      if (end + 2 > out.size() || out.substr(end, 2) != "\r\n") return bad;
      return end + 2;
    }
    case '*': {
      const auto n = parse_integer<std::int64_t>(line);
      if (!n || *n < -1) return bad;
      std::size_t next = cr + 2;
      for (std::int64_t i = 0; i < *n && next != bad; ++i) next = skip_reply(out, next, depth + 1);
      return next;
    }
    default:
      return bad;
  }
}

// A reply tree as text, for comparing the client parser's results.
std::string show(const RespReply& r) {
  std::string out(1, "+-:$_*"[static_cast<int>(r.type)]);
  out += r.type == RespReplyType::integer ? std::to_string(r.integer) : std::string(r.text);
  for (const RespReply& e : r.elements) out += "(" + show(e) + ")";
  return out;
}

// Every reply of `in` with the client parser, the bytes arriving `split` at a time (0: at once).
std::vector<std::string> client_replies(std::string_view in, const RespReplyLimits& limits, bool split) {
  std::vector<std::string> out;
  RespReplyParser parser(limits);
  Splitter s(in);
  std::size_t start = 0, arrived = split ? 0 : in.size();
  for (;;) {
    RespReply reply;
    std::size_t consumed = 0;
    std::string error;
    const ParseStatus status = parser.parse(in.substr(start, arrived - start), reply, consumed, error);
    if (status == ParseStatus::error) {
      out.push_back("error: " + error);
      return out;
    }
    if (status == ParseStatus::complete) {
      require(consumed > 0 && consumed <= arrived - start, "a reply consumed bytes it was not given");
      out.push_back(show(reply));
      start += consumed;
      if (start < arrived) continue;
    }
    if (arrived == in.size()) return out;
    arrived = std::min(in.size(), arrived + s.next());
  }
}

void check_reply_parser(std::string_view in) {
  RespReplyLimits tiny;
  tiny.bulk_bytes_max = 16;
  tiny.line_bytes_max = 24;
  tiny.array_len_max = 4;
  tiny.depth_max = 3;
  for (const RespReplyLimits& limits : {RespReplyLimits{}, tiny}) {
    require(client_replies(in, limits, false) == client_replies(in, limits, true),
            "the reply parser depends on how its input was split");
  }
}

std::size_t count_replies(std::string_view out) {
  std::size_t n = 0;
  for (std::size_t at = 0; at < out.size(); ++n) {
    at = skip_reply(out, at);
    require(at != std::string_view::npos, "the connection wrote a malformed reply");
  }
  return n;
}

// Replies the connection owes for `in`: one per non-empty command up to QUIT, or up to and
// including a protocol error.
std::size_t replies_owed(std::string_view in) {
  std::size_t n = 0;
  for (const Outcome& o : parse_whole(in, RespLimits{})) {
    if (o.status == ParseStatus::error) return n + 1;
    if (o.args.empty()) continue;
    ++n;
    std::string name = o.args[0];
    for (char& c : name) c = static_cast<char>(c >= 'A' && c <= 'Z' ? c + 32 : c);
    if (name == "quit") return n;
  }
  return n;
}

std::string run_connection(std::string_view in, bool split) {
  FakeNode node;
  RespSession conn(node, RespLimits{});
  if (!split) {
    conn.on_bytes(in);
  } else {
    Splitter s(in);
    for (std::size_t at = 0; at < in.size();) {
      const std::size_t n = std::min(in.size() - at, s.next());
      conn.on_bytes(in.substr(at, n));
      at += n;
    }
  }
  require(conn.in_flight() == 0, "requests in flight with a node that answers at once");
  return conn.take_output();
}

void check_connection(std::string_view in) {
  const std::string whole = run_connection(in, false);
  require(run_connection(in, true) == whole, "output depends on how the input was split");
  const std::size_t owed = replies_owed(in);
  const std::size_t given = count_replies(whole);
  const std::vector<std::string> read_back = client_replies(whole, RespReplyLimits{}, false);
  require(read_back.size() == given && (read_back.empty() || !read_back.back().starts_with("error: ")),
          "the client parser reads the connection's output differently from the oracle");
  require(given == owed, "the connection gave " + std::to_string(given) + " replies for " +
                             std::to_string(owed) + " commands");

  // Completions held and returned newest first; at most two requests in flight.
  FakeNode slow;
  slow.defer = true;
  RespLimits limits;
  limits.requests_in_flight_max = 2;
  RespSession conn(slow, limits);
  std::string out;
  Splitter s(in);
  for (std::size_t at = 0; at < in.size();) {
    const std::size_t n = std::min(in.size() - at, s.next() * 4);
    if (conn.wants_input()) {
      conn.on_bytes(in.substr(at, n));
      at += n;
    } else {
      require(slow.release(), "the connection stopped reading with nothing in flight");
    }
    out += conn.take_output();
    if (conn.wants_close()) break;
  }
  while (slow.release()) out += conn.take_output();
  out += conn.take_output();
  require(conn.in_flight() == 0, "requests still in flight after the node answered all");
  require(count_replies(out) == owed, "with completions out of order, the connection gave " +
                                          std::to_string(count_replies(out)) + " replies for " +
                                          std::to_string(owed) + " commands");
}

}  // namespace
}  // namespace kv::fuzz

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace kv::fuzz;
  const std::string_view in(reinterpret_cast<const char*>(data), size);
  check_parser(in, kv::RespLimits{}, "default");
  check_parser(in, tiny_limits(), "tiny");
  check_connection(in);
  check_reply_parser(in);
  return 0;
}
