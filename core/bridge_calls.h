// Calls to the bridges (PostgreSQL, the legacy API) in flight, by id. Every call is answered
// exactly once: by the driver, or here as an error when the driver let it run past its deadline.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "core/messages.h"

namespace kv {

struct Context;

// What a call is for.
struct Call {
  BridgeKind kind = BridgeKind::pg_write;
  std::string key;
  std::uint64_t req = 0;  // the client request waiting on it (0: a miss resolution or the queue)
  std::uint64_t started_ms = 0;
};

class BridgeCalls {
 public:
  explicit BridgeCalls(Context& ctx) : ctx_(ctx) {}

  // Issues a call (into the Ready batch) and returns its id.
  std::uint64_t make(BridgeKind kind, const std::string& key, std::uint64_t req,
                     std::optional<Record> record = {});
  // The call `reply` answers, now no longer in flight; nullopt for a reply to a call this
  // incarnation did not make, or a second reply.
  std::optional<Call> take(const BridgeReply& reply);
  // Error replies for the calls the driver has not answered within their deadline.
  std::vector<BridgeReply> overdue(std::uint64_t now_ms) const;

  const Call* find(std::uint64_t id) const;
  bool empty() const { return calls_.empty(); }
  std::string check_invariants() const;

 private:
  Context& ctx_;
  std::map<std::uint64_t, Call> calls_;
};

}  // namespace kv
