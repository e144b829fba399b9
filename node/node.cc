// The Asio driver of the replica (see node.h).
#include "node/node.h"

#include <boost/asio/post.hpp>
#include <boost/json.hpp>
#include <cmath>
#include <cstdio>

#include "net/log.h"
#include "node/legacy_bridge.h"
#include "node/pg_bridge.h"

namespace kv {

namespace {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

constexpr std::chrono::milliseconds drain_poll_interval{10};
constexpr std::chrono::milliseconds drain_reply_flush{200};  // for the last replies to leave


std::uint64_t wall_ms() {
  return static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                        std::chrono::system_clock::now().time_since_epoch())
                                        .count());
}

ReplicaConfig core_config(const NodeConfig& n) {
  ReplicaConfig c = n.replica;
  // A fresh base per process start, so replies to a previous incarnation's requests are ignored;
  // it grows from one start to the next, as the generation of this node's members entry must.
  c.request_id_base = wall_ms() << 20;
  c.peer_addr = n.peer_addr.to_string();
  c.client_addr = n.http_addr.to_string();
  return c;
}

std::string fixed2(double v) {
  char text[32];
  std::snprintf(text, sizeof text, "%.2f", v);
  return text;
}

PeerLinksOptions link_options(const NodeConfig& c) {
  PeerLinksOptions o;
  o.cluster_id = c.cluster_id;
  o.self = c.id;
  for (const auto& [id, addr] : c.cluster) {
    if (id != c.id) o.peers[id] = addr;
  }
  o.frame_bytes_max = c.frame_bytes_max;
  return o;
}

RespServerOptions resp_options(const NodeConfig& c) {
  RespServerOptions o;
  o.limits.array_len_max = c.resp_array_max;
  o.limits.bulk_bytes_max = c.resp_bulk_bytes_max;
  o.limits.requests_in_flight_max = c.requests_in_flight_per_connection_max;
  o.connections_max = c.connections_max;
  o.idle_timeout = std::chrono::milliseconds(c.idle_timeout_ms);
  o.read_timeout = std::chrono::milliseconds(c.read_timeout_ms);
  return o;
}

HttpServerOptions http_options(const NodeConfig& c) {
  HttpServerOptions o;
  o.limits.header_bytes_max = c.http_header_bytes_max;
  o.limits.body_bytes_max = c.http_body_bytes_max;
  o.limits.value_bytes_max = c.replica.value_bytes_max;
  o.connections_max = c.connections_max;
  o.idle_timeout = std::chrono::milliseconds(c.idle_timeout_ms);
  o.read_timeout = std::chrono::milliseconds(c.read_timeout_ms);
  return o;
}

}  // namespace

Node::Node(asio::io_context& io, NodeConfig config, std::unique_ptr<Storage> storage)
    : io_(io),
      config_(std::move(config)),
      storage_(std::move(storage)),
      replica_(core_config(config_), storage_->take_recovered_state(), wall_ms()),
      links_(io, link_options(config_), [this](const Message& m) { on_peer_message(m); }),
      resp_(io, *this, resp_options(config_)),
      http_(io, *this, http_options(config_)),
      timer_(io),
      hints_refused_log_(std::make_shared<LogLimit>(io, "kvnode", "refused hints")) {
  if (!config_.pg.url.empty()) pg_ = make_pg_bridge(io_, config_.pg);
  if (!config_.legacy.url_template.empty()) legacy_ = make_legacy_bridge(io_, config_.legacy);
  storage_->on_fsync = [this](double seconds, std::uint64_t records) {
    fsync_latency_.observe(seconds);
    fsync_batch_.observe(static_cast<double>(records));
  };
}

Expected<void> Node::start() {
  const auto cannot_listen = [](std::string_view what, const HostPort& addr,
                                const boost::system::error_code& ec) {
    return Error{ec, "cannot listen for " + std::string(what) + " on " + addr.to_string() + ": " +
                         ec.message()};
  };
  const auto endpoint = [](std::string_view what, const HostPort& addr) -> Expected<tcp::endpoint> {
    auto e = resolve_endpoint(addr);
    if (!e) return Error{e.error().code, "cannot listen for " + std::string(what) + " on " + addr.to_string() + ": " + e.error().detail};
    return e;
  };
  BOOST_OUTCOME_TRY(const tcp::endpoint peer_at, endpoint("peers", config_.peer_addr));
  BOOST_OUTCOME_TRY(const tcp::endpoint resp_at, endpoint("RESP", config_.resp_addr));
  BOOST_OUTCOME_TRY(const tcp::endpoint http_at, endpoint("HTTP", config_.http_addr));
  if (auto ec = links_.listen(peer_at)) return cannot_listen("peers", config_.peer_addr, ec);
  if (auto ec = resp_.listen(resp_at)) return cannot_listen("RESP", config_.resp_addr, ec);
  if (auto ec = http_.listen(http_at)) return cannot_listen("HTTP", config_.http_addr, ec);
  links_.start();
  if (pg_) pg_->start();
  if (legacy_) legacy_->start();
  process_ready();  // hints recovered from disk want a timer
  return outcome::success();
}

std::uint64_t Node::now_ms() const { return wall_ms(); }

void Node::submit(ClientRequest request, std::function<void(const ClientReply&)> done) {
  if (draining_) {
    ClientReply r;
    r.error = make_error_code(Errc::overloaded);
    r.detail = "the node is shutting down";
    return done(r);
  }
  request.id = next_client_id_++;
  in_flight_.emplace(request.id, InFlight{std::move(done), request.op, std::chrono::steady_clock::now()});
  replica_.on_client(request, now_ms());
  process_ready();
}

void Node::on_peer_message(const Message& m) {
  replica_.on_message(m, now_ms());
  process_ready();
}

void Node::on_timer() {
  timer_at_ms_.reset();
  replica_.on_tick(now_ms());
  process_ready();
}

// The batch rule: append the batch's records, then release its outputs once they are durable.
void Node::process_ready() {
  Ready ready = replica_.take_ready();
  if (ready.next_tick_ms) arm_timer(*ready.next_tick_ms);
  for (const auto& refused : ready.hints_refused) {
    hints_refused_log_->log("a hint for n" + std::to_string(refused.first) +
                            " was refused (hints_max " +
                            std::to_string(replica_.config().hints_max) +
                            " reached): its key has fewer than N copies until it is read");
  }
  if (!ready.has_outputs()) return;
  const std::uint64_t ticket = storage_->append(ready.persist);
  ready.persist.clear();
  auto batch = std::make_shared<Ready>(std::move(ready));
  storage_->when_durable(ticket, [this, batch] { release(*batch); });
  storage_->maybe_snapshot(replica_.state());
}

void Node::release(Ready& ready) {
  for (const Message& m : ready.messages) links_.send(m);
  for (const ClientReply& r : ready.replies) finish(r);
  for (const BridgeCall& c : ready.bridge_calls) start_bridge_call(c);
}

void Node::start_bridge_call(const BridgeCall& call) {
  Bridge* bridge = call.kind == BridgeKind::legacy_fetch ? legacy_.get() : pg_.get();
  if (!bridge) {  // the core only calls a bridge it was configured with
    BridgeReply r{call.id, call.kind, make_error_code(Errc::unavailable),
                  std::string(bridge_name(call.kind)) + ": not configured", {}};
    asio::post(io_, [this, r] { on_bridge_reply(r); });
    return;
  }
  bridge->call(call, [this](BridgeReply reply) { on_bridge_reply(reply); });
}

void Node::on_bridge_reply(const BridgeReply& reply) {
  replica_.on_bridge_reply(reply, now_ms());
  process_ready();
}

void Node::finish(const ClientReply& reply) {
  auto it = in_flight_.find(reply.id);
  if (it == in_flight_.end()) return;
  InFlight f = std::move(it->second);
  in_flight_.erase(it);
  OpMetrics& m = op_metrics_[std::string(op_name(f.op))];
  (reply.error ? m.errors : m.ok) += 1;
  m.latency.observe(std::chrono::duration<double>(std::chrono::steady_clock::now() - f.started).count());
  f.done(reply);
}

void Node::arm_timer(std::uint64_t at_ms) {
  if (timer_at_ms_ && *timer_at_ms_ <= at_ms) return;
  timer_at_ms_ = at_ms;
  const std::uint64_t now = now_ms();
  timer_.expires_after(std::chrono::milliseconds(at_ms > now ? at_ms - now : 0));
  timer_.async_wait([this](const boost::system::error_code& ec) {
    if (!ec) on_timer();
  });
}

bool Node::ready() const {
  const std::size_t majority = config_.cluster.size() / 2 + 1;
  return links_.connected_peers() + 1 >= majority;
}

// Draining: no new connections, no new requests; the requests in flight finish (or reach their
// deadline, which the core enforces) and their replies get drain_reply_flush to leave before the
// connections close.
void Node::drain_and_stop(std::chrono::milliseconds grace, std::function<void()> done) {
  draining_ = true;
  resp_.stop_accepting();
  http_.stop_accepting();
  const auto deadline = std::chrono::steady_clock::now() + grace;
  auto finish_stop = [this, done] {
    resp_.stop();
    http_.stop();
    timer_.cancel();
    links_.stop();
    if (pg_) pg_->stop();
    if (legacy_) legacy_->stop();
    done();
  };
  // The poll holds itself weakly (a strong self-reference would be a cycle, never freed); the
  // pending timer's handler keeps it alive between polls.
  auto poll = std::make_shared<std::function<void()>>();
  *poll = [this, deadline, weak = std::weak_ptr<std::function<void()>>(poll), finish_stop] {
    if (!in_flight_.empty() && std::chrono::steady_clock::now() < deadline) {
      auto t = std::make_shared<asio::steady_timer>(io_, drain_poll_interval);
      t->async_wait([self = weak.lock(), t](const boost::system::error_code&) { (*self)(); });
      return;
    }
    if (!in_flight_.empty()) {
      log_line("kvnode", std::to_string(in_flight_.size()) + " request(s) still in flight at shutdown");
    }
    auto t = std::make_shared<asio::steady_timer>(io_, drain_reply_flush);
    t->async_wait([t, finish_stop](const boost::system::error_code&) { finish_stop(); });
  };
  (*poll)();
}

std::string Node::metrics_text() const {
  std::string out;
  metric_header(out, "kv_requests_total", "counter", "client requests coordinated by this node");
  for (const auto& [op, m] : op_metrics_) {
    out += "kv_requests_total{op=\"" + op + "\",result=\"ok\"} " + std::to_string(m.ok) + "\n";
    out += "kv_requests_total{op=\"" + op + "\",result=\"error\"} " + std::to_string(m.errors) + "\n";
  }
  metric_header(out, "kv_request_duration_seconds", "histogram", "client request latency");
  for (const auto& [op, m] : op_metrics_) m.latency.write(out, "kv_request_duration_seconds", "op=\"" + op + "\"");
  const ReplicaStats& s = replica_.stats();
  // Every counter of the core, named by its one table (core/stats.h).
  for (const StatField& f : replica_stat_fields) {
    const std::string name = "kv_" + std::string(f.name) + "_total";
    metric_header(out, name, "counter", std::string(f.help));
    out += name + " " + std::to_string(s.*f.member) + "\n";
  }
  metric_header(out, "kv_hints_pending", "gauge", "hints held now");
  out += "kv_hints_pending " + std::to_string(replica_.state().hints.size()) + "\n";
  metric_header(out, "kv_wal_fsync_duration_seconds", "histogram", "WAL fsync latency");
  fsync_latency_.write(out, "kv_wal_fsync_duration_seconds", "");
  metric_header(out, "kv_wal_fsync_batch_records", "histogram", "records made durable by one fsync (group commit)");
  fsync_batch_.write(out, "kv_wal_fsync_batch_records", "");
  metric_header(out, "kv_peer_link_up", "gauge", "1 if the outbound link to the peer is connected");
  for (const auto& [peer, st] : links_.stats()) {
    out += "kv_peer_link_up{peer=\"n" + std::to_string(peer) + "\"} " +
           (st.state == LinkState::connected ? "1" : "0") + "\n";
  }
  {
    const std::uint64_t t = now_ms();
    metric_header(out, "kv_peer_up", "gauge", "1 if the failure detector takes the peer as up");
    for (const auto& [id, e] : replica_.members()) {
      if (id != config_.id) out += "kv_peer_up{peer=\"n" + std::to_string(id) + "\"} " + (replica_.peer_up(id, t) ? "1" : "0") + "\n";
    }
    metric_header(out, "kv_peer_phi", "gauge", "the failure detector's suspicion of the peer (phi accrual)");
    for (const auto& [id, e] : replica_.members()) {
      if (id != config_.id) out += "kv_peer_phi{peer=\"n" + std::to_string(id) + "\"} " + fixed2(replica_.peer_phi(id, t)) + "\n";
    }
  }
  metric_header(out, "kv_keys", "gauge", "records (values and tombstones) stored on this node");
  out += "kv_keys " + std::to_string(replica_.state().store.size()) + "\n";
  // Bridges: the core's side (queue, misses, breaker), then each bridge's own.
  const std::uint64_t now = now_ms();
  auto gauge = [&](const char* name, const char* help, const std::string& v) {
    metric_header(out, name, "gauge", help);
    out += std::string(name) + " " + v + "\n";
  };
  gauge("kv_pg_queue_keys", "async: keys waiting to be written to PostgreSQL", std::to_string(replica_.pg_queue_size()));
  const auto oldest = replica_.pg_queue_oldest_ms();
  const double lag = oldest && now > *oldest ? static_cast<double>(now - *oldest) / 1000.0 : 0.0;
  gauge("kv_pg_queue_lag_seconds", "async: how long the oldest queued key has waited", std::to_string(lag));
  gauge("kv_legacy_breaker_open", "1 while the legacy API circuit breaker is open", replica_.legacy_breaker_open(now) ? "1" : "0");
  if (pg_) pg_->write_metrics(out);
  if (legacy_) legacy_->write_metrics(out);
  return out;
}

std::string Node::cluster_json() const {
  boost::json::object o;
  o["self"] = config_.name;
  o["cluster_id"] = config_.cluster_id;
  o["replicas"] = config_.replica.replicas;
  o["read_quorum"] = config_.replica.read_quorum;
  o["write_quorum"] = config_.replica.write_quorum;
  o["vnodes_per_node"] = config_.replica.vnodes_per_node;
  o["hash"] = "kv::hash64";
  o["anti_entropy"] = {{"interval_ms", config_.replica.ae_interval_ms},
                       {"bytes_per_s", config_.replica.ae_bytes_per_s},
                       {"exchanges", replica_.stats().ae_exchanges},
                       {"records_pushed", replica_.stats().ae_records_pushed},
                       {"records_applied", replica_.stats().ae_records_applied}};
  o["tombstones"] = {{"grace_ms", config_.replica.tombstone_grace_ms},
                     {"collecting", config_.replica.collects_tombstones()},
                     {"tombstones_collected", replica_.stats().tombstones_collected},
                     {"tombstones_reaped", replica_.stats().tombstones_reaped},
                     {"hints_expired", replica_.stats().hints_expired}};
  o["keys"] = replica_.state().store.size();
  o["heartbeat_interval_ms"] = config_.replica.heartbeat_interval_ms;
  o["fd_phi_threshold"] = config_.replica.fd_phi_threshold;
  o["members_hash"] = std::to_string(replica_.members_hash());
  // Every member as this node's table holds it (membership.h), with what its failure detector
  // and its peer link say of it now.
  const auto stats = links_.stats();
  const std::uint64_t now = now_ms();
  boost::json::array members;
  for (const auto& [id, e] : replica_.members()) {
    boost::json::object m;
    m["name"] = "n" + std::to_string(id);
    m["id"] = id;
    m["state"] = member_state_name(e.state);
    m["generation"] = e.generation;
    m["epoch"] = e.epoch;
    auto configured = config_.cluster.find(id);
    m["peer_addr"] = !e.peer_addr.empty() ? e.peer_addr
                     : configured != config_.cluster.end() ? configured->second.to_string() : "";
    m["http_addr"] = e.client_addr;  // empty until its entry arrived by gossip
    m["share"] = replica_.ring().share(id);
    if (id == config_.id) {
      m["status"] = "up";
      m["link"] = "self";
      m["resp_addr"] = config_.resp_addr.to_string();
    } else {
      m["status"] = replica_.peer_up(id, now) ? "up" : "down";
      m["phi"] = std::round(replica_.peer_phi(id, now) * 100.0) / 100.0;
      auto it = stats.find(id);
      m["link"] = it != stats.end() && it->second.state == LinkState::connected ? "connected" : "down";
    }
    members.push_back(std::move(m));
  }
  o["members"] = std::move(members);
  return boost::json::serialize(o);
}

std::string Node::remove_member(std::string_view name) {
  const auto id = parse_node_name(name);
  if (!id) return id.error().detail;
  std::string refused = replica_.remove_member(id.value(), now_ms());
  process_ready();
  if (refused.empty()) log_line("kvnode", config_.name + ": removing " + std::string(name) + " from the cluster");
  return refused;
}

std::string Node::info_text() const {
  const auto uptime = std::chrono::duration_cast<std::chrono::seconds>(std::chrono::steady_clock::now() - started_);
  std::string members;
  for (const auto& [id, addr] : config_.cluster) members += (members.empty() ? "n" : ",n") + std::to_string(id);
  return "# Server\r\nredis_version:7.0.0-kv\r\nkv_node:" + config_.name +
         "\r\nuptime_in_seconds:" + std::to_string(uptime.count()) +
         "\r\n# Cluster\r\nmembers:" + members + "\r\nreplicas:" + std::to_string(config_.replica.replicas) +
         "\r\nvnodes_per_node:" + std::to_string(config_.replica.vnodes_per_node) +
         "\r\nconnected_peers:" + std::to_string(links_.connected_peers()) +
         "\r\n# Keyspace\r\nkeys:" + std::to_string(replica_.state().store.size()) + "\r\n";
}

}  // namespace kv
