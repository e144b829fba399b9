// Tests of the Redis protocol front door. The parser is checked on its own (framing, inline
// commands, every limit named, hostile lengths, and that the way bytes are split into reads never
// changes a result), with rapidcheck round trips, and so is the client's reply parser; the
// session against a map-backed fake node whose answers can be held back and released out of
// order; and the server over real loopback sockets: exact reply bytes for a pipeline, the client
// limit, and one bad client losing only its own connection.
#include <gtest/gtest.h>
#include <rapidcheck.h>
#include <rapidcheck/gtest.h>

#include <sys/socket.h>
#include <sys/time.h>

#include <algorithm>
#include <chrono>
#include <functional>
#include <future>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include <boost/asio/connect.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>

#include "net/resp.h"
#include "net/resp_server.h"
#include "net/resp_session.h"

namespace kv {
namespace {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using Args = std::vector<std::string>;

std::string encode(const Args& args) {
  std::string out;
  append_command(out, args);
  return out;
}

// ---- Parser ----

TEST(RespParse, ArrayOfBulkStrings) {
  const std::string bytes = "*2\r\n$3\r\nGET\r\n$1\r\nk\r\n";
  const ParseResult r = parse_command(bytes + "*1\r\n$4\r\nPING\r\n", RespLimits{});
  ASSERT_EQ(r.status, ParseStatus::complete) << r.error;
  EXPECT_EQ(r.args, (Args{"GET", "k"}));
  EXPECT_EQ(r.consumed_bytes, bytes.size());  // the next command is left in place
}

TEST(RespParse, BulkStringsMayHoldAnyBytes) {
  const Args args{"SET", std::string("a\r\n\0b", 5), ""};
  const ParseResult r = parse_command(encode(args), RespLimits{});
  ASSERT_EQ(r.status, ParseStatus::complete) << r.error;
  EXPECT_EQ(r.args, args);
}

TEST(RespParse, InlineCommands) {
  struct Case {
    std::string bytes;
    Args args;
  };
  const Case cases[] = {
      {"PING\r\n", {"PING"}},
      {"set k v\n", {"set", "k", "v"}},
      {"  GET \t k  \r\n", {"GET", "k"}},
      {"SET k \"hello world\"\r\n", {"SET", "k", "hello world"}},
      {"SET k \"a\\x41\\n\\\"\"\r\n", {"SET", "k", "aA\n\""}},
      {"SET k 'it\\'s'\r\n", {"SET", "k", "it's"}},
      {"SET k \"\"\r\n", {"SET", "k", ""}},
  };
  for (const Case& c : cases) {
    const ParseResult r = parse_command(c.bytes, RespLimits{});
    ASSERT_EQ(r.status, ParseStatus::complete) << c.bytes << ": " << r.error;
    EXPECT_EQ(r.args, c.args) << c.bytes;
    EXPECT_EQ(r.consumed_bytes, c.bytes.size()) << c.bytes;
  }
}

TEST(RespParse, EmptyCommandsAreConsumedWithoutArguments) {
  for (const std::string bytes : {"\r\n", "   \n", "*0\r\n", "*-1\r\n"}) {
    const ParseResult r = parse_command(bytes, RespLimits{});
    ASSERT_EQ(r.status, ParseStatus::complete) << bytes;
    EXPECT_TRUE(r.args.empty());
    EXPECT_EQ(r.consumed_bytes, bytes.size());
  }
}

TEST(RespParse, IncompleteUntilTheLastByte) {
  const std::string bytes = encode({"SET", "key", "value"});
  for (std::size_t n = 0; n < bytes.size(); ++n) {
    EXPECT_EQ(parse_command(bytes.substr(0, n), RespLimits{}).status, ParseStatus::incomplete) << n;
  }
  EXPECT_EQ(parse_command("PING", RespLimits{}).status, ParseStatus::incomplete);
}

TEST(RespParse, MalformedInputIsAnErrorInRedisWords) {
  const std::pair<std::string, std::string> cases[] = {
      {"*abc\r\n", "Protocol error: invalid multibulk length"},
      {"*+1\r\n", "Protocol error: invalid multibulk length"},
      {"*1 \r\n", "Protocol error: invalid multibulk length"},
      {"*1\rX", "Protocol error: invalid multibulk length"},
      {"*" + std::string(40, '9'), "Protocol error: too big mbulk count string"},
      {"*1\r\n$-1\r\n", "Protocol error: invalid bulk length"},
      {"*1\r\n$x\r\n", "Protocol error: invalid bulk length"},
      {"*1\r\n$99999999999999999999\r\n", "Protocol error: invalid bulk length"},
      {"*1\r\n$" + std::string(40, '1'), "Protocol error: too big bulk count string"},
      {"*1\r\n:1\r\n", "Protocol error: expected '$', got ':'"},
      {"*1\r\n\x01", "Protocol error: expected '$', got '\\x01'"},
      {"*1\r\n$3\r\nabcd\r\n", "Protocol error: expected CRLF after a bulk string of 3 bytes"},
      {"SET k \"open\r\n", "Protocol error: unbalanced quotes in request"},
      {"SET k \"a\"b\r\n", "Protocol error: unbalanced quotes in request"},
  };
  for (const auto& [bytes, error] : cases) {
    const ParseResult r = parse_command(bytes, RespLimits{});
    EXPECT_EQ(r.status, ParseStatus::error) << bytes;
    EXPECT_EQ(r.error, error) << bytes;
  }
}

TEST(RespParse, ExceededLimitsAreNamed) {
  RespLimits limits;
  limits.array_len_max = 3;
  limits.bulk_bytes_max = 5;
  limits.inline_bytes_max = 8;
  limits.command_bytes_max = 35;
  const std::pair<std::string, std::string> cases[] = {
      {"*4\r\n", "Protocol error: multibulk length 4 exceeds array_len_max (3)"},
      {"*1\r\n$40\r\n", "Protocol error: command of at least 51 bytes exceeds command_bytes_max (35)"},
      {"GET 12345", "Protocol error: too big inline request: exceeds inline_bytes_max (8)"},
      {"GET 12345\r\n", "Protocol error: too big inline request: exceeds inline_bytes_max (8)"},
      {"*3\r\n$5\r\naaaaa\r\n$5\r\naaaaa\r\n$5\r\n",
       "Protocol error: command of at least 37 bytes exceeds command_bytes_max (35)"},
  };
  for (const auto& [bytes, error] : cases) {
    const ParseResult r = parse_command(bytes, limits);
    EXPECT_EQ(r.status, ParseStatus::error) << bytes;
    EXPECT_EQ(r.error, error) << bytes;
  }
  // At the limits exactly, all is well.
  EXPECT_EQ(parse_command(encode({"a", "bbbbb", "c"}), limits).status, ParseStatus::complete);
  EXPECT_EQ(parse_command("GET 123\r\n", limits).status, ParseStatus::complete);
}

// An argument over bulk_bytes_max (a value too large) is read and thrown away with the rest of
// its command, which is answered with an error; the next command on the connection is parsed as
// usual, also when the oversized argument arrives in pieces.
TEST(RespParse, AnArgumentOverTheLimitIsDiscardedWithItsCommand) {
  RespLimits limits;
  limits.bulk_bytes_max = 5;
  const std::string refused = encode({"SET", "k", "aaaaaaaaaa", "EX", "bbbbbbbbbbbbbbbbb"});
  const std::string next = encode({"GET", "k"});
  const std::string stream = refused + next;
  RespParser parser(limits);
  for (std::size_t cut = 4; cut < refused.size(); cut += 3) {  // from just past "*5\r\n"
    EXPECT_EQ(parser.parse(std::string_view(stream).substr(0, cut)).status, ParseStatus::incomplete) << cut;
    EXPECT_TRUE(parser.partial());
  }
  const ParseResult r = parser.parse(stream);
  ASSERT_EQ(r.status, ParseStatus::refused);
  EXPECT_EQ(r.consumed_bytes, refused.size());
  EXPECT_EQ(r.error, "argument 3 of 10 bytes exceeds bulk_bytes_max (5); the command was read and discarded");
  EXPECT_TRUE(r.args.empty());
  EXPECT_FALSE(parser.partial());
  const ParseResult after = parser.parse(std::string_view(stream).substr(r.consumed_bytes));
  ASSERT_EQ(after.status, ParseStatus::complete);
  EXPECT_EQ(after.args, (std::vector<std::string>{"GET", "k"}));
}

// A claimed length is never allocated for: with every limit out of the way, a claim of 2^62
// elements or bytes would throw from reserve(); the parser just waits for the bytes instead.
TEST(RespParse, HugeClaimedLengthsWaitWithoutAllocating) {
  const std::size_t unlimited = std::numeric_limits<std::size_t>::max();
  const RespLimits limits{.array_len_max = unlimited,
                          .bulk_bytes_max = unlimited,
                          .inline_bytes_max = unlimited,
                          .command_bytes_max = unlimited};
  for (const std::string bytes : {"*4611686018427387904\r\n",
                                  "*4611686018427387904\r\n$3\r\nGET\r\n",
                                  "*1\r\n$4611686018427387904\r\nabc"}) {
    EXPECT_EQ(parse_command(bytes, limits).status, ParseStatus::incomplete) << bytes;
  }
  EXPECT_EQ(parse_command("*1\r\n$1000000\r\nabc", RespLimits{}).status, ParseStatus::incomplete);
}

void expect_same(const ParseResult& a, const ParseResult& b, const std::string& what) {
  EXPECT_EQ(a.status, b.status) << what;
  EXPECT_EQ(a.args, b.args) << what;
  EXPECT_EQ(a.consumed_bytes, b.consumed_bytes) << what;
  EXPECT_EQ(a.error, b.error) << what;
}

// Feeds `bytes` to one parser a prefix at a time, as reads would deliver them: `step` more bytes
// per call. Returns the first result that is not incomplete (or the last one).
ParseResult parse_in_steps(const std::string& bytes, std::size_t step, const RespLimits& limits) {
  RespParser parser(limits);
  ParseResult r;
  for (std::size_t n = 0;; n = std::min(bytes.size(), n + step)) {
    r = parser.parse(std::string_view(bytes).substr(0, n));
    if (r.status != ParseStatus::incomplete || n == bytes.size()) return r;
  }
}

ParseResult parse_split_at(const std::string& bytes, std::size_t split, const RespLimits& limits) {
  RespParser parser(limits);
  ParseResult r = parser.parse(std::string_view(bytes).substr(0, split));
  if (r.status != ParseStatus::incomplete) return r;
  return parser.parse(bytes);
}

TEST(RespParse, SplittingIntoReadsNeverChangesTheResult) {
  RespLimits limits;
  limits.bulk_bytes_max = 6;
  limits.inline_bytes_max = 12;
  const std::string inputs[] = {
      encode({"SET", "key", "value"}) + "PING\r\n",
      encode({"MSET", "a", "", "b", "\r\n"}),
      "set k \"x y\"\r\nGET k\r\n",
      "PING 123456789\r\n",  // one byte over inline_bytes_max
      "*2\r\n$3\r\nGET\r\n$7\r\n",
      "*2\r\n$3\r\nGET\r\n$3\r\nabcXY",
      "*1\r\n$" + std::string(40, '7') + "\r\n",
      "*1\r\n:5\r\n",
      "*3\r\n$1\r\na\r\n$-5\r\n",
  };
  for (const std::string& bytes : inputs) {
    const ParseResult whole = parse_command(bytes, limits);
    expect_same(parse_in_steps(bytes, 1, limits), whole, "byte by byte: " + bytes);
    for (std::size_t split = 0; split <= bytes.size(); ++split) {
      expect_same(parse_split_at(bytes, split, limits), whole,
                  "split at " + std::to_string(split) + ": " + bytes);
    }
  }
}

TEST(RespEncode, RepliesAreExactRedisBytes) {
  std::string out;
  append_simple_string(out, "OK");
  append_error(out, "ERR bad\r\nthing");
  append_integer(out, -42);
  append_bulk(out, std::string("a\0b", 3));
  append_bulk(out, "");
  append_null_bulk(out);
  append_array_header(out, 2);
  append_null_array(out);
  EXPECT_EQ(out, "+OK\r\n-ERR bad  thing\r\n:-42\r\n$3\r\na" + std::string(1, '\0') +
                     "b\r\n$0\r\n\r\n$-1\r\n*2\r\n*-1\r\n");
}

RC_GTEST_PROP(RespProperty, EncodedCommandsParseBack, (const Args& tail, std::size_t split)) {
  Args args{"CMD"};
  args.insert(args.end(), tail.begin(), tail.end());
  const std::string bytes = encode(args);
  const ParseResult whole = parse_command(bytes + "*1\r\n", RespLimits{});
  RC_ASSERT(whole.status == ParseStatus::complete);
  RC_ASSERT(whole.args == args);
  RC_ASSERT(whole.consumed_bytes == bytes.size());
  const ParseResult split_result = parse_split_at(bytes, split % (bytes.size() + 1), RespLimits{});
  RC_ASSERT(split_result.status == ParseStatus::complete);
  RC_ASSERT(split_result.args == args);
}

// Arbitrary bytes: never a crash, never more consumed than given, and reading them in small
// pieces gives the same answer as reading them at once.
RC_GTEST_PROP(RespProperty, ArbitraryBytesParseTheSameInAnyPieces, (const std::string& noise)) {
  const std::string prefix = *rc::gen::elementOf(
      std::vector<std::string>{"", "*2\r\n", "*1\r\n$3\r\n", "$", "SET \""});
  const std::string bytes = prefix + noise;
  RespLimits limits;
  limits.bulk_bytes_max = 16;
  limits.inline_bytes_max = 32;
  limits.array_len_max = 8;
  const ParseResult whole = parse_command(bytes, limits);
  RC_ASSERT(whole.consumed_bytes <= bytes.size());
  if (whole.status == ParseStatus::complete) RC_ASSERT(whole.consumed_bytes > 0);
  const std::size_t step = *rc::gen::inRange<std::size_t>(1, 8);
  const ParseResult pieces = parse_in_steps(bytes, step, limits);
  RC_ASSERT(pieces.status == whole.status);
  RC_ASSERT(pieces.args == whole.args);
  RC_ASSERT(pieces.consumed_bytes == whole.consumed_bytes);
  RC_ASSERT(pieces.error == whole.error);
}

// ---- Reply parser (the client side) ----

// A reply as text, to compare whole trees: "bulk(ab)", "array[int(1),null]".
std::string show(const RespReply& r) {
  switch (r.type) {
    case RespReplyType::simple: return "simple(" + std::string(r.text) + ")";
    case RespReplyType::error: return "error(" + std::string(r.text) + ")";
    case RespReplyType::integer: return "int(" + std::to_string(r.integer) + ")";
    case RespReplyType::bulk: return "bulk(" + std::string(r.text) + ")";
    case RespReplyType::null: return "null";
    case RespReplyType::array: {
      std::string out = "array[";
      for (std::size_t i = 0; i < r.elements.size(); ++i) out += (i ? "," : "") + show(r.elements[i]);
      return out + "]";
    }
  }
  return "?";
}

struct ReplyOutcome {
  ParseStatus status = ParseStatus::incomplete;
  std::string reply;  // show() of a complete reply
  std::size_t consumed = 0;
  std::string error;
  bool operator==(const ReplyOutcome&) const = default;
};

// Feeds `bytes` to one parser as a client's reads would arrive: `step` more bytes at a time.
ReplyOutcome parse_reply_in_steps(std::string_view bytes, std::size_t step,
                                  const RespReplyLimits& limits = {}) {
  RespReplyParser parser(limits);
  ReplyOutcome out;
  for (std::size_t have = std::min(step, bytes.size());; have = std::min(have + step, bytes.size())) {
    RespReply reply;
    out.status = parser.parse(bytes.substr(0, have), reply, out.consumed, out.error);
    if (out.status == ParseStatus::complete) out.reply = show(reply);
    if (out.status != ParseStatus::incomplete || have == bytes.size()) return out;
  }
}

ReplyOutcome parse_reply_whole(std::string_view bytes, const RespReplyLimits& limits = {}) {
  return parse_reply_in_steps(bytes, std::max<std::size_t>(bytes.size(), 1), limits);
}

TEST(RespReply, EveryTypeOfReply) {
  const std::pair<std::string, std::string> cases[] = {
      {"+OK\r\n", "simple(OK)"},
      {"-QUORUM only 1 of 2\r\n", "error(QUORUM only 1 of 2)"},
      {":-42\r\n", "int(-42)"},
      {"$3\r\na\r\n\r\n", "bulk(a\r\n)"},
      {"$0\r\n\r\n", "bulk()"},
      {"$-1\r\n", "null"},
      {"*-1\r\n", "null"},
      {"*0\r\n", "array[]"},
      {"*3\r\n:1\r\n$-1\r\n*1\r\n+x\r\n", "array[int(1),null,array[simple(x)]]"},
  };
  for (const auto& [bytes, expected] : cases) {
    const ReplyOutcome r = parse_reply_whole(bytes + "+next\r\n");
    EXPECT_EQ(r.status, ParseStatus::complete) << bytes;
    EXPECT_EQ(r.reply, expected) << bytes;
    EXPECT_EQ(r.consumed, bytes.size()) << bytes;
  }
}

TEST(RespReply, WhatTheEncodersWriteParsesBack) {
  std::string out;
  append_array_header(out, 4);
  append_simple_string(out, "OK");
  append_integer(out, 7);
  append_bulk(out, std::string("a\0b", 3));
  append_null_bulk(out);
  const ReplyOutcome r = parse_reply_whole(out);
  EXPECT_EQ(r.status, ParseStatus::complete);
  EXPECT_EQ(r.reply, "array[simple(OK),int(7),bulk(" + std::string("a\0b", 3) + "),null]");
  EXPECT_EQ(r.consumed, out.size());
}

TEST(RespReply, MalformedRepliesAreErrors) {
  RespReplyLimits limits;
  limits.bulk_bytes_max = 8;
  limits.line_bytes_max = 16;
  limits.array_len_max = 2;
  limits.depth_max = 2;
  const std::pair<std::string, std::string> cases[] = {
      {"?x\r\n", "unexpected reply type byte '?'"},
      {":12x\r\n", "bad integer '12x'"},
      {":+1\r\n", "bad integer '+1'"},
      {"$-2\r\n", "bad bulk length -2"},
      {"$9\r\n", "bad bulk length 9"},
      {"$2\r\nabcd", "bulk string not followed by CRLF"},
      {"*3\r\n", "bad array length 3"},
      {"*1\r\n*1\r\n*1\r\n:1\r\n", "arrays nested deeper than 2"},
      {"+" + std::string(17, 'x'), "line longer than 16 bytes"},
      {"+" + std::string(17, 'x') + "\r\n", "line longer than 16 bytes"},
  };
  // A line of exactly the limit is fine, however its CRLF arrives.
  const std::string longest = "+" + std::string(16, 'x') + "\r\n";
  for (std::size_t step = 1; step <= longest.size(); ++step) {
    EXPECT_EQ(parse_reply_in_steps(longest, step, limits).status, ParseStatus::complete) << step;
  }
  for (const auto& [bytes, error] : cases) {
    const ReplyOutcome r = parse_reply_whole(bytes, limits);
    EXPECT_EQ(r.status, ParseStatus::error) << bytes;
    EXPECT_EQ(r.error, error) << bytes;
  }
}

TEST(RespReply, IncompleteUntilTheLastByte) {
  const std::string bytes = "*2\r\n$5\r\nhello\r\n:3\r\n";
  for (std::size_t n = 0; n < bytes.size(); ++n) {
    EXPECT_EQ(parse_reply_whole(bytes.substr(0, n)).status, ParseStatus::incomplete) << n;
  }
  EXPECT_EQ(parse_reply_whole(bytes).reply, "array[bulk(hello),int(3)]");
}

TEST(RespReply, ALargeBulkInManyReads) {
  const std::string bytes = "$100000\r\n" + std::string(100000, 'v') + "\r\n";
  RespReplyParser parser;
  RespReply reply;
  std::size_t consumed = 0;
  std::string error;
  EXPECT_EQ(parser.parse(std::string_view(bytes).substr(0, 20), reply, consumed, error),
            ParseStatus::incomplete);
  EXPECT_EQ(parser.parse(std::string_view(bytes).substr(0, 50000), reply, consumed, error),
            ParseStatus::incomplete);
  EXPECT_EQ(parser.parse(bytes, reply, consumed, error), ParseStatus::complete);
  EXPECT_EQ(consumed, bytes.size());
  EXPECT_EQ(reply.text.size(), 100000u);
  // And it starts afresh for the next reply.
  EXPECT_EQ(parser.parse("+OK\r\n", reply, consumed, error), ParseStatus::complete);
  EXPECT_EQ(show(reply), "simple(OK)");
}

TEST(RespReply, SplittingIntoReadsNeverChangesTheResult) {
  RespReplyLimits limits;
  limits.bulk_bytes_max = 8;
  limits.line_bytes_max = 4;
  const std::string inputs[] = {
      "*2\r\n$5\r\nhello\r\n:3\r\n",
      "+abcd\r\n",   // a line of exactly line_bytes_max, its CR arriving before its LF
      "+abcde\r\n",  // one byte over
      "\r2*\n$3\r\nSET\r\n",  // a CR as the type byte (found by fuzz_resp)
      "$2\r\nabcd",
      "*1\r\n$9\r\n",
  };
  for (const std::string& bytes : inputs) {
    const ReplyOutcome whole = parse_reply_whole(bytes, limits);
    for (std::size_t step = 1; step <= bytes.size(); ++step) {
      EXPECT_EQ(parse_reply_in_steps(bytes, step, limits), whole) << "step " << step << ": " << bytes;
    }
  }
}

// Arbitrary bytes after a plausible start: never more consumed than given, and the answer is the
// same however the bytes arrive.
RC_GTEST_PROP(RespProperty, RepliesParseTheSameInAnyPieces, (const std::string& noise)) {
  const std::string prefix = *rc::gen::elementOf(
      std::vector<std::string>{"", "*2\r\n", "*1\r\n$3\r\n", "$", "$4\r\n", ":", "+"});
  const std::string bytes = prefix + noise;
  RespReplyLimits limits;
  limits.bulk_bytes_max = 16;
  limits.line_bytes_max = 24;
  limits.array_len_max = 8;
  limits.depth_max = 3;
  const ReplyOutcome whole = parse_reply_whole(bytes, limits);
  RC_ASSERT(whole.consumed <= bytes.size());
  const std::size_t step = *rc::gen::inRange<std::size_t>(1, 8);
  RC_ASSERT(parse_reply_in_steps(bytes, step, limits) == whole);
}

// ---- A fake node ----

// Keeps records in a map. Answers at once, or posts its answers to an io_context (as the real
// node's completions arrive later on the loop), or with `defer` holds them until the test
// releases them, in any order. The answer is computed when released, as a real store would.
class MapNode final : public NodeApi {
 public:
  void submit(ClientRequest request, std::function<void(const ClientReply&)> done) override {
    request.id = ++next_id;
    if (defer) {
      held.push_back({std::move(request), std::move(done)});
    } else if (post_to != nullptr) {
      asio::post(*post_to, [this, request = std::move(request), done = std::move(done)] {
        done(apply(request));
      });
    } else {
      done(apply(request));
    }
  }
  bool ready() const override { return true; }
  std::string metrics_text() const override { return ""; }
  std::string cluster_json() const override { return "{}"; }
  std::string info_text() const override { return "# Server\r\nrole:node\r\n"; }

  ClientReply apply(const ClientRequest& request) {
    ClientReply reply{.id = request.id};
    if (auto f = failing.find(request.key); f != failing.end()) {
      reply.error = make_error_code(f->second.first);
      reply.detail = f->second.second;
      return reply;
    }
    if (request.op == OpType::get) {
      if (auto it = records.find(request.key); it != records.end()) reply.record = it->second;
      return reply;
    }
    reply.version = Version{1000 + request.id, 0, 1};
    const bool del = request.op == OpType::del;
    records[request.key] = Record{reply.version, del, del ? std::string() : request.value};
    return reply;
  }

  // Answers the held request at `index` (0 = the oldest still held).
  void release(std::size_t index) {
    auto [request, done] = std::move(held.at(index));
    held.erase(held.begin() + static_cast<std::ptrdiff_t>(index));
    done(apply(request));
  }

  std::map<std::string, Record> records;
  std::map<std::string, std::pair<Errc, std::string>> failing;  // key -> error for every op
  std::vector<std::pair<ClientRequest, std::function<void(const ClientReply&)>>> held;
  asio::io_context* post_to = nullptr;
  std::uint64_t next_id = 0;
  bool defer = false;
};

// ---- Session ----

class RespSessionTest : public ::testing::Test {
 protected:
  // Sends bytes and returns everything output since the last call.
  std::string send(std::string_view bytes) {
    session.on_bytes(bytes);
    return session.take_output();
  }

  MapNode node;
  RespLimits limits;
  RespSession session{node, limits};
};

TEST_F(RespSessionTest, GetSetDelLikeRedis) {
  EXPECT_EQ(send(encode({"GET", "k"})), "$-1\r\n");
  EXPECT_EQ(send(encode({"SET", "k", "v1"})), "+OK\r\n");
  EXPECT_EQ(send(encode({"get", "k"})), "$2\r\nv1\r\n");
  EXPECT_EQ(send(encode({"DEL", "k", "k", "other"})), ":1\r\n");
  EXPECT_EQ(send(encode({"GET", "k"})), "$-1\r\n");  // a tombstone reads as absent
  EXPECT_EQ(send(encode({"DEL", "k"})), ":0\r\n");
  EXPECT_EQ(send("SET k2 \"two words\"\r\nGeT k2\r\n"), "+OK\r\n$9\r\ntwo words\r\n");
}

TEST_F(RespSessionTest, PipelinedRepliesLeaveInRequestOrder) {
  node.records["a"] = Record{Version{1, 0, 1}, false, "A"};
  node.records["c"] = Record{Version{1, 0, 1}, false, "C"};
  node.defer = true;
  EXPECT_EQ(send(encode({"GET", "a"}) + encode({"GET", "b"}) + "PING\r\n" + encode({"GET", "c"})),
            "");
  ASSERT_EQ(node.held.size(), 3u);
  EXPECT_EQ(session.in_flight(), 3u);
  node.release(2);  // c: ready, but a and b are still owed before it
  node.release(1);  // b
  EXPECT_EQ(session.take_output(), "");
  node.release(0);  // a: now everything is ready, in order
  EXPECT_EQ(session.take_output(), "$1\r\nA\r\n$-1\r\n+PONG\r\n$1\r\nC\r\n");
  EXPECT_EQ(session.in_flight(), 0u);
}

TEST_F(RespSessionTest, PipelinedCommandsOnOneKeyRunInOrder) {
  // SET k a; GET k; DEL k; GET k in one pipeline must answer OK, a, 1, nil as Redis does, even
  // though the node would happily run them all at once.
  node.defer = true;
  EXPECT_EQ(send(encode({"SET", "k", "a"}) + encode({"GET", "k"}) + encode({"DEL", "k"}) +
                 encode({"GET", "k"}) + encode({"GET", "other"})),
            "");
  ASSERT_EQ(node.held.size(), 1u);  // the SET; the GET waits for it, and everything after
  node.release(0);
  ASSERT_EQ(node.held.size(), 1u);  // the GET
  node.release(0);
  while (!node.held.empty()) node.release(0);  // DEL's read and delete, then the two GETs
  EXPECT_EQ(session.take_output(), "+OK\r\n$1\r\na\r\n:1\r\n$-1\r\n$-1\r\n");
}

TEST_F(RespSessionTest, PipelinedReadsOfOneKeyOverlap) {
  node.defer = true;
  EXPECT_EQ(send(encode({"GET", "k"}) + encode({"GET", "k"}) + encode({"EXISTS", "k"})), "");
  EXPECT_EQ(node.held.size(), 3u);
  while (!node.held.empty()) node.release(0);
  EXPECT_EQ(session.take_output(), "$-1\r\n$-1\r\n:0\r\n");
}

TEST_F(RespSessionTest, OutputHookFiresOnLateCompletionsOnly) {
  int calls = 0;
  session.set_on_output([&] { ++calls; });
  EXPECT_EQ(send("PING\r\n"), "+PONG\r\n");
  EXPECT_EQ(calls, 0);  // the caller of on_bytes takes the output itself
  node.defer = true;
  EXPECT_EQ(send(encode({"GET", "x"})), "");
  node.release(0);
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(session.take_output(), "$-1\r\n");
}

TEST_F(RespSessionTest, InFlightLimitPausesParsingWithoutDropping) {
  limits.requests_in_flight_max = 2;
  RespSession small(node, limits);
  node.defer = true;
  std::string pipeline;
  for (int i = 0; i < 5; ++i) {
    pipeline += encode({"ECHO", std::to_string(i)}) + encode({"GET", "k"});
  }
  small.on_bytes(pipeline);
  EXPECT_EQ(node.held.size(), 2u);
  EXPECT_FALSE(small.wants_input());
  EXPECT_EQ(small.take_output(), "$1\r\n0\r\n");
  std::string out;
  while (!node.held.empty()) {
    EXPECT_LE(node.held.size(), 2u);
    node.release(0);
    out += small.take_output();
  }
  EXPECT_TRUE(small.wants_input());
  EXPECT_EQ(out, "$-1\r\n$1\r\n1\r\n$-1\r\n$1\r\n2\r\n$-1\r\n$1\r\n3\r\n$-1\r\n$1\r\n4\r\n$-1\r\n");
}

TEST_F(RespSessionTest, CommandsNeedingMoreThanTheInFlightLimitAreRefused) {
  limits.requests_in_flight_max = 2;
  RespSession small(node, limits);
  small.on_bytes(encode({"MGET", "a", "b", "c"}));
  EXPECT_EQ(small.take_output(),
            "-ERR too many keys in one command: 3 exceeds "
            "requests_in_flight_per_connection_max (2)\r\n");
}

TEST_F(RespSessionTest, ProtocolErrorIsAnsweredAfterEarlierRepliesThenCloses) {
  node.defer = true;
  EXPECT_EQ(send(encode({"GET", "k"}) + "PING\r\n*1\r\n$x\r\nPING\r\n"), "");
  EXPECT_FALSE(session.wants_close());  // the GET is still owed
  EXPECT_FALSE(session.wants_input());
  node.release(0);
  EXPECT_EQ(session.take_output(),
            "$-1\r\n+PONG\r\n-ERR Protocol error: invalid bulk length\r\n");
  EXPECT_TRUE(session.wants_close());
  EXPECT_EQ(session.close_reason(), "Protocol error: invalid bulk length");
  EXPECT_EQ(send("PING\r\n"), "");  // nothing after the error is read
}

TEST_F(RespSessionTest, QuitAnswersOkThenCloses) {
  EXPECT_EQ(send("PING\r\nQUIT\r\nPING\r\n"), "+PONG\r\n+OK\r\n");
  EXPECT_TRUE(session.wants_close());
  EXPECT_EQ(session.close_reason(), "");
}

TEST_F(RespSessionTest, UnknownCommandsAndWrongArityInRedisWords) {
  EXPECT_EQ(send("FOO a b\r\n"),
            "-ERR unknown command 'FOO', with args beginning with: 'a' 'b' \r\n");
  EXPECT_EQ(send("BAR\r\n"), "-ERR unknown command 'BAR', with args beginning with: \r\n");
  EXPECT_EQ(send("GET\r\n"), "-ERR wrong number of arguments for 'get' command\r\n");
  EXPECT_EQ(send("get a b\r\n"), "-ERR wrong number of arguments for 'get' command\r\n");
  EXPECT_EQ(send("MSET a 1 b\r\n"), "-ERR wrong number of arguments for 'mset' command\r\n");
  EXPECT_EQ(send("PING a b\r\n"), "-ERR wrong number of arguments for 'ping' command\r\n");
  EXPECT_FALSE(session.wants_close());
}

TEST_F(RespSessionTest, SetOptions) {
  EXPECT_EQ(send("SET k v1 XX\r\n"), "$-1\r\n");  // absent: not written
  EXPECT_EQ(send("GET k\r\n"), "$-1\r\n");
  EXPECT_EQ(send("SET k v1 NX\r\n"), "+OK\r\n");
  EXPECT_EQ(send("SET k v2 nx\r\n"), "$-1\r\n");  // present: not written
  EXPECT_EQ(send("SET k v3 XX GET\r\n"), "$2\r\nv1\r\n");
  EXPECT_EQ(send("SET k v4 GET\r\n"), "$2\r\nv3\r\n");
  EXPECT_EQ(send("SET k v5 NX GET\r\n"), "$2\r\nv4\r\n");  // old value, and not written
  EXPECT_EQ(send("GET k\r\n"), "$2\r\nv4\r\n");
  EXPECT_EQ(send("SET n v GET\r\n"), "$-1\r\n");
  EXPECT_EQ(send("GET n\r\n"), "$1\r\nv\r\n");
  EXPECT_EQ(send("SET k v NX XX\r\n"), "-ERR syntax error\r\n");
  EXPECT_EQ(send("SET k v EX\r\n"), "-ERR syntax error\r\n");
  EXPECT_EQ(send("SET k v FOO\r\n"), "-ERR syntax error\r\n");
  EXPECT_EQ(send("SET k v EX ten\r\n"), "-ERR value is not an integer or out of range\r\n");
  EXPECT_EQ(send("SET k v PX 0\r\n"), "-ERR invalid expire time in 'set' command\r\n");
  EXPECT_EQ(send("SET k v EX 10\r\n"), "-ERR SET with EX/PX is not supported yet\r\n");
  EXPECT_EQ(send("SET k v KEEPTTL\r\n"), "-ERR SET with EX/PX is not supported yet\r\n");
  EXPECT_EQ(send("GET k\r\n"), "$2\r\nv4\r\n");
}

TEST_F(RespSessionTest, MultiKeyCommands) {
  EXPECT_EQ(send(encode({"MSET", "a", "1", "b", "2", "a", "3"})), "+OK\r\n");
  EXPECT_EQ(send(encode({"MGET", "a", "b", "c"})), "*3\r\n$1\r\n3\r\n$1\r\n2\r\n$-1\r\n");
  EXPECT_EQ(send(encode({"EXISTS", "a", "b", "c", "a"})), ":3\r\n");
  EXPECT_EQ(send(encode({"DEL", "a", "c", "a"})), ":1\r\n");
  EXPECT_EQ(send(encode({"EXISTS", "a", "b"})), ":1\r\n");
}

TEST_F(RespSessionTest, StoreErrorsKeepTheCoreDetail) {
  node.failing["t"] = {Errc::timeout,
                       "write quorum 2 not reached: 1 of 3 replicas answered within 1000 ms; "
                       "the write may or may not be applied"};
  node.failing["q"] = {Errc::quorum_unavailable,
                       "nothing written: a majority is needed to order the write, 1 of 3"};
  node.failing["i"] = {Errc::invalid_argument, "key must be 1 to 8192 bytes (key_bytes_max)"};
  node.failing["o"] = {Errc::overloaded, "requests_in_flight_max (10000) reached"};
  EXPECT_EQ(send("SET t v\r\n"),
            "-TIMEOUT write quorum 2 not reached: 1 of 3 replicas answered within 1000 ms; the "
            "write may or may not be applied\r\n");
  EXPECT_EQ(send("SET q v\r\n"),
            "-QUORUM nothing written: a majority is needed to order the write, 1 of 3\r\n");
  EXPECT_EQ(send("GET i\r\n"),
            "-ERR invalid argument: key must be 1 to 8192 bytes (key_bytes_max)\r\n");
  EXPECT_EQ(send("GET o\r\n"), "-BUSY overloaded: requests_in_flight_max (10000) reached\r\n");
  // Several failures: the earliest key's error, whatever order they came back in.
  EXPECT_EQ(send("MGET ok q t\r\n"),
            "-QUORUM nothing written: a majority is needed to order the write, 1 of 3\r\n");
  EXPECT_EQ(send("DEL t\r\n").substr(0, 9), "-TIMEOUT ");
}

TEST_F(RespSessionTest, WhatRedisCliAndRedisBenchmarkAskAtStart) {
  EXPECT_EQ(send(encode({"COMMAND", "DOCS"})), "*0\r\n");
  EXPECT_EQ(send("COMMAND\r\n"), "*0\r\n");
  EXPECT_EQ(send("COMMAND COUNT\r\n"), ":16\r\n");
  EXPECT_EQ(send("COMMAND FOO\r\n"), "-ERR unknown subcommand 'FOO'. Try COMMAND HELP.\r\n");
  EXPECT_EQ(send(encode({"CONFIG", "GET", "save"})), "*2\r\n$4\r\nsave\r\n$0\r\n\r\n");
  EXPECT_EQ(send(encode({"CONFIG", "GET", "appendonly"})),
            "*2\r\n$10\r\nappendonly\r\n$2\r\nno\r\n");
  EXPECT_EQ(send(encode({"CONFIG", "GET", "maxmemory"})), "*0\r\n");
  EXPECT_EQ(send(encode({"CONFIG", "GET", "APPEND*"})),
            "*2\r\n$10\r\nappendonly\r\n$2\r\nno\r\n");
  EXPECT_EQ(send("CONFIG GET\r\n"), "-ERR wrong number of arguments for 'config|get' command\r\n");
  EXPECT_EQ(send("SELECT 0\r\n"), "+OK\r\n");
  EXPECT_EQ(send("SELECT 1\r\n"), "-ERR DB index is out of range\r\n");
  EXPECT_EQ(send("CLIENT SETNAME bench\r\nCLIENT GETNAME\r\n"), "+OK\r\n$5\r\nbench\r\n");
  EXPECT_EQ(send("CLIENT SETINFO lib-name redis-py\r\n"), "+OK\r\n");
  EXPECT_EQ(send("ECHO hi\r\nPING hello\r\n"), "$2\r\nhi\r\n$5\r\nhello\r\n");
  EXPECT_EQ(send("INFO\r\n"), "$21\r\n# Server\r\nrole:node\r\n\r\n");
}

TEST_F(RespSessionTest, HelloSpeaksResp2Only) {
  session.set_client_id(7);
  const std::string hello =
      "*14\r\n$6\r\nserver\r\n$2\r\nkv\r\n$7\r\nversion\r\n$5\r\n7.0.0\r\n$5\r\nproto\r\n:2\r\n"
      "$2\r\nid\r\n:7\r\n$4\r\nmode\r\n$10\r\nstandalone\r\n$4\r\nrole\r\n$6\r\nmaster\r\n"
      "$7\r\nmodules\r\n*0\r\n";
  EXPECT_EQ(send("HELLO\r\n"), hello);
  EXPECT_EQ(send("HELLO 2 SETNAME app\r\n"), hello);
  EXPECT_EQ(send("HELLO 3\r\n"), "-NOPROTO sorry, this protocol version is not supported\r\n");
  EXPECT_EQ(send("HELLO x\r\n"), "-ERR Protocol version is not an integer or out of range\r\n");
  EXPECT_EQ(send("CLIENT GETNAME\r\n"), "$3\r\napp\r\n");
}

TEST(RespSession, LateCompletionsAfterTheSessionIsGoneAreIgnored) {
  MapNode node;
  node.defer = true;
  auto session = std::make_unique<RespSession>(node, RespLimits{});
  session->on_bytes(encode({"GET", "a"}) + encode({"DEL", "b", "c"}));
  ASSERT_EQ(node.held.size(), 3u);
  session.reset();
  while (!node.held.empty()) node.release(0);  // must not touch the freed session
}

// ---- Server over loopback ----

// A client on its own io_context; every read gives up after a few seconds, so that a broken
// server fails the test instead of hanging it.
class Client {
 public:
  explicit Client(std::uint16_t port) : socket_(io_) {
    socket_.connect(tcp::endpoint(asio::ip::address_v4::loopback(), port));
  }
  void send(std::string_view bytes) { asio::write(socket_, asio::buffer(bytes)); }
  void finish_sending() { socket_.shutdown(tcp::socket::shutdown_send); }

  std::string read(std::size_t n) {
    std::string out(n, '\0');
    std::size_t got = 0;
    asio::async_read(socket_, asio::buffer(out),
                     [&](const boost::system::error_code&, std::size_t size) { got = size; });
    run();
    out.resize(got);
    return out;
  }
  // Everything until the server closes (or the time runs out: then closed() is false).
  std::string read_to_end() {
    std::string out;
    closed_ = false;
    asio::async_read(socket_, asio::dynamic_buffer(out),
                     [&](const boost::system::error_code& ec, std::size_t) {
                       closed_ = ec == asio::error::eof;
                     });
    run();
    return out;
  }
  bool closed() const { return closed_; }

 private:
  void run() {
    io_.restart();
    if (io_.run_for(std::chrono::seconds(5)) == 0 || !io_.stopped()) {
      socket_.cancel();
      io_.restart();
      io_.run();
    }
  }

  asio::io_context io_;
  tcp::socket socket_;
  bool closed_ = false;
};

class RespServerTest : public ::testing::Test {
 protected:
  void start(RespServerOptions options) {
    if (node_.post_to == nullptr && !node_.defer) node_.post_to = &io_;
    server_ = std::make_unique<RespServer>(io_, node_, options);
    ASSERT_FALSE(server_->listen(tcp::endpoint(asio::ip::address_v4::loopback(), 0)));
    thread_ = std::thread([this] { io_.run(); });
  }
  void TearDown() override {
    asio::post(io_, [this] {
      if (server_) server_->stop();
    });
    work_.reset();
    if (thread_.joinable()) thread_.join();
  }
  // Runs `f` on the loop thread, where the server and the node live, and returns its result.
  template <class F>
  auto on_loop(F f) {
    std::promise<decltype(f())> result;
    asio::post(io_, [&] { result.set_value(f()); });
    return result.get_future().get();
  }
  std::size_t wait_for_connections(std::size_t n) {
    const auto count = [this] { return on_loop([this] { return server_->connections(); }); };
    for (int i = 0; i < 500 && count() != n; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return count();
  }

  asio::io_context io_;
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> work_{
      asio::make_work_guard(io_)};
  MapNode node_;
  std::unique_ptr<RespServer> server_;
  std::thread thread_;
};

TEST_F(RespServerTest, PipelinedCommandsGetExactRepliesInOrder) {
  start(RespServerOptions{});
  Client client(server_->port());
  client.send(encode({"SET", "k", "v"}) + encode({"GET", "k"}) + "PING\r\n" +
              encode({"GET", "missing"}));
  const std::string expected = "+OK\r\n$1\r\nv\r\n+PONG\r\n$-1\r\n";
  EXPECT_EQ(client.read(expected.size()), expected);
  client.send("QUIT\r\n");
  EXPECT_EQ(client.read_to_end(), "+OK\r\n");
  EXPECT_TRUE(client.closed());
}

TEST_F(RespServerTest, RefusesClientsBeyondConnectionsMax) {
  start(RespServerOptions{.connections_max = 1});
  Client first(server_->port());
  first.send("PING\r\n");
  EXPECT_EQ(first.read(7), "+PONG\r\n");
  Client second(server_->port());
  EXPECT_EQ(second.read_to_end(), "-ERR max number of clients reached\r\n");
  EXPECT_TRUE(second.closed());
  first.send("PING\r\n");
  EXPECT_EQ(first.read(7), "+PONG\r\n");
}

TEST_F(RespServerTest, MalformedRequestClosesOnlyThatConnection) {
  start(RespServerOptions{});
  Client good(server_->port());
  Client bad(server_->port());
  good.send("SET a 1\r\n");
  EXPECT_EQ(good.read(5), "+OK\r\n");
  bad.send("PING\r\n*1\r\n$x\r\n");
  EXPECT_EQ(bad.read_to_end(), "+PONG\r\n-ERR Protocol error: invalid bulk length\r\n");
  EXPECT_TRUE(bad.closed());
  EXPECT_EQ(wait_for_connections(1), 1u);
  good.send("GET a\r\n");
  EXPECT_EQ(good.read(7), "$1\r\n1\r\n");
}

TEST_F(RespServerTest, HalfSentCommandTimesOut) {
  start(RespServerOptions{.read_timeout = std::chrono::milliseconds(100)});
  Client slow(server_->port());
  const auto begin = std::chrono::steady_clock::now();
  slow.send("*2\r\n$3\r\nGET");
  EXPECT_EQ(slow.read_to_end(), "");
  EXPECT_TRUE(slow.closed());
  EXPECT_LT(std::chrono::steady_clock::now() - begin, std::chrono::seconds(3));
}

TEST_F(RespServerTest, IdleTimeoutSparesClientsWaitingForReplies) {
  node_.defer = true;
  start(RespServerOptions{.idle_timeout = std::chrono::milliseconds(200)});
  Client waiting(server_->port());
  waiting.send("GET k\r\n");
  std::this_thread::sleep_for(std::chrono::milliseconds(500));  // over twice the idle timeout
  EXPECT_EQ(on_loop([this] { return node_.held.size(); }), 1u);
  on_loop([this] {
    node_.release(0);
    return 0;
  });
  EXPECT_EQ(waiting.read(5), "$-1\r\n");
  EXPECT_EQ(waiting.read_to_end(), "");  // and then, idle, it is closed
  EXPECT_TRUE(waiting.closed());
}

TEST_F(RespServerTest, ClientThatHalfClosesStillGetsItsReplies) {
  start(RespServerOptions{});
  Client client(server_->port());
  client.send("SET a 1\r\nGET a\r\n");
  client.finish_sending();
  EXPECT_EQ(client.read_to_end(), "+OK\r\n$1\r\n1\r\n");
  EXPECT_TRUE(client.closed());
}

}  // namespace
}  // namespace kv
