#include "core/breaker.h"

namespace kv {

bool Breaker::admit(std::uint64_t now_ms) {
  if (tripped() && (now_ms < open_until_ms_ || probing_)) return false;
  probing_ = tripped();
  return true;
}

std::string Breaker::refusal(std::uint64_t now_ms) const {
  const std::uint64_t wait = open_until_ms_ > now_ms ? open_until_ms_ - now_ms : 0;
  return "legacy API unavailable: circuit breaker open after " + std::to_string(failures_) +
         " consecutive failures, next attempt in " + std::to_string(wait) + " ms";
}

bool Breaker::failed(std::uint64_t now_ms) {
  if (++failures_ < failures_to_open_) return false;
  open_until_ms_ = now_ms + open_ms_;
  return true;
}

std::string Breaker::check_invariants() const {
  if (probing_ && !tripped()) return "legacy breaker probing while closed";
  return {};
}

}  // namespace kv
