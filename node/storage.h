// A node's disk: the write-ahead log and the snapshot in its data directory, group commit, and
// the lock that keeps a second process out.
//
// Files: `LOCK` (flock), `wal` (records, see core/wal.h), `snapshot` (one snapshot record,
// replaced atomically: written to `snapshot.tmp`, fsynced, renamed, directory fsynced).
// Recovery is core's recover(), the same code the simulator runs.
//
// Group commit: the event loop appends records with write() (page cache, fast) and gets a
// ticket (the log offset after them). One sync thread runs fsync; every record appended while an
// fsync runs is covered by the next one, so under load one fsync serves many writes. Work that
// must wait for durability is queued with when_durable() and runs on the event loop, in order.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <mutex>
#include <condition_variable>

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

#include "core/errors.h"
#include "core/wal.h"

namespace kv {

enum class FsyncMode {
  always,  // nothing leaves before its records are fsynced (group commit). The default.
  batch,   // fsync every fsync_batch_ms in the background; outputs do not wait: a crash of the
           // machine can lose the last interval of acknowledged writes
  none,    // never fsync; the operating system writes back when it likes
};

struct StorageOptions {
  std::string dir;
  FsyncMode fsync = FsyncMode::always;
  std::uint64_t fsync_batch_ms = 100;
  std::uint64_t snapshot_wal_bytes = 64ull << 20;  // snapshot once the log is this long
};

struct StorageStats {
  std::uint64_t fsyncs = 0;
  std::uint64_t fsync_records_total = 0;  // sum over fsyncs of the records each covered
  std::uint64_t wal_bytes = 0;
  std::uint64_t snapshots = 0;
  std::uint64_t snapshot_last_us = 0;
  std::uint64_t recovered_records = 0;
  bool recovered_tail_cut = false;
};

class Storage {
 public:
  // Opens (creating if needed) and locks the data directory, recovers its state.
  static Expected<std::unique_ptr<Storage>> open(StorageOptions options,
                                                 boost::asio::io_context& io);
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;

  // The state recovery rebuilt; moved out once by the node at start.
  DurableState take_recovered_state() { return std::move(recovered_); }

  // Appends the records (write(), no fsync) and returns the ticket that covers them.
  std::uint64_t append(const std::vector<WalEntry>& entries);
  std::uint64_t appended() const { return appended_; }

  // Runs `fn` on the event loop once everything up to `ticket` is durable (at once if it is),
  // after every function queued before it.
  void when_durable(std::uint64_t ticket, std::function<void()> fn);

  // If the log is long: waits for it to be durable, writes a snapshot of `state` and empties the
  // log. Blocks the event loop for the write and its fsync (measured in stats().snapshot_last_us).
  void maybe_snapshot(const DurableState& state);

  const StorageStats& stats() const { return stats_; }
  // fsync latency histogram input: called on the loop with each fsync's duration and size
  std::function<void(double seconds, std::uint64_t records)> on_fsync;

 private:
  Storage(StorageOptions options, boost::asio::io_context& io);
  void sync_thread_main();
  void on_synced(std::uint64_t upto, std::uint64_t records, double seconds);
  void run_ready_waiters();
  void request_sync();
  void arm_batch_timer();

  StorageOptions options_;
  boost::asio::io_context& io_;
  int lock_fd_ = -1;
  int wal_fd_ = -1;
  DurableState recovered_;
  StorageStats stats_;

  std::uint64_t appended_ = 0;        // log bytes written (this process's offset space)
  std::uint64_t durable_ = 0;         // log bytes known durable
  std::uint64_t records_pending_ = 0; // records appended since the last fsync request
  std::uint64_t wal_file_bytes_ = 0;  // the log file's length (it restarts at 0 on a snapshot)
  std::unique_ptr<boost::asio::steady_timer> batch_timer_;
  bool sync_in_flight_ = false;
  std::deque<std::pair<std::uint64_t, std::function<void()>>> waiters_;

  // Shared with the sync thread.
  std::mutex mu_;
  std::condition_variable cv_;
  bool sync_requested_ = false;
  bool stopping_ = false;
  std::uint64_t sync_target_ = 0;
  std::uint64_t sync_records_ = 0;
  std::thread sync_thread_;
};

}  // namespace kv
