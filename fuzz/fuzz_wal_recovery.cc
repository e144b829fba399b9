// Recovery from whatever a data directory holds (core/wal.h): a log and a snapshot file of any
// bytes, as a crash, a torn write or a damaged disk may leave them.
//
// Input: byte 0 is the mode, the rest the files.
//   bits 0-1  0: the rest is the log, no snapshot file; 1: the rest is the snapshot, the log is
//             empty; 2: a u32 LE length, that many bytes of snapshot, then the log; 3: the rest
//             is the log, beside an empty snapshot file
//   bit 2     recompute every record's checksum first, so that mutations reach the payload
//             parse instead of stopping at the CRC
// Properties: decoding keeps a prefix of whole, valid records and says why it stopped; the
// records re-encode to a log that decodes to the same records; a log cut at the valid length
// and appended to (what the node does after recovery) decodes to the old records and the new
// one; recovery is the snapshot plus the log's records, replayed; a snapshot of the recovered
// state recovers to the same state and encodes to the same bytes.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/pb_convert.h"
#include "core/wal.h"
#include "fuzz/common.h"

namespace kv::fuzz {
namespace {

constexpr std::size_t length_bytes = 4, crc_at = 5;

void fix_checksums(std::string& s) {
  std::size_t at = 0;
  while (s.size() - at >= wal_header_bytes) {
    const std::size_t len = get_u32_le(s.data() + at);
    if (len > s.size() - at - wal_header_bytes) return;
    const std::string_view payload(s.data() + at + wal_header_bytes, len);
    put_u32_le(crc32c(std::string_view(s.data() + at, length_bytes + 1), payload),
               s.data() + at + crc_at);
    at += wal_header_bytes + len;
  }
}

bool same_state(const DurableState& a, const DurableState& b) {
  return a.store == b.store && a.hints.hints() == b.hints.hints();
}

void check_log(std::string_view log) {
  const WalDecoded d = wal_decode(log);
  require(d.valid_bytes <= log.size(), "valid length past the end of the log");
  require((d.tail == WalTail::clean) == (d.valid_bytes == log.size()),
          "a clean tail that is not the end of the log, or the reverse");

  const WalDecoded prefix = wal_decode(log.substr(0, d.valid_bytes));
  require(prefix.tail == WalTail::clean && prefix.entries == d.entries,
          "the valid prefix of a log does not decode to the same records");

  std::string again;
  for (const WalEntry& e : d.entries) wal_encode(e, again);
  const WalDecoded re = wal_decode(again);
  require(re.tail == WalTail::clean && re.valid_bytes == again.size() && re.entries == d.entries,
          "records re-encoded do not decode to the same records");

  // After recovery the node truncates the log to the valid length and appends.
  std::string appended(log.substr(0, d.valid_bytes));
  const WalEntry extra = WalHintDone{2, "after", Version{9, 9, 1}};
  wal_encode(extra, appended);
  const WalDecoded after = wal_decode(appended);
  std::vector<WalEntry> expected = d.entries;
  expected.push_back(extra);
  require(after.tail == WalTail::clean && after.entries == expected,
          "a record appended after the valid prefix is not read back");
}

void check_recovery(std::optional<std::string_view> snapshot, std::string_view log) {
  const Result<Recovered> r = recover(snapshot, log);
  if (!r) {
    require(snapshot.has_value() && r.error() == RecoveryError::snapshot_corrupt,
            "recovery failed without a damaged snapshot: " + r.error().message());
    return;
  }
  const Recovered& got = r.value();
  const WalDecoded d = wal_decode(log);
  require(got.wal_valid_bytes == d.valid_bytes && got.wal_tail == d.tail &&
              got.wal_records == d.entries.size(),
          "recovery read the log differently from wal_decode");

  DurableState replayed;
  if (snapshot) replayed = recover(snapshot, {}).value().state;
  for (const WalEntry& e : d.entries) wal_apply(e, replayed);
  require(same_state(replayed, got.state), "recovery is not the snapshot plus the log replayed");

  const std::string snap = snapshot_encode(got.state);
  const Result<Recovered> again = recover(std::string_view(snap), {});
  require(again.has_value(), "a snapshot of a recovered state does not recover");
  require(same_state(again.value().state, got.state), "a snapshot changed the state");
  require(snapshot_encode(again.value().state) == snap, "snapshot encoding is not stable");
}

}  // namespace
}  // namespace kv::fuzz

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace kv::fuzz;
  if (size == 0) return 0;
  const std::uint8_t mode = data[0];
  std::string rest(reinterpret_cast<const char*>(data) + 1, size - 1);
  std::optional<std::string> snapshot;
  std::string log;
  switch (mode & 3) {
    case 0: log = std::move(rest); break;
    case 1: snapshot = std::move(rest); break;
    case 2: {
      if (rest.size() < 4) return 0;
      const std::size_t n = std::min<std::size_t>(kv::get_u32_le(rest.data()), rest.size() - 4);
      snapshot = rest.substr(4, n);
      log = rest.substr(4 + n);
      break;
    }
    default: snapshot.emplace(); log = std::move(rest); break;
  }
  if (mode & 4) {
    fix_checksums(log);
    if (snapshot) fix_checksums(*snapshot);
  }
  check_log(log);
  check_recovery(snapshot ? std::optional<std::string_view>(*snapshot) : std::nullopt, log);
  return 0;
}
