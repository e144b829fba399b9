// kvnode's configuration: every flag, its KV_<FLAG> environment twin, defaults and validation.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/errors.h"
#include "core/replica.h"
#include "net/host_port.h"
#include "node/bridge.h"
#include "node/storage.h"

namespace kv {

struct NodeConfig {
  NodeId id = 0;
  std::string name;                     // "n<id>"
  std::string cluster_id = "kv";
  HostPort peer_addr{"127.0.0.1", 7001};
  HostPort resp_addr{"127.0.0.1", 6379};
  HostPort http_addr{"127.0.0.1", 8001};
  std::map<NodeId, HostPort> cluster;  // every member's peer address, self included
  StorageOptions storage;
  ReplicaConfig replica;                // quorums, timers, limits, bridge policy
  PgOptions pg;                         // --postgres*
  LegacyOptions legacy;                 // --legacy-*
  // Front-door limits (RESP and HTTP), each a flag (README.md, "Limits"). The key and value
  // limits and requests_in_flight_max live in `replica`. parse_node_config() fills the derived
  // ones (resp_bulk_bytes_max, http_body_bytes_max, frame_bytes_max) from the value limit when
  // their flags are absent; the values here are those derived from the default limits.
  std::size_t connections_max = 10000;  // per front door: RESP and HTTP each
  std::size_t requests_in_flight_per_connection_max = 1024;  // RESP pipelining
  std::size_t resp_array_max = 1024 * 1024;                  // arguments in one command
  std::size_t resp_bulk_bytes_max = 1024 * 1024 + 1024;      // one argument
  std::size_t http_header_bytes_max = 16 * 1024;
  std::size_t http_body_bytes_max = 6 * 1024 * 1024 + 1024;
  std::uint64_t idle_timeout_ms = 300000;
  std::uint64_t read_timeout_ms = 30000;
  std::size_t frame_bytes_max = 4 * 1024 * 1024 + 64 * 1024;  // peer frame payload
};

// Parses argv and the KV_* environment (flags win). On --help prints usage to stdout and
// returns no configuration; an error's detail says which flag was wrong and why.
Expected<std::optional<NodeConfig>> parse_node_config(int argc, char** argv);

// "n1@127.0.0.1:7001,n2@..." -> members.
Expected<std::map<NodeId, HostPort>> parse_cluster(std::string_view text);
// "n1" to "n65535".
Expected<NodeId> parse_node_name(std::string_view text);

}  // namespace kv
