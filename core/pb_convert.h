// Shared by the two binary formats (the WAL in core/wal.cc, peer frames in net/peer_codec.cc):
// little-endian integers, CRC-32C, and the conversions between the core's Version and Record
// and their protobuf forms. One place, so that the log and the wire can never disagree.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/errors.h"
#include "core/kv.pb.h"
#include "core/member.h"
#include "core/version.h"

namespace kv {

inline void put_u32_le(std::uint32_t v, char* out) {
  for (int i = 0; i < 4; ++i) out[i] = static_cast<char>((v >> (8 * i)) & 0xFFu);
}

inline std::uint32_t get_u32_le(const char* in) {
  std::uint32_t v = 0;
  for (int i = 0; i < 4; ++i) v |= std::uint32_t{static_cast<unsigned char>(in[i])} << (8 * i);
  return v;
}

// CRC-32C (Castagnoli) of `first` followed by `second`: with the CPU's instruction where there is
// one, else crc32c_portable (Boost.CRC). Both give the same value on every platform.
std::uint32_t crc32c(std::string_view first, std::string_view second = {});
std::uint32_t crc32c_portable(std::string_view first, std::string_view second = {});

void to_pb(const Version& v, pb::Version& out);
Version from_pb(const pb::Version& p);
// REQUIRES: a tombstone carries no value (the decoders refuse one that does).
void to_pb(const Record& r, pb::Record& out);
// Moves the value out of `p` (it may be a megabyte); the error says what is wrong with it.
Expected<Record> record_from_pb(pb::Record& p);
void to_pb(const Member& m, pb::Member& out);
// A members list as a sender here makes it: ids ascending and not 0, known states, addresses
// within member_addr_bytes_max, at most ring_nodes_max entries.
Expected<std::vector<Member>> members_from_pb(google::protobuf::RepeatedPtrField<pb::Member>& p);

}  // namespace kv
