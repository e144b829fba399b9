// The consistent-hash ring: token placement on membership changes, and the clockwise walk that
// turns a key into its preference list. Membership changes are rare and may copy the token
// vector; preference_list runs on every request, so it is a binary search plus a short walk.
#include "core/ring.h"

#include <algorithm>
#include <cassert>
#include <string>

#include "core/hash.h"

namespace kv {
namespace {

// Up to this many wanted nodes, checking the result vector linearly beats any set: N is 3 or so
// on every request. Beyond it (fallback lists over big clusters) a bitmap keeps the walk linear.
constexpr std::size_t linear_distinct_max = 16;

std::uint64_t token_position(NodeId node, std::uint32_t vnode) {
  return hash64(std::to_string(node) + "/" + std::to_string(vnode));
}

}  // namespace

Ring::Ring(std::uint32_t vnodes_per_node) : vnodes_per_node_(vnodes_per_node) {
  assert(vnodes_per_node >= 1 && vnodes_per_node <= ring_vnodes_per_node_max);
}

bool Ring::contains(NodeId node) const {
  return std::binary_search(nodes_.begin(), nodes_.end(), node);
}

void Ring::add_node(NodeId node) {
  auto at = std::lower_bound(nodes_.begin(), nodes_.end(), node);
  if (at != nodes_.end() && *at == node) return;
  assert(nodes_.size() < ring_nodes_max);
  nodes_.insert(at, node);

  const auto old_size = tokens_.size();
  tokens_.reserve(old_size + vnodes_per_node_);
  for (std::uint32_t i = 0; i < vnodes_per_node_; ++i) {
    tokens_.push_back(Token{token_position(node, i), node});
  }
  std::sort(tokens_.begin() + static_cast<std::ptrdiff_t>(old_size), tokens_.end());
  std::inplace_merge(tokens_.begin(), tokens_.begin() + static_cast<std::ptrdiff_t>(old_size),
                     tokens_.end());
}

void Ring::remove_node(NodeId node) {
  auto at = std::lower_bound(nodes_.begin(), nodes_.end(), node);
  if (at == nodes_.end() || *at != node) return;
  nodes_.erase(at);
  std::erase_if(tokens_, [node](const Token& t) { return t.node == node; });
}

NodeId Ring::owner_of(std::uint64_t position) const {
  assert(!nodes_.empty());
  // Ties on position are ordered by node, so node 0 sorts first among equal positions.
  auto it = std::lower_bound(tokens_.begin(), tokens_.end(), Token{position, 0});
  if (it == tokens_.end()) it = tokens_.begin();
  return it->node;
}

std::size_t Ring::first_token_at(std::uint64_t position) const {
  const auto it = std::lower_bound(tokens_.begin(), tokens_.end(), Token{position, 0});
  return it == tokens_.end() ? 0 : static_cast<std::size_t>(it - tokens_.begin());
}

std::size_t Ring::range_of(std::string_view key) const {
  assert(!tokens_.empty());
  return first_token_at(hash64(key));
}

std::vector<NodeId> Ring::preference_list(std::string_view key, std::size_t n) const {
  if (tokens_.empty()) return {};
  return walk(first_token_at(hash64(key)), n);
}

std::vector<NodeId> Ring::preference_list_at(std::uint64_t position, std::size_t n) const {
  if (tokens_.empty()) return {};
  return walk(first_token_at(position), n);
}

std::vector<NodeId> Ring::range_replicas(std::size_t range, std::size_t n) const {
  assert(range < tokens_.size());
  return walk(range, n);
}

double Ring::share(NodeId node) const {
  // Range i is the arc (token i-1, token i]; the first wraps around from the last token.
  long double owned = 0;
  for (std::size_t i = 0; i < tokens_.size(); ++i) {
    if (tokens_[i].node != node) continue;
    const std::uint64_t from = tokens_[i == 0 ? tokens_.size() - 1 : i - 1].position;
    const std::uint64_t arc = tokens_.size() == 1 ? 0 : tokens_[i].position - from;  // wraps mod 2^64
    owned += tokens_.size() == 1 ? 18446744073709551616.0L : static_cast<long double>(arc);
  }
  return static_cast<double>(owned / 18446744073709551616.0L);
}

std::uint64_t Ring::fingerprint() const {
  std::uint64_t h = hash64(std::to_string(vnodes_per_node_));
  for (const Token& t : tokens_) {
    h = hash64(std::to_string(h) + "/" + std::to_string(t.position) + "/" + std::to_string(t.node));
  }
  return h;
}

std::vector<NodeId> Ring::walk(std::size_t start, std::size_t n) const {
  std::vector<NodeId> result;
  const std::size_t want = std::min(n, nodes_.size());
  if (want == 0) return result;
  result.reserve(want);
  const std::size_t token_count = tokens_.size();

  if (want <= linear_distinct_max) {
    // Every node has at least one token, so one full turn finds `want` distinct nodes.
    for (std::size_t step = 0; step < token_count && result.size() < want; ++step) {
      const NodeId node = tokens_[(start + step) % token_count].node;
      if (std::find(result.begin(), result.end(), node) == result.end()) result.push_back(node);
    }
  } else {
    std::vector<bool> seen(nodes_.size(), false);
    for (std::size_t step = 0; step < token_count && result.size() < want; ++step) {
      const NodeId node = tokens_[(start + step) % token_count].node;
      const auto index =
          static_cast<std::size_t>(std::lower_bound(nodes_.begin(), nodes_.end(), node) -
                                   nodes_.begin());
      if (!seen[index]) {
        seen[index] = true;
        result.push_back(node);
      }
    }
  }
  assert(result.size() == want);
  return result;
}

}  // namespace kv
