// See pb_convert.h.
#include "core/pb_convert.h"

#include <boost/crc.hpp>
#include <cassert>

namespace kv {

std::uint32_t crc32c(std::string_view first, std::string_view second) {
  boost::crc_optimal<32, 0x1EDC6F41, 0xFFFFFFFF, 0xFFFFFFFF, true, true> crc;
  crc.process_bytes(first.data(), first.size());
  crc.process_bytes(second.data(), second.size());
  return crc.checksum();
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

std::string record_from_pb(pb::Record& p, Record& out) {
  if (!p.has_version()) return "record has no version";
  if (p.tombstone() && !p.value().empty()) return "record is a tombstone with a value";
  out = Record{from_pb(p.version()), p.tombstone(), std::move(*p.mutable_value())};
  return {};
}

}  // namespace kv
