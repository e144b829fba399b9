// Shrinking: cut a failing scenario down to a small one that still fails the same way.
//
// Delta debugging over the scenario's explicit lists (faults; each client's operations; whole
// clients), then switching off fault rates one by one, repeated until a round changes nothing.
// Removing an operation shifts later random draws, so a removal that makes the failure vanish
// is simply not kept: the result is smaller, not necessarily minimal.
#include <algorithm>
#include <functional>
#include <string>

#include "sim/sim.h"

namespace kv::sim {

namespace {

constexpr std::size_t shrink_attempts_max = 3000;
constexpr int shrink_rounds_max = 4;

class Shrinker {
 public:
  Shrinker(const Scenario& failing, const std::function<void(std::string_view)>& progress)
      : best_(failing), progress_(progress) {
    const RunResult r = run(failing);
    property_ = r.violations.empty() ? std::string() : r.violations.front().property;
  }

  Scenario shrink() {
    if (property_.empty()) return best_;
    for (int round = 0; round < shrink_rounds_max; ++round) {
      bool changed = cut_list([](Scenario& s) -> std::vector<Fault>& { return s.faults; }, "faults");
      changed |= cut_list([](Scenario& s) -> std::vector<std::vector<ClientOp>>& { return s.clients; },
                          "clients");
      for (std::size_t c = 0; c < best_.clients.size(); ++c) {
        changed |= cut_list([c](Scenario& s) -> std::vector<ClientOp>& { return s.clients[c]; },
                            "ops of client " + std::to_string(c));
      }
      changed |= quiet_rates();
      if (!changed || attempts_ >= shrink_attempts_max) break;
    }
    return best_;
  }

 private:
  bool still_fails(const Scenario& s) {
    ++attempts_;
    const RunResult r = run(s);
    return std::any_of(r.violations.begin(), r.violations.end(),
                       [&](const Violation& v) { return v.property == property_; });
  }

  void report(const std::string& what, bool kept) {
    if (progress_) progress_("attempt " + std::to_string(attempts_) + ": " + what + (kept ? ": still fails, kept" : ": passes, undone"));
  }

  // Removes chunks of a list, halving the chunk size down to single elements.
  template <class Access>
  bool cut_list(Access access, const std::string& name) {
    bool changed = false;
    for (std::size_t chunk = std::max<std::size_t>(access(best_).size() / 2, 1); chunk >= 1; chunk /= 2) {
      for (std::size_t i = 0; i < access(best_).size() && attempts_ < shrink_attempts_max;) {
        Scenario trial = best_;
        auto& list = access(trial);
        list.erase(list.begin() + static_cast<std::ptrdiff_t>(i),
                   list.begin() + static_cast<std::ptrdiff_t>(std::min(i + chunk, list.size())));
        const bool kept = still_fails(trial);
        report("drop " + std::to_string(chunk) + " of " + name + " at " + std::to_string(i), kept);
        if (kept) {
          best_ = std::move(trial);
          changed = true;
        } else {
          i += chunk;
        }
      }
      if (chunk == 1) break;
    }
    return changed;
  }

  bool try_change(const std::string& what, const std::function<bool(Scenario&)>& change) {
    if (attempts_ >= shrink_attempts_max) return false;
    Scenario trial = best_;
    if (!change(trial)) return false;  // already as small as it gets
    const bool kept = still_fails(trial);
    report(what, kept);
    if (kept) best_ = std::move(trial);
    return kept;
  }

  bool quiet_rates() {
    auto zero = [](auto& field) {
      if (field == 0) return false;
      field = 0;
      return true;
    };
    bool changed = false;
    changed |= try_change("no message loss", [&](Scenario& s) { return zero(s.knobs.drop_ppm); });
    changed |= try_change("no duplication", [&](Scenario& s) { return zero(s.knobs.duplicate_ppm); });
    changed |= try_change("no long tail", [&](Scenario& s) { return zero(s.knobs.long_tail_ppm); });
    changed |= try_change("no slow fsync", [&](Scenario& s) { return zero(s.knobs.fsync_slow_ppm); });
    changed |= try_change("no clock skew", [&](Scenario& s) {
      bool any = false;
      for (auto& v : s.knobs.clock_skew_ms) any |= zero(v);
      return any;
    });
    changed |= try_change("no clock drift", [&](Scenario& s) {
      bool any = false;
      for (auto& v : s.knobs.clock_drift_ppm) any |= zero(v);
      return any;
    });
    return changed;
  }

  Scenario best_;
  const std::function<void(std::string_view)>& progress_;
  std::string property_;
  std::size_t attempts_ = 0;
};

}  // namespace

Scenario shrink(const Scenario& failing, const std::function<void(std::string_view)>& progress) {
  return Shrinker(failing, progress).shrink();
}

}  // namespace kv::sim
