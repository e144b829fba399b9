// Anti-entropy: replicas of a range converge without any client read (Dynamo's Merkle trees,
// kept incrementally as Riak's TicTac AAE keeps them).
//
// The tree. Every range of the ring (ring.h: the arc ending at one token, whose keys share one
// preference list) has ae_leaves leaves; a key falls in one of them by its hash. A leaf is the
// XOR of the digests of its records (key, version, tombstone flag and value), so a write updates
// it in constant time: XOR the old digest out and the new one in. A range's root is a hash of its
// leaves. The tree lives in memory only and is rebuilt from the store when the node starts.
//
// The exchange. Every ae_interval_ms a node takes the next peer in turn that is up (membership.h)
// and runs one exchange with it over the ranges both replicate:
//   1. AeTreeReq   initiator -> peer: the roots (up to ae_ranges_per_exchange_max ranges, the next
//                  ones in turn), with the ring's fingerprint (both must number ranges alike);
//   2. AeTreeResp  peer -> initiator: the peer's leaves of the ranges whose roots differ (up to
//                  ae_ranges_diff_max);
//   3. AeKeysReq   initiator -> peer: its keys, versions and digests in every leaf that differs
//                  (up to ae_message_bytes_max: the rest waits for a later exchange);
//   4. the peer pushes every record of those leaves that the initiator lacks or holds older, and
//      answers AeKeysResp with the keys it wants; the initiator pushes those.
// Pushes are WriteReq of kind anti_entropy, merged as any write is (newest wins: an exchange can
// never roll a record back) and made durable before anything that depends on them; nobody waits
// for them, so they are not acknowledged. What a lost message or a crash interrupts, a later
// exchange finds again: the trees still differ. Pushes spend a byte budget refilled at
// ae_bytes_per_s (one second of burst); a push the budget cannot pay for waits for a later
// exchange.
//
// Tombstone collection (repair-gated, as ScyllaDB's tombstone_gc: repair). A tombstone held here
// is collected once (1) every other replica of its range was seen holding it: an exchange that
// started after the tombstone arrived here found that peer's root of the range, or its leaf of
// the tombstone's bucket, equal to this node's; (2) its version is tombstone_grace_ms old on this
// node's clock, so that no write older than it can still be on its way (a request's retries, a
// delayed message); and (3) no hint this node holds for the key is newer (older ones are moot and
// dropped with it). Collecting drops the record (a WAL drop entry) and tells the other replicas
// (WriteReq of kind reap): each drops its copy if it holds that very tombstone, with the hints
// it holds for the key that are older. A replica that missed the reap still holds the tombstone
// and pushes it back in a later exchange; the collector then holds it again, sees every replica
// holding it again and reaps again. Hints anywhere expire at half the grace (hint_delivery.h), so
// that none older than the tombstone outlives it. Collection runs only without bridges.
//
// Every input is distrusted: a range this node does not share with the sender, a leaf out of
// bounds or a pushed record of a key this node does not replicate is refused and counted.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "core/messages.h"
#include "core/version.h"

namespace kv {

struct Context;

class AntiEntropy {
 public:
  // Builds the trees from the store `ctx` holds (linear in the store).
  AntiEntropy(Context& ctx, std::uint64_t now_ms);

  // The digest of `key`'s record `r` (never 0, which stands for no record). A change to the
  // store is reported as changed(key, digest of the record before or 0, the new record).
  static std::uint64_t digest(std::string_view key, const Record& r);
  void changed(const std::string& key, std::uint64_t before, const Record& after);
  // `from` reaps `key`'s tombstone `t`: dropped here if this node holds exactly it. A key this
  // node and `from` do not both replicate is refused and counted.
  void on_reap(NodeId from, const std::string& key, const Record& t);
  // Whether this node is one of `key`'s replicas: only those take anti-entropy pushes.
  bool replicates(std::string_view key) const;

  // The ring changed (membership.h): every tree, range and proof is built again from the store
  // (linear in it). The count of exchanges started goes on.
  void rebuild();
  std::uint64_t exchanges_started() const { return exchanges_started_; }
  // While the ring changes: whether this node holds every range the change gives it, as an
  // exchange it started after exchange `since` found its leaves equal to each replica's from
  // before the change (`leaving` aside: it is gone).
  bool pulled(std::uint64_t since, NodeId leaving) const;

  // Starts an exchange when one is due. Only when ae_interval_ms is not 0; a node with anti-
  // entropy off still answers its peers.
  void tick(std::uint64_t now_ms);
  // When tick wants to run next (local clock), if this node starts exchanges.
  std::optional<std::uint64_t> next_round_ms() const;

  void on_tree_req(NodeId from, const AeTreeReq& m);
  void on_tree_resp(NodeId from, const AeTreeResp& m);
  void on_keys_req(NodeId from, const AeKeysReq& m);
  void on_keys_resp(NodeId from, const AeKeysResp& m);

  // Cheap invariants, for every input: the exchange under way is with a peer, the budget within
  // its burst.
  std::string check_invariants() const;
  // Whether every tree holds exactly the store's records: linear in the store, for tests and the
  // simulator's checks at quiet.
  std::string check_trees() const;

 private:
  using Leaves = std::array<std::uint64_t, ae_leaves>;
  struct Exchange {
    std::uint64_t req = 0;
    NodeId peer = 0;
    std::uint64_t seq = 0;                 // exchanges started by this node, counted
    std::vector<std::uint32_t> ranges;     // whose roots it sent, in that order
  };
  using Bucket = std::pair<std::uint32_t, std::uint32_t>;  // (range, leaf)
  // Where the next list of a bucket too big for one message resumes, per peer.
  struct Resume {
    std::uint32_t range = 0, leaf = 0;
    std::string after;
  };

  static std::uint32_t leaf_of(std::string_view key);
  void build();
  std::uint64_t root(std::uint32_t range) const;
  const Leaves& leaves(std::uint32_t range) const;
  bool shares(std::uint32_t range, NodeId peer) const;
  // One stored record, with the bucket it falls in.
  struct Held {
    std::uint32_t range = 0, leaf = 0;
    const std::string* key = nullptr;
    const Record* record = nullptr;
  };
  // This node's records in `buckets`, by bucket then key.
  std::vector<Held> keys_in(const std::vector<AeBucket>& buckets) const;
  void refill(std::uint64_t now_ms);
  // Exchange `seq` saw `peer` hold what this node holds in `bucket` (tombstone collection).
  void synced(NodeId peer, const Bucket& bucket, std::uint64_t seq);
  // What the peer's answer to the exchange under way proves it holds: every range whose root it
  // found equal to ours, and every equal leaf of the ranges it answered.
  void credit(NodeId peer, const AeTreeResp& m);
  // Collects the tombstones of `bucket` every other replica is known to hold.
  void collect(const Bucket& bucket);
  // `key` is no longer a tombstone held in `bucket`.
  void forget_tombstone(const Bucket& bucket, const std::string& key);
  // Drops `key`'s tombstone `t` (held here) and the older hints for it.
  void drop(const std::string& key, const Record& t);
  void push(NodeId to, std::uint64_t req, const std::string& key, const Record& r);

  Context& ctx_;
  std::uint64_t fingerprint_ = 0;
  std::vector<std::vector<NodeId>> replicas_;          // by range: its preference list(s)
  std::vector<std::vector<NodeId>> before_;            // while changing, by range: the old one
  std::unordered_map<std::uint32_t, Leaves> trees_;    // by range; absent: every leaf 0
  std::map<NodeId, std::vector<std::uint32_t>> shared_;  // peer -> ranges both replicate
  std::vector<NodeId> peers_;                          // the keys of shared_, ascending
  std::size_t next_peer_ = 0;
  std::map<NodeId, std::size_t> range_cursor_;         // where the next roots to a peer start
  std::optional<Exchange> exchange_;                   // the one this node started, if any
  std::map<NodeId, Resume> resume_;
  // Tombstone collection: the tombstones held, by bucket, with the count of exchanges this node
  // had started when each arrived; and by (range, peer), per leaf, the latest exchange that saw
  // the peer hold what this node held in it.
  std::uint64_t exchanges_started_ = 0;
  std::map<Bucket, std::map<std::string, std::uint64_t>> tombstones_;
  std::map<std::pair<std::uint32_t, NodeId>, std::array<std::uint64_t, ae_leaves>> synced_;
  std::uint64_t next_round_ms_;
  std::int64_t budget_;                                // bytes; may go below 0 by one push
  std::uint64_t budget_at_ms_;
};

}  // namespace kv
