// Store and HintStore: merge-based maps (see store.h).
#include "core/store.h"

#include <algorithm>

namespace kv {

bool Store::apply(const std::string& key, const Record& r) {
  auto it = records_.find(key);
  if (it == records_.end()) {
    records_.emplace(key, r);
    return true;
  }
  if (compare(r, it->second) <= 0) return false;
  it->second = r;
  return true;
}

std::vector<const Store::Entry*> Store::sorted() const {
  std::vector<const Entry*> out;
  out.reserve(records_.size());
  for (const Entry& e : records_) out.push_back(&e);
  std::sort(out.begin(), out.end(), [](const Entry* a, const Entry* b) { return a->first < b->first; });
  return out;
}

std::optional<Record> Store::get(std::string_view key) const {
  auto it = records_.find(key);
  if (it == records_.end()) return std::nullopt;
  return it->second;
}

bool Store::drop_tombstone(std::string_view key, const Version& version) {
  auto it = records_.find(key);
  if (it == records_.end() || !it->second.tombstone || it->second.version != version) return false;
  records_.erase(it);
  return true;
}

const Record* Store::find(std::string_view key) const {
  auto it = records_.find(key);
  return it == records_.end() ? nullptr : &it->second;
}

bool HintStore::add(NodeId target, const std::string& key, const Record& r) {
  auto [it, inserted] = hints_.try_emplace(HintKey{target, key}, r);
  if (inserted) return true;
  if (compare(r, it->second) <= 0) return false;
  it->second = r;
  return true;
}

std::vector<std::pair<NodeId, const Record*>> HintStore::for_key(
    const std::string& key, const std::vector<NodeId>& targets) const {
  std::vector<std::pair<NodeId, const Record*>> out;
  for (NodeId t : targets) {
    if (auto it = hints_.find(HintKey{t, key}); it != hints_.end()) out.emplace_back(t, &it->second);
  }
  return out;
}

bool HintStore::remove_delivered(NodeId target, const std::string& key, const Version& delivered) {
  auto it = hints_.find(HintKey{target, key});
  if (it == hints_.end() || it->second.version > delivered) return false;
  hints_.erase(it);
  return true;
}

}  // namespace kv
