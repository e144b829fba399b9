// Tests of the peer frame codec and of the peer links built on it.
//
// Codec: every message kind survives a round trip, a stream decodes the same whatever the byte
// boundaries of its reads, and damaged input (a flipped byte, a cut, a hostile length, garbage,
// a well-formed protobuf that no sender could produce) is an error or "read more", never a
// message. Links: two nodes on loopback exchange messages both ways in order, a node of another
// cluster is refused, a peer that comes up late still gets what was queued for it, a full queue
// drops and counts, and a peer that sends garbage loses only its own connection.
#include <array>
#include <chrono>
#include <cstdint>
#include <functional>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>
#include <boost/crc.hpp>
#include <gtest/gtest.h>
#include <rapidcheck.h>
#include <rapidcheck/gtest.h>

#include "core/kv.pb.h"
#include "net/peer_codec.h"
#include "net/peer_links.h"

namespace kv {
namespace {

using Crc32c = boost::crc_optimal<32, 0x1EDC6F41, 0xFFFFFFFF, 0xFFFFFFFF, true, true>;
using Status = FrameDecode::Status;

// ---- equality of messages: the core's structs compare field by field ----

bool same(const Message& a, const Message& b) { return a == b; }

// ---- generators: full ranges, since the codec must carry any value the core can hold ----

rc::Gen<Version> gen_version() {
  return rc::gen::exec([] {
    return Version{*rc::gen::arbitrary<std::uint64_t>(), *rc::gen::arbitrary<std::uint32_t>(),
                   *rc::gen::arbitrary<NodeId>()};
  });
}

rc::Gen<Record> gen_record() {
  return rc::gen::exec([] {
    const bool tombstone = *rc::gen::arbitrary<bool>();
    return Record{*gen_version(), tombstone,
                  tombstone ? std::string() : *rc::gen::arbitrary<std::string>()};
  });
}

rc::Gen<WriteKind> gen_kind() {
  return rc::gen::element(WriteKind::client, WriteKind::repair, WriteKind::hint_delivery,
                          WriteKind::anti_entropy, WriteKind::reap);
}

rc::Gen<MessageBody> gen_body() {
  return rc::gen::exec([]() -> MessageBody {
    const auto req = *rc::gen::arbitrary<std::uint64_t>();
    const auto key = *rc::gen::arbitrary<std::string>();
    switch (*rc::gen::inRange(0, 10)) {
      case 0:
        return ReadReq{req, key};
      case 8:
        return Heartbeat{*rc::gen::arbitrary<std::uint64_t>(), *rc::gen::arbitrary<std::uint64_t>()};
      case 9: {
        Gossip g;
        NodeId id = 0;
        for (int i = *rc::gen::inRange(0, 5); i > 0; --i) {
          id += *rc::gen::inRange<NodeId>(1, 1000);
          g.members.push_back(Member{id, *rc::gen::element(MemberState::joining, MemberState::normal,
                                                           MemberState::leaving, MemberState::left),
                                     *rc::gen::arbitrary<std::uint64_t>(), *rc::gen::arbitrary<std::uint64_t>(),
                                     *rc::gen::container<std::string>(*rc::gen::inRange(0, 40), rc::gen::arbitrary<char>()),
                                     *rc::gen::container<std::string>(*rc::gen::inRange(0, 40), rc::gen::arbitrary<char>())});
        }
        return g;
      }
      case 1: {
        std::optional<Record> record;
        if (*rc::gen::arbitrary<bool>()) record = *gen_record();
        return ReadResp{req, key, record};
      }
      case 2:
        return WriteReq{req, *gen_kind(), key, *gen_record(), *rc::gen::arbitrary<NodeId>()};
      case 3:
        return WriteAck{req, *gen_kind(), key, *gen_version()};
      case 4: {
        AeTreeReq m{req, *rc::gen::arbitrary<std::uint64_t>(), {}};
        for (int i = *rc::gen::inRange(0, 5); i > 0; --i) {
          m.ranges.push_back(AeRangeRoot{*rc::gen::arbitrary<std::uint32_t>(),
                                         *rc::gen::arbitrary<std::uint64_t>()});
        }
        return m;
      }
      case 5: {
        AeTreeResp m{req, {}};
        for (int i = *rc::gen::inRange(0, 3); i > 0; --i) {
          m.ranges.push_back(AeRangeLeaves{
              *rc::gen::arbitrary<std::uint32_t>(),
              *rc::gen::container<std::vector<std::uint64_t>>(ae_leaves, rc::gen::arbitrary<std::uint64_t>())});
        }
        return m;
      }
      case 6: {
        AeKeysReq m{req, {}, {}};
        for (int i = *rc::gen::inRange(0, 3); i > 0; --i) {
          m.buckets.push_back(AeBucket{*rc::gen::arbitrary<std::uint32_t>(),
                                       *rc::gen::inRange<std::uint32_t>(0, ae_leaves),
                                       *rc::gen::arbitrary<std::string>(),
                                       *rc::gen::arbitrary<std::string>()});
        }
        for (int i = *rc::gen::inRange(0, 4); i > 0; --i) {
          m.keys.push_back(AeKeyVersion{*rc::gen::arbitrary<std::string>(), *gen_version(),
                                        *rc::gen::arbitrary<std::uint64_t>()});
        }
        return m;
      }
      default:
        return AeKeysResp{req, *rc::gen::arbitrary<std::vector<std::string>>()};
    }
  });
}

rc::Gen<Message> gen_message() {
  return rc::gen::exec([] {
    const auto node = rc::gen::inRange<NodeId>(1, std::numeric_limits<NodeId>::max());
    return Message{*node, *node, *gen_body()};
  });
}

Message write_message(NodeId from, NodeId to, std::uint64_t req, std::string value = "v") {
  return Message{from, to,
                 WriteReq{req, WriteKind::client, "key" + std::to_string(req),
                          Record{Version{1000 + req, 0, from}, false, std::move(value)}, 0}};
}

std::string encoded(const Message& m) {
  std::string out;
  encode_message(m, out);
  return out;
}

// A frame around any protobuf payload, valid or not, as a buggy or hostile sender could write it.
std::string raw_frame(std::string_view payload) {
  Crc32c crc;
  crc.process_bytes(payload.data(), payload.size());
  std::string out;
  for (std::uint32_t v : {static_cast<std::uint32_t>(payload.size()), crc.checksum()}) {
    for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xFFu));
  }
  out.append(payload);
  return out;
}

std::string raw_frame(const google::protobuf::MessageLite& msg) {
  return raw_frame(msg.SerializeAsString());
}

FrameDecode decode(std::string_view bytes) {
  Message m;
  return decode_message(bytes, peer_frame_bytes_max_default, m);
}

// ---- round trips ----

RC_GTEST_PROP(PeerCodecProperties, EveryMessageRoundTrips, ()) {
  const Message m = *gen_message();
  const std::string bytes = encoded(m);
  Message out;
  const FrameDecode d = decode_message(bytes, peer_frame_bytes_max_default, out);
  RC_ASSERT(d.status == Status::complete);
  RC_ASSERT(d.consumed == bytes.size());
  RC_ASSERT(same(m, out));
}

RC_GTEST_PROP(PeerCodecProperties, HandshakeRoundTrips, ()) {
  // cluster_id is a protobuf string: UTF-8, which printable ASCII is.
  const auto id = *rc::gen::container<std::string>(rc::gen::inRange<char>(0x20, 0x7f));
  const Handshake h{id, *rc::gen::inRange<NodeId>(1, std::numeric_limits<NodeId>::max()),
                    *rc::gen::arbitrary<std::uint32_t>()};
  std::string bytes;
  encode_handshake(h, bytes);
  Handshake out;
  const FrameDecode d = decode_handshake(bytes, peer_handshake_bytes_max, out);
  RC_ASSERT(d.status == Status::complete);
  RC_ASSERT(d.consumed == bytes.size());
  RC_ASSERT(out == h);
}

// A reader fed one byte at a time decodes exactly the messages that were sent, in order: every
// split point of the stream is some read boundary.
RC_GTEST_PROP(PeerCodecProperties, DecodesAStreamSplitAtEveryByte, ()) {
  const auto n = *rc::gen::inRange<std::size_t>(0, 6);
  const auto messages = *rc::gen::container<std::vector<Message>>(n, gen_message());
  std::string stream;
  for (const Message& m : messages) encode_message(m, stream);
  std::string buffer;
  std::vector<Message> received;
  for (char byte : stream) {
    buffer.push_back(byte);
    Message m;
    const FrameDecode d = decode_message(buffer, peer_frame_bytes_max_default, m);
    RC_ASSERT(d.status != Status::error);
    if (d.status == Status::complete) {
      RC_ASSERT(d.consumed == buffer.size());  // bytes arrive one by one: a frame ends the buffer
      received.push_back(std::move(m));
      buffer.clear();
    }
  }
  RC_ASSERT(buffer.empty());
  RC_ASSERT(received.size() == messages.size());
  for (std::size_t i = 0; i < messages.size(); ++i) RC_ASSERT(same(messages[i], received[i]));
}

TEST(PeerCodec, DecodesOneFrameFromTheFrontOfABuffer) {
  std::string stream = encoded(write_message(1, 2, 7));
  const std::size_t first = stream.size();
  encode_message(write_message(1, 2, 8), stream);
  Message m;
  const FrameDecode d = decode_message(stream, peer_frame_bytes_max_default, m);
  ASSERT_EQ(d.status, Status::complete);
  EXPECT_EQ(d.consumed, first);
  EXPECT_TRUE(same(m, write_message(1, 2, 7)));
}

TEST(PeerCodec, LargestKeyAndValueRoundTrip) {
  // The core's default limits (8 KiB keys, 1 MiB values) fit the default frame limit.
  Message m = write_message(1, 2, 3, std::string(1u << 20, 'v'));
  std::get<WriteReq>(m.body).key = std::string(8u << 10, 'k');
  Message out;
  const FrameDecode d = decode_message(encoded(m), peer_frame_bytes_max_default, out);
  ASSERT_EQ(d.status, Status::complete);
  EXPECT_TRUE(same(m, out));
}

TEST(PeerCodec, ReadRespWithoutRecordMeansNotFound) {
  const Message m{3, 4, ReadResp{9, "missing", std::nullopt}};
  Message out;
  ASSERT_EQ(decode_message(encoded(m), peer_frame_bytes_max_default, out).status,
            Status::complete);
  EXPECT_FALSE(std::get<ReadResp>(out.body).record.has_value());
}

// ---- damage ----

TEST(PeerCodec, EveryTruncationIsIncomplete) {
  const std::string bytes = encoded(write_message(1, 2, 5, std::string(300, 'x')));
  for (std::size_t n = 0; n < bytes.size(); ++n) {
    const FrameDecode d = decode(std::string_view(bytes).substr(0, n));
    ASSERT_EQ(d.status, Status::incomplete) << "cut at " << n;
    ASSERT_EQ(d.consumed, 0u);
  }
}

TEST(PeerCodec, CorruptChecksumIsAnError) {
  std::string bytes = encoded(write_message(1, 2, 5));
  bytes[5] = static_cast<char>(bytes[5] ^ 0x01);  // inside the stored crc
  const FrameDecode d = decode(bytes);
  EXPECT_EQ(d.status, Status::error);
  EXPECT_NE(d.error.find("checksum"), std::string::npos) << d.error;
}

// A flipped byte anywhere in a frame is never taken for a message: a damaged payload or crc
// fails the checksum, a damaged length claims too much (incomplete or over the limit) or too
// little (and then fails the checksum).
TEST(PeerCodec, NoSingleByteDamageDecodesAsAMessage) {
  const std::string bytes = encoded(write_message(1, 2, 5, "value"));
  for (std::size_t i = 0; i < bytes.size(); ++i) {
    for (unsigned flip : {0x01u, 0x80u, 0xFFu}) {
      std::string damaged = bytes;
      damaged[i] = static_cast<char>(static_cast<unsigned char>(damaged[i]) ^ flip);
      ASSERT_NE(decode(damaged).status, Status::complete) << "byte " << i << " ^ " << flip;
    }
  }
}

TEST(PeerCodec, OversizedLengthIsAnErrorBeforeThePayloadArrives) {
  // Only the length field: the decoder must refuse it now, not wait for (or buffer) 4 GiB.
  const std::string huge("\xff\xff\xff\xff", 4);
  FrameDecode d = decode(huge);
  EXPECT_EQ(d.status, Status::error);
  EXPECT_NE(d.error.find("exceeds the limit"), std::string::npos) << d.error;

  // One byte over a small limit is refused; exactly the limit is merely incomplete.
  const std::string bytes = encoded(write_message(1, 2, 5, std::string(100, 'x')));
  const std::size_t payload_bytes = bytes.size() - peer_frame_header_bytes;
  Message m;
  d = decode_message(std::string_view(bytes).substr(0, 8), payload_bytes - 1, m);
  EXPECT_EQ(d.status, Status::error);
  d = decode_message(std::string_view(bytes).substr(0, 8), payload_bytes, m);
  EXPECT_EQ(d.status, Status::incomplete);
  d = decode_message(bytes, payload_bytes, m);
  EXPECT_EQ(d.status, Status::complete);
}

TEST(PeerCodec, GarbageIsAnError) {
  const FrameDecode d = decode(raw_frame("\xff\xff\xff\xff garbage, not protobuf"));
  EXPECT_EQ(d.status, Status::error);
  EXPECT_NE(d.error.find("does not parse"), std::string::npos) << d.error;
}

RC_GTEST_PROP(PeerCodecProperties, RandomBytesNeverCrashTheDecoder, ()) {
  const auto bytes = *rc::gen::arbitrary<std::string>();
  Message m;
  const FrameDecode d = decode_message(bytes, 1024, m);
  RC_ASSERT(d.status != Status::complete || d.consumed <= bytes.size());
  // Random bytes behind a valid frame: the decoder must judge the payload, not the checksum.
  const FrameDecode framed = decode(raw_frame(bytes));
  RC_ASSERT(framed.status != Status::incomplete);
}

// ---- well-formed protobuf that no sender could produce ----

pb::PeerMessage valid_write_pb() {
  pb::PeerMessage p;
  p.set_from(1);
  p.set_to(2);
  pb::WriteReq& w = *p.mutable_write_req();
  w.set_req(3);
  w.set_kind(static_cast<std::uint32_t>(WriteKind::repair));
  w.set_key("k");
  w.mutable_record()->mutable_version()->set_physical_ms(10);
  w.mutable_record()->set_value("v");
  return p;
}

void expect_refused(const pb::PeerMessage& p, std::string_view what) {
  const FrameDecode d = decode(raw_frame(p));
  EXPECT_EQ(d.status, Status::error) << what;
  EXPECT_NE(d.error.find(what), std::string::npos) << d.error;
}

TEST(PeerCodec, RefusesMessagesNoSenderProduces) {
  ASSERT_EQ(decode(raw_frame(valid_write_pb())).status, Status::complete);

  pb::PeerMessage p = valid_write_pb();
  p.clear_body();
  expect_refused(p, "no body");

  p = valid_write_pb();
  p.set_from(0);
  expect_refused(p, "from node 0");
  p = valid_write_pb();
  p.set_to(0);
  expect_refused(p, "to node 0");

  p = valid_write_pb();
  p.mutable_write_req()->clear_record();
  expect_refused(p, "no record");
  p = valid_write_pb();
  p.mutable_write_req()->mutable_record()->clear_version();
  expect_refused(p, "record has no version");
  p = valid_write_pb();
  p.mutable_write_req()->mutable_record()->set_tombstone(true);
  expect_refused(p, "tombstone with a value");

  for (std::uint32_t kind : {0u, 6u, 255u}) {
    p = valid_write_pb();
    p.mutable_write_req()->set_kind(kind);
    expect_refused(p, "unknown write kind " + std::to_string(kind));
  }
}

TEST(PeerCodec, RefusesAntiEntropyMessagesNoSenderProduces) {
  pb::PeerMessage p;
  p.set_from(1);
  p.set_to(2);
  pb::AeRangeLeaves& r = *p.mutable_ae_tree_resp()->add_ranges();
  r.set_range(3);
  for (std::size_t i = 0; i + 1 < ae_leaves; ++i) r.add_leaves(i);
  expect_refused(p, "ae_tree_resp: range 3 has 15 leaves, not 16");
  r.add_leaves(99);
  EXPECT_EQ(decode(raw_frame(p)).status, Status::complete);

  p.mutable_ae_keys_req()->add_buckets()->set_leaf(static_cast<std::uint32_t>(ae_leaves));
  expect_refused(p, "ae_keys_req: leaf 16 out of range");
  p.mutable_ae_keys_req()->mutable_buckets(0)->set_leaf(0);
  p.mutable_ae_keys_req()->add_keys()->set_key("k");
  expect_refused(p, "ae_keys_req: a listed key without a version");
  p.mutable_ae_keys_req()->mutable_keys(0)->mutable_version();
  EXPECT_EQ(decode(raw_frame(p)).status, Status::complete);
}

TEST(PeerCodec, RefusesMembersTablesNoSenderProduces) {
  pb::PeerMessage p;
  p.set_from(1);
  p.set_to(2);
  pb::Member& a = *p.mutable_gossip()->add_members();
  a.set_id(0);
  a.set_state(2);
  expect_refused(p, "gossip: a member with id 0");
  a.set_id(5);
  a.set_state(9);
  expect_refused(p, "gossip: unknown member state 9");
  a.set_state(2);
  a.set_peer_addr(std::string(member_addr_bytes_max + 1, 'x'));
  expect_refused(p, "gossip: n5's address is over 256 bytes");
  a.set_peer_addr("127.0.0.1:7001");
  pb::Member& b = *p.mutable_gossip()->add_members();
  b.set_id(4);
  b.set_state(2);
  expect_refused(p, "gossip: members not in ascending id order");
  p.mutable_gossip()->mutable_members(1)->set_id(6);
  EXPECT_EQ(decode(raw_frame(p)).status, Status::complete);
}

TEST(PeerCodec, RefusesBadReadRespAndWriteAck) {
  pb::PeerMessage p;
  p.set_from(1);
  p.set_to(2);
  p.mutable_read_resp()->mutable_record()->set_value("no version");
  expect_refused(p, "read_resp: record has no version");

  p.mutable_write_ack()->set_kind(1);
  expect_refused(p, "write_ack: no version");
  p.mutable_write_ack()->mutable_version();  // present, even if all zero
  EXPECT_EQ(decode(raw_frame(p)).status, Status::complete);
  p.mutable_write_ack()->set_kind(0);
  expect_refused(p, "unknown write kind 0");
}

TEST(PeerCodec, RefusesHandshakeFromNodeZeroAndMessagePayloadAsHandshake) {
  std::string bytes;
  encode_handshake(Handshake{"c", 1, peer_protocol_version}, bytes);
  Handshake h;
  EXPECT_EQ(decode_handshake(bytes, peer_handshake_bytes_max, h).status, Status::complete);

  pb::Handshake zero;
  zero.set_cluster_id("c");
  EXPECT_EQ(decode_handshake(raw_frame(zero), peer_handshake_bytes_max, h).status, Status::error);

  const std::string big = encoded(write_message(1, 2, 1, std::string(5000, 'x')));
  const FrameDecode d = decode_handshake(big, peer_handshake_bytes_max, h);
  EXPECT_EQ(d.status, Status::error);  // over the handshake limit
}

// ---- links on loopback ----

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using namespace std::chrono_literals;

// A free ephemeral port. Freed again at once: a small race with other processes, acceptable in
// a test, and the only way to give each side the other's address before either listens.
std::uint16_t reserve_port(asio::io_context& io) {
  tcp::acceptor acceptor(io, tcp::endpoint(asio::ip::address_v4::loopback(), 0));
  return acceptor.local_endpoint().port();
}

tcp::endpoint loopback(std::uint16_t port) {
  return tcp::endpoint(asio::ip::address_v4::loopback(), port);
}

// Runs the loop until `done` holds or `timeout` passes; returns done().
bool run_until(asio::io_context& io, const std::function<bool()>& done,
               std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!done() && std::chrono::steady_clock::now() < deadline) {
    if (io.stopped()) io.restart();
    io.run_one_for(10ms);
  }
  return done();
}

void run_for(asio::io_context& io, std::chrono::milliseconds duration) {
  run_until(io, [] { return false; }, duration);
}

PeerLinksOptions options(std::string cluster, NodeId self,
                         std::map<NodeId, tcp::endpoint> peers) {
  PeerLinksOptions o;
  o.cluster_id = std::move(cluster);
  o.self = self;
  for (const auto& [id, e] : peers) o.peers[id] = HostPort{e.address().to_string(), e.port()};
  o.backoff_min = 20ms;
  o.backoff_max = 200ms;
  return o;
}

// Checks that `received` holds write_message(from, to, i) for i = 0, 1, ... in order.
void expect_in_order(const std::vector<Message>& received, NodeId from, NodeId to) {
  for (std::size_t i = 0; i < received.size(); ++i) {
    ASSERT_TRUE(same(received[i], write_message(from, to, i))) << "message " << i;
  }
}

// Stopping must leave nothing behind: the loop runs out of work and returns on its own.
void expect_stops_cleanly(asio::io_context& io, std::vector<PeerLinks*> links) {
  for (PeerLinks* l : links) l->stop();
  io.restart();
  io.run_for(5s);
  EXPECT_TRUE(io.stopped()) << "work left after stop()";
}

TEST(PeerLinks, ExchangeTenThousandMessagesBothWaysInOrder) {
  constexpr std::size_t count = 10000;
  asio::io_context io;
  const std::uint16_t port_a = reserve_port(io), port_b = reserve_port(io);
  std::vector<Message> at_a, at_b;
  PeerLinks a(io, options("c", 1, {{2, loopback(port_b)}}),
              [&](const Message& m) { at_a.push_back(m); });
  PeerLinks b(io, options("c", 2, {{1, loopback(port_a)}}),
              [&](const Message& m) { at_b.push_back(m); });
  ASSERT_FALSE(a.listen(loopback(port_a)));
  ASSERT_FALSE(b.listen(loopback(port_b)));
  EXPECT_EQ(a.port(), port_a);
  a.start();
  b.start();
  // Half queued before the links are up, half sent while they run.
  for (std::size_t i = 0; i < count / 2; ++i) {
    a.send(write_message(1, 2, i));
    b.send(write_message(2, 1, i));
  }
  ASSERT_TRUE(run_until(io, [&] { return a.connected_peers() == 1 && b.connected_peers() == 1; },
                        5s));
  for (std::size_t i = count / 2; i < count; ++i) {
    a.send(write_message(1, 2, i));
    b.send(write_message(2, 1, i));
    if (i % 1000 == 0) io.poll();
  }
  // Until delivered, and until each sender has seen its last write complete (which may come
  // after the receiver has the bytes).
  const auto all_done = [&] {
    return at_a.size() == count && at_b.size() == count && a.stats().at(2).queued_bytes == 0 &&
           b.stats().at(1).queued_bytes == 0;
  };
  ASSERT_TRUE(run_until(io, all_done, 20s)) << at_a.size() << " and " << at_b.size() << " received";
  expect_in_order(at_b, 1, 2);
  expect_in_order(at_a, 2, 1);

  const PeerLinks::LinkStats s = a.stats().at(2);
  EXPECT_EQ(s.state, LinkState::connected);
  EXPECT_EQ(s.frames_sent, count);
  EXPECT_EQ(s.frames_received, count);
  EXPECT_EQ(s.dropped_queue_full, 0u);
  EXPECT_EQ(s.queued_bytes, 0u);
  EXPECT_GT(s.bytes_sent, count * peer_frame_header_bytes);
  expect_stops_cleanly(io, {&a, &b});
}

// A peer given by host name is looked up on every connection attempt: "localhost" reaches the
// listener on 127.0.0.1 (whatever else the name resolves to is tried and refused first).
TEST(PeerLinks, ReachesAPeerByHostName) {
  asio::io_context io;
  const std::uint16_t port_a = reserve_port(io), port_b = reserve_port(io);
  std::vector<Message> at_b;
  PeerLinksOptions oa = options("kv", 1, {});
  oa.peers[2] = HostPort{"localhost", port_b};
  PeerLinks a(io, oa, [](const Message&) {});
  PeerLinks b(io, options("kv", 2, {{1, loopback(port_a)}}), [&](const Message& m) { at_b.push_back(m); });
  ASSERT_FALSE(a.listen(loopback(port_a)));
  ASSERT_FALSE(b.listen(loopback(port_b)));
  a.start();
  b.start();
  for (std::uint64_t i = 0; i < 10; ++i) a.send(write_message(1, 2, i));
  ASSERT_TRUE(run_until(io, [&] { return at_b.size() == 10; }, 10s)) << at_b.size() << " received";
  expect_in_order(at_b, 1, 2);
  EXPECT_EQ(a.stats().at(2).state, LinkState::connected);
  expect_stops_cleanly(io, {&a, &b});
}

TEST(PeerLinks, RefusesALinkFromAnotherCluster) {
  asio::io_context io;
  const std::uint16_t port_a = reserve_port(io), port_b = reserve_port(io);
  std::size_t delivered = 0;
  PeerLinks a(io, options("one", 1, {{2, loopback(port_b)}}), [&](const Message&) { ++delivered; });
  PeerLinks b(io, options("two", 2, {{1, loopback(port_a)}}), [&](const Message&) { ++delivered; });
  ASSERT_FALSE(a.listen(loopback(port_a)));
  ASSERT_FALSE(b.listen(loopback(port_b)));
  testing::internal::CaptureStderr();
  a.start();
  for (std::uint64_t i = 0; i < 10; ++i) a.send(write_message(1, 2, i));
  // Refused, then retried after a backoff: refused again.
  const bool retried = run_until(io, [&] { return a.stats().at(2).reconnects >= 2; }, 5s);
  const std::string log = testing::internal::GetCapturedStderr();
  ASSERT_TRUE(retried);
  EXPECT_EQ(delivered, 0u);
  EXPECT_EQ(a.connected_peers(), 0u);
  EXPECT_NE(a.stats().at(2).state, LinkState::connected);
  EXPECT_GT(a.stats().at(2).queued_bytes, 0u);  // kept for a link that may yet come up
  EXPECT_NE(log.find("peer: refused link from 127.0.0.1:"), std::string::npos) << log;
  EXPECT_NE(log.find(": cluster id 'one' != 'two'\n"), std::string::npos) << log;
  expect_stops_cleanly(io, {&a, &b});
}

TEST(PeerLinks, ReachesAPeerThatStartsLaterAndDeliversWhatWasQueued) {
  constexpr std::size_t count = 100;
  asio::io_context io;
  const std::uint16_t port_a = reserve_port(io), port_b = reserve_port(io);
  std::vector<Message> at_b;
  PeerLinks a(io, options("c", 1, {{2, loopback(port_b)}}), [](const Message&) {});
  ASSERT_FALSE(a.listen(loopback(port_a)));
  testing::internal::CaptureStderr();  // the connection refusals, logged once
  a.start();
  for (std::size_t i = 0; i < count; ++i) a.send(write_message(1, 2, i));
  run_for(io, 300ms);
  PeerLinks::LinkStats s = a.stats().at(2);
  EXPECT_NE(s.state, LinkState::connected);
  EXPECT_GE(s.reconnects, 1u);
  EXPECT_GT(s.queued_bytes, 0u);

  PeerLinks b(io, options("c", 2, {{1, loopback(port_a)}}),
              [&](const Message& m) { at_b.push_back(m); });
  ASSERT_FALSE(b.listen(loopback(port_b)));
  b.start();
  const bool arrived = run_until(
      io, [&] { return at_b.size() == count && a.stats().at(2).queued_bytes == 0; }, 5s);
  testing::internal::GetCapturedStderr();
  ASSERT_TRUE(arrived) << at_b.size() << " received";
  expect_in_order(at_b, 1, 2);
  s = a.stats().at(2);
  EXPECT_EQ(s.state, LinkState::connected);
  EXPECT_EQ(s.frames_sent, count);
  EXPECT_EQ(s.queued_bytes, 0u);
  expect_stops_cleanly(io, {&a, &b});
}

TEST(PeerLinks, DropsAndCountsWhenAPeersQueueIsFull) {
  asio::io_context io;
  PeerLinksOptions o = options("c", 1, {{2, loopback(reserve_port(io))}});
  const std::size_t frame_bytes = encoded(write_message(1, 2, 0)).size();
  o.queue_bytes_max = 10 * frame_bytes;
  PeerLinks a(io, o, [](const Message&) {});
  for (int i = 0; i < 15; ++i) a.send(write_message(1, 2, 0));
  const PeerLinks::LinkStats s = a.stats().at(2);
  EXPECT_EQ(s.queued_bytes, 10 * frame_bytes);
  EXPECT_EQ(s.dropped_queue_full, 5u);
}

// A sender of garbage loses its own connection; the node keeps serving its other links.
TEST(PeerLinks, ADecodeErrorClosesOnlyThatConnection) {
  asio::io_context io;
  const std::uint16_t port_a = reserve_port(io), port_b = reserve_port(io);
  std::vector<Message> at_b;
  PeerLinks a(io, options("c", 1, {{2, loopback(port_b)}}), [](const Message&) {});
  PeerLinks b(io, options("c", 2, {{1, loopback(port_a)}, {3, loopback(reserve_port(io))}}),
              [&](const Message& m) { at_b.push_back(m); });
  ASSERT_FALSE(a.listen(loopback(port_a)));
  ASSERT_FALSE(b.listen(loopback(port_b)));
  a.start();
  ASSERT_TRUE(run_until(io, [&] { return a.connected_peers() == 1; }, 5s));

  // Node 3 (by its handshake) connects by hand, then sends a frame that fails its checksum.
  tcp::socket rogue(io);
  rogue.connect(loopback(port_b));
  std::string bytes;
  encode_handshake(Handshake{"c", 3, peer_protocol_version}, bytes);
  std::string bad = encoded(write_message(3, 2, 0));
  bad.back() = static_cast<char>(bad.back() ^ 0x01);
  bytes += bad;
  asio::write(rogue, asio::buffer(bytes));
  bool rogue_closed = false;
  std::string reply(256, '\0');
  std::function<void(boost::system::error_code, std::size_t)> on_read =
      [&](boost::system::error_code ec, std::size_t) {
        if (ec) rogue_closed = true;
        else rogue.async_read_some(asio::buffer(reply), on_read);
      };
  rogue.async_read_some(asio::buffer(reply), on_read);

  testing::internal::CaptureStderr();
  a.send(write_message(1, 2, 0));
  const bool ok = run_until(io, [&] { return rogue_closed && at_b.size() == 1; }, 5s);
  const std::string log = testing::internal::GetCapturedStderr();
  ASSERT_TRUE(ok);
  EXPECT_NE(log.find("(node 3): frame checksum mismatch"), std::string::npos) << log;
  a.send(write_message(1, 2, 1));
  ASSERT_TRUE(run_until(io, [&] { return at_b.size() == 2; }, 5s));
  expect_in_order(at_b, 1, 2);
  rogue.close();
  expect_stops_cleanly(io, {&a, &b});
}

TEST(PeerLinks, ReconnectsAfterThePeerRestarts) {
  asio::io_context io;
  const std::uint16_t port_a = reserve_port(io), port_b = reserve_port(io);
  std::vector<Message> at_b;
  PeerLinks a(io, options("c", 1, {{2, loopback(port_b)}}), [](const Message&) {});
  ASSERT_FALSE(a.listen(loopback(port_a)));
  testing::internal::CaptureStderr();
  a.start();
  {
    PeerLinks b(io, options("c", 2, {{1, loopback(port_a)}}), [](const Message&) {});
    ASSERT_FALSE(b.listen(loopback(port_b)));
    ASSERT_TRUE(run_until(io, [&] { return a.connected_peers() == 1; }, 5s));
  }  // b stops: its end of the link closes, and a notices without having to write
  ASSERT_TRUE(run_until(io, [&] { return a.connected_peers() == 0; }, 5s));
  for (std::uint64_t i = 0; i < 10; ++i) a.send(write_message(1, 2, i));

  PeerLinks b(io, options("c", 2, {{1, loopback(port_a)}}),
              [&](const Message& m) { at_b.push_back(m); });
  ASSERT_FALSE(b.listen(loopback(port_b)));  // the same port, as a restarted node would
  const bool arrived = run_until(io, [&] { return at_b.size() == 10; }, 5s);
  const std::string log = testing::internal::GetCapturedStderr();
  ASSERT_TRUE(arrived) << log;
  expect_in_order(at_b, 1, 2);
  EXPECT_GE(a.stats().at(2).reconnects, 1u);
  EXPECT_NE(log.find("link to node 2 at 127.0.0.1:" + std::to_string(port_b) +
                     " failed: connection closed by peer"),
            std::string::npos)
      << log;
  expect_stops_cleanly(io, {&a, &b});
}

TEST(PeerLinks, StopFromOnMessageDeliversNothingMore) {
  asio::io_context io;
  const std::uint16_t port_a = reserve_port(io), port_b = reserve_port(io);
  std::size_t delivered = 0;
  PeerLinks a(io, options("c", 1, {{2, loopback(port_b)}}), [](const Message&) {});
  std::unique_ptr<PeerLinks> b;
  b = std::make_unique<PeerLinks>(io, options("c", 2, {{1, loopback(port_a)}}),
                                  [&](const Message&) {
                                    if (++delivered == 5) b->stop();
                                  });
  ASSERT_FALSE(b->listen(loopback(port_b)));
  testing::internal::CaptureStderr();
  a.start();
  for (std::uint64_t i = 0; i < 100; ++i) a.send(write_message(1, 2, i));
  run_until(io, [&] { return a.connected_peers() == 0 && a.stats().at(2).reconnects > 0; }, 2s);
  testing::internal::GetCapturedStderr();
  EXPECT_EQ(delivered, 5u);
  a.stop();
  io.restart();
  io.run_for(5s);
  EXPECT_TRUE(io.stopped());
}

// Links destroyed while operations are pending: the completions still find live objects, and
// the loop drains.
TEST(PeerLinks, DestroyedWithWorkPendingDrainsCleanly) {
  asio::io_context io;
  const std::uint16_t port_a = reserve_port(io), port_b = reserve_port(io);
  std::vector<Message> at_b;
  {
    PeerLinks a(io, options("c", 1, {{2, loopback(port_b)}}), [](const Message&) {});
    PeerLinks b(io, options("c", 2, {{1, loopback(port_a)}}),
                [&](const Message& m) { at_b.push_back(m); });
    ASSERT_FALSE(a.listen(loopback(port_a)));
    ASSERT_FALSE(b.listen(loopback(port_b)));
    a.start();
    b.start();
    ASSERT_TRUE(run_until(io, [&] { return a.connected_peers() == 1; }, 5s));
    for (std::uint64_t i = 0; i < 1000; ++i) a.send(write_message(1, 2, i));
    io.poll_one();
  }
  const std::size_t before = at_b.size();
  io.restart();
  io.run_for(5s);
  EXPECT_TRUE(io.stopped());
  EXPECT_EQ(at_b.size(), before);  // nothing delivered after stop
}

TEST(PeerLinks, HandshakeTimesOutOnBothSides) {
  asio::io_context io;
  // A listener that accepts and never answers: the connecting side gives up and retries.
  tcp::acceptor silent(io, loopback(0));
  std::vector<tcp::socket> held;
  std::function<void(boost::system::error_code, tcp::socket)> on_accept =
      [&](boost::system::error_code ec, tcp::socket socket) {
        if (ec) return;
        held.push_back(std::move(socket));
        silent.async_accept(on_accept);
      };
  silent.async_accept(on_accept);
  const std::uint16_t port_b = reserve_port(io);
  PeerLinksOptions o = options("c", 1, {{2, loopback(silent.local_endpoint().port())}});
  o.handshake_timeout = 100ms;
  PeerLinks a(io, o, [](const Message&) {});
  // A peer listener that is connected to and never told who is there: it closes the link.
  PeerLinksOptions ob = options("c", 2, {{1, loopback(reserve_port(io))}});
  ob.handshake_timeout = 100ms;
  PeerLinks b(io, ob, [](const Message&) {});
  ASSERT_FALSE(b.listen(loopback(port_b)));
  tcp::socket mute(io);
  mute.connect(loopback(port_b));
  bool mute_closed = false;
  std::array<char, 64> sink{};
  mute.async_read_some(asio::buffer(sink),
                       [&](boost::system::error_code ec, std::size_t) { mute_closed = !!ec; });

  testing::internal::CaptureStderr();
  a.start();
  const bool ok = run_until(
      io, [&] { return mute_closed && a.stats().at(2).reconnects >= 2; }, 5s);
  const std::string log = testing::internal::GetCapturedStderr();
  ASSERT_TRUE(ok) << log;
  EXPECT_EQ(a.connected_peers(), 0u);
  EXPECT_NE(log.find("failed: no handshake within 100 ms"), std::string::npos) << log;
  EXPECT_NE(log.find(": no handshake within 100 ms\n"), std::string::npos) << log;
  silent.close();
  held.clear();
  mute.close();
  expect_stops_cleanly(io, {&a, &b});
}

TEST(PeerLinks, ListenReportsErrors) {
  asio::io_context io;
  PeerLinks a(io, options("c", 1, {}), [](const Message&) {});
  PeerLinks b(io, options("c", 2, {}), [](const Message&) {});
  EXPECT_EQ(a.port(), 0);
  ASSERT_FALSE(a.listen(loopback(0)));
  EXPECT_NE(a.port(), 0);
  EXPECT_EQ(a.listen(loopback(0)), asio::error::already_open);
  EXPECT_EQ(b.listen(loopback(a.port())), asio::error::address_in_use);
  EXPECT_EQ(b.port(), 0);
}

}  // namespace
}  // namespace kv
