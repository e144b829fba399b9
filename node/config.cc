// kvnode flags with Boost.ProgramOptions: one table of options, read from the command line and
// then from KV_<FLAG> variables (KV_PEER_ADDR for --peer-addr), so that Docker and Kubernetes
// can configure a node without a command line.
#include "node/config.h"

#include <algorithm>
#include <charconv>
#include <boost/program_options.hpp>
#include <iostream>
#include <limits>

#include "core/parse.h"
#include "core/wal.h"
#include "net/peer_codec.h"
#include "net/resp.h"

#include "node/legacy_bridge.h"
#include "node/pg_bridge.h"

namespace po = boost::program_options;

namespace kv {

namespace {

// `result` with its error's detail prefixed by the flag it came from: "--cluster: ...".
template <class T>
Expected<T> flag_context(std::string_view flag, Expected<T> result) {
  if (!result) return Error{result.error().code, std::string(flag) + ": " + result.error().detail};
  return result;
}

po::options_description describe_options() {
  // Every default is the one the configuration structs hold (ReplicaConfig in core/config.h for
  // the core's knobs): written there once, shown and applied from there.
  const NodeConfig def;
  const ReplicaConfig& rd = def.replica;
  po::options_description d("kvnode options (each also read from KV_<FLAG>, e.g. KV_DATA_DIR)");
  d.add_options()
    ("help,h", "print this help and exit")
    ("id", po::value<std::string>(), "this node's name, n<number> (required), e.g. n1")
    ("cluster", po::value<std::string>(),
     "every member as name@host:port of its peer address, comma-separated, e.g. "
     "n1@127.0.0.1:7001,n2@127.0.0.1:7002,n3@127.0.0.1:7003 (required)")
    ("cluster-id", po::value<std::string>()->default_value(def.cluster_id), "peers with another cluster id are refused")
    ("peer-addr", po::value<std::string>(), "listen address for peers (default: this node's entry in --cluster)")
    ("resp-addr", po::value<std::string>()->default_value(def.resp_addr.to_string()), "Redis protocol listen address")
    ("http-addr", po::value<std::string>()->default_value(def.http_addr.to_string()), "HTTP/JSON listen address")
    ("data-dir", po::value<std::string>()->default_value("./data"), "where the log and snapshot live")
    ("replicas", po::value<std::uint32_t>()->default_value(rd.replicas), "N: copies of every key")
    ("read-quorum", po::value<std::uint32_t>()->default_value(rd.read_quorum), "R: default replies a read waits for")
    ("write-quorum", po::value<std::uint32_t>()->default_value(rd.write_quorum), "W: default acknowledgements a write waits for")
    ("sloppy-quorum", po::value<bool>()->default_value(rd.sloppy_quorum), "count fallback nodes toward W (gives up C4 for availability)")
    ("fsync", po::value<std::string>()->default_value("always"),
     "always: acknowledge only fsynced writes (group commit); batch: fsync every 100 ms, may lose "
     "the last 100 ms of acknowledged writes on power loss; none: never fsync")
    ("vnodes", po::value<std::uint32_t>()->default_value(rd.vnodes_per_node), "virtual nodes per node")
    ("request-timeout-ms", po::value<std::uint64_t>()->default_value(rd.request_timeout_ms), "a client request's deadline")
    ("anti-entropy-interval-ms", po::value<std::string>()->default_value(std::to_string(rd.ae_interval_ms)),
     "how often this node compares the hash trees of its ranges with the next peer in turn and "
     "exchanges the keys that differ; 0: it starts no exchange (it still answers its peers)")
    ("anti-entropy-bytes-per-s", po::value<std::string>()->default_value(std::to_string(rd.ae_bytes_per_s)),
     "bandwidth of the records anti-entropy sends to peers (keys and values); 0: no limit")
    ("tombstone-grace-ms", po::value<std::string>()->default_value(std::to_string(rd.tombstone_grace_ms)),
     "a delete's tombstone is collected once anti-entropy has seen every replica hold it and it "
     "is this old; hints are dropped at half of it. At least twice --request-timeout-ms; clocks "
     "must agree within a quarter of it. 0: keep tombstones forever. Off with PostgreSQL or the "
     "legacy API, or with --sloppy-quorum")
    ("heartbeat-interval-ms", po::value<std::string>()->default_value(std::to_string(rd.heartbeat_interval_ms)),
     "how often this node sends every other member a heartbeat (which also spreads the members "
     "table); 0: no heartbeats, every peer is taken as up")
    ("phi-threshold", po::value<std::string>()->default_value("8"),
     "the failure detector's phi at which a silent peer is taken as down (phi accrual, as "
     "Cassandra's phi_convict_threshold): 8 is about 18 heartbeat intervals of silence; 1 to 100")
    ("snapshot-wal-bytes", po::value<std::uint64_t>()->default_value(def.storage.snapshot_wal_bytes), "snapshot once the log is this long")
    // Limits (README.md, "Limits"): whole numbers, read by apply_limits().
    ("key-bytes-max", po::value<std::string>()->default_value(std::to_string(rd.key_bytes_max)), "largest key accepted")
    ("value-bytes-max", po::value<std::string>()->default_value(std::to_string(rd.value_bytes_max)), "largest value accepted")
    ("frame-bytes-max", po::value<std::string>(),
     "largest peer frame payload sent or accepted (default: 4 MiB + 64 KiB, or --key-bytes-max + "
     "--value-bytes-max + 64 KiB if larger); every node of a cluster should use the same")
    ("resp-array-max", po::value<std::string>()->default_value(std::to_string(def.resp_array_max)), "arguments in one RESP command")
    ("resp-bulk-bytes-max", po::value<std::string>(),
     "largest RESP argument (default: the larger of --key-bytes-max and --value-bytes-max, plus "
     "1 KiB, so that a value slightly too large is refused by name and the connection stays)")
    ("http-header-bytes-max", po::value<std::string>()->default_value(std::to_string(def.http_header_bytes_max)), "HTTP request line and headers")
    ("http-body-bytes-max", po::value<std::string>(),
     "HTTP request body (default: 6 x --value-bytes-max + 1 KiB, room for JSON escapes)")
    ("connections-max", po::value<std::string>()->default_value(std::to_string(def.connections_max)), "client connections, RESP and HTTP each")
    ("requests-in-flight-max", po::value<std::string>()->default_value(std::to_string(rd.requests_in_flight_max)), "client requests the node coordinates at once")
    ("requests-in-flight-per-connection-max", po::value<std::string>()->default_value(std::to_string(def.requests_in_flight_per_connection_max)),
     "requests one RESP connection may have outstanding (pipelining); reading pauses beyond")
    ("idle-timeout-ms", po::value<std::string>()->default_value(std::to_string(def.idle_timeout_ms)), "close a client connection idle this long")
    ("read-timeout-ms", po::value<std::string>()->default_value(std::to_string(def.read_timeout_ms)),
     "close a client connection that leaves a request half-sent this long")
    ("postgres", po::value<std::string>(),
     "PostgreSQL write-through and lookup: a libpq connection string or postgresql:// URL, e.g. "
     "postgresql://kv:secret@127.0.0.1:5432/kv (default: off)")
    ("postgres-mode", po::value<std::string>()->default_value("sync"),
     "sync: a write is acknowledged once W replicas and PostgreSQL have it; async: through a bounded "
     "write-behind queue, coalesced per key and retried")
    ("postgres-table", po::value<std::string>()->default_value(def.pg.table), "the table, created if missing (a plain lowercase identifier)")
    ("postgres-pool", po::value<std::size_t>()->default_value(def.pg.pool), "PostgreSQL connections")
    ("postgres-timeout-ms", po::value<std::uint64_t>()->default_value(def.pg.timeout_ms), "a PostgreSQL call not answered by then fails")
    ("postgres-batch-max", po::value<std::size_t>()->default_value(def.pg.batch_max), "calls pipelined into one round trip and one commit")
    ("postgres-queue-max", po::value<std::size_t>()->default_value(rd.pg_queue_max), "async: keys waiting for PostgreSQL; writes beyond are refused (overloaded)")
    ("legacy-url", po::value<std::string>(),
     "legacy API read-through: a URL template, {key} replaced by the percent-encoded key, e.g. "
     "'http://127.0.0.1:9000/items/{key}' (default: off)")
    ("legacy-field", po::value<std::string>()->default_value(def.legacy.field), "the JSON member of the legacy API's answer holding the value")
    ("legacy-timeout-ms", po::value<std::uint64_t>()->default_value(def.legacy.timeout_ms), "a legacy API call not answered by then fails")
    ("legacy-negative-ttl-ms", po::value<std::uint64_t>()->default_value(rd.legacy_negative_ttl_ms), "how long a legacy not-found is remembered")
    ("legacy-breaker-failures", po::value<std::uint32_t>()->default_value(rd.legacy_breaker_failures), "consecutive legacy API failures that open the circuit breaker")
    ("legacy-breaker-open-ms", po::value<std::uint64_t>()->default_value(rd.legacy_breaker_open_ms), "how long the breaker stays open before one probe");
  return d;
}

// --postgres* and --legacy-*: the bridges' own options and the core's policy for them.
Expected<void> apply_bridge_options(const po::variables_map& vm, NodeConfig& c) {
  ReplicaConfig& r = c.replica;
  const std::string mode = vm["postgres-mode"].as<std::string>();
  if (mode != "sync" && mode != "async") {
    return invalid_input("--postgres-mode must be sync or async, not '" + mode + "'");
  }
  c.pg.table = vm["postgres-table"].as<std::string>();
  c.pg.pool = vm["postgres-pool"].as<std::size_t>();
  c.pg.timeout_ms = vm["postgres-timeout-ms"].as<std::uint64_t>();
  c.pg.batch_max = vm["postgres-batch-max"].as<std::size_t>();
  r.pg_queue_max = vm["postgres-queue-max"].as<std::size_t>();
  if (c.pg.pool < 1 || c.pg.pool > 256) return invalid_input("--postgres-pool must be between 1 and 256");
  if (c.pg.timeout_ms < 10) return invalid_input("--postgres-timeout-ms must be at least 10");
  if (c.pg.batch_max < 1 || c.pg.batch_max > 10000) {
    return invalid_input("--postgres-batch-max must be between 1 and 10000");
  }
  if (r.pg_queue_max < 1) return invalid_input("--postgres-queue-max must be at least 1");
  if (vm.count("postgres") && !vm["postgres"].as<std::string>().empty()) {
    c.pg.url = vm["postgres"].as<std::string>();
    BOOST_OUTCOME_TRY(flag_context("--postgres", validate_pg_url(c.pg.url)));
    BOOST_OUTCOME_TRY(flag_context("--postgres-table", validate_pg_table(c.pg.table)));
    r.pg_mode = mode == "sync" ? PgMode::sync : PgMode::async;
  }
  c.legacy.field = vm["legacy-field"].as<std::string>();
  c.legacy.timeout_ms = vm["legacy-timeout-ms"].as<std::uint64_t>();
  r.legacy_negative_ttl_ms = vm["legacy-negative-ttl-ms"].as<std::uint64_t>();
  r.legacy_breaker_failures = vm["legacy-breaker-failures"].as<std::uint32_t>();
  r.legacy_breaker_open_ms = vm["legacy-breaker-open-ms"].as<std::uint64_t>();
  if (c.legacy.field.empty()) return invalid_input("--legacy-field must not be empty");
  if (c.legacy.timeout_ms < 10) return invalid_input("--legacy-timeout-ms must be at least 10");
  if (r.legacy_breaker_failures < 1) return invalid_input("--legacy-breaker-failures must be at least 1");
  if (r.legacy_breaker_open_ms < 1) return invalid_input("--legacy-breaker-open-ms must be at least 1");
  if (vm.count("legacy-url") && !vm["legacy-url"].as<std::string>().empty()) {
    c.legacy.url_template = vm["legacy-url"].as<std::string>();
    BOOST_OUTCOME_TRY(
        flag_context("--legacy-url", validate_legacy_url_template(c.legacy.url_template)));
    r.legacy = true;
  }
  return outcome::success();
}

// A limit flag's value: digits only (Boost would read "-1" as the largest unsigned number) and
// within [lo, hi]; `why` is added to the error when there is one. Leaves `out` alone when the
// flag is absent and has no default.
template <class T>
Expected<void> read_limit(const po::variables_map& vm, const std::string& flag, std::uint64_t lo,
                          std::uint64_t hi, T& out, std::string_view why = {}) {
  if (!vm.count(flag)) return outcome::success();
  const std::string text = vm[flag].as<std::string>();
  const auto v = parse_integer<std::uint64_t>(text);
  if (!v || *v < lo || *v > hi) {
    return invalid_input("--" + flag + " must be a whole number from " + std::to_string(lo) +
                         " to " + std::to_string(hi) + ", got '" + text + "'" +
                         (why.empty() ? "" : " (" + std::string(why) + ")"));
  }
  out = static_cast<T>(*v);
  return outcome::success();
}

// Every limit flag, with the checks between them: what could never work (a zero limit, a frame
// too small for the largest write, a key and value that the log cannot hold) is refused here
// rather than found out by a client.
Expected<void> apply_limits(const po::variables_map& vm, NodeConfig& c) {
  constexpr std::uint64_t any = std::numeric_limits<std::size_t>::max();
  constexpr std::uint64_t envelope = peer_frame_envelope_bytes;  // a key and value's fields
  constexpr std::uint64_t timeout_ms_max = 7ull * 24 * 3600 * 1000;  // a week
  ReplicaConfig& r = c.replica;
  constexpr std::uint64_t record_max = wal_payload_bytes_max - envelope;  // a log record's data
  BOOST_OUTCOME_TRY(read_limit(vm, "key-bytes-max", 1, record_max - 1, r.key_bytes_max));
  BOOST_OUTCOME_TRY(read_limit(vm, "value-bytes-max", 1, record_max - 1, r.value_bytes_max));
  if (r.key_bytes_max + r.value_bytes_max > record_max) {
    return invalid_input("--key-bytes-max + --value-bytes-max must be at most " +
                         std::to_string(record_max) + " (a log record holds both)");
  }
  const std::size_t largest = std::max(r.key_bytes_max, r.value_bytes_max);
  c.frame_bytes_max = peer_frame_bytes_max_for(r.key_bytes_max, r.value_bytes_max);
  BOOST_OUTCOME_TRY(read_limit(vm, "frame-bytes-max", r.key_bytes_max + r.value_bytes_max + 1024,
                               std::numeric_limits<std::int32_t>::max(), c.frame_bytes_max,
                               "a write of the largest key and value, plus 1 KiB, must fit in a frame"));
  BOOST_OUTCOME_TRY(read_limit(vm, "resp-array-max", 3, any, c.resp_array_max, "SET key value takes 3"));
  c.resp_bulk_bytes_max = largest + 1024;
  BOOST_OUTCOME_TRY(read_limit(vm, "resp-bulk-bytes-max", largest, RespLimits{}.command_bytes_max,
                               c.resp_bulk_bytes_max,
                               "at least the larger of --key-bytes-max and --value-bytes-max"));
  BOOST_OUTCOME_TRY(read_limit(vm, "http-header-bytes-max", 512,
                               std::numeric_limits<std::uint32_t>::max(), c.http_header_bytes_max));
  c.http_body_bytes_max = r.value_bytes_max * 6 + 1024;
  BOOST_OUTCOME_TRY(read_limit(vm, "http-body-bytes-max", r.value_bytes_max, 1ull << 30,
                               c.http_body_bytes_max, "at least --value-bytes-max"));
  BOOST_OUTCOME_TRY(read_limit(vm, "connections-max", 1, any, c.connections_max));
  BOOST_OUTCOME_TRY(read_limit(vm, "requests-in-flight-max", 1, any, r.requests_in_flight_max));
  BOOST_OUTCOME_TRY(read_limit(vm, "requests-in-flight-per-connection-max", 1, any,
                               c.requests_in_flight_per_connection_max));
  BOOST_OUTCOME_TRY(read_limit(vm, "anti-entropy-interval-ms", 0, timeout_ms_max, r.ae_interval_ms));
  BOOST_OUTCOME_TRY(read_limit(vm, "anti-entropy-bytes-per-s", 0, std::numeric_limits<std::int64_t>::max() / 1000,
                               r.ae_bytes_per_s));
  BOOST_OUTCOME_TRY(read_limit(vm, "tombstone-grace-ms", 0, 52 * timeout_ms_max, r.tombstone_grace_ms));
  if (r.tombstone_grace_ms != 0 && r.tombstone_grace_ms < 2 * r.request_timeout_ms) {
    return invalid_input("--tombstone-grace-ms must be 0 or at least twice --request-timeout-ms (" +
                         std::to_string(2 * r.request_timeout_ms) + "): a write's retries must end "
                         "well before a tombstone it could undo is collected");
  }
  BOOST_OUTCOME_TRY(read_limit(vm, "heartbeat-interval-ms", 0, 60'000, r.heartbeat_interval_ms));
  {
    const std::string text = vm["phi-threshold"].as<std::string>();
    double phi = 0;
    const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), phi);
    if (ec != std::errc{} || end != text.data() + text.size() || !(phi >= 1.0 && phi <= 100.0)) {
      return invalid_input("--phi-threshold must be a number from 1 to 100, got '" + text + "'");
    }
    r.fd_phi_threshold = phi;
  }
  // A key list or want list must fit in a frame, with room for its other fields.
  r.ae_message_bytes_max = std::min<std::size_t>(r.ae_message_bytes_max, c.frame_bytes_max / 2);
  BOOST_OUTCOME_TRY(read_limit(vm, "idle-timeout-ms", 10, timeout_ms_max, c.idle_timeout_ms));
  BOOST_OUTCOME_TRY(read_limit(vm, "read-timeout-ms", 10, timeout_ms_max, c.read_timeout_ms));
  return outcome::success();
}

// --id, --cluster and the listen addresses: IP addresses or host names (listen addresses are
// looked up at start, peers on every connection attempt; see net/host_port.h).
Expected<void> apply_addresses(const po::variables_map& vm, NodeConfig& c) {
  if (!vm.count("id")) return invalid_input("--id is required (e.g. --id n1)");
  if (!vm.count("cluster")) {
    return invalid_input("--cluster is required (e.g. --cluster n1@127.0.0.1:7001,...)");
  }
  BOOST_OUTCOME_TRY(c.id, flag_context("--id", parse_node_name(vm["id"].as<std::string>())));
  c.name = "n" + std::to_string(c.id);
  BOOST_OUTCOME_TRY(c.cluster, flag_context("--cluster", parse_cluster(vm["cluster"].as<std::string>())));
  if (!c.cluster.contains(c.id)) return invalid_input("--cluster does not list this node (" + c.name + ")");
  c.peer_addr = c.cluster[c.id];
  for (const auto& [flag, addr] : {std::pair{"peer-addr", &c.peer_addr},
                                   std::pair{"resp-addr", &c.resp_addr},
                                   std::pair{"http-addr", &c.http_addr}}) {
    if (!vm.count(flag)) continue;
    const std::string name = "--" + std::string(flag);
    BOOST_OUTCOME_TRY(*addr, flag_context(name, parse_host_port(vm[flag].as<std::string>())));
  }
  return outcome::success();
}

Expected<void> apply_options(const po::variables_map& vm, NodeConfig& c) {
  BOOST_OUTCOME_TRY(apply_addresses(vm, c));
  c.cluster_id = vm["cluster-id"].as<std::string>();
  c.storage.dir = vm["data-dir"].as<std::string>();
  const std::string fsync = vm["fsync"].as<std::string>();
  if (fsync == "always") c.storage.fsync = FsyncMode::always;
  else if (fsync == "batch") c.storage.fsync = FsyncMode::batch;
  else if (fsync == "none") c.storage.fsync = FsyncMode::none;
  else return invalid_input("--fsync must be always, batch or none, not '" + fsync + "'");
  c.storage.snapshot_wal_bytes = vm["snapshot-wal-bytes"].as<std::uint64_t>();

  ReplicaConfig& r = c.replica;
  r.self = c.id;
  for (const auto& [id, addr] : c.cluster) r.members.push_back(id);
  r.replicas = vm["replicas"].as<std::uint32_t>();
  r.read_quorum = vm["read-quorum"].as<std::uint32_t>();
  r.write_quorum = vm["write-quorum"].as<std::uint32_t>();
  r.sloppy_quorum = vm["sloppy-quorum"].as<bool>();
  r.vnodes_per_node = vm["vnodes"].as<std::uint32_t>();
  r.request_timeout_ms = vm["request-timeout-ms"].as<std::uint64_t>();
  if (r.replicas < 1 || r.replicas > r.members.size()) {
    return invalid_input("--replicas must be between 1 and the cluster size (" +
                         std::to_string(r.members.size()) + ")");
  }
  if (r.read_quorum < 1 || r.read_quorum > r.replicas) {
    return invalid_input("--read-quorum must be between 1 and --replicas");
  }
  if (r.write_quorum < 1 || r.write_quorum > r.replicas) {
    return invalid_input("--write-quorum must be between 1 and --replicas");
  }
  if (r.vnodes_per_node < 1 || r.vnodes_per_node > ring_vnodes_per_node_max) {
    return invalid_input("--vnodes must be between 1 and " + std::to_string(ring_vnodes_per_node_max));
  }
  if (r.request_timeout_ms < 10) return invalid_input("--request-timeout-ms must be at least 10");
  BOOST_OUTCOME_TRY(apply_bridge_options(vm, c));
  return apply_limits(vm, c);
}

// Boost.ProgramOptions writes the offending text into its message by replacing placeholders such
// as %value% until none is left, so a value that itself holds "%value%" never finishes (found by
// fuzz_config). Percent signs in the substituted text are spelled %25 before what() runs; the
// substitutions are protected, hence the derived class that only lends its access.
std::string describe(po::error& e) {
  struct Peek : po::error_with_option_name {
    static std::map<std::string, std::string>& substitutions(po::error_with_option_name& x) {
      return x.*&Peek::m_substitutions;
    }
  };
  if (auto* named = dynamic_cast<po::error_with_option_name*>(&e)) {
    for (auto& [name, text] : Peek::substitutions(*named)) {
      for (std::size_t at = text.find('%'); at != std::string::npos; at = text.find('%', at + 3)) {
        text.replace(at, 1, "%25");
      }
    }
  }
  return e.what();
}

}  // namespace

Expected<NodeId> parse_node_name(std::string_view text) {
  const auto id = text.size() >= 2 && text[0] == 'n' ? parse_integer<std::uint16_t>(text.substr(1))
                                                     : std::nullopt;
  if (!id || *id == 0) {
    return invalid_input("node names are n1 to n65535, got '" + std::string(text) + "'");
  }
  return NodeId{*id};
}

Expected<std::map<NodeId, HostPort>> parse_cluster(std::string_view text) {
  std::map<NodeId, HostPort> out;
  std::size_t start = 0;
  while (start <= text.size()) {
    const auto comma = text.find(',', start);
    const std::string_view item = text.substr(start, comma == std::string_view::npos ? comma : comma - start);
    const auto at = item.find('@');
    if (at == std::string_view::npos) {
      return invalid_input("expected name@host:port, got '" + std::string(item) + "'");
    }
    BOOST_OUTCOME_TRY(const NodeId id, parse_node_name(item.substr(0, at)));
    BOOST_OUTCOME_TRY(auto addr, parse_host_port(item.substr(at + 1)));
    if (!out.emplace(id, std::move(addr)).second) {
      return invalid_input("n" + std::to_string(id) + " is listed twice");
    }
    if (comma == std::string_view::npos) break;
    start = comma + 1;
  }
  if (out.size() > ring_nodes_max) {
    return invalid_input("more than " + std::to_string(ring_nodes_max) + " members");
  }
  return out;
}

Expected<std::optional<NodeConfig>> parse_node_config(int argc, char** argv) {
  const auto options = describe_options();
  po::variables_map vm;
  try {
    po::store(po::parse_command_line(argc, argv, options), vm);
    po::store(po::parse_environment(options, [&](const std::string& env) -> std::string {
      if (env.rfind("KV_", 0) != 0) return {};
      std::string flag;
      for (char ch : env.substr(3)) flag += ch == '_' ? '-' : static_cast<char>(std::tolower(ch));
      return options.find_nothrow(flag, false) ? flag : std::string();
    }), vm);
    po::notify(vm);
  } catch (po::error& e) {
    return invalid_input(describe(e));
  }
  if (vm.count("help")) {
    std::cout << "kvnode: one node of the replicated key-value store.\n\n"
              << "Example, a 3-node cluster on one machine (see `make cluster`):\n"
              << "  kvnode --id n1 --cluster n1@127.0.0.1:7001,n2@127.0.0.1:7002,n3@127.0.0.1:7003 \\\n"
              << "         --resp-addr 127.0.0.1:6381 --http-addr 127.0.0.1:8081 --data-dir data/n1\n\n"
              << "Bridges (both optional): --postgres writes every client write through to a PostgreSQL table\n"
              << "(sync: before the write is acknowledged; async: write-behind) and is looked up when the\n"
              << "cluster does not hold a key; --legacy-url reads keys the cluster and PostgreSQL do not hold\n"
              << "from a legacy HTTP API and keeps them (hydration; any client write wins over them):\n"
              << "  kvnode ... --postgres postgresql://kv@127.0.0.1:5432/kv --postgres-mode sync \\\n"
              << "         --legacy-url 'http://127.0.0.1:9000/items/{key}' --legacy-field value\n\n"
              << options << "\nSignals: SIGTERM/SIGINT drain in-flight requests and exit 0.\n";
    return std::optional<NodeConfig>();
  }
  NodeConfig c;
  BOOST_OUTCOME_TRY(apply_options(vm, c));
  return std::optional<NodeConfig>(std::move(c));
}

}  // namespace kv
