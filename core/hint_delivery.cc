#include "core/hint_delivery.h"

#include <algorithm>
#include <string>

#include "core/context.h"

namespace kv {

HintDelivery::HintDelivery(Context& ctx, std::uint64_t now_ms)
    : ctx_(ctx), next_round_ms_(now_ms + ctx.config.hint_interval_ms) {}

// Resumes where the last round stopped, so that hints for a target that stays down do not
// starve the others.
void HintDelivery::deliver(std::uint64_t now_ms) {
  if (now_ms < next_round_ms_ || ctx_.state.hints.size() == 0) return;
  next_round_ms_ = now_ms + ctx_.config.hint_interval_ms;
  const auto& hints = ctx_.state.hints.hints();
  // With tombstone collection, a hint half the grace old is dropped undelivered: delivered later,
  // it could outlive a tombstone of its key and bring the key back. Anti-entropy repairs the copy.
  const bool expire = ctx_.collects_tombstones();
  auto it = hints.lower_bound(cursor_);
  const std::size_t round = std::min(ctx_.config.hint_deliveries_per_interval_max, hints.size());
  for (std::size_t i = 0; i < round && !hints.empty(); ++i) {
    if (it == hints.end()) it = hints.begin();
    const auto cur = it++;
    const auto& [hint_key, record] = *cur;
    if (expire && record.version.physical_ms + ctx_.config.tombstone_grace_ms / 2 <= now_ms) {
      const HintStore::HintKey gone = hint_key;
      const Version version = record.version;
      ctx_.state.hints.remove_delivered(gone.first, gone.second, version);
      ctx_.ready.persist.push_back(WalHintDone{gone.first, gone.second, version});
      ++ctx_.stats.hints_expired;
      continue;
    }
    if (!ctx_.peer_up(hint_key.first)) continue;  // kept for when it is back
    ctx_.send(hint_key.first, WriteReq{0, WriteKind::hint_delivery, hint_key.second, record, 0});
  }
  cursor_ = it == hints.end() ? HintStore::HintKey{} : it->first;
}

void HintDelivery::on_ack(NodeId from, const WriteAck& m) {
  if (ctx_.state.hints.remove_delivered(from, m.key, m.version)) {
    ctx_.ready.persist.push_back(WalHintDone{from, m.key, m.version});
    ++ctx_.stats.hints_delivered;
  }
}

std::string HintDelivery::check_invariants() const {
  if (ctx_.state.hints.size() > ctx_.config.hints_max) return "hints_max exceeded";
  for (const auto& [hint_key, r] : ctx_.state.hints.hints()) {
    if (hint_key.first == ctx_.config.self || !ctx_.ring.contains(hint_key.first)) {
      return "hint for n" + std::to_string(hint_key.first) + ", not another member";
    }
    if (!ctx_.not_after_clock(r.version)) return "hint version ahead of the clock";
  }
  return {};
}

}  // namespace kv
