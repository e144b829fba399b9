// The history of a run: every client operation, when it was invoked and completed (in true,
// global time, which no node can see), and how it ended. The checker reads only this and the
// replicas' final state.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "core/messages.h"
#include "core/replica.h"
#include "sim/sim.h"

namespace kv::sim {

enum class Outcome : std::uint8_t {
  pending,
  ok,       // acknowledged
  failed,   // definitely not applied (a put/del refused before anything was written, any get)
  unknown,  // a put/del whose fate the client cannot know (timeout, coordinator crashed)
};

struct Op {
  std::uint32_t client = 0;
  std::uint64_t id = 0;
  OpType op = OpType::get;
  std::string key;
  std::string value;           // put: unique per operation, so a read names the write it saw
  std::uint32_t quorum = 0;    // effective R or W
  std::uint64_t invoke_us = 0, complete_us = 0;
  Outcome outcome = Outcome::pending;
  std::optional<Record> read;  // get ok: what it returned (absent: nothing stored anywhere)
  Version version;             // put/del ok: the version the coordinator stamped
  bool final_read = false;     // one of the reads after the cluster went quiet
  std::string error;
  // What the world saw on the wire before the coordinator decided its reply (messages a node
  // sends itself are not seen): the preference-list replicas that acknowledged the write, and
  // every replica's answer to the read.
  NodeId coordinator = 0;
  bool decided = false;
  std::vector<NodeId> acked_by;
  std::vector<std::pair<NodeId, Version>> responded;
};

// A node that lost its disk at `at_us` and came back empty at `back_us`; node 0: every node
// (the whole cluster, in PostgreSQL sync mode).
struct DiskLoss {
  NodeId node = 0;
  std::uint64_t at_us = 0, back_us = 0;
};

// A tombstone of a key a node collected (dropped) at `at_us`.
struct Collected {
  std::uint64_t at_us = 0;
  NodeId node = 0;
  Version version;
};

struct CheckContext {
  std::uint64_t seed = 0;
  std::uint32_t replicas = 3;
  bool sloppy = false;
  std::map<std::string, std::string> legacy;  // what the legacy API holds: key -> value
  const Ring* ring = nullptr;
  std::vector<DiskLoss> disk_losses;
  // Liveness mode: the nodes left down after the heal. The checks hold the others, the core, to
  // everything a core can keep: the writes a core replica is known to hold, convergence among
  // the core replicas, hints for core nodes delivered.
  std::set<NodeId> kept_down;
  // Tombstone collection: whether it runs, and every tombstone collected, by key. A collected
  // tombstone is absent: where one may be, "nothing" and "a tombstone" are the same answer.
  bool collecting = false;
  std::map<std::string, std::vector<Collected>> collected;
};

// What a replica's record of a key means to a client: with tombstone collection, a tombstone
// and nothing are alike.
inline std::optional<Record> as_read(std::optional<Record> r, bool collecting) {
  if (collecting && r && r->tombstone) r.reset();
  return r;
}

// C1, C3, C4, C5, C6 and C7 over a finished history.
std::vector<Violation> check_history(const std::vector<Op>& ops, const CheckContext& ctx);

// C2 after the final reads: every key's preference-list replicas hold the same record, and no
// node still holds a hint. `replicas` are the live replicas of the run, indexed by node id - 1.
std::vector<Violation> check_convergence(const std::vector<const Replica*>& replicas,
                                         std::uint32_t keys, const CheckContext& ctx);

// At quiet, before any final read (which would repair what is missing): every replica of a key
// holds the newest acknowledged write or newer, and they all agree; no hint is left. Keys in
// `exempt` are skipped (the world says why each may lawfully lack a copy until it is read), and
// without anti-entropy a legacy hydration, spread once like a read repair, may be missing from
// some replicas. With anti-entropy nothing may be missing: an exempt key's write may be gone,
// but its replicas must still agree.
std::vector<Violation> check_replicas_at_quiet(const std::vector<const Replica*>& replicas,
                                               const std::vector<Op>& ops, std::uint32_t keys,
                                               const CheckContext& ctx,
                                               const std::set<std::string>& exempt,
                                               bool anti_entropy);

std::string key_name(std::uint32_t index);

// A value as people read it: its unique name, without the padding (garbage is shown escaped).
std::string value_label(const std::string& value);

}  // namespace kv::sim
