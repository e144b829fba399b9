// kvsim's command line: what its commands share. The commands (run.cc, replay.cc for replay
// and shrink, check_determinism.cc) each bring their help, their options table and their code;
// main.cc dispatches to them. Everything here may use threads, wall clocks, files and the
// terminal; the simulations themselves are single-threaded and live in sim/.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <iostream>
#include <map>
#include <mutex>
#include <optional>
#include <ostream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include <boost/program_options.hpp>

#include "core/errors.h"
#include "sim/sim.h"

namespace kv::sim::cli {

using Clock = std::chrono::steady_clock;
namespace po = boost::program_options;

constexpr int exit_ok = 0;
constexpr int exit_failed = 1;
constexpr int exit_usage = 2;

constexpr auto progress_interval_ms = std::chrono::milliseconds(100);
constexpr unsigned jobs_max = 256;
constexpr std::size_t progress_bar_width_chars = 28;
// The width of the help texts, which the options tables are wrapped to match.
constexpr unsigned help_width_chars = 96;

// ---- Commands ----

// Each command's help is its text, then the table of its options (from the same description
// that parses them, so the two cannot drift apart), then its examples and exit codes.
class Args;
struct Command {
  std::string_view name;
  std::string_view help;        // before the options table
  std::string_view help_after;  // after it
  po::options_description (*options)();
  int (*run)(const Args&);
};

const Command& run_command();
const Command& replay_command();
const Command& check_determinism_command();
const Command& shrink_command();

// ---- Errors ----

// A mistake on the command line: reported with a pointer to the command's help.
class UsageError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Anything else that stops a command (a file that cannot be read or written).
class CommandError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// ---- Arguments ----

// Only --name VALUE, --name=VALUE and --name: no short options and no abbreviations, so that a
// new option can never change what an existing command line means.
constexpr int option_style = po::command_line_style::allow_long |
                             po::command_line_style::long_allow_adjacent |
                             po::command_line_style::long_allow_next;

// One command's options as given on its command line. A mistake (an unknown option, a missing
// value, an option given twice, a word that is no option) is a UsageError.
class Args {
 public:
  Args(const std::vector<std::string>& argv, const po::options_description& options) {
    try {
      const po::parsed_options parsed =
          po::command_line_parser(argv).options(options).style(option_style).run();
      // Without a positional description the parser hands words back unnamed.
      for (const po::option& o : parsed.options) {
        if (o.position_key >= 0 && !o.value.empty()) {
          throw UsageError("unexpected argument '" + o.value.front() + "'");
        }
      }
      po::store(parsed, values_);
    } catch (const po::error& e) {
      throw UsageError(e.what());
    }
  }

  bool has(const std::string& name) const { return values_[name].as<bool>(); }
  std::optional<std::string> value(const std::string& name) const {
    if (!values_.count(name)) return std::nullopt;
    return values_[name].as<std::string>();
  }
  std::string required(const std::string& name) const {
    auto v = value(name);
    if (!v) throw UsageError("--" + name + " is required");
    return *v;
  }

 private:
  po::variables_map values_;
};

// The value of an Expected, or its sentence as a usage error.
template <typename T>
T or_usage_error(Expected<T> parsed) {
  if (!parsed) throw UsageError(parsed.error().detail);
  return std::move(parsed).value();
}

// A non-negative integer for `flag`, or why it is not one.
Expected<std::uint64_t> parse_u64(std::string_view flag, std::string_view text);

struct SeedRange {
  std::uint64_t first = 0;
  std::uint64_t last = 0;
  std::uint64_t count() const { return last - first + 1; }
  std::string text() const { return std::to_string(first) + "-" + std::to_string(last); }
};

// "A-B", or "S" for S-S.
Expected<SeedRange> parse_seed_range(std::string_view text);
// --seeds, required.
SeedRange parse_seeds(const Args& args);
// --jobs, or one per hardware thread; never more than the seeds.
unsigned parse_jobs(const Args& args, std::uint64_t seed_count);

// ---- Output helpers ----

std::string fixed(double value, int decimals = 3);
std::string hex16(std::uint64_t value);
double seconds_since(Clock::time_point start);
// A run must never take the whole command down: an exception becomes a violation of its seed.
RunResult safe_run(const Scenario& scenario, const RunOptions& options = {});
// The same for a seed's whole run, scenario generation included.
RunResult run_seed(std::uint64_t seed);
void print_violations(std::ostream& out, const std::vector<Violation>& violations,
                      std::string_view prefix);
bool stderr_is_terminal();

// ---- Progress bar ----

// One line on stderr, redrawn in place at most every progress_interval_ms; only on a terminal,
// so that logs and pipes get clean output.
class ProgressBar {
 public:
  ProgressBar(bool enabled, std::uint64_t total)
      : enabled_(enabled), total_(total), start_(Clock::now()) {}

  void update(std::uint64_t done, std::uint64_t failed) {
    if (!enabled_) return;
    const auto now = Clock::now();
    // Clearing does not reset the clock: a burst of failures must not make the bar flicker.
    if (last_draw_ != Clock::time_point{} && now - last_draw_ < progress_interval_ms) return;
    last_draw_ = now;
    drawn_ = true;
    const std::size_t filled = static_cast<std::size_t>(
        static_cast<double>(progress_bar_width_chars) * static_cast<double>(done) /
        static_cast<double>(std::max<std::uint64_t>(total_, 1)));
    const double rate = static_cast<double>(done) / std::max(seconds_since(start_), 1e-9);
    std::cerr << "\r[" << std::string(filled, '#')
              << std::string(progress_bar_width_chars - filled, '.') << "] " << done << '/'
              << total_ << "  " << failed << " failed  " << fixed(rate, 1) << " seeds/s\033[K"
              << std::flush;
  }

  // Before anything else is printed to the terminal; the next update draws the bar again.
  void clear() {
    if (!enabled_ || !drawn_) return;
    std::cerr << "\r\033[K" << std::flush;
    drawn_ = false;
  }

 private:
  bool enabled_;
  std::uint64_t total_;
  Clock::time_point start_;
  Clock::time_point last_draw_{};
  bool drawn_ = false;
};

// ---- The worker pool ----

// Runs `work` for every seed of `seeds` on `jobs` threads, each taking the next seed from a
// shared counter. `report` is called on this thread, in seed order, as soon as every earlier
// seed is done: output is the same whatever the thread count and timing, yet still streams.
// Only outcomes that finished ahead of a slower seed wait in memory. With `stop_at_failure`,
// seeds after the lowest failing one are not needed: they are not started, and not reported
// if they were. Returns how many seeds were reported (from the first, with no gap), so the
// result does not depend on timing either.
template <typename Outcome>
std::uint64_t for_each_seed(const SeedRange& seeds, unsigned jobs, ProgressBar& bar,
                            const std::function<Outcome(unsigned worker, std::uint64_t seed)>& work,
                            const std::function<void(std::uint64_t seed, Outcome&)>& report,
                            bool stop_at_failure = false) {
  const std::uint64_t count = seeds.count();
  std::mutex mutex;
  std::condition_variable wake;
  std::map<std::uint64_t, Outcome> finished;  // by index, until reported
  std::atomic<std::uint64_t> next{0}, done{0}, failed{0};
  std::atomic<std::uint64_t> needed{count};  // indices from here on are not needed

  std::vector<std::jthread> threads;
  for (unsigned w = 0; w < jobs; ++w) {
    threads.emplace_back([&, w] {
      for (std::uint64_t i = next.fetch_add(1); i < needed.load(); i = next.fetch_add(1)) {
        Outcome outcome = work(w, seeds.first + i);
        if (outcome.failed()) {
          failed.fetch_add(1);
          for (std::uint64_t n = needed.load(); stop_at_failure && i + 1 < n;) {
            if (needed.compare_exchange_weak(n, i + 1)) break;
          }
        }
        {
          const std::lock_guard lock(mutex);
          finished.emplace(i, std::move(outcome));
        }
        done.fetch_add(1);
        wake.notify_one();
      }
    });
  }

  std::uint64_t reported = 0;
  std::unique_lock lock(mutex);
  auto ready = [&] {
    return reported < needed.load() && !finished.empty() && finished.begin()->first == reported;
  };
  while (reported < needed.load()) {
    wake.wait_for(lock, progress_interval_ms, ready);
    while (ready()) {
      Outcome outcome = std::move(finished.begin()->second);
      finished.erase(finished.begin());
      lock.unlock();
      report(seeds.first + reported, outcome);
      lock.lock();
      ++reported;
    }
    lock.unlock();
    bar.update(done.load(), failed.load());
    lock.lock();
  }
  lock.unlock();
  bar.clear();
  return reported;
}

// ---- Scenario files ----

struct LoadedScenario {
  Scenario scenario;
  std::string label;  // "seed 417" or the file name, for messages
};

std::string read_file(const std::string& path);
void write_file(const std::string& path, const std::string& text);
// --seed S or --scenario FILE, exactly one.
LoadedScenario load_scenario(const Args& args);
std::uint64_t total_ops(const Scenario& s);

}  // namespace kv::sim::cli
