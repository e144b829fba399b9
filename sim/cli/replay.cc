// kvsim replay and kvsim shrink: one scenario (a seed's or a file's), traced or cut down.
#include "sim/cli/cli.h"

#include <fstream>

#include "sim/cli/timeline.h"

namespace kv::sim::cli {

namespace {

constexpr std::string_view help_replay =
    R"(Usage: kvsim replay (--seed S | --scenario FILE) [--trace FILE] [--html FILE]

Runs one scenario and prints its event trace (what happened, in virtual time, one line each),
then each violation, a result line, and last:
  trace-hash <16 hex digits>
a hash over every event of the run: two replays of the same scenario print the same hash.

With --html, it also draws the run as one self-contained page for a browser: nodes as lanes,
every peer message as a line from lane to lane (red where it was lost), crashes, disk losses,
partitions, clogged links and clock steps on the lanes they struck, client operations as bars
on their coordinator's lane, the heal, the quiet and each violation across all lanes; hover for
details, and pick a window of the run to zoom into. The trace is then not printed unless
--trace names a file for it.
)";

constexpr std::string_view help_replay_after =
    R"(Examples:
  kvsim replay --seed 417 | less
  kvsim replay --seed 417 | tail -3
  kvsim replay --scenario shrunk-417.scenario --trace trace.txt
  kvsim replay --seed 417 --html seed-417.html && xdg-open seed-417.html

Exit codes: 0 no violation, 1 violations, 2 usage error or unreadable scenario file.
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

po::options_description replay_options() {
  po::options_description d("Options", help_width_chars, help_width_chars / 2);
  d.add_options()
    ("seed", po::value<std::string>()->value_name("S"), "replay the scenario of seed S")
    ("scenario", po::value<std::string>()->value_name("FILE"),
     "replay a scenario file (as written by kvsim shrink)")
    ("trace", po::value<std::string>()->value_name("FILE"),
     "write the trace to FILE instead of stdout")
    ("html", po::value<std::string>()->value_name("FILE"),
     "draw the run as an HTML page in FILE (and print no trace unless --trace is given)");
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

int cmd_replay(const Args& args) {
  const LoadedScenario loaded = load_scenario(args);
  std::ofstream trace_file;
  std::ostream* trace_out = &std::cout;
  const auto trace_path = args.value("trace");
  const auto html_path = args.value("html");
  if (trace_path) {
    trace_file.open(*trace_path, std::ios::binary | std::ios::trunc);
    if (!trace_file) throw CommandError("cannot write '" + *trace_path + "'");
    trace_out = &trace_file;
  }
  RunOptions options;
  if (trace_path || !html_path) {
    options.trace_line = [trace_out](std::string_view line) {
      trace_out->write(line.data(), static_cast<std::streamsize>(line.size()));
      trace_out->put('\n');
    };
  }
  std::vector<Mark> marks;
  if (html_path) options.mark = [&marks](const Mark& m) { marks.push_back(m); };
  const RunResult r = safe_run(loaded.scenario, options);
  trace_out->flush();
  if (trace_path && !trace_file) throw CommandError("cannot write '" + *trace_path + "'");
  if (html_path) {
    write_file(*html_path, timeline_html(loaded.label, loaded.scenario, marks, r));
    const TimelineCounts c = count_timeline(marks, loaded.scenario.knobs.nodes);
    std::cout << "timeline: wrote " << *html_path << ": lanes " << c.lanes << ", messages "
              << c.messages << ", lost " << c.lost << ", crashes " << c.crashes << ", ops "
              << c.ops << ", violations " << c.violations << '\n';
  }

  print_violations(std::cout, r.violations, "violation ");
  std::cout << "result: " << loaded.label << (r.ok() ? " ok" : " FAILED") << ", " << r.events
            << " events, " << fixed(static_cast<double>(r.sim_time_us) / 1e6)
            << " s simulated; ops " << r.ops_invoked << " invoked, " << r.ops_ok << " ok, "
            << r.ops_failed << " failed, " << r.ops_unknown << " unknown\n"
            << "trace-hash " << hex16(r.trace_hash) << '\n'
            << std::flush;
  return r.ok() ? exit_ok : exit_failed;
}

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

}  // namespace

const Command& replay_command() {
  static const Command c{"replay", help_replay, help_replay_after, replay_options, cmd_replay};
  return c;
}

const Command& shrink_command() {
  static const Command c{"shrink", help_shrink, help_shrink_after, shrink_options, cmd_shrink};
  return c;
}

}  // namespace kv::sim::cli
