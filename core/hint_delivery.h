// Hint delivery: the hints this node keeps for other replicas (written when they did not
// acknowledge a write, here as coordinator or as a sloppy fallback) are offered to them every
// hint_interval_ms, a bounded number per round, until each is acknowledged. A target the failure
// detector takes as down (membership.h) is passed over: its hints wait for it to be back.
#pragma once

#include <cstdint>
#include <string>

#include "core/messages.h"
#include "core/store.h"

namespace kv {

struct Context;

class HintDelivery {
 public:
  HintDelivery(Context& ctx, std::uint64_t now_ms);

  // A round of offers, when one is due.
  void deliver(std::uint64_t now_ms);
  // A target acknowledged a delivered hint: it is dropped (unless a newer one came meanwhile).
  void on_ack(NodeId from, const WriteAck& m);

  // The hints: within hints_max, each for another member, none ahead of the clock.
  std::string check_invariants() const;

 private:
  Context& ctx_;
  std::uint64_t next_round_ms_;
  HintStore::HintKey cursor_;  // where the next round starts
};

}  // namespace kv
