// Tests of the WAL record codec and of recovery: round trips, the exact record bytes, and the
// two failure modes a log must survive (a cut anywhere and a damaged byte anywhere) without ever
// returning damaged data; then snapshot + log replay and the rejection of a damaged snapshot.
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include <boost/crc.hpp>
#include <gtest/gtest.h>
#include <rapidcheck.h>
#include <rapidcheck/gtest.h>

#include "core/kv.pb.h"
#include "core/pb_convert.h"
#include "core/wal.h"

namespace kv {
namespace {

using Crc32c = boost::crc_optimal<32, 0x1EDC6F41, 0xFFFFFFFF, 0xFFFFFFFF, true, true>;

// ---- generators: small ranges so that keys, targets and versions collide and merges matter ----

rc::Gen<std::string> gen_key() {
  return rc::gen::oneOf(rc::gen::element<std::string>("a", "b", "c"),
                        rc::gen::string<std::string>());
}

rc::Gen<Version> gen_version() {
  return rc::gen::exec([] {
    return Version{*rc::gen::inRange<std::uint64_t>(0, 6), *rc::gen::inRange<std::uint32_t>(0, 3),
                   *rc::gen::inRange<NodeId>(0, 4)};
  });
}

rc::Gen<Record> gen_record() {
  return rc::gen::exec([] {
    const bool tombstone = *rc::gen::arbitrary<bool>();
    return Record{*gen_version(), tombstone,
                  tombstone ? std::string() : *rc::gen::string<std::string>()};
  });
}

rc::Gen<WalEntry> gen_entry() {
  return rc::gen::exec([]() -> WalEntry {
    const NodeId target = *rc::gen::inRange<NodeId>(0, 4);
    switch (*rc::gen::inRange(0, 4)) {
      case 0:
        return WalPut{*gen_key(), *gen_record()};
      case 1:
        return WalHint{target, *gen_key(), *gen_record()};
      case 2:
        return WalDrop{*gen_key(), *gen_version()};
      default:
        return WalHintDone{target, *gen_key(), *gen_version()};
    }
  });
}

// A log of up to `max_entries` entries, kept short where a test decodes it once per byte.
std::vector<WalEntry> gen_log(std::size_t max_entries) {
  const auto n = *rc::gen::inRange<std::size_t>(0, max_entries + 1);
  return *rc::gen::container<std::vector<WalEntry>>(n, gen_entry());
}

// The encoded log and the end offset of every record (ends[i] is the end of entries[i]).
struct EncodedLog {
  std::string bytes;
  std::vector<std::size_t> ends;
};

EncodedLog encode_log(const std::vector<WalEntry>& entries) {
  EncodedLog log;
  for (const WalEntry& e : entries) {
    wal_encode(e, log.bytes);
    log.ends.push_back(log.bytes.size());
  }
  return log;
}

std::vector<WalEntry> prefix(const std::vector<WalEntry>& entries, std::size_t n) {
  return {entries.begin(), entries.begin() + static_cast<std::ptrdiff_t>(n)};
}

// Frames an arbitrary payload with a correct checksum: for payloads no encoder would write.
std::string frame(std::uint8_t type, std::string_view payload) {
  std::string out(wal_header_bytes, '\0');
  const auto n = static_cast<std::uint32_t>(payload.size());
  for (int i = 0; i < 4; ++i) out[i] = static_cast<char>((n >> (8 * i)) & 0xFFu);
  out[4] = static_cast<char>(type);
  out += payload;
  Crc32c crc;
  crc.process_bytes(out.data(), 5);
  crc.process_bytes(payload.data(), payload.size());
  for (int i = 0; i < 4; ++i) out[5 + i] = static_cast<char>((crc.checksum() >> (8 * i)) & 0xFFu);
  return out;
}

std::string to_hex(std::string_view bytes) {
  static constexpr char digits[] = "0123456789abcdef";
  std::string out;
  for (char c : bytes) {
    const auto b = static_cast<unsigned char>(c);
    out += digits[b >> 4];
    out += digits[b & 0xF];
  }
  return out;
}

bool same_state(const DurableState& a, const DurableState& b) {
  return a.store == b.store && a.hints.hints() == b.hints.hints();
}

DurableState replay(const std::vector<WalEntry>& entries) {
  DurableState state;
  for (const WalEntry& e : entries) wal_apply(e, state);
  return state;
}

const Record rec_a{Version{5, 0, 1}, false, "snap"};

// ---- codec ----

TEST(WalCodec, RoundTripsEachEntryType) {
  const std::vector<WalEntry> entries = {
      WalPut{"key", Record{Version{10, 2, 3}, false, "value"}},
      WalPut{"gone", Record{Version{11, 0, 1}, true, ""}},
      WalPut{"", Record{}},
      WalHint{7, "key", Record{Version{12, 1, 2}, false, std::string("\0\xff", 2)}},
      WalHintDone{7, "key", Version{12, 1, 2}},
      WalHintDone{0, "", Version{}},
      WalDrop{"gone", Version{11, 0, 1}},
  };
  for (const WalEntry& e : entries) {
    std::string bytes;
    wal_encode(e, bytes);
    const WalDecoded d = wal_decode(bytes);
    ASSERT_EQ(d.tail, WalTail::clean);
    EXPECT_EQ(d.valid_bytes, bytes.size());
    ASSERT_EQ(d.entries.size(), 1u);
    EXPECT_EQ(d.entries[0], e);
  }
}

// Pins the record format: any change to framing, checksum or payload encoding shows up here.
TEST(WalCodec, GoldenBytesOfOnePut) {
  Crc32c check;
  check.process_bytes("123456789", 9);
  EXPECT_EQ(check.checksum(), 0xE3069283u);  // the CRC-32C check value

  std::string bytes;
  wal_encode(WalPut{"k", Record{Version{1, 2, 3}, false, "v"}}, bytes);
  EXPECT_EQ(to_hex(bytes),
            "10000000"                            // payload length 16
            "01"                                  // type: put
            "77c6d4a5"                            // crc32c
            "0a016b120b0a060801100218031a0176");  // pb::WalPut{key "k", record{...}}
}

TEST(WalCodec, EmptyInputIsClean) {
  const WalDecoded d = wal_decode("");
  EXPECT_TRUE(d.entries.empty());
  EXPECT_EQ(d.valid_bytes, 0u);
  EXPECT_EQ(d.tail, WalTail::clean);
}

RC_GTEST_PROP(WalCodec, DecodesAConcatenationOfManyEntries, ()) {
  const auto entries = *rc::gen::container<std::vector<WalEntry>>(gen_entry());
  const EncodedLog log = encode_log(entries);
  const WalDecoded d = wal_decode(log.bytes);
  RC_ASSERT(d.tail == WalTail::clean);
  RC_ASSERT(d.valid_bytes == log.bytes.size());
  RC_ASSERT(d.entries == entries);
}

// A crash can cut the log anywhere: only whole records before the cut come back.
RC_GTEST_PROP(WalTruncation, EveryCutYieldsTheWholeRecordsBeforeIt, ()) {
  const auto entries = gen_log(12);
  const EncodedLog log = encode_log(entries);
  for (std::size_t cut = 0; cut <= log.bytes.size(); ++cut) {
    const WalDecoded d = wal_decode(std::string_view(log.bytes).substr(0, cut));
    std::size_t whole = 0;
    while (whole < log.ends.size() && log.ends[whole] <= cut) ++whole;
    const std::size_t boundary = whole == 0 ? 0 : log.ends[whole - 1];
    RC_ASSERT(d.entries == prefix(entries, whole));
    RC_ASSERT(d.valid_bytes == boundary);
    RC_ASSERT(d.tail == (cut == boundary ? WalTail::clean : WalTail::torn));
  }
}

// The index of the record holding byte `pos`.
std::size_t record_at(const EncodedLog& log, std::size_t pos) {
  std::size_t i = 0;
  while (log.ends[i] <= pos) ++i;
  return i;
}

// Checks that a log damaged inside record `damaged` decodes to exactly the records before it.
void check_damaged(const std::vector<WalEntry>& entries, const EncodedLog& log,
                   const std::string& bytes, std::size_t damaged) {
  const WalDecoded d = wal_decode(bytes);
  RC_ASSERT(d.entries == prefix(entries, damaged));
  RC_ASSERT(d.valid_bytes == (damaged == 0 ? 0 : log.ends[damaged - 1]));
  RC_ASSERT(d.tail != WalTail::clean);
}

RC_GTEST_PROP(WalCorruption, AFlippedByteNeverYieldsADamagedEntry, ()) {
  const auto entries = *rc::gen::nonEmpty(rc::gen::container<std::vector<WalEntry>>(gen_entry()));
  const EncodedLog log = encode_log(entries);
  const auto pos = *rc::gen::inRange<std::size_t>(0, log.bytes.size());
  const auto mask = *rc::gen::inRange<int>(1, 256);
  std::string bytes = log.bytes;
  bytes[pos] = static_cast<char>(bytes[pos] ^ mask);
  check_damaged(entries, log, bytes, record_at(log, pos));
}

// Exhaustive over one small log: every position, every non-zero xor mask.
TEST(WalCorruption, EverySingleByteDamageOfASmallLogIsCaught) {
  const std::vector<WalEntry> entries = {
      WalPut{"a", Record{Version{1, 0, 1}, false, "x"}},
      WalHint{2, "a", Record{Version{1, 0, 1}, false, "x"}},
      WalHintDone{2, "a", Version{1, 0, 1}},
      WalPut{"b", Record{Version{2, 0, 1}, true, ""}},
  };
  const EncodedLog log = encode_log(entries);
  for (std::size_t pos = 0; pos < log.bytes.size(); ++pos) {
    for (int mask = 1; mask < 256; ++mask) {
      std::string bytes = log.bytes;
      bytes[pos] = static_cast<char>(bytes[pos] ^ mask);
      const std::size_t damaged = record_at(log, pos);
      const WalDecoded d = wal_decode(bytes);
      ASSERT_EQ(d.entries, prefix(entries, damaged)) << "pos " << pos << " mask " << mask;
      ASSERT_EQ(d.valid_bytes, damaged == 0 ? 0 : log.ends[damaged - 1]);
      ASSERT_NE(d.tail, WalTail::clean);
    }
  }
}

TEST(WalCorruption, AHugeLengthIsCorruptNotAnAllocation) {
  std::string bytes;
  wal_encode(WalPut{"a", rec_a}, bytes);
  const std::size_t good = bytes.size();
  bytes += std::string("\xff\xff\xff\xff\x01\0\0\0\0", wal_header_bytes);
  const WalDecoded d = wal_decode(bytes);
  EXPECT_EQ(d.entries.size(), 1u);
  EXPECT_EQ(d.valid_bytes, good);
  EXPECT_EQ(d.tail, WalTail::corrupt);
}

TEST(WalCorruption, LengthLimitSeparatesTornFromCorrupt) {
  auto header_only = [](std::uint32_t n) {
    std::string h(wal_header_bytes, '\0');
    for (int i = 0; i < 4; ++i) h[i] = static_cast<char>((n >> (8 * i)) & 0xFFu);
    h[4] = static_cast<char>(WalType::put);
    return h;
  };
  const auto max = static_cast<std::uint32_t>(wal_payload_bytes_max);
  EXPECT_EQ(wal_decode(header_only(max)).tail, WalTail::torn);
  EXPECT_EQ(wal_decode(header_only(max + 1)).tail, WalTail::corrupt);
  EXPECT_EQ(wal_decode(std::string(wal_header_bytes - 1, '\xff')).tail, WalTail::torn);
}

TEST(WalCorruption, UnknownAndSnapshotTypesAreCorruptInALog) {
  std::string put;
  wal_encode(WalPut{"a", rec_a}, put);
  const std::string payload = put.substr(wal_header_bytes);
  for (int type : {0, 4, 6, 255}) {
    const WalDecoded d = wal_decode(frame(static_cast<std::uint8_t>(type), payload));
    EXPECT_TRUE(d.entries.empty()) << "type " << type;
    EXPECT_EQ(d.tail, WalTail::corrupt) << "type " << type;
  }
  DurableState state;
  state.store.apply("a", rec_a);
  EXPECT_EQ(wal_decode(snapshot_encode(state)).tail, WalTail::corrupt);
}

// Payloads with a good checksum that no encoder writes: still damage, never data.
TEST(WalCorruption, ImpossiblePayloadsAreCorrupt) {
  const auto put = static_cast<std::uint8_t>(WalType::put);
  const auto hint = static_cast<std::uint8_t>(WalType::hint);
  const auto done = static_cast<std::uint8_t>(WalType::hint_done);

  pb::WalPut no_record;
  no_record.set_key("a");
  pb::WalPut no_version;
  no_version.set_key("a");
  no_version.mutable_record()->set_value("x");
  pb::WalPut valued_tombstone;
  valued_tombstone.mutable_record()->mutable_version()->set_node(1);
  valued_tombstone.mutable_record()->set_tombstone(true);
  valued_tombstone.mutable_record()->set_value("x");
  pb::WalHint hint_no_record;
  hint_no_record.set_target(2);
  pb::WalHintDone done_no_version;
  done_no_version.set_key("a");

  const std::vector<std::string> records = {
      frame(put, ""),
      frame(put, no_record.SerializeAsString()),
      frame(put, no_version.SerializeAsString()),
      frame(put, valued_tombstone.SerializeAsString()),
      frame(hint, hint_no_record.SerializeAsString()),
      frame(done, done_no_version.SerializeAsString()),
      frame(put, "\xff\xff\xff"),  // not a protobuf message
  };
  for (const std::string& r : records) {
    const WalDecoded d = wal_decode(r);
    EXPECT_TRUE(d.entries.empty()) << to_hex(r);
    EXPECT_EQ(d.valid_bytes, 0u);
    EXPECT_EQ(d.tail, WalTail::corrupt) << to_hex(r);
  }
}

// ---- recovery ----

TEST(Recovery, EmptyInputGivesEmptyState) {
  const auto r = recover(std::nullopt, "");
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r.value().state.store.size(), 0u);
  EXPECT_EQ(r.value().state.hints.size(), 0u);
  EXPECT_EQ(r.value().wal_valid_bytes, 0u);
  EXPECT_EQ(r.value().wal_tail, WalTail::clean);
  EXPECT_EQ(r.value().wal_records, 0u);
}

TEST(Recovery, ReplaysTheLogOverTheSnapshotInOrder) {
  DurableState snap_state;
  snap_state.store.apply("a", rec_a);
  snap_state.store.apply("b", Record{Version{5, 0, 1}, false, "b-old"});
  snap_state.hints.add(2, "a", rec_a);
  const std::string snapshot = snapshot_encode(snap_state);

  const Record stale{Version{3, 0, 2}, false, "stale"};
  const Record b_new{Version{9, 0, 2}, false, "b-new"};
  const Record c_gone{Version{1, 0, 3}, true, ""};
  const Record hint_new{Version{7, 0, 1}, false, "h"};
  const EncodedLog log = encode_log({
      WalPut{"a", stale},                     // older than the snapshot: loses the merge
      WalPut{"b", b_new},                     // newer: wins
      WalPut{"c", c_gone},                    // a tombstone is a record like any other
      WalHint{2, "a", hint_new},              // replaces the snapshot's hint
      WalHintDone{2, "a", Version{5, 0, 1}},  // too old to drop the newer hint
      WalHint{3, "x", stale},
      WalHintDone{3, "x", Version{3, 0, 2}},  // delivered: dropped
      WalPut{"d", c_gone},
      WalDrop{"d", Version{1, 0, 3}},         // a collected tombstone: gone
      WalDrop{"c", Version{1, 0, 4}},         // another version: kept
  });
  std::string wal = log.bytes;
  wal += log.bytes.substr(0, 5);  // a torn append after the last whole record

  const auto r = recover(snapshot, wal);
  ASSERT_TRUE(r.has_value()) << r.error().message();
  const Recovered& rec = r.value();
  EXPECT_EQ(rec.wal_records, 10u);
  EXPECT_EQ(rec.wal_valid_bytes, log.bytes.size());
  EXPECT_EQ(rec.wal_tail, WalTail::torn);
  EXPECT_EQ(rec.state.store.get("a"), rec_a);
  EXPECT_EQ(rec.state.store.get("b"), b_new);
  EXPECT_EQ(rec.state.store.get("c"), c_gone);
  EXPECT_EQ(rec.state.store.size(), 3u);
  const std::map<HintStore::HintKey, Record> hints = {{{2, "a"}, hint_new}};
  EXPECT_EQ(rec.state.hints.hints(), hints);
}

// A snapshot taken at any point of a log stands in for the log up to that point.
RC_GTEST_PROP(Recovery, SnapshotPlusRestEqualsTheWholeLog, ()) {
  const auto before = gen_log(20);
  const auto after = gen_log(20);
  const std::string snapshot = snapshot_encode(replay(before));
  const EncodedLog rest = encode_log(after);
  std::vector<WalEntry> all = before;
  all.insert(all.end(), after.begin(), after.end());

  const auto from_snapshot = recover(snapshot, rest.bytes);
  const auto from_log = recover(std::nullopt, encode_log(all).bytes);
  RC_ASSERT(from_snapshot.has_value() && from_log.has_value());
  RC_ASSERT(same_state(from_snapshot.value().state, from_log.value().state));
  RC_ASSERT(same_state(from_log.value().state, replay(all)));
  RC_ASSERT(from_snapshot.value().wal_records == after.size());
}

// Snapshot bytes depend only on the state, not on the order it was built in. Puts and hints
// merge, so any order of them builds the same state (hint-done and drop entries would make order matter).
RC_GTEST_PROP(Recovery, SnapshotBytesAreDeterministic, ()) {
  auto entries = *rc::gen::container<std::vector<WalEntry>>(gen_entry());
  std::erase_if(entries, [](const WalEntry& e) {
    return std::holds_alternative<WalHintDone>(e) || std::holds_alternative<WalDrop>(e);
  });
  const std::vector<WalEntry> reversed(entries.rbegin(), entries.rend());
  RC_ASSERT(snapshot_encode(replay(entries)) == snapshot_encode(replay(reversed)));
}

void expect_snapshot_corrupt(std::string_view snapshot, const std::string& what) {
  const auto r = recover(snapshot, "");
  ASSERT_TRUE(r.has_error()) << what;
  EXPECT_EQ(r.error(), RecoveryError::snapshot_corrupt) << what;
}

TEST(Recovery, ADamagedSnapshotIsRejected) {
  DurableState state;
  state.store.apply("a", rec_a);
  state.store.apply("b", Record{Version{6, 1, 2}, true, ""});
  state.hints.add(3, "a", rec_a);
  const std::string snapshot = snapshot_encode(state);
  ASSERT_TRUE(recover(snapshot, "").has_value());

  for (std::size_t pos = 0; pos < snapshot.size(); ++pos) {
    for (int mask : {0x01, 0x80, 0xff}) {
      std::string bytes = snapshot;
      bytes[pos] = static_cast<char>(bytes[pos] ^ mask);
      expect_snapshot_corrupt(bytes, "flip at " + std::to_string(pos));
    }
  }
  for (std::size_t cut = 0; cut < snapshot.size(); ++cut) {
    expect_snapshot_corrupt(snapshot.substr(0, cut), "cut at " + std::to_string(cut));
  }
  expect_snapshot_corrupt(snapshot + "x", "trailing byte");
  expect_snapshot_corrupt(snapshot + snapshot, "two snapshots");
  std::string put;
  wal_encode(WalPut{"a", rec_a}, put);
  expect_snapshot_corrupt(put, "a log record");
}

// A store larger than one record's limit (64 MiB) snapshots in parts and recovers whole; a file
// cut at a part boundary, or with its parts out of order, is damage.
TEST(Recovery, ASnapshotLargerThanARecordIsWrittenInParts) {
  DurableState state;
  const std::string value(1 << 20, 'v');
  for (int i = 0; i < 70; ++i) {
    state.store.apply("key" + std::to_string(1000 + i), Record{Version{7, 0, 1}, false, value});
  }
  state.hints.add(2, "key1000", Record{Version{8, 0, 1}, false, "h"});
  const std::string snapshot = snapshot_encode(state);
  ASSERT_GT(snapshot.size(), wal_payload_bytes_max);
  const auto r = recover(snapshot, "");
  ASSERT_TRUE(r.has_value());
  EXPECT_TRUE(r.value().state.store == state.store);
  EXPECT_EQ(r.value().state.hints.hints(), state.hints.hints());

  std::vector<std::size_t> boundaries;  // the parts are log-framed records: [u32 length][...]
  for (std::size_t at = 0; at < snapshot.size();) {
    const std::uint32_t length = get_u32_le(snapshot.data() + at);
    at += wal_header_bytes + length;
    boundaries.push_back(at);
  }
  ASSERT_GE(boundaries.size(), 9u);
  expect_snapshot_corrupt(snapshot.substr(0, boundaries[0]), "only the first part");
  expect_snapshot_corrupt(snapshot.substr(0, boundaries[boundaries.size() - 2]), "last part missing");
  const std::string swapped = snapshot.substr(boundaries[0], boundaries[1] - boundaries[0]) +
                              snapshot.substr(0, boundaries[0]) + snapshot.substr(boundaries[1]);
  expect_snapshot_corrupt(swapped, "parts out of order");
}

TEST(Recovery, ErrorCodeNamesItsCategory) {
  const std::error_code ec = RecoveryError::snapshot_corrupt;
  EXPECT_EQ(&ec.category(), &recovery_category());
  EXPECT_STREQ(ec.category().name(), "kv.recovery");
  EXPECT_FALSE(ec.message().empty());
}

}  // namespace
}  // namespace kv

// The CPU's CRC-32C instruction and the portable table give the same checksum for any bytes and
// any split of them, so logs and frames move between machines.
RC_GTEST_PROP(WalCodec, HardwareAndPortableCrcAgree, (const std::string& a, const std::string& b)) {
  RC_ASSERT(kv::crc32c(a, b) == kv::crc32c_portable(a, b));
  RC_ASSERT(kv::crc32c(a + b) == kv::crc32c(a, b));
}
