// The ring's hash: FNV-1a 64 over the bytes, then the murmur3 fmix64 finalizer.
//
// FNV-1a alone is byte-order independent and cheap, but its multiply only carries information
// upward: the low output bits depend only on the low bits of the input bytes, and the last byte
// barely reaches the high bits. Ring positions need every bit to matter ("k1" and "k2" must land
// far apart), so fmix64 spreads the state over all 64 bits. Both steps are fixed by their
// published constants; tests/ring_test.cc pins a few outputs so an accidental change is caught.
#include "core/hash.h"

namespace kv {
namespace {

constexpr std::uint64_t fnv1a64_offset_basis = 0xcbf29ce484222325ULL;
constexpr std::uint64_t fnv1a64_prime = 0x00000100000001b3ULL;

// murmur3's 64-bit finalizer: a bijection, so it adds no collisions to the FNV state.
constexpr std::uint64_t fmix64(std::uint64_t k) {
  k ^= k >> 33;
  k *= 0xff51afd7ed558ccdULL;
  k ^= k >> 33;
  k *= 0xc4ceb9fe1a85ec53ULL;
  k ^= k >> 33;
  return k;
}

}  // namespace

std::uint64_t hash64(std::string_view bytes) {
  std::uint64_t h = fnv1a64_offset_basis;
  for (char c : bytes) {
    // Through unsigned char: plain char's signedness varies by platform.
    h ^= static_cast<std::uint64_t>(static_cast<unsigned char>(c));
    h *= fnv1a64_prime;
  }
  return fmix64(h);
}

}  // namespace kv
