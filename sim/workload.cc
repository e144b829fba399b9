// The clients of the simulated world: they run their operation lists one at a time against the
// node each operation names, record every invocation and completion in the history, and give up
// on a request after client_timeout_ms. Then the end of a run: heal, quiet, final reads, checks.
#include <bit>
#include <cassert>

#include "core/hash.h"
#include "sim/world.h"

namespace kv::sim {

std::string key_name(std::uint32_t index) { return "k" + std::to_string(index); }

namespace {

// A put's value: "c<client>.<n>" (unique in the run) padded with a pattern to a length taken
// from the name's hash, so that values differ in size but need no random draw.
std::string make_value(std::uint32_t client, std::uint64_t n, std::uint32_t bytes_max) {
  std::string v = "c" + std::to_string(client) + "." + std::to_string(n);
  const std::uint64_t length = hash64(v) % (std::uint64_t{bytes_max} + 1);
  if (length > v.size()) {
    v += ':';
    for (std::size_t i = v.size(); i < length; ++i) v.push_back(static_cast<char>('a' + i % 26));
  }
  return v;
}

}  // namespace

void World::client_next(std::uint32_t c) {
  Client& client = clients_[c];
  const ClientOp& op = sc_.clients[c][client.next_op++];
  issue(c, op, false, op.key);
}

// Invokes one operation. A node that is down refuses the connection: the operation fails at
// once and, having reached no replica, certainly changed nothing.
void World::issue(std::uint32_t c, const ClientOp& op, bool final_read, std::uint32_t key) {
  Client& client = clients_[c];
  Op h;
  h.client = c;
  h.id = (static_cast<std::uint64_t>(c) << 32) | ++client.issued;
  h.op = op.op;
  h.key = key_name(key);
  if (op.op == OpType::put) h.value = make_value(c, client.issued, sc_.knobs.value_bytes_max);
  h.quorum = op.op == OpType::get ? (op.r ? op.r : sc_.knobs.read_quorum)
                                  : (op.w ? op.w : sc_.knobs.write_quorum);
  h.invoke_us = now_us_;
  h.final_read = final_read;
  h.coordinator = op.coordinator;
  const std::size_t index = history_.size();
  history_.push_back(h);
  client.current = index;
  by_request_[h.id] = index;
  if (h.op == OpType::put) by_value_[h.value] = index;

  const Event e{now_us_, 0, Ev::client_next, op.coordinator, c, h.id};
  trace(e, std::string(op_name(op.op)) + " " +
               h.key + (h.value.empty() ? "" : "=" + value_label(h.value)) + " q=" + std::to_string(h.quorum));
  mark(Mark::Kind::op_start, op.coordinator, 0, index, [&] {
    return (final_read ? "final read: " : "client " + std::to_string(c) + ": ") +
           std::string(op_name(op.op)) + " " + h.key +
           (h.value.empty() ? "" : " = " + value_label(h.value)) + " (quorum " +
           std::to_string(h.quorum) + ")";
  });
  Node& n = node(op.coordinator);
  if (!n.up) {
    history_[index].error = "connection refused";
    return complete(index, Outcome::failed, nullptr);
  }
  schedule(now_us_ + sc_.knobs.client_timeout_ms * 1000, Ev::client_timeout, 0, index);
  n.replica->on_client(ClientRequest{h.id, h.op, h.key, h.value, op.r, op.w}, local_ms(n.id));
  issuing_ = index;
  after_input(n);
  issuing_.reset();
}

void World::on_reply(const ClientReply& reply) {
  auto it = by_request_.find(reply.id);
  if (it == by_request_.end()) return;
  const std::size_t index = it->second;
  if (!replied_.insert(reply.id).second) {  // even if the client gave up on it meanwhile
    violation("invariant", "request " + std::to_string(reply.id & 0xffffffff) + " of client " +
                               std::to_string(history_[index].client) + " on " +
                               history_[index].key + " was answered twice");
  }
  if (history_[index].outcome != Outcome::pending) return;
  if (!reply.error) return complete(index, Outcome::ok, &reply);
  history_[index].error = reply.error.message() + ": " + reply.detail;
  // A write refused before anything was sent says so ("nothing written: ...", or a refusal at the
  // door); any other failed write may have reached replicas (a PostgreSQL write that failed after
  // the replicas applied it, a timeout).
  const bool refused = reply.error == Errc::invalid_argument || reply.error == Errc::overloaded ||
                       reply.detail.starts_with("nothing written");
  const bool maybe_applied = history_[index].op != OpType::get && !refused;
  complete(index, maybe_applied ? Outcome::unknown : Outcome::failed, &reply);
}

void World::on_client_timeout(std::size_t index) {
  if (history_[index].outcome != Outcome::pending) return;
  probe("client_timeout");
  history_[index].error = "client timeout";
  complete(index, history_[index].op == OpType::get ? Outcome::failed : Outcome::unknown, nullptr);
}

void World::complete(std::size_t index, Outcome outcome, const ClientReply* reply) {
  Op& h = history_[index];
  h.outcome = outcome;
  h.complete_us = now_us_;
  if (outcome == Outcome::ok) {
    if (h.op == OpType::get) {
      h.read = reply->record;
    } else {
      h.version = reply->version;
      check_in_postgres(h);
    }
  }
  trace_hash_ = (trace_hash_ ^ (h.id + static_cast<std::uint64_t>(outcome))) * 0x100000001b3ULL;
  if (options_.trace_line) {
    std::string what = "client " + std::to_string(h.client) + " " + h.key + " -> ";
    what += outcome == Outcome::ok ? "ok" : outcome == Outcome::failed ? "failed" : "unknown";
    if (h.read) what += " " + h.read->version.to_string() + (h.read->tombstone ? " tombstone" : " " + value_label(h.read->value));
    if (outcome == Outcome::ok && h.op != OpType::get) what += " " + h.version.to_string();
    if (!h.error.empty()) what += " (" + h.error + ")";
    trace(Event{now_us_, 0, Ev::client_timeout, 0, 0, 0}, what);
  }
  mark(Mark::Kind::op_end, h.coordinator, 0, index, [&] {
    std::string what = outcome == Outcome::ok ? "ok" : outcome == Outcome::failed ? "failed" : "unknown";
    if (h.read) {
      what += ": " + (h.read->tombstone ? std::string("deleted") : value_label(h.read->value)) +
              " at " + h.read->version.to_string();
    } else if (outcome == Outcome::ok && h.op == OpType::get) {
      what += ": not found";
    } else if (outcome == Outcome::ok) {
      what += ": version " + h.version.to_string();
    }
    return h.error.empty() ? what : what + " (" + h.error + ")";
  });
  Client& client = clients_[h.client];
  client.current.reset();
  if (h.final_read) {
    if (outcome == Outcome::ok) {
      ++final_key_;
      final_attempts_ = 0;
      next_final_read();
    } else {
      schedule(now_us_ + final_read_retry_ms * 1000, Ev::final_reads, 0);
    }
    return;
  }
  const auto& ops = sc_.clients[h.client];
  if (client.next_op < ops.size()) {
    schedule(now_us_ + ops[client.next_op].think_ms * 1000, Ev::client_next, 0, h.client);
  } else {
    maybe_heal();
  }
}

void World::maybe_heal() {
  for (std::size_t c = 0; c < clients_.size(); ++c) {
    if (clients_[c].current || clients_[c].next_op < sc_.clients[c].size()) return;
  }
  if (!healed_) {
    healed_ = true;
    schedule(now_us_, Ev::heal, 0);
  }
}

// The fault phase is over: links are restored and unclogged, crashed nodes restart, the network
// stops losing and duplicating. Clocks stay skewed (and stepped). The cluster must now fall
// quiet by itself, within a bound (liveness, in the manner of TigerBeetle's VOPR).
//
// Liveness mode (knob kept_down_mask): those nodes crash now, if they are up, and stay down; the
// others, a core, are healed as above and must do the same without them.
void World::heal() {
  faults_active_ = false;
  blocked_.clear();
  pg_down_ = legacy_down_ = 0;
  for (Node& n : nodes_) {
    n.clogged_until_us = 0;
    if (doomed(n)) {
      die(n);
      continue;
    }
    if (!n.up) boot(n);
  }
  if (sc_.knobs.wiped_at_heal != 0) {
    Node& n = node(sc_.knobs.wiped_at_heal);
    probe("disk_loss_at_heal");
    lose_disk(n, Fault{});  // it restarts at once, empty
  }
  healed_at_us_ = now_us_;
  mark(Mark::Kind::heal, 0);
  schedule(now_us_ + quiet_poll_ms * 1000, Ev::quiet_poll, 0);
}

void World::die(Node& n) {
  if (n.kept_down) return;
  probe("kept_down_after_heal");
  n.kept_down = true;
  if (n.up) crash(n, 0);
  if (n.id == removing()) schedule(now_us_ + sc_.knobs.remove_after_ms * 1000, Ev::remove, 0, 0);
}

NodeId World::removing() const {
  if (sc_.knobs.remove_after_ms == 0 || std::popcount(sc_.knobs.kept_down_mask) != 1) return 0;
  return static_cast<NodeId>(std::countr_zero(sc_.knobs.kept_down_mask) + 1);
}

// Done once every live node's table has the node left.
bool World::removal_done() const {
  const NodeId gone = removing();
  if (gone == 0) return true;
  for (const Node& n : nodes_) {
    if (n.kept_down) continue;
    if (!n.up || n.replica->members().at(gone).state != MemberState::left) return false;
  }
  return true;
}

void World::check_reads_moved(const Node& n) {
  reads_moved_checked_ = true;
  probe("removal_reads_moved");
  // A disk lost, or a tombstone collected, may lawfully leave a replica without a write.
  if (!disk_losses_.empty() || collecting()) return;
  Ring after = ring_;
  after.remove_node(removing());
  std::map<std::string, const Op*> newest;
  for (const Op& op : history_) {
    if (op.op == OpType::get || op.outcome != Outcome::ok || op.complete_us > now_us_) continue;
    const Op*& held = newest[op.key];
    if (!held || held->version < op.version) held = &op;
  }
  // A write acknowledged by W replicas must have W of them on the new ring: the pulls gave the
  // gaining replica what the old ones held (a write of the change itself reached both rings).
  for (const auto& [key, op] : newest) {
    std::size_t holding = 0;
    std::string who;
    bool all_up = true;
    for (NodeId o : after.preference_list(key, sc_.knobs.replicas)) {
      const Node& r = node(o);
      all_up = all_up && r.up;
      if (!r.up) continue;
      const auto held = r.replica->state().store.get(key);
      const bool has = held && held->version >= op->version;
      holding += has;
      who += " n" + std::to_string(o) + "=" + (held ? held->version.to_string() : std::string("none"));
    }
    if (!all_up || holding >= op->quorum) continue;
    violation("removal", "n" + std::to_string(n.id) + " moved reads to the ring without n" +
                             std::to_string(removing()) + " while only " + std::to_string(holding) +
                             " of " + key + "'s replicas on it held the " + std::string(op_name(op->op)) +
                             " acknowledged by W=" + std::to_string(op->quorum) + " at version " +
                             op->version.to_string() + ":" + who);
    return;
  }
}

// The operator runs kvctl remove against the live nodes in turn, as long as the removal has not
// finished: a refusal (a member that is down or cut off, the target not yet taken as down) is
// retried a second later, and so is a removal that was started but lost (its node crashed
// before its entry spread, or the whole cluster lost its disks); while one is under way, a retry
// is refused and changes nothing.
void World::remove_dead(std::uint64_t attempt) {
  const NodeId gone = removing();
  // Done, the operator looks again later: the whole cluster losing its disks loses the removal
  // with everything else, and then it is run again.
  if (removal_done()) return schedule(now_us_ + 5'000'000, Ev::remove, 0, attempt);
  std::vector<NodeId> live;
  for (const Node& n : nodes_) {
    if (!n.kept_down && n.up) live.push_back(n.id);
  }
  std::string refused = "no live node is up";
  NodeId via = 0;
  if (!live.empty()) {
    via = live[attempt % live.size()];
    Node& n = node(via);
    refused = n.replica->remove_member(gone, local_ms(via));
    after_input(n);
  }
  trace(Event{now_us_, 0, Ev::remove, via, attempt, 0},
        "remove n" + std::to_string(gone) + (refused.empty() ? ": started" : ": refused: " + refused));
  probe(refused.empty() ? "remove_started" : "remove_refused");
  schedule(now_us_ + (refused.empty() ? 5'000'000 : 1'000'000), Ev::remove, 0, attempt + 1);
}

// Quiet: every node up, no hint held, no request in flight, no write-behind queued, no bridge
// call or peer message on its way; with anti-entropy, the replicas agree; with heartbeats, the
// members tables agree and every failure detector is right. In liveness mode the nodes kept down are left out, with the
// hints for them (never deliverable) and the messages to them (the core keeps trying).
std::string World::still_busy() const {
  std::size_t hints = 0, requests = 0, queued = 0, messages = 0;
  for (const Node& n : nodes_) {
    if (n.kept_down) continue;
    if (!n.up) return "n" + std::to_string(n.id) + " is down";
    for (const auto& [hint_key, record] : n.replica->state().hints.hints()) {
      hints += !node(hint_key.first).kept_down;
    }
    requests += n.replica->requests_in_flight();
    queued += n.replica->pg_queue_size();
  }
  for (const auto& [id, frame] : in_flight_) messages += !node(frame.to).kept_down && !frame.background;
  // With anti-entropy on, quiet also means converged: the live replicas of every key agree.
  std::size_t disagree = 0;
  if (anti_entropy()) {
    const bool gc = collecting();
    for (std::uint32_t i = 0; i < sc_.keys; ++i) {
      const std::string key = key_name(i);
      std::optional<std::optional<Record>> first;
      for (NodeId o : ring_.preference_list(key, sc_.knobs.replicas)) {
        if (node(o).kept_down) continue;
        auto r = as_read(node(o).replica->state().store.get(key), gc);
        if (!first) first = std::move(r);
        else if (*first != r) {
          ++disagree;
          break;
        }
      }
    }
  }
  // With heartbeats on, quiet also means that every live node holds the same members table and
  // its failure detector is right about every peer: the live ones up, the ones kept down down.
  std::string membership;
  if (sc_.knobs.heartbeat_interval_ms != 0) {
    const Node* first = nullptr;
    for (const Node& n : nodes_) {
      if (n.kept_down) continue;
      if (!first) first = &n;
      if (n.replica->members_hash() != first->replica->members_hash()) {
        membership = ", n" + std::to_string(n.id) + " and n" + std::to_string(first->id) +
                     " hold different members tables";
        break;
      }
      for (const Node& peer : nodes_) {
        if (peer.id == n.id || n.replica->peer_up(peer.id, local_ms(n.id)) == !peer.kept_down) continue;
        membership = ", n" + std::to_string(n.id) + " takes n" + std::to_string(peer.id) + " as " +
                     (peer.kept_down ? "up (it is down for good)" : "down (it is up)") + ", phi " +
                     std::to_string(n.replica->peer_phi(peer.id, local_ms(n.id)));
        break;
      }
      if (!membership.empty()) break;
    }
  }
  if (!removal_done()) {
    membership += ", the removal of n" + std::to_string(removing()) + " is under way:";
    for (const Node& n : nodes_) {
      if (n.kept_down || !n.up) continue;
      const auto& table = n.replica->members();
      const Member& self = table.at(n.id);
      const Member& t = table.at(removing());
      std::string behind, pulling;
      for (const auto& [id, m] : table) {
        if (id == removing() || m.state == MemberState::left) continue;
        if (m.ring_seen != self.ring_seen) behind += " n" + std::to_string(id);
        if (m.streamed != self.ring_seen) pulling += " n" + std::to_string(id);
      }
      membership += " n" + std::to_string(n.id) + " holds it " + std::string(member_state_name(t.state)) +
                    (t.moved ? " (moved)" : "") + (behind.empty() ? "" : ", not yet applied by" + behind) +
                    (pulling.empty() || t.moved ? "" : ", not yet pulled by" + pulling) + ";";
    }
  }
  if (hints + requests + queued + bridge_in_flight_.size() + messages + disagree == 0 &&
      membership.empty()) {
    return {};
  }
  return std::to_string(hints) + " hint(s) held, " + std::to_string(requests) +
         " request(s) in flight, " + std::to_string(queued) + " key(s) queued for PostgreSQL, " +
         std::to_string(bridge_in_flight_.size()) + " bridge call(s) and " +
         std::to_string(messages) + " message(s) under way" +
         (anti_entropy() ? ", " + std::to_string(disagree) + " key(s) whose replicas disagree" : "") +
         membership;
}

void World::poll_quiet() {
  const std::string busy = still_busy();
  const Knobs& k = sc_.knobs;
  const std::uint64_t rounds = sc_.keys * k.nodes / k.hint_deliveries_per_interval_max + 1;
  std::uint64_t bound_ms = k.quiet_ms * liveness_quiet_factor + k.hint_interval_ms * rounds;
  if (removing() != 0) {
    // Its three steps: two drains of two request timeouts, and the pulls.
    bound_ms += k.remove_after_ms + 1000 * k.nodes + 6 * k.request_timeout_ms + 4 * k.heartbeat_interval_ms;
  }
  if (k.heartbeat_interval_ms != 0) {
    // A node kept down found so by every failure detector: its silence reaching the threshold,
    // at up to twice the heartbeat interval as the mean (lost heartbeats stretch it).
    const double threshold = static_cast<double>(k.fd_phi_threshold_tenths) / 10.0;
    bound_ms += static_cast<std::uint64_t>(threshold / 0.4343 * 2.0 * static_cast<double>(k.heartbeat_interval_ms));
  }
  if (anti_entropy()) {
    // Every pair of replicas exchanging a few times, and a whole store pushed within the limit.
    bound_ms += k.ae_interval_ms * k.nodes * liveness_ae_rounds_per_node;
    if (k.ae_bytes_per_s) {
      bound_ms += 2000 * std::uint64_t{sc_.keys} * (k.value_bytes_max + 64) / k.ae_bytes_per_s;
    }
  }
  if (!busy.empty() && now_us_ < healed_at_us_ + bound_ms * 1000) {
    schedule(now_us_ + quiet_poll_ms * 1000, Ev::quiet_poll, 0);
    return;
  }
  if (!busy.empty()) {
    violation("liveness", "the cluster was not quiet " + std::to_string(bound_ms) +
                              " ms after the faults healed: " + busy);
  }
  trace(Event{now_us_, 0, Ev::quiet_poll, 0, 0, 0},
        "quiet after " + std::to_string((now_us_ - healed_at_us_) / 1000) + "ms");
  mark(Mark::Kind::quiet, 0);
  // The node taken out is no replica of anything any more: the checks at quiet and the final
  // reads follow the ring without it.
  if (removing() != 0 && busy.empty()) ring_.remove_node(removing());
  check_at_quiet();
  schedule(now_us_, Ev::final_reads, 0, 0);
}

// The checks on the replicas' own state, before any final read repairs what is missing. A key is
// exempt only where no live node may hold the write any more (the whole cluster's disks, a hint
// lost with a disk or with a node kept down), or, with anti-entropy off, where the store lawfully
// keeps fewer than N copies until it is read: a node lost its disk, a hint was refused, or a
// coordinator crashed while a write of the key was in flight (its retries and the hints it would
// leave at the deadline live in memory).
void World::check_at_quiet() {
  const Knobs& k = sc_.knobs;
  for (const DiskLoss& d : disk_losses_) {
    for (std::uint32_t i = 0; i < sc_.keys; ++i) {
      const std::string key = key_name(i);
      const auto owners = ring_.preference_list(key, k.replicas);
      if (std::find(owners.begin(), owners.end(), d.node) != owners.end()) {
        exempt_at_quiet(key, [&] { return "n" + std::to_string(d.node) + ", one of its replicas, lost its disk"; },
                        true);
      }
    }
  }
  for (const Op& op : history_) {
    if (op.op == OpType::get || op.outcome == Outcome::failed) continue;
    // The request's deadline is on the coordinator's clock: drift stretches it a little, a
    // backward step by the step.
    const Node& c = node(op.coordinator);
    const std::uint64_t window_us =
        (k.request_timeout_ms * 105 / 100 + c.clock_stepped_back_ms) * 1000 + 50'000;
    for (std::uint64_t t : c.crashed_at_us) {
      if (t >= op.invoke_us && t <= op.invoke_us + window_us) {
        exempt_at_quiet(op.key, [&] {
          return "n" + std::to_string(op.coordinator) + " crashed while coordinating a write of it";
        }, true);
      }
    }
  }
  // Liveness mode: hints held by a node kept down died with it, for core replicas too; those are
  // every key it coordinated a write of, or was sent a hint for.
  for (const Node& dead : nodes_) {
    if (!dead.kept_down) continue;
    const NodeId down = dead.id;
    auto exempt = [&](const std::string& key, const char* why) {
      exempt_at_quiet(key, [&] { return "n" + std::to_string(down) + why; }, false);
    };
    for (const Op& op : history_) {
      if (op.coordinator == down && op.op != OpType::get) exempt(op.key, ", kept down, coordinated a write of it");
    }
    if (auto it = hinted_to_.find(down); it != hinted_to_.end()) {
      for (const std::string& key : it->second) exempt(key, ", kept down, held a hint for it");
    }
  }
  probe("quiet_check_key_exempt", raw_exempt_.size());
  const CheckContext ctx = check_context();
  std::vector<const Replica*> replicas;
  for (const Node& n : nodes_) {
    replicas.push_back(n.up ? &*n.replica : nullptr);
    if (!n.up) continue;
    if (std::string broken = n.replica->check_trees(); !broken.empty()) {
      violation("invariant", "n" + std::to_string(n.id) + ": " + broken);
    }
  }
  for (Violation& v : check_replicas_at_quiet(replicas, history_, sc_.keys, ctx, raw_exempt_, anti_entropy())) {
    violation(std::move(v.property), std::move(v.detail));
  }
}

// One final client reads every key with R = N (which also repairs every replica of it), one key
// after another. A final read that fails is retried; one that keeps failing is a liveness
// violation. `final_key_` is the key being read.
void World::next_final_read() {
  const auto reader = static_cast<std::uint32_t>(sc_.clients.size());
  if (clients_.size() == sc_.clients.size()) clients_.emplace_back();
  if (final_key_ >= sc_.keys) {
    schedule(now_us_ + settle_ms * 1000, Ev::final_check, 0);
    return;
  }
  if (++final_attempts_ > final_read_attempts_max) {
    violation("final-read", key_name(final_key_) + ": no final read succeeded in " +
                                std::to_string(final_read_attempts_max) + " attempts");
    finished_ = true;
    return;
  }
  // R = N, or in liveness mode R = the key's replicas in the core, through a node of the core.
  ClientOp op;
  op.op = OpType::get;
  op.r = sc_.knobs.replicas;
  for (NodeId n : ring_.preference_list(key_name(final_key_), sc_.knobs.replicas)) {
    op.r -= node(n).kept_down;
  }
  std::vector<NodeId> core;
  for (const Node& n : nodes_) {
    if (!n.kept_down) core.push_back(n.id);
  }
  op.coordinator = core[(final_key_ + final_attempts_) % core.size()];
  issue(reader, op, true, final_key_);
}

void World::final_check() {
  const CheckContext ctx = check_context();
  for (Violation& v : check_history(history_, ctx)) {
    violation(std::move(v.property), std::move(v.detail));
  }
  std::vector<const Replica*> replicas;
  for (const Node& n : nodes_) replicas.push_back(n.up ? &*n.replica : nullptr);
  for (Violation& v : check_convergence(replicas, sc_.keys, ctx)) {
    violation(std::move(v.property), std::move(v.detail));
  }
  check_bridges();
  for (const Node& n : nodes_) {
    if (n.up) collect_stats(*n.replica);
  }
  finished_ = true;
}

// Sync mode: the moment a write is acknowledged, PostgreSQL holds it or a newer version of the
// key (so that losing the whole cluster loses nothing acknowledged).
void World::check_in_postgres(const Op& write) {
  if (sc_.knobs.pg_mode != 1) return;
  auto row = pg_table_.find(write.key);
  if (row != pg_table_.end() && row->second.version >= write.version) return;
  violation("pg-sync", write.key + ": the write at version " + write.version.to_string() +
                           " was acknowledged before PostgreSQL had it (row: " +
                           (row == pg_table_.end() ? std::string("none")
                                                   : row->second.version.to_string()) +
                           ")");
}

// After quiet the write-behind queues are empty, and PostgreSQL, read back, holds every key's
// newest acknowledged write or newer. In async mode a write whose coordinator crashed before
// handing it over is exempt: the queue is in memory (probe pg_async_lost_in_crash counts them).
void World::check_bridges() {
  if (sc_.knobs.pg_mode == 0) return;
  const std::string property = sc_.knobs.pg_mode == 1 ? "pg-sync" : "pg-async";
  for (const Node& n : nodes_) {
    if (n.up && n.replica->pg_queue_size() > 0) {
      violation(property, "n" + std::to_string(n.id) + " still queues " +
                              std::to_string(n.replica->pg_queue_size()) +
                              " key(s) for PostgreSQL after quiet");
    }
  }
  std::map<std::string, const Op*> newest;
  for (std::size_t i = 0; i < history_.size(); ++i) {
    const Op& op = history_[i];
    if (op.op == OpType::get || op.outcome != Outcome::ok || pg_exempt_.contains(i)) continue;
    const Op*& n = newest[op.key];
    if (!n || op.version > n->version) n = &op;
  }
  for (const auto& [key, op] : newest) {
    auto row = pg_table_.find(key);
    if (row != pg_table_.end() && row->second.version >= op->version) continue;
    violation(property, key + ": PostgreSQL, read back after quiet, holds " +
                            (row == pg_table_.end() ? std::string("no row")
                                                    : "version " + row->second.version.to_string()) +
                            ", older than the acknowledged write at version " +
                            op->version.to_string() + " by client " + std::to_string(op->client));
  }
}

}  // namespace kv::sim
