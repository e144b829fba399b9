// The failure detector: phi accrual (Hayashibara et al., 2004; as Cassandra and Akka use it).
//
// Every heartbeat heard from a peer records the interval since the one before (capped, so that
// one long silence, a partition, does not teach the detector to wait that long next time). Phi
// is how unlikely the silence since the last heartbeat is, on a log scale, if intervals were
// exponential with the mean of the recent ones: phi = elapsed / mean * log10(e). At phi 1 the
// chance that the peer is merely slow is 10%, at 8 it is 10^-8. A peer is down while its phi is
// at or above the threshold, and up again with its next heartbeat.
//
// Pure and clock-driven (the node's own clock, as every input of the core): the simulator and
// the unit tests drive it as kvnode does. A clock stepped backwards counts as no time elapsed.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <map>

#include "core/version.h"

namespace kv {

inline constexpr std::size_t fd_window = 64;              // intervals remembered per peer
inline constexpr std::uint64_t fd_interval_cap_factor = 4;  // intervals capped at 4 heartbeats

class FailureDetector {
 public:
  // interval_ms 0: no heartbeats; every peer is taken as up. Every peer starts as just heard.
  FailureDetector(std::uint64_t interval_ms, double phi_threshold, std::uint64_t now_ms);

  void heard(NodeId peer, std::uint64_t now_ms);
  // 0 for a peer just heard; grows with its silence.
  double phi(NodeId peer, std::uint64_t now_ms) const;
  bool up(NodeId peer, std::uint64_t now_ms) const;
  // The mean of the peer's recent intervals (the heartbeat interval until one was measured).
  double mean_interval_ms(NodeId peer) const;
  bool enabled() const { return interval_ms_ != 0; }

 private:
  struct Peer {
    std::uint64_t last_ms = 0;
    std::array<std::uint32_t, fd_window> intervals{};
    std::size_t count = 0, next = 0;
    std::uint64_t sum = 0;
  };
  Peer& peer(NodeId id);

  std::uint64_t interval_ms_;
  double threshold_;
  std::uint64_t started_ms_;
  std::map<NodeId, Peer> peers_;
};

}  // namespace kv
