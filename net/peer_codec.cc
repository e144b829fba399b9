// The peer frame codec (see peer_codec.h): framing and checksum, and the conversions between the
// core's message structs and their protobuf forms, with every check a decoded message must pass
// before the core sees it.
#include "net/peer_codec.h"

#include "core/pb_convert.h"

#include <cassert>
#include <cstdint>
#include <cstdio>
#include <string>
#include <utility>
#include <variant>


#include "core/kv.pb.h"

namespace kv {
namespace {

constexpr std::size_t length_bytes = 4;

std::uint32_t payload_crc(std::string_view payload) { return crc32c(payload); }

std::string hex32(std::uint32_t v) {
  char text[11];
  std::snprintf(text, sizeof text, "0x%08x", static_cast<unsigned>(v));
  return text;
}

FrameDecode decode_error(std::string what) {
  return FrameDecode{FrameDecode::Status::error, 0, std::move(what)};
}

void append_frame(const google::protobuf::MessageLite& msg, std::string& out) {
  const std::size_t payload_bytes = msg.ByteSizeLong();
  assert(payload_bytes <= UINT32_MAX);
  const std::size_t start = out.size();
  out.resize(start + peer_frame_header_bytes);
  put_u32_le(static_cast<std::uint32_t>(payload_bytes), out.data() + start);
  [[maybe_unused]] const bool serialized = msg.AppendToString(&out);
  assert(serialized && out.size() == start + peer_frame_header_bytes + payload_bytes);
  const std::string_view payload(out.data() + start + peer_frame_header_bytes, payload_bytes);
  put_u32_le(payload_crc(payload), out.data() + start + length_bytes);
}

// The framing layer of decode: on complete, `payload` is a whole payload with a good checksum.
struct RawFrame {
  FrameDecode result;
  std::string_view payload;
};

RawFrame read_frame(std::string_view bytes, std::size_t frame_max) {
  assert(frame_max <= INT32_MAX);
  // The length is checked as soon as it has arrived, so a hostile length is refused before the
  // reader buffers (or allocates) anything for it.
  if (bytes.size() < length_bytes) return {};
  const std::size_t payload_bytes = get_u32_le(bytes.data());
  if (payload_bytes > frame_max) {
    return {decode_error("frame payload of " + std::to_string(payload_bytes) +
                         " bytes exceeds the limit of " + std::to_string(frame_max) + " bytes"),
            {}};
  }
  if (bytes.size() < peer_frame_header_bytes + payload_bytes) return {};
  const std::string_view payload = bytes.substr(peer_frame_header_bytes, payload_bytes);
  const std::uint32_t stored = get_u32_le(bytes.data() + length_bytes);
  const std::uint32_t computed = payload_crc(payload);
  if (stored != computed) {
    return {decode_error("frame checksum mismatch: stored " + hex32(stored) + ", computed " +
                         hex32(computed)),
            {}};
  }
  return {FrameDecode{FrameDecode::Status::complete, peer_frame_header_bytes + payload_bytes, {}},
          payload};
}

template <class Pb>
bool parse(std::string_view payload, Pb& msg) {
  return msg.ParseFromArray(payload.data(), static_cast<int>(payload.size()));
}

// ---- core -> protobuf ----

void body_to_pb(const ReadReq& b, pb::PeerMessage& out) {
  pb::ReadReq& p = *out.mutable_read_req();
  p.set_req(b.req);
  p.set_key(b.key);
}

void body_to_pb(const ReadResp& b, pb::PeerMessage& out) {
  pb::ReadResp& p = *out.mutable_read_resp();
  p.set_req(b.req);
  p.set_key(b.key);
  if (b.record) to_pb(*b.record, *p.mutable_record());
}

void body_to_pb(const WriteReq& b, pb::PeerMessage& out) {
  pb::WriteReq& p = *out.mutable_write_req();
  p.set_req(b.req);
  p.set_kind(static_cast<std::uint32_t>(b.kind));
  p.set_key(b.key);
  to_pb(b.record, *p.mutable_record());
  p.set_hint_for(b.hint_for);
}

void body_to_pb(const WriteAck& b, pb::PeerMessage& out) {
  pb::WriteAck& p = *out.mutable_write_ack();
  p.set_req(b.req);
  p.set_kind(static_cast<std::uint32_t>(b.kind));
  p.set_key(b.key);
  to_pb(b.version, *p.mutable_version());
}

// ---- protobuf -> core: each returns what is wrong, or an empty string ----
// Byte fields are moved out of the parsed message: a value may be a megabyte.

std::string kind_from_pb(std::uint32_t raw, WriteKind& out) {
  if (raw < static_cast<std::uint32_t>(WriteKind::client) ||
      raw > static_cast<std::uint32_t>(WriteKind::hint_delivery)) {
    return "unknown write kind " + std::to_string(raw);
  }
  out = static_cast<WriteKind>(raw);
  return {};
}

std::string body_from_pb(pb::ReadReq& p, MessageBody& out) {
  out = ReadReq{p.req(), std::move(*p.mutable_key())};
  return {};
}

std::string body_from_pb(pb::ReadResp& p, MessageBody& out) {
  ReadResp b{p.req(), std::move(*p.mutable_key()), std::nullopt};
  if (p.has_record()) {
    Record record;
    if (std::string e = record_from_pb(*p.mutable_record(), record); !e.empty()) return e;
    b.record = std::move(record);
  }
  out = std::move(b);
  return {};
}

std::string body_from_pb(pb::WriteReq& p, MessageBody& out) {
  WriteReq b;
  b.req = p.req();
  if (std::string e = kind_from_pb(p.kind(), b.kind); !e.empty()) return e;
  b.key = std::move(*p.mutable_key());
  if (!p.has_record()) return "no record";
  if (std::string e = record_from_pb(*p.mutable_record(), b.record); !e.empty()) return e;
  b.hint_for = p.hint_for();
  out = std::move(b);
  return {};
}

std::string body_from_pb(pb::WriteAck& p, MessageBody& out) {
  WriteAck b;
  b.req = p.req();
  if (std::string e = kind_from_pb(p.kind(), b.kind); !e.empty()) return e;
  b.key = std::move(*p.mutable_key());
  if (!p.has_version()) return "no version";
  b.version = from_pb(p.version());
  out = std::move(b);
  return {};
}

std::string message_from_pb(pb::PeerMessage& p, Message& out) {
  if (p.from() == 0) return "message from node 0";
  if (p.to() == 0) return "message to node 0";
  std::string e;
  switch (p.body_case()) {
    case pb::PeerMessage::kReadReq:
      e = body_from_pb(*p.mutable_read_req(), out.body);
      break;
    case pb::PeerMessage::kReadResp:
      if (e = body_from_pb(*p.mutable_read_resp(), out.body); !e.empty()) e = "read_resp: " + e;
      break;
    case pb::PeerMessage::kWriteReq:
      if (e = body_from_pb(*p.mutable_write_req(), out.body); !e.empty()) e = "write_req: " + e;
      break;
    case pb::PeerMessage::kWriteAck:
      if (e = body_from_pb(*p.mutable_write_ack(), out.body); !e.empty()) e = "write_ack: " + e;
      break;
    case pb::PeerMessage::BODY_NOT_SET:
      return "message has no body";
  }
  if (!e.empty()) return e;
  out.from = p.from();
  out.to = p.to();
  return {};
}

}  // namespace

void encode_handshake(const Handshake& handshake, std::string& out) {
  assert(handshake.node_id != 0);
  pb::Handshake msg;
  msg.set_cluster_id(handshake.cluster_id);
  msg.set_node_id(handshake.node_id);
  msg.set_protocol_version(handshake.protocol_version);
  append_frame(msg, out);
}

void encode_message(const Message& message, std::string& out) {
  assert(message.from != 0 && message.to != 0);
  pb::PeerMessage msg;
  msg.set_from(message.from);
  msg.set_to(message.to);
  std::visit([&msg](const auto& body) { body_to_pb(body, msg); }, message.body);
  append_frame(msg, out);
}

FrameDecode decode_handshake(std::string_view bytes, std::size_t frame_max, Handshake& out) {
  RawFrame frame = read_frame(bytes, frame_max);
  if (frame.result.status != FrameDecode::Status::complete) return std::move(frame.result);
  pb::Handshake msg;
  if (!parse(frame.payload, msg)) return decode_error("handshake payload does not parse");
  if (msg.node_id() == 0) return decode_error("handshake from node 0");
  out = Handshake{std::move(*msg.mutable_cluster_id()), msg.node_id(), msg.protocol_version()};
  return std::move(frame.result);
}

FrameDecode decode_message(std::string_view bytes, std::size_t frame_max, Message& out) {
  RawFrame frame = read_frame(bytes, frame_max);
  if (frame.result.status != FrameDecode::Status::complete) return std::move(frame.result);
  pb::PeerMessage msg;
  if (!parse(frame.payload, msg)) return decode_error("message payload does not parse");
  Message decoded;
  if (std::string e = message_from_pb(msg, decoded); !e.empty()) {
    return decode_error(std::move(e));
  }
  out = std::move(decoded);
  return std::move(frame.result);
}

}  // namespace kv
