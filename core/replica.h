// The replica state machine: both roles of a node, with no I/O. This is the facade the drivers
// (kvnode, the simulator) see; the roles live in files of their own, named below.
//
// Coordinator (coordinator.h; its requests and their tallies in request.h): any node takes a
// client's get, put or delete for any key and drives it against the key's preference list (N
// replicas from the ring):
//   get    ask N, answer with the newest of the first R replies, repair every stale replier;
//   put    first ask N for their current version and wait for a majority, so that the stamp is
//   del    past any write acknowledged by a majority whatever the clocks say (C5); then send the
//          stamped record to N and answer after W acknowledgements. Replicas that never
//          acknowledged get a hint, kept durably here and delivered when they answer again.
// Replica (replica_role.h, hint_delivery.h): merge records into the versioned store (newest
// wins), keep hints for others when acting as a fallback (sloppy mode), answer reads; offer the
// hints it keeps to their targets.
//
// Membership (membership.h): every heartbeat_interval_ms a heartbeat to every other member; the
// members table spreads by gossip and a phi-accrual failure detector marks peers up or down, so
// the coordinator skips replicas known down and fails at once what they leave out of reach.
//
// Anti-entropy (anti_entropy.h): every ae_interval_ms the node compares the hash trees of the
// ranges it shares with one peer, and the two push each other the records the other lacks, so
// replicas converge, and a node that lost its disk is refilled, without any client read.
//
// Bridges (optional; bridge_calls.h, write_behind.h, miss_resolver.h, breaker.h): with
// PostgreSQL on, the coordinator of a client write writes it to PostgreSQL, once (sync: the
// client is answered only after W replicas and PostgreSQL have it; async: through a bounded
// write-behind queue, coalesced per key and retried with backoff). In sync mode a write of a key
// the majority does not hold first looks the key up in PostgreSQL and stamps past the stored
// version, so a write after the whole cluster lost its disks is still the newest.
// A get whose quorum finds nothing (no value, no tombstone) resolves the miss: PostgreSQL first,
// then the legacy API; what is found is handed to the client and written to the replicas
// (hydration: at its stored version from PostgreSQL, at the zero version from the legacy API, so
// any client write wins, C7). Concurrent misses of one key share one resolution; a resolved miss
// is remembered (a not-found for legacy_negative_ttl_ms, a value for the reads already under way)
// and forgotten as soon as the key is written here; a circuit breaker stops calling a failing
// legacy API for a while, and meanwhile such reads fail with Errc::unavailable, never a false
// not-found.
//
// Inputs are on_client, on_message, on_tick (and on_bridge_reply, for the bridges). Each input may
// produce outputs, collected into one Ready batch that take_ready() hands to the driver. The driver
// must make the batch's persist entries durable before sending anything from it (see Ready).
// Time is the node's own clock in ms, handed in with every input: it may be skewed and drift.
// The configuration and its defaults are in config.h, the counters in stats.h, the shared state
// of the roles in context.h, the client-visible errors in errors.h.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "core/config.h"
#include "core/messages.h"
#include "core/ring.h"
#include "core/stats.h"
#include "core/store.h"

namespace kv {

class Replica {
 public:
  // `state` is what recovery rebuilt from this node's disk (empty on first start).
  Replica(ReplicaConfig config, DurableState state, std::uint64_t now_ms);
  ~Replica();
  Replica(Replica&&) noexcept;
  Replica& operator=(Replica&&) noexcept;

  void on_client(const ClientRequest& request, std::uint64_t now_ms);
  void on_message(const Message& message, std::uint64_t now_ms);
  void on_tick(std::uint64_t now_ms);
  void on_bridge_reply(const BridgeReply& reply, std::uint64_t now_ms);

  // Starts taking the dead member `target` out of the cluster (membership.h); empty, or why not.
  // Its steps then run on their own, on every node.
  std::string remove_member(NodeId target, std::uint64_t now_ms);

  // The outputs produced since the last call. Carry them out in order (see Ready).
  Ready take_ready();

  // Empty if every internal invariant holds, else a description of the first broken one (each
  // role checks its own). Cheap enough to call after every step of a simulation (linear in the
  // number of keys and requests, both small there); a driver that finds one broken must stop
  // the node.
  std::string check_invariants() const;
  // Empty if anti-entropy's hash trees hold exactly the store's records (anti_entropy.h); linear
  // in the store, so for tests and the simulator's checks at quiet, not for every input.
  std::string check_trees() const;

  const DurableState& state() const;
  const ReplicaStats& stats() const;
  const ReplicaConfig& config() const;
  const Ring& ring() const;
  // Membership (membership.h): the members table as this node holds it, its hash (equal on two
  // nodes that agree), and what the failure detector says of a peer at `now_ms`.
  const std::map<NodeId, Member>& members() const;
  std::uint64_t members_hash() const;
  bool peer_up(NodeId node, std::uint64_t now_ms) const;
  double peer_phi(NodeId node, std::uint64_t now_ms) const;
  std::size_t requests_in_flight() const;
  // Async write-behind: keys waiting for PostgreSQL, and since when the oldest has waited
  // (its lag; nullopt when the queue is empty).
  std::size_t pg_queue_size() const;
  std::optional<std::uint64_t> pg_queue_oldest_ms() const;
  bool legacy_breaker_open(std::uint64_t now_ms) const;

 private:
  struct Roles;  // the shared context and every role, wired to each other (replica.cc)

  void dispatch(const Message& message, std::uint64_t now_ms);
  void drain_local(std::uint64_t now_ms);

  std::unique_ptr<Roles> roles_;  // on the heap: the roles refer to each other
};

}  // namespace kv
