// kvsim check-determinism: every seed run twice and compared event by event.
#include "sim/cli/cli.h"

namespace kv::sim::cli {

namespace {

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

po::options_description check_determinism_options() {
  po::options_description d("Options", help_width_chars, help_width_chars / 2);
  d.add_options()
    ("seeds", po::value<std::string>()->value_name("A-B"),
     "the seeds to check (a single S means S-S); required")
    ("jobs", po::value<std::string>()->value_name("N"),
     "worker threads, 1 to 256 (default: the number of hardware threads)");
  return d;
}

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

}  // namespace

const Command& check_determinism_command() {
  static const Command c{"check-determinism", help_check_determinism,
                         help_check_determinism_after, check_determinism_options,
                         cmd_check_determinism};
  return c;
}

}  // namespace kv::sim::cli
