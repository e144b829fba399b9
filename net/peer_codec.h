// The wire codec of peer links: how a kv::Message (and the handshake that opens a link) becomes
// bytes on a TCP stream and back.
//
// A frame is
//     [payload length: u32 LE][crc32c of the payload: u32 LE][payload: protobuf]
// where the payload is a kv.pb.Handshake (the first frame each side sends) or a kv.pb.PeerMessage
// (every frame after it). TCP already checksums segments; the CRC-32C is here because a frame
// that passed through a buggy proxy, NIC offload or our own buffer handling must never be taken
// for a different message.
//
// Encode and decode are pure functions over bytes (no I/O), so the decoder can be fuzzed on its
// own, and the simulator sends every peer message through them (library kv_peer_codec, which
// needs nothing but the core). Decoding never trusts the peer: a length above the limit is refused before anything is
// allocated, and a payload that no encoder here could produce (no body, a write without a record,
// an unknown write kind, a tombstone carrying a value, node 0) is an error, because protobuf
// accepts almost any bytes as some message and the checksum cannot tell a buggy sender from a
// sound one.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "core/messages.h"
#include "core/version.h"

namespace kv {

inline constexpr std::size_t peer_frame_header_bytes = 8;
// The largest payload a link accepts by default: a write of the largest value (1 MiB by default)
// with room to spare for keys and a raised value limit, while a damaged or hostile length field
// cannot make a node allocate gigabytes.
inline constexpr std::size_t peer_frame_bytes_max_default = (4u << 20) + (64u << 10);
// Room in a frame for a write's fields around its key and value.
inline constexpr std::size_t peer_frame_envelope_bytes = 64u << 10;
// The payload limit that lets a write of the largest key and value through: kvnode's default
// for --frame-bytes-max, and the limit of the simulator's links.
inline constexpr std::size_t peer_frame_bytes_max_for(std::size_t key_bytes_max,
                                                      std::size_t value_bytes_max) {
  return std::max(peer_frame_bytes_max_default,
                  key_bytes_max + value_bytes_max + peer_frame_envelope_bytes);
}
// The handshake is read before the peer is known, so it gets a much smaller limit.
inline constexpr std::size_t peer_handshake_bytes_max = 4096;
// 2: anti-entropy messages; 3: tombstone collection (WriteKind::reap); 4: heartbeats and gossip;
// 5: a members entry's removal fields (moved, ring_seen, streamed)
inline constexpr std::uint32_t peer_protocol_version = 5;

struct Handshake {
  std::string cluster_id;  // UTF-8 (a protobuf string field)
  NodeId node_id = 0;
  std::uint32_t protocol_version = peer_protocol_version;

  bool operator==(const Handshake&) const = default;
};

// The outcome of decoding one frame from the front of a buffer.
struct FrameDecode {
  enum class Status {
    complete,    // one frame decoded into `out`; it took the first `consumed` bytes
    incomplete,  // the buffer holds only the start of a frame: read more and try again
    error,       // the bytes can never become a valid frame: close the link (see `error`)
  };
  Status status = Status::incomplete;
  std::size_t consumed = 0;  // non-zero only when complete
  std::string error;         // what is wrong, for the log; set only on error
};

// Append one frame to `out`.
// REQUIRES: node_id != 0.
void encode_handshake(const Handshake& handshake, std::string& out);
// REQUIRES: from and to are not 0; a tombstone carries an empty value (the decoder refuses
// anything else, so a violation is a bug at the sender).
void encode_message(const Message& message, std::string& out);

// Decode one frame from the front of `bytes`. A frame whose payload is longer than `frame_max`
// bytes is an error as soon as its length field has arrived. `out` is written only on complete.
// REQUIRES: frame_max <= INT32_MAX (the protobuf parser takes an int).
FrameDecode decode_handshake(std::string_view bytes, std::size_t frame_max, Handshake& out);
FrameDecode decode_message(std::string_view bytes, std::size_t frame_max, Message& out);

}  // namespace kv
