// kvnode flags with Boost.ProgramOptions: one table of options, read from the command line and
// then from KV_<FLAG> variables (KV_PEER_ADDR for --peer-addr), so that Docker and Kubernetes
// can configure a node without a command line.
#include "node/config.h"

#include <boost/program_options.hpp>
#include <charconv>
#include <iostream>

namespace po = boost::program_options;

namespace kv {

namespace {

template <class T>
bool parse_number(const std::string& s, T& out) {
  const auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc() && p == s.data() + s.size();
}

po::options_description describe_options() {
  po::options_description d("kvnode options (each also read from KV_<FLAG>, e.g. KV_DATA_DIR)");
  d.add_options()
    ("help,h", "print this help and exit")
    ("id", po::value<std::string>(), "this node's name, n<number> (required), e.g. n1")
    ("cluster", po::value<std::string>(),
     "every member as name@host:port of its peer address, comma-separated, e.g. "
     "n1@127.0.0.1:7001,n2@127.0.0.1:7002,n3@127.0.0.1:7003 (required)")
    ("cluster-id", po::value<std::string>()->default_value("kv"), "peers with another cluster id are refused")
    ("peer-addr", po::value<std::string>(), "listen address for peers (default: this node's entry in --cluster)")
    ("resp-addr", po::value<std::string>()->default_value("127.0.0.1:6379"), "Redis protocol listen address")
    ("http-addr", po::value<std::string>()->default_value("127.0.0.1:8001"), "HTTP/JSON listen address")
    ("data-dir", po::value<std::string>()->default_value("./data"), "where the log and snapshot live")
    ("replicas", po::value<std::uint32_t>()->default_value(3), "N: copies of every key")
    ("read-quorum", po::value<std::uint32_t>()->default_value(2), "R: default replies a read waits for")
    ("write-quorum", po::value<std::uint32_t>()->default_value(2), "W: default acknowledgements a write waits for")
    ("sloppy-quorum", po::value<bool>()->default_value(false), "count fallback nodes toward W (gives up C4 for availability)")
    ("fsync", po::value<std::string>()->default_value("always"),
     "always: acknowledge only fsynced writes (group commit); batch: fsync every 100 ms, may lose "
     "the last 100 ms of acknowledged writes on power loss; none: never fsync")
    ("vnodes", po::value<std::uint32_t>()->default_value(ring_vnodes_per_node_default), "virtual nodes per node")
    ("request-timeout-ms", po::value<std::uint64_t>()->default_value(2000), "a client request's deadline")
    ("snapshot-wal-bytes", po::value<std::uint64_t>()->default_value(64ull << 20), "snapshot once the log is this long")
    ("key-bytes-max", po::value<std::size_t>()->default_value(8 * 1024), "largest key accepted")
    ("value-bytes-max", po::value<std::size_t>()->default_value(1024 * 1024), "largest value accepted")
    ("connections-max", po::value<std::size_t>()->default_value(10000), "client connections per protocol")
    ("requests-in-flight-max", po::value<std::size_t>()->default_value(10000), "client requests the node coordinates at once")
    ("idle-timeout-ms", po::value<std::uint64_t>()->default_value(300000), "close a client connection idle this long")
    ("read-timeout-ms", po::value<std::uint64_t>()->default_value(30000), "close a connection that stalls mid-request this long");
  return d;
}

std::string apply_options(const po::variables_map& vm, NodeConfig& c) {
  if (!vm.count("id")) return "--id is required (e.g. --id n1)";
  if (!vm.count("cluster")) return "--cluster is required (e.g. --cluster n1@127.0.0.1:7001,...)";
  if (auto e = parse_node_name(vm["id"].as<std::string>(), c.id); !e.empty()) return "--id: " + e;
  c.name = "n" + std::to_string(c.id);
  if (auto e = parse_cluster(vm["cluster"].as<std::string>(), c.cluster); !e.empty()) return "--cluster: " + e;
  if (!c.cluster.contains(c.id)) return "--cluster does not list this node (" + c.name + ")";
  c.cluster_id = vm["cluster-id"].as<std::string>();
  c.peer_addr = c.cluster[c.id];
  if (vm.count("peer-addr")) {
    if (auto e = parse_host_port(vm["peer-addr"].as<std::string>(), c.peer_addr); !e.empty()) return "--peer-addr: " + e;
  }
  if (auto e = parse_host_port(vm["resp-addr"].as<std::string>(), c.resp_addr); !e.empty()) return "--resp-addr: " + e;
  if (auto e = parse_host_port(vm["http-addr"].as<std::string>(), c.http_addr); !e.empty()) return "--http-addr: " + e;
  c.storage.dir = vm["data-dir"].as<std::string>();
  const std::string fsync = vm["fsync"].as<std::string>();
  if (fsync == "always") c.storage.fsync = FsyncMode::always;
  else if (fsync == "batch") c.storage.fsync = FsyncMode::batch;
  else if (fsync == "none") c.storage.fsync = FsyncMode::none;
  else return "--fsync must be always, batch or none, not '" + fsync + "'";
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
  r.key_bytes_max = vm["key-bytes-max"].as<std::size_t>();
  r.value_bytes_max = vm["value-bytes-max"].as<std::size_t>();
  r.requests_in_flight_max = vm["requests-in-flight-max"].as<std::size_t>();
  if (r.replicas < 1 || r.replicas > r.members.size()) {
    return "--replicas must be between 1 and the cluster size (" + std::to_string(r.members.size()) + ")";
  }
  if (r.read_quorum < 1 || r.read_quorum > r.replicas) return "--read-quorum must be between 1 and --replicas";
  if (r.write_quorum < 1 || r.write_quorum > r.replicas) return "--write-quorum must be between 1 and --replicas";
  if (r.vnodes_per_node < 1 || r.vnodes_per_node > ring_vnodes_per_node_max) {
    return "--vnodes must be between 1 and " + std::to_string(ring_vnodes_per_node_max);
  }
  if (r.request_timeout_ms < 10) return "--request-timeout-ms must be at least 10";
  c.connections_max = vm["connections-max"].as<std::size_t>();
  c.idle_timeout_ms = vm["idle-timeout-ms"].as<std::uint64_t>();
  c.read_timeout_ms = vm["read-timeout-ms"].as<std::uint64_t>();
  return {};
}

}  // namespace

std::string parse_node_name(const std::string& text, NodeId& out) {
  if (text.size() < 2 || text[0] != 'n' || !parse_number(text.substr(1), out) || out == 0 || out > 65535) {
    return "node names are n1 to n65535, got '" + text + "'";
  }
  return {};
}

std::string parse_host_port(const std::string& text, HostPort& out) {
  const auto colon = text.rfind(':');
  if (colon == std::string::npos || colon == 0) return "expected host:port, got '" + text + "'";
  out.host = text.substr(0, colon);
  if (!parse_number(text.substr(colon + 1), out.port)) return "bad port in '" + text + "'";
  return {};
}

std::string parse_cluster(const std::string& text, std::map<NodeId, HostPort>& out) {
  out.clear();
  std::size_t start = 0;
  while (start <= text.size()) {
    const auto comma = text.find(',', start);
    const std::string item = text.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    const auto at = item.find('@');
    if (at == std::string::npos) return "expected name@host:port, got '" + item + "'";
    NodeId id = 0;
    HostPort addr;
    if (auto e = parse_node_name(item.substr(0, at), id); !e.empty()) return e;
    if (auto e = parse_host_port(item.substr(at + 1), addr); !e.empty()) return e;
    if (!out.emplace(id, addr).second) return "n" + std::to_string(id) + " is listed twice";
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  if (out.size() > ring_nodes_max) return "more than " + std::to_string(ring_nodes_max) + " members";
  return {};
}

std::optional<NodeConfig> parse_node_config(int argc, char** argv, int& exit_code) {
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
  } catch (const po::error& e) {
    std::cerr << "kvnode: " << e.what() << "\nTry 'kvnode --help'." << std::endl;
    exit_code = 2;
    return std::nullopt;
  }
  if (vm.count("help")) {
    std::cout << "kvnode: one node of the replicated key-value store.\n\n"
              << "Example, a 3-node cluster on one machine (see `make cluster`):\n"
              << "  kvnode --id n1 --cluster n1@127.0.0.1:7001,n2@127.0.0.1:7002,n3@127.0.0.1:7003 \\\n"
              << "         --resp-addr 127.0.0.1:6381 --http-addr 127.0.0.1:8081 --data-dir data/n1\n\n"
              << options << "\nSignals: SIGTERM/SIGINT drain in-flight requests and exit 0.\n";
    exit_code = 0;
    return std::nullopt;
  }
  NodeConfig c;
  if (auto e = apply_options(vm, c); !e.empty()) {
    std::cerr << "kvnode: " << e << "\nTry 'kvnode --help'." << std::endl;
    exit_code = 2;
    return std::nullopt;
  }
  return c;
}

}  // namespace kv
