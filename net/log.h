// The one way kvnode writes a log line: "<source>: <text>" on stderr, where the source names the
// part of the node speaking ("http", "resp", "peer", "postgres", "legacy API", "kvnode n1").
// Lines that someone outside the node can cause go through LogLimit (net/log_limit.h), which
// writes here too. kvctl and kvbench print to their user instead and do not use it.
#pragma once

#include <string_view>

namespace kv {

// One write per line, so that lines from different parts of the node never interleave.
// Thread-safe (a single write(2) call).
void log_line(std::string_view source, std::string_view text);

}  // namespace kv
