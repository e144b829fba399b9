// The checker: the consistency contract of DESIGN.md over a run's history and final state: C1-C7
// here (C3 also at recovery, in world.cc). C8 (expiry) and C9 (counters) belong to features the
// store does not have yet, and are not checked.
//
// C6, no resurrection: once any node collected a key's tombstone, no read that starts after it
// returns an older value, and no replica stores one at quiet. A read that found nothing where a
// tombstone was collected read that tombstone, for every other property.
//
// It knows what a client could know (operations, their real-time order, what each returned),
// what the world saw on the wire for each request (which replicas acknowledged a write and what
// each answered a read), and the replicas' own state at quiet and at the end. Properties that
// rely on quorum intersection (C4, C5) are checked where the quorums used must intersect (R+W>N,
// strict mode) and, in every mode, where they did intersect on the wire. A node that lost its
// disk breaks intersection for the writes it held: pairs of operations around a disk loss of one
// of the key's replicas are not held to C4 and C5, and a W=1 write from before it may be lost.
#include <algorithm>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "sim/history.h"

namespace kv::sim {

namespace {

std::string describe(const Op& op) {
  std::string s = std::string(op_name(op.op)) +
                  " #" + std::to_string(op.id & 0xffffffff) + " by client " + std::to_string(op.client);
  if (op.op == OpType::put) s += " value=" + value_label(op.value);
  s += " q=" + std::to_string(op.quorum) + " [" + std::to_string(op.invoke_us / 1000) + "ms, " +
       std::to_string(op.complete_us / 1000) + "ms]";
  if (op.op != OpType::get && op.outcome == Outcome::ok) s += " version " + op.version.to_string();
  return s;
}

Version observed_version(const Op& get) { return get.read ? get.read->version : Version{}; }

std::string observed(const Op& get) {
  if (!get.read) return "nothing (no version)";
  return (get.read->tombstone ? std::string("a tombstone") : "value " + value_label(get.read->value)) +
         " at version " + get.read->version.to_string();
}

bool is_acked_write(const Op& op) { return op.op != OpType::get && op.outcome == Outcome::ok; }

// The newest tombstone of `key` some node collected at or before `at_us`, if any.
std::optional<Version> collected_by(const CheckContext& ctx, const std::string& key, std::uint64_t at_us) {
  auto it = ctx.collected.find(key);
  if (it == ctx.collected.end()) return std::nullopt;
  std::optional<Version> newest;
  for (const Collected& c : it->second) {
    if (c.at_us <= at_us && (!newest || c.version > *newest)) newest = c.version;
  }
  return newest;
}

// The first collection of a tombstone of `key` newer than `v`, at or before `at_us`, if any.
const Collected* collected_newer(const CheckContext& ctx, const std::string& key, const Version& v,
                                 std::uint64_t at_us) {
  auto it = ctx.collected.find(key);
  if (it == ctx.collected.end()) return nullptr;
  for (const Collected& c : it->second) {
    if (c.at_us <= at_us && c.version > v) return &c;
  }
  return nullptr;
}

std::string describe(const Collected& c) {
  return "the tombstone at version " + c.version.to_string() + " n" + std::to_string(c.node) +
         " collected at " + std::to_string(c.at_us / 1000) + "ms";
}

// C6: a read that starts after a key's tombstone was collected never returns an older value.
void check_no_resurrection(const std::vector<const Op*>& key_ops, const CheckContext& ctx,
                           std::vector<Violation>& out) {
  for (const Op* g : key_ops) {
    if (g->op != OpType::get || g->outcome != Outcome::ok || !g->read || g->read->tombstone) continue;
    if (const Collected* c = collected_newer(ctx, g->key, g->read->version, g->invoke_us)) {
      out.push_back({"C6", g->key + ": " + describe(*g) + " returned " + observed(*g) +
                               ", older than " + describe(*c) + ": a deleted key came back"});
      return;
    }
  }
}

// A replica of `key` (or, with `node`, that node) lost its disk between `from_us` and `to_us`.
bool disk_lost_between(const CheckContext& ctx, const std::string& key, std::uint64_t from_us,
                       std::uint64_t to_us, NodeId node = 0) {
  for (const DiskLoss& d : ctx.disk_losses) {
    if (d.at_us < from_us || d.at_us > to_us) continue;
    // A whole-cluster loss (node 0) keeps every acknowledged write in PostgreSQL (sync mode):
    // only what one replica held is gone.
    if (d.node == 0 ? node == 0 : node != 0 && d.node != node) continue;
    if (node == 0 && ctx.ring) {
      const auto owners = ctx.ring->preference_list(key, ctx.replicas);
      if (std::find(owners.begin(), owners.end(), d.node) == owners.end()) continue;
    }
    return true;
  }
  return false;
}

// Liveness mode: the nodes kept down after the heal took their copies with them. A write is
// still due in the core where a core replica is known to hold it: one acknowledged it on the
// wire and has not lost its disk since, or (strict quorums, where only replicas acknowledge) it
// needed more acknowledgements than there are replicas kept down or emptied since.
bool reached_core(const Op& w, const CheckContext& ctx) {
  if (ctx.kept_down.empty()) return true;
  auto gone = [&](NodeId n) {
    return ctx.kept_down.contains(n) || disk_lost_between(ctx, w.key, w.invoke_us, ~std::uint64_t{0}, n);
  };
  std::uint32_t gone_owners = 0;
  for (NodeId n : ctx.ring->preference_list(w.key, ctx.replicas)) gone_owners += gone(n);
  if (!ctx.sloppy && w.quorum > gone_owners) return true;
  return std::any_of(w.acked_by.begin(), w.acked_by.end(), [&](NodeId n) { return !gone(n); });
}

// A write that must survive to the end: acknowledged, not a W=1 write whose one copy a later
// disk loss may have taken, and (liveness mode) known to have reached the core.
bool must_survive(const Op& w, const CheckContext& ctx) {
  return is_acked_write(w) &&
         !(w.quorum == 1 && disk_lost_between(ctx, w.key, w.invoke_us, ~std::uint64_t{0})) &&
         reached_core(w, ctx);
}

// The replicas of `key` a check holds to account: its preference list, less the nodes kept down.
std::vector<NodeId> live_owners(const Ring& ring, const std::string& key, const CheckContext& ctx) {
  std::vector<NodeId> owners = ring.preference_list(key, ctx.replicas);
  std::erase_if(owners, [&](NodeId n) { return ctx.kept_down.contains(n); });
  return owners;
}

// A node still up whose hints (for nodes not kept down) are all delivered; else what is wrong.
std::optional<std::string> node_unsettled(const std::vector<const Replica*>& replicas, std::size_t i,
                                          const CheckContext& ctx) {
  const auto id = static_cast<NodeId>(i + 1);
  if (!replicas[i]) {
    if (ctx.kept_down.contains(id)) return std::nullopt;
    return "n" + std::to_string(id) + " is down after the cluster healed";
  }
  std::size_t due = 0;
  const std::pair<const HintStore::HintKey, Record>* example = nullptr;
  for (const auto& entry : replicas[i]->state().hints.hints()) {
    if (ctx.kept_down.contains(entry.first.first)) continue;
    if (!example) example = &entry;
    ++due;
  }
  if (!example) return std::nullopt;
  return "n" + std::to_string(id) + " still holds " + std::to_string(due) + " hint(s), e.g. for n" +
         std::to_string(example->first.first) + " " + example->first.second + " version " +
         example->second.version.to_string();
}

bool responded_by(const Op& get, NodeId node, Version* version = nullptr) {
  for (const auto& [from, v] : get.responded) {
    if (from != node) continue;
    if (version) *version = v;
    return true;
  }
  return false;
}

// A read that returned a legacy hydration where a newer client write was due broke C7 (hydration
// never wins) before anything else; name it so.
std::string stale_read_property(const Op& get, const char* otherwise) {
  return get.read && !get.read->tombstone && get.read->version.is_zero() ? "C7" : otherwise;
}

// C3: a read returns what some put wrote (and was invoked before the read ended), at the version
// that put was given if it was acknowledged, or what the legacy API holds, at the zero version.
// A key the legacy API holds is never read as absent: that would be a false not-found.
void check_no_invented_data(const std::vector<Op>& ops, const CheckContext& ctx,
                            std::vector<Violation>& out) {
  std::map<std::string, const Op*> by_value;
  for (const Op& op : ops) {
    if (op.op == OpType::put) by_value[op.value] = &op;
  }
  for (const Op& g : ops) {
    if (g.op != OpType::get || g.outcome != Outcome::ok) continue;
    auto legacy = ctx.legacy.find(g.key);
    if (!g.read && legacy != ctx.legacy.end()) {
      out.push_back({"C3", g.key + ": " + describe(g) +
                               " returned not-found, but the legacy API holds the key"});
      continue;
    }
    if (!g.read || g.read->tombstone) continue;
    if (legacy != ctx.legacy.end() && legacy->second == g.read->value) {
      if (!g.read->version.is_zero()) {
        out.push_back({"C7", g.key + ": " + describe(g) + " returned the legacy value at version " +
                                 g.read->version.to_string() + ", not at the zero version"});
      }
      continue;
    }
    auto it = by_value.find(g.read->value);
    if (it == by_value.end() || it->second->key != g.key || it->second->invoke_us > g.complete_us) {
      out.push_back({"C3", g.key + ": " + describe(g) + " returned " + observed(g) +
                               ", which no put of this key wrote before the read ended"});
    } else if (it->second->outcome == Outcome::ok && it->second->version != g.read->version) {
      out.push_back({"C3", g.key + ": " + describe(g) + " returned " + observed(g) + " but " +
                               describe(*it->second) + " wrote it at another version"});
    }
  }
}

// C4: a read that starts after a write was acknowledged, where R + W > N, sees it or newer.
void check_quorum_recency(const std::vector<const Op*>& key_ops, const CheckContext& ctx,
                          std::vector<Violation>& out) {
  for (const Op* g : key_ops) {
    if (g->op != OpType::get || g->outcome != Outcome::ok) continue;
    for (const Op* w : key_ops) {
      if (!is_acked_write(*w) || w->complete_us >= g->invoke_us) continue;
      if (g->quorum + w->quorum <= ctx.replicas) continue;
      if (disk_lost_between(ctx, g->key, w->invoke_us, g->complete_us)) continue;
      if (observed_version(*g) < w->version) {
        out.push_back({stale_read_property(*g, "C4"), g->key + ": " + describe(*g) + " returned " + observed(*g) +
                                  ", older than the acknowledged " + describe(*w)});
        break;
      }
    }
  }
}

// C5: a write that starts after another was acknowledged by a quorum that meets every majority
// gets a greater version, whatever the coordinators' clocks say.
void check_write_order(const std::vector<const Op*>& key_ops, const CheckContext& ctx,
                       std::vector<Violation>& out) {
  const std::uint32_t majority = ctx.replicas / 2 + 1;
  for (const Op* a : key_ops) {
    if (!is_acked_write(*a) || a->quorum + majority <= ctx.replicas) continue;
    for (const Op* b : key_ops) {
      if (!is_acked_write(*b) || b->invoke_us <= a->complete_us) continue;
      if (disk_lost_between(ctx, a->key, a->invoke_us, b->complete_us)) continue;
      if (b->version <= a->version) {
        out.push_back({"C5", a->key + ": " + describe(*b) + " started after " + describe(*a) +
                                  " was acknowledged, yet got an older version"});
        return;
      }
    }
  }
}

// C4 where the quorums did intersect on the wire, in every mode (sloppy mode included): a read
// that started after a write was acknowledged, and heard from a preference-list replica that
// acknowledged that write, returns it or newer.
void check_met_quorums(const std::vector<const Op*>& key_ops, const CheckContext& ctx,
                       std::vector<Violation>& out) {
  for (const Op* g : key_ops) {
    if (g->op != OpType::get || g->outcome != Outcome::ok || g->responded.empty()) continue;
    for (const Op* w : key_ops) {
      if (!is_acked_write(*w) || w->complete_us >= g->invoke_us) continue;
      if (observed_version(*g) >= w->version) continue;
      const auto met = std::find_if(w->acked_by.begin(), w->acked_by.end(), [&](NodeId n) {
        return responded_by(*g, n) && !disk_lost_between(ctx, g->key, w->invoke_us, g->complete_us, n);
      });
      if (met == w->acked_by.end()) continue;
      out.push_back({stale_read_property(*g, "C4"),
                     g->key + ": " + describe(*g) + " returned " + observed(*g) +
                         ", older than the acknowledged " + describe(*w) + ", though n" +
                         std::to_string(*met) + " acknowledged that write and answered this read"});
      break;
    }
  }
}

// The coordinator's own promise: a read's reply is at least as new as every answer it received
// for that read before replying.
void check_reply_not_older_than_answers(const std::vector<const Op*>& key_ops,
                                        std::vector<Violation>& out) {
  for (const Op* g : key_ops) {
    if (g->op != OpType::get || g->outcome != Outcome::ok) continue;
    for (const auto& [from, v] : g->responded) {
      if (observed_version(*g) >= v) continue;
      out.push_back({"coordinator", g->key + ": " + describe(*g) + " (coordinator n" +
                                        std::to_string(g->coordinator) + ") returned " +
                                        observed(*g) + ", but n" + std::to_string(from) +
                                        " had answered it with version " + v.to_string()});
      break;
    }
  }
}

// Monotonic reads per client, where its quorums met: a client's read that heard from a replica
// that had given its previous read of the key that read's answer returns that or newer.
void check_monotonic_reads(const std::vector<const Op*>& key_ops, const CheckContext& ctx,
                           std::vector<Violation>& out) {
  std::map<std::uint32_t, const Op*> last;  // client -> its previous successful read
  for (const Op* g : key_ops) {
    if (g->op != OpType::get || g->outcome != Outcome::ok) continue;
    const Op*& prev = last[g->client];
    if (prev && observed_version(*g) < observed_version(*prev)) {
      for (const auto& [from, v] : prev->responded) {
        if (v != observed_version(*prev) || !responded_by(*g, from) ||
            disk_lost_between(ctx, g->key, prev->invoke_us, g->complete_us, from)) {
          continue;
        }
        out.push_back({"monotonic-reads",
                       g->key + ": " + describe(*g) + " returned " + observed(*g) +
                           ", older than the same client's previous " + describe(*prev) +
                           " returned, though n" + std::to_string(from) + " answered both"});
        break;
      }
    }
    prev = g;
  }
}

// C1: after quiet, the final read sees the newest acknowledged write or something newer.
void check_no_lost_write(const std::vector<const Op*>& key_ops, const CheckContext& ctx,
                         std::vector<Violation>& out) {
  const Op* final_read = nullptr;
  const Op* newest = nullptr;
  for (const Op* op : key_ops) {
    if (op->final_read && op->outcome == Outcome::ok) final_read = op;
    if (must_survive(*op, ctx) && (!newest || op->version > newest->version)) newest = op;
  }
  if (!newest || !final_read) return;
  if (observed_version(*final_read) < newest->version) {
    out.push_back({stale_read_property(*final_read, "C1"),
                   newest->key + ": the final read returned " + observed(*final_read) +
                             ", but " + describe(*newest) + " was acknowledged: it is lost"});
  }
}

}  // namespace

std::string value_label(const std::string& value) {
  std::string out;
  const std::size_t cut = value.find(':');
  for (std::size_t i = 0; i < value.size() && i < cut && out.size() < 40; ++i) {
    const auto c = static_cast<unsigned char>(value[i]);
    if (c >= 0x20 && c < 0x7f) {
      out += static_cast<char>(c);
    } else {
      static const char* hex = "0123456789abcdef";
      out += std::string("\\x") + hex[c >> 4] + hex[c & 15];
    }
  }
  if (cut != std::string::npos) out += "+" + std::to_string(value.size() - cut) + "B";
  return out;
}

std::vector<Violation> check_history(const std::vector<Op>& history, const CheckContext& ctx) {
  std::vector<Violation> out;
  check_no_invented_data(history, ctx, out);
  // A read that found nothing where a tombstone had been collected read that tombstone.
  std::vector<Op> ops = history;
  for (Op& g : ops) {
    if (g.op != OpType::get || g.outcome != Outcome::ok || g.read) continue;
    if (auto t = collected_by(ctx, g.key, g.complete_us)) g.read = Record{*t, true, {}};
  }
  std::map<std::string, std::vector<const Op*>> by_key;
  for (const Op& op : ops) by_key[op.key].push_back(&op);
  for (const auto& [key, key_ops] : by_key) {
    check_no_resurrection(key_ops, ctx, out);
    check_no_lost_write(key_ops, ctx, out);
    check_reply_not_older_than_answers(key_ops, out);
    check_met_quorums(key_ops, ctx, out);
    check_monotonic_reads(key_ops, ctx, out);
    if (ctx.sloppy) continue;
    check_quorum_recency(key_ops, ctx, out);
    check_write_order(key_ops, ctx, out);
  }
  return out;
}

std::vector<Violation> check_convergence(const std::vector<const Replica*>& replicas,
                                         std::uint32_t keys, const CheckContext& ctx) {
  std::vector<Violation> out;
  for (std::size_t i = 0; i < replicas.size(); ++i) {
    if (auto wrong = node_unsettled(replicas, i, ctx)) {
      out.push_back({"C2", *wrong + " after quiet"});
      if (!replicas[i]) return out;
    }
  }
  if (!ctx.ring) return out;
  for (std::uint32_t k = 0; k < keys; ++k) {
    const std::string key = key_name(k);
    const auto owners = live_owners(*ctx.ring, key, ctx);
    if (owners.empty()) continue;
    const auto first = as_read(replicas[owners[0] - 1]->state().store.get(key), ctx.collecting);
    bool same = true;
    std::string states;
    for (NodeId n : owners) {
      const auto r = replicas[n - 1]->state().store.get(key);
      same = same && as_read(r, ctx.collecting) == first;
      states += " n" + std::to_string(n) + "=" +
                (r ? r->version.to_string() + (r->tombstone ? "(tombstone)" : "") : "none");
    }
    if (!same) out.push_back({"C2", key + ": replicas disagree after quiet:" + states});
  }
  return out;
}

std::vector<Violation> check_replicas_at_quiet(const std::vector<const Replica*>& replicas,
                                               const std::vector<Op>& ops, std::uint32_t keys,
                                               const CheckContext& ctx,
                                               const std::set<std::string>& exempt,
                                               bool anti_entropy) {
  std::vector<Violation> out;
  const std::string when = "at quiet, before any final read: ";
  for (std::size_t i = 0; i < replicas.size(); ++i) {
    if (auto wrong = node_unsettled(replicas, i, ctx)) {
      out.push_back({"C2", when + *wrong});
      if (!replicas[i]) return out;
    }
  }
  if (!ctx.ring) return out;
  // Placement: only a key's replicas store it. A coordinator that is not one stores nothing, a
  // sloppy stand-in keeps a hint, and anti-entropy pushes only to replicas.
  for (std::size_t i = 0; i < replicas.size(); ++i) {
    if (!replicas[i]) continue;
    const auto id = static_cast<NodeId>(i + 1);
    auto misplaced = [&](const Store::Entry& e) {
      const auto owners = ctx.ring->preference_list(e.first, ctx.replicas);
      return std::find(owners.begin(), owners.end(), id) == owners.end();
    };
    if (!replicas[i]->state().store.any_of(misplaced)) continue;
    for (const Store::Entry* e : replicas[i]->state().store.sorted()) {
      if (!misplaced(*e)) continue;
      out.push_back({"placement", when + "n" + std::to_string(id) + " stores " + e->first +
                                      " (version " + e->second.version.to_string() +
                                      "), of which it is not a replica"});
      break;
    }
  }
  std::map<std::string, const Op*> newest;
  for (const Op& op : ops) {
    if (!must_survive(op, ctx)) continue;
    const Op*& n = newest[op.key];
    if (!n || op.version > n->version) n = &op;
  }
  for (std::uint32_t k = 0; k < keys; ++k) {
    const std::string key = key_name(k);
    // With anti-entropy on, an exempt key's write may be gone, but its replicas must agree.
    const bool exempt_key = exempt.contains(key);
    if (exempt_key && !anti_entropy) continue;
    const auto owners = live_owners(*ctx.ring, key, ctx);
    if (owners.empty()) continue;
    // A legacy hydration is spread as a read repair is, once and without retries or hints: a
    // replica that missed it lawfully holds nothing until a read, or anti-entropy, brings it.
    auto stored = [&](NodeId n) {
      auto r = as_read(replicas[n - 1]->state().store.get(key), ctx.collecting);
      if (!anti_entropy && r && !r->tombstone && r->version.is_zero()) r.reset();
      return r;
    };
    const auto first = stored(owners[0]);
    bool same = true;
    std::string states;
    NodeId missing = 0;
    NodeId resurrected = 0;
    const Collected* undone = nullptr;
    for (NodeId n : owners) {
      const auto r = replicas[n - 1]->state().store.get(key);
      same = same && stored(n) == first;
      states += " n" + std::to_string(n) + "=" +
                (r ? r->version.to_string() + (r->tombstone ? "(tombstone)" : "") : "none");
      if (r && !r->tombstone && !resurrected) {
        if ((undone = collected_newer(ctx, key, r->version, ~std::uint64_t{0}))) resurrected = n;
      }
      auto it = newest.find(key);
      // A tombstone at least as new may have been collected: nothing stands for it. Where
      // tombstones are collected, nothing also stands for a delete's tombstone not yet pushed.
      const auto t = collected_by(ctx, key, ~std::uint64_t{0});
      const bool collected = !r && it != newest.end() &&
                             ((t && *t >= it->second->version) ||
                              (ctx.collecting && it->second->op == OpType::del));
      if (!missing && !exempt_key && it != newest.end() && !collected &&
          (!r || r->version < it->second->version)) {
        missing = n;
      }
    }
    if (resurrected) {
      out.push_back({"C6", when + key + ": n" + std::to_string(resurrected) +
                               " stores a value older than " + describe(*undone) + ";" + states});
    } else if (missing) {
      out.push_back({"C1", when + key + ": n" + std::to_string(missing) +
                               ", one of its replicas, lacks the acknowledged " +
                               describe(*newest.at(key)) + ";" + states});
    } else if (!same) {
      out.push_back({"C2", when + key + ": replicas disagree:" + states});
    }
  }
  return out;
}

}  // namespace kv::sim
