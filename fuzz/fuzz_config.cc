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
  if (auto id = parse_node_name(s)) {
    require(id.value() != 0, "node name parsed to node 0");
    auto again = parse_node_name("n" + std::to_string(id.value()));
    require(again && again.value() == id.value(), "a node name does not print back");
  }
  if (auto hp = parse_host_port(s)) {
    auto again = parse_host_port(hp.value().to_string());
    require(again && again.value() == hp.value(),
            "host:port does not print back: " + hp.value().to_string());
  }
  if (auto parsed = parse_cluster(s)) {
    const std::map<NodeId, HostPort>& members = parsed.value();
    require(!members.empty(), "an empty cluster parsed");
    std::string text;
    for (const auto& [n, addr] : members) {
      text += (text.empty() ? "n" : ",n") + std::to_string(n) + "@" + addr.to_string();
    }
    auto again = parse_cluster(text);
    require(again && again.value() == members,
            "a cluster does not print back: " + (again ? text : again.error().detail));
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
  // parse_node_config prints usage for --help; the fuzzer's own output goes elsewhere.
  static std::ostringstream sink;
  std::cout.rdbuf(sink.rdbuf());
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

  const auto c = parse_node_config(static_cast<int>(args.size()), argv.data());
  for (const std::string& n : names) unsetenv(n.c_str());
  if (c && c.value()) {
    check_config(*c.value());
  } else if (!c) {
    require(c.error().code == Errc::invalid_argument && !c.error().detail.empty(),
            "a refused configuration without a reason");
  }
  return 0;
}
