// The RESP2 parser and reply encoders. Error texts follow Redis's own where Redis has one (client
// libraries and people recognise them); a limit of ours is named in the error with its value.
//
// The parser's result must not depend on how the bytes were split into reads (the tests feed
// every split): every check is made on a whole header line or a whole element, never on "what
// has arrived so far", except that a line which cannot end within its limit fails as soon as the
// limit is passed.
#include "net/resp.h"

#include <cstring>
#include <optional>
#include <utility>

#include "core/parse.h"

namespace kv {
namespace {

// A `*<count>` or `$<length>` line: 20 digits and a sign are plenty. Its number is read with
// parse_integer<std::int64_t>: an optional '-' (Redis takes "*-1" as a null array), then digits
// only, no spaces, no '+'.
constexpr std::size_t length_line_bytes_max = 32;

// Where a header line that starts at `start` ends: the offset of its '\r' (followed by '\n').
struct Line {
  enum Kind : std::uint8_t { found, incomplete, too_long, bad_ending } kind;
  std::size_t cr = 0;
};

Line find_line(std::string_view buf, std::size_t start) {
  const std::size_t avail = buf.size() - start;
  const std::size_t scan = std::min(avail, length_line_bytes_max + 1);
  const void* hit = std::memchr(buf.data() + start, '\r', scan);
  if (hit == nullptr) return {avail > length_line_bytes_max ? Line::too_long : Line::incomplete};
  const std::size_t cr = static_cast<const char*>(hit) - buf.data();
  if (cr + 1 >= buf.size()) return {Line::incomplete};
  if (buf[cr + 1] != '\n') return {Line::bad_ending};
  return {Line::found, cr};
}

std::string printable(char c) {
  if (c >= 0x20 && c < 0x7f) return std::string(1, c);
  constexpr char hex[] = "0123456789abcdef";
  const auto u = static_cast<unsigned char>(c);
  return std::string("\\x") + hex[u >> 4] + hex[u & 0xf];
}

std::string exceeds(std::string_view what, std::size_t got, std::string_view limit,
                    std::size_t max) {
  return "Protocol error: " + std::string(what) + " " + std::to_string(got) + " exceeds " +
         std::string(limit) + " (" + std::to_string(max) + ")";
}

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

char unescape(char c) {
  switch (c) {
    case 'n': return '\n';
    case 'r': return '\r';
    case 't': return '\t';
    case 'b': return '\b';
    case 'a': return '\a';
    default: return c;
  }
}

bool is_separator(char c) { return c == ' ' || c == '\n' || c == '\r' || c == '\t' || c == '\0'; }
bool is_space(char c) { return c == ' ' || (c >= '\t' && c <= '\r'); }

// One quoted token starting after its opening quote at `i`; advances `i` past the closing quote.
// Double quotes take Redis's escapes (\n \r \t \b \a \xHH, any other char as itself); single
// quotes take only \'. A closing quote must be followed by a space or the end of the line.
bool read_quoted(std::string_view line, std::size_t& i, char quote, std::string& arg) {
  while (i < line.size()) {
    const char c = line[i];
    if (c == '\\' && i + 1 < line.size()) {
      const char n = line[i + 1];
      if (quote == '"' && n == 'x' && i + 3 < line.size() && hex_digit(line[i + 2]) >= 0 &&
          hex_digit(line[i + 3]) >= 0) {
        arg.push_back(static_cast<char>(hex_digit(line[i + 2]) * 16 + hex_digit(line[i + 3])));
        i += 4;
        continue;
      }
      if (quote == '"' || n == '\'') {
        arg.push_back(quote == '"' ? unescape(n) : n);
        i += 2;
        continue;
      }
    }
    ++i;
    if (c == quote) return i == line.size() || is_space(line[i]);
    arg.push_back(c);
  }
  return false;  // no closing quote
}

// Redis's sdssplitargs: whitespace-separated tokens, quotes may start anywhere in a token.
std::optional<std::vector<std::string>> split_inline(std::string_view line) {
  // Redis splits a C string, so a NUL ends the line there. It must: a NUL ends a token but is no
  // space to skip, so one between tokens would add empty arguments forever (found by fuzz_resp).
  line = line.substr(0, line.find('\0'));
  std::vector<std::string> args;
  std::size_t i = 0;
  for (;;) {
    while (i < line.size() && is_space(line[i])) ++i;
    if (i == line.size()) return args;
    std::string arg;
    while (i < line.size() && !is_separator(line[i])) {
      const char c = line[i++];
      if (c != '"' && c != '\'') {
        arg.push_back(c);
      } else if (!read_quoted(line, i, c, arg)) {
        return std::nullopt;
      } else {
        break;  // a closing quote ends the token
      }
    }
    args.push_back(std::move(arg));
  }
}

void append_line(std::string& out, char type, std::string_view text) {
  out.push_back(type);
  const std::size_t at = out.size();
  out.append(text);
  for (std::size_t i = at; i < out.size(); ++i) {
    if (out[i] == '\r' || out[i] == '\n') out[i] = ' ';
  }
  out.append("\r\n");
}

void append_length(std::string& out, char type, std::int64_t n) {
  out.push_back(type);
  out.append(std::to_string(n));
  out.append("\r\n");
}

}  // namespace

ParseResult RespParser::fail(std::string message) {
  in_array_ = false;
  args_.clear();
  refused_.clear();
  return ParseResult{.status = ParseStatus::error, .error = std::move(message)};
}

ParseResult RespParser::parse(std::string_view buffer) {
  if (buffer.empty()) return {};
  if (!in_array_ && buffer[0] != '*') return parse_inline(buffer);
  return parse_array(buffer);
}

ParseResult RespParser::parse_array(std::string_view buf) {
  if (!in_array_) {
    const Line line = find_line(buf, 1);
    if (line.kind == Line::incomplete) return {};
    if (line.kind == Line::too_long) return fail("Protocol error: too big mbulk count string");
    const auto count = line.kind == Line::found
                           ? parse_integer<std::int64_t>(buf.substr(1, line.cr - 1))
                           : std::nullopt;
    if (!count) return fail("Protocol error: invalid multibulk length");
    const std::size_t consumed = line.cr + 2;
    if (*count <= 0) {
      return ParseResult{.status = ParseStatus::complete, .consumed_bytes = consumed};
    }
    const auto n = static_cast<std::uint64_t>(*count);
    if (n > limits_.array_len_max) {
      return fail(exceeds("multibulk length", n, "array_len_max", limits_.array_len_max));
    }
    in_array_ = true;
    elements_ = n;
    pos_ = consumed;
    elements_seen_ = 0;
    refused_.clear();
    args_.clear();  // grows one argument at a time, as the arguments arrive
  }
  while (elements_seen_ < elements_) {
    if (pos_ >= buf.size()) return {};
    if (buf[pos_] != '$') {
      return fail("Protocol error: expected '$', got '" + printable(buf[pos_]) + "'");
    }
    const Line line = find_line(buf, pos_ + 1);
    if (line.kind == Line::incomplete) return {};
    if (line.kind == Line::too_long) return fail("Protocol error: too big bulk count string");
    const auto len = line.kind == Line::found
                         ? parse_integer<std::int64_t>(buf.substr(pos_ + 1, line.cr - pos_ - 1))
                         : std::nullopt;
    if (!len || *len < 0) return fail("Protocol error: invalid bulk length");
    const auto n = static_cast<std::uint64_t>(*len);
    if (n > limits_.bulk_bytes_max && refused_.empty()) {
      // Read on and throw the command away, so that the client reads the error, not a reset.
      refused_ = "argument " + std::to_string(elements_seen_ + 1) + " of " + std::to_string(n) +
                 " bytes exceeds bulk_bytes_max (" + std::to_string(limits_.bulk_bytes_max) +
                 "); the command was read and discarded";
      args_.clear();
    }
    const std::size_t data = line.cr + 2;
    // Compared as a subtraction: `data + n` could overflow with limits set near SIZE_MAX.
    if (limits_.command_bytes_max < data || n + 2 > limits_.command_bytes_max - data) {
      return fail("Protocol error: command of at least " + std::to_string(data + n + 2) +
                  " bytes exceeds command_bytes_max (" +
                  std::to_string(limits_.command_bytes_max) + ")");
    }
    if (buf.size() - data < n + 2) return {};
    if (buf[data + n] != '\r' || buf[data + n + 1] != '\n') {
      return fail("Protocol error: expected CRLF after a bulk string of " + std::to_string(n) +
                  " bytes");
    }
    if (refused_.empty()) args_.emplace_back(buf.substr(data, n));
    ++elements_seen_;
    pos_ = data + n + 2;
  }
  in_array_ = false;
  if (!refused_.empty()) {
    args_.clear();
    return ParseResult{.status = ParseStatus::refused, .consumed_bytes = pos_,
                       .error = std::exchange(refused_, {})};
  }
  return ParseResult{
      .status = ParseStatus::complete, .args = std::move(args_), .consumed_bytes = pos_};
}

ParseResult RespParser::parse_inline(std::string_view buf) const {
  const std::size_t scan =
      buf.size() > limits_.inline_bytes_max ? limits_.inline_bytes_max + 1 : buf.size();
  const void* hit = std::memchr(buf.data(), '\n', scan);
  if (hit == nullptr) {
    if (buf.size() <= limits_.inline_bytes_max) return {};
    return ParseResult{.status = ParseStatus::error,
                       .error = "Protocol error: too big inline request: exceeds "
                                "inline_bytes_max (" +
                                std::to_string(limits_.inline_bytes_max) + ")"};
  }
  const std::size_t nl = static_cast<const char*>(hit) - buf.data();
  std::string_view line = buf.substr(0, nl);
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  auto args = split_inline(line);
  if (!args) {
    return ParseResult{.status = ParseStatus::error,
                       .error = "Protocol error: unbalanced quotes in request"};
  }
  return ParseResult{
      .status = ParseStatus::complete, .args = std::move(*args), .consumed_bytes = nl + 1};
}

ParseResult parse_command(std::string_view buffer, const RespLimits& limits) {
  RespParser parser(limits);
  return parser.parse(buffer);
}

void append_simple_string(std::string& out, std::string_view text) { append_line(out, '+', text); }
void append_error(std::string& out, std::string_view text) { append_line(out, '-', text); }
void append_integer(std::string& out, std::int64_t value) { append_length(out, ':', value); }
void append_null_bulk(std::string& out) { out.append("$-1\r\n"); }
void append_null_array(std::string& out) { out.append("*-1\r\n"); }

void append_bulk(std::string& out, std::string_view bytes) {
  append_length(out, '$', static_cast<std::int64_t>(bytes.size()));
  out.append(bytes);
  out.append("\r\n");
}

void append_array_header(std::string& out, std::size_t count) {
  append_length(out, '*', static_cast<std::int64_t>(count));
}

void append_command(std::string& out, const std::vector<std::string>& args) {
  append_array_header(out, args.size());
  for (const std::string& arg : args) append_bulk(out, arg);
}

void append_command(std::string& out, std::initializer_list<std::string_view> args) {
  append_array_header(out, args.size());
  for (const std::string_view arg : args) append_bulk(out, arg);
}

// ---- Replies ----

namespace {

// One reply parse over a whole buffer. `needed` is set when the reply is incomplete: the buffer
// must be at least that long before another scan can get further.
struct ReplyScan {
  std::string_view buffer;
  const RespReplyLimits& limits;
  std::string& error;
  std::size_t needed = 0;

  ParseStatus incomplete(std::size_t at_least) {
    needed = at_least;
    return ParseStatus::incomplete;
  }
  ParseStatus fail(std::string message) {
    error = std::move(message);
    return ParseStatus::error;
  }

  // One CRLF-terminated line starting at `pos`; moves `pos` past it. Its length is checked
  // whether or not its end has arrived, so the result does not depend on how bytes were split.
  ParseStatus line(std::size_t& pos, std::string_view& out) {
    const auto end = buffer.find("\r\n", pos);
    // A '\r' that has arrived without its '\n' yet is not part of the line.
    std::size_t length = (end == std::string_view::npos ? buffer.size() : end) - pos;
    if (end == std::string_view::npos && length > 0 && buffer.back() == '\r') --length;
    if (length > limits.line_bytes_max) {
      return fail("line longer than " + std::to_string(limits.line_bytes_max) + " bytes");
    }
    if (end == std::string_view::npos) return incomplete(buffer.size() + 1);
    out = buffer.substr(pos, end - pos);
    pos = end + 2;
    return ParseStatus::complete;
  }

  ParseStatus bulk(std::size_t& pos, std::int64_t n, RespReply& out) {
    if (n == -1) {
      out.type = RespReplyType::null;
      return ParseStatus::complete;
    }
    if (n < -1 || static_cast<std::uint64_t>(n) > limits.bulk_bytes_max) {
      return fail("bad bulk length " + std::to_string(n));
    }
    const auto len = static_cast<std::size_t>(n);
    if (buffer.size() - pos < len + 2) return incomplete(pos + len + 2);
    if (buffer.substr(pos + len, 2) != "\r\n") return fail("bulk string not followed by CRLF");
    out.type = RespReplyType::bulk;
    out.text = buffer.substr(pos, len);
    pos += len + 2;
    return ParseStatus::complete;
  }

  ParseStatus array(std::size_t& pos, std::size_t depth, std::int64_t n, RespReply& out) {
    if (n == -1) {
      out.type = RespReplyType::null;
      return ParseStatus::complete;
    }
    if (n < -1 || static_cast<std::uint64_t>(n) > limits.array_len_max) {
      return fail("bad array length " + std::to_string(n));
    }
    if (depth + 1 > limits.depth_max) {
      return fail("arrays nested deeper than " + std::to_string(limits.depth_max));
    }
    out.type = RespReplyType::array;
    out.elements.clear();
    // Grown one element at a time: a claimed length allocates nothing before its elements came.
    for (std::int64_t i = 0; i < n; ++i) {
      out.elements.emplace_back();
      if (auto s = reply(pos, depth + 1, out.elements.back()); s != ParseStatus::complete) return s;
    }
    return ParseStatus::complete;
  }

  ParseStatus reply(std::size_t& pos, std::size_t depth, RespReply& out) {
    if (pos >= buffer.size()) return incomplete(pos + 1);
    const char type = buffer[pos++];
    std::string_view text;
    if (auto s = line(pos, text); s != ParseStatus::complete) return s;
    switch (type) {
      case '+':
      case '-':
        out.type = type == '+' ? RespReplyType::simple : RespReplyType::error;
        out.text = text;
        return ParseStatus::complete;
      case ':':
      case '$':
      case '*': {
        const auto n = parse_integer<std::int64_t>(text);
        if (!n) {
          std::string shown;
          for (const char c : text.substr(0, length_line_bytes_max)) shown += printable(c);
          return fail("bad integer '" + shown + "'");
        }
        if (type == '$') return bulk(pos, *n, out);
        if (type == '*') return array(pos, depth, *n, out);
        out.type = RespReplyType::integer;
        out.integer = *n;
        return ParseStatus::complete;
      }
      default:
        return fail("unexpected reply type byte '" + printable(type) + "'");
    }
  }
};

}  // namespace

ParseStatus RespReplyParser::parse(std::string_view buffer, RespReply& out, std::size_t& consumed,
                                   std::string& error) {
  if (buffer.size() < bytes_needed_) return ParseStatus::incomplete;
  ReplyScan scan{buffer, limits_, error};
  std::size_t pos = 0;
  out = RespReply{};
  const ParseStatus status = scan.reply(pos, 0, out);
  bytes_needed_ = status == ParseStatus::incomplete ? scan.needed : 0;
  if (status == ParseStatus::complete) consumed = pos;
  return status;
}

}  // namespace kv
