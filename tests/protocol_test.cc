// Data-driven protocol scenarios, in the manner of etcd raft's testdata: each file of
// tests/testdata/protocol/*.txt is a script of commands over the in-test network (test_net.h),
// and beneath each command the golden trace of everything it caused: every batch a node handed
// out (persist entries, messages, client replies, bridge calls), every answer of PostgreSQL and
// the legacy API, every message lost. The test runs the commands and compares the whole trace.
// After every command every node's check_invariants() and check_trees() must come back empty.
//
// File format (etcd datadriven):
//     # a comment
//     <command> <args...>
//     ----
//     <expected output, one line per item>
//     <a blank line ends it>
//
// Commands (nodes are n1..nN; keys and values are single words; `x*300` stands for 300 x's):
//   cluster nodes=3 [n=3] [r=2] [w=2] [sloppy] [pg=off|sync|async] [legacy] [timeout=ms]
//           [retry=ms] [sloppy-after=ms] [hint-interval=ms] [queue=keys] [breaker=failures]
//           [breaker-open=ms] [negative-ttl=ms] [ae=ms] [ae-bytes=bytes_per_s] [vnodes=K]
//                            (ae: anti-entropy's interval, off unless set)
//                            a fresh cluster (fresh services too), time at 1000000 ms
//   put n1 key value [w=N]   a client request to coordinator n1: the coordinator's batch
//   get n1 key [r=N]
//   del n1 key [w=N]
//   stabilize [rounds=N]     in rounds until quiet: take every node's batch, answer the bridge
//                            calls not held, deliver every message sent (or lose it). With
//                            rounds=N: N rounds at most, then take the batches the last round
//                            caused, without delivering them
//   tick ms                  move time on, tick every node that is up, then stabilize
//   down n2 / up n2          n2 stops (no messages either way, no ticks) / resumes, state kept
//   restart n2               crash and restart: n2 keeps only what it had persisted
//   cut n1 n2 / heal         lose every message between n1 and n2 / restore every link
//   skew n2 +500             n2's clock runs 500 ms ahead of the network's time (-500 behind)
//   pg fail|ok|hold|release  PostgreSQL refuses calls / answers / keeps calls unanswered
//   pg set key value|tombstone physical_ms
//                            a row in PostgreSQL, at version physical_ms.0@n1
//   legacy fail|ok|hold|release, legacy set key value
//   owners key               the key's preference list and its fallbacks
//   dump n1                  n1's store, hints and bookkeeping; `dump pg` the PostgreSQL table
//   stats n1                 n1's non-zero counters
//
// Trace lines: `n1:` opens the batch n1 handed out, with its items indented beneath it in the
// order the driver carries them out (persist, send, reply, call). Versions print as
// physical_ms.counter@node, records as {"value" version}, {tombstone version} or none; a long
// run of one byte prints as x*300.
//
// Rewriting: KV_REWRITE_GOLDEN=1 ./build/bin/core_tests --gtest_filter='Protocol*' writes the
// traces the code produces now in place of the expected ones. Read the diff before committing it.
#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <deque>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "core/parse.h"
#include "core/replica.h"
#include "tests/test_net.h"

#ifndef KV_PROTOCOL_TESTDATA_DIR
#error "KV_PROTOCOL_TESTDATA_DIR must name tests/testdata/protocol (set in tests/CMakeLists.txt)"
#endif

namespace kv {
namespace {

using namespace test;

constexpr int stabilize_rounds_max = 1000;
constexpr std::size_t shown_bytes_max = 40;  // longer keys and values print abbreviated

// ---- Printing ----

// A key or value as text: quoted and escaped, or `x*300` for a run of one byte, or its quoted
// beginning and its length.
std::string show_text(const std::string& s) {
  if (s.size() > shown_bytes_max) {
    if (std::all_of(s.begin(), s.end(), [&](char c) { return c == s[0]; })) {
      return std::string(1, s[0]) + "*" + std::to_string(s.size());
    }
    return show_text(s.substr(0, shown_bytes_max)) + "...(" + std::to_string(s.size()) + " bytes)";
  }
  std::string out = "\"";
  for (unsigned char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (std::isprint(c)) {
      out += static_cast<char>(c);
    } else {
      static const char hex[] = "0123456789abcdef";
      out += "\\x";
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
  return out + "\"";
}

// Keys print bare when they are plain words.
std::string show_key(const std::string& k) {
  const bool plain = !k.empty() && k.size() <= shown_bytes_max &&
                     std::all_of(k.begin(), k.end(), [](unsigned char c) {
                       return std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == ':' ||
                              c == '/';
                     });
  return plain ? k : show_text(k);
}

std::string show(const Version& v) { return v.to_string(); }

std::string show(const Record& r) {
  return r.tombstone ? "{tombstone " + show(r.version) + "}"
                     : "{" + show_text(r.value) + " " + show(r.version) + "}";
}

std::string show(const std::optional<Record>& r) { return r ? show(*r) : "none"; }

std::string node(NodeId id) { return "n" + std::to_string(id); }

std::string show(WriteKind k) {
  return k == WriteKind::client          ? "client"
         : k == WriteKind::repair        ? "repair"
         : k == WriteKind::hint_delivery ? "hint-delivery"
         : k == WriteKind::anti_entropy  ? "anti-entropy"
                                         : "reap";
}

std::string show(const Message& m) {
  std::string out = node(m.from) + "->" + node(m.to) + " ";
  std::visit(
      [&](const auto& b) {
        using T = std::decay_t<decltype(b)>;
        std::string head;
        if constexpr (requires { b.req; }) head = " req=" + std::to_string(b.req);
        if constexpr (keyed_message_v<T>) head += " key=" + show_key(b.key);
        if constexpr (std::is_same_v<T, AeTreeReq>) {
          out += "ae-tree-req" + head + " ranges=" + std::to_string(b.ranges.size()) + " filled";
          for (const AeRangeRoot& r : b.ranges) {
            if (r.root != 0) out += " r" + std::to_string(r.range);
          }
        }
        if constexpr (std::is_same_v<T, AeTreeResp>) {
          out += "ae-tree-resp" + head;
          for (const AeRangeLeaves& r : b.ranges) out += " r" + std::to_string(r.range);
        }
        if constexpr (std::is_same_v<T, AeKeysReq>) {
          out += "ae-keys-req" + head;
          for (const AeBucket& k : b.buckets) {
            out += " r" + std::to_string(k.range) + "/" + std::to_string(k.leaf) +
                   (k.after.empty() ? "" : ">" + show_key(k.after)) +
                   (k.upto.empty() ? "" : "<=" + show_key(k.upto));
          }
          for (const AeKeyVersion& k : b.keys) out += " " + show_key(k.key) + "@" + show(k.version);
        }
        if constexpr (std::is_same_v<T, AeKeysResp>) {
          out += "ae-keys-resp" + head + " want";
          for (const std::string& k : b.want) out += " " + show_key(k);
        }
        if constexpr (std::is_same_v<T, Heartbeat>) out += "heartbeat gen=" + std::to_string(b.generation);
        if constexpr (std::is_same_v<T, Gossip>) {
          out += "gossip";
          for (const Member& mb : b.members) {
            out += " " + node(mb.id) + ":" + std::string(member_state_name(mb.state)) +
                   (mb.moved ? "(moved)" : "") + "@" + std::to_string(mb.generation) + "." +
                   std::to_string(mb.epoch);
          }
        }
        if constexpr (std::is_same_v<T, ReadReq>) out += "read-req" + head;
        if constexpr (std::is_same_v<T, ReadResp>) out += "read-resp" + head + " " + show(b.record);
        if constexpr (std::is_same_v<T, WriteReq>) {
          out += "write-req " + show(b.kind) + head + " " + show(b.record);
          if (b.hint_for != 0) out += " hint-for=" + node(b.hint_for);
        }
        if constexpr (std::is_same_v<T, WriteAck>) {
          out += "write-ack " + show(b.kind) + head + " " + show(b.version);
        }
      },
      m.body);
  return out;
}

std::string show(const WalEntry& e) {
  return std::visit(
      [](const auto& w) -> std::string {
        using T = std::decay_t<decltype(w)>;
        if constexpr (std::is_same_v<T, WalPut>) {
          return "put key=" + show_key(w.key) + " " + show(w.record);
        } else if constexpr (std::is_same_v<T, WalHint>) {
          return "hint for=" + node(w.target) + " key=" + show_key(w.key) + " " + show(w.record);
        } else if constexpr (std::is_same_v<T, WalHintDone>) {
          return "hint-done for=" + node(w.target) + " key=" + show_key(w.key) + " " +
                 show(w.version);
        } else if constexpr (std::is_same_v<T, WalDrop>) {
          return "drop key=" + show_key(w.key) + " " + show(w.version);
        } else {
          std::string out = "members";
          for (const Member& m : w.members) out += " " + node(m.id) + ":" + std::string(member_state_name(m.state)) + (m.moved ? "(moved)" : "");
          return out;
        }
      },
      e);
}

std::string errc_name(const std::error_code& e) {
  if (e.category() != errc_category()) return e.category().name() + std::string(":") + std::to_string(e.value());
  switch (static_cast<Errc>(e.value())) {
    case Errc::invalid_argument: return "invalid_argument";
    case Errc::quorum_unavailable: return "quorum_unavailable";
    case Errc::timeout: return "timeout";
    case Errc::overloaded: return "overloaded";
    case Errc::unavailable: return "unavailable";
  }
  return "errc:" + std::to_string(e.value());
}

std::string show_call(const BridgeCall& c) {
  std::string out = std::string(bridge_name(c.kind)) + "#" + std::to_string(c.id) +
                    " key=" + show_key(c.key);
  if (c.record) out += " " + show(*c.record);
  return out;
}

// ---- Parsing a script ----

struct Command {
  std::size_t line = 0;              // 1-based, of the command
  std::string text;                  // the command line as written
  std::vector<std::string> expected;
  bool has_expected = false;         // a `----` line follows
  std::size_t expected_begin = 0, expected_end = 0;  // 0-based line range of the expected output
};

std::vector<std::string> split_lines(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string l; std::getline(in, l);) lines.push_back(l);
  return lines;
}

std::vector<Command> parse_script(const std::vector<std::string>& lines) {
  std::vector<Command> out;
  for (std::size_t i = 0; i < lines.size(); ++i) {
    const std::string& l = lines[i];
    if (l.empty() || l[0] == '#') continue;
    Command c;
    c.line = i + 1;
    c.text = l;
    if (i + 1 < lines.size() && lines[i + 1] == "----") {
      c.has_expected = true;
      i += 2;
      c.expected_begin = i;
      while (i < lines.size() && !lines[i].empty()) c.expected.push_back(lines[i++]);
      c.expected_end = i;
    } else {
      c.expected_begin = c.expected_end = i + 1;
    }
    out.push_back(std::move(c));
  }
  return out;
}

// ---- Running a script ----

class Script {
 public:
  std::vector<std::string> run(const std::string& text) {
    out_.clear();
    std::istringstream in(text);
    std::vector<std::string> words;
    std::map<std::string, std::string> named;
    for (std::string w; in >> w;) {
      auto eq = w.find('=');
      if (eq != std::string::npos && eq > 0 && !words.empty()) {
        named[w.substr(0, eq)] = w.substr(eq + 1);
      } else {
        words.push_back(w);
      }
    }
    if (words.empty()) return fail("empty command");
    const std::string& cmd = words[0];
    if (cmd == "cluster") {
      cluster(words, named);
    } else if (!net_) {
      return fail("no cluster yet: start with `cluster nodes=N`");
    } else if (cmd == "put" || cmd == "get" || cmd == "del") {
      request(words, named);
    } else if (cmd == "stabilize") {
      int rounds = stabilize_rounds_max;
      for (const auto& [k, v] : named) {
        if (k != "rounds") return fail("unknown setting " + k + " for stabilize");
        rounds = static_cast<int>(std::min<std::uint64_t>(number(v), stabilize_rounds_max));
      }
      stabilize(rounds, named.empty());
    } else if (cmd == "tick") {
      if (words.size() != 2) return fail("usage: tick ms");
      net_->tick(number(words[1]));
      stabilize();
    } else if (cmd == "down" || cmd == "up" || cmd == "restart") {
      if (words.size() != 2) return fail("usage: " + cmd + " nK");
      const NodeId id = node_arg(words[1]);
      if (!ok_) return out_;
      if (cmd == "down") net_->down_.insert(id);
      if (cmd == "up") net_->down_.erase(id);
      if (cmd == "restart") restart(id);
    } else if (cmd == "cut") {
      if (words.size() != 3) return fail("usage: cut nA nB");
      const NodeId a = node_arg(words[1]), b = node_arg(words[2]);
      net_->cut_.insert({std::min(a, b), std::max(a, b)});
    } else if (cmd == "heal") {
      net_->cut_.clear();
    } else if (cmd == "skew") {
      if (words.size() != 3) return fail("usage: skew nK +ms|-ms");
      const NodeId id = node_arg(words[1]);
      const std::string& s = words[2];
      const bool minus = !s.empty() && s[0] == '-';
      const std::int64_t ms = static_cast<std::int64_t>(
          number(s.empty() || (s[0] != '+' && s[0] != '-') ? s : s.substr(1)));
      if (ok_) net_->set_skew(id, minus ? -ms : ms);
    } else if (cmd == "pg" || cmd == "legacy") {
      service(words);
    } else if (cmd == "owners") {
      if (words.size() != 2) return fail("usage: owners key");
      owners(expand(words[1]));
    } else if (cmd == "dump") {
      if (words.size() == 2 && words[1] == "pg") {
        dump_pg();
      } else if (words.size() == 2) {
        dump(node_arg(words[1]));
      } else {
        return fail("usage: dump nK|pg");
      }
    } else if (cmd == "stats") {
      if (words.size() != 2) return fail("usage: stats nK");
      stats(node_arg(words[1]));
    } else {
      return fail("unknown command " + cmd);
    }
    if (ok_ && out_.empty()) out_.push_back("ok");
    return out_;
  }

  bool ok() const { return ok_; }
  const std::string& error() const { return error_; }

  // Empty if every node's invariants hold, else the first broken one.
  std::string invariants() {
    if (!net_) return {};
    for (NodeId id = 1; id <= net_->size(); ++id) {
      std::string broken = net_->at(id).check_invariants();
      if (broken.empty()) broken = net_->at(id).check_trees();
      if (!broken.empty()) return node(id) + ": " + broken;
    }
    return {};
  }

 private:
  std::vector<std::string> fail(std::string why) {
    ok_ = false;
    error_ = std::move(why);
    return out_;
  }

  std::uint64_t number(const std::string& s) {
    auto v = parse_integer<std::uint64_t>(s);
    if (!v) {
      fail("expected a number, got '" + s + "'");
      return 0;
    }
    return *v;
  }

  NodeId node_arg(const std::string& s) {
    if (s.size() >= 2 && s[0] == 'n') {
      auto v = parse_integer<std::uint64_t>(s.substr(1));
      if (v && *v >= 1 && net_ && *v <= net_->size()) return static_cast<NodeId>(*v);
    }
    fail("expected a node n1..n" + std::to_string(net_ ? net_->size() : 0) + ", got '" + s + "'");
    return 1;
  }

  // `x*300` stands for 300 x's (to cross the size limits without 300-byte lines).
  static std::string expand(const std::string& s) {
    if (s.size() >= 3 && s[1] == '*') {
      if (auto n = parse_integer<std::uint64_t>(s.substr(2)); n && *n <= (16u << 20)) return std::string(*n, s[0]);
    }
    return s;
  }

  void cluster(const std::vector<std::string>& words, const std::map<std::string, std::string>& named) {
    std::set<std::string> flags(words.begin() + 1, words.end());
    for (const std::string& f : flags) {
      if (f != "sloppy" && f != "legacy") return void(fail("unknown flag " + f));
    }
    std::map<std::string, std::string> rest = named;
    auto take = [&](const std::string& k, std::uint64_t dflt) {
      auto it = rest.find(k);
      if (it == rest.end()) return dflt;
      const std::uint64_t v = number(it->second);
      rest.erase(it);
      return v;
    };
    const auto nodes = static_cast<std::uint32_t>(take("nodes", 3));
    PgMode pg = PgMode::off;
    if (auto it = rest.find("pg"); it != rest.end()) {
      if (it->second == "sync") {
        pg = PgMode::sync;
      } else if (it->second == "async") {
        pg = PgMode::async;
      } else if (it->second != "off") {
        return void(fail("pg=off|sync|async, got " + it->second));
      }
      rest.erase(it);
    }
    ReplicaConfig d;
    const auto n = static_cast<std::uint32_t>(take("n", d.replicas));
    const auto r = static_cast<std::uint32_t>(take("r", d.read_quorum));
    const auto w = static_cast<std::uint32_t>(take("w", d.write_quorum));
    const auto timeout = take("timeout", d.request_timeout_ms);
    const auto retry = take("retry", d.retry_interval_ms);
    const auto sloppy_after = take("sloppy-after", d.sloppy_after_ms);
    const auto hint_interval = take("hint-interval", d.hint_interval_ms);
    const auto queue = take("queue", d.pg_queue_max);
    const auto breaker = take("breaker", d.legacy_breaker_failures);
    const auto breaker_open = take("breaker-open", d.legacy_breaker_open_ms);
    const auto negative_ttl = take("negative-ttl", d.legacy_negative_ttl_ms);
    const auto ae = take("ae", 0);  // off unless a scenario is about it: it adds messages to every tick
    const auto heartbeat = take("heartbeat", 0);  // off unless a scenario is about it, as ae
    const auto ae_bytes = take("ae-bytes", d.ae_bytes_per_s);
    const auto vnodes = take("vnodes", d.vnodes_per_node);
    if (!rest.empty()) return void(fail("unknown setting " + rest.begin()->first));
    if (!ok_) return;
    if (vnodes < 1 || vnodes > ring_vnodes_per_node_max) return void(fail("vnodes out of range"));
    if (nodes < 1 || n < 1 || n > nodes || r < 1 || r > n || w < 1 || w > n) {
      return void(fail("need 1 <= r, w <= n <= nodes"));
    }
    const bool legacy = flags.contains("legacy");
    auto tweak = [=](ReplicaConfig& c) {
      c.replicas = n;
      c.read_quorum = r;
      c.write_quorum = w;
      c.request_timeout_ms = timeout;
      c.retry_interval_ms = retry;
      c.sloppy_after_ms = sloppy_after;
      c.hint_interval_ms = hint_interval;
      c.pg_mode = pg;
      c.pg_queue_max = queue;
      c.legacy = legacy;
      c.legacy_breaker_failures = static_cast<std::uint32_t>(breaker);
      c.legacy_breaker_open_ms = breaker_open;
      c.legacy_negative_ttl_ms = negative_ttl;
      c.ae_interval_ms = ae;
      c.ae_bytes_per_s = ae_bytes;
      c.heartbeat_interval_ms = heartbeat;
      c.vnodes_per_node = static_cast<std::uint32_t>(vnodes);
    };
    net_ = std::make_unique<TestNet>(nodes, flags.contains("sloppy"), std::vector<std::int64_t>{},
                                     tweak);
    net_->observer_ = [this](NodeId id, const Ready& ready) { print(id, ready); };
    hold_pg_ = hold_legacy_ = false;
    ops_.clear();
  }

  void request(const std::vector<std::string>& words, const std::map<std::string, std::string>& named) {
    const std::string& cmd = words[0];
    const std::size_t arity = cmd == "put" ? 4 : 3;
    if (words.size() != arity) return void(fail("usage: " + cmd + " nK key" + (cmd == "put" ? " value" : "")));
    const NodeId coordinator = node_arg(words[1]);
    ClientRequest rq;
    rq.op = cmd == "put" ? OpType::put : cmd == "get" ? OpType::get : OpType::del;
    rq.key = expand(words[2]);
    if (rq.op == OpType::put) rq.value = expand(words[3]);
    for (const auto& [k, v] : named) {
      if (k == "r" && rq.op == OpType::get) {
        rq.r = static_cast<std::uint32_t>(number(v));
      } else if (k == "w" && rq.op != OpType::get) {
        rq.w = static_cast<std::uint32_t>(number(v));
      } else {
        return void(fail("unknown setting " + k + " for " + cmd));
      }
    }
    if (!ok_) return;
    if (net_->down_.contains(coordinator)) return void(fail(node(coordinator) + " is down"));
    const std::uint64_t id = net_->send(coordinator, rq);
    ops_[id] = rq.op;
    net_->collect();  // the coordinator's batch: only it had an input
  }

  // `until_quiet`: failing if the network is not quiet after `rounds_max` rounds.
  void stabilize(int rounds_max = stabilize_rounds_max, bool until_quiet = true) {
    for (int round = 0; round < rounds_max; ++round) {
      bool progress = net_->collect();
      std::deque<std::pair<NodeId, BridgeCall>> held;
      while (!net_->calls_.empty()) {
        auto [id, c] = net_->calls_.front();
        net_->calls_.pop_front();
        const bool pg = c.kind != BridgeKind::legacy_fetch;
        if (pg ? hold_pg_ : hold_legacy_) {
          held.emplace_back(id, c);
          continue;
        }
        answer(id, c);
        progress = true;
      }
      net_->calls_ = std::move(held);
      std::deque<Message> wire = std::move(net_->wire_);
      net_->wire_.clear();
      for (const Message& m : wire) {
        if (!net_->deliver(m)) out_.push_back("lost " + show(m) + " (" + net_->blocked(m) + ")");
        progress = true;
      }
      if (!progress) return;
    }
    if (until_quiet) return void(fail("the network never went quiet"));
    net_->collect();  // what the last deliveries caused, not delivered yet
  }

  void answer(NodeId id, const BridgeCall& c) {
    const BridgeReply r = net_->services_->answer(c);
    std::string line = std::string(c.kind == BridgeKind::legacy_fetch ? "legacy" : "pg") +
                       " answers " + node(id) + " " + std::string(bridge_name(c.kind)) + "#" +
                       std::to_string(c.id) + ": ";
    if (r.error) {
      line += "error " + errc_name(r.error) + ": " + r.detail;
    } else if (c.kind == BridgeKind::pg_write) {
      line += "ok";
    } else {
      line += r.record ? show(*r.record) : "not found";
    }
    out_.push_back(line);
    net_->at(id).on_bridge_reply(r, net_->clock(id));
  }

  void print(NodeId id, const Ready& ready) {
    out_.push_back(node(id) + ":");
    for (const WalEntry& e : ready.persist) out_.push_back("  persist " + show(e));
    for (const Message& m : ready.messages) out_.push_back("  send " + show(m));
    for (const ClientReply& r : ready.replies) {
      auto op = ops_.find(r.id);
      std::string line = "  reply client=" + std::to_string(r.id) + " " +
                         (op == ops_.end() ? "?" : std::string(op_name(op->second))) + " ";
      if (r.error) {
        line += "error " + errc_name(r.error) + ": " + r.detail;
      } else if (op != ops_.end() && op->second == OpType::get) {
        line += "ok " + show(r.record);
      } else {
        line += "ok " + show(r.version);
      }
      out_.push_back(line);
    }
    for (const BridgeCall& c : ready.bridge_calls) out_.push_back("  call " + show_call(c));
  }

  void restart(NodeId id) {
    net_->collect();  // what it handed out before the crash left it; the rest is lost
    net_->restart(id);
    const Replica& r = net_->at(id);
    out_.push_back(node(id) + " restarted with " + std::to_string(r.state().store.size()) +
                   " records and " + std::to_string(r.state().hints.size()) + " hints");
  }

  void service(const std::vector<std::string>& words) {
    const bool pg = words[0] == "pg";
    Services& s = *net_->services_;
    const std::string what = words.size() >= 2 ? words[1] : "";
    if (words.size() == 2 && (what == "fail" || what == "ok")) {
      (pg ? s.pg_down : s.legacy_down) = what == "fail";
    } else if (words.size() == 2 && (what == "hold" || what == "release")) {
      (pg ? hold_pg_ : hold_legacy_) = what == "hold";
    } else if (pg && words.size() == 5 && what == "set") {
      const bool tomb = words[3] == "tombstone";
      s.table[expand(words[2])] =
          Record{Version{number(words[4]), 0, 1}, tomb, tomb ? std::string() : expand(words[3])};
    } else if (!pg && words.size() == 4 && what == "set") {
      s.legacy[expand(words[2])] = expand(words[3]);
    } else {
      fail(pg ? "usage: pg fail|ok|hold|release | pg set key value|tombstone physical_ms"
              : "usage: legacy fail|ok|hold|release | legacy set key value");
    }
  }

  void owners(const std::string& key) {
    const Ring& ring = net_->at(1).ring();
    const std::uint32_t n = net_->at(1).config().replicas;
    const auto walk = ring.preference_list(key, ring.node_count());
    std::string line = show_key(key) + ": replicas";
    for (std::size_t i = 0; i < walk.size(); ++i) {
      if (i == n) line += " | fallbacks";
      line += " " + node(walk[i]);
    }
    out_.push_back(line);
  }

  void dump(NodeId id) {
    const Replica& r = net_->at(id);
    const std::int64_t skew = net_->skew(id);
    out_.push_back(node(id) + ": clock " + std::to_string(net_->clock(id)) +
                   (skew ? " (skew " + std::string(skew > 0 ? "+" : "") + std::to_string(skew) + ")" : "") +
                   (net_->down_.contains(id) ? ", down" : "") + ", " +
                   std::to_string(r.requests_in_flight()) + " requests in flight, pg queue " +
                   std::to_string(r.pg_queue_size()) + ", legacy breaker " +
                   (r.legacy_breaker_open(net_->clock(id)) ? "open" : "closed"));
    for (const Store::Entry* e : r.state().store.sorted()) {
      out_.push_back("  " + show_key(e->first) + " " + show(e->second));
    }
    for (const auto& [hk, rec] : r.state().hints.hints()) {
      out_.push_back("  hint for=" + node(hk.first) + " key=" + show_key(hk.second) + " " + show(rec));
    }
  }

  void dump_pg() {
    const Services& s = *net_->services_;
    out_.push_back(std::string("pg: ") + (s.pg_down ? "failing" : "up") + (hold_pg_ ? ", holding calls" : "") +
                   ", " + std::to_string(s.pg_calls) + " calls answered");
    for (const auto& [k, rec] : s.table) out_.push_back("  " + show_key(k) + " " + show(rec));
  }

  void stats(NodeId id) {
    const ReplicaStats& s = net_->at(id).stats();
    std::string line = node(id) + ":";
    for (const StatField& f : replica_stat_fields) {
      if (s.*f.member != 0) line += " " + std::string(f.name) + "=" + std::to_string(s.*f.member);
    }
    out_.push_back(line);
  }

  std::unique_ptr<TestNet> net_;
  std::map<std::uint64_t, OpType> ops_;  // client request id -> operation, to print replies
  bool hold_pg_ = false, hold_legacy_ = false;
  std::vector<std::string> out_;
  bool ok_ = true;
  std::string error_;
};

// ---- Comparing ----

// A line diff (longest common subsequence): `-` expected only, `+` produced only.
std::string diff(const std::vector<std::string>& want, const std::vector<std::string>& got) {
  const std::size_t n = want.size(), m = got.size();
  std::vector<std::vector<std::size_t>> lcs(n + 1, std::vector<std::size_t>(m + 1, 0));
  for (std::size_t i = n; i-- > 0;) {
    for (std::size_t j = m; j-- > 0;) {
      lcs[i][j] = want[i] == got[j] ? lcs[i + 1][j + 1] + 1 : std::max(lcs[i + 1][j], lcs[i][j + 1]);
    }
  }
  std::string out;
  std::size_t i = 0, j = 0;
  while (i < n || j < m) {
    if (i < n && j < m && want[i] == got[j]) {
      out += "  " + want[i++] + "\n";
      ++j;
    } else if (i < n && (j == m || lcs[i + 1][j] >= lcs[i][j + 1])) {
      out += "- " + want[i++] + "\n";
    } else {
      out += "+ " + got[j++] + "\n";
    }
  }
  return out;
}

bool rewriting() {
  const char* v = std::getenv("KV_REWRITE_GOLDEN");
  return v != nullptr && std::string(v) == "1";
}

// The scenario file names, sorted.
std::vector<std::string> scenario_files() {
  std::vector<std::string> files;
  for (const auto& e : std::filesystem::directory_iterator(KV_PROTOCOL_TESTDATA_DIR)) {
    if (e.is_regular_file() && e.path().extension() == ".txt") files.push_back(e.path().filename().string());
  }
  std::sort(files.begin(), files.end());
  return files;
}

class Protocol : public ::testing::TestWithParam<std::string> {};

TEST_P(Protocol, Scenario) {
  const std::string& name = GetParam();
  const std::filesystem::path path = std::filesystem::path(KV_PROTOCOL_TESTDATA_DIR) / name;
  std::ifstream in(path);
  ASSERT_TRUE(in) << "cannot read " << name;
  std::stringstream buf;
  buf << in.rdbuf();
  const std::vector<std::string> lines = split_lines(buf.str());
  const std::vector<Command> commands = parse_script(lines);
  ASSERT_FALSE(commands.empty()) << name << ": no commands";

  Script script;
  std::vector<std::vector<std::string>> outputs;
  for (const Command& c : commands) {
    const std::vector<std::string> got = script.run(c.text);
    ASSERT_TRUE(script.ok()) << name << ":" << c.line << ": " << c.text << "\n  " << script.error();
    const std::string broken = script.invariants();
    ASSERT_EQ(broken, "") << name << ":" << c.line << ": after `" << c.text
                          << "` an invariant is broken";
    outputs.push_back(got);
    if (rewriting()) continue;
    ASSERT_TRUE(c.has_expected) << name << ":" << c.line << ": `" << c.text
                                << "` has no expected output (run with KV_REWRITE_GOLDEN=1)";
    if (c.expected != got) {
      FAIL() << name << ":" << c.line << ": output of `" << c.text
             << "` differs (- expected, + produced):\n"
             << diff(c.expected, got);
    }
  }
  if (!rewriting()) return;
  std::string text;
  std::size_t next = 0;  // the next original line to copy
  for (std::size_t k = 0; k < commands.size(); ++k) {
    const Command& c = commands[k];
    for (; next < c.line; ++next) text += lines[next] + "\n";  // up to and including the command
    text += "----\n";
    for (const std::string& l : outputs[k]) text += l + "\n";
    next = c.expected_end;
    if (next >= lines.size() || !lines[next].empty()) text += "\n";
  }
  for (; next < lines.size(); ++next) text += lines[next] + "\n";
  while (text.size() >= 2 && text.ends_with("\n\n")) text.pop_back();
  std::ofstream(path, std::ios::trunc) << text;
}

std::string test_name(const ::testing::TestParamInfo<std::string>& info) {
  std::string s = std::filesystem::path(info.param).stem().string();
  for (char& c : s) {
    if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
  }
  return s;
}

INSTANTIATE_TEST_SUITE_P(Files, Protocol, ::testing::ValuesIn(scenario_files()), test_name);

}  // namespace
}  // namespace kv
