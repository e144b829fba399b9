// kvsim replay --html: one run as a page a browser draws. Nodes are lanes, time runs left to
// right; every peer message is a line from its sender's lane to its receiver's (red and cut
// short where it was lost); crashes, disk losses, partitions, clogged links and clock steps sit
// on the lanes they struck; client operations are bars on their coordinator's lane; the heal,
// the quiet and every violation are lines across all lanes. The page is one self-contained file
// (no network, no libraries): the run's marks as JSON and a script that draws them as SVG.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "sim/sim.h"

namespace kv::sim::cli {

// What the page draws when it shows the whole run, counted here so that a test can compare it
// with what the browser made of the page.
struct TimelineCounts {
  std::uint64_t lanes = 0, messages = 0, lost = 0, crashes = 0, ops = 0, violations = 0;
};

TimelineCounts count_timeline(const std::vector<Mark>& marks, std::uint32_t nodes);

// The page. `label` names the run ("seed 17", a scenario file's name).
std::string timeline_html(const std::string& label, const Scenario& scenario,
                          const std::vector<Mark>& marks, const RunResult& result);

}  // namespace kv::sim::cli
