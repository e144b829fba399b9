// The consistent-hash ring: which nodes hold a key.
//
// Each node owns `vnodes_per_node` tokens, at hash64("<node id>/<vnode index>"). A key belongs to
// the first token clockwise from hash64(key); its preference list is the first N distinct nodes
// met walking clockwise from there. Virtual nodes spread each node's share evenly, and adding or
// removing one node moves only the keys whose walk meets that node's tokens first.
// This is the one place that knows the ring: the coordinator, the simulator and kvbench's request
// routing (--route) all ask it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

#include "core/version.h"

namespace kv {

inline constexpr std::uint32_t ring_vnodes_per_node_default = 64;
inline constexpr std::uint32_t ring_vnodes_per_node_max = 4096;
inline constexpr std::size_t ring_nodes_max = 1024;

class Ring {
 public:
  // REQUIRES: 1 <= vnodes_per_node <= ring_vnodes_per_node_max.
  explicit Ring(std::uint32_t vnodes_per_node = ring_vnodes_per_node_default);

  // Adding a present node or removing an absent one does nothing.
  // REQUIRES: node_count() < ring_nodes_max to add.
  void add_node(NodeId node);
  void remove_node(NodeId node);
  bool contains(NodeId node) const;
  std::size_t node_count() const { return nodes_.size(); }
  const std::vector<NodeId>& nodes() const { return nodes_; }  // ascending
  std::uint32_t vnodes_per_node() const { return vnodes_per_node_; }

  // The first min(n, node_count()) distinct nodes clockwise from hash64(key).
  // The first n are the key's replicas; asking for more gives the fallbacks in order.
  std::vector<NodeId> preference_list(std::string_view key, std::size_t n) const;

  // The node owning the first token at or after `position` (wrapping). REQUIRES: node_count() > 0.
  NodeId owner_of(std::uint64_t position) const;

  // Ranges: range i is the arc of the ring that ends at token i, so every key of it has the same
  // preference list. Anti-entropy compares replicas range by range.
  std::size_t range_count() const { return tokens_.size(); }
  // The range of `key`. REQUIRES: node_count() > 0.
  std::size_t range_of(std::string_view key) const;
  // The preference list of every key of range `range`. REQUIRES: range < range_count().
  std::vector<NodeId> range_replicas(std::size_t range, std::size_t n) const;
  // Where range `range` ends (its token's position). REQUIRES: range < range_count().
  std::uint64_t range_end(std::size_t range) const { return tokens_[range].position; }
  // The preference list of a key hashing to `position`: of every key of another ring's range
  // that ends there, when this ring's tokens are a subset of that ring's.
  std::vector<NodeId> preference_list_at(std::uint64_t position, std::size_t n) const;
  // The fraction of the hash space whose keys have `node` first in their preference list (0 for a
  // node not in the ring); with N replicas a node holds about N times this of the keys.
  double share(NodeId node) const;
  // A hash of every token: two nodes with the same fingerprint number the same ranges alike.
  std::uint64_t fingerprint() const;

 private:
  struct Token {
    std::uint64_t position;
    NodeId node;
    bool operator<(const Token& o) const {
      return position != o.position ? position < o.position : node < o.node;
    }
  };

  std::size_t first_token_at(std::uint64_t position) const;
  std::vector<NodeId> walk(std::size_t start, std::size_t n) const;

  std::uint32_t vnodes_per_node_;
  std::vector<NodeId> nodes_;   // ascending
  std::vector<Token> tokens_;   // ascending by (position, node)
};

}  // namespace kv
