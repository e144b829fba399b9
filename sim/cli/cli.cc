#include "sim/cli/cli.h"

#include <unistd.h>

#include <charconv>
#include <cstdio>
#include <exception>
#include <fstream>
#include <limits>

#include "core/parse.h"

namespace kv::sim::cli {

namespace {

// A scenario file is a few hundred KB at most; anything far bigger is not one.
constexpr std::uintmax_t scenario_file_bytes_max = 64u << 20;

}  // namespace

// ---- Arguments ----

Expected<std::uint64_t> parse_u64(std::string_view flag, std::string_view text) {
  if (const auto v = kv::parse_integer<std::uint64_t>(text)) return *v;
  const bool digits =
      !text.empty() && text.find_first_not_of("0123456789") == std::string_view::npos;
  return kv::invalid_input(std::string(flag) + ": '" + std::string(text) +
                           (digits ? "' is too large" : "' is not a non-negative integer"));
}

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

std::string fixed(double value, int decimals) {
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

RunResult safe_run(const Scenario& scenario, const RunOptions& options) {
  try {
    return kv::sim::run(scenario, options);
  } catch (const std::exception& e) {
    RunResult r;
    r.seed = scenario.seed;
    r.violations.push_back({"exception", e.what()});
    return r;
  }
}

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

bool stderr_is_terminal() { return isatty(STDERR_FILENO) == 1; }

// ---- Scenario files ----

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

}  // namespace kv::sim::cli
