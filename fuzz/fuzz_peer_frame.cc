// Peer frames as an inbound link reads them (net/peer_links.cc): a handshake, then messages, back
// to back on one stream.
//
// Input: byte 0 is the mode, the rest is the stream.
//   bit 0  the stream starts with a handshake (as every link does)
//   bit 1  recompute every frame's checksum first: without it nearly every mutation stops at the
//          CRC, with it mutations reach the protobuf parse and the checks after it
//   bits 2-3  the frame limit: the default, 0, 64 or 4096 bytes
// Properties: a decode is complete, incomplete or an error, never anything in between; whatever
// decodes re-encodes to a frame that decodes to the same thing, and re-encoding that gives the
// same bytes; a complete frame cut short reads as incomplete, never as an error or a frame.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "core/pb_convert.h"
#include "fuzz/common.h"
#include "net/peer_codec.h"

namespace kv::fuzz {
namespace {

constexpr std::size_t frame_limits[] = {peer_frame_bytes_max_default, 0, 64, 4096};
constexpr std::size_t roundtrip_frame_max = INT32_MAX;

void fix_checksums(std::string& s) {
  std::size_t at = 0;
  while (s.size() - at >= peer_frame_header_bytes) {
    const std::size_t len = get_u32_le(s.data() + at);
    if (len > s.size() - at - peer_frame_header_bytes) return;
    const std::string_view payload(s.data() + at + peer_frame_header_bytes, len);
    put_u32_le(crc32c(payload), s.data() + at + 4);
    at += peer_frame_header_bytes + len;
  }
}

void check_shape(const FrameDecode& d, std::size_t available) {
  switch (d.status) {
    case FrameDecode::Status::complete:
      require(d.consumed >= peer_frame_header_bytes && d.consumed <= available,
              "complete frame consumed " + std::to_string(d.consumed) + " of " +
                  std::to_string(available) + " bytes");
      require(d.error.empty(), "complete frame with an error");
      break;
    case FrameDecode::Status::incomplete:
      require(d.consumed == 0 && d.error.empty(), "incomplete frame consumed or erred");
      break;
    case FrameDecode::Status::error:
      require(d.consumed == 0 && !d.error.empty(), "error without a description");
      break;
  }
}

// A frame cut before its end is incomplete: the reader waits for more instead of dropping a link
// whose bytes merely arrived in pieces.
template <class Decode>
void check_prefixes(std::string_view frame, Decode decode) {
  const std::size_t cuts[] = {0, 1, 4, peer_frame_header_bytes - 1, peer_frame_header_bytes,
                              frame.size() / 2, frame.size() - 1};
  for (std::size_t cut : cuts) {
    if (cut >= frame.size()) continue;
    const FrameDecode d = decode(frame.substr(0, cut));
    require(d.status == FrameDecode::Status::incomplete,
            "a complete frame cut at " + std::to_string(cut) + " of " +
                std::to_string(frame.size()) + " bytes did not read as incomplete: " + d.error);
  }
}

void roundtrip(const Handshake& h) {
  std::string once;
  encode_handshake(h, once);
  Handshake back;
  const FrameDecode d = decode_handshake(once, roundtrip_frame_max, back);
  require(d.status == FrameDecode::Status::complete && d.consumed == once.size(),
          "re-encoded handshake does not decode: " + d.error);
  require(back == h, "handshake changed in a round trip");
  std::string twice;
  encode_handshake(back, twice);
  require(once == twice, "handshake encoding is not stable");
}

void roundtrip(const Message& m) {
  std::string once;
  encode_message(m, once);
  Message back;
  const FrameDecode d = decode_message(once, roundtrip_frame_max, back);
  require(d.status == FrameDecode::Status::complete && d.consumed == once.size(),
          "re-encoded message does not decode: " + d.error);
  require(same(back, m), "message changed in a round trip");
  std::string twice;
  encode_message(back, twice);
  require(once == twice, "message encoding is not stable");
}

}  // namespace
}  // namespace kv::fuzz

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  kv::fuzz::quiet_protobuf();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace kv;
  using namespace kv::fuzz;
  if (size == 0) return 0;
  const std::uint8_t mode = data[0];
  std::string stream(reinterpret_cast<const char*>(data) + 1, size - 1);
  if (mode & 2) fix_checksums(stream);
  const std::size_t frame_max = frame_limits[(mode >> 2) & 3];
  bool want_handshake = (mode & 1) != 0;

  std::string_view rest = stream;
  while (!rest.empty()) {
    FrameDecode d;
    if (want_handshake) {
      Handshake h;
      auto decode = [](std::string_view b) {
        Handshake ignored;
        return decode_handshake(b, peer_handshake_bytes_max, ignored);
      };
      d = decode_handshake(rest, peer_handshake_bytes_max, h);
      check_shape(d, rest.size());
      if (d.status != FrameDecode::Status::complete) break;
      require(h.node_id != 0, "handshake from node 0 accepted");
      check_prefixes(rest.substr(0, d.consumed), decode);
      roundtrip(h);
      want_handshake = false;
    } else {
      Message m;
      auto decode = [frame_max](std::string_view b) {
        Message ignored;
        return decode_message(b, frame_max, ignored);
      };
      d = decode_message(rest, frame_max, m);
      check_shape(d, rest.size());
      if (d.status != FrameDecode::Status::complete) break;
      require(d.consumed - peer_frame_header_bytes <= frame_max, "frame over the limit accepted");
      require(m.from != 0 && m.to != 0, "message from or to node 0 accepted");
      check_prefixes(rest.substr(0, d.consumed), decode);
      roundtrip(m);
    }
    rest.remove_prefix(d.consumed);
  }
  return 0;
}
