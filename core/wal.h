// The write-ahead log record codec and the shared recovery path.
//
// A record on disk is
//     [payload length: u32 LE][type: u8][crc32c: u32 LE][payload: length bytes]
// where the checksum (CRC-32C, Castagnoli) covers the length, the type and the payload, so a
// length damaged by a torn write is caught too. Payloads are the protobuf messages of kv.proto.
//
// Encode and decode are pure functions over bytes. Decoding a log stops at the first record that
// is incomplete (a torn tail: the process died mid-write) or fails its checksum or its parse
// (corruption): everything before it is returned, that point is reported as the valid length,
// and the caller truncates the file there. A damaged record is never returned as data.
//
// Recovery (snapshot + log replay) is one function, recover(), used by the simulator's process
// model and by kvnode alike.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <variant>
#include <vector>

#include "core/errors.h"
#include "core/member.h"
#include "core/store.h"
#include "core/version.h"

namespace kv {

inline constexpr std::size_t wal_header_bytes = 9;
// A payload larger than this is treated as corruption (a damaged length field), not allocated.
inline constexpr std::size_t wal_payload_bytes_max = 64u << 20;

enum class WalType : std::uint8_t {
  put = 1,        // pb::WalPut: a record merged into the store
  hint = 2,       // pb::WalHint: a hint kept for another replica
  hint_done = 3,  // pb::WalHintDone: a hint delivered and dropped
  snapshot = 4,   // pb::Snapshot: only in snapshot files
  drop = 5,       // pb::WalDrop: a tombstone collected (anti_entropy.h)
  members = 6,    // pb::WalMembers: the members table, when its ring view changed (membership.h)
};

struct WalPut {
  std::string key;
  Record record;
  bool operator==(const WalPut&) const = default;
};
struct WalHint {
  NodeId target = 0;
  std::string key;
  Record record;
  bool operator==(const WalHint&) const = default;
};
struct WalHintDone {
  NodeId target = 0;
  std::string key;
  Version version;
  bool operator==(const WalHintDone&) const = default;
};
// The tombstone of `key` at `version` is collected: the record leaves the store (a record of any
// other version stays: it was written after the drop was decided).
struct WalDrop {
  std::string key;
  Version version;
  bool operator==(const WalDrop&) const = default;
};
// The members table this node applied; replaces the one recovered so far.
struct WalMembers {
  std::vector<Member> members;
  bool operator==(const WalMembers&) const = default;
};
using WalEntry = std::variant<WalPut, WalHint, WalHintDone, WalDrop, WalMembers>;

// Appends the encoded record of `entry` to `out`.
void wal_encode(const WalEntry& entry, std::string& out);

enum class WalTail : std::uint8_t {
  clean,    // the bytes end exactly at a record boundary
  torn,     // the last record is incomplete
  corrupt,  // a record failed its checksum, its type or its payload parse
};

struct WalDecoded {
  std::vector<WalEntry> entries;
  std::size_t valid_bytes = 0;  // length of the prefix holding `entries`; truncate the file here
  WalTail tail = WalTail::clean;
};

// Decodes every whole, valid record from the start of `bytes`, stopping at the first bad one.
WalDecoded wal_decode(std::string_view bytes);

// Applies one entry to a durable state (the replay step of recovery).
void wal_apply(const WalEntry& entry, DurableState& state);

// A snapshot file is a sequence of records of type `snapshot`, each at most about
// snapshot_part_bytes (one entry may take it up to wal_payload_bytes_max), the last one marked.
inline constexpr std::size_t snapshot_part_bytes = 8u << 20;
std::string snapshot_encode(const DurableState& state);

enum class RecoveryError {
  snapshot_corrupt = 1,  // a snapshot is written atomically: damage means a broken disk, not a crash
};
const std::error_category& recovery_category();
std::error_code make_error_code(RecoveryError e);

struct Recovered {
  DurableState state;
  std::size_t wal_valid_bytes = 0;  // truncate the log to this length before appending
  WalTail wal_tail = WalTail::clean;
  std::size_t wal_records = 0;      // records replayed from the log
};

// Rebuilds the durable state: the snapshot (if any), then every valid record of the log.
Result<Recovered> recover(std::optional<std::string_view> snapshot, std::string_view wal);

}  // namespace kv

template <>
struct std::is_error_code_enum<kv::RecoveryError> : std::true_type {};
