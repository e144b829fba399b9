#include "core/failure_detector.h"

#include <algorithm>

namespace kv {
namespace {

constexpr double log10_e = 0.4342944819032518;

}  // namespace

FailureDetector::FailureDetector(std::uint64_t interval_ms, double phi_threshold, std::uint64_t now_ms)
    : interval_ms_(interval_ms), threshold_(phi_threshold), started_ms_(now_ms) {}

FailureDetector::Peer& FailureDetector::peer(NodeId id) {
  auto [it, fresh] = peers_.try_emplace(id);
  if (fresh) it->second.last_ms = started_ms_;
  return it->second;
}

void FailureDetector::heard(NodeId id, std::uint64_t now_ms) {
  if (!enabled()) return;
  Peer& p = peer(id);
  const std::uint64_t elapsed = now_ms > p.last_ms ? now_ms - p.last_ms : 0;
  const auto sample = static_cast<std::uint32_t>(std::min(elapsed, interval_ms_ * fd_interval_cap_factor));
  if (p.count == fd_window) p.sum -= p.intervals[p.next];
  p.intervals[p.next] = sample;
  p.sum += sample;
  p.next = (p.next + 1) % fd_window;
  p.count = std::min(p.count + 1, fd_window);
  p.last_ms = std::max(p.last_ms, now_ms);
}

double FailureDetector::mean_interval_ms(NodeId id) const {
  auto it = peers_.find(id);
  if (it == peers_.end() || it->second.count == 0 || it->second.sum == 0) {
    return static_cast<double>(interval_ms_);
  }
  return static_cast<double>(it->second.sum) / static_cast<double>(it->second.count);
}

double FailureDetector::phi(NodeId id, std::uint64_t now_ms) const {
  if (!enabled()) return 0;
  auto it = peers_.find(id);
  const std::uint64_t last = it == peers_.end() ? started_ms_ : it->second.last_ms;
  const std::uint64_t elapsed = now_ms > last ? now_ms - last : 0;
  // Never below the heartbeat interval: heartbeats bunched by a busy loop must not make an
  // ordinary gap look like death.
  const double mean = std::max(mean_interval_ms(id), static_cast<double>(interval_ms_));
  return static_cast<double>(elapsed) / mean * log10_e;
}

bool FailureDetector::up(NodeId id, std::uint64_t now_ms) const {
  return !enabled() || threshold_ <= 0 || phi(id, now_ms) < threshold_;
}

}  // namespace kv
