// Storage: data directory lock, WAL file with group commit on a sync thread, snapshots.
#include "node/storage.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <boost/asio/post.hpp>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>

#include "net/log.h"

namespace kv {

namespace {

std::string errno_text() { return std::strerror(errno); }

Error io_error(std::string detail) {
  return Error{std::make_error_code(std::errc::io_error), std::move(detail)};
}

// The whole file, or empty if there is none.
Expected<std::string> read_file(const std::string& path) {
  std::string out;
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return out;
    return io_error("cannot open " + path + ": " + errno_text());
  }
  char buf[1 << 16];
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      Error e = io_error("cannot read " + path + ": " + errno_text());
      ::close(fd);
      return e;
    }
    if (n == 0) break;
    out.append(buf, static_cast<std::size_t>(n));
  }
  ::close(fd);
  return out;
}

// A log or snapshot that cannot be written leaves no safe way on: stop before acknowledging.
[[noreturn]] void die(const std::string& what) {
  log_line("kvnode", "fatal: " + what + ": " + errno_text());
  std::abort();
}

void write_all(int fd, const char* data, std::size_t size, const char* what) {
  while (size > 0) {
    const ssize_t n = ::write(fd, data, size);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) die(std::string("cannot write the ") + what);
    data += n;
    size -= static_cast<std::size_t>(n);
  }
}

void fsync_dir(const std::string& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0 || ::fsync(fd) != 0) die("cannot fsync the data directory " + dir);
  ::close(fd);
}

}  // namespace

Storage::Storage(StorageOptions options, boost::asio::io_context& io)
    : options_(std::move(options)), io_(io) {}

Expected<std::unique_ptr<Storage>> Storage::open(StorageOptions options,
                                                 boost::asio::io_context& io) {
  std::unique_ptr<Storage> s(new Storage(std::move(options), io));
  const std::string& dir = s->options_.dir;
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return io_error("cannot create data directory " + dir + ": " + ec.message());
  s->lock_fd_ = ::open((dir + "/LOCK").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (s->lock_fd_ < 0 || ::flock(s->lock_fd_, LOCK_EX | LOCK_NB) != 0) {
    return Error{std::make_error_code(std::errc::device_or_resource_busy),
                 "data directory " + dir + " is in use by another process (" + errno_text() + ")"};
  }
  const bool have_snapshot = std::filesystem::exists(dir + "/snapshot");
  BOOST_OUTCOME_TRY(const std::string snapshot, read_file(dir + "/snapshot"));
  BOOST_OUTCOME_TRY(const std::string wal, read_file(dir + "/wal"));
  auto recovered = recover(have_snapshot ? std::optional<std::string_view>(snapshot) : std::nullopt, wal);
  if (!recovered) {
    return Error{recovered.error(), "cannot recover " + dir + ": " + recovered.error().message()};
  }
  s->stats_.recovered_records = recovered.value().wal_records;
  s->stats_.recovered_tail_cut = recovered.value().wal_tail != WalTail::clean;
  if (s->stats_.recovered_tail_cut) {
    log_line("kvnode", std::string("recovery cut a ") +
                           (recovered.value().wal_tail == WalTail::torn ? "torn" : "corrupt") +
                           " log tail at byte " + std::to_string(recovered.value().wal_valid_bytes) +
                           " of " + std::to_string(wal.size()));
  }
  s->recovered_ = std::move(recovered.value().state);
  s->wal_fd_ = ::open((dir + "/wal").c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (s->wal_fd_ < 0 || ::ftruncate(s->wal_fd_, static_cast<off_t>(recovered.value().wal_valid_bytes)) != 0 ||
      ::fsync(s->wal_fd_) != 0) {
    return io_error("cannot open the log in " + dir + ": " + errno_text());
  }
  fsync_dir(dir);
  s->wal_file_bytes_ = recovered.value().wal_valid_bytes;
  s->sync_thread_ = std::thread([p = s.get()] { p->sync_thread_main(); });
  if (s->options_.fsync == FsyncMode::batch) s->arm_batch_timer();
  return s;
}

Storage::~Storage() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (sync_thread_.joinable()) sync_thread_.join();
  if (batch_timer_) batch_timer_->cancel();
  if (wal_fd_ >= 0) {
    if (options_.fsync != FsyncMode::none) ::fdatasync(wal_fd_);
    ::close(wal_fd_);
  }
  if (lock_fd_ >= 0) ::close(lock_fd_);
}

std::uint64_t Storage::append(const std::vector<WalEntry>& entries) {
  if (entries.empty()) return appended_;
  std::string bytes;
  for (const WalEntry& e : entries) wal_encode(e, bytes);
  write_all(wal_fd_, bytes.data(), bytes.size(), "log");
  appended_ += bytes.size();
  wal_file_bytes_ += bytes.size();
  records_pending_ += entries.size();
  stats_.wal_bytes = wal_file_bytes_;
  if (options_.fsync == FsyncMode::always) request_sync();
  return appended_;
}

void Storage::when_durable(std::uint64_t ticket, std::function<void()> fn) {
  const bool durable = options_.fsync != FsyncMode::always || ticket <= durable_;
  if (durable && waiters_.empty()) return fn();
  waiters_.emplace_back(ticket, std::move(fn));
}

void Storage::request_sync() {
  if (sync_in_flight_ || appended_ == durable_) return;
  sync_in_flight_ = true;
  {
    std::lock_guard lock(mu_);
    sync_requested_ = true;
    sync_target_ = appended_;
    sync_records_ = records_pending_;
  }
  records_pending_ = 0;
  cv_.notify_one();
}

void Storage::sync_thread_main() {
  for (;;) {
    std::uint64_t target = 0, records = 0;
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [&] { return sync_requested_ || stopping_; });
      if (stopping_) return;
      sync_requested_ = false;
      target = sync_target_;
      records = sync_records_;
    }
    const auto t0 = std::chrono::steady_clock::now();
    if (::fdatasync(wal_fd_) != 0) die("cannot fsync the log");
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    boost::asio::post(io_, [this, target, records, seconds] { on_synced(target, records, seconds); });
  }
}

void Storage::on_synced(std::uint64_t upto, std::uint64_t records, double seconds) {
  sync_in_flight_ = false;
  durable_ = upto;
  ++stats_.fsyncs;
  stats_.fsync_records_total += records;
  if (on_fsync) on_fsync(seconds, records);
  run_ready_waiters();
  if (options_.fsync == FsyncMode::always) request_sync();
}

void Storage::run_ready_waiters() {
  while (!waiters_.empty() && waiters_.front().first <= durable_) {
    auto fn = std::move(waiters_.front().second);
    waiters_.pop_front();
    fn();
  }
}

void Storage::arm_batch_timer() {
  batch_timer_ = std::make_unique<boost::asio::steady_timer>(io_);
  batch_timer_->expires_after(std::chrono::milliseconds(options_.fsync_batch_ms));
  batch_timer_->async_wait([this](const boost::system::error_code& ec) {
    if (ec) return;
    request_sync();
    arm_batch_timer();
  });
}

void Storage::maybe_snapshot(const DurableState& state) {
  if (wal_file_bytes_ < options_.snapshot_wal_bytes || sync_in_flight_ || durable_ != appended_) {
    return;
  }
  const auto t0 = std::chrono::steady_clock::now();
  const std::string dir = options_.dir;
  const std::string bytes = snapshot_encode(state);
  const int fd = ::open((dir + "/snapshot.tmp").c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) die("cannot create " + dir + "/snapshot.tmp");
  write_all(fd, bytes.data(), bytes.size(), "snapshot");
  if (::fsync(fd) != 0) die("cannot fsync the snapshot");
  ::close(fd);
  if (::rename((dir + "/snapshot.tmp").c_str(), (dir + "/snapshot").c_str()) != 0) die("cannot install the snapshot");
  fsync_dir(dir);
  // The snapshot holds everything the log did; a crash before this truncation only replays
  // records the snapshot already has, which merge ignores.
  if (::ftruncate(wal_fd_, 0) != 0 || ::fsync(wal_fd_) != 0) die("cannot truncate the log");
  wal_file_bytes_ = 0;
  stats_.wal_bytes = 0;
  ++stats_.snapshots;
  stats_.snapshot_last_us = static_cast<std::uint64_t>(
      std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count());
}

}  // namespace kv
