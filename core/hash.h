// A stable 64-bit hash: the same bytes give the same value on every platform, compiler and run.
// The ring places keys and virtual nodes with it, so it is part of the data layout: never change
// it without a migration. std::hash is not used because its value is implementation-defined.
#pragma once

#include <cstdint>
#include <string_view>

namespace kv {

// 64-bit hash of `bytes`, byte-order independent, with good avalanche (every input bit affects
// every output bit), so that nearby keys like "k1", "k2" land far apart on the ring.
std::uint64_t hash64(std::string_view bytes);

}  // namespace kv
