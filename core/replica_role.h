// The replica role: answering reads from the versioned store, merging writes into it (newest
// wins, so a repair or a retry can never roll a newer write back), and, as a fallback in sloppy
// mode, keeping hints for the replicas that were silent.
#pragma once

#include <string>

#include "core/anti_entropy.h"
#include "core/messages.h"
#include "core/miss_resolver.h"

namespace kv {

struct Context;

class ReplicaRole {
 public:
  ReplicaRole(Context& ctx, MissResolver& misses, AntiEntropy& ae)
      : ctx_(ctx), misses_(misses), ae_(ae) {}

  void on_read_req(NodeId from, const ReadReq& m);
  void on_write_req(NodeId from, const WriteReq& m);
  // Keeps a hint durably. False if it could not be kept (hints_max reached).
  bool store_hint(NodeId target, const std::string& key, const Record& r);

  // The store: well-formed records, none ahead of the clock.
  std::string check_invariants() const;

 private:
  Context& ctx_;
  MissResolver& misses_;
  AntiEntropy& ae_;
};

}  // namespace kv
