// The simulator's only source of randomness: a seeded generator with named child streams and
// its own distributions.
//
// std::*_distribution is not used: its output differs between standard libraries, and a seed
// must replay bit for bit everywhere. Every distribution here is integer arithmetic. Child
// streams (network, disk, workload, ...) are derived from the parent's seed and a name, so that
// adding a draw in one stream does not shift the draws of any other.
#pragma once

#include <cstdint>
#include <string_view>

namespace kv::sim {

inline constexpr std::uint32_t ppm_one = 1'000'000;

class Rng {
 public:
  explicit Rng(std::uint64_t seed);

  // An independent stream named `name`, derived from this stream's seed (not its position).
  Rng child(std::string_view name) const;

  std::uint64_t next();
  // Uniform in [0, n). REQUIRES: n > 0. Unbiased (rejection of the biased remainder).
  std::uint64_t below(std::uint64_t n);
  // Uniform in [lo, hi]. REQUIRES: lo <= hi.
  std::uint64_t between(std::uint64_t lo, std::uint64_t hi);
  std::int64_t between_signed(std::int64_t lo, std::int64_t hi);
  // True with probability ppm / 1'000'000.
  bool chance_ppm(std::uint32_t ppm);
  // A long-tailed value in [0, max]: its range starts at max / 1024 and doubles with each coin
  // flip that comes up heads, so small values are common and values near max are rare.
  std::uint64_t long_tail(std::uint64_t max);

  std::uint64_t seed() const { return seed_; }

 private:
  std::uint64_t seed_;
  std::uint64_t s_[4];  // xoshiro256** state
};

}  // namespace kv::sim
