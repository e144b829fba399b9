// What crosses the core/driver boundary: client requests and replies, peer messages, calls to
// the bridges (PostgreSQL, legacy API) and their replies, and the Ready batch of outputs.
//
// Peer messages are plain structs here; the drivers carry them (the simulator in memory, kvnode
// framed as protobuf). Every message names the request it belongs to, so duplicates and stale
// replies can be recognised and ignored.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <variant>
#include <vector>

#include "core/errors.h"
#include "core/version.h"
#include "core/wal.h"

namespace kv {

// ---- Client side ----

enum class OpType : std::uint8_t { get, put, del };

// "get", "put" or "del": the name in metrics, traces and scenario files.
inline std::string_view op_name(OpType op) {
  return op == OpType::get ? "get" : op == OpType::put ? "put" : "del";
}

struct ClientRequest {
  std::uint64_t id = 0;  // chosen by the driver, echoed in the reply
  OpType op = OpType::get;
  std::string key;
  std::string value;      // put only
  std::uint32_t r = 0;    // read quorum; 0 = the configured default
  std::uint32_t w = 0;    // write quorum; 0 = the configured default
};


struct ClientReply {
  std::uint64_t id = 0;
  std::error_code error;          // empty on success
  std::string detail;             // human-readable, for error replies
  std::optional<Record> record;   // get: the newest record found (a tombstone means not found)
  Version version;                // put/del: the version written
};

// ---- Peer messages ----

struct ReadReq {
  std::uint64_t req = 0;
  std::string key;

  bool operator==(const ReadReq&) const = default;
};
struct ReadResp {
  std::uint64_t req = 0;
  std::string key;
  std::optional<Record> record;

  bool operator==(const ReadResp&) const = default;
};
enum class WriteKind : std::uint8_t {
  client = 1,         // a coordinator's write for a client
  repair = 2,         // read repair
  hint_delivery = 3,  // a held hint handed to its target
  anti_entropy = 4,   // a record one replica of a range found the other lacking (anti_entropy.h)
  reap = 5,           // a tombstone every replica holds is collected: drop it (anti_entropy.h)
};
struct WriteReq {
  std::uint64_t req = 0;
  WriteKind kind = WriteKind::client;
  std::string key;
  Record record;
  NodeId hint_for = 0;  // non-zero: the receiver is a fallback and holds this as a hint

  bool operator==(const WriteReq&) const = default;
};
struct WriteAck {
  std::uint64_t req = 0;
  WriteKind kind = WriteKind::client;
  std::string key;
  Version version;

  bool operator==(const WriteAck&) const = default;
};

// Anti-entropy (core/anti_entropy.h): two replicas compare the hash trees of the ranges they
// share, then the keys of the leaves that differ, and push each other what the other lacks (as
// WriteReq kind anti_entropy).
inline constexpr std::size_t ae_leaves = 16;  // leaves of one range's tree

struct AeRangeRoot {
  std::uint32_t range = 0;
  std::uint64_t root = 0;
  bool operator==(const AeRangeRoot&) const = default;
};
struct AeTreeReq {  // the initiator's roots, for ranges both replicate
  std::uint64_t req = 0;
  std::uint64_t ring = 0;  // Ring::fingerprint(): both must number the ranges alike
  std::vector<AeRangeRoot> ranges;
  bool operator==(const AeTreeReq&) const = default;
};
struct AeRangeLeaves {
  std::uint32_t range = 0;
  std::vector<std::uint64_t> leaves;  // exactly ae_leaves
  bool operator==(const AeRangeLeaves&) const = default;
};
struct AeTreeResp {  // the responder's leaves of the ranges whose roots differ
  std::uint64_t req = 0;
  std::vector<AeRangeLeaves> ranges;
  bool operator==(const AeTreeResp&) const = default;
};
struct AeBucket {  // one leaf of one range
  std::uint32_t range = 0;
  std::uint32_t leaf = 0;
  // The keys listed: those after `after` (empty: from the first) up to `upto` (empty: to the
  // last). A bucket too big for one message is listed in parts over several exchanges.
  std::string after;
  std::string upto;
  bool operator==(const AeBucket&) const = default;
};
struct AeKeyVersion {
  std::string key;
  Version version;
  std::uint64_t digest = 0;  // of the whole record: tells records apart that share a version
  bool operator==(const AeKeyVersion&) const = default;
};
struct AeKeysReq {  // the initiator's keys in the leaves that differ
  std::uint64_t req = 0;
  std::vector<AeBucket> buckets;
  std::vector<AeKeyVersion> keys;  // in key order
  bool operator==(const AeKeysReq&) const = default;
};
struct AeKeysResp {  // the keys the responder wants pushed (it pushed its own newer ones)
  std::uint64_t req = 0;
  std::vector<std::string> want;
  bool operator==(const AeKeysResp&) const = default;
};

// Membership (core/membership.h): every node's heartbeat to every other member, and the members
// table, sent to a peer whose heartbeat shows a table that differs from the receiver's.
struct Heartbeat {
  std::uint64_t generation = 0;  // the sender's
  std::uint64_t table = 0;       // the hash of the sender's members table
  bool operator==(const Heartbeat&) const = default;
};
struct Gossip {
  std::vector<Member> members;  // the sender's whole table, by id
  bool operator==(const Gossip&) const = default;
};

using MessageBody = std::variant<ReadReq, ReadResp, WriteReq, WriteAck, AeTreeReq, AeTreeResp,
                                 AeKeysReq, AeKeysResp, Heartbeat, Gossip>;

// True for the messages of one key's request, false for anti-entropy's tree exchange and
// membership.
template <class T>
inline constexpr bool keyed_message_v = requires(const T& t) { t.key; };

struct Message {
  NodeId from = 0;
  NodeId to = 0;
  MessageBody body;

  bool operator==(const Message&) const = default;
};

// ---- Bridges (PostgreSQL write-through and lookup, legacy read-through) ----
//
// The core decides when to call a bridge; the driver carries the call out (kvnode with libpq and
// libcurl, the simulator with its models) and must answer every call exactly once, with the same
// id and kind, including when the service failed or timed out (then `error` is set and `detail`
// says what happened). A call lost with a crashed process is never answered; the core of the next
// incarnation does not know its id and ignores any stray reply.
//
//   pg_write      upsert `record` for `key` only if its version is greater than the stored row's
//                 (physical_ms, counter, node compared in that order): an older or equal version
//                 is a no-op, so retries, duplicates and reordering are harmless. A tombstone is
//                 stored as a row with the tombstone flag and an empty value. Reply: no record.
//   pg_lookup     the row stored for `key`. Reply: `record` with the stored version, tombstone
//                 flag and value, or no record when there is no row.
//   legacy_fetch  GET the legacy API for `key`. Reply: a record with a zero version and the
//                 value (a hydration loses to any client write, C7), or no record on 404. Any
//                 other outcome (timeout, connection refused, 5xx, a body that is not the
//                 expected JSON) is an error.

enum class BridgeKind : std::uint8_t { pg_write = 1, pg_lookup = 2, legacy_fetch = 3 };

inline std::string_view bridge_name(BridgeKind kind) {
  return kind == BridgeKind::pg_write    ? "pg_write"
         : kind == BridgeKind::pg_lookup ? "pg_lookup"
                                         : "legacy_fetch";
}

struct BridgeCall {
  std::uint64_t id = 0;
  BridgeKind kind = BridgeKind::pg_write;
  std::string key;
  std::optional<Record> record;  // pg_write: what to upsert (version-guarded)
};

struct BridgeReply {
  std::uint64_t id = 0;
  BridgeKind kind = BridgeKind::pg_write;
  std::error_code error;         // set when the service failed or timed out
  std::string detail;            // with an error: what failed, for the client's error message
  std::optional<Record> record;  // pg_lookup: the stored row; legacy_fetch: the value (hydration)
};

// ---- The batch of outputs ----

// Everything one or more inputs produced, to be carried out in this order: first make every
// entry of `persist` durable (append and fsync), and only then send `messages`, answer `replies`
// and start `bridge_calls`. Batches are carried out in the order they were taken, so an output
// never leaves before what it depends on, from its own batch or an earlier one, is durable.
struct Ready {
  std::vector<WalEntry> persist;
  std::vector<Message> messages;
  std::vector<ClientReply> replies;
  std::vector<BridgeCall> bridge_calls;
  std::optional<std::uint64_t> next_tick_ms;  // local clock; call on_tick at or after it
  // Hints this node could not keep (hints_max reached): each key has fewer copies than N until a
  // read repairs it. For the log; nothing waits on it.
  std::vector<std::pair<NodeId, std::string>> hints_refused;  // (target, key)

  bool has_outputs() const {
    return !persist.empty() || !messages.empty() || !replies.empty() || !bridge_calls.empty();
  }
};

}  // namespace kv

