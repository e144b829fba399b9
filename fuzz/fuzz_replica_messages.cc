// The replica state machine (core/replica.h) driven by a program read from the input: peer
// messages decoded by the peer codec, ticks, client requests, bridge replies and restarts, with
// check_invariants() after every step. The replica is one node of a 3-member cluster; the
// program plays the other two members, the clients, the bridges and the clock.
//
// Input: two config bytes, then steps, each an op byte and its arguments (fuzz/common.h Reader).
//   config a     self = 1 + a % 3; bit 2: sloppy quorum; (a >> 3) % 3: PostgreSQL off, sync or
//                async; bit 5: the legacy API; bit 6: tiny limits
//   config b     bit 0: N = 2, else 3; R = 1 + (b >> 1) % N; W = 1 + (b >> 3) % N
//   0 frame      u8 length, payload: a PeerMessage payload, framed with a good checksum and
//                decoded by decode_message; from/to are mapped onto the cluster as the link
//                would require them to be (from another member, to this node)
//   1 answer     u8 index, record args: a reply (ReadResp/WriteAck) to a message the replica sent
//   2 request    u8 body, key, record args: a ReadReq/WriteReq/ReadResp/WriteAck from a peer
//   3 tick       u16 ms forward
//   4 client     u8 op, key, value, u8 quorums
//   5 bridge     u8 index, u8 shape, record args: a reply to a call it made, or (shape bit 0) a
//                stray reply with an id it never issued, or (bit 6) a reply to a call of an
//                incarnation before a restart; it must ignore both
//   6 restart    the node restarts from what it persisted (encoded and decoded as WAL records)
//   7 duplicate  u8 index: a message delivered before, delivered again
//   8 clock back u16 ms backwards (the node reads the wall clock, which may step back)
//   9 ae         u8 shape and its fields: an anti-entropy message from a peer (tree roots, with
//                this ring's fingerprint or another; leaves answering the node's last exchange
//                or a stray one; a key list; a want list), ranges and leaves in and out of bounds
//  10 members    u8 shape and its fields: a heartbeat, or a members table (membership.h) that
//                may name a stranger, the node itself, any state, generation and epoch
// Besides check_invariants and check_trees: every client request is answered at most once, and, once the
// program ends and the clock runs on, exactly once; every bridge call id is new; everything the
// replica sends goes to another member and survives the codec.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "core/pb_convert.h"
#include "core/replica.h"
#include "core/wal.h"
#include "fuzz/common.h"
#include "net/peer_codec.h"

namespace kv::fuzz {
namespace {

constexpr NodeId members = 3;
constexpr std::size_t remembered_max = 64;  // sent and delivered messages kept for ops 1 and 7
constexpr std::uint64_t start_ms = 1'700'000'000'000;
constexpr const char* keys[] = {"a", "b", "c", "key:000001", "x"};

std::string key_from(Reader& in) {
  const std::uint8_t k = in.u8();
  if (k < 200) return keys[k % std::size(keys)];
  return in.short_string();  // any bytes, the empty key and long keys included
}

Version version_from(Reader& in, std::uint64_t now) {
  const std::uint8_t shape = in.u8();
  Version v;
  switch (shape & 3) {
    case 0: v.physical_ms = now - (in.u16() % 5000); break;  // a little in the past
    case 1: v.physical_ms = now + (in.u16() % 5000); break;  // a peer whose clock runs ahead
    case 2: break;                                           // the zero version (hydration)
    default: v.physical_ms = in.u64(); break;
  }
  v.counter = (shape >> 2) & 3;
  v.node = shape >> 6;  // 0-3: node 0 is how a hydrated record is stamped
  return v;
}

// `hostile`: a tombstone may carry a value, as a damaged PostgreSQL row could (the peer codec
// cannot carry one: the encoder requires it away and the decoder refuses it).
std::optional<Record> record_from(Reader& in, std::uint64_t now, bool hostile = false) {
  const std::uint8_t shape = in.u8();
  if (shape % 4 == 0) return std::nullopt;
  Record r;
  r.version = version_from(in, now);
  r.tombstone = shape % 4 == 1;
  if (!r.tombstone || (hostile && (shape & 0x80))) r.value = in.short_string();
  return r;
}

class Harness {
 public:
  explicit Harness(Reader& in) : in_(in) {
    const std::uint8_t a = in.u8(), b = in.u8();
    config_.self = 1 + a % members;
    for (NodeId m = 1; m <= members; ++m) config_.members.push_back(m);
    config_.sloppy_quorum = (a & 4) != 0;
    config_.pg_mode = static_cast<PgMode>((a >> 3) % 3);
    config_.legacy = (a & 0x20) != 0;
    if (a & 0x40) {  // tiny limits, so that every refusal path is reachable
      config_.key_bytes_max = 16;
      config_.value_bytes_max = 32;
      config_.requests_in_flight_max = 3;
      config_.hints_max = 2;
      config_.hint_deliveries_per_interval_max = 1;
      config_.pg_queue_max = 2;
      config_.pg_writes_in_flight_max = 1;
      config_.miss_cache_max = 1;
      config_.legacy_breaker_failures = 1;
    }
    config_.replicas = (b & 1) ? 2 : 3;  // with N=2, the third member is a fallback
    config_.read_quorum = 1 + (b >> 1) % config_.replicas;
    config_.write_quorum = 1 + (b >> 3) % config_.replicas;
    now_ = latest_ = start_ms;
    boot();
  }

  void run() {
    while (!in_.empty()) {
      step(in_.u8());
      drain();
    }
    finish();
  }

 private:
  void boot() {
    ReplicaConfig c = config_;
    c.request_id_base = std::uint64_t{incarnation_} << 32;
    replica_.emplace(c, disk_, now_);
    check();
  }

  void step(std::uint8_t op) {
    switch (op % 11) {
      case 0: {
        std::string payload(in_.bytes(in_.u8()));
        std::string frame(peer_frame_header_bytes, '\0');
        put_u32_le(static_cast<std::uint32_t>(payload.size()), frame.data());
        put_u32_le(crc32c(payload), frame.data() + 4);
        frame += payload;
        Message m;
        if (decode_message(frame, peer_frame_bytes_max_default, m).status ==
            FrameDecode::Status::complete) {
          m.from = other(m.from);
          m.to = config_.self;
          deliver(m);
        }
        break;
      }
      case 1: answer(); break;
      case 2: request(); break;
      case 3:
        now_ += in_.u16();
        latest_ = std::max(latest_, now_);
        replica_->on_tick(now_);
        break;
      case 4: client(); break;
      case 5: bridge(); break;
      case 6: restart(); break;
      case 7: {
        if (delivered_.empty()) break;
        const Message m = delivered_[in_.u8() % delivered_.size()];
        deliver(m);
        break;
      }
      case 8: now_ -= in_.u16(); replica_->on_tick(now_); break;
      case 9: anti_entropy(); break;
      default: membership(); break;
    }
  }

  void anti_entropy() {
    const std::uint8_t shape = in_.u8();
    Message m{other(shape >> 2), config_.self, {}};
    const std::uint64_t req = (shape & 0x10) ? in_.u64() : last_ae_req_;
    auto range = [&] { return static_cast<std::uint32_t>(in_.u16() % 512); };  // 192 exist
    switch (shape & 3) {
      case 0: {
        AeTreeReq t{req, (shape & 0x20) ? in_.u64() : replica_->ring().fingerprint(), {}};
        for (int n = in_.u8() % 8; n > 0; --n) t.ranges.push_back(AeRangeRoot{range(), in_.u8() < 64 ? 0 : in_.u64()});
        m.body = std::move(t);
        break;
      }
      case 1: {
        AeTreeResp t{req, {}};
        for (int n = in_.u8() % 4; n > 0; --n) {
          AeRangeLeaves l{range(), std::vector<std::uint64_t>(ae_leaves, 0)};
          for (std::uint64_t& leaf : l.leaves) leaf = in_.u8() < 200 ? 0 : in_.u64();
          t.ranges.push_back(std::move(l));
        }
        m.body = std::move(t);
        break;
      }
      case 2: {
        AeKeysReq k{req, {}, {}};
        for (int n = in_.u8() % 4; n > 0; --n) {
          AeBucket b{range(), static_cast<std::uint32_t>(in_.u8() % ae_leaves), {}, {}};
          if (in_.u8() & 1) b.after = key_from(in_);
          if (in_.u8() & 1) b.upto = key_from(in_);
          k.buckets.push_back(std::move(b));
        }
        for (int n = in_.u8() % 6; n > 0; --n) {
          k.keys.push_back(AeKeyVersion{key_from(in_), version_from(in_, now_), in_.u64()});
        }
        m.body = std::move(k);
        break;
      }
      default: {
        AeKeysResp k{req, {}};
        for (int n = in_.u8() % 6; n > 0; --n) k.want.push_back(key_from(in_));
        m.body = std::move(k);
        break;
      }
    }
    deliver(m);
  }

  // A heartbeat (with the node's own table hash or another) or a members table whose entries
  // may name a stranger (node 4), the node itself, any state, generation and epoch.
  void membership() {
    const std::uint8_t shape = in_.u8();
    Message m{other(shape >> 2), config_.self, {}};
    if ((shape & 1) == 0) {
      m.body = Heartbeat{in_.u16(), (shape & 2) ? replica_->members_hash() : in_.u64()};
    } else {
      Gossip g;
      NodeId id = 0;
      for (int n = in_.u8() % 4; n > 0; --n) {
        id += 1 + in_.u8() % 2;
        if (id > members + 1) break;
        g.members.push_back(Member{id, static_cast<MemberState>(1 + in_.u8() % 4), in_.u16(), in_.u8(),
                                   in_.short_string().substr(0, member_addr_bytes_max), {}});
      }
      m.body = std::move(g);
    }
    deliver(m);
  }

  NodeId other(NodeId n) const {
    const NodeId o = 1 + n % (members - 1);  // 1 or 2: the k-th member that is not self
    return o >= config_.self ? o + 1 : o;
  }

  // Through the codec, as a link carries it.
  void deliver(const Message& m) {
    std::string frame;
    encode_message(m, frame);
    Message decoded;
    const FrameDecode d = decode_message(frame, peer_frame_bytes_max_default, decoded);
    require(d.status == FrameDecode::Status::complete, "an encoded message does not decode");
    require(same(decoded, m), "a message changed through the codec");
    remember(delivered_, decoded);
    replica_->on_message(decoded, now_);
  }

  void answer() {
    if (sent_.empty()) return;
    const Message& s = sent_[in_.u8() % sent_.size()];
    Message m{s.to, s.from, {}};
    if (const auto* rq = std::get_if<ReadReq>(&s.body)) {
      m.body = ReadResp{rq->req, rq->key, record_from(in_, now_)};
    } else if (const auto* wq = std::get_if<WriteReq>(&s.body)) {
      Version v = wq->record.version;
      if (in_.u8() == 0xff) v = version_from(in_, now_);  // an ack of some other version
      m.body = WriteAck{wq->req, wq->kind, wq->key, v};
    } else {
      return;  // replies are not answered
    }
    deliver(m);
  }

  void request() {
    const std::uint8_t shape = in_.u8();
    Message m{other(shape >> 2), config_.self, {}};
    const std::uint64_t req = in_.u8() < 128 ? in_.u64() : last_req_ + in_.u8() % 4;
    std::string key = key_from(in_);
    switch (shape & 3) {
      case 0: m.body = ReadReq{req, key}; break;
      case 1: {
        WriteReq w{req, static_cast<WriteKind>(1 + in_.u8() % 4), key, {}, 0};
        auto r = record_from(in_, now_);
        if (!r) break;
        w.record = *r;
        const std::uint8_t h = in_.u8();
        w.hint_for = h < 192 ? 0 : h % (members + 2);  // self, another member or a stranger
        m.body = w;
        break;
      }
      case 2: m.body = ReadResp{req, key, record_from(in_, now_)}; break;
      default: m.body = WriteAck{req, WriteKind::client, key, version_from(in_, now_)}; break;
    }
    deliver(m);
  }

  void client() {
    const std::uint8_t op = in_.u8();
    ClientRequest rq;
    rq.id = next_client_++;
    rq.op = static_cast<OpType>(op % 3);
    rq.key = key_from(in_);
    if (rq.op == OpType::put) rq.value = in_.short_string();
    const std::uint8_t q = in_.u8();
    rq.r = q & 3;  // 0 (the default) to 3; 3 is outside 1..N when N=2
    rq.w = (q >> 2) & 3;
    if (q & 0x10) rq.r = rq.w = 7;  // outside 1..N
    open_.insert(rq.id);
    replica_->on_client(rq, now_);
  }

  void bridge() {
    const std::uint8_t index = in_.u8(), shape = in_.u8();
    BridgeReply r;
    if ((shape & 0x40) && !lost_calls_.empty()) {
      // A reply to a call of a past incarnation, which died before the answer came.
      const auto& [id, kind] = lost_calls_[index % lost_calls_.size()];
      r.id = id;
      r.kind = kind;
    } else if ((shape & 1) || calls_.empty()) {
      r.id = in_.u64();
      if (issued_.contains(r.id)) return;  // only ids it never issued are stray for sure
      r.kind = static_cast<BridgeKind>(1 + (shape >> 1) % 3);
    } else {
      auto it = std::next(calls_.begin(), static_cast<long>(index % calls_.size()));
      r.id = it->first;
      r.kind = it->second;
      calls_.erase(it);
    }
    if (shape & 0x10) {
      r.error = std::make_error_code(std::errc::timed_out);
      r.detail = "fuzz: service failed";
    } else if (r.kind != BridgeKind::pg_write) {
      r.record = record_from(in_, now_, /*hostile=*/true);
      if (r.record && r.kind == BridgeKind::legacy_fetch && !(shape & 0x20)) {
        r.record->version = Version{};  // as the contract has it; bit 5 breaks the contract
        r.record->tombstone = false;
      }
    }
    replica_->on_bridge_reply(r, now_);
  }

  void restart() {
    // What survived is what was persisted; it goes through the WAL codec and recovery.
    ++incarnation_;
    std::string log;
    for (const WalEntry& e : persisted_) wal_encode(e, log);
    auto recovered = recover(std::nullopt, log);
    require(recovered.has_value() && recovered.value().wal_tail == WalTail::clean,
            "the WAL written by the replica did not recover cleanly");
    disk_ = std::move(recovered.value().state);
    replica_.reset();
    // Calls lost with the process: replies to them must now be ignored.
    lost_calls_.insert(lost_calls_.end(), calls_.begin(), calls_.end());
    calls_.clear();
    open_.clear();   // so are its clients' requests
    sent_.clear();
    boot();
  }

  void drain() {
    Ready ready = replica_->take_ready();
    for (WalEntry& e : ready.persist) persisted_.push_back(std::move(e));
    for (const Message& m : ready.messages) {
      require(m.from == config_.self, "a message sent in another node's name");
      require(m.to != config_.self && m.to >= 1 && m.to <= members,
              "a message to n" + std::to_string(m.to) + ", not another member");
      std::string frame;
      encode_message(m, frame);
      Message back;
      require(decode_message(frame, peer_frame_bytes_max_default, back).status ==
                  FrameDecode::Status::complete,
              "a message the replica sent does not decode");
      if (const auto* rq = std::get_if<ReadReq>(&m.body)) last_req_ = rq->req;
      if (const auto* wq = std::get_if<WriteReq>(&m.body)) last_req_ = wq->req;
      if (const auto* t = std::get_if<AeTreeReq>(&m.body)) last_ae_req_ = t->req;
      remember(sent_, m);
    }
    for (const ClientReply& r : ready.replies) {
      require(open_.erase(r.id) == 1,
              "a reply to client request " + std::to_string(r.id) + ", not open");
    }
    for (const BridgeCall& c : ready.bridge_calls) {
      require(issued_.insert(c.id).second, "bridge call id " + std::to_string(c.id) + " reused");
      require(config_.pg_mode != PgMode::off || c.kind == BridgeKind::legacy_fetch,
              "PostgreSQL called while it is off");
      require(config_.legacy || c.kind != BridgeKind::legacy_fetch,
              "the legacy API called while it is off");
      calls_.emplace(c.id, c.kind);
    }
    check();
  }

  void check() {
    if (const std::string e = replica_->check_invariants(); !e.empty()) fail(e);
    if (const std::string e = replica_->check_trees(); !e.empty()) fail(e);
  }

  // The program is over: the network and the bridges go silent, the clock runs on. Every
  // request must end (request_timeout_ms), bridge calls that never return included.
  // Deadlines are on the node's own clock: after a step back they are that much further away.
  void finish() {
    now_ = std::max(now_, latest_);
    for (int i = 0; i < 200 && !open_.empty(); ++i) {
      now_ += 500;
      replica_->on_tick(now_);
      drain();
    }
    require(open_.empty(), std::to_string(open_.size()) +
                               " client requests never answered after 100 s of silence");
  }

  static void remember(std::deque<Message>& list, const Message& m) {
    list.push_back(m);
    if (list.size() > remembered_max) list.pop_front();
  }

  Reader& in_;
  ReplicaConfig config_;
  std::optional<Replica> replica_;
  DurableState disk_;
  std::vector<WalEntry> persisted_;
  std::uint32_t incarnation_ = 0;
  std::uint64_t now_ = 0;
  std::uint64_t latest_ = 0;  // the clock's furthest reading so far
  std::uint64_t next_client_ = 1;
  std::uint64_t last_req_ = 0;
  std::uint64_t last_ae_req_ = 0;  // of the last exchange the node started
  std::set<std::uint64_t> open_;                 // client requests not answered yet
  std::set<std::uint64_t> issued_;               // every bridge call id ever issued
  std::map<std::uint64_t, BridgeKind> calls_;    // calls of this incarnation not answered yet
  std::vector<std::pair<std::uint64_t, BridgeKind>> lost_calls_;  // unanswered, of past ones
  std::deque<Message> sent_, delivered_;
};

}  // namespace
}  // namespace kv::fuzz

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  kv::fuzz::quiet_protobuf();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  kv::fuzz::Reader in(data, size);
  kv::fuzz::Harness(in).run();
  return 0;
}
