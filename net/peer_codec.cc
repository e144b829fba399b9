// The peer frame codec (see peer_codec.h): framing and checksum, and the conversions between the
// core's message structs and their protobuf forms, with every check a decoded message must pass
// before the core sees it.
#include "net/peer_codec.h"

#include "core/pb_convert.h"
#include "core/ring.h"

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

void body_to_pb(const AeTreeReq& b, pb::PeerMessage& out) {
  pb::AeTreeReq& p = *out.mutable_ae_tree_req();
  p.set_req(b.req);
  p.set_ring(b.ring);
  for (const AeRangeRoot& r : b.ranges) {
    pb::AeRangeRoot& q = *p.add_ranges();
    q.set_range(r.range);
    q.set_root(r.root);
  }
}

void body_to_pb(const AeTreeResp& b, pb::PeerMessage& out) {
  pb::AeTreeResp& p = *out.mutable_ae_tree_resp();
  p.set_req(b.req);
  for (const AeRangeLeaves& r : b.ranges) {
    pb::AeRangeLeaves& q = *p.add_ranges();
    q.set_range(r.range);
    for (std::uint64_t leaf : r.leaves) q.add_leaves(leaf);
  }
}

void body_to_pb(const AeKeysReq& b, pb::PeerMessage& out) {
  pb::AeKeysReq& p = *out.mutable_ae_keys_req();
  p.set_req(b.req);
  for (const AeBucket& k : b.buckets) {
    pb::AeBucket& q = *p.add_buckets();
    q.set_range(k.range);
    q.set_leaf(k.leaf);
    q.set_upto(k.upto);
    q.set_after(k.after);
  }
  for (const AeKeyVersion& k : b.keys) {
    pb::AeKeyVersion& q = *p.add_keys();
    q.set_key(k.key);
    to_pb(k.version, *q.mutable_version());
    q.set_digest(k.digest);
  }
}

void body_to_pb(const AeKeysResp& b, pb::PeerMessage& out) {
  pb::AeKeysResp& p = *out.mutable_ae_keys_resp();
  p.set_req(b.req);
  for (const std::string& key : b.want) p.add_want(key);
}

void body_to_pb(const Heartbeat& b, pb::PeerMessage& out) {
  pb::Heartbeat& p = *out.mutable_heartbeat();
  p.set_generation(b.generation);
  p.set_table(b.table);
}

void body_to_pb(const Gossip& b, pb::PeerMessage& out) {
  pb::Gossip& p = *out.mutable_gossip();
  for (const Member& m : b.members) to_pb(m, *p.add_members());
}

// ---- protobuf -> core: each returns the value, or what is wrong ----
// Byte fields are moved out of the parsed message: a value may be a megabyte.

Expected<WriteKind> kind_from_pb(std::uint32_t raw) {
  if (raw < static_cast<std::uint32_t>(WriteKind::client) ||
      raw > static_cast<std::uint32_t>(WriteKind::reap)) {
    return invalid_input("unknown write kind " + std::to_string(raw));
  }
  return static_cast<WriteKind>(raw);
}

Expected<MessageBody> body_from_pb(pb::ReadReq& p) {
  return ReadReq{p.req(), std::move(*p.mutable_key())};
}

Expected<MessageBody> body_from_pb(pb::ReadResp& p) {
  ReadResp b{p.req(), std::move(*p.mutable_key()), std::nullopt};
  if (p.has_record()) {
    BOOST_OUTCOME_TRY(b.record, record_from_pb(*p.mutable_record()));
  }
  return b;
}

Expected<MessageBody> body_from_pb(pb::WriteReq& p) {
  WriteReq b;
  b.req = p.req();
  BOOST_OUTCOME_TRY(b.kind, kind_from_pb(p.kind()));
  b.key = std::move(*p.mutable_key());
  if (!p.has_record()) return invalid_input("no record");
  BOOST_OUTCOME_TRY(b.record, record_from_pb(*p.mutable_record()));
  b.hint_for = p.hint_for();
  return b;
}

Expected<MessageBody> body_from_pb(pb::WriteAck& p) {
  WriteAck b;
  b.req = p.req();
  BOOST_OUTCOME_TRY(b.kind, kind_from_pb(p.kind()));
  b.key = std::move(*p.mutable_key());
  if (!p.has_version()) return invalid_input("no version");
  b.version = from_pb(p.version());
  return b;
}

Expected<MessageBody> body_from_pb(pb::AeTreeReq& p) {
  AeTreeReq b{p.req(), p.ring(), {}};
  b.ranges.reserve(static_cast<std::size_t>(p.ranges_size()));
  for (const pb::AeRangeRoot& r : p.ranges()) b.ranges.push_back(AeRangeRoot{r.range(), r.root()});
  return b;
}

Expected<MessageBody> body_from_pb(pb::AeTreeResp& p) {
  AeTreeResp b{p.req(), {}};
  b.ranges.reserve(static_cast<std::size_t>(p.ranges_size()));
  for (const pb::AeRangeLeaves& r : p.ranges()) {
    if (static_cast<std::size_t>(r.leaves_size()) != ae_leaves) {
      return invalid_input("range " + std::to_string(r.range()) + " has " +
                           std::to_string(r.leaves_size()) + " leaves, not " +
                           std::to_string(ae_leaves));
    }
    b.ranges.push_back(AeRangeLeaves{r.range(), {r.leaves().begin(), r.leaves().end()}});
  }
  return b;
}

Expected<MessageBody> body_from_pb(pb::AeKeysReq& p) {
  AeKeysReq b{p.req(), {}, {}};
  b.buckets.reserve(static_cast<std::size_t>(p.buckets_size()));
  for (pb::AeBucket& k : *p.mutable_buckets()) {
    if (k.leaf() >= ae_leaves) return invalid_input("leaf " + std::to_string(k.leaf()) + " out of range");
    b.buckets.push_back(
        AeBucket{k.range(), k.leaf(), std::move(*k.mutable_after()), std::move(*k.mutable_upto())});
  }
  b.keys.reserve(static_cast<std::size_t>(p.keys_size()));
  for (pb::AeKeyVersion& k : *p.mutable_keys()) {
    if (!k.has_version()) return invalid_input("a listed key without a version");
    b.keys.push_back(AeKeyVersion{std::move(*k.mutable_key()), from_pb(k.version()), k.digest()});
  }
  return b;
}

Expected<MessageBody> body_from_pb(pb::AeKeysResp& p) {
  AeKeysResp b{p.req(), {}};
  b.want.reserve(static_cast<std::size_t>(p.want_size()));
  for (std::string& key : *p.mutable_want()) b.want.push_back(std::move(key));
  return b;
}

Expected<MessageBody> body_from_pb(pb::Heartbeat& p) {
  return Heartbeat{p.generation(), p.table()};
}

Expected<MessageBody> body_from_pb(pb::Gossip& p) {
  Gossip b;
  BOOST_OUTCOME_TRY(b.members, members_from_pb(*p.mutable_members()));
  return b;
}

// `body`'s error, its detail prefixed with the body's name.
Expected<MessageBody> named(std::string_view name, Expected<MessageBody> body) {
  if (!body) return Error{body.error().code, std::string(name) + ": " + body.error().detail};
  return body;
}

Expected<Message> message_from_pb(pb::PeerMessage& p) {
  if (p.from() == 0) return invalid_input("message from node 0");
  if (p.to() == 0) return invalid_input("message to node 0");
  Message out;
  out.from = p.from();
  out.to = p.to();
  switch (p.body_case()) {
    case pb::PeerMessage::kReadReq: {
      BOOST_OUTCOME_TRY(out.body, body_from_pb(*p.mutable_read_req()));
      return out;
    }
    case pb::PeerMessage::kReadResp: {
      BOOST_OUTCOME_TRY(out.body, named("read_resp", body_from_pb(*p.mutable_read_resp())));
      return out;
    }
    case pb::PeerMessage::kWriteReq: {
      BOOST_OUTCOME_TRY(out.body, named("write_req", body_from_pb(*p.mutable_write_req())));
      return out;
    }
    case pb::PeerMessage::kWriteAck: {
      BOOST_OUTCOME_TRY(out.body, named("write_ack", body_from_pb(*p.mutable_write_ack())));
      return out;
    }
    case pb::PeerMessage::kAeTreeReq: {
      BOOST_OUTCOME_TRY(out.body, named("ae_tree_req", body_from_pb(*p.mutable_ae_tree_req())));
      return out;
    }
    case pb::PeerMessage::kAeTreeResp: {
      BOOST_OUTCOME_TRY(out.body, named("ae_tree_resp", body_from_pb(*p.mutable_ae_tree_resp())));
      return out;
    }
    case pb::PeerMessage::kAeKeysReq: {
      BOOST_OUTCOME_TRY(out.body, named("ae_keys_req", body_from_pb(*p.mutable_ae_keys_req())));
      return out;
    }
    case pb::PeerMessage::kAeKeysResp: {
      BOOST_OUTCOME_TRY(out.body, named("ae_keys_resp", body_from_pb(*p.mutable_ae_keys_resp())));
      return out;
    }
    case pb::PeerMessage::kHeartbeat: {
      BOOST_OUTCOME_TRY(out.body, body_from_pb(*p.mutable_heartbeat()));
      return out;
    }
    case pb::PeerMessage::kGossip: {
      BOOST_OUTCOME_TRY(out.body, named("gossip", body_from_pb(*p.mutable_gossip())));
      return out;
    }
    case pb::PeerMessage::BODY_NOT_SET:
      break;
  }
  return invalid_input("message has no body");
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
  Expected<Message> decoded = message_from_pb(msg);
  if (!decoded) return decode_error(std::move(decoded.error().detail));
  out = std::move(decoded).value();
  return std::move(frame.result);
}

}  // namespace kv
