// A client request at its coordinator, and the tallies over it. The tallies are pure functions
// of the request, so every phase (coordinator.cc) and every check asks the same questions the
// same way.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "core/messages.h"
#include "core/version.h"

namespace kv {

struct Context;

// read: asking the replicas for the key; resolve: the read quorum found nothing and the request
// waits for the key's miss resolution; discover: a write asking a majority for their versions
// (and PostgreSQL, for a key the majority does not hold); write: sending the stamped record.
enum class Phase : std::uint8_t { read, resolve, discover, write };

// A node the request was sent to: a preference-list replica, or a fallback standing in for one.
struct Target {
  NodeId node = 0;
  NodeId hint_for = 0;  // a fallback: the preference-list node whose hint it keeps
  bool answered = false;  // read, discover: replied to the read; write: acknowledged the write
  std::optional<Record> record;  // read, discover: what it replied
  // read: the newest version sent to it as a repair. Optional, because a legacy hydration has
  // the zero version and must still reach a replica that holds nothing.
  std::optional<Version> repaired;
};

struct Request {
  std::uint64_t client_id = 0;
  OpType op = OpType::get;
  Phase phase = Phase::read;
  std::string key;
  std::string value;         // put: the value, until it is stamped
  std::uint32_t quorum = 0;  // R for a get, W for a put/del
  std::size_t extra = 0;     // put/del while the ring changes: answers needed beyond the quorum
                             // (context.h, Placement)
  std::vector<Target> targets;
  std::optional<Record> newest;  // read, resolve, discover: the newest record replied (unused
                                 // once writing)
  Record stamped;                // write: the record being written, stamped here
  std::uint64_t started_ms = 0, phase_started_ms = 0, deadline_ms = 0, next_retry_ms = 0;
  bool replied = false;
  bool failed = false;  // the reply was an error
  bool sloppy_tried = false;
  bool pg_lookup_pending = false;  // discover (sync mode): PostgreSQL looks up a key none holds
  bool pg_write_pending = false;   // write (sync mode): PostgreSQL has not confirmed the write
};

// Targets that answered in the current phase.
std::size_t answered(const Request& r);
// A preference-list replica that has not answered, neither itself nor through a fallback that
// holds its hint.
bool unheard(const Request& r, const Target& t);
// Finished: replied, and no preference-list replica is unheard (until then the request stays,
// to repair or hint the stragglers).
bool done(const Request& r);

// Empty if the request `id` is consistent with the node it runs on, else what is broken.
std::string check_invariants(std::uint64_t id, const Request& r, const Context& ctx);

}  // namespace kv
