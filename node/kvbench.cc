// kvbench: load for a cluster of kvnodes, in the manner of redis-benchmark. Many RESP connections,
// spread over the nodes, run a closed loop of GETs and SETs with a fixed pipeline depth, all on
// one thread with one io_context, so the numbers measure the servers and not a harness contending
// with itself. It reports throughput and latency percentiles per operation; with --route it sends
// each key to its first replica, as a ring-aware client would; with --verify it checks every GET
// against the SETs it made, which turns a load test into a coarse consistency test of a live
// cluster. Any Redis-protocol server will do as a target (redis-server, to calibrate).
#include <algorithm>
#include <array>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <deque>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/json.hpp>
#include <boost/program_options.hpp>

#include "core/parse.h"
#include "net/host_port.h"
#include "node/bench_client.h"

namespace kv::bench {
namespace {

namespace asio = boost::asio;
namespace po = boost::program_options;
using tcp = asio::ip::tcp;

constexpr std::size_t clients_max = 10000;
// Every request keeps its latency (8 bytes) and, with --verify, every SET its record (24 bytes):
// this bounds both to a few GB.
constexpr std::uint64_t requests_max = 100'000'000;
constexpr double duration_s_max = 7 * 24 * 3600.0;
constexpr std::size_t key_bytes_max = 1024;
constexpr std::size_t value_bytes_max = 16u << 20;
constexpr std::uint64_t keyspace_max = 100'000'000;
// kvnode's RESP server stops reading a connection past 1024 requests in flight.
constexpr std::size_t pipeline_max = 1024;
constexpr std::uint64_t timeout_ms_max = 3'600'000;
constexpr std::size_t error_types_max = 32;
constexpr auto tick_interval = std::chrono::milliseconds(100);
constexpr auto progress_interval = std::chrono::seconds(1);
constexpr auto cluster_fetch_timeout = std::chrono::milliseconds(5000);

constexpr unsigned help_width_chars = 100;

constexpr const char* usage_text = R"(kvbench: load for a kvnode cluster (or any Redis-protocol server), like redis-benchmark.
Connections run a closed loop of GET and SET, each keeping --pipeline requests in flight, all
driven by one thread. Prints per-operation throughput and latency percentiles.

usage: kvbench [options]            (flags take "--flag value" or "--flag=value")
)";

constexpr const char* usage_footer = R"(Latency runs from the write of a request to the parse of its reply, error replies included.
Errors are counted by kind: a server error reply by its first word (-ERR, -QUORUM, -TIMEOUT),
and requests lost with their connection (which reconnects after 100 ms) by the reason.

exit codes: 0 done; 1 a --verify mismatch, or errors above --max-error-ratio; 2 usage;
            3 no target reachable at the start (or none for --timeout-ms during the run)

example: kvbench --targets 127.0.0.1:6381,127.0.0.1:6382,127.0.0.1:6383 --route --verify \
                 --clients 30 --pipeline 4 --duration-s 20 --requests 10000000
)";

constexpr const char* targets_default = "127.0.0.1:6381,127.0.0.1:6382,127.0.0.1:6383";
constexpr const char* http_default = "127.0.0.1:8001,127.0.0.1:8002,127.0.0.1:8003";

struct Options {
  std::vector<HostPort> targets;
  std::vector<HostPort> http;
  bool http_given = false;
  std::size_t clients = 50;
  std::uint64_t requests = 100000;
  std::optional<double> duration_s;
  std::size_t key_bytes = 16;
  std::size_t value_bytes = 128;
  std::uint64_t keyspace = 100000;
  double read_ratio = 0.5;
  std::size_t pipeline = 1;
  bool route = false;
  bool verify = false;
  std::uint64_t seed = 1;
  bool json = false;
  bool quiet = false;
  std::optional<double> max_error_ratio;
  std::uint64_t timeout_ms = 10000;
};

// ---- Flags ----

// Every flag's value is read as text and checked here, so that each error names its range.
po::options_description describe_options() {
  const auto text = [](const char* name) { return po::value<std::string>()->value_name(name); };
  po::options_description load("load", help_width_chars, help_width_chars / 2);
  load.add_options()
    ("targets", text("H:P,H:P..."), "RESP addresses (default 127.0.0.1:6381,127.0.0.1:6382,127.0.0.1:6383)")
    ("clients", text("N"), "connections, assigned round-robin to the targets (default 50)")
    ("requests", text("N"), "operations in total (default 100000)")
    ("duration-s", text("S"), "stop issuing after S seconds even if requests remain (default: no cap)")
    ("pipeline", text("P"), "requests in flight per connection, written together (default 1)")
    ("read-ratio", text("F"), "fraction of GETs, 0..1; the rest are SETs (default 0.5)")
    ("keyspace", text("N"), "keys drawn uniformly from N keys (default 100000)")
    ("key-size", text("B"),
     "key length: \"key:\" + the index zero-padded (default 16, as redis-benchmark -r names its keys)")
    ("value-size", text("B"), "SET value length in bytes (default 128)")
    ("seed", text("N"), "seed of the sequence of keys and operations (default 1)")
    ("timeout-ms", text("T"), "a reply (or a connect) overdue by T ms drops its connection (default 10000)");
  po::options_description routing("routing", help_width_chars, help_width_chars / 2);
  routing.add_options()
    ("route", po::bool_switch(),
     "send each request to the first node of its key's preference list, computed with the ring the "
     "nodes report on GET /cluster; if that node's connections are all down, to the next node of "
     "the list. At least one connection per target.")
    ("http", text("H:P,H:P..."),
     "the targets' HTTP addresses, same order as --targets, read for the node behind each target "
     "(default 127.0.0.1:8001,127.0.0.1:8002,127.0.0.1:8003)");
  po::options_description checking("checking", help_width_chars, help_width_chars / 2);
  checking.add_options()
    ("verify", po::bool_switch(),
     "every SET writes a unique value; every GET must return a SET that started before the GET "
     "completed and that no SET superseded (one that started after it was acknowledged and was "
     "acknowledged before the GET started). A SET that failed or lost its connection may or may "
     "not have been applied: GETs may return it from then on. Not-found and values from before "
     "this run are fine until a SET of the key is acknowledged. Needs --value-size of at least 32.")
    ("max-error-ratio", text("F"), "exit 1 if more than this fraction of operations failed");
  po::options_description output("output", help_width_chars, help_width_chars / 2);
  output.add_options()
    ("json", po::bool_switch(), "one JSON object on stdout instead of the table")
    ("quiet", po::bool_switch(), "no progress lines on stderr")
    ("help", "this text (also -h)");
  po::options_description all;
  all.add(load).add(routing).add(checking).add(output);
  return all;
}

template <typename Int>
Expected<Int> parse_whole(std::string_view flag, std::string_view text, Int min, Int max) {
  const auto v = parse_integer<Int>(text);
  if (!v || *v < min || *v > max) {
    return invalid_input(std::string(flag) + " takes a whole number from " + std::to_string(min) +
                         " to " + std::to_string(max) + ", got '" + std::string(text) + "'");
  }
  return *v;
}

Expected<double> parse_real(std::string_view flag, std::string_view text, double min, double max) {
  double v = 0;
  const auto r = std::from_chars(text.data(), text.data() + text.size(), v);
  if (text.empty() || r.ec != std::errc() || r.ptr != text.data() + text.size() || !(v >= min && v <= max)) {
    std::ostringstream s;
    s << flag << " takes a number from " << min << " to " << max << ", got '" << text << "'";
    return invalid_input(s.str());
  }
  return v;
}

// Addresses to connect to: host:port as everywhere else, and a port that is not 0.
Expected<std::vector<HostPort>> parse_addresses(std::string_view flag, std::string_view text) {
  auto parsed = parse_host_port_list(text);
  if (!parsed) return invalid_input(std::string(flag) + ": " + parsed.error().detail);
  for (const HostPort& a : parsed.value()) {
    if (a.port == 0) {
      return invalid_input(std::string(flag) + ": port 0 in '" + a.to_string() + "' cannot be connected to");
    }
  }
  return parsed;
}

constexpr std::array<std::string_view, 13> valued_flags = {
    "--targets",  "--http",     "--clients",  "--requests", "--duration-s",      "--key-size",  "--value-size",
    "--keyspace", "--read-ratio", "--pipeline", "--seed",     "--max-error-ratio", "--timeout-ms"};

// Applies one flag that takes a value (one of valued_flags).
Expected<void> apply_valued_flag(std::string_view flag, std::string_view v, Options& o) {
  if (flag == "--targets") {
    BOOST_OUTCOME_TRY(o.targets, parse_addresses(flag, v));
  } else if (flag == "--http") {
    o.http_given = true;
    BOOST_OUTCOME_TRY(o.http, parse_addresses(flag, v));
  } else if (flag == "--clients") {
    BOOST_OUTCOME_TRY(o.clients, parse_whole<std::size_t>(flag, v, 1, clients_max));
  } else if (flag == "--requests") {
    BOOST_OUTCOME_TRY(o.requests, parse_whole<std::uint64_t>(flag, v, 1, requests_max));
  } else if (flag == "--duration-s") {
    BOOST_OUTCOME_TRY(o.duration_s, parse_real(flag, v, 0.001, duration_s_max));
  } else if (flag == "--key-size") {
    BOOST_OUTCOME_TRY(o.key_bytes, parse_whole<std::size_t>(flag, v, 1, key_bytes_max));
  } else if (flag == "--value-size") {
    BOOST_OUTCOME_TRY(o.value_bytes, parse_whole<std::size_t>(flag, v, 1, value_bytes_max));
  } else if (flag == "--keyspace") {
    BOOST_OUTCOME_TRY(o.keyspace, parse_whole<std::uint64_t>(flag, v, 1, keyspace_max));
  } else if (flag == "--read-ratio") {
    BOOST_OUTCOME_TRY(o.read_ratio, parse_real(flag, v, 0, 1));
  } else if (flag == "--pipeline") {
    BOOST_OUTCOME_TRY(o.pipeline, parse_whole<std::size_t>(flag, v, 1, pipeline_max));
  } else if (flag == "--seed") {
    BOOST_OUTCOME_TRY(o.seed, parse_whole<std::uint64_t>(flag, v, 0, UINT64_MAX));
  } else if (flag == "--max-error-ratio") {
    BOOST_OUTCOME_TRY(o.max_error_ratio, parse_real(flag, v, 0, 1));
  } else if (flag == "--timeout-ms") {
    BOOST_OUTCOME_TRY(o.timeout_ms, parse_whole<std::uint64_t>(flag, v, 1, timeout_ms_max));
  }
  return outcome::success();
}

std::size_t decimal_digits(std::uint64_t n) {
  std::size_t digits = 1;
  for (; n >= 10; n /= 10) ++digits;
  return digits;
}

// Checks that hold between flags.
Expected<void> check_options(Options& o) {
  const std::size_t key_bytes_min = key_name_prefix.size() + decimal_digits(o.keyspace - 1);
  if (o.key_bytes < key_bytes_min) {
    return invalid_input("--key-size " + std::to_string(o.key_bytes) + " is too short for --keyspace " +
                         std::to_string(o.keyspace) + " (keys need " + std::to_string(key_bytes_min) +
                         " bytes)");
  }
  if (o.verify && o.value_bytes < Verifier::value_bytes_min) {
    return invalid_input("--verify needs --value-size of at least " + std::to_string(Verifier::value_bytes_min));
  }
  if (o.http_given && !o.route) return invalid_input("--http is only read with --route");
  if (o.route && o.http.size() != o.targets.size()) {
    return invalid_input("--route needs one --http address per target (" + std::to_string(o.http.size()) +
                         " for " + std::to_string(o.targets.size()) + " targets)");
  }
  if (o.route) o.clients = std::max(o.clients, o.targets.size());
  return outcome::success();
}

// The flags on the command line. Long options only (-h is found before), no abbreviations: a new
// flag never changes what an existing command line means.
Expected<po::variables_map> read_flags(int argc, char** argv, const po::options_description& options) {
  namespace style = po::command_line_style;
  po::variables_map vm;
  try {
    const po::parsed_options parsed =
        po::command_line_parser(argc, argv)
            .options(options)
            .style(style::allow_long | style::long_allow_adjacent | style::long_allow_next)
            .run();
    // Without a positional description the parser hands words back unnamed.
    for (const po::option& opt : parsed.options) {
      if (opt.position_key < 0 || opt.value.empty()) continue;
      const std::string& word = opt.value.front();
      return invalid_input("unknown " + std::string(word.starts_with("-") ? "flag" : "argument") + " '" + word +
                           "'");
    }
    po::store(parsed, vm);
  } catch (const po::error& e) {
    return invalid_input(e.what());
  }
  return vm;
}

Expected<void> apply_flags(int argc, char** argv, const po::options_description& options, Options& o) {
  BOOST_OUTCOME_TRY(const po::variables_map vm, read_flags(argc, argv, options));
  for (const std::string_view flag : valued_flags) {
    const std::string name(flag.substr(2));
    if (vm.count(name)) {
      BOOST_OUTCOME_TRY(apply_valued_flag(flag, vm[name].as<std::string>(), o));
    }
  }
  o.route = vm["route"].as<bool>();
  o.verify = vm["verify"].as<bool>();
  o.json = vm["json"].as<bool>();
  o.quiet = vm["quiet"].as<bool>();
  return check_options(o);
}

// Returns nullopt to go on, else the exit code (0 after --help, 2 after a usage error).
std::optional<int> parse_args(int argc, char** argv, Options& o) {
  o.targets = parse_host_port_list(targets_default).value();
  o.http = parse_host_port_list(http_default).value();
  const po::options_description options = describe_options();
  // Help wins over everything else on the line, mistakes included.
  for (int i = 1; i < argc; ++i) {
    if (std::string_view(argv[i]) == "-h" || std::string_view(argv[i]) == "--help") {
      std::cout << usage_text << options << "\n" << usage_footer;
      return 0;
    }
  }
  const Expected<void> applied = apply_flags(argc, argv, options, o);
  if (applied) return std::nullopt;
  std::cerr << "kvbench: " << applied.error().detail << " (see kvbench --help)\n";
  return 2;
}

// ---- Statistics ----

struct OpStats {
  std::uint64_t count = 0;   // finished: replied (with a value or an error) or lost
  std::uint64_t errors = 0;
  std::vector<std::uint64_t> latency_ns;  // every reply's; sorted by summarize()
};

struct LatencySummary {
  double p50_ms = 0, p95_ms = 0, p99_ms = 0, p999_ms = 0, max_ms = 0, mean_ms = 0;
};

// Exact nearest-rank percentiles; nullopt without samples. Sorts `samples`.
std::optional<LatencySummary> summarize(std::vector<std::uint64_t>& samples) {
  if (samples.empty()) return std::nullopt;
  LatencySummary s;
  std::sort(samples.begin(), samples.end());
  const auto at = [&](double q) {
    const auto rank = static_cast<std::size_t>(std::ceil(q * static_cast<double>(samples.size())));
    return static_cast<double>(samples[std::clamp<std::size_t>(rank, 1, samples.size()) - 1]) / 1e6;
  };
  s.p50_ms = at(0.50);
  s.p95_ms = at(0.95);
  s.p99_ms = at(0.99);
  s.p999_ms = at(0.999);
  s.max_ms = static_cast<double>(samples.back()) / 1e6;
  double sum = 0;
  for (const auto v : samples) sum += static_cast<double>(v);
  s.mean_ms = sum / static_cast<double>(samples.size()) / 1e6;
  return s;
}

// ---- The driver ----

enum class Outcome : std::uint8_t { done, unreachable };

// Owns the connections and decides what each sends. All of it runs on the io_context's thread.
class Bench final : public ConnectionOwner {
 public:
  Bench(const Options& options, asio::io_context& io, std::vector<std::vector<tcp::endpoint>> endpoints,
        std::optional<Router> router, const std::string& run_id);

  Outcome run();

  const Options& options() const { return o_; }
  bool started() const { return started_; }
  double wall_s() const { return std::chrono::duration<double>(end_ - start_).count(); }
  std::array<OpStats, op_kind_count>& stats() { return stats_; }
  const std::map<std::string, std::uint64_t>& error_types() const { return error_types_; }
  const Verifier* verifier() const { return verifier_ ? &*verifier_ : nullptr; }
  const std::vector<std::string>& connect_errors() const { return connect_errors_; }
  std::uint64_t connects() const { return connects_; }
  std::uint64_t connect_failures() const { return connect_failures_; }
  std::uint64_t drops() const {
    std::uint64_t n = 0;
    for (const auto& c : connections_) n += c->drops();
    return n;
  }

  void on_connect_result(Connection& c, const std::string& error) override;
  void on_send(Connection& c, Request& request, std::string& out) override;
  void on_reply(Connection& c, const Request& request, const RespReply& reply) override;
  void on_lost(Connection& c, const Request& request, std::string_view reason) override;
  void on_unsent(Connection& c, std::vector<Op>& ops) override;
  void on_slots_free(Connection& c) override { pump(c); }

 private:
  bool issuing() const { return started_ && !stopping_ && !finished_; }
  bool next_op(Op& op);
  void pump(Connection& c);
  void pump_all();
  void pump_routed(Connection& c);
  bool route(const Op& op);
  Connection* free_connection(std::size_t target) const;
  bool target_live(std::size_t target) const;
  void count_error(OpStats& stats, std::string type);
  void on_tick();
  void check_connections(Clock::time_point now);
  void print_progress(Clock::time_point now);
  void stop_issuing();
  void maybe_finish();
  void finish(Outcome outcome);
  void arm_tick();

  Options o_;
  asio::io_context& io_;
  asio::steady_timer tick_timer_;
  Workload workload_;
  std::optional<Router> router_;
  std::optional<Verifier> verifier_;
  std::vector<std::unique_ptr<Connection>> connections_;
  std::vector<std::vector<Connection*>> by_target_;
  // --route: ops whose target's connections are all busy, at most pipeline x its connections.
  std::vector<std::deque<Op>> waiting_;
  std::deque<Op> retry_;  // ops handed back unsent by a connection that went away
  std::uint64_t remaining_ = 0;  // ops the workload has yet to produce
  std::size_t first_attempts_left_ = 0;
  std::vector<bool> first_attempt_done_;
  bool started_ = false, stopping_ = false, finished_ = false;
  Outcome outcome_ = Outcome::done;
  Clock::time_point start_, end_, last_progress_, none_connected_since_;
  std::uint64_t finished_at_last_progress_ = 0;
  bool none_connected_ = false;
  std::array<OpStats, op_kind_count> stats_;
  std::map<std::string, std::uint64_t> error_types_;
  std::vector<std::string> connect_errors_;
  std::uint64_t connects_ = 0, connect_failures_ = 0;
  std::string key_, value_, filler_;
  std::vector<std::size_t> route_targets_;
  std::vector<Connection*> touched_;
};

Bench::Bench(const Options& options, asio::io_context& io, std::vector<std::vector<tcp::endpoint>> endpoints,
             std::optional<Router> router, const std::string& run_id)
    : o_(options),
      io_(io),
      tick_timer_(io),
      workload_(options.seed, options.keyspace, options.read_ratio),
      router_(std::move(router)),
      by_target_(endpoints.size()),
      waiting_(endpoints.size()),
      remaining_(options.requests),
      filler_(options.value_bytes, 'x') {
  if (o_.verify) verifier_.emplace(static_cast<std::uint32_t>(o_.keyspace), run_id, o_.value_bytes);
  for (std::size_t i = 0; i < o_.clients; ++i) {
    const std::size_t target = i % endpoints.size();
    connections_.push_back(std::make_unique<Connection>(io, *this, target, endpoints[target], o_.pipeline));
    by_target_[target].push_back(connections_.back().get());
  }
  first_attempt_done_.assign(connections_.size(), false);
  first_attempts_left_ = connections_.size();
}

Outcome Bench::run() {
  for (auto& c : connections_) c->connect();
  arm_tick();
  io_.run();
  return outcome_;
}

void Bench::arm_tick() {
  tick_timer_.expires_after(tick_interval);
  tick_timer_.async_wait([this](const boost::system::error_code& ec) {
    if (!ec && !finished_) on_tick();
  });
}

void Bench::on_connect_result(Connection& c, const std::string& error) {
  error.empty() ? ++connects_ : ++connect_failures_;
  if (started_) return;
  const auto index = static_cast<std::size_t>(
      std::find_if(connections_.begin(), connections_.end(), [&](const auto& p) { return p.get() == &c; }) -
      connections_.begin());
  if (first_attempt_done_[index]) return;
  first_attempt_done_[index] = true;
  if (!error.empty() && connect_errors_.size() < o_.targets.size()) {
    connect_errors_.push_back(o_.targets[c.target()].to_string() + ": " + error);
  }
  if (--first_attempts_left_ > 0) return;
  // Every connection has tried once: the clock starts now, with whatever is up.
  if (connects_ == 0) {
    finish(Outcome::unreachable);
    return;
  }
  started_ = true;
  start_ = last_progress_ = Clock::now();
  pump_all();
}

bool Bench::next_op(Op& op) {
  if (!retry_.empty()) {
    op = retry_.front();
    retry_.pop_front();
    return true;
  }
  if (remaining_ == 0) return false;
  --remaining_;
  op = workload_.next();
  return true;
}

void Bench::pump(Connection& c) {
  if (!issuing()) return;
  if (router_) {
    pump_routed(c);
    return;
  }
  Op op;
  while (c.free_slots() > 0 && next_op(op)) c.enqueue(op);
  c.flush();
}

void Bench::pump_all() {
  for (auto& c : connections_) {
    if (c->free_slots() > 0) pump(*c);
  }
}

// Fills `c` first from its target's waiting ops, then with new ops, each routed to its own
// target: ops for other targets go to their free connections or wait for one.
void Bench::pump_routed(Connection& c) {
  auto& waiting = waiting_[c.target()];
  while (c.free_slots() > 0 && !waiting.empty()) {
    c.enqueue(waiting.front());
    waiting.pop_front();
  }
  touched_.assign(1, &c);
  Op op;
  // Stops when `c` is full, or when some target's waiting ops reach their bound: generating
  // more would only queue them, and a reply from that target will pump again.
  while (c.free_slots() > 0 && next_op(op) && route(op)) {
  }
  for (Connection* t : touched_) t->flush();
}

// Sends `op` to the first target on its preference list that has a live connection: to a free
// connection of it, else to its waiting queue. Returns false if nothing more should be routed now.
bool Bench::route(const Op& op) {
  key_name(op.key, o_.key_bytes, key_);
  router_->targets_for(key_, route_targets_);
  const auto live = std::find_if(route_targets_.begin(), route_targets_.end(),
                                 [this](std::size_t t) { return target_live(t); });
  if (live == route_targets_.end()) {
    retry_.push_front(op);  // nothing is up; a reconnect pumps again
    return false;
  }
  if (Connection* free = free_connection(*live)) {
    free->enqueue(op);
    if (std::find(touched_.begin(), touched_.end(), free) == touched_.end()) touched_.push_back(free);
    return true;
  }
  waiting_[*live].push_back(op);
  return waiting_[*live].size() < o_.pipeline * by_target_[*live].size();
}

Connection* Bench::free_connection(std::size_t target) const {
  for (Connection* c : by_target_[target]) {
    if (c->free_slots() > 0) return c;
  }
  return nullptr;
}

bool Bench::target_live(std::size_t target) const {
  return std::any_of(by_target_[target].begin(), by_target_[target].end(),
                     [](const Connection* c) { return c->connected(); });
}

void Bench::on_send(Connection&, Request& request, std::string& out) {
  request.sent = Clock::now();
  key_name(request.op.key, o_.key_bytes, key_);
  if (request.op.kind == OpKind::get) {
    if (verifier_) request.check = verifier_->get_invoked(request.op.key);
    append_command(out, {"GET", key_});
    return;
  }
  if (!verifier_) {
    append_command(out, {"SET", key_, filler_});
    return;
  }
  request.check = verifier_->set_invoked(request.op.key);
  value_.clear();
  verifier_->append_value(request.check, value_);
  append_command(out, {"SET", key_, value_});
}

void Bench::on_reply(Connection&, const Request& request, const RespReply& reply) {
  OpStats& stats = stats_[static_cast<std::size_t>(request.op.kind)];
  ++stats.count;
  stats.latency_ns.push_back(static_cast<std::uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - request.sent).count()));
  if (reply.type == RespReplyType::error) {
    // "-QUORUM only 1 of 2 replicas answered" counts as -QUORUM. A SET that failed stays
    // unacknowledged for --verify: it may have reached some replicas.
    const auto word = reply.text.substr(0, reply.text.find(' '));
    count_error(stats, "-" + std::string(word.empty() ? "(empty error)" : word));
  } else if (request.op.kind == OpKind::get) {
    if (reply.type != RespReplyType::bulk && reply.type != RespReplyType::null) {
      count_error(stats, "unexpected GET reply");
    } else if (verifier_) {
      key_name(request.op.key, o_.key_bytes, key_);
      const auto value = reply.type == RespReplyType::bulk ? std::optional(reply.text) : std::nullopt;
      verifier_->get_completed(request.op.key, request.check, value, key_);
    }
  } else if (reply.type != RespReplyType::simple) {
    count_error(stats, "unexpected SET reply");
  } else if (verifier_) {
    verifier_->set_acknowledged(request.check);
  }
  maybe_finish();
}

void Bench::on_lost(Connection&, const Request& request, std::string_view reason) {
  // A lost SET stays unacknowledged for --verify: it may or may not have been applied.
  OpStats& stats = stats_[static_cast<std::size_t>(request.op.kind)];
  ++stats.count;
  count_error(stats, "lost: " + std::string(reason));
  maybe_finish();
}

void Bench::count_error(OpStats& stats, std::string type) {
  ++stats.errors;
  if (error_types_.size() >= error_types_max && !error_types_.contains(type)) type = "(other)";
  ++error_types_[type];
}

void Bench::on_unsent(Connection&, std::vector<Op>& ops) {
  if (!issuing()) return;
  retry_.insert(retry_.begin(), ops.begin(), ops.end());
  pump_all();
}

void Bench::on_tick() {
  const auto now = Clock::now();
  check_connections(now);
  if (finished_) return;
  if (started_ && !stopping_ && o_.duration_s && std::chrono::duration<double>(now - start_).count() >= *o_.duration_s) {
    stop_issuing();
  }
  if (started_ && !o_.quiet && now - last_progress_ >= progress_interval) print_progress(now);
  maybe_finish();
  if (!finished_) arm_tick();
}

// Timeouts, the waiting ops of targets that went down, and giving up when nothing is up.
void Bench::check_connections(Clock::time_point now) {
  const auto timeout = std::chrono::milliseconds(o_.timeout_ms);
  for (auto& c : connections_) c->enforce_timeout(now, timeout);
  if (!started_) return;
  bool moved = false;
  for (std::size_t t = 0; t < waiting_.size(); ++t) {
    if (!waiting_[t].empty() && !target_live(t)) {
      retry_.insert(retry_.end(), waiting_[t].begin(), waiting_[t].end());
      waiting_[t].clear();
      moved = true;
    }
  }
  if (moved) pump_all();
  const bool any = std::any_of(connections_.begin(), connections_.end(), [](const auto& c) { return c->connected(); });
  if (any || finished_) {
    none_connected_ = false;
  } else if (!none_connected_) {
    none_connected_ = true;
    none_connected_since_ = now;
  } else if (now - none_connected_since_ > timeout) {
    finish(Outcome::unreachable);
  }
}

void Bench::print_progress(Clock::time_point now) {
  const std::uint64_t finished = stats_[0].count + stats_[1].count;
  const double rate = static_cast<double>(finished - finished_at_last_progress_) /
                      std::chrono::duration<double>(now - last_progress_).count();
  const auto up = std::count_if(connections_.begin(), connections_.end(), [](const auto& c) { return c->connected(); });
  std::ostringstream line;
  line.setf(std::ios::fixed);
  line.precision(1);
  line << "kvbench: " << std::chrono::duration<double>(now - start_).count() << " s, " << finished << " done, "
       << rate << " ops/s now, " << stats_[0].errors + stats_[1].errors << " errors, " << up << "/"
       << connections_.size() << " connected";
  if (verifier_) line << ", " << verifier_->mismatches() << " mismatches";
  std::cerr << line.str() << "\n";
  last_progress_ = now;
  finished_at_last_progress_ = finished;
}

void Bench::stop_issuing() {
  stopping_ = true;
  retry_.clear();
  for (auto& w : waiting_) w.clear();
  for (auto& c : connections_) c->discard_queued();
  maybe_finish();
}

void Bench::maybe_finish() {
  if (!started_ || finished_) return;
  if (!stopping_ && (remaining_ > 0 || !retry_.empty())) return;
  for (const auto& w : waiting_) {
    if (!w.empty()) return;
  }
  for (const auto& c : connections_) {
    if (c->outstanding() > 0) return;
  }
  finish(Outcome::done);
}

void Bench::finish(Outcome outcome) {
  if (finished_) return;
  finished_ = true;
  outcome_ = outcome;
  end_ = Clock::now();
  if (!started_) start_ = end_;
  // Closing sockets and cancelling timers would need the loop to run their handlers; stopping it
  // is enough, as nothing outlives the run.
  io_.stop();
}

// ---- Results ----

struct OpReport {
  std::string name;
  std::uint64_t count = 0;
  std::uint64_t errors = 0;
  double ops_per_s = 0;
  std::optional<LatencySummary> latency;  // nullopt: no replies
};

std::vector<OpReport> make_reports(Bench& bench) {
  auto& stats = bench.stats();
  const double wall_s = std::max(bench.wall_s(), 1e-9);
  std::vector<OpReport> reports;
  OpStats total;
  for (std::size_t k = 0; k < op_kind_count; ++k) {
    total.count += stats[k].count;
    total.errors += stats[k].errors;
    total.latency_ns.insert(total.latency_ns.end(), stats[k].latency_ns.begin(), stats[k].latency_ns.end());
  }
  const auto add = [&](std::string name, OpStats& s) {
    reports.push_back(OpReport{std::move(name), s.count, s.errors, static_cast<double>(s.count) / wall_s,
                               summarize(s.latency_ns)});
  };
  add("GET", stats[static_cast<std::size_t>(OpKind::get)]);
  add("SET", stats[static_cast<std::size_t>(OpKind::set)]);
  add("total", total);
  return reports;
}

int exit_code_for(const Bench& bench, const OpReport& total) {
  if (bench.verifier() && bench.verifier()->mismatches() > 0) return 1;
  const auto& ratio = bench.options().max_error_ratio;
  if (ratio && total.count > 0 && static_cast<double>(total.errors) / static_cast<double>(total.count) > *ratio) return 1;
  return 0;
}

std::string join_targets(const std::vector<HostPort>& targets) {
  std::string s;
  for (const auto& t : targets) s += (s.empty() ? "" : ",") + t.to_string();
  return s;
}

void print_text(const Bench& bench, const std::vector<OpReport>& reports, int exit_code) {
  const Options& o = bench.options();
  std::printf("kvbench: %s | %zu clients, pipeline %zu%s | %llu requests%s | %.0f%% GET | keys %zu B over %llu | values %zu B\n",
              join_targets(o.targets).c_str(), o.clients, o.pipeline, o.route ? ", routed" : "",
              static_cast<unsigned long long>(o.requests), o.duration_s ? " (capped in time)" : "",
              o.read_ratio * 100, o.key_bytes, static_cast<unsigned long long>(o.keyspace), o.value_bytes);
  std::printf("%-6s %10s %8s %12s %9s %9s %9s %9s %9s\n", "op", "count", "errors", "ops/s", "p50 ms", "p95 ms",
              "p99 ms", "p99.9 ms", "max ms");
  for (const auto& r : reports) {
    std::printf("%-6s %10llu %8llu %12.1f", r.name.c_str(), static_cast<unsigned long long>(r.count),
                static_cast<unsigned long long>(r.errors), r.ops_per_s);
    if (const auto& l = r.latency) {
      std::printf(" %9.3f %9.3f %9.3f %9.3f %9.3f\n", l->p50_ms, l->p95_ms, l->p99_ms, l->p999_ms, l->max_ms);
    } else {
      std::printf(" %9s %9s %9s %9s %9s\n", "-", "-", "-", "-", "-");
    }
  }
  std::printf("wall time %.3f s; connections: %llu opened, %llu failed attempts, %llu dropped\n", bench.wall_s(),
              static_cast<unsigned long long>(bench.connects()), static_cast<unsigned long long>(bench.connect_failures()),
              static_cast<unsigned long long>(bench.drops()));
  for (const auto& [type, n] : bench.error_types()) std::printf("errors: %-40s %llu\n", type.c_str(), static_cast<unsigned long long>(n));
  if (const Verifier* v = bench.verifier()) {
    std::printf("verify: %llu GETs checked, %llu mismatches (%llu saw the prior state)\n",
                static_cast<unsigned long long>(v->checked()), static_cast<unsigned long long>(v->mismatches()),
                static_cast<unsigned long long>(v->prior_state_reads()));
    for (const auto& m : v->first_mismatches()) std::printf("  %s\n", m.c_str());
  }
  std::printf("exit code %d\n", exit_code);
}

boost::json::object options_json(const Options& o) {
  boost::json::array targets;
  for (const auto& t : o.targets) targets.emplace_back(t.to_string());
  return {{"targets", std::move(targets)}, {"clients", o.clients}, {"pipeline", o.pipeline},
          {"requests", o.requests}, {"duration_s", o.duration_s ? boost::json::value(*o.duration_s) : nullptr},
          {"read_ratio", o.read_ratio}, {"keyspace", o.keyspace}, {"key_size", o.key_bytes},
          {"value_size", o.value_bytes}, {"seed", o.seed}, {"route", o.route}, {"verify", o.verify}};
}

boost::json::object op_json(const OpReport& r) {
  boost::json::value latency = nullptr;
  if (const auto& l = r.latency) {
    latency = {{"p50", l->p50_ms}, {"p95", l->p95_ms},   {"p99", l->p99_ms},
               {"p99_9", l->p999_ms}, {"max", l->max_ms}, {"mean", l->mean_ms}};
  }
  return {{"count", r.count}, {"errors", r.errors}, {"ops_per_s", r.ops_per_s}, {"latency_ms", std::move(latency)}};
}

// reports: GET, SET, total, as make_reports() gives them.
void print_json(const Bench& bench, const std::vector<OpReport>& reports, int exit_code) {
  boost::json::object errors;
  for (const auto& [type, n] : bench.error_types()) errors[type] = n;
  boost::json::value verify = nullptr;
  if (const Verifier* v = bench.verifier()) {
    boost::json::array first;
    for (const auto& m : v->first_mismatches()) first.emplace_back(m);
    verify = {{"checked", v->checked()}, {"mismatches", v->mismatches()},
              {"prior_state_reads", v->prior_state_reads()}, {"first_mismatches", std::move(first)}};
  }
  boost::json::object out{{"options", options_json(bench.options())},
                          {"wall_s", bench.wall_s()},
                          {"get", op_json(reports[0])},
                          {"set", op_json(reports[1])},
                          {"total", op_json(reports[2])},
                          {"errors", std::move(errors)},
                          {"connections", {{"opened", bench.connects()}, {"failed_attempts", bench.connect_failures()},
                                           {"dropped", bench.drops()}}},
                          {"verify", std::move(verify)},
                          {"exit_code", exit_code}};
  std::cout << boost::json::serialize(out) << "\n";
}

// ---- Setting up ----

std::optional<std::vector<std::vector<tcp::endpoint>>> resolve_targets(const std::vector<HostPort>& targets) {
  asio::io_context io;
  tcp::resolver resolver(io);
  std::vector<std::vector<tcp::endpoint>> out;
  for (const auto& t : targets) {
    boost::system::error_code ec;
    const auto results = resolver.resolve(t.host, std::to_string(t.port), ec);
    if (ec || results.empty()) {
      std::cerr << "kvbench: cannot resolve " << t.to_string() << ": " << ec.message() << "\n";
      return std::nullopt;
    }
    out.emplace_back(results.begin(), results.end());
  }
  return out;
}

int run(const Options& o) {
  auto endpoints = resolve_targets(o.targets);
  if (!endpoints) return 3;
  std::optional<Router> router;
  if (o.route) {
    router = learn_routes(o.targets, o.http, cluster_fetch_timeout, !o.quiet, std::cerr);
    if (!router) {
      std::cerr << "kvbench: --route: no node answered GET /cluster\n";
      return 3;
    }
  }
  asio::io_context io;
  Bench bench(o, io, std::move(*endpoints), std::move(router), Verifier::fresh_run_id());
  const Outcome outcome = bench.run();
  if (outcome == Outcome::unreachable && !bench.started()) {
    std::cerr << "kvbench: no target reachable";
    for (const auto& e : bench.connect_errors()) std::cerr << "; " << e;
    std::cerr << "\n";
    return 3;
  }
  if (outcome == Outcome::unreachable) {
    std::cerr << "kvbench: gave up: no target reachable for " << o.timeout_ms << " ms\n";
  }
  const auto reports = make_reports(bench);
  const int code = outcome == Outcome::unreachable ? 3 : exit_code_for(bench, reports.back());
  o.json ? print_json(bench, reports, code) : print_text(bench, reports, code);
  return code;
}

}  // namespace
}  // namespace kv::bench

int main(int argc, char** argv) {
  kv::bench::Options options;
  if (const auto code = kv::bench::parse_args(argc, argv, options)) return *code;
  return kv::bench::run(options);
}
