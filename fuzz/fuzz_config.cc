// kvnode's configuration (node/config.h): a command line and KV_* variables of any bytes.
//
// Input: NUL-separated strings. Those that look like KV_NAME=value are put in the environment
// (and taken out again afterwards); the others are argv after "kvnode". Each string is also
// given to parse_cluster, parse_host_port and parse_node_name.
// Properties: a configuration that parses is one the node can run: this node is a member, the
// replica's config names the cluster's members and constructing the replica accepts it (its
// constructor asserts what it needs); the small parsers' results print back to text that parses
// to the same thing.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <iostream>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "core/replica.h"
#include "fuzz/common.h"
#include "node/config.h"

namespace kv::fuzz {
namespace {

constexpr std::size_t args_max = 48;

void check_small_parsers(const std::string& s) {
  NodeId id = 0;
  if (parse_node_name(s, id).empty()) {
    require(id != 0, "node name parsed to node 0");
    NodeId again = 0;
    require(parse_node_name("n" + std::to_string(id), again).empty() && again == id,
            "a node name does not print back");
  }
  if (auto hp = parse_host_port(s)) {
    auto again = parse_host_port(hp.value().to_string());
    require(again && again.value() == hp.value(),
            "host:port does not print back: " + hp.value().to_string());
  }
  std::map<NodeId, HostPort> members;
  if (parse_cluster(s, members).empty()) {
    require(!members.empty(), "an empty cluster parsed");
    std::string text;
    for (const auto& [n, addr] : members) {
      text += (text.empty() ? "n" : ",n") + std::to_string(n) + "@" + addr.to_string();
    }
    std::map<NodeId, HostPort> again;
    const std::string e = parse_cluster(text, again);
    require(e.empty() && again.size() == members.size(), "a cluster does not print back: " + e);
    for (const auto& [n, addr] : members) {
      require(again.contains(n) && again[n].host == addr.host && again[n].port == addr.port,
              "a cluster member changed when printed back");
    }
  }
}

void check_config(const NodeConfig& c) {
  require(c.id != 0 && c.cluster.contains(c.id), "this node is not a member of its cluster");
  require(c.replica.self == c.id, "the replica's self is not the node's id");
  require(c.replica.members.size() == c.cluster.size(),
          "the replica's members are not the cluster");
  for (NodeId m : c.replica.members) {
    require(c.cluster.contains(m), "a replica member not in the cluster");
  }
  // Asserts on anything the state machine cannot run with.
  Replica replica(c.replica, DurableState{}, 1);
  require(replica.check_invariants().empty(), "a fresh replica breaks an invariant");
}

}  // namespace
}  // namespace kv::fuzz

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  // parse_node_config prints usage and errors; the fuzzer's own output goes elsewhere.
  static std::ostringstream sink;
  std::cout.rdbuf(sink.rdbuf());
  std::cerr.rdbuf(sink.rdbuf());
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace kv;
  using namespace kv::fuzz;
  std::vector<std::string> args{"kvnode"};
  std::vector<std::string> env;
  std::string_view in(reinterpret_cast<const char*>(data), size);
  while (!in.empty() && args.size() + env.size() < args_max) {
    const std::size_t nul = in.find('\0');
    std::string s(in.substr(0, nul));
    in = nul == std::string_view::npos ? std::string_view{} : in.substr(nul + 1);
    check_small_parsers(s);
    const std::size_t eq = s.find('=');
    if (s.rfind("KV_", 0) == 0 && eq != std::string::npos && eq > 3) {
      env.push_back(std::move(s));
    } else {
      args.push_back(std::move(s));
    }
  }
  std::vector<std::string> names;
  for (const std::string& e : env) {
    names.push_back(e.substr(0, e.find('=')));
    setenv(names.back().c_str(), e.c_str() + names.back().size() + 1, 1);
  }
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);

  int exit_code = -1;
  const std::optional<NodeConfig> c =
      parse_node_config(static_cast<int>(args.size()), argv.data(), exit_code);
  for (const std::string& n : names) unsetenv(n.c_str());
  if (c) {
    check_config(*c);
  } else {
    require(exit_code == 0 || exit_code == 2, "no config and an exit code of " +
                                                   std::to_string(exit_code));
  }
  return 0;
}
