// The facade (see replica.h): it owns the shared context and the roles, routes every input to
// the role it is for, and drains the messages a node sends itself.
#include "core/replica.h"

#include <algorithm>
#include <cassert>
#include <deque>
#include <type_traits>
#include <utility>
#include <variant>

#include "core/anti_entropy.h"
#include "core/bridge_calls.h"
#include "core/context.h"
#include "core/coordinator.h"
#include "core/hint_delivery.h"
#include "core/membership.h"
#include "core/miss_resolver.h"
#include "core/replica_role.h"
#include "core/write_behind.h"

namespace kv {

namespace {

// Messages a node sends itself are handled within the input that produced them; this bounds how
// many one input may cause (a request fans out to at most N targets plus fallbacks).
constexpr std::size_t local_messages_per_input_max = 1u << 16;

// PostgreSQL's rows are trusted no more than a peer's records.
bool sane(const std::optional<Record>& r, std::size_t value_bytes_max) {
  return !r || (r->value.size() <= value_bytes_max && !(r->tombstone && !r->value.empty()));
}

}  // namespace

struct Replica::Roles {
  Roles(ReplicaConfig config, DurableState state, std::uint64_t now_ms)
      : ctx(std::move(config), std::move(state), now_ms),
        calls(ctx),
        queue(ctx, calls),
        misses(ctx, calls),
        ae(ctx, now_ms),
        members(ctx, ae, now_ms),
        replica(ctx, misses, ae),
        hints(ctx, now_ms),
        coordinator(ctx, calls, queue, misses, replica) {}

  Context ctx;
  BridgeCalls calls;
  WriteBehind queue;
  MissResolver misses;
  AntiEntropy ae;
  Membership members;
  ReplicaRole replica;
  HintDelivery hints;
  Coordinator coordinator;
};

Replica::Replica(ReplicaConfig config, DurableState state, std::uint64_t now_ms)
    : roles_(std::make_unique<Roles>(std::move(config), std::move(state), now_ms)) {}
Replica::~Replica() = default;
Replica::Replica(Replica&&) noexcept = default;
Replica& Replica::operator=(Replica&&) noexcept = default;

void Replica::on_client(const ClientRequest& request, std::uint64_t now_ms) {
  roles_->ctx.now_ms = now_ms;
  roles_->coordinator.on_client(request, now_ms);
  drain_local(now_ms);
}

void Replica::on_message(const Message& message, std::uint64_t now_ms) {
  Context& ctx = roles_->ctx;
  ctx.now_ms = now_ms;
  if (message.to != ctx.config.self || !ctx.ring.contains(message.from)) return;  // not for us
  dispatch(message, now_ms);
  drain_local(now_ms);
}

void Replica::on_tick(std::uint64_t now_ms) {
  Roles& r = *roles_;
  r.ctx.now_ms = now_ms;
  r.members.tick(now_ms);
  r.coordinator.tick(now_ms);
  r.hints.deliver(now_ms);
  // Calls the driver failed to answer in time are answered here, as errors.
  for (const BridgeReply& overdue : r.calls.overdue(now_ms)) on_bridge_reply(overdue, now_ms);
  r.misses.expire(now_ms);
  r.queue.pump(now_ms);
  r.ae.tick(now_ms);
  drain_local(now_ms);
}

void Replica::on_bridge_reply(const BridgeReply& reply, std::uint64_t now_ms) {
  Roles& r = *roles_;
  r.ctx.now_ms = now_ms;
  const std::optional<Call> c = r.calls.take(reply);
  if (!c) return;  // not a call of this incarnation, or answered already
  switch (c->kind) {
    case BridgeKind::pg_write:
      if (c->req == 0) {
        r.queue.on_write_reply(*c, reply, now_ms);
      } else {
        r.coordinator.on_pg_write_reply(*c, reply);
      }
      break;
    case BridgeKind::pg_lookup: {
      const bool ok = !reply.error && sane(reply.record, r.ctx.config.value_bytes_max);
      if (!ok) ++r.ctx.stats.pg_lookup_errors;
      const std::string detail =
          reply.error ? reply.detail : "PostgreSQL returned a malformed row for the key";
      if (ok && reply.record) r.ctx.hlc.observe(reply.record->version);
      if (c->req != 0) {  // a write's discovery
        r.coordinator.on_pg_lookup_reply(*c, ok, detail, now_ms);
      } else {
        r.coordinator.settle(r.misses.on_lookup_reply(*c, reply, ok, detail, now_ms));
      }
      break;
    }
    case BridgeKind::legacy_fetch:
      r.coordinator.settle(r.misses.on_legacy_reply(*c, reply, now_ms));
      break;
  }
  r.queue.pump(now_ms);
  drain_local(now_ms);
}

Ready Replica::take_ready() {
  Context& ctx = roles_->ctx;
  if (!roles_->coordinator.empty() || ctx.state.hints.size() > 0 || !roles_->calls.empty() ||
      !roles_->queue.empty()) {
    ctx.ready.next_tick_ms = ctx.now_ms + ctx.config.tick_interval_ms;
  }
  for (const auto round : {roles_->ae.next_round_ms(), roles_->members.next_round_ms()}) {
    if (!round) continue;
    ctx.ready.next_tick_ms = std::min(ctx.ready.next_tick_ms.value_or(*round), std::max(*round, ctx.now_ms));
  }
  Ready out = std::move(ctx.ready);
  ctx.ready = Ready{};
  return out;
}

void Replica::dispatch(const Message& message, std::uint64_t now_ms) {
  Roles& r = *roles_;
  const NodeId from = message.from;
  std::visit(
      [&](const auto& body) {
        using T = std::decay_t<decltype(body)>;
        if constexpr (keyed_message_v<T>) {
          if (body.key.empty() || body.key.size() > r.ctx.config.key_bytes_max) return;  // distrust
        }
        if constexpr (std::is_same_v<T, Heartbeat>) r.members.on_heartbeat(from, body, now_ms);
        if constexpr (std::is_same_v<T, Gossip>) r.members.on_gossip(from, body, now_ms);
        if constexpr (std::is_same_v<T, AeTreeReq>) r.ae.on_tree_req(from, body);
        if constexpr (std::is_same_v<T, AeTreeResp>) r.ae.on_tree_resp(from, body);
        if constexpr (std::is_same_v<T, AeKeysReq>) r.ae.on_keys_req(from, body);
        if constexpr (std::is_same_v<T, AeKeysResp>) r.ae.on_keys_resp(from, body);
        if constexpr (std::is_same_v<T, ReadReq>) r.replica.on_read_req(from, body);
        if constexpr (std::is_same_v<T, ReadResp>) r.coordinator.on_read_resp(from, body, now_ms);
        if constexpr (std::is_same_v<T, WriteReq>) r.replica.on_write_req(from, body);
        if constexpr (std::is_same_v<T, WriteAck>) {
          if (body.kind == WriteKind::hint_delivery) r.hints.on_ack(from, body);
          if (body.kind == WriteKind::client) r.coordinator.on_write_ack(from, body);
        }
      },
      message.body);
}

void Replica::drain_local(std::uint64_t now_ms) {
  std::deque<Message>& local = roles_->ctx.local;
  for (std::size_t n = 0; !local.empty(); ++n) {
    assert(n < local_messages_per_input_max);
    Message m = std::move(local.front());
    local.pop_front();
    dispatch(m, now_ms);
  }
}

std::string Replica::check_invariants() const {
  const Roles& r = *roles_;
  if (!r.ctx.local.empty()) return "self-addressed messages left unhandled";
  std::string broken = r.replica.check_invariants();
  if (broken.empty()) broken = r.hints.check_invariants();
  if (broken.empty()) broken = r.coordinator.check_invariants();
  if (broken.empty()) broken = r.queue.check_invariants();
  if (broken.empty()) broken = r.misses.check_invariants();
  if (broken.empty()) broken = r.calls.check_invariants();
  if (broken.empty()) broken = r.ae.check_invariants();
  if (broken.empty()) broken = r.members.check_invariants();
  return broken;
}

std::string Replica::check_trees() const { return roles_->ae.check_trees(); }

std::string Replica::remove_member(NodeId target, std::uint64_t now_ms) {
  roles_->ctx.now_ms = now_ms;
  std::string refused = roles_->members.remove(target);
  drain_local(now_ms);
  return refused;
}

const DurableState& Replica::state() const { return roles_->ctx.state; }
const ReplicaStats& Replica::stats() const { return roles_->ctx.stats; }
const ReplicaConfig& Replica::config() const { return roles_->ctx.config; }
const Ring& Replica::ring() const { return roles_->ctx.ring; }
const std::map<NodeId, Member>& Replica::members() const { return roles_->members.members(); }
std::uint64_t Replica::members_hash() const { return roles_->members.table_hash(); }
bool Replica::peer_up(NodeId node, std::uint64_t now_ms) const {
  return roles_->ctx.peer_up_at(node, now_ms);
}
double Replica::peer_phi(NodeId node, std::uint64_t now_ms) const {
  return node == roles_->ctx.config.self ? 0.0 : roles_->ctx.fd.phi(node, now_ms);
}
std::size_t Replica::requests_in_flight() const { return roles_->coordinator.size(); }
std::size_t Replica::pg_queue_size() const { return roles_->queue.size(); }
std::optional<std::uint64_t> Replica::pg_queue_oldest_ms() const {
  return roles_->queue.oldest_ms();
}
bool Replica::legacy_breaker_open(std::uint64_t now_ms) const {
  return roles_->misses.breaker_open(now_ms);
}

}  // namespace kv
