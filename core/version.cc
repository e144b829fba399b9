// Version order, record merge and the hybrid logical clock.
#include "core/version.h"

#include <limits>

namespace kv {

std::string Version::to_string() const {
  return std::to_string(physical_ms) + "." + std::to_string(counter) + "@n" + std::to_string(node);
}

std::strong_ordering compare(const Record& a, const Record& b) {
  if (auto c = a.version <=> b.version; c != 0) return c;
  if (auto c = a.tombstone <=> b.tombstone; c != 0) return c;
  return a.value.compare(b.value) <=> 0;
}

const Record& merge(const Record& a, const Record& b) { return compare(a, b) >= 0 ? a : b; }

std::optional<Record> merge(const std::optional<Record>& a, const std::optional<Record>& b) {
  if (!a) return b;
  if (!b) return a;
  return merge(*a, *b);
}

Version Hlc::now(std::uint64_t wall_ms) {
  if (wall_ms > last_.physical_ms) {
    last_ = Version{wall_ms, 0, node_};
  } else if (last_.counter < std::numeric_limits<std::uint32_t>::max()) {
    last_ = Version{last_.physical_ms, last_.counter + 1, node_};
  } else {
    // Counter exhausted (reachable by observing a peer's stamp with the largest counter):
    // wrapping it to zero would issue a stamp below the last one, so take the next millisecond.
    last_ = Version{last_.physical_ms + 1, 0, node_};
  }
  return last_;
}

void Hlc::observe(const Version& v) {
  // Keep our own node id: the next now() bumps the counter past v whatever the ids are.
  if (v.physical_ms > last_.physical_ms ||
      (v.physical_ms == last_.physical_ms && v.counter > last_.counter)) {
    last_ = Version{v.physical_ms, v.counter, node_};
  }
}

}  // namespace kv
