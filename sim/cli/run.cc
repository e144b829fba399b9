// kvsim run: many seeds in parallel; failures, throughput and the rare-path table.
#include "sim/cli/cli.h"

#include <cmath>

#include <boost/json.hpp>

namespace kv::sim::cli {

namespace {

constexpr std::string_view help_run =
    R"(Usage: kvsim run --seeds A-B [--jobs N] [--json] [--quiet] [--hashes] [--first-failure]

Runs the scenario of every seed from A to B (inclusive), each single-threaded, on N worker
threads. Failing seeds are printed as they are found, in seed order:
  FAIL seed S: <property>: <detail>
    replay: kvsim replay --seed S
then a summary: seeds, failures, wall time, seeds per second, simulated time and its ratio to
wall time, operations (invoked, ok, failed, unknown outcome), and the rare-path table: for each
probe, how many seeds hit it and how many times in all. A probe no seed hit is a fault or code
path this range of seeds did not test.

With --first-failure it stops at the lowest failing seed: the seeds after it are not run (or
not counted, if a worker had started them), so the summary covers seeds A to that one, the same
seeds whatever the thread count.
)";

constexpr std::string_view help_run_after =
    R"(A progress bar is drawn on stderr when it is a terminal.

Examples:
  kvsim run --seeds 1-1000
  kvsim run --seeds 1-100000 --jobs 32 --json > nightly.json

Exit codes: 0 every seed passed, 1 some seed failed, 2 usage error.
)";

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
     "(as replay prints it), to compare the behaviour of two builds seed by seed")
    ("first-failure", po::bool_switch(),
     "stop at the lowest failing seed (the summary then covers the seeds up to it)");
  return d;
}

struct ProbeTotal {
  std::uint64_t seeds = 0;  // runs that hit it at least once
  std::uint64_t total = 0;
};

// What the summary adds up: each seed's, merged as it is reported (in seed order), so that only
// the seeds reported count. Integer sums.
struct Totals {
  std::uint64_t sim_time_us = 0;
  std::uint64_t ops_invoked = 0, ops_ok = 0, ops_failed = 0, ops_unknown = 0;
  std::map<std::string, ProbeTotal> probes;

  void add(const RunResult& r) {
    Totals one{r.sim_time_us, r.ops_invoked, r.ops_ok, r.ops_failed, r.ops_unknown, {}};
    for (const auto& [name, count] : r.probes) {
      one.probes[name] = ProbeTotal{count > 0 ? 1u : 0u, count};
    }
    merge(one);
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
  Totals totals;
  bool failed() const { return !violations.empty(); }
};

struct RunSummary {
  SeedRange seeds;          // what was asked for
  std::uint64_t run = 0;    // how many of them, from the first (fewer with --first-failure)
  std::vector<std::pair<std::uint64_t, std::vector<Violation>>> failing;  // in seed order
  bool failures_printed = false;  // as they were found, above the summary
  double wall_s = 0;
  Totals totals;
  std::vector<std::string> unhit_required;  // sometimes-assertions that failed

  double seeds_per_s() const { return static_cast<double>(run) / wall_s; }
  double sim_s() const { return static_cast<double>(totals.sim_time_us) / 1e6; }
};

void print_run_text(const RunSummary& s) {
  if (s.failures_printed) std::cout << '\n';
  std::cout << "seeds       " << s.seeds.text() << ": " << s.run << " run, "
            << s.failing.size() << " failed"
            << (s.run < s.seeds.count() ? " (stopped at the first failure)" : "") << '\n';
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
              << (p.seeds != 0                             ? ""
                  : probes_not_required().contains(name) ? "  never hit (not required)"
                                                         : "  never hit")
              << '\n';
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
      {"seeds", s.run},
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
      {"unhit_required", boost::json::value_from(s.unhit_required)},
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
  const bool first_failure = args.has("first-failure");
  if (json && hashes) throw UsageError("--hashes and --json cannot be combined");

  ProgressBar bar(!quiet && stderr_is_terminal(), summary.seeds.count());
  const auto start = Clock::now();
  summary.run = for_each_seed<SeedOutcome>(
      summary.seeds, jobs, bar,
      [](unsigned, std::uint64_t seed) {
        RunResult r = run_seed(seed);
        SeedOutcome outcome{std::move(r.violations), r.trace_hash, {}};
        outcome.totals.add(r);
        return outcome;
      },
      [&](std::uint64_t seed, SeedOutcome& outcome) {
        summary.totals.merge(outcome.totals);
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
      },
      first_failure);
  summary.wall_s = std::max(seconds_since(start), 1e-9);

  // Sometimes-assertions (sim.h): enforced only where every seed they are promised for ran.
  const bool covers = summary.seeds.first <= 1 &&
                      summary.seeds.first + summary.run - 1 >= sometimes_seeds_last;
  std::vector<std::string> unhit;
  for (const auto& [name, p] : summary.totals.probes) {
    if (p.seeds == 0 && !probes_not_required().contains(name)) unhit.push_back(name);
  }
  if (covers) summary.unhit_required = unhit;
  if (json) {
    print_run_json(summary);
  } else {
    print_run_text(summary);
    if (covers && !unhit.empty()) {
      std::cout << "FAIL sometimes-assertions: " << unhit.size()
                << " rare path(s) that some seed of 1-" << sometimes_seeds_last
                << " must hit were never hit:";
      for (const std::string& name : unhit) std::cout << ' ' << name;
      std::cout << "\n  (a workload or fault change stopped reaching them: see probe_names() and "
                   "probes_not_required() in sim/world.cc)\n";
    } else if (!covers && !unhit.empty()) {
      std::cout << "(rare paths never hit are failures only over a range covering seeds 1-"
                << sometimes_seeds_last << ")\n";
    }
  }
  const bool sometimes_failed = covers && !unhit.empty();
  return summary.failing.empty() && !sometimes_failed ? exit_ok : exit_failed;
}

}  // namespace

const Command& run_command() {
  static const Command c{"run", help_run, help_run_after, run_options, cmd_run};
  return c;
}

}  // namespace kv::sim::cli
