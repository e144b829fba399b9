// The coordinator role: a client's get, put or delete for any key, driven against the key's
// preference list through its phases (request.h):
//   get   read: ask N, answer with the newest of the first R replies and repair every stale
//         replier; resolve: when those R hold nothing and a bridge is on, wait for the key's
//         miss resolution (miss_resolver.h);
//   put   discover: ask N for their versions and wait for a majority (and, in sync mode, ask
//   del   PostgreSQL for a key none of them holds), so the stamp is past any write a majority
//         acknowledged whatever the clocks say (C5); write: send the stamped record to N and
//         answer after W acknowledgements (and PostgreSQL's, in sync mode).
// Every phase resends to the silent and ends at the deadline. Replicas the failure detector takes
// as down (membership.h) are not sent to, and a request whose quorum (a majority too, for a
// write) cannot be reached without them fails at once, with nothing written (not in sloppy mode). In sloppy mode, after
// sloppy_after_ms, discovery writes with the versions it has, a write falls back to stand-ins
// for the silent, and a resolving read stops resending. A write leaves a hint for every replica
// that never acknowledged it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>

#include "core/bridge_calls.h"
#include "core/messages.h"
#include "core/miss_resolver.h"
#include "core/replica_role.h"
#include "core/request.h"
#include "core/write_behind.h"

namespace kv {

struct Context;

class Coordinator {
 public:
  Coordinator(Context& ctx, BridgeCalls& calls, WriteBehind& queue, MissResolver& misses,
              ReplicaRole& replica)
      : ctx_(ctx), calls_(calls), queue_(queue), misses_(misses), replica_(replica) {}

  void on_client(const ClientRequest& rq, std::uint64_t now_ms);
  void on_read_resp(NodeId from, const ReadResp& m, std::uint64_t now_ms);
  void on_write_ack(NodeId from, const WriteAck& m);
  // Retries, sloppy fallbacks and deadlines of every request, in id order.
  void tick(std::uint64_t now_ms);
  // Replies to the calls a request waits on (sync mode).
  void on_pg_write_reply(const Call& c, const BridgeReply& r);
  void on_pg_lookup_reply(const Call& c, bool ok, const std::string& detail,
                          std::uint64_t now_ms);
  // A miss resolution ended: its waiting reads are answered (or fail).
  void settle(const std::optional<Settlement>& s);

  std::size_t size() const { return requests_.size(); }
  bool empty() const { return requests_.empty(); }
  std::string check_invariants() const;

 private:
  // Sends unless the failure detector takes `to` as down (then counts the skip); whether it sent.
  bool send_unless_down(NodeId to, MessageBody body);
  void start_read(std::uint64_t req, Request& p);
  void discovered(std::uint64_t req, Request& p, std::uint64_t now_ms);
  void start_write(std::uint64_t req, Request& p, std::uint64_t now_ms);
  void resolve_miss(std::uint64_t req, Request& p, std::uint64_t now_ms);
  void reply_resolved(Request& p, const std::optional<Record>& found);
  void repair_stale(std::uint64_t req, Request& p);
  void tick_request(std::uint64_t req, Request& p, std::uint64_t now_ms);
  void try_fallbacks(std::uint64_t req, Request& p);
  void expire(std::uint64_t req, Request& p);
  void fail(Request& p, Errc e, std::string detail);
  void finish_if_done(std::uint64_t req);

  Context& ctx_;
  BridgeCalls& calls_;
  WriteBehind& queue_;
  MissResolver& misses_;
  ReplicaRole& replica_;
  std::map<std::uint64_t, Request> requests_;  // ordered: ticks visit requests in id order
};

}  // namespace kv
