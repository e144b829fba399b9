// Anti-entropy (see anti_entropy.h): the incremental trees and the four-step exchange.
#include "core/anti_entropy.h"

#include <algorithm>
#include <tuple>
#include <utility>

#include "core/context.h"
#include "core/hash.h"
#include "core/pb_convert.h"

namespace kv {
namespace {

// What a pushed record costs the budget beyond its key and value: the write's other fields.
constexpr std::size_t push_overhead_bytes = 32;
// What one listed key costs a key list beyond its bytes: version and digest.
constexpr std::size_t listed_key_overhead_bytes = 32;

// splitmix64's finalizer: a bijection with full avalanche.
std::uint64_t mix(std::uint64_t h, std::uint64_t v) {
  h ^= v + 0x9e3779b97f4a7c15ULL + (h << 6) + (h >> 2);
  h ^= h >> 30;
  h *= 0xbf58476d1ce4e5b9ULL;
  h ^= h >> 27;
  h *= 0x94d049bb133111ebULL;
  return h ^ (h >> 31);
}

bool same_record(const Record& r, const AeKeyVersion& theirs, std::uint64_t digest) {
  return r.version == theirs.version && digest == theirs.digest;
}

}  // namespace

AntiEntropy::AntiEntropy(Context& ctx, std::uint64_t now_ms)
    : ctx_(ctx),
      next_round_ms_(now_ms + ctx.config.ae_interval_ms),
      budget_(static_cast<std::int64_t>(ctx.config.ae_bytes_per_s)),
      budget_at_ms_(now_ms) {
  build();
}

void AntiEntropy::rebuild() {
  fingerprint_ = 0;
  replicas_.clear();
  before_.clear();
  trees_.clear();
  shared_.clear();
  peers_.clear();
  next_peer_ = 0;
  range_cursor_.clear();
  exchange_.reset();  // its ranges are numbered on the old ring: a late answer is ignored
  resume_.clear();
  tombstones_.clear();
  synced_.clear();
  build();
}

// The ranges of the ring of every member not left; while the ring changes, a range's replicas
// are its preference lists before and after the change together (context.h, Placement).
void AntiEntropy::build() {
  fingerprint_ = ctx_.ring.fingerprint();
  const NodeId self = ctx_.config.self;
  const std::size_t n = ctx_.config.replicas;
  replicas_.reserve(ctx_.ring.range_count());
  for (std::size_t r = 0; r < ctx_.ring.range_count(); ++r) {
    if (!ctx_.changing) {
      replicas_.push_back(ctx_.ring.range_replicas(r, n));
    } else {
      const std::uint64_t end = ctx_.ring.range_end(r);
      std::vector<NodeId> owners = ctx_.old_ring.preference_list_at(end, n);
      before_.push_back(owners);
      for (NodeId m : ctx_.new_ring.preference_list_at(end, n)) {
        if (std::find(owners.begin(), owners.end(), m) == owners.end()) owners.push_back(m);
      }
      replicas_.push_back(std::move(owners));
    }
    const auto& owners = replicas_.back();
    if (std::find(owners.begin(), owners.end(), self) == owners.end()) continue;
    for (NodeId peer : owners) {
      if (peer != self) shared_[peer].push_back(static_cast<std::uint32_t>(r));
    }
  }
  for (const auto& [peer, ranges] : shared_) peers_.push_back(peer);
  ctx_.state.store.for_each([this](const Store::Entry& e) { changed(e.first, 0, e.second); });
}

bool AntiEntropy::pulled(std::uint64_t since, NodeId leaving) const {
  if (!ctx_.changing) return true;
  const NodeId self = ctx_.config.self;
  for (std::size_t r = 0; r < replicas_.size(); ++r) {
    const auto& before = before_[r];
    const auto& owners = replicas_[r];
    if (std::find(owners.begin(), owners.end(), self) == owners.end() ||
        std::find(before.begin(), before.end(), self) != before.end()) {
      continue;  // not a range this node gains
    }
    for (NodeId peer : before) {
      if (peer == leaving) continue;
      auto s = synced_.find({static_cast<std::uint32_t>(r), peer});
      if (s == synced_.end()) return false;
      for (std::uint64_t seq : s->second) {
        if (seq <= since) return false;
      }
    }
  }
  return true;
}

std::uint64_t AntiEntropy::digest(std::string_view key, const Record& r) {
  std::uint64_t h = mix(hash64(key), r.version.physical_ms);
  h = mix(h, (std::uint64_t{r.version.counter} << 32) | r.version.node);
  h = mix(h, (std::uint64_t{r.tombstone} << 32) | crc32c(r.value));
  return h == 0 ? 1 : h;  // 0 means "no record"
}

std::uint32_t AntiEntropy::leaf_of(std::string_view key) {
  // The low bits: the range depends on where the whole hash falls among the tokens.
  return static_cast<std::uint32_t>(hash64(key) % ae_leaves);
}

void AntiEntropy::changed(const std::string& key, std::uint64_t before, const Record& after) {
  const Bucket b{static_cast<std::uint32_t>(ctx_.ring.range_of(key)), leaf_of(key)};
  std::uint64_t& leaf = trees_[b.first][b.second];
  leaf ^= before ^ digest(key, after);
  if (after.tombstone && ctx_.collects_tombstones()) {
    tombstones_[b][key] = exchanges_started_;  // a newer tombstone starts over
  } else {
    forget_tombstone(b, key);
  }
}

void AntiEntropy::forget_tombstone(const Bucket& bucket, const std::string& key) {
  auto it = tombstones_.find(bucket);
  if (it == tombstones_.end() || it->second.erase(key) == 0) return;
  if (it->second.empty()) tombstones_.erase(it);
}

void AntiEntropy::synced(NodeId peer, const Bucket& bucket, std::uint64_t seq) {
  std::uint64_t& latest = synced_[{bucket.first, peer}][bucket.second];
  latest = std::max(latest, seq);
  if (ctx_.collects_tombstones()) collect(bucket);
}

void AntiEntropy::credit(NodeId peer, const AeTreeResp& m) {
  const Exchange& x = *exchange_;
  std::vector<std::uint32_t> listed;
  for (const AeRangeLeaves& rl : m.ranges) listed.push_back(rl.range);
  std::sort(listed.begin(), listed.end());
  // The peer answers differing ranges in the order asked, up to its limit: past the last one it
  // listed, a range it left out may differ too.
  std::size_t known = x.ranges.size();
  if (!m.ranges.empty() && m.ranges.size() >= ctx_.config.ae_ranges_diff_max) {
    auto last = std::find(x.ranges.begin(), x.ranges.end(), m.ranges.back().range);
    known = last == x.ranges.end() ? 0 : static_cast<std::size_t>(last - x.ranges.begin()) + 1;
  }
  for (std::size_t i = 0; i < known; ++i) {
    const std::uint32_t range = x.ranges[i];
    if (std::binary_search(listed.begin(), listed.end(), range)) continue;
    for (std::uint32_t leaf = 0; leaf < ae_leaves; ++leaf) synced(peer, {range, leaf}, x.seq);
  }
  for (const AeRangeLeaves& rl : m.ranges) {
    const Leaves& own = leaves(rl.range);
    for (std::uint32_t leaf = 0; leaf < ae_leaves; ++leaf) {
      if (own[leaf] == rl.leaves[leaf]) synced(peer, {rl.range, leaf}, x.seq);
    }
  }
}

void AntiEntropy::collect(const Bucket& bucket) {
  auto it = tombstones_.find(bucket);
  if (it == tombstones_.end()) return;
  const auto& owners = replicas_[bucket.first];
  // Every other replica was seen holding what this node held by exchange `proven` or a later one.
  std::uint64_t proven = ~std::uint64_t{0};
  for (NodeId peer : owners) {
    if (peer == ctx_.config.self) continue;
    auto s = synced_.find({bucket.first, peer});
    if (s == synced_.end()) return;
    proven = std::min(proven, s->second[bucket.second]);
  }
  std::vector<std::pair<std::string, Record>> ripe;
  for (const auto& [key, arrived] : it->second) {
    if (arrived >= proven) continue;  // no exchange since it arrived has seen every replica
    const Record* t = ctx_.state.store.find(key);
    if (!t || !t->tombstone) continue;
    if (t->version.physical_ms + ctx_.config.tombstone_grace_ms > ctx_.now_ms) continue;
    const auto hints = ctx_.state.hints.for_key(key, ctx_.config.members);
    if (std::any_of(hints.begin(), hints.end(), [&](const auto& h) { return h.second->version > t->version; })) {
      continue;  // a newer write is still on its way to some replica
    }
    ripe.emplace_back(key, *t);
  }
  for (const auto& [key, t] : ripe) {
    drop(key, t);
    ++ctx_.stats.tombstones_collected;
    for (NodeId peer : owners) {
      if (peer != ctx_.config.self) ctx_.send(peer, WriteReq{0, WriteKind::reap, key, t, 0});
    }
  }
}

void AntiEntropy::drop(const std::string& key, const Record& t) {
  ctx_.state.store.drop_tombstone(key, t.version);
  ctx_.ready.persist.push_back(WalDrop{key, t.version});
  const Bucket b{static_cast<std::uint32_t>(ctx_.ring.range_of(key)), leaf_of(key)};
  trees_[b.first][b.second] ^= digest(key, t);
  forget_tombstone(b, key);
  std::vector<std::pair<NodeId, Version>> moot;  // hints older than the tombstone
  for (const auto& [target, r] : ctx_.state.hints.for_key(key, ctx_.config.members)) {
    if (r->version <= t.version) moot.emplace_back(target, r->version);
  }
  for (const auto& [target, version] : moot) {
    ctx_.state.hints.remove_delivered(target, key, version);
    ctx_.ready.persist.push_back(WalHintDone{target, key, version});
    ++ctx_.stats.hints_dropped_with_tombstone;
  }
}

void AntiEntropy::on_reap(NodeId from, const std::string& key, const Record& t) {
  if (!shares(static_cast<std::uint32_t>(ctx_.ring.range_of(key)), from)) {
    ++ctx_.stats.ae_refused;
    return;
  }
  const Record* held = ctx_.state.store.find(key);
  if (!ctx_.collects_tombstones() || !held || !held->tombstone || held->version != t.version) {
    return;  // something newer, or nothing: nothing to drop
  }
  drop(key, Record{*held});
  ++ctx_.stats.tombstones_reaped;
}

bool AntiEntropy::replicates(std::string_view key) const {
  const auto& owners = replicas_[ctx_.ring.range_of(key)];
  return std::find(owners.begin(), owners.end(), ctx_.config.self) != owners.end();
}

const AntiEntropy::Leaves& AntiEntropy::leaves(std::uint32_t range) const {
  static const Leaves empty{};
  auto it = trees_.find(range);
  return it == trees_.end() ? empty : it->second;
}

std::uint64_t AntiEntropy::root(std::uint32_t range) const {
  const Leaves& l = leaves(range);
  if (std::all_of(l.begin(), l.end(), [](std::uint64_t v) { return v == 0; })) return 0;
  std::uint64_t h = range;
  for (std::uint64_t v : l) h = mix(h, v);
  return h;
}

bool AntiEntropy::shares(std::uint32_t range, NodeId peer) const {
  if (range >= replicas_.size() || peer == ctx_.config.self) return false;
  const auto& owners = replicas_[range];
  return std::find(owners.begin(), owners.end(), ctx_.config.self) != owners.end() &&
         std::find(owners.begin(), owners.end(), peer) != owners.end();
}

std::vector<AntiEntropy::Held> AntiEntropy::keys_in(const std::vector<AeBucket>& buckets) const {
  std::vector<std::pair<std::uint32_t, std::uint32_t>> wanted;
  for (const AeBucket& b : buckets) wanted.emplace_back(b.range, b.leaf);
  std::sort(wanted.begin(), wanted.end());
  std::vector<Held> out;
  ctx_.state.store.for_each([&](const Store::Entry& e) {
    const Held h{static_cast<std::uint32_t>(ctx_.ring.range_of(e.first)), leaf_of(e.first), &e.first,
                 &e.second};
    if (std::binary_search(wanted.begin(), wanted.end(), std::pair{h.range, h.leaf})) out.push_back(h);
  });
  std::sort(out.begin(), out.end(), [](const Held& a, const Held& b) {
    return std::tie(a.range, a.leaf, *a.key) < std::tie(b.range, b.leaf, *b.key);
  });
  return out;
}

void AntiEntropy::refill(std::uint64_t now_ms) {
  const auto rate = static_cast<std::int64_t>(ctx_.config.ae_bytes_per_s);
  if (now_ms > budget_at_ms_) {
    const auto elapsed = static_cast<std::int64_t>(std::min<std::uint64_t>(now_ms - budget_at_ms_, 1000));
    budget_ = std::min(rate, budget_ + rate * elapsed / 1000);
  }
  budget_at_ms_ = now_ms;  // a clock stepped back refills nothing
}

void AntiEntropy::push(NodeId to, std::uint64_t req, const std::string& key, const Record& r) {
  if (ctx_.config.ae_bytes_per_s != 0 && budget_ <= 0) {
    ++ctx_.stats.ae_pushes_deferred;
    return;
  }
  budget_ -= static_cast<std::int64_t>(key.size() + r.value.size() + push_overhead_bytes);
  ++ctx_.stats.ae_records_pushed;
  ctx_.stats.ae_bytes_pushed += key.size() + r.value.size();
  ctx_.send(to, WriteReq{req, WriteKind::anti_entropy, key, r, 0});
}

std::optional<std::uint64_t> AntiEntropy::next_round_ms() const {
  if (ctx_.config.ae_interval_ms == 0 || peers_.empty()) return std::nullopt;
  return next_round_ms_;
}

void AntiEntropy::tick(std::uint64_t now_ms) {
  refill(now_ms);
  if (ctx_.config.ae_interval_ms == 0 || peers_.empty() || now_ms < next_round_ms_) return;
  next_round_ms_ = now_ms + ctx_.config.ae_interval_ms;
  // The next peer in turn that the failure detector takes as up; none up: no exchange this round.
  std::size_t tried = 0;
  while (tried < peers_.size() && !ctx_.peer_up(peers_[next_peer_ % peers_.size()])) {
    ++next_peer_;
    ++tried;
  }
  if (tried == peers_.size()) return;
  const NodeId peer = peers_[next_peer_++ % peers_.size()];
  const std::vector<std::uint32_t>& ranges = shared_.at(peer);
  std::size_t& cursor = range_cursor_[peer];
  const std::size_t count = std::min(ranges.size(), ctx_.config.ae_ranges_per_exchange_max);
  AeTreeReq m{ctx_.new_id(), fingerprint_, {}};
  m.ranges.reserve(count);
  for (std::size_t i = 0; i < count; ++i) {
    const std::uint32_t range = ranges[(cursor + i) % ranges.size()];
    m.ranges.push_back(AeRangeRoot{range, root(range)});
  }
  cursor = (cursor + count) % ranges.size();
  std::vector<std::uint32_t> sent;
  sent.reserve(m.ranges.size());
  for (const AeRangeRoot& rr : m.ranges) sent.push_back(rr.range);
  // A reply to an earlier exchange is ignored from now on.
  exchange_ = Exchange{m.req, peer, ++exchanges_started_, std::move(sent)};
  ++ctx_.stats.ae_exchanges;
  ctx_.send(peer, std::move(m));
}

void AntiEntropy::on_tree_req(NodeId from, const AeTreeReq& m) {
  if (m.ring != fingerprint_) {
    ++ctx_.stats.ae_refused;
    return;
  }
  AeTreeResp resp{m.req, {}};
  for (const AeRangeRoot& rr : m.ranges) {
    if (!shares(rr.range, from)) {
      ++ctx_.stats.ae_refused;
      return;
    }
    if (root(rr.range) == rr.root) continue;
    if (resp.ranges.size() >= ctx_.config.ae_ranges_diff_max) break;
    const Leaves& l = leaves(rr.range);
    resp.ranges.push_back(AeRangeLeaves{rr.range, {l.begin(), l.end()}});
  }
  ctx_.send(from, std::move(resp));
}

void AntiEntropy::on_tree_resp(NodeId from, const AeTreeResp& m) {
  if (!exchange_ || exchange_->req != m.req || exchange_->peer != from) return;  // stale
  std::vector<AeBucket> differing;
  for (const AeRangeLeaves& rl : m.ranges) {
    if (!shares(rl.range, from) || rl.leaves.size() != ae_leaves) {
      ++ctx_.stats.ae_refused;
      exchange_.reset();
      return;
    }
    ++ctx_.stats.ae_ranges_differing;
    const Leaves& own = leaves(rl.range);
    for (std::uint32_t leaf = 0; leaf < ae_leaves; ++leaf) {
      if (own[leaf] != rl.leaves[leaf]) differing.push_back(AeBucket{rl.range, leaf, {}});
    }
  }
  // The proofs serve tombstone collection, and a change of the ring (pulled()).
  if (ctx_.collects_tombstones() || ctx_.changing) credit(from, m);
  if (differing.empty()) {
    exchange_.reset();
    return;
  }
  std::sort(differing.begin(), differing.end(), [](const AeBucket& a, const AeBucket& b) {
    return std::pair{a.range, a.leaf} < std::pair{b.range, b.leaf};
  });
  const auto own_keys = keys_in(differing);
  // Whole buckets in order while they fit; a first bucket too big for one message is listed in
  // parts, one per exchange, each resuming after the last key of the one before.
  AeKeysReq req{m.req, {}, {}};
  std::size_t bytes = 0;
  std::size_t next = 0;  // into own_keys
  std::optional<Resume> resume;
  if (auto it = resume_.find(from); it != resume_.end()) {
    resume = std::move(it->second);
    resume_.erase(it);
  }
  if (resume && (differing[0].range != resume->range || differing[0].leaf != resume->leaf)) resume.reset();
  if (resume) {
    differing[0].after = resume->after;
    while (next < own_keys.size() && own_keys[next].range == resume->range &&
           own_keys[next].leaf == resume->leaf && *own_keys[next].key <= resume->after) {
      ++next;
    }
  }
  for (AeBucket& b : differing) {
    std::size_t end = next;
    std::size_t bucket_bytes = 0;
    while (end < own_keys.size() && own_keys[end].range == b.range && own_keys[end].leaf == b.leaf) {
      bucket_bytes += own_keys[end].key->size() + listed_key_overhead_bytes;
      ++end;
    }
    if (bytes + bucket_bytes > ctx_.config.ae_message_bytes_max) {
      if (!req.buckets.empty()) break;
      // Cut: as many keys as fit (one at least), the bucket covering keys up to the last.
      const std::size_t bucket_end = end;
      end = next;
      auto cost = [&](std::size_t i) { return own_keys[i].key->size() + listed_key_overhead_bytes; };
      while (end < bucket_end &&
             (end == next || bytes + cost(end) <= ctx_.config.ae_message_bytes_max)) {
        bytes += cost(end);
        ++end;
      }
      b.upto = *own_keys[end - 1].key;
      resume_[from] = Resume{b.range, b.leaf, b.upto};
      bucket_bytes = 0;
    }
    bytes += bucket_bytes;
    for (; next < end; ++next) {
      const Held& h = own_keys[next];
      req.keys.push_back(AeKeyVersion{*h.key, h.record->version, digest(*h.key, *h.record)});
    }
    req.buckets.push_back(std::move(b));
    if (!req.buckets.back().upto.empty()) break;
  }
  std::sort(req.keys.begin(), req.keys.end(),
            [](const AeKeyVersion& a, const AeKeyVersion& b) { return a.key < b.key; });
  ctx_.send(from, std::move(req));
}

void AntiEntropy::on_keys_req(NodeId from, const AeKeysReq& m) {
  refill(ctx_.now_ms);
  std::map<std::pair<std::uint32_t, std::uint32_t>, const AeBucket*> covered;
  for (const AeBucket& b : m.buckets) {
    if (!shares(b.range, from) || b.leaf >= ae_leaves) {
      ++ctx_.stats.ae_refused;
      return;
    }
    covered[{b.range, b.leaf}] = &b;
  }
  auto bucket_of = [&](const std::string& key) -> const AeBucket* {
    auto it = covered.find({static_cast<std::uint32_t>(ctx_.ring.range_of(key)), leaf_of(key)});
    if (it == covered.end()) return nullptr;
    const AeBucket* b = it->second;
    return (b->after.empty() || key > b->after) && (b->upto.empty() || key <= b->upto) ? b : nullptr;
  };
  std::map<std::string_view, const AeKeyVersion*> theirs;
  for (const AeKeyVersion& k : m.keys) {
    if (k.key.empty() || k.key.size() > ctx_.config.key_bytes_max || !bucket_of(k.key)) {
      ++ctx_.stats.ae_refused;
      return;
    }
    theirs[k.key] = &k;
  }
  for (const Held& h : keys_in(m.buckets)) {
    const std::string* key = h.key;
    const Record* record = h.record;
    if (!bucket_of(*key)) continue;  // outside a list in parts
    auto it = theirs.find(*key);
    if (it == theirs.end() || record->version > it->second->version ||
        (record->version == it->second->version &&
         !same_record(*record, *it->second, digest(*key, *record)))) {
      push(from, m.req, *key, *record);
    }
  }
  AeKeysResp resp{m.req, {}};
  std::size_t bytes = 0;
  for (const auto& [key, k] : theirs) {
    const Record* own = ctx_.state.store.find(key);
    if (own && (own->version > k->version || same_record(*own, *k, digest(key, *own)))) {
      continue;
    }
    bytes += key.size() + listed_key_overhead_bytes;
    if (bytes > ctx_.config.ae_message_bytes_max) break;  // the rest in a later exchange
    resp.want.emplace_back(key);
  }
  ctx_.send(from, std::move(resp));
}

void AntiEntropy::on_keys_resp(NodeId from, const AeKeysResp& m) {
  if (!exchange_ || exchange_->req != m.req || exchange_->peer != from) return;  // stale
  exchange_.reset();
  refill(ctx_.now_ms);
  for (const std::string& key : m.want) {
    if (key.empty() || key.size() > ctx_.config.key_bytes_max) {
      ++ctx_.stats.ae_refused;
      return;
    }
    const Record* own = ctx_.state.store.find(key);
    const auto range = static_cast<std::uint32_t>(ctx_.ring.range_of(key));
    if (own && shares(range, from)) push(from, m.req, key, *own);
  }
}

std::string AntiEntropy::check_invariants() const {
  if (exchange_ && !shared_.contains(exchange_->peer)) {
    return "anti-entropy exchange under way with n" + std::to_string(exchange_->peer) +
           ", which shares no range with this node";
  }
  if (budget_ > static_cast<std::int64_t>(ctx_.config.ae_bytes_per_s)) {
    return "anti-entropy budget above its burst";
  }
  return {};
}

std::string AntiEntropy::check_trees() const {
  std::unordered_map<std::uint32_t, Leaves> expected;
  ctx_.state.store.for_each([&](const Store::Entry& e) {
    expected[static_cast<std::uint32_t>(ctx_.ring.range_of(e.first))][leaf_of(e.first)] ^=
        digest(e.first, e.second);
  });
  for (std::uint32_t r = 0; r < replicas_.size(); ++r) {
    auto it = expected.find(r);
    const Leaves want = it == expected.end() ? Leaves{} : it->second;
    if (leaves(r) != want) return "anti-entropy tree of range " + std::to_string(r) + " differs from the store";
  }
  return {};
}

}  // namespace kv
