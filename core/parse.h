// The one integer parser: decimal text to an integer type, all of the text or nothing. Every
// parser of outside input (flags, addresses, RESP lengths, scenario files) uses it, so that
// "12x", "", "+1", "-1" for an unsigned type and out-of-range values are refused the same way.
#pragma once

#include <charconv>
#include <concepts>
#include <optional>
#include <string_view>
#include <system_error>

namespace kv {

template <std::integral Int>
std::optional<Int> parse_integer(std::string_view text) {
  Int value{};
  const char* end = text.data() + text.size();
  const auto [ptr, ec] = std::from_chars(text.data(), end, value);
  if (text.empty() || ec != std::errc() || ptr != end) return std::nullopt;
  return value;
}

}  // namespace kv
