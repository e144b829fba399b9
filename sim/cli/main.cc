// kvsim: the command line of the deterministic simulator. It runs ranges of seeds on worker
// threads and reports failures, throughput and how often each rare path was taken; replays one
// seed or scenario file with its event trace; checks that runs are deterministic; and shrinks a
// failing scenario into a small file that still fails. Every simulation is single-threaded and
// lives in sim/; sim/cli/ owns everything that is not deterministic: threads, wall clocks,
// files and the terminal. This file holds the overview and dispatches to the commands (cli.h).
#include <algorithm>
#include <exception>
#include <iostream>
#include <string>
#include <string_view>
#include <vector>

#include "sim/cli/cli.h"

namespace {

using namespace kv::sim::cli;

constexpr std::string_view help_overview =
    R"(kvsim - deterministic simulation testing for the replicated key-value store

kvsim runs the store's replication core (the same Replica state machine that kvnode runs) in a
seeded, single-threaded simulation of a whole cluster: a network that loses, duplicates,
reorders, delays and clogs messages, each sent as the peer codec's frame and now and then
damaged on the way; partitions, both ways and one way; crashes and power losses that tear the
unsynced tail of the write-ahead log, and disks lost whole; slow disks; skewed, drifting and
stepped clocks; a slow or failing PostgreSQL and legacy API. Clients run gets, puts and deletes
against it, and a checker verifies the consistency contract (DESIGN.md, C1-C9). Checked:
  C1  after the cluster heals and goes quiet, a read sees the newest acknowledged write; and at
      quiet, before any read, every replica of a key holds it
  C2  after quiet, every key's replicas hold the same record and no hint is left
  C3  a read returns what some put wrote (or the legacy API served), never invented or torn
      data; a restarted node recovers only what was written
  C4  where R + W > N (strict quorums) or where the quorums met on the wire, a read that starts
      after an acknowledged write sees it or newer
  C5  a write that starts after another was acknowledged gets a greater version
  C6  once a tombstone is collected, no replica still holds the value it removed, and no later
      read or replica at quiet brings that value back
  C7  a value hydrated from the legacy API never wins over a newer client write
and the store's invariants: the replicas' own checks after every input, recovery from whatever
the disk kept, a snapshot recovering to the state it was taken from, no request answered twice,
replies at least as new as what their coordinator heard, replicas and clients' reads never going
back, every frame decoding to the message sent, PostgreSQL read back holding every acknowledged
write (in sync mode, from the moment of the acknowledgement), and liveness: after the heal the
cluster falls quiet within a bound (with heartbeats, quiet includes every live node holding the
same members table and its failure detector right about every peer), and in some seeds a core of
it must do so with the other nodes dead for good, most of them taking the dead node out (kvctl
remove) while the workload runs: the removal must finish, and when reads move to the ring
without it every acknowledged write must have its W copies there. Not checked, as the store does not have the features yet: C8 (expiry), C9
(counters).
The seed decides everything (cluster size, quorums, timers, fault rates, faults, workload), so
every failure replays exactly, on any machine.

Usage:
  kvsim run --seeds A-B [--jobs N] [--json] [--quiet] [--hashes]
  kvsim replay (--seed S | --scenario FILE) [--trace FILE] [--html FILE]
  kvsim check-determinism --seeds A-B [--jobs N]
  kvsim shrink (--seed S | --scenario FILE) [--out FILE]
  kvsim help [COMMAND]             or: kvsim COMMAND --help

Commands:
  run                run many seeds in parallel; report failures, throughput and rare paths
  replay             run one seed or scenario file and print its event trace, or draw it as
                     an HTML timeline
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

// ---- Dispatch ----

const std::vector<Command>& commands() {
  static const std::vector<Command> all = {run_command(), replay_command(),
                                           check_determinism_command(), shrink_command()};
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
