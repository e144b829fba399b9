// The WAL record codec (framing, checksum, protobuf payloads) and recovery (see wal.h).
//
// Framing is shared by log records and the snapshot record; only the set of accepted types
// differs. Payload parsing rejects messages that no encoder here can produce (a put without a
// record, a tombstone with a value), because protobuf accepts almost any bytes as some message
// and the checksum alone cannot tell a buggy writer from a sound one.
#include "core/wal.h"

#include <cassert>
#include <string>
#include <utility>


#include "core/kv.pb.h"
#include "core/pb_convert.h"

namespace kv {
namespace {

constexpr std::size_t length_bytes = 4;
constexpr std::size_t crc_offset_bytes = 5;  // the crc follows the length and the type

// The checksum of one record: its length and type bytes, then its payload (skipping the crc).
std::uint32_t record_crc(const char* header, std::string_view payload) {
  return crc32c(std::string_view(header, crc_offset_bytes), payload);
}

// ---- conversions between the core types and their protobuf forms ----

using kv::from_pb;  // Version's, from pb_convert.h, beside the overloads below

std::optional<Record> from_pb(pb::Record& p) {
  Expected<Record> r = record_from_pb(p);
  if (!r) return std::nullopt;
  return std::move(r).value();
}

std::optional<WalPut> from_pb(pb::WalPut& p) {
  if (!p.has_record()) return std::nullopt;
  auto record = from_pb(*p.mutable_record());
  if (!record) return std::nullopt;
  return WalPut{p.key(), std::move(*record)};
}

std::optional<WalHint> from_pb(pb::WalHint& p) {
  if (!p.has_record()) return std::nullopt;
  auto record = from_pb(*p.mutable_record());
  if (!record) return std::nullopt;
  return WalHint{p.target(), p.key(), std::move(*record)};
}

std::optional<WalHintDone> from_pb(const pb::WalHintDone& p) {
  if (!p.has_version()) return std::nullopt;
  return WalHintDone{p.target(), p.key(), from_pb(p.version())};
}

std::optional<WalDrop> from_pb(const pb::WalDrop& p) {
  if (!p.has_version()) return std::nullopt;
  return WalDrop{p.key(), from_pb(p.version())};
}

std::optional<WalMembers> from_pb(pb::WalMembers& p) {
  auto members = members_from_pb(*p.mutable_members());
  if (!members) return std::nullopt;
  return WalMembers{std::move(members).value()};
}

// ---- framing ----

void append_record(WalType type, const google::protobuf::MessageLite& msg, std::string& out) {
  const std::size_t payload_bytes = msg.ByteSizeLong();
  // Decode refuses longer payloads as damage: writing one would lose it at the next recovery.
  assert(payload_bytes <= wal_payload_bytes_max);
  const std::size_t start = out.size();
  out.resize(start + wal_header_bytes);
  put_u32_le(static_cast<std::uint32_t>(payload_bytes), out.data() + start);
  out[start + length_bytes] = static_cast<char>(type);
  [[maybe_unused]] const bool serialized = msg.AppendToString(&out);
  assert(serialized && out.size() == start + wal_header_bytes + payload_bytes);
  const std::string_view payload(out.data() + start + wal_header_bytes, payload_bytes);
  put_u32_le(record_crc(out.data() + start, payload), out.data() + start + crc_offset_bytes);
}

bool is_known_type(std::uint8_t type) {
  return type >= static_cast<std::uint8_t>(WalType::put) &&
         type <= static_cast<std::uint8_t>(WalType::members);
}

struct Frame {
  WalTail status = WalTail::clean;  // clean: a whole record with a good checksum
  WalType type = WalType::put;
  std::string_view payload;
  std::size_t end = 0;  // offset just past the record
};

Frame bad_frame(WalTail status) {
  Frame f;
  f.status = status;
  return f;
}

// Reads the record framed at `at`; `at` must be before the end of `bytes`.
Frame read_frame(std::string_view bytes, std::size_t at) {
  assert(at < bytes.size());
  const std::size_t remaining = bytes.size() - at;
  if (remaining < wal_header_bytes) return bad_frame(WalTail::torn);
  const char* header = bytes.data() + at;
  const std::size_t payload_bytes = get_u32_le(header);
  const auto type = static_cast<std::uint8_t>(header[length_bytes]);
  // A whole header is written before any payload, so a bad length or type is damage even when
  // the payload is cut short.
  if (payload_bytes > wal_payload_bytes_max || !is_known_type(type)) {
    return bad_frame(WalTail::corrupt);
  }
  if (remaining - wal_header_bytes < payload_bytes) return bad_frame(WalTail::torn);
  const std::string_view payload = bytes.substr(at + wal_header_bytes, payload_bytes);
  if (record_crc(header, payload) != get_u32_le(header + crc_offset_bytes)) {
    return bad_frame(WalTail::corrupt);
  }
  return Frame{WalTail::clean, static_cast<WalType>(type), payload,
               at + wal_header_bytes + payload_bytes};
}

template <class Pb>
bool parse(std::string_view payload, Pb& msg) {
  return msg.ParseFromArray(payload.data(), static_cast<int>(payload.size()));
}

template <class Pb>
std::optional<WalEntry> parse_entry(std::string_view payload) {
  Pb msg;
  if (!parse(payload, msg)) return std::nullopt;
  auto entry = from_pb(msg);
  if (!entry) return std::nullopt;
  return WalEntry{std::move(*entry)};
}

std::optional<WalEntry> parse_log_payload(WalType type, std::string_view payload) {
  switch (type) {
    case WalType::put:
      return parse_entry<pb::WalPut>(payload);
    case WalType::hint:
      return parse_entry<pb::WalHint>(payload);
    case WalType::hint_done:
      return parse_entry<pb::WalHintDone>(payload);
    case WalType::drop:
      return parse_entry<pb::WalDrop>(payload);
    case WalType::members:
      return parse_entry<pb::WalMembers>(payload);
    case WalType::snapshot:
      return std::nullopt;  // a snapshot inside a log is damage
  }
  return std::nullopt;
}

// Loads one part of a snapshot; false if it is invalid or out of sequence. `last` is set when
// the part says it is the final one.
bool load_snapshot_part(std::string_view payload, std::uint64_t expected_part, bool& last,
                        DurableState& state) {
  pb::Snapshot snap;
  if (!parse(payload, snap) || snap.part() != expected_part) return false;
  last = snap.last();
  for (pb::WalPut& p : *snap.mutable_entries()) {
    auto put = from_pb(p);
    if (!put) return false;
    state.store.apply(put->key, put->record);
  }
  for (pb::WalHint& p : *snap.mutable_hints()) {
    auto hint = from_pb(p);
    if (!hint) return false;
    state.hints.add(hint->target, hint->key, hint->record);
  }
  if (snap.members_size() > 0) {
    auto members = members_from_pb(*snap.mutable_members());
    if (!members) return false;
    state.members = std::move(members).value();
  }
  return true;
}

class RecoveryCategory final : public std::error_category {
 public:
  const char* name() const noexcept override { return "kv.recovery"; }
  std::string message(int e) const override {
    switch (static_cast<RecoveryError>(e)) {
      case RecoveryError::snapshot_corrupt:
        return "snapshot is damaged";
    }
    return "unknown recovery error";
  }
};

}  // namespace

void wal_encode(const WalEntry& entry, std::string& out) {
  if (const auto* put = std::get_if<WalPut>(&entry)) {
    pb::WalPut msg;
    msg.set_key(put->key);
    to_pb(put->record, *msg.mutable_record());
    append_record(WalType::put, msg, out);
  } else if (const auto* hint = std::get_if<WalHint>(&entry)) {
    pb::WalHint msg;
    msg.set_target(hint->target);
    msg.set_key(hint->key);
    to_pb(hint->record, *msg.mutable_record());
    append_record(WalType::hint, msg, out);
  } else if (const auto* done = std::get_if<WalHintDone>(&entry)) {
    pb::WalHintDone msg;
    msg.set_target(done->target);
    msg.set_key(done->key);
    to_pb(done->version, *msg.mutable_version());
    append_record(WalType::hint_done, msg, out);
  } else if (const auto* drop = std::get_if<WalDrop>(&entry)) {
    pb::WalDrop msg;
    msg.set_key(drop->key);
    to_pb(drop->version, *msg.mutable_version());
    append_record(WalType::drop, msg, out);
  } else {
    pb::WalMembers msg;
    for (const Member& m : std::get<WalMembers>(entry).members) to_pb(m, *msg.add_members());
    append_record(WalType::members, msg, out);
  }
}

WalDecoded wal_decode(std::string_view bytes) {
  WalDecoded out;
  while (out.valid_bytes < bytes.size()) {
    const Frame frame = read_frame(bytes, out.valid_bytes);
    if (frame.status != WalTail::clean) {
      out.tail = frame.status;
      return out;
    }
    auto entry = parse_log_payload(frame.type, frame.payload);
    if (!entry) {
      out.tail = WalTail::corrupt;
      return out;
    }
    out.entries.push_back(std::move(*entry));
    out.valid_bytes = frame.end;
  }
  return out;
}

void wal_apply(const WalEntry& entry, DurableState& state) {
  if (const auto* put = std::get_if<WalPut>(&entry)) {
    state.store.apply(put->key, put->record);
  } else if (const auto* hint = std::get_if<WalHint>(&entry)) {
    state.hints.add(hint->target, hint->key, hint->record);
  } else if (const auto* done = std::get_if<WalHintDone>(&entry)) {
    state.hints.remove_delivered(done->target, done->key, done->version);
  } else if (const auto* drop = std::get_if<WalDrop>(&entry)) {
    state.store.drop_tombstone(drop->key, drop->version);
  } else {
    state.members = std::get<WalMembers>(entry).members;
  }
}

std::string snapshot_encode(const DurableState& state) {
  std::string out;
  pb::Snapshot part;
  std::size_t part_bytes = 0;  // close to part.ByteSizeLong(), without computing it again
  for (const Member& m : state.members) to_pb(m, *part.add_members());
  part_bytes += part.ByteSizeLong();
  // Starts a new part once this one holds snapshot_part_bytes; an entry never straddles parts,
  // and any one entry fits a record (keys and values are bounded well below its limit).
  auto flush_if_full = [&](std::size_t next_bytes) {
    if (part_bytes == 0 || part_bytes + next_bytes <= snapshot_part_bytes) return;
    append_record(WalType::snapshot, part, out);
    const std::uint64_t next = part.part() + 1;
    part.Clear();
    part.set_part(next);
    part_bytes = 0;
  };
  for (const Store::Entry* e : state.store.sorted()) {  // key order: the same bytes every time
    pb::WalPut p;
    p.set_key(e->first);
    to_pb(e->second, *p.mutable_record());
    const std::size_t bytes = p.ByteSizeLong() + 8;  // with its tag and length
    flush_if_full(bytes);
    *part.add_entries() = std::move(p);
    part_bytes += bytes;
  }
  for (const auto& [hint_key, record] : state.hints.hints()) {
    pb::WalHint h;
    h.set_target(hint_key.first);
    h.set_key(hint_key.second);
    to_pb(record, *h.mutable_record());
    const std::size_t bytes = h.ByteSizeLong() + 8;
    flush_if_full(bytes);
    *part.add_hints() = std::move(h);
    part_bytes += bytes;
  }
  part.set_last(true);
  append_record(WalType::snapshot, part, out);
  return out;
}

const std::error_category& recovery_category() {
  static const RecoveryCategory category;
  return category;
}

std::error_code make_error_code(RecoveryError e) {
  return {static_cast<int>(e), recovery_category()};
}

Result<Recovered> recover(std::optional<std::string_view> snapshot, std::string_view wal) {
  Recovered out;
  if (snapshot) {
    // Every part whole and in sequence, the last one marked and nothing after it.
    std::size_t at = 0;
    bool last = false;
    for (std::uint64_t part = 0; !last; ++part) {
      if (at >= snapshot->size()) return RecoveryError::snapshot_corrupt;
      const Frame frame = read_frame(*snapshot, at);
      if (frame.status != WalTail::clean || frame.type != WalType::snapshot ||
          !load_snapshot_part(frame.payload, part, last, out.state)) {
        return RecoveryError::snapshot_corrupt;
      }
      at = frame.end;
    }
    if (at != snapshot->size()) return RecoveryError::snapshot_corrupt;
  }
  WalDecoded log = wal_decode(wal);
  for (const WalEntry& entry : log.entries) wal_apply(entry, out.state);
  out.wal_valid_bytes = log.valid_bytes;
  out.wal_tail = log.tail;
  out.wal_records = log.entries.size();
  return out;
}

}  // namespace kv
