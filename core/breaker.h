// The circuit breaker in front of the legacy API: after `failures_to_open` consecutive failures
// it opens for `open_ms`, during which calls are refused at once; then one call goes through as
// a probe (half-open), and its outcome closes the breaker or opens it again.
#pragma once

#include <cstdint>
#include <string>

namespace kv {

class Breaker {
 public:
  Breaker(std::uint32_t failures_to_open, std::uint64_t open_ms)
      : failures_to_open_(failures_to_open), open_ms_(open_ms) {}

  // Whether a call may go through now. When the breaker has tripped, the call let through is
  // the one probe, and nothing else goes until it is settled.
  bool admit(std::uint64_t now_ms);
  // Why admit() refused, for the reads that fail meanwhile.
  std::string refusal(std::uint64_t now_ms) const;
  // The outcome of a call: settled() for any answered call (it ends a probe), then failed() or
  // succeeded(). failed() says whether the breaker (re)opened.
  void settled() { probing_ = false; }
  bool failed(std::uint64_t now_ms);
  void succeeded() { failures_ = 0; }

  bool open(std::uint64_t now_ms) const { return now_ms < open_until_ms_; }
  std::string check_invariants() const;

 private:
  bool tripped() const { return failures_ >= failures_to_open_; }

  std::uint32_t failures_to_open_;
  std::uint64_t open_ms_;
  std::uint32_t failures_ = 0;  // consecutive failures
  std::uint64_t open_until_ms_ = 0;
  bool probing_ = false;  // half-open: the probe is in flight
};

}  // namespace kv
