// kvsim: the command line of the deterministic simulator. It runs ranges of seeds on worker
// threads and reports failures, throughput and how often each rare path was taken; replays one
// seed or scenario file with its event trace; checks that runs are deterministic; and shrinks a
// failing scenario into a small file that still fails. Every simulation is single-threaded and
// lives in sim/; this file owns everything that is not deterministic: threads, wall clocks,
// files and the terminal.
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <charconv>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <fstream>
#include <functional>
#include <iostream>
#include <limits>
#include <map>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include <boost/json.hpp>
#include <boost/program_options.hpp>

#include "core/errors.h"
#include "core/parse.h"
#include "sim/sim.h"

namespace {

using kv::sim::RunOptions;
using kv::sim::RunResult;
using kv::sim::Scenario;
using kv::sim::Violation;
using Clock = std::chrono::steady_clock;
using kv::Expected;
namespace po = boost::program_options;

constexpr int exit_ok = 0;
constexpr int exit_failed = 1;
constexpr int exit_usage = 2;

constexpr auto progress_interval_ms = std::chrono::milliseconds(100);
constexpr unsigned jobs_max = 256;
constexpr std::size_t progress_bar_width_chars = 28;
// The width of the help texts, which the options tables are wrapped to match.
constexpr unsigned help_width_chars = 96;
// A scenario file is a few hundred KB at most; anything far bigger is not one.
constexpr std::uintmax_t scenario_file_bytes_max = 64u << 20;

// ---- Help ----
// Each command's help is its text, then the table of its options (from the same description
// that parses them, so the two cannot drift apart), then its examples and exit codes.

constexpr std::string_view help_overview =
    R"(kvsim - deterministic simulation testing for the replicated key-value store

kvsim runs the store's replication core (the same Replica state machine that kvnode runs) in a
seeded, single-threaded simulation of a whole cluster: a network that loses, duplicates,
reorders and delays messages; partitions, both ways and one way; crashes and power losses that
tear the unsynced tail of the write-ahead log; slow disks; skewed and drifting clocks; a slow or
failing PostgreSQL and legacy API. Clients run gets, puts and deletes against it, and a checker
verifies the consistency contract (DESIGN.md, C1-C9). Checked:
  C1  after the cluster heals and goes quiet, a read sees the newest acknowledged write
  C2  after quiet, every key's replicas hold the same record and no hint is left
  C3  a read returns what some put wrote (or the legacy API served), never invented or torn
      data; a restarted node recovers only what was written
  C4  where R + W > N (strict quorums), a read that starts after an acknowledged write sees it
      or newer
  C5  a write that starts after another was acknowledged gets a greater version
  C7  a value hydrated from the legacy API never wins over a newer client write
and the store's invariants: the replicas' own checks after every input, recovery from whatever
the disk kept, no request answered twice, in PostgreSQL sync mode every acknowledged write in
PostgreSQL (in async mode, nothing left queued after quiet), and every run finishing.
Not checked, as the store does not have the features yet: C6 (no resurrection after tombstones
are collected), C8 (expiry), C9 (counters).
The seed decides everything (cluster size, quorums, timers, fault rates, faults, workload), so
every failure replays exactly, on any machine.

Usage:
  kvsim run --seeds A-B [--jobs N] [--json] [--quiet] [--hashes]
  kvsim replay (--seed S | --scenario FILE) [--trace FILE]
  kvsim check-determinism --seeds A-B [--jobs N]
  kvsim shrink (--seed S | --scenario FILE) [--out FILE]
  kvsim help [COMMAND]             or: kvsim COMMAND --help

Commands:
  run                run many seeds in parallel; report failures, throughput and rare paths
  replay             run one seed or scenario file and print its event trace
  check-determinism  run every seed twice and compare the runs event by event
  shrink             cut a failing scenario down to a small one that still fails

Examples:
  kvsim run --seeds 1-10000
  kvsim replay --seed 417 | less
  kvsim shrink --seed 417 && kvsim replay --scenario shrunk-417.scenario

Exit codes:
  0  no violation (shrink: the shrunk scenario was written)
  1  a violation was found, or (check-determinism) a seed did not replay identically
  2  usage error, unreadable or unwritable file, or (shrink) the scenario does not fail
)";

constexpr std::string_view help_run =
    R"(Usage: kvsim run --seeds A-B [--jobs N] [--json] [--quiet] [--hashes]

Runs the scenario of every seed from A to B (inclusive), each single-threaded, on N worker
threads. Failing seeds are printed as they are found, in seed order:
  FAIL seed S: <property>: <detail>
    replay: kvsim replay --seed S
then a summary: seeds, failures, wall time, seeds per second, simulated time and its ratio to
wall time, operations (invoked, ok, failed, unknown outcome), and the rare-path table: for each
probe, how many seeds hit it and how many times in all. A probe no seed hit is a fault or code
path this range of seeds did not test.
)";

constexpr std::string_view help_run_after =
    R"(A progress bar is drawn on stderr when it is a terminal.

Examples:
  kvsim run --seeds 1-1000
  kvsim run --seeds 1-100000 --jobs 32 --json > nightly.json

Exit codes: 0 every seed passed, 1 some seed failed, 2 usage error.
)";

constexpr std::string_view help_replay =
    R"(Usage: kvsim replay (--seed S | --scenario FILE) [--trace FILE]

Runs one scenario and prints its event trace (what happened, in virtual time, one line each),
then each violation, a result line, and last:
  trace-hash <16 hex digits>
a hash over every event of the run: two replays of the same scenario print the same hash.
)";

constexpr std::string_view help_replay_after =
    R"(Examples:
  kvsim replay --seed 417 | less
  kvsim replay --seed 417 | tail -3
  kvsim replay --scenario shrunk-417.scenario --trace trace.txt

Exit codes: 0 no violation, 1 violations, 2 usage error or unreadable scenario file.
)";

constexpr std::string_view help_check_determinism =
    R"(Usage: kvsim check-determinism --seeds A-B [--jobs N]

Builds and runs the scenario of every seed twice and compares the hash after every event. For
a seed whose runs differ, both runs are traced again and the first trace line that differs is
shown (or, if the traces agree, the line at the index of the first differing event):
  seed S diverges at event I (trace line L):
    first:  <that line of the first run>
    second: <that line of the second run>
Ends with the number of seeds checked and how many were deterministic.
)";

constexpr std::string_view help_check_determinism_after =
    R"(Example:
  kvsim check-determinism --seeds 1-200

Exit codes: 0 every seed deterministic, 1 some seed was not, 2 usage error.
)";

constexpr std::string_view help_shrink =
    R"(Usage: kvsim shrink (--seed S | --scenario FILE) [--out FILE]

Runs the scenario; if it fails, cuts its faults, operations and fault rates down for as long as
it still fails with the same property, reporting each attempt on stderr. Prints the sizes
before and after and the shrunk scenario's violations, writes it as a text file and prints the
command that replays it.
)";

constexpr std::string_view help_shrink_after =
    R"(Example:
  kvsim shrink --seed 417 && kvsim replay --scenario shrunk-417.scenario

Exit codes: 0 shrunk scenario written, 2 usage error, unreadable or unwritable file, or the
scenario does not fail.
)";

// ---- Options of each command ----

po::options_description run_options() {
  po::options_description d("Options", help_width_chars, help_width_chars / 2);
  d.add_options()
    ("seeds", po::value<std::string>()->value_name("A-B"),
     "the seeds to run (a single S means S-S); required")
    ("jobs", po::value<std::string>()->value_name("N"),
     "worker threads, 1 to 256 (default: the number of hardware threads)")
    ("json", po::bool_switch(),
     "print one JSON object to stdout instead of text: seeds, first_seed, last_seed, failures, "
     "failing [{seed, violations [{property, detail}]}], wall_s, seeds_per_s, sim_s, "
     "sim_to_wall_ratio, ops {invoked, ok, failed, unknown}, probes {name: {seeds, total}}")
    ("quiet", po::bool_switch(),
     "no progress bar and no FAIL lines: only the summary, which lists failing seeds")
    ("hashes", po::bool_switch(),
     "also print \"trace-hash S H\" for every seed S, in seed order: the hash over its events "
     "(as replay prints it), to compare the behaviour of two builds seed by seed");
  return d;
}

po::options_description replay_options() {
  po::options_description d("Options", help_width_chars, help_width_chars / 2);
  d.add_options()
    ("seed", po::value<std::string>()->value_name("S"), "replay the scenario of seed S")
    ("scenario", po::value<std::string>()->value_name("FILE"),
     "replay a scenario file (as written by kvsim shrink)")
    ("trace", po::value<std::string>()->value_name("FILE"),
     "write the trace to FILE instead of stdout");
  return d;
}

po::options_description check_determinism_options() {
  po::options_description d("Options", help_width_chars, help_width_chars / 2);
  d.add_options()
    ("seeds", po::value<std::string>()->value_name("A-B"),
     "the seeds to check (a single S means S-S); required")
    ("jobs", po::value<std::string>()->value_name("N"),
     "worker threads, 1 to 256 (default: the number of hardware threads)");
  return d;
}

po::options_description shrink_options() {
  po::options_description d("Options", help_width_chars, help_width_chars / 2);
  d.add_options()
    ("seed", po::value<std::string>()->value_name("S"), "shrink the scenario of seed S")
    ("scenario", po::value<std::string>()->value_name("FILE"), "shrink a scenario file")
    ("out", po::value<std::string>()->value_name("FILE"),
     "where to write the result (default: shrunk-<seed>.scenario)");
  return d;
}

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

Expected<std::uint64_t> parse_u64(std::string_view flag, std::string_view text) {
  if (const auto v = kv::parse_integer<std::uint64_t>(text)) return *v;
  const bool digits = !text.empty() && text.find_first_not_of("0123456789") == std::string_view::npos;
  return kv::invalid_input(std::string(flag) + ": '" + std::string(text) +
                           (digits ? "' is too large" : "' is not a non-negative integer"));
}

struct SeedRange {
  std::uint64_t first = 0;
  std::uint64_t last = 0;
  std::uint64_t count() const { return last - first + 1; }
  std::string text() const { return std::to_string(first) + "-" + std::to_string(last); }
};

// "A-B", or "S" for S-S.
Expected<SeedRange> parse_seed_range(std::string_view text) {
  const auto dash = text.find('-');
  const auto first = kv::parse_integer<std::uint64_t>(text.substr(0, dash));
  const auto last = dash == std::string_view::npos
                        ? first
                        : kv::parse_integer<std::uint64_t>(text.substr(dash + 1));
  if (!first || !last) {
    return kv::invalid_input("--seeds: expected A-B (or a single seed S), got '" +
                             std::string(text) + "'");
  }
  if (*first > *last) {
    return kv::invalid_input("--seeds: '" + std::string(text) + "' is not a range A-B with A <= B");
  }
  // The count of the full 64-bit range does not fit in 64 bits; nobody runs that many anyway.
  if (*last - *first == std::numeric_limits<std::uint64_t>::max()) {
    return kv::invalid_input("--seeds: range too large");
  }
  return SeedRange{*first, *last};
}

SeedRange parse_seeds(const Args& args) {
  return or_usage_error(parse_seed_range(args.required("seeds")));
}

unsigned parse_jobs(const Args& args, std::uint64_t seed_count) {
  std::uint64_t jobs = std::max(1u, std::thread::hardware_concurrency());
  if (auto text = args.value("jobs")) {
    jobs = or_usage_error(parse_u64("--jobs", *text));
    if (jobs < 1) throw UsageError("--jobs must be at least 1");
  }
  return static_cast<unsigned>(std::min<std::uint64_t>({jobs, jobs_max, seed_count}));
}

// ---- Output helpers ----

std::string fixed(double value, int decimals = 3) {
  char buf[64];
  const auto [ptr, ec] =
      std::to_chars(buf, buf + sizeof buf, value, std::chars_format::fixed, decimals);
  return ec == std::errc() ? std::string(buf, ptr) : std::string("0");
}

std::string hex16(std::uint64_t value) {
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(value));
  return buf;
}

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// A run must never take the whole command down: an exception becomes a violation of its seed.
RunResult safe_run(const Scenario& scenario, const RunOptions& options = {}) {
  try {
    return kv::sim::run(scenario, options);
  } catch (const std::exception& e) {
    RunResult r;
    r.seed = scenario.seed;
    r.violations.push_back({"exception", e.what()});
    return r;
  }
}

// The same for a seed's whole run, scenario generation included.
RunResult run_seed(std::uint64_t seed) {
  Scenario scenario;
  try {
    scenario = kv::sim::make_scenario(seed);
  } catch (const std::exception& e) {
    RunResult r;
    r.seed = seed;
    r.violations.push_back({"exception", std::string("make_scenario: ") + e.what()});
    return r;
  }
  return safe_run(scenario);
}

void print_violations(std::ostream& out, const std::vector<Violation>& violations,
                      std::string_view prefix) {
  for (const Violation& v : violations) {
    out << prefix << v.property << ": " << v.detail << '\n';
  }
}

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

bool stderr_is_terminal() { return isatty(STDERR_FILENO) == 1; }

// ---- The worker pool ----

// Runs `work` for every seed of `seeds` on `jobs` threads, each taking the next seed from a
// shared counter. `report` is called on this thread, in seed order, as soon as every earlier
// seed is done: output is the same whatever the thread count and timing, yet still streams.
// Only outcomes that finished ahead of a slower seed wait in memory.
template <typename Outcome>
void for_each_seed(const SeedRange& seeds, unsigned jobs, ProgressBar& bar,
                   const std::function<Outcome(unsigned worker, std::uint64_t seed)>& work,
                   const std::function<void(std::uint64_t seed, Outcome&)>& report) {
  const std::uint64_t count = seeds.count();
  std::mutex mutex;
  std::condition_variable wake;
  std::map<std::uint64_t, Outcome> finished;  // by index, until reported
  std::atomic<std::uint64_t> next{0}, done{0}, failed{0};

  std::vector<std::jthread> threads;
  for (unsigned w = 0; w < jobs; ++w) {
    threads.emplace_back([&, w] {
      for (std::uint64_t i = next.fetch_add(1); i < count; i = next.fetch_add(1)) {
        Outcome outcome = work(w, seeds.first + i);
        if (outcome.failed()) failed.fetch_add(1);
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
  auto ready = [&] { return !finished.empty() && finished.begin()->first == reported; };
  while (reported < count) {
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
}

// ---- kvsim run ----

struct ProbeTotal {
  std::uint64_t seeds = 0;  // runs that hit it at least once
  std::uint64_t total = 0;
};

// What the summary adds up. Each worker keeps its own; they are merged once the workers are done.
// Integer sums, so the result does not depend on which worker ran which seed.
struct Totals {
  std::uint64_t sim_time_us = 0;
  std::uint64_t ops_invoked = 0, ops_ok = 0, ops_failed = 0, ops_unknown = 0;
  std::map<std::string, ProbeTotal> probes;

  void add(const RunResult& r) {
    sim_time_us += r.sim_time_us;
    ops_invoked += r.ops_invoked;
    ops_ok += r.ops_ok;
    ops_failed += r.ops_failed;
    ops_unknown += r.ops_unknown;
    for (const auto& [name, count] : r.probes) {
      ProbeTotal& p = probes[name];
      p.seeds += count > 0 ? 1 : 0;
      p.total += count;
    }
  }

  void merge(const Totals& o) {
    sim_time_us += o.sim_time_us;
    ops_invoked += o.ops_invoked;
    ops_ok += o.ops_ok;
    ops_failed += o.ops_failed;
    ops_unknown += o.ops_unknown;
    for (const auto& [name, p] : o.probes) {
      probes[name].seeds += p.seeds;
      probes[name].total += p.total;
    }
  }
};

struct SeedOutcome {
  std::vector<Violation> violations;
  std::uint64_t trace_hash = 0;
  bool failed() const { return !violations.empty(); }
};

struct RunSummary {
  SeedRange seeds;
  std::vector<std::pair<std::uint64_t, std::vector<Violation>>> failing;  // in seed order
  bool failures_printed = false;  // as they were found, above the summary
  double wall_s = 0;
  Totals totals;

  double seeds_per_s() const { return static_cast<double>(seeds.count()) / wall_s; }
  double sim_s() const { return static_cast<double>(totals.sim_time_us) / 1e6; }
};

void print_run_text(const RunSummary& s) {
  if (s.failures_printed) std::cout << '\n';
  std::cout << "seeds       " << s.seeds.text() << ": " << s.seeds.count() << " run, "
            << s.failing.size() << " failed\n";
  if (!s.failing.empty()) {
    std::cout << "failing    ";
    for (const auto& f : s.failing) std::cout << ' ' << f.first;
    std::cout << '\n';
  }
  std::cout << "wall        " << fixed(s.wall_s) << " s, " << fixed(s.seeds_per_s(), 1)
            << " seeds/s\n"
            << "simulated   " << fixed(s.sim_s()) << " s, " << fixed(s.sim_s() / s.wall_s, 1)
            << "x wall time\n"
            << "operations  " << s.totals.ops_invoked << " invoked, " << s.totals.ops_ok
            << " ok, " << s.totals.ops_failed << " failed, " << s.totals.ops_unknown
            << " unknown\n";
  if (s.totals.probes.empty()) return;
  std::size_t width = 0;
  for (const auto& entry : s.totals.probes) width = std::max(width, entry.first.size());
  auto right = [](const std::string& text, std::size_t w) {
    return std::string(text.size() < w ? w - text.size() : 0, ' ') + text;
  };
  std::cout << "rare paths\n  " << std::string(width, ' ') << "   seeds       times\n";
  for (const auto& [name, p] : s.totals.probes) {
    std::cout << "  " << name << std::string(width - name.size(), ' ')
              << right(std::to_string(p.seeds), 8) << right(std::to_string(p.total), 12)
              << (p.seeds == 0 ? "  never hit" : "") << '\n';
  }
}

// Three decimals, as the text summary prints them: more would be noise of the wall clock.
double rounded(double value) { return std::round(value * 1000.0) / 1000.0; }

void print_run_json(const RunSummary& s) {
  boost::json::array failing;
  for (const auto& [seed, violations] : s.failing) {
    boost::json::array vs;
    for (const Violation& v : violations) {
      vs.push_back(boost::json::object{{"property", v.property}, {"detail", v.detail}});
    }
    failing.push_back(boost::json::object{{"seed", seed}, {"violations", std::move(vs)}});
  }
  boost::json::object probes;
  for (const auto& [name, p] : s.totals.probes) {
    probes[name] = boost::json::object{{"seeds", p.seeds}, {"total", p.total}};
  }
  const boost::json::object out{
      {"seeds", s.seeds.count()},
      {"first_seed", s.seeds.first},
      {"last_seed", s.seeds.last},
      {"failures", s.failing.size()},
      {"failing", std::move(failing)},
      {"wall_s", rounded(s.wall_s)},
      {"seeds_per_s", rounded(s.seeds_per_s())},
      {"sim_s", rounded(s.sim_s())},
      {"sim_to_wall_ratio", rounded(s.sim_s() / s.wall_s)},
      {"ops",
       {{"invoked", s.totals.ops_invoked},
        {"ok", s.totals.ops_ok},
        {"failed", s.totals.ops_failed},
        {"unknown", s.totals.ops_unknown}}},
      {"probes", std::move(probes)},
  };
  std::cout << boost::json::serialize(out) << '\n' << std::flush;
}

int cmd_run(const Args& args) {
  RunSummary summary;
  summary.seeds = parse_seeds(args);
  const unsigned jobs = parse_jobs(args, summary.seeds.count());
  const bool json = args.has("json");
  const bool quiet = args.has("quiet");
  const bool hashes = args.has("hashes");
  if (json && hashes) throw UsageError("--hashes and --json cannot be combined");

  std::vector<Totals> per_worker(jobs);
  ProgressBar bar(!quiet && stderr_is_terminal(), summary.seeds.count());
  const auto start = Clock::now();
  for_each_seed<SeedOutcome>(
      summary.seeds, jobs, bar,
      [&per_worker](unsigned worker, std::uint64_t seed) {
        RunResult r = run_seed(seed);
        per_worker[worker].add(r);
        return SeedOutcome{std::move(r.violations), r.trace_hash};
      },
      [&](std::uint64_t seed, SeedOutcome& outcome) {
        if (hashes) std::cout << "trace-hash " << seed << ' ' << hex16(outcome.trace_hash) << '\n';
        if (!outcome.failed()) return;
        if (!json && !quiet) {
          bar.clear();
          const std::string prefix = "FAIL seed " + std::to_string(seed) + ": ";
          print_violations(std::cout, outcome.violations, prefix);
          std::cout << "  replay: kvsim replay --seed " << seed << '\n' << std::flush;
          summary.failures_printed = true;
        }
        summary.failing.emplace_back(seed, std::move(outcome.violations));
      });
  summary.wall_s = std::max(seconds_since(start), 1e-9);
  for (const Totals& t : per_worker) summary.totals.merge(t);

  if (json) {
    print_run_json(summary);
  } else {
    print_run_text(summary);
  }
  return summary.failing.empty() ? exit_ok : exit_failed;
}

// ---- Scenario files ----

struct LoadedScenario {
  Scenario scenario;
  std::string label;  // "seed 417" or the file name, for messages
};

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw CommandError("cannot open '" + path + "'");
  std::string text;
  char buf[64 * 1024];
  while (in.read(buf, sizeof buf) || in.gcount() > 0) {
    text.append(buf, static_cast<std::size_t>(in.gcount()));
    if (text.size() > scenario_file_bytes_max) {
      throw CommandError("'" + path + "' is too large to be a scenario file");
    }
  }
  if (in.bad()) throw CommandError("cannot read '" + path + "'");
  return text;
}

void write_file(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
  out.close();
  if (!out) throw CommandError("cannot write '" + path + "'");
}

// --seed S or --scenario FILE, exactly one.
LoadedScenario load_scenario(const Args& args) {
  const auto seed = args.value("seed");
  const auto file = args.value("scenario");
  if (seed.has_value() == file.has_value()) {
    throw UsageError("give either --seed S or --scenario FILE (exactly one)");
  }
  if (seed) {
    const std::uint64_t s = or_usage_error(parse_u64("--seed", *seed));
    return {kv::sim::make_scenario(s), "seed " + std::to_string(s)};
  }
  kv::Expected<Scenario> scenario = kv::sim::scenario_from_text(read_file(*file));
  if (!scenario) throw CommandError(*file + ": " + scenario.error().detail);
  return {std::move(scenario).value(), *file};
}

std::uint64_t total_ops(const Scenario& s) {
  std::uint64_t n = 0;
  for (const auto& ops : s.clients) n += ops.size();
  return n;
}

// ---- kvsim replay ----

int cmd_replay(const Args& args) {
  const LoadedScenario loaded = load_scenario(args);
  std::ofstream trace_file;
  std::ostream* trace_out = &std::cout;
  const auto trace_path = args.value("trace");
  if (trace_path) {
    trace_file.open(*trace_path, std::ios::binary | std::ios::trunc);
    if (!trace_file) throw CommandError("cannot write '" + *trace_path + "'");
    trace_out = &trace_file;
  }
  RunOptions options;
  options.trace_line = [trace_out](std::string_view line) {
    trace_out->write(line.data(), static_cast<std::streamsize>(line.size()));
    trace_out->put('\n');
  };
  const RunResult r = safe_run(loaded.scenario, options);
  trace_out->flush();
  if (trace_path && !trace_file) throw CommandError("cannot write '" + *trace_path + "'");

  print_violations(std::cout, r.violations, "violation ");
  std::cout << "result: " << loaded.label << (r.ok() ? " ok" : " FAILED") << ", " << r.events
            << " events, " << fixed(static_cast<double>(r.sim_time_us) / 1e6)
            << " s simulated; ops " << r.ops_invoked << " invoked, " << r.ops_ok << " ok, "
            << r.ops_failed << " failed, " << r.ops_unknown << " unknown\n"
            << "trace-hash " << hex16(r.trace_hash) << '\n'
            << std::flush;
  return r.ok() ? exit_ok : exit_failed;
}

// ---- kvsim check-determinism ----

struct DeterminismOutcome {
  bool same = true;
  std::string report;  // where the two runs part, if they do
  bool failed() const { return !same; }
};

// A run's trace, remembered as one hash per line: a trace can run to millions of lines.
std::vector<std::size_t> trace_line_hashes(const Scenario& scenario) {
  std::vector<std::size_t> hashes;
  RunOptions options;
  options.trace_line = [&hashes](std::string_view line) {
    hashes.push_back(std::hash<std::string_view>{}(line));
  };
  safe_run(scenario, options);
  return hashes;
}

// The `index`-th trace line of a run (counting from 0), or a note that there was none.
std::string trace_line_at(const Scenario& scenario, std::uint64_t index) {
  std::uint64_t seen = 0;
  std::optional<std::string> found;
  RunOptions options;
  options.trace_line = [&](std::string_view line) {
    if (seen++ == index) found = std::string(line);
  };
  safe_run(scenario, options);
  if (found) return *found;
  return "(none: the run traced " + std::to_string(seen) + " lines)";
}

// The first index where the two differ (one ending early counts), or nothing if they are equal.
template <typename T>
std::optional<std::size_t> first_difference(const std::vector<T>& x, const std::vector<T>& y) {
  if (x == y) return std::nullopt;
  const std::size_t shorter = std::min(x.size(), y.size());
  const auto end = x.begin() + static_cast<std::ptrdiff_t>(shorter);
  return static_cast<std::size_t>(std::mismatch(x.begin(), end, y.begin()).first - x.begin());
}

// Shows where two runs of one seed part. The first trace line that differs is the readable
// symptom; an event can trace several lines (or none), so when the traces agree and only the
// hidden state differs, the line at the diverging event's index is the best guess.
std::string describe_divergence(std::uint64_t seed, const Scenario& first, const Scenario& second,
                                std::size_t event) {
  const auto differing_line =
      first_difference(trace_line_hashes(first), trace_line_hashes(second));
  const std::size_t line = differing_line.value_or(event);
  std::string where = "event " + std::to_string(event);
  if (differing_line) where += " (trace line " + std::to_string(line + 1) + ")";
  return "seed " + std::to_string(seed) + " diverges at " + where +
         ":\n  first:  " + trace_line_at(first, line) +
         "\n  second: " + trace_line_at(second, line) + "\n";
}

DeterminismOutcome check_seed_unguarded(std::uint64_t seed) {
  const Scenario first = kv::sim::make_scenario(seed);
  const Scenario second = kv::sim::make_scenario(seed);
  if (kv::sim::scenario_to_text(first) != kv::sim::scenario_to_text(second)) {
    return {false, "seed " + std::to_string(seed) +
                       ": make_scenario built two different scenarios from it\n"};
  }
  RunOptions options;
  options.keep_event_hashes = true;
  const RunResult a = safe_run(first, options);
  const RunResult b = safe_run(second, options);
  if (a.event_hashes == b.event_hashes && a.trace_hash == b.trace_hash) return {};
  // Equal hashes per event but a different final hash: the runs part after the last event.
  const std::size_t event =
      first_difference(a.event_hashes, b.event_hashes).value_or(a.event_hashes.size());
  return {false, describe_divergence(seed, first, second, event)};
}

DeterminismOutcome check_seed(std::uint64_t seed) {
  try {
    return check_seed_unguarded(seed);
  } catch (const std::exception& e) {
    return {false, "seed " + std::to_string(seed) + ": exception: " + e.what() + "\n"};
  }
}

int cmd_check_determinism(const Args& args) {
  const SeedRange seeds = parse_seeds(args);
  const unsigned jobs = parse_jobs(args, seeds.count());
  ProgressBar bar(stderr_is_terminal(), seeds.count());
  std::uint64_t differing = 0;
  const auto start = Clock::now();
  for_each_seed<DeterminismOutcome>(
      seeds, jobs, bar,
      [](unsigned, std::uint64_t seed) { return check_seed(seed); },
      [&](std::uint64_t, DeterminismOutcome& outcome) {
        if (outcome.same) return;
        ++differing;
        bar.clear();
        std::cout << outcome.report << std::flush;
      });
  const std::uint64_t same = seeds.count() - differing;
  std::cout << "checked " << seeds.count() << " seeds (" << seeds.text() << ") in "
            << fixed(seconds_since(start), 1) << " s: " << same << " deterministic ("
            << fixed(100.0 * static_cast<double>(same) / static_cast<double>(seeds.count()), 2)
            << "%)\n";
  return differing == 0 ? exit_ok : exit_failed;
}

// ---- kvsim shrink ----

int cmd_shrink(const Args& args) {
  const LoadedScenario loaded = load_scenario(args);
  const RunResult before = safe_run(loaded.scenario);
  if (before.ok()) {
    std::cerr << "kvsim shrink: " << loaded.label << " does not fail; nothing to shrink\n";
    return exit_usage;
  }
  std::cout << loaded.label << " fails:\n";
  print_violations(std::cout, before.violations, "  ");
  std::cout << std::flush;

  // On a terminal each attempt overwrites the last; in a log every attempt keeps its line.
  const bool terminal = stderr_is_terminal();
  std::uint64_t attempts = 0;
  const Scenario shrunk = kv::sim::shrink(loaded.scenario, [&](std::string_view what) {
    ++attempts;
    std::cerr << (terminal ? "\r" : "") << "shrink: " << what
              << (terminal ? "\033[K" : "\n") << std::flush;
  });
  if (terminal && attempts > 0) std::cerr << "\r\033[K" << std::flush;
  const RunResult after = safe_run(shrunk);

  std::cout << "shrunk in " << attempts << " attempts: faults " << loaded.scenario.faults.size()
            << " -> " << shrunk.faults.size() << ", operations " << total_ops(loaded.scenario)
            << " -> " << total_ops(shrunk) << ", clients " << loaded.scenario.clients.size()
            << " -> " << shrunk.clients.size() << '\n';
  if (after.ok()) {
    std::cout << "warning: the shrunk scenario no longer fails\n";
  } else {
    std::cout << "the shrunk scenario fails:\n";
    print_violations(std::cout, after.violations, "  ");
  }
  const std::string out =
      args.value("out").value_or("shrunk-" + std::to_string(shrunk.seed) + ".scenario");
  write_file(out, kv::sim::scenario_to_text(shrunk));
  std::cout << "wrote " << out << "\nreplay: kvsim replay --scenario " << out << '\n';
  return exit_ok;
}

// ---- Dispatch ----

struct Command {
  std::string_view name;
  std::string_view help;        // before the options table
  std::string_view help_after;  // after it
  po::options_description (*options)();
  int (*run)(const Args&);
};

const std::vector<Command>& commands() {
  static const std::vector<Command> all = {
      {"run", help_run, help_run_after, run_options, cmd_run},
      {"replay", help_replay, help_replay_after, replay_options, cmd_replay},
      {"check-determinism", help_check_determinism, help_check_determinism_after,
       check_determinism_options, cmd_check_determinism},
      {"shrink", help_shrink, help_shrink_after, shrink_options, cmd_shrink},
  };
  return all;
}

const Command* find_command(std::string_view name) {
  for (const Command& c : commands()) {
    if (c.name == name) return &c;
  }
  return nullptr;
}

void print_help(const Command& c) {
  std::cout << c.help << '\n' << c.options() << '\n' << c.help_after;
}

int usage_error(std::string_view command, std::string_view message) {
  const std::string who = command.empty() ? "kvsim" : "kvsim " + std::string(command);
  std::cerr << who << ": " << message << "\nTry '" << who << " --help'.\n";
  return exit_usage;
}

int dispatch(const std::vector<std::string>& argv) {
  if (argv.empty()) return usage_error("", "no command given");
  const std::string& name = argv[0];
  if (name == "--help" || name == "-h" || name == "help") {
    if (argv.size() == 1) {
      std::cout << help_overview;
      return exit_ok;
    }
    if (argv.size() > 2) return usage_error("", "help takes at most one command");
    const Command* c = find_command(argv[1]);
    if (!c) return usage_error("", "no such command '" + argv[1] + "'");
    print_help(*c);
    return exit_ok;
  }
  const Command* command = find_command(name);
  if (!command) return usage_error("", "unknown command '" + name + "'");
  // Help wins over everything else on the line, mistakes included.
  if (std::find_if(argv.begin() + 1, argv.end(), [](const std::string& a) {
        return a == "--help" || a == "-h";
      }) != argv.end()) {
    print_help(*command);
    return exit_ok;
  }
  try {
    return command->run(Args({argv.begin() + 1, argv.end()}, command->options()));
  } catch (const UsageError& e) {
    return usage_error(name, e.what());
  } catch (const CommandError& e) {
    std::cerr << "kvsim " << name << ": " << e.what() << '\n';
    return exit_usage;
  }
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return dispatch(std::vector<std::string>(argv + 1, argv + argc));
  } catch (const std::exception& e) {
    std::cerr << "kvsim: error: " << e.what() << '\n';
    return exit_usage;
  }
}
