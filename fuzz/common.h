// Shared by the fuzz targets: a reader that takes structured values from the front of the input
// (so that seed files can be written by a script, byte by byte, see make_corpus.py), equality of
// peer messages, and the one way a target reports a broken property.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <optional>
#include <string>
#include <string_view>
#include <variant>

#include <google/protobuf/stubs/logging.h>

#include "core/messages.h"

namespace kv::fuzz {

// Prints what broke and stops with a crash that libFuzzer records as an artifact.
[[noreturn]] inline void fail(const std::string& what) {
  // Keys are any bytes, NUL included: printed escaped, so that the whole message shows.
  std::string shown;
  for (const char c : what) {
    if (c >= 0x20 && c < 0x7f) {
      shown.push_back(c);
    } else {
      char esc[5];
      std::snprintf(esc, sizeof esc, "\\x%02x", static_cast<unsigned char>(c));
      shown += esc;
    }
  }
  std::fprintf(stderr, "fuzz property broken: %s\n", shown.c_str());
  std::fflush(stderr);
  __builtin_trap();
}

// Protobuf logs every string field that is not UTF-8 as it refuses it: a line per input here.
inline void quiet_protobuf() { google::protobuf::SetLogHandler(nullptr); }

inline void require(bool ok, const std::string& what) {
  if (!ok) fail(what);
}

// Values read from the front of the input, little-endian; zeros once it runs out, so that every
// input is a valid program.
class Reader {
 public:
  Reader(const std::uint8_t* data, std::size_t size)
      : data_(reinterpret_cast<const char*>(data), size) {}

  bool empty() const { return at_ >= data_.size(); }
  std::size_t remaining() const { return data_.size() - at_; }

  std::uint8_t u8() { return empty() ? 0 : static_cast<std::uint8_t>(data_[at_++]); }
  std::uint16_t u16() { return static_cast<std::uint16_t>(u8() | (u8() << 8)); }
  std::uint32_t u32() { return u16() | (std::uint32_t{u16()} << 16); }
  std::uint64_t u64() { return u32() | (std::uint64_t{u32()} << 32); }

  std::string_view bytes(std::size_t n) {
    n = std::min(n, remaining());
    const std::string_view out = data_.substr(at_, n);
    at_ += n;
    return out;
  }
  // A one-byte length, then that many bytes.
  std::string short_string() { return std::string(bytes(u8())); }
  std::string_view rest() { return bytes(remaining()); }

 private:
  std::string_view data_;
  std::size_t at_ = 0;
};

inline bool same(const Version& a, const Version& b) { return a == b; }
inline bool same(const std::optional<Record>& a, const std::optional<Record>& b) { return a == b; }

// The core's message structs compare field by field.
inline bool same(const Message& a, const Message& b) { return a == b; }

}  // namespace kv::fuzz
