// PostgreSQL bridge (see pg_bridge.h).
//
// Every connection is a libpq connection in non-blocking pipeline mode whose socket Asio watches
// (a non-owning stream_descriptor: libpq owns the fd). Calls wait in one FIFO queue; an idle
// connection takes up to batch_max of them, sends them as pipelined prepared statements followed
// by one sync, and reads their results in order. The statements up to a sync run as one implicit
// transaction, so a batch costs one round trip and one commit; its statements are sent in key
// order, so that two batches on two connections lock rows in the same order and cannot deadlock.
//
// Handlers hold the bridge's `alive_` token weakly and a connection's generation: a completion
// that outlived the bridge, or the connection attempt it was started for, does nothing.
//
// fd reuse: libpq closes its socket by itself (server gone, a failed connection attempt that
// moves on to the next address), and the kernel may hand the same number to the next socket.
// So the descriptor is registered afresh after every PQconnectPoll, and a connection whose
// socket is gone (PQsocket changed or CONNECTION_BAD) is released at once, before any other
// code runs on the loop.
#include "node/pg_bridge.h"

#include <libpq-fe.h>

#include <algorithm>
#include <array>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <cstring>
#include <deque>
#include <map>
#include <optional>
#include <random>
#include <utility>
#include <vector>

#include "net/log.h"
#include "node/metrics.h"

namespace kv {

namespace {

namespace asio = boost::asio;
using Clock = std::chrono::steady_clock;
using boost::system::error_code;

// Calls waiting for a connection, beyond which a call fails at once: the core bounds its own
// calls (requests in flight, pg_queue_max), so this only guards against a runaway.
constexpr std::size_t waiting_calls_max = 100000;
// A batch stops growing past this many bytes of values, so that large values do not pile up
// hundreds of megabytes in libpq's output buffer.
constexpr std::size_t batch_bytes_soft_max = 4u << 20;
// Connecting (TCP, TLS, authentication, CREATE TABLE) gets at least this long.
constexpr std::chrono::milliseconds connect_timeout_min{1000};
// Serialises CREATE TABLE IF NOT EXISTS across connections and nodes (concurrent creations of
// one table can fail on pg_type's unique index). Any constant will do: "kv_pg".
constexpr const char* setup_lock_sql = "SELECT pg_advisory_xact_lock(461195864167)";
constexpr std::size_t resolved_addresses_max = 8;
// What this file's log lines start with (net/log.h).
constexpr std::string_view log_source = "postgres";
// Group commit (see pump): calls that wait for a batch in flight rather than start another.
constexpr std::size_t batch_fill_min = 16;
constexpr std::chrono::microseconds batch_hold{2000};

constexpr Oid oid_bool = 16, oid_bytea = 17, oid_int8 = 20;
constexpr const char* write_statement = "kv_write";
constexpr const char* lookup_statement = "kv_lookup";

// libpq's messages end in a newline and may span lines; a client error wants one line.
std::string one_line(const char* text) {
  std::string out;
  for (const char* p = text ? text : ""; *p; ++p) {
    if (*p == '\n') {
      out += "; ";
      while (p[1] == ' ' || p[1] == '\t') ++p;  // libpq indents continuation lines
    } else if (*p != '\r') {
      out += *p == '\t' ? ' ' : *p;
    }
  }
  while (!out.empty() && (out.back() == ' ' || out.back() == ';')) out.pop_back();
  return out.empty() ? "unknown error" : out;
}

std::string conn_error(const PGconn* pg) { return one_line(pg ? PQerrorMessage(pg) : "no connection"); }

void put_be64(char* out, std::uint64_t v) {
  for (int i = 7; i >= 0; --i) {
    out[i] = static_cast<char>(v & 0xff);
    v >>= 8;
  }
}

std::uint64_t get_be64(const char* in) {
  std::uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = (v << 8) | static_cast<unsigned char>(in[i]);
  return v;
}

void ignore_notice(void*, const PGresult*) {}  // "relation already exists, skipping" and the like

bool plain_identifier(const std::string& name) {
  if (name.empty() || name.size() > 63) return false;
  if (!((name[0] >= 'a' && name[0] <= 'z') || name[0] == '_')) return false;
  return std::all_of(name.begin(), name.end(), [](char ch) {
    return (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '_';
  });
}

std::string ms_text(std::uint64_t ms) { return std::to_string(ms) + " ms"; }

struct Call {
  std::uint64_t id = 0;
  BridgeKind kind = BridgeKind::pg_write;
  std::string key;
  std::optional<Record> record;
  Bridge::Done done;
  Clock::time_point started, deadline;
};
using CallPtr = std::unique_ptr<Call>;

// What one sync covers: the setup statements, or calls in the order they were sent.
struct Batch {
  bool setup = false;
  std::vector<CallPtr> calls;
  std::size_t statements = 0;  // sent
  std::size_t results = 0;     // statement results read so far
  std::vector<std::optional<Record>> records;  // pg_lookup rows
  std::vector<std::string> errors;             // per statement; empty when it went well
  std::string error;           // the first error: the whole implicit transaction rolled back
  Clock::time_point deadline = Clock::time_point::max();
};

enum class ConnState { down, resolving, connecting, setup, ready };

struct Conn {
  Conn(asio::io_context& io, std::size_t i) : index(i), socket(io), retry(io), resolver(io) {}
  std::size_t index;
  ConnState state = ConnState::down;
  PGconn* pg = nullptr;
  asio::posix::stream_descriptor socket;  // non-owning view of PQsocket(pg)
  std::uint64_t gen = 0;                  // bumped when pending waits become stale
  bool reading = false, writing = false, flush_pending = false;
  std::optional<Batch> batch;             // at most one in flight
  Clock::time_point connect_deadline = Clock::time_point::max();
  asio::steady_timer retry;
  asio::ip::tcp::resolver resolver;
  std::uint64_t backoff_ms = 0;
  bool was_up = false;                    // for "lost" log lines
};

struct KindMetrics {
  std::uint64_t ok = 0, errors = 0;
  Histogram latency;
};

class PgBridge final : public Bridge {
 public:
  PgBridge(asio::io_context& io, const PgOptions& options)
      : io_(io), options_(options), deadline_timer_(io), hold_timer_(io), rng_(std::random_device{}()) {
    if (options_.pool == 0) options_.pool = 1;
    if (options_.batch_max == 0) options_.batch_max = 1;
    if (options_.reconnect_initial_ms == 0) options_.reconnect_initial_ms = 1;
    options_.reconnect_max_ms = std::max(options_.reconnect_max_ms, options_.reconnect_initial_ms);
    if (auto valid = validate_pg_options(options_); !valid) config_error_ = valid.error().detail;
    if (config_error_.empty()) {
      char* err = nullptr;
      PQconninfoOption* opts = PQconninfoParse(options_.url.c_str(), &err);
      if (opts) {
        for (PQconninfoOption* o = opts; o->keyword; ++o) {
          if (o->val) params_.emplace_back(o->keyword, o->val);
        }
        PQconninfoFree(opts);
      }
      if (err) PQfreemem(err);
    }
    last_error_ = config_error_.empty() ? "not connected yet" : config_error_;
    table_ = "\"" + options_.table + "\"";
    for (std::size_t i = 0; i < options_.pool; ++i) {
      conns_.push_back(std::make_unique<Conn>(io_, i));
      conns_.back()->backoff_ms = options_.reconnect_initial_ms;
    }
  }

  ~PgBridge() override {
    for (auto& c : conns_) close_conn(*c);
  }

  void start() override {
    if (!config_error_.empty()) {
      log_line(log_source, "not starting: " + config_error_);
      return;
    }
    for (auto& c : conns_) start_connect(*c);
  }

  void call(const BridgeCall& bc, Done done) override {
    auto c = std::make_unique<Call>();
    c->id = bc.id;
    c->kind = bc.kind;
    c->key = bc.key;
    c->record = bc.record;
    c->done = std::move(done);
    c->started = Clock::now();
    c->deadline = c->started + std::chrono::milliseconds(options_.timeout_ms);
    if (stopped_) return fail(std::move(c), "postgres: stopped");
    if (!config_error_.empty()) return fail(std::move(c), "postgres: " + config_error_);
    if (c->kind == BridgeKind::legacy_fetch) return fail(std::move(c), "postgres: not a PostgreSQL call");
    if (c->kind == BridgeKind::pg_write && !c->record) {
      return fail(std::move(c), "postgres: pg_write without a record");
    }
    if (queue_.size() >= waiting_calls_max) {
      return fail(std::move(c), "postgres: too many calls waiting (" + std::to_string(waiting_calls_max) + ")");
    }
    // Known to be down: fail at once rather than hold the client for the whole timeout.
    if (outage_) return fail(std::move(c), "postgres: not connected: " + last_error_);
    queue_.push_back(std::move(c));
    arm_deadline();
    pump_soon();
  }

  void stop() override {
    if (stopped_) return;
    stopped_ = true;
    while (!queue_.empty()) {
      fail(std::move(queue_.front()), "postgres: stopped");
      queue_.pop_front();
    }
    for (auto& c : conns_) {
      fail_batch(*c, "postgres: stopped");
      close_conn(*c);
      c->state = ConnState::down;
      c->retry.cancel();
    }
    deadline_timer_.cancel();
    deadline_armed_.reset();
    hold_timer_.cancel();
  }

  void write_metrics(std::string& out) const override {
    metric_header(out, "kv_pg_connections_up", "gauge", "PostgreSQL connections ready for calls");
    out += "kv_pg_connections_up " + std::to_string(connections_up()) + "\n";
    metric_header(out, "kv_pg_calls_total", "counter", "PostgreSQL calls answered, by kind and result");
    for (const auto& [kind, m] : metrics_) {
      out += "kv_pg_calls_total{kind=\"" + kind + "\",result=\"ok\"} " + std::to_string(m.ok) + "\n";
      out += "kv_pg_calls_total{kind=\"" + kind + "\",result=\"error\"} " + std::to_string(m.errors) + "\n";
    }
    metric_header(out, "kv_pg_call_duration_seconds", "histogram", "PostgreSQL call latency, queueing included");
    for (const auto& [kind, m] : metrics_) m.latency.write(out, "kv_pg_call_duration_seconds", "kind=\"" + kind + "\"");
    metric_header(out, "kv_pg_batch_size", "histogram", "calls sent in one pipelined batch (one commit)");
    batch_size_.write(out, "kv_pg_batch_size", "");
  }

 private:
  // ---- Answers ----

  void fail(CallPtr c, std::string detail) {
    BridgeReply r;
    r.id = c->id;
    r.kind = c->kind;
    r.error = make_error_code(Errc::unavailable);
    r.detail = std::move(detail);
    complete(std::move(c), std::move(r));
  }

  // Answers leave through answers_ (node/bridge.h): posted, never run inside call().
  void complete(CallPtr c, BridgeReply r) {
    KindMetrics& m = metrics_[c->kind == BridgeKind::pg_write ? "write" : "lookup"];
    (r.error ? m.errors : m.ok) += 1;
    m.latency.observe(std::chrono::duration<double>(Clock::now() - c->started).count());
    answers_.add(std::move(c->done), std::move(r));
  }

  std::size_t connections_up() const {
    return static_cast<std::size_t>(std::count_if(conns_.begin(), conns_.end(), [](const auto& c) {
      return c->state == ConnState::ready;
    }));
  }

  // ---- Connecting ----

  void start_connect(Conn& c) {
    if (stopped_) return;
    close_conn(c);
    c.connect_deadline = Clock::now() + std::max<std::chrono::milliseconds>(
                                            std::chrono::milliseconds(options_.timeout_ms), connect_timeout_min);
    arm_deadline();
    // libpq resolves host names with a blocking getaddrinfo: resolve here, asynchronously, and
    // hand libpq the addresses (hostaddr), keeping host for TLS and password matching.
    const std::string host = param("host"), port = param("port");
    boost::system::error_code ec;
    const bool needs_dns = !host.empty() && param("hostaddr").empty() && host[0] != '/' && host[0] != '@' &&
                           host.find(',') == std::string::npos && port.find(',') == std::string::npos &&
                           (asio::ip::make_address(host, ec), ec);
    if (!needs_dns) return connect_with(c, {});
    c.state = ConnState::resolving;
    c.resolver.async_resolve(
        host, port.empty() ? "5432" : port, asio::ip::tcp::resolver::numeric_service,
        [this, alive = std::weak_ptr<char>(alive_), i = c.index, gen = c.gen, host](
            const error_code& rec, asio::ip::tcp::resolver::results_type results) {
          if (alive.expired()) return;
          Conn& conn = *conns_[i];
          if (conn.gen != gen || conn.state != ConnState::resolving) return;
          if (rec) return broken(conn, "cannot resolve " + host + ": " + rec.message());
          std::vector<std::string> addrs;
          for (const auto& entry : results) {
            const std::string a = entry.endpoint().address().to_string();
            if (std::find(addrs.begin(), addrs.end(), a) == addrs.end() && addrs.size() < resolved_addresses_max) {
              addrs.push_back(a);
            }
          }
          if (addrs.empty()) return broken(conn, "cannot resolve " + host + ": no address");
          std::string hosts, hostaddrs;
          for (const auto& a : addrs) {
            hosts += (hosts.empty() ? "" : ",") + host;
            hostaddrs += (hostaddrs.empty() ? "" : ",") + a;
          }
          connect_with(conn, {{"host", hosts}, {"hostaddr", hostaddrs}});
        });
  }

  void connect_with(Conn& c, const std::vector<std::pair<std::string, std::string>>& overrides) {
    std::vector<std::pair<std::string, std::string>> kv = params_;
    for (const auto& [k, v] : overrides) {
      // An init-capture: clang before 16 cannot capture a structured binding (the fuzz build).
      auto it = std::find_if(kv.begin(), kv.end(), [&key = k](const auto& p) { return p.first == key; });
      if (it != kv.end()) it->second = v;
      else kv.emplace_back(k, v);
    }
    if (std::none_of(kv.begin(), kv.end(), [](const auto& p) { return p.first == "fallback_application_name"; })) {
      kv.emplace_back("fallback_application_name", "kvnode");
    }
    std::vector<const char*> keys, values;
    for (const auto& [k, v] : kv) {
      keys.push_back(k.c_str());
      values.push_back(v.c_str());
    }
    keys.push_back(nullptr);
    values.push_back(nullptr);
    c.pg = PQconnectStartParams(keys.data(), values.data(), 0);
    if (c.pg == nullptr) return broken(c, "cannot connect: out of memory");
    if (PQstatus(c.pg) == CONNECTION_BAD) return broken(c, "cannot connect: " + conn_error(c.pg));
    PQsetNoticeReceiver(c.pg, ignore_notice, nullptr);
    c.state = ConnState::connecting;
    // libpq's protocol: start as if PQconnectPoll had said "writing".
    if (!watch_socket(c)) return;
    wait(c, asio::posix::descriptor_base::wait_write);
  }

  // Registers PQsocket(pg) afresh with Asio (see the note on fd reuse at the top).
  bool watch_socket(Conn& c) {
    release_socket(c);
    const int fd = PQsocket(c.pg);
    if (fd < 0) {
      broken(c, "cannot connect: " + conn_error(c.pg));
      return false;
    }
    error_code ec;
    c.socket.assign(fd, ec);
    if (ec) {
      broken(c, "cannot watch the socket: " + ec.message());
      return false;
    }
    return true;
  }

  void release_socket(Conn& c) {
    if (c.socket.is_open()) c.socket.release();  // cancels the waits; libpq keeps the fd
    ++c.gen;
    c.reading = c.writing = false;
  }

  void on_connect_progress(Conn& c) {
    switch (PQconnectPoll(c.pg)) {
      case PGRES_POLLING_READING:
        if (watch_socket(c)) wait(c, asio::posix::descriptor_base::wait_read);
        return;
      case PGRES_POLLING_WRITING:
        if (watch_socket(c)) wait(c, asio::posix::descriptor_base::wait_write);
        return;
      case PGRES_POLLING_OK:
        if (watch_socket(c)) on_connected(c);
        return;
      default:
        return broken(c, "cannot connect: " + conn_error(c.pg));
    }
  }

  // Non-blocking pipeline mode, then the table and the two prepared statements, as one batch.
  void on_connected(Conn& c) {
    if (PQsetnonblocking(c.pg, 1) != 0) return broken(c, "cannot set non-blocking mode: " + conn_error(c.pg));
    if (PQenterPipelineMode(c.pg) != 1) return broken(c, "cannot enter pipeline mode: " + conn_error(c.pg));
    const std::string create =
        "CREATE TABLE IF NOT EXISTS " + table_ +
        " (key bytea PRIMARY KEY, value bytea NOT NULL, version_physical bigint NOT NULL,"
        " version_counter bigint NOT NULL, version_node bigint NOT NULL, tombstone boolean NOT NULL,"
        " updated_at timestamptz NOT NULL DEFAULT now())";
    // The version guard: an older or equal version changes nothing, so retries, duplicates and
    // reordering are harmless.
    const std::string write =
        "INSERT INTO " + table_ +
        " AS t (key, value, version_physical, version_counter, version_node, tombstone)"
        " VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value,"
        " version_physical = EXCLUDED.version_physical, version_counter = EXCLUDED.version_counter,"
        " version_node = EXCLUDED.version_node, tombstone = EXCLUDED.tombstone, updated_at = now()"
        " WHERE (t.version_physical, t.version_counter, t.version_node) <"
        " (EXCLUDED.version_physical, EXCLUDED.version_counter, EXCLUDED.version_node)";
    const std::string lookup = "SELECT value, version_physical, version_counter, version_node, tombstone FROM " +
                               table_ + " WHERE key = $1";
    const Oid write_types[] = {oid_bytea, oid_bytea, oid_int8, oid_int8, oid_int8, oid_bool};
    const Oid lookup_types[] = {oid_bytea};
    const bool sent =
        PQsendQueryParams(c.pg, setup_lock_sql, 0, nullptr, nullptr, nullptr, nullptr, 0) == 1 &&
        PQsendQueryParams(c.pg, create.c_str(), 0, nullptr, nullptr, nullptr, nullptr, 0) == 1 &&
        PQsendPrepare(c.pg, write_statement, write.c_str(), 6, write_types) == 1 &&
        PQsendPrepare(c.pg, lookup_statement, lookup.c_str(), 1, lookup_types) == 1 && PQpipelineSync(c.pg) == 1;
    if (!sent) return broken(c, "cannot send the table setup: " + conn_error(c.pg));
    Batch b;
    b.setup = true;
    b.statements = 4;
    b.errors.resize(b.statements);
    b.records.resize(b.statements);
    c.batch = std::move(b);
    c.state = ConnState::setup;
    after_send(c);
  }

  // ---- Sending ----

  void pump_soon() {
    if (pump_posted_) return;
    pump_posted_ = true;
    asio::post(io_, [this, alive = std::weak_ptr<char>(alive_)] {
      if (alive.expired()) return;
      pump_posted_ = false;
      pump();
    });
  }

  // Hands waiting calls to idle connections, up to batch_max each. Group commit: while a batch is
  // in flight, a few new calls wait for it to come back and go out together (fewer, larger
  // commits), unless enough of them queued up to fill a batch of their own or the oldest has
  // waited batch_hold; so the pool's parallelism is used under load and a stuck batch does not
  // hold the others up.
  void pump() {
    const auto now = Clock::now();
    while (!stopped_ && !queue_.empty()) {
      std::size_t busy = 0;
      Conn* pick = nullptr;
      for (std::size_t k = 0; k < conns_.size(); ++k) {
        Conn& c = *conns_[(next_conn_ + k) % conns_.size()];
        if (c.state != ConnState::ready) continue;
        if (c.batch) ++busy;
        else if (!pick) pick = &c;
      }
      if (!pick) return;
      const std::size_t fill = std::min(batch_fill_min, options_.batch_max);
      if (busy > 0 && queue_.size() < fill && now - queue_.front()->started < batch_hold) {
        arm_hold(queue_.front()->started + batch_hold);
        return;
      }
      next_conn_ = (pick->index + 1) % conns_.size();
      send_batch(*pick, options_.batch_max);
    }
  }

  void arm_hold(Clock::time_point at) {
    if (hold_armed_) return;
    hold_armed_ = true;
    hold_timer_.expires_at(at);
    hold_timer_.async_wait([this, alive = std::weak_ptr<char>(alive_)](const error_code& ec) {
      if (alive.expired()) return;
      hold_armed_ = false;
      if (!ec) pump();
    });
  }

  void send_batch(Conn& c, std::size_t n) {
    Batch b;
    std::size_t bytes = 0;
    while (b.calls.size() < n && !queue_.empty() && (b.calls.empty() || bytes < batch_bytes_soft_max)) {
      CallPtr call = std::move(queue_.front());
      queue_.pop_front();
      bytes += call->key.size() + (call->record ? call->record->value.size() : 0);
      b.deadline = std::min(b.deadline, call->deadline);
      b.calls.push_back(std::move(call));
    }
    std::stable_sort(b.calls.begin(), b.calls.end(), [](const CallPtr& x, const CallPtr& y) { return x->key < y->key; });
    b.errors.resize(b.calls.size());
    b.records.resize(b.calls.size());
    batch_size_.observe(static_cast<double>(b.calls.size()));
    bool sent = true;
    for (const CallPtr& call : b.calls) {
      if (!(sent = send_statement(c, *call))) break;
      ++b.statements;
    }
    c.batch = std::move(b);
    if (!sent || PQpipelineSync(c.pg) != 1) {
      return broken(c, "cannot send: " + conn_error(c.pg));
    }
    after_send(c);
    arm_deadline();
  }

  bool send_statement(Conn& c, const Call& call) {
    const int binary[6] = {1, 1, 1, 1, 1, 1};
    if (call.kind == BridgeKind::pg_lookup) {
      const char* values[1] = {call.key.data()};
      const int lengths[1] = {static_cast<int>(call.key.size())};
      return PQsendQueryPrepared(c.pg, lookup_statement, 1, values, lengths, binary, 1) == 1;
    }
    const Record& r = *call.record;
    std::array<char, 8> physical{}, counter{}, node{};
    put_be64(physical.data(), r.version.physical_ms);
    put_be64(counter.data(), r.version.counter);
    put_be64(node.data(), r.version.node);
    const char tombstone = r.tombstone ? 1 : 0;
    static const std::string empty;
    const std::string& value = r.tombstone ? empty : r.value;
    // libpq wants a non-null pointer even for a zero-length binary value.
    const char* values[6] = {call.key.data(), value.data(), physical.data(), counter.data(), node.data(), &tombstone};
    const int lengths[6] = {static_cast<int>(call.key.size()), static_cast<int>(value.size()), 8, 8, 8, 1};
    return PQsendQueryPrepared(c.pg, write_statement, 6, values, lengths, binary, 1) == 1;
  }

  // After queueing statements: flush what fits and watch for results.
  void after_send(Conn& c) {
    const std::uint64_t gen = c.gen;
    flush(c);
    if (c.gen != gen) return;
    wait(c, asio::posix::descriptor_base::wait_read);
  }

  void flush(Conn& c) {
    const int r = PQflush(c.pg);
    if (r < 0) return broken(c, "connection lost while sending: " + conn_error(c.pg));
    c.flush_pending = r == 1;
    if (c.flush_pending) wait(c, asio::posix::descriptor_base::wait_write);
  }

  // ---- Readiness ----

  void wait(Conn& c, asio::posix::descriptor_base::wait_type type) {
    const bool read = type == asio::posix::descriptor_base::wait_read;
    bool& pending = read ? c.reading : c.writing;
    if (pending) return;
    pending = true;
    c.socket.async_wait(type, [this, alive = std::weak_ptr<char>(alive_), i = c.index, gen = c.gen, read](
                                  const error_code& ec) {
      if (alive.expired()) return;
      Conn& conn = *conns_[i];
      if (conn.gen != gen) return;  // the socket was released or re-registered since
      (read ? conn.reading : conn.writing) = false;
      if (ec) return broken(conn, "waiting on the socket failed: " + ec.message());
      on_ready(conn, read);
    });
  }

  void on_ready(Conn& c, bool readable) {
    if (c.state == ConnState::connecting) return on_connect_progress(c);
    if (c.state != ConnState::setup && c.state != ConnState::ready) return;
    const std::uint64_t gen = c.gen;
    if (readable && PQconsumeInput(c.pg) != 1) return broken(c, "connection lost: " + conn_error(c.pg));
    if (c.flush_pending) {
      flush(c);
      if (c.gen != gen) return;
    }
    read_results(c);
    if (c.gen != gen) return;
    if (PQstatus(c.pg) == CONNECTION_BAD) return broken(c, "connection lost: " + conn_error(c.pg));
    wait(c, asio::posix::descriptor_base::wait_read);  // results, or the server going away
  }

  // ---- Results ----

  void read_results(Conn& c) {
    const std::uint64_t gen = c.gen;
    int nulls = 0;  // a null ends one statement's results; two in a row: nothing more for now
    while (c.gen == gen && !PQisBusy(c.pg)) {
      PGresult* r = PQgetResult(c.pg);
      if (r == nullptr) {
        if (++nulls >= 2) break;
        continue;
      }
      nulls = 0;
      const ExecStatusType st = PQresultStatus(r);
      if (!c.batch) {  // e.g. the server's goodbye before it closes an idle connection
        const std::string msg = one_line(PQresultErrorMessage(r));
        PQclear(r);
        if (st == PGRES_FATAL_ERROR) return broken(c, "server error: " + msg);
        continue;
      }
      Batch& b = *c.batch;
      if (st == PGRES_PIPELINE_SYNC) {
        PQclear(r);
        finish_batch(c);
        continue;
      }
      if (b.results < b.statements) {
        take_result(b, b.results++, r);
      } else if (st == PGRES_FATAL_ERROR && b.error.empty()) {
        b.error = one_line(PQresultErrorMessage(r));  // the commit itself failed
      }
      PQclear(r);
    }
  }

  void take_result(Batch& b, std::size_t i, const PGresult* r) {
    const ExecStatusType st = PQresultStatus(r);
    std::string& err = b.errors[i];
    if (st == PGRES_FATAL_ERROR || st == PGRES_NONFATAL_ERROR) {
      err = one_line(PQresultErrorMessage(r));
    } else if (st == PGRES_PIPELINE_ABORTED) {
      err = "aborted by an earlier error in its batch";
    } else if (b.setup) {
      if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) err = std::string("unexpected ") + PQresStatus(st);
    } else if (b.calls[i]->kind == BridgeKind::pg_write) {
      if (st != PGRES_COMMAND_OK) err = std::string("unexpected ") + PQresStatus(st);
    } else if (st != PGRES_TUPLES_OK) {
      err = std::string("unexpected ") + PQresStatus(st);
    } else if (PQntuples(r) > 0) {
      if (PQnfields(r) != 5 || PQgetlength(r, 0, 1) != 8 || PQgetlength(r, 0, 2) != 8 || PQgetlength(r, 0, 3) != 8 ||
          PQgetlength(r, 0, 4) != 1) {
        err = "unexpected row shape in table " + options_.table;
      } else {
        Record rec;
        rec.value.assign(PQgetvalue(r, 0, 0), static_cast<std::size_t>(PQgetlength(r, 0, 0)));
        rec.version.physical_ms = get_be64(PQgetvalue(r, 0, 1));
        rec.version.counter = static_cast<std::uint32_t>(get_be64(PQgetvalue(r, 0, 2)));
        rec.version.node = static_cast<NodeId>(get_be64(PQgetvalue(r, 0, 3)));
        rec.tombstone = PQgetvalue(r, 0, 4)[0] != 0;
        if (rec.tombstone) rec.value.clear();
        b.records[i] = std::move(rec);
      }
    }
    if (!err.empty() && st != PGRES_PIPELINE_ABORTED && b.error.empty()) b.error = err;
  }

  void finish_batch(Conn& c) {
    Batch b = std::move(*c.batch);
    c.batch.reset();
    if (b.setup) {
      if (!b.error.empty() || b.results < b.statements) {
        return broken(c, "cannot set up table " + options_.table + ": " + (b.error.empty() ? "no result" : b.error));
      }
      on_up(c);
      return;
    }
    for (std::size_t i = 0; i < b.calls.size(); ++i) {
      CallPtr call = std::move(b.calls[i]);
      if (i >= b.results) {
        fail(std::move(call), "postgres: no result for the call (" + (b.error.empty() ? "batch cut short" : b.error) + ")");
      } else if (call->kind == BridgeKind::pg_write && !b.error.empty()) {
        // One implicit transaction: when any statement failed, none was committed.
        fail(std::move(call), "postgres: write failed: " + (b.errors[i].empty() ? "rolled back with its batch: " + b.error
                                                                                  : b.errors[i]));
      } else if (!b.errors[i].empty()) {
        fail(std::move(call), "postgres: " + bridge_name_text(call->kind) + " failed: " + b.errors[i]);
      } else {
        BridgeReply r;
        r.id = call->id;
        r.kind = call->kind;
        if (call->kind == BridgeKind::pg_lookup) r.record = std::move(b.records[i]);
        complete(std::move(call), std::move(r));
      }
    }
    arm_deadline();
    pump_soon();
  }

  static std::string bridge_name_text(BridgeKind kind) { return std::string(bridge_name(kind)); }

  void on_up(Conn& c) {
    const bool first = connections_up() == 0;
    c.state = ConnState::ready;
    outage_ = false;
    c.backoff_ms = options_.reconnect_initial_ms;
    c.connect_deadline = Clock::time_point::max();
    c.was_up = true;
    if (first) {
      log_line(log_source, "connected to " + redact_pg_url(options_.url) + " (table " + options_.table + ")");
      last_logged_error_.clear();
    }
    arm_deadline();
    pump_soon();
  }

  // ---- Failures ----

  void fail_batch(Conn& c, const std::string& detail) {
    if (!c.batch) return;
    Batch b = std::move(*c.batch);
    c.batch.reset();
    for (CallPtr& call : b.calls) fail(std::move(call), detail);
  }

  // The connection is unusable: fail what it carries, close it, and try again after a backoff.
  void broken(Conn& c, const std::string& reason) {
    const bool was_ready = c.state == ConnState::ready;
    fail_batch(c, "postgres: " + reason);
    close_conn(c);
    c.state = ConnState::down;
    c.connect_deadline = Clock::time_point::max();
    last_error_ = reason;
    if (connections_up() == 0 && !stopped_) {
      // Every connection is down and this one just failed: an outage, not a slow start. What
      // waits now would only wait for its deadline.
      outage_ = true;
      while (!queue_.empty()) {
        fail(std::move(queue_.front()), "postgres: not connected: " + reason);
        queue_.pop_front();
      }
    }
    if (was_ready) {
      log_line(log_source, "connection " + std::to_string(c.index + 1) + " of " + std::to_string(conns_.size()) +
               " lost: " + reason);
      last_logged_error_ = reason;
    } else if (reason != last_logged_error_) {
      log_line(log_source, reason + " (retrying with backoff)");
      last_logged_error_ = reason;
    }
    if (stopped_) return;
    // Jitter spreads the reconnections of many connections and nodes after an outage.
    std::uniform_int_distribution<std::uint64_t> jitter(c.backoff_ms / 2, c.backoff_ms);
    const std::uint64_t delay = was_ready ? options_.reconnect_initial_ms / 2 + 1 : jitter(rng_);
    c.backoff_ms = std::min(c.backoff_ms * 2, options_.reconnect_max_ms);
    c.retry.expires_after(std::chrono::milliseconds(delay));
    c.retry.async_wait([this, alive = std::weak_ptr<char>(alive_), i = c.index, gen = c.gen](const error_code& ec) {
      if (ec || alive.expired()) return;
      Conn& conn = *conns_[i];
      if (conn.gen == gen && conn.state == ConnState::down) start_connect(conn);
    });
    arm_deadline();
  }

  void close_conn(Conn& c) {
    release_socket(c);
    c.resolver.cancel();
    if (c.pg) PQfinish(c.pg);
    c.pg = nullptr;
    c.flush_pending = false;
  }

  // ---- Deadlines ----

  // One timer at the earliest deadline: a waiting call's, a batch's, or a connection attempt's.
  void arm_deadline() {
    if (stopped_) return;
    auto earliest = Clock::time_point::max();
    if (!queue_.empty()) earliest = queue_.front()->deadline;  // FIFO, one timeout for all
    for (const auto& c : conns_) {
      if (c->batch && !c->batch->setup) earliest = std::min(earliest, c->batch->deadline);
      earliest = std::min(earliest, c->connect_deadline);
    }
    if (earliest == Clock::time_point::max()) return;
    if (deadline_armed_ && *deadline_armed_ <= earliest) return;
    deadline_armed_ = earliest;
    deadline_timer_.expires_at(earliest);
    deadline_timer_.async_wait([this, alive = std::weak_ptr<char>(alive_)](const error_code& ec) {
      if (ec || alive.expired()) return;
      deadline_armed_.reset();
      on_deadline();
    });
  }

  void on_deadline() {
    const auto now = Clock::now();
    const std::string timed_out = "postgres: timed out after " + ms_text(options_.timeout_ms);
    while (!queue_.empty() && queue_.front()->deadline <= now) {
      CallPtr call = std::move(queue_.front());
      queue_.pop_front();
      if (connections_up() == 0) {
        fail(std::move(call), "postgres: not connected: " + last_error_);
      } else {
        fail(std::move(call), timed_out + " waiting for a free connection");
      }
    }
    for (auto& cp : conns_) {
      Conn& c = *cp;
      if (c.batch && !c.batch->setup && c.batch->deadline <= now) {
        // The statement may still be running there; the connection cannot be trusted to answer
        // in order any more, so it is reset.
        fail_batch(c, timed_out);
        broken(c, "a call timed out after " + ms_text(options_.timeout_ms) + "; connection reset");
      } else if (c.connect_deadline <= now) {
        broken(c, "cannot connect: timed out after " +
                      std::to_string(std::max<std::uint64_t>(options_.timeout_ms, connect_timeout_min.count())) + " ms");
      }
    }
    arm_deadline();
  }

  std::string param(const std::string& key) const {
    for (const auto& [k, v] : params_) {
      if (k == key) return v;
    }
    return {};
  }

  asio::io_context& io_;
  PgOptions options_;
  std::string config_error_;
  std::vector<std::pair<std::string, std::string>> params_;  // parsed connection string
  std::string table_;                                        // quoted
  std::vector<std::unique_ptr<Conn>> conns_;
  std::deque<CallPtr> queue_;
  std::size_t next_conn_ = 0;
  asio::steady_timer deadline_timer_;
  std::optional<Clock::time_point> deadline_armed_;
  asio::steady_timer hold_timer_;
  bool hold_armed_ = false;
  bool pump_posted_ = false;
  BridgeAnswers answers_{io_};
  bool stopped_ = false;
  std::string last_error_, last_logged_error_;
  bool outage_ = false;  // every connection failed since one was last ready
  std::mt19937_64 rng_;
  std::map<std::string, KindMetrics> metrics_;
  Histogram batch_size_{Histogram::count_bounds};
  std::shared_ptr<char> alive_ = std::make_shared<char>(0);
};

}  // namespace

std::unique_ptr<Bridge> make_pg_bridge(asio::io_context& io, const PgOptions& options) {
  return std::make_unique<PgBridge>(io, options);
}

Expected<void> validate_pg_url(const std::string& url) {
  if (url.empty()) return invalid_input("no connection string");
  char* err = nullptr;
  PQconninfoOption* opts = PQconninfoParse(url.c_str(), &err);
  std::string error;
  if (!opts) error = "bad connection string: " + (err ? one_line(err) : std::string("out of memory"));
  if (opts) PQconninfoFree(opts);
  if (err) PQfreemem(err);
  if (!error.empty()) return invalid_input(std::move(error));
  return outcome::success();
}

Expected<void> validate_pg_table(const std::string& table) {
  if (plain_identifier(table)) return outcome::success();
  return invalid_input("table name '" + table +
                       "' is not a plain lowercase identifier ([a-z_][a-z0-9_]*, at most 63 bytes)");
}

Expected<void> validate_pg_options(const PgOptions& options) {
  BOOST_OUTCOME_TRY(validate_pg_url(options.url));
  return validate_pg_table(options.table);
}

std::string redact_pg_url(const std::string& url) {
  std::string out = url;
  const auto scheme = out.find("://");
  if (scheme != std::string::npos) {
    // postgresql://user:password@host/...?password=...
    const std::size_t start = scheme + 3;
    std::size_t end = out.find_first_of("/?#", start);
    if (end == std::string::npos) end = out.size();
    const std::size_t at = out.rfind('@', end);
    if (at != std::string::npos && at >= start) {
      const std::size_t colon = out.find(':', start);
      if (colon != std::string::npos && colon < at) out.replace(colon + 1, at - colon - 1, "***");
    }
    for (std::size_t p = out.find("password=", start); p != std::string::npos; p = out.find("password=", p + 1)) {
      if (p > 0 && out[p - 1] != '?' && out[p - 1] != '&') continue;
      const std::size_t v = p + 9;
      const std::size_t e = out.find_first_of("&#", v);
      out.replace(v, (e == std::string::npos ? out.size() : e) - v, "***");
    }
    return out;
  }
  // key=value form: password = 'quoted value' or password=word
  for (std::size_t p = out.find("password"); p != std::string::npos; p = out.find("password", p + 1)) {
    if (p > 0 && out[p - 1] != ' ' && out[p - 1] != '\t') continue;
    std::size_t q = p + 8;
    while (q < out.size() && (out[q] == ' ' || out[q] == '\t')) ++q;
    if (q >= out.size() || out[q] != '=') continue;
    ++q;
    while (q < out.size() && (out[q] == ' ' || out[q] == '\t')) ++q;
    std::size_t e = q;
    if (e < out.size() && out[e] == '\'') {
      ++e;
      while (e < out.size() && out[e] != '\'') e += out[e] == '\\' ? 2 : 1;
      e = std::min(e + 1, out.size());
    } else {
      while (e < out.size() && out[e] != ' ' && out[e] != '\t') ++e;
    }
    out.replace(q, e - q, "***");
  }
  return out;
}

}  // namespace kv
