// The text form of a scenario: what `kvsim shrink --out` writes and `kvsim replay --scenario`
// reads back. One fact per line, so that a shrunk failure can be read, edited by hand (drop a
// fault, change a quorum) and replayed:
//
//   kvsim-scenario 1
//   seed 42
//   knob nodes 5                                  (every Knobs field, once each)
//   knob clock_skew_ms 120,-40,0,3,5              (one value per node)
//   keys 8
//   fault at_ms=1200 kind=partition group=1,3 duration_ms=800 torn_mode=0 after_ack=0 step_ms=0
//   client 0
//   op get key=3 r=0 w=0 coordinator=2 think_ms=40
//   end
//
// Blank lines and lines starting with '#' are ignored. The reader trusts nothing: a file may be
// hand-edited or truncated, and run() asserts on a scenario it cannot simulate, so every value
// is range-checked here and every error names its line.
#include <algorithm>
#include <array>
#include <bit>
#include <charconv>
#include <cstdint>
#include <exception>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <variant>
#include <vector>

#include "core/parse.h"
#include "core/ring.h"
#include "sim/rng.h"
#include "sim/sim.h"

namespace kv::sim {
namespace {

constexpr std::string_view format_header = "kvsim-scenario";
constexpr std::uint64_t format_version = 1;

// Virtual times are microseconds in 64 bits and get summed over thousands of operations; these
// bounds (about 11 virtual days, far past any run's length) keep every such sum from wrapping.
constexpr std::uint64_t time_ms_max = 1'000'000'000;
constexpr std::uint64_t time_us_max = time_ms_max * 1000;
// Every put carries a value of up to this many bytes; the replica's own default limit.
constexpr std::uint64_t value_bytes_limit = 1024 * 1024;
constexpr std::uint64_t keys_max = 1024 * 1024;
constexpr std::uint32_t torn_mode_max = 3;
// Past these a node's clock would stop or run backwards, and the drift arithmetic could wrap.
constexpr std::int64_t clock_drift_ppm_limit = static_cast<std::int64_t>(ppm_one) - 1;
constexpr std::int64_t clock_skew_ms_limit = static_cast<std::int64_t>(time_ms_max);

using KnobMember =
    std::variant<std::uint32_t Knobs::*, std::uint64_t Knobs::*, bool Knobs::*>;

struct KnobSpec {
  std::string_view name;
  KnobMember member;
  std::uint64_t min;
  std::uint64_t max;  // limits that depend on other knobs are checked once all are known
};

// Every scalar knob, in the order of Knobs. The two per-node clock vectors are handled apart.
constexpr std::array knob_specs{
    KnobSpec{"nodes", &Knobs::nodes, 1, ring_nodes_max},
    KnobSpec{"replicas", &Knobs::replicas, 1, ring_nodes_max},
    KnobSpec{"read_quorum", &Knobs::read_quorum, 1, ring_nodes_max},
    KnobSpec{"write_quorum", &Knobs::write_quorum, 1, ring_nodes_max},
    KnobSpec{"sloppy_quorum", &Knobs::sloppy_quorum, 0, 1},
    KnobSpec{"vnodes_per_node", &Knobs::vnodes_per_node, 1, ring_vnodes_per_node_max},
    // An interval of 0 would fire again at the same instant, forever.
    KnobSpec{"request_timeout_ms", &Knobs::request_timeout_ms, 1, time_ms_max},
    KnobSpec{"retry_interval_ms", &Knobs::retry_interval_ms, 1, time_ms_max},
    KnobSpec{"sloppy_after_ms", &Knobs::sloppy_after_ms, 0, time_ms_max},
    KnobSpec{"hint_interval_ms", &Knobs::hint_interval_ms, 1, time_ms_max},
    KnobSpec{"tick_interval_ms", &Knobs::tick_interval_ms, 1, time_ms_max},
    KnobSpec{"hints_max", &Knobs::hints_max, 1, 1u << 30},
    KnobSpec{"requests_in_flight_max", &Knobs::requests_in_flight_max, 1, 1u << 30},
    KnobSpec{"hint_deliveries_per_interval_max", &Knobs::hint_deliveries_per_interval_max, 1,
             1u << 30},
    KnobSpec{"ae_interval_ms", &Knobs::ae_interval_ms, 0, time_ms_max},
    KnobSpec{"ae_bytes_per_s", &Knobs::ae_bytes_per_s, 0, std::numeric_limits<std::uint64_t>::max()},
    KnobSpec{"wiped_at_heal", &Knobs::wiped_at_heal, 0, ring_nodes_max},
    KnobSpec{"tombstone_grace_ms", &Knobs::tombstone_grace_ms, 0, time_ms_max},
    KnobSpec{"heartbeat_interval_ms", &Knobs::heartbeat_interval_ms, 0, time_ms_max},
    KnobSpec{"fd_phi_threshold_tenths", &Knobs::fd_phi_threshold_tenths, 0, 1000},
    KnobSpec{"drop_ppm", &Knobs::drop_ppm, 0, ppm_one},
    KnobSpec{"duplicate_ppm", &Knobs::duplicate_ppm, 0, ppm_one},
    KnobSpec{"latency_us_min", &Knobs::latency_us_min, 0, time_us_max},
    KnobSpec{"latency_us_jitter", &Knobs::latency_us_jitter, 0, time_us_max},
    KnobSpec{"long_tail_ppm", &Knobs::long_tail_ppm, 0, ppm_one},
    KnobSpec{"long_tail_us_max", &Knobs::long_tail_us_max, 0, time_us_max},
    KnobSpec{"corrupt_ppm", &Knobs::corrupt_ppm, 0, ppm_one},
    KnobSpec{"fsync_us_min", &Knobs::fsync_us_min, 0, time_us_max},
    KnobSpec{"fsync_us_jitter", &Knobs::fsync_us_jitter, 0, time_us_max},
    KnobSpec{"fsync_slow_ppm", &Knobs::fsync_slow_ppm, 0, ppm_one},
    KnobSpec{"fsync_slow_us_max", &Knobs::fsync_slow_us_max, 0, time_us_max},
    KnobSpec{"snapshot_wal_bytes", &Knobs::snapshot_wal_bytes, 0,
             std::numeric_limits<std::uint64_t>::max()},
    KnobSpec{"value_bytes_max", &Knobs::value_bytes_max, 0, value_bytes_limit},
    KnobSpec{"quiet_ms", &Knobs::quiet_ms, 0, time_ms_max},
    KnobSpec{"kept_down_mask", &Knobs::kept_down_mask, 0, std::numeric_limits<std::uint64_t>::max()},
    KnobSpec{"kept_down_at_ms", &Knobs::kept_down_at_ms, 0, time_ms_max},
    KnobSpec{"remove_after_ms", &Knobs::remove_after_ms, 0, time_ms_max},
    KnobSpec{"client_timeout_ms", &Knobs::client_timeout_ms, 1, time_ms_max},
    KnobSpec{"pg_mode", &Knobs::pg_mode, 0, 2},
    KnobSpec{"legacy", &Knobs::legacy, 0, 1},
    KnobSpec{"legacy_key_mask", &Knobs::legacy_key_mask, 0,
             std::numeric_limits<std::uint64_t>::max()},
    KnobSpec{"bridge_us_min", &Knobs::bridge_us_min, 0, time_us_max},
    KnobSpec{"bridge_us_jitter", &Knobs::bridge_us_jitter, 0, time_us_max},
    KnobSpec{"bridge_error_ppm", &Knobs::bridge_error_ppm, 0, ppm_one},
    KnobSpec{"bridge_timeout_ms", &Knobs::bridge_timeout_ms, 0, time_ms_max},
    KnobSpec{"pg_queue_max", &Knobs::pg_queue_max, 1, 1u << 30},
    KnobSpec{"legacy_negative_ttl_ms", &Knobs::legacy_negative_ttl_ms, 0, time_ms_max},
    KnobSpec{"legacy_breaker_failures", &Knobs::legacy_breaker_failures, 1, 1u << 30},
    KnobSpec{"legacy_breaker_open_ms", &Knobs::legacy_breaker_open_ms, 0, time_ms_max},
};
constexpr std::string_view knob_clock_skew = "clock_skew_ms";
constexpr std::string_view knob_clock_drift = "clock_drift_ppm";

// The number of fields of an aggregate: the most initializers `T{...}` accepts. A field added
// to a scenario type and not to the text form would silently not round-trip; this makes it a
// compile error here instead.
struct AnyField {
  template <typename T>
  operator T() const;  // never defined: only used in unevaluated requires-expressions
};
template <typename T, typename... Given>
constexpr std::size_t field_count() {
  if constexpr (requires { T{Given{}..., AnyField{}}; }) {
    return field_count<T, Given..., AnyField>();
  } else {
    return sizeof...(Given);
  }
}
static_assert(field_count<Knobs>() == knob_specs.size() + 2, "a knob is missing from knob_specs");
static_assert(field_count<Fault>() == 7, "Fault changed: update the fault line");
static_assert(field_count<ClientOp>() == 6, "ClientOp changed: update the op line");
static_assert(field_count<Scenario>() == 5, "Scenario changed: update the text form");

std::uint64_t knob_value(const Knobs& k, const KnobMember& member) {
  return std::visit([&k](auto m) { return static_cast<std::uint64_t>(k.*m); }, member);
}

void set_knob(Knobs& k, const KnobMember& member, std::uint64_t value) {
  std::visit(
      [&k, value](auto m) {
        using Field = std::remove_reference_t<decltype(k.*m)>;
        if constexpr (std::is_same_v<Field, bool>) {
          k.*m = value != 0;
        } else {
          k.*m = static_cast<Field>(value);
        }
      },
      member);
}

std::string_view fault_kind_name(FaultKind kind) {
  switch (kind) {
    case FaultKind::partition: return "partition";
    case FaultKind::partition_one_way: return "partition_one_way";
    case FaultKind::crash: return "crash";
    case FaultKind::pg_outage: return "pg_outage";
    case FaultKind::legacy_outage: return "legacy_outage";
    case FaultKind::wipe: return "wipe";
    case FaultKind::disk_loss: return "disk_loss";
    case FaultKind::clock_step: return "clock_step";
    case FaultKind::clog: return "clog";
  }
  return "?";
}

std::optional<FaultKind> fault_kind_from(std::string_view name) {
  for (FaultKind k : {FaultKind::partition, FaultKind::partition_one_way, FaultKind::crash,
                      FaultKind::pg_outage, FaultKind::legacy_outage, FaultKind::wipe,
                      FaultKind::disk_loss, FaultKind::clock_step, FaultKind::clog}) {
    if (fault_kind_name(k) == name) return k;
  }
  return std::nullopt;
}

std::optional<OpType> op_from(std::string_view name) {
  for (OpType op : {OpType::get, OpType::put, OpType::del}) {
    if (op_name(op) == name) return op;
  }
  return std::nullopt;
}

std::string str(std::string_view s) { return std::string(s); }

template <typename T>
std::string join(const std::vector<T>& values) {
  std::string out;
  for (std::size_t i = 0; i < values.size(); ++i) {
    if (i) out += ',';
    out += std::to_string(values[i]);
  }
  return out;
}

}  // namespace

std::string scenario_to_text(const Scenario& s) {
  std::string out;
  auto line = [&out](std::string_view a, const std::string& b) {
    out.append(a).append(" ").append(b).append("\n");
  };
  line(format_header, std::to_string(format_version));
  line("seed", std::to_string(s.seed));
  for (const KnobSpec& spec : knob_specs) {
    line("knob " + std::string(spec.name), std::to_string(knob_value(s.knobs, spec.member)));
  }
  line("knob " + std::string(knob_clock_skew), join(s.knobs.clock_skew_ms));
  line("knob " + std::string(knob_clock_drift), join(s.knobs.clock_drift_ppm));
  line("keys", std::to_string(s.keys));
  for (const Fault& f : s.faults) {
    line("fault", "at_ms=" + std::to_string(f.at_ms) + " kind=" +
                      std::string(fault_kind_name(f.kind)) + " group=" + join(f.group) +
                      " duration_ms=" + std::to_string(f.duration_ms) +
                      " torn_mode=" + std::to_string(f.torn_mode) +
                      " after_ack=" + (f.after_ack ? "1" : "0") +
                      " step_ms=" + std::to_string(f.step_ms));
  }
  for (std::size_t c = 0; c < s.clients.size(); ++c) {
    line("client", std::to_string(c));
    for (const ClientOp& op : s.clients[c]) {
      line("op", std::string(op_name(op.op)) + " key=" + std::to_string(op.key) +
                     " r=" + std::to_string(op.r) + " w=" + std::to_string(op.w) +
                     " coordinator=" + std::to_string(op.coordinator) +
                     " think_ms=" + std::to_string(op.think_ms));
    }
  }
  out += "end\n";
  return out;
}

namespace {

// Whole-token integer parsing with the project's one parser (core/parse.h): no sign on unsigned
// values, no spaces, no trailing junk. Leaves `out` alone when the token does not parse.
template <typename T>
bool parse_int(std::string_view text, T& out) {
  const std::optional<T> value = parse_integer<T>(text);
  if (value) out = *value;
  return value.has_value();
}

// Why a token did not parse, said plainly: a hand-edited file is the usual culprit.
template <typename T>
std::string number_problem(std::string_view text) {
  T v{};
  const auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec == std::errc::result_out_of_range) return "'" + str(text) + "' is out of range";
  return "'" + str(text) +
         (std::is_signed_v<T> ? "' is not an integer" : "' is not a non-negative integer");
}

std::vector<std::string_view> split(std::string_view text, char sep) {
  std::vector<std::string_view> parts;
  std::size_t start = 0;
  for (;;) {
    const std::size_t at = text.find(sep, start);
    parts.push_back(text.substr(start, at == std::string_view::npos ? at : at - start));
    if (at == std::string_view::npos) return parts;
    start = at + 1;
  }
}

std::vector<std::string_view> words(std::string_view line) {
  std::vector<std::string_view> out;
  std::size_t i = 0;
  while (i < line.size()) {
    while (i < line.size() && (line[i] == ' ' || line[i] == '\t')) ++i;
    const std::size_t start = i;
    while (i < line.size() && line[i] != ' ' && line[i] != '\t') ++i;
    if (i > start) out.push_back(line.substr(start, i - start));
  }
  return out;
}

// The `name=value` fields of a fault or op line, each required exactly once.
class Fields {
 public:
  // Returns an error message, or an empty string.
  std::string load(const std::vector<std::string_view>& tokens, std::size_t first,
                   const std::vector<std::string_view>& allowed) {
    names_ = allowed;
    values_.assign(allowed.size(), std::nullopt);
    for (std::size_t i = first; i < tokens.size(); ++i) {
      const std::size_t eq = tokens[i].find('=');
      if (eq == std::string_view::npos) return "expected name=value, got '" + str(tokens[i]) + "'";
      const std::string_view name = tokens[i].substr(0, eq);
      const auto at = std::find(names_.begin(), names_.end(), name);
      if (at == names_.end()) return "unknown field '" + str(name) + "'";
      auto& slot = values_[static_cast<std::size_t>(at - names_.begin())];
      if (slot) return "field '" + str(name) + "' given twice";
      slot = tokens[i].substr(eq + 1);
    }
    for (std::size_t i = 0; i < names_.size(); ++i) {
      if (!values_[i]) return "missing field '" + str(names_[i]) + "'";
    }
    return {};
  }

  std::string_view get(std::string_view name) const {
    const auto at = std::find(names_.begin(), names_.end(), name);
    return *values_[static_cast<std::size_t>(at - names_.begin())];
  }

  // Parses field `name` into `out`, checking [min, max]; returns an error or an empty string.
  template <typename T>
  std::string number(std::string_view name, T& out, std::uint64_t min, std::uint64_t max) const {
    std::uint64_t v = 0;
    if (!parse_int(get(name), v)) {
      return str(name) + ": " + number_problem<std::uint64_t>(get(name));
    }
    if (v < min || v > max) {
      return str(name) + ": " + std::to_string(v) + " is out of range [" + std::to_string(min) +
             ", " + std::to_string(max) + "]";
    }
    out = static_cast<T>(v);
    return {};
  }

 private:
  std::vector<std::string_view> names_;
  std::vector<std::optional<std::string_view>> values_;
};

// Reads a scenario line by line. The preamble (seed, knobs, keys) comes first; the first fault,
// client or end line closes it, and from then on every value is checked against the knobs.
class Parser {
 public:
  Expected<Scenario> parse(std::string_view text);

 private:
  std::string parse_line(std::string_view line);
  std::string header(const std::vector<std::string_view>& w);
  std::string preamble(const std::vector<std::string_view>& w);
  std::string knob(const std::vector<std::string_view>& w);
  template <typename T>
  std::string clock_vector(std::string_view name, std::string_view list, std::vector<T>& out);
  std::string close_preamble();
  std::string fault(const std::vector<std::string_view>& w);
  std::string client(const std::vector<std::string_view>& w);
  std::string op(const std::vector<std::string_view>& w);
  std::string node_id(std::string_view what, std::string_view text, NodeId& out) const;

  enum class Stage { header, preamble, faults, clients, done };
  Stage stage_ = Stage::header;
  Scenario s_;
  std::size_t line_no_ = 0;
  // The line each preamble entry was read from (0: not yet), to reject repeats and to point at
  // the right line when the knobs disagree with each other.
  std::size_t seed_line_ = 0, keys_line_ = 0;
  std::array<std::size_t, knob_specs.size()> knob_line_{};
  std::size_t skew_line_ = 0, drift_line_ = 0;
};

Expected<Scenario> Parser::parse(std::string_view text) {
  std::size_t start = 0;
  while (start < text.size()) {
    ++line_no_;
    std::size_t end = text.find('\n', start);
    if (end == std::string_view::npos) end = text.size();
    std::string_view line = text.substr(start, end - start);
    start = end + 1;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    std::string problem = parse_line(line);
    if (!problem.empty()) return invalid_input("line " + std::to_string(line_no_) + ": " + problem);
  }
  if (stage_ == Stage::header) {
    return invalid_input("empty input: no '" + std::string(format_header) + "' line");
  }
  if (stage_ != Stage::done) {
    return invalid_input("line " + std::to_string(line_no_) +
                         ": input ends without an 'end' line (truncated?)");
  }
  return std::move(s_);
}

std::string Parser::parse_line(std::string_view line) {
  const auto w = words(line);
  if (w.empty() || w[0].front() == '#') return {};
  if (stage_ == Stage::done) return "text after the 'end' line";
  if (stage_ == Stage::header) return header(w);
  if (w[0] == "end") {
    if (w.size() != 1) return "'end' takes no arguments";
    if (stage_ == Stage::preamble) {
      if (std::string e = close_preamble(); !e.empty()) return e;
    }
    stage_ = Stage::done;
    return {};
  }
  if (w[0] == "fault" || w[0] == "client") {
    if (stage_ == Stage::preamble) {
      if (std::string e = close_preamble(); !e.empty()) return e;
      stage_ = Stage::faults;
    }
    return w[0] == "fault" ? fault(w) : client(w);
  }
  if (w[0] == "op") return op(w);
  if (w[0] != "seed" && w[0] != "keys" && w[0] != "knob") {
    return "unknown line kind '" + str(w[0]) + "'";
  }
  if (stage_ != Stage::preamble) {
    return "'" + str(w[0]) + "' must come before the first fault or client line";
  }
  return preamble(w);
}

std::string Parser::header(const std::vector<std::string_view>& w) {
  std::uint64_t version = 0;
  if (w[0] != format_header || w.size() != 2 || !parse_int(w[1], version)) {
    return "expected '" + std::string(format_header) + " " + std::to_string(format_version) +
           "' as the first line";
  }
  if (version != format_version) {
    return "format version " + std::to_string(version) + " is not supported (this kvsim reads " +
           std::to_string(format_version) + ")";
  }
  stage_ = Stage::preamble;
  return {};
}

std::string Parser::preamble(const std::vector<std::string_view>& w) {
  if (w[0] == "knob") return knob(w);
  if (w.size() != 2) return "'" + str(w[0]) + "' takes exactly one value";
  std::size_t& seen = w[0] == "seed" ? seed_line_ : keys_line_;
  if (seen) return "'" + str(w[0]) + "' given twice (first on line " + std::to_string(seen) + ")";
  seen = line_no_;
  if (w[0] == "seed") {
    if (!parse_int(w[1], s_.seed)) return "seed: " + number_problem<std::uint64_t>(w[1]);
    return {};
  }
  if (!parse_int(w[1], s_.keys) || s_.keys < 1 || s_.keys > keys_max) {
    return "keys: '" + str(w[1]) + "' is not a number in [1, " +
           std::to_string(keys_max) + "]";
  }
  return {};
}

std::string Parser::knob(const std::vector<std::string_view>& w) {
  if (w.size() != 3) return "expected 'knob <name> <value>'";
  const std::string name(w[1]);
  if (w[1] == knob_clock_skew || w[1] == knob_clock_drift) {
    std::size_t& seen = w[1] == knob_clock_skew ? skew_line_ : drift_line_;
    if (seen) return "knob " + name + " given twice (first on line " + std::to_string(seen) + ")";
    seen = line_no_;
    return w[1] == knob_clock_skew ? clock_vector(w[1], w[2], s_.knobs.clock_skew_ms)
                                   : clock_vector(w[1], w[2], s_.knobs.clock_drift_ppm);
  }
  for (std::size_t i = 0; i < knob_specs.size(); ++i) {
    const KnobSpec& spec = knob_specs[i];
    if (spec.name != w[1]) continue;
    if (knob_line_[i]) {
      return "knob " + name + " given twice (first on line " + std::to_string(knob_line_[i]) + ")";
    }
    knob_line_[i] = line_no_;
    std::uint64_t v = 0;
    if (!parse_int(w[2], v)) {
      return "knob " + name + ": " + number_problem<std::uint64_t>(w[2]);
    }
    if (v < spec.min || v > spec.max) {
      return "knob " + name + ": " + std::to_string(v) + " is out of range [" +
             std::to_string(spec.min) + ", " + std::to_string(spec.max) + "]";
    }
    set_knob(s_.knobs, spec.member, v);
    return {};
  }
  return "unknown knob '" + name + "'";
}

template <typename T>
std::string Parser::clock_vector(std::string_view name, std::string_view list,
                                 std::vector<T>& out) {
  const std::int64_t limit = name == knob_clock_skew ? clock_skew_ms_limit : clock_drift_ppm_limit;
  out.clear();
  for (std::string_view item : split(list, ',')) {
    std::int64_t v = 0;
    if (!parse_int(item, v)) {
      return "knob " + str(name) + ": " + number_problem<std::int64_t>(item);
    }
    if (v < -limit || v > limit) {
      return "knob " + std::string(name) + ": " + std::to_string(v) + " is out of range [" +
             std::to_string(-limit) + ", " + std::to_string(limit) + "]";
    }
    if (out.size() >= ring_nodes_max) return "knob " + std::string(name) + ": too many values";
    out.push_back(static_cast<T>(v));
  }
  return {};
}

// Checks that the preamble is complete and consistent: everything after it relies on the knobs.
std::string Parser::close_preamble() {
  if (!seed_line_) return "the 'seed' line is missing";
  for (std::size_t i = 0; i < knob_specs.size(); ++i) {
    if (!knob_line_[i]) return "knob " + str(knob_specs[i].name) + " is missing";
  }
  if (!skew_line_) return "knob " + str(knob_clock_skew) + " is missing";
  if (!drift_line_) return "knob " + str(knob_clock_drift) + " is missing";
  if (!keys_line_) return "the 'keys' line is missing";
  const Knobs& k = s_.knobs;
  auto exceeds = [this](std::string_view name, std::uint64_t value, std::string_view limit_name,
                        std::uint64_t limit) {
    std::size_t line = 0;
    for (std::size_t i = 0; i < knob_specs.size(); ++i) {
      if (knob_specs[i].name == name) line = knob_line_[i];
    }
    return "knob " + str(name) + " (line " + std::to_string(line) + ") is " +
           std::to_string(value) + ", more than " + str(limit_name) + " (" +
           std::to_string(limit) + ")";
  };
  if (k.replicas > k.nodes) return exceeds("replicas", k.replicas, "nodes", k.nodes);
  if (k.read_quorum > k.replicas) {
    return exceeds("read_quorum", k.read_quorum, "replicas", k.replicas);
  }
  if (k.write_quorum > k.replicas) {
    return exceeds("write_quorum", k.write_quorum, "replicas", k.replicas);
  }
  if (k.wiped_at_heal > k.nodes) return exceeds("wiped_at_heal", k.wiped_at_heal, "nodes", k.nodes);
  if (k.wiped_at_heal != 0 && (k.kept_down_mask >> (k.wiped_at_heal - 1) & 1)) {
    return "knob wiped_at_heal names a node kept down";
  }
  if (k.nodes < 64 && k.kept_down_mask >> k.nodes) {
    return "knob kept_down_mask names a node above nodes (" + std::to_string(k.nodes) + ")";
  }
  if (const auto down = static_cast<std::uint32_t>(std::popcount(k.kept_down_mask));
      down > 0 && down >= k.replicas) {
    return exceeds("kept_down_mask's node count", down, "replicas - 1", k.replicas - 1);
  }
  if (k.remove_after_ms != 0 && std::popcount(k.kept_down_mask) != 1) {
    return "knob remove_after_ms needs exactly one node in kept_down_mask (the one removed)";
  }
  auto per_node = [&k](std::string_view name, std::size_t line, std::size_t size) {
    return "knob " + str(name) + " (line " + std::to_string(line) + ") has " +
           std::to_string(size) + " values; it needs one per node (" + std::to_string(k.nodes) +
           ")";
  };
  if (k.clock_skew_ms.size() != k.nodes) {
    return per_node(knob_clock_skew, skew_line_, k.clock_skew_ms.size());
  }
  if (k.clock_drift_ppm.size() != k.nodes) {
    return per_node(knob_clock_drift, drift_line_, k.clock_drift_ppm.size());
  }
  return {};
}

std::string Parser::node_id(std::string_view what, std::string_view text, NodeId& out) const {
  if (!parse_int(text, out) || out < 1 || out > s_.knobs.nodes) {
    return std::string(what) + ": '" + std::string(text) + "' is not a node id in [1, " +
           std::to_string(s_.knobs.nodes) + "]";
  }
  return {};
}

std::string Parser::fault(const std::vector<std::string_view>& w) {
  if (stage_ == Stage::clients) return "fault lines must come before the first client line";
  Fields f;
  if (std::string e =
          f.load(w, 1, {"at_ms", "kind", "group", "duration_ms", "torn_mode", "after_ack",
                        "step_ms"});
      !e.empty()) {
    return "fault: " + e;
  }
  Fault fault;
  std::string e = f.number("at_ms", fault.at_ms, 0, time_ms_max);
  if (e.empty()) e = f.number("duration_ms", fault.duration_ms, 0, time_ms_max);
  if (e.empty()) e = f.number("torn_mode", fault.torn_mode, 0, torn_mode_max);
  if (e.empty()) e = f.number("after_ack", fault.after_ack, 0, 1);
  if (e.empty() && (!parse_int(f.get("step_ms"), fault.step_ms) ||
                    fault.step_ms < -clock_skew_ms_limit || fault.step_ms > clock_skew_ms_limit)) {
    e = "step_ms: '" + str(f.get("step_ms")) + "' is not an integer in [" +
        std::to_string(-clock_skew_ms_limit) + ", " + std::to_string(clock_skew_ms_limit) + "]";
  }
  if (!e.empty()) return "fault: " + e;
  const auto kind = fault_kind_from(f.get("kind"));
  if (!kind) {
    return "fault: kind: '" + str(f.get("kind")) +
           "' is not one of partition, partition_one_way, crash, pg_outage, legacy_outage, "
           "wipe, disk_loss, clock_step, clog";
  }
  fault.kind = *kind;
  for (std::string_view item : split(f.get("group"), ',')) {
    if (item.empty() && f.get("group").empty()) break;  // service faults name no node
    NodeId id = 0;
    if (std::string ne = node_id("group", item, id); !ne.empty()) return "fault: " + ne;
    if (std::find(fault.group.begin(), fault.group.end(), id) != fault.group.end()) {
      return "fault: group: node " + std::to_string(id) + " listed twice";
    }
    fault.group.push_back(id);
  }
  if (!s_.faults.empty() && fault.at_ms < s_.faults.back().at_ms) {
    return "fault: at_ms " + std::to_string(fault.at_ms) +
           " is before the previous fault's; faults are ordered by at_ms";
  }
  s_.faults.push_back(std::move(fault));
  return {};
}

std::string Parser::client(const std::vector<std::string_view>& w) {
  std::size_t index = 0;
  if (w.size() != 2 || !parse_int(w[1], index)) return "expected 'client <index>'";
  if (index != s_.clients.size()) {
    return "client " + std::to_string(index) + " out of order; expected client " +
           std::to_string(s_.clients.size());
  }
  stage_ = Stage::clients;
  s_.clients.emplace_back();
  return {};
}

std::string Parser::op(const std::vector<std::string_view>& w) {
  if (stage_ != Stage::clients) return "'op' line before any 'client' line";
  if (w.size() < 2) return "expected 'op <get|put|del> key=... r=... w=... ...'";
  const auto kind = op_from(w[1]);
  if (!kind) return "op: '" + str(w[1]) + "' is not one of get, put, del";
  Fields f;
  if (std::string e = f.load(w, 2, {"key", "r", "w", "coordinator", "think_ms"}); !e.empty()) {
    return "op: " + e;
  }
  ClientOp op;
  op.op = *kind;
  const Knobs& k = s_.knobs;
  std::string e = f.number("key", op.key, 0, s_.keys - 1);
  if (e.empty()) e = f.number("r", op.r, 0, k.replicas);
  if (e.empty()) e = f.number("w", op.w, 0, k.replicas);
  if (e.empty()) e = node_id("coordinator", f.get("coordinator"), op.coordinator);
  if (e.empty()) e = f.number("think_ms", op.think_ms, 0, time_ms_max);
  if (!e.empty()) return "op: " + e;
  s_.clients.back().push_back(op);
  return {};
}

}  // namespace

Expected<Scenario> scenario_from_text(std::string_view text) {
  // Nothing below is expected to throw but allocation; a scenario reader must not take the
  // caller down with it either way.
  try {
    Parser parser;
    return parser.parse(text);
  } catch (const std::exception& e) {
    return invalid_input(std::string("cannot read scenario: ") + e.what());
  }
}

}  // namespace kv::sim
