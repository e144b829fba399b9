// See pb_convert.h.
#include "core/pb_convert.h"

#include "core/ring.h"

#include <boost/crc.hpp>
#include <cassert>
#include <cstring>

#if defined(__x86_64__)
#include <nmmintrin.h>
#endif

namespace kv {

std::uint32_t crc32c_portable(std::string_view first, std::string_view second) {
  boost::crc_optimal<32, 0x1EDC6F41, 0xFFFFFFFF, 0xFFFFFFFF, true, true> crc;
  crc.process_bytes(first.data(), first.size());
  crc.process_bytes(second.data(), second.size());
  return crc.checksum();
}

#if defined(__x86_64__)
namespace {

// SSE4.2's crc32 instruction computes exactly CRC-32C (reflected, without the initial and final
// inversion), eight bytes at a time: a node checksums every frame and log record, and the byte
// table cost 5% of its CPU.
__attribute__((target("sse4.2"))) std::uint32_t crc32c_sse42(std::uint32_t crc, std::string_view bytes) {
  const char* p = bytes.data();
  std::size_t n = bytes.size();
  for (; n >= 8; p += 8, n -= 8) {
    std::uint64_t word;
    std::memcpy(&word, p, 8);  // x86 is little-endian: the bytes in memory order
    crc = static_cast<std::uint32_t>(_mm_crc32_u64(crc, word));
  }
  for (; n > 0; ++p, --n) crc = _mm_crc32_u8(crc, static_cast<unsigned char>(*p));
  return crc;
}

}  // namespace
#endif

std::uint32_t crc32c(std::string_view first, std::string_view second) {
#if defined(__x86_64__)
  static const bool sse42 = __builtin_cpu_supports("sse4.2");  // immutable: a property of the CPU
  if (sse42) return ~crc32c_sse42(crc32c_sse42(~0u, first), second);
#endif
  return crc32c_portable(first, second);
}

void to_pb(const Version& v, pb::Version& out) {
  out.set_physical_ms(v.physical_ms);
  out.set_counter(v.counter);
  out.set_node(v.node);
}

Version from_pb(const pb::Version& p) { return Version{p.physical_ms(), p.counter(), p.node()}; }

void to_pb(const Record& r, pb::Record& out) {
  assert(!r.tombstone || r.value.empty());
  to_pb(r.version, *out.mutable_version());
  out.set_tombstone(r.tombstone);
  out.set_value(r.value);
}

Expected<Record> record_from_pb(pb::Record& p) {
  if (!p.has_version()) return invalid_input("record has no version");
  if (p.tombstone() && !p.value().empty()) return invalid_input("record is a tombstone with a value");
  return Record{from_pb(p.version()), p.tombstone(), std::move(*p.mutable_value())};
}

void to_pb(const Member& m, pb::Member& q) {
  q.set_id(m.id);
  q.set_state(static_cast<std::uint32_t>(m.state));
  q.set_generation(m.generation);
  q.set_epoch(m.epoch);
  q.set_peer_addr(m.peer_addr);
  q.set_client_addr(m.client_addr);
  q.set_moved(m.moved);
  q.set_ring_seen(m.ring_seen);
  q.set_streamed(m.streamed);
}

Expected<std::vector<Member>> members_from_pb(google::protobuf::RepeatedPtrField<pb::Member>& p) {
  if (static_cast<std::size_t>(p.size()) > ring_nodes_max) {
    return invalid_input(std::to_string(p.size()) + " members, over ring_nodes_max (" +
                         std::to_string(ring_nodes_max) + ")");
  }
  std::vector<Member> out;
  out.reserve(static_cast<std::size_t>(p.size()));
  for (pb::Member& q : p) {
    if (q.id() == 0) return invalid_input("a member with id 0");
    if (!out.empty() && q.id() <= out.back().id) return invalid_input("members not in ascending id order");
    if (q.state() < static_cast<std::uint32_t>(MemberState::joining) ||
        q.state() > static_cast<std::uint32_t>(MemberState::left)) {
      return invalid_input("unknown member state " + std::to_string(q.state()));
    }
    if (q.peer_addr().size() > member_addr_bytes_max || q.client_addr().size() > member_addr_bytes_max) {
      return invalid_input("n" + std::to_string(q.id()) + "'s address is over " +
                           std::to_string(member_addr_bytes_max) + " bytes");
    }
    out.push_back(Member{q.id(), static_cast<MemberState>(q.state()), q.generation(), q.epoch(),
                         std::move(*q.mutable_peer_addr()), std::move(*q.mutable_client_addr()),
                         q.moved(), q.ring_seen(), q.streamed()});
  }
  return out;
}

}  // namespace kv
