// The Redis protocol (RESP2) codec: an incremental parser of client commands and the encoders of
// replies for the server; the encoder of commands and an incremental parser of replies for
// clients (kvbench). Pure functions over bytes, no Asio, so that the parsers can be fuzzed on
// their own.
//
// A client sends either an array of bulk strings (`*2\r\n$3\r\nGET\r\n$1\r\nk\r\n`, what every
// client library sends) or an inline command (`PING\r\n`, space-separated with Redis's quoting
// rules, what telnet users and redis-benchmark's inline tests send). Every length a client
// claims is checked against a named limit before anything is allocated for it, and nothing is
// copied until all of its bytes have arrived: a hostile length costs nothing but the error.
#pragma once

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace kv {

struct RespLimits {
  // Arguments in one command; Redis's own limit on a multibulk length.
  std::size_t array_len_max = 1024 * 1024;
  // One argument. Above the core's value_bytes_max (1 MiB) on purpose: a value that is too
  // large then reaches the core and is refused with value_bytes_max named. A longer argument is
  // read and thrown away with the rest of its command (up to command_bytes_max, below), and the
  // command is answered with an error naming this limit; the connection stays open, so a client
  // still sending the value reads the error instead of a broken pipe.
  std::size_t bulk_bytes_max = (1u << 20) + (64u << 10);
  // One inline command line: the bytes before its '\n' (a '\r' before it counts).
  std::size_t inline_bytes_max = 64u << 10;
  // One whole command, headers included (bounds what a single MSET, or a command being thrown
  // away, can make us buffer). A command past it closes the connection.
  std::size_t command_bytes_max = 64u << 20;
  // Node requests outstanding per connection; parsing pauses while they are all in flight.
  // Named requests_in_flight_per_connection_max in errors, after its kvnode flag.
  std::size_t requests_in_flight_max = 1024;
  // Reply bytes waiting for a slow reader; reading pauses above this (see RespServer).
  std::size_t output_bytes_max = 64u << 20;
};

enum class ParseStatus : std::uint8_t {
  complete,    // args and consumed_bytes are set
  incomplete,  // more bytes are needed; nothing is consumed
  error,       // error is set; the connection cannot be resynchronised and should be closed
  refused,     // the command was read whole and thrown away (an argument over bulk_bytes_max):
               // error says why, consumed_bytes is set; answer the error and go on
};

struct ParseResult {
  ParseStatus status = ParseStatus::incomplete;
  // May be empty for a complete command: an empty inline line or `*0\r\n`, which Redis skips.
  std::vector<std::string> args;
  std::size_t consumed_bytes = 0;
  std::string error;  // Redis style, e.g. "Protocol error: invalid bulk length"
};

// Parses one command from the front of a buffer, remembering its progress between calls so
// that a command arriving in many reads is scanned once, not once per read.
class RespParser {
 public:
  explicit RespParser(const RespLimits& limits) : limits_(limits) {}

  // REQUIRES: `buffer` starts at the first byte of the command being parsed and holds the bytes
  // of the previous call (possibly more), until a call returns complete or error. After that the
  // parser starts afresh, at the first byte after the consumed ones.
  ParseResult parse(std::string_view buffer);

  // True while some bytes of a command have been seen but not the whole command (or a command
  // being thrown away has not all arrived).
  bool partial() const { return in_array_; }

 private:
  ParseResult parse_array(std::string_view buffer);
  ParseResult parse_inline(std::string_view buffer) const;
  ParseResult fail(std::string message);

  RespLimits limits_;
  bool in_array_ = false;
  std::size_t elements_ = 0;  // the array length the client claimed
  std::size_t pos_ = 0;       // offset of the next element's `$` header
  std::vector<std::string> args_;
  std::size_t elements_seen_ = 0;  // the elements parsed so far (args_ holds them unless refused)
  std::string refused_;            // why the command is being thrown away, once it is
};

// One-shot parse of the front of `buffer` (a fresh RespParser): for fuzzing and tests.
ParseResult parse_command(std::string_view buffer, const RespLimits& limits);

// ---- Reply encoders (RESP2). Each appends to `out`. ----

// Simple strings and errors are single lines: CR and LF in `text` are turned into spaces, as
// Redis does, so a detail message can never break the framing.
void append_simple_string(std::string& out, std::string_view text);
// `text` starts with the error code, e.g. "ERR unknown command" or "QUORUM nothing written".
void append_error(std::string& out, std::string_view text);
void append_integer(std::string& out, std::int64_t value);
void append_bulk(std::string& out, std::string_view bytes);
void append_null_bulk(std::string& out);
void append_array_header(std::string& out, std::size_t count);
void append_null_array(std::string& out);

// A command as a client library sends it: an array of bulk strings.
void append_command(std::string& out, const std::vector<std::string>& args);
// The same without copying the arguments, for clients that send many: {"GET", key}.
void append_command(std::string& out, std::initializer_list<std::string_view> args);

// ---- Replies, as a client reads them (RESP2: what a client gets without HELLO 3) ----

enum class RespReplyType : std::uint8_t { simple, error, integer, bulk, null, array };

struct RespReply {
  RespReplyType type = RespReplyType::null;
  std::string_view text;  // simple, error, bulk: points into the parsed buffer
  std::int64_t integer = 0;
  std::vector<RespReply> elements;
};

struct RespReplyLimits {
  std::size_t bulk_bytes_max = 64u << 20;  // one bulk string
  std::size_t line_bytes_max = 64u << 10;  // a status, error or length line
  std::size_t array_len_max = 1u << 20;    // elements of one array
  std::size_t depth_max = 8;               // arrays within arrays
};

// Parses one reply from the front of a buffer. What has been seen of an incomplete reply is
// remembered as the number of bytes it needs at least, so that a large bulk string arriving in
// many reads is not rescanned on every read; its headers, a few bytes, are rescanned once it may
// be complete. Lengths are checked against the limits before anything waits for their bytes.
class RespReplyParser {
 public:
  explicit RespReplyParser(const RespReplyLimits& limits = {}) : limits_(limits) {}

  // REQUIRES: `buffer` starts at the first byte of the reply being parsed and holds the bytes of
  // the previous call (possibly more), until a call returns complete or error.
  // complete: `out` holds the reply, its views valid while `buffer`'s bytes are, and `consumed`
  // its length; the parser starts afresh at the next byte. incomplete: more bytes are needed.
  // error: `error` says why; the stream cannot be resynchronised.
  ParseStatus parse(std::string_view buffer, RespReply& out, std::size_t& consumed,
                    std::string& error);

  const RespReplyLimits& limits() const { return limits_; }

 private:
  RespReplyLimits limits_;
  std::size_t bytes_needed_ = 0;  // an incomplete reply is at least this long
};

}  // namespace kv
