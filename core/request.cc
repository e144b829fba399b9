#include "core/request.h"

#include <algorithm>

#include "core/context.h"

namespace kv {

std::size_t answered(const Request& r) {
  return static_cast<std::size_t>(std::count_if(r.targets.begin(), r.targets.end(),
                                                [](const Target& t) { return t.answered; }));
}

bool unheard(const Request& r, const Target& t) {
  if (t.hint_for != 0 || t.answered) return false;
  return std::none_of(r.targets.begin(), r.targets.end(),
                      [&](const Target& f) { return f.hint_for == t.node && f.answered; });
}

bool done(const Request& r) {
  return r.replied && std::none_of(r.targets.begin(), r.targets.end(),
                                   [&](const Target& t) { return unheard(r, t); });
}

std::string check_invariants(std::uint64_t id, const Request& r, const Context& ctx) {
  // The description is built only for a broken check: this runs after every simulated step.
  auto where = [&] { return "request " + std::to_string(id) + " for " + r.key + ": "; };
  if (!ctx.issued(id)) return where() + "id out of range";
  if (r.quorum < 1 || r.quorum > ctx.config.replicas) return where() + "quorum out of range";
  // N, up to twice N: a write while the ring changes goes to both lists, a sloppy one to
  // stand-ins as well; a request of the ring before a member left may still name it.
  if (r.targets.size() < ctx.config.replicas || r.targets.size() > 2 * ctx.config.replicas) {
    return where() + "wrong number of targets";
  }
  if (r.deadline_ms <= r.started_ms) return where() + "deadline before start";
  if (r.phase == Phase::write &&
      !(r.stamped.version.node == ctx.config.self && ctx.not_after_clock(r.stamped.version))) {
    return where() + "writing a record this node did not stamp";
  }
  if (r.phase != Phase::discover && r.pg_lookup_pending) {
    return where() + "waiting for a PostgreSQL lookup outside discovery";
  }
  if (r.phase != Phase::write && r.pg_write_pending) {
    return where() + "waiting for a PostgreSQL write before writing";
  }
  if (r.replied && r.phase == Phase::discover) return where() + "replied before writing";
  if (r.replied && !r.failed && r.phase == Phase::write && r.pg_write_pending &&
      ctx.config.pg_mode == PgMode::sync) {
    return where() + "acknowledged before PostgreSQL confirmed the write (sync mode)";
  }
  if (r.replied && !r.failed && r.phase == Phase::write && answered(r) < r.quorum + r.extra) {
    return where() + "acknowledged with " + std::to_string(answered(r)) + " of W=" +
           std::to_string(r.quorum) + " (+" + std::to_string(r.extra) + " while the ring changes) acknowledgements";
  }
  return {};
}

}  // namespace kv
