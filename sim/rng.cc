// xoshiro256** seeded through splitmix64 (Blackman and Vigna), and integer distributions.
#include "sim/rng.h"

#include <cassert>

#include "core/hash.h"

namespace kv::sim {

namespace {

std::uint64_t splitmix64(std::uint64_t& x) {
  std::uint64_t z = (x += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

std::uint64_t rotl(std::uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

}  // namespace

Rng::Rng(std::uint64_t seed) : seed_(seed) {
  std::uint64_t x = seed;
  for (auto& s : s_) s = splitmix64(x);
}

Rng Rng::child(std::string_view name) const {
  std::uint64_t x = seed_ ^ hash64(name);
  return Rng(splitmix64(x));
}

std::uint64_t Rng::next() {
  const std::uint64_t result = rotl(s_[1] * 5, 7) * 9;
  const std::uint64_t t = s_[1] << 17;
  s_[2] ^= s_[0];
  s_[3] ^= s_[1];
  s_[1] ^= s_[2];
  s_[0] ^= s_[3];
  s_[2] ^= t;
  s_[3] = rotl(s_[3], 45);
  return result;
}

std::uint64_t Rng::below(std::uint64_t n) {
  assert(n > 0);
  // Reject the low values that would make the modulo biased: 2^64 mod n of them.
  const std::uint64_t threshold = (0 - n) % n;
  for (;;) {
    const std::uint64_t x = next();
    if (x >= threshold) return x % n;
  }
}

std::uint64_t Rng::between(std::uint64_t lo, std::uint64_t hi) {
  assert(lo <= hi);
  if (hi - lo == ~0ULL) return next();
  return lo + below(hi - lo + 1);
}

std::int64_t Rng::between_signed(std::int64_t lo, std::int64_t hi) {
  assert(lo <= hi);
  const auto span = static_cast<std::uint64_t>(hi) - static_cast<std::uint64_t>(lo);
  return static_cast<std::int64_t>(static_cast<std::uint64_t>(lo) + between(0, span));
}

bool Rng::chance_ppm(std::uint32_t ppm) { return below(ppm_one) < ppm; }

std::uint64_t Rng::long_tail(std::uint64_t max) {
  // Start at max / 1024 and double on each head: each doubling is half as likely as the last.
  std::uint64_t range = max >> 10;
  while (range < max && (next() & 1)) range = range * 2 + 1;
  return below((range < max ? range : max) + 1);
}

}  // namespace kv::sim
