// The client side of kvbench: the pipelined connection, the /cluster fetch and routing, and the
// --verify checker. See bench_client.h for the contracts.
#include "node/bench_client.h"

#include <algorithm>
#include <cassert>
#include <charconv>
#include <cstdio>
#include <cstring>
#include <exception>
#include <ostream>

#include <unistd.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/json.hpp>

#include "core/parse.h"

namespace kv::bench {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using boost::system::error_code;

void append_decimal(std::string& out, std::uint64_t n) {
  char digits[24];
  const auto r = std::to_chars(digits, digits + sizeof digits, n);
  out.append(digits, r.ptr);
}

// Bytes of a value fit to print in a one-line report.
std::string printable(std::string_view bytes, std::size_t max_bytes = 48) {
  std::string out;
  for (const char ch : bytes.substr(0, max_bytes)) {
    const auto c = static_cast<unsigned char>(ch);
    if (c >= 0x20 && c < 0x7f && c != '\\') {
      out += ch;
    } else {
      constexpr const char* hex = "0123456789abcdef";
      out += "\\x";
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
  if (bytes.size() > max_bytes) out += "...(" + std::to_string(bytes.size()) + " bytes)";
  return out;
}

}  // namespace

// ---- What to send ----

std::uint64_t Workload::draw() {
  std::uint64_t z = (state_ += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

Op Workload::next() {
  // The top 53 bits as a fraction in [0, 1): below read_ratio is a GET, so 1.0 means all GETs.
  const double unit = static_cast<double>(draw() >> 11) * 0x1.0p-53;
  const OpKind kind = unit < read_ratio_ ? OpKind::get : OpKind::set;
  // The modulo bias is below 1e-10 for any keyspace kvbench accepts (up to 1e8 keys).
  return Op{kind, static_cast<std::uint32_t>(draw() % keyspace_)};
}

void key_name(std::uint32_t index, std::size_t key_bytes, std::string& out) {
  out.assign(key_name_prefix);
  char digits[16];
  const auto r = std::to_chars(digits, digits + sizeof digits, index);
  const auto n = static_cast<std::size_t>(r.ptr - digits);
  assert(key_bytes >= key_name_prefix.size() + n);
  out.append(key_bytes - key_name_prefix.size() - n, '0');
  out.append(digits, n);
}

// ---- Connection ----

Connection::Connection(asio::io_context& io, ConnectionOwner& owner, std::size_t target,
                       std::vector<tcp::endpoint> endpoints, std::size_t pipeline)
    : owner_(owner),
      target_(target),
      endpoints_(std::move(endpoints)),
      pipeline_(pipeline),
      socket_(io),
      reconnect_timer_(io) {
  assert(pipeline_ >= 1 && !endpoints_.empty());
  read_buffer_.resize(read_chunk_bytes);
}

void Connection::connect() {
  state_ = State::connecting;
  state_since_ = Clock::now();
  asio::async_connect(socket_, endpoints_, [this, epoch = epoch_](const error_code& ec, const tcp::endpoint&) {
    if (epoch == epoch_) on_connect(ec);
  });
}

void Connection::on_connect(const error_code& ec) {
  if (ec) {
    drop("", true);
    owner_.on_connect_result(*this, ec.message());
    return;
  }
  error_code ignored;
  socket_.set_option(tcp::no_delay(true), ignored);  // requests are small and latency-bound
  state_ = State::connected;
  state_since_ = Clock::now();
  read_bytes_ = 0;
  parser_ = RespReplyParser();
  owner_.on_connect_result(*this, "");
  read_more();
  owner_.on_slots_free(*this);
}

void Connection::enqueue(const Op& op) {
  assert(free_slots() > 0);
  queued_.push_back(op);
}

void Connection::flush() {
  if (writing_ || queued_.empty() || !connected()) return;
  write_buffer_.clear();
  for (const Op& op : queued_) {
    Request request{op};
    owner_.on_send(*this, request, write_buffer_);
    written_.push_back(request);
  }
  queued_.clear();
  writing_ = true;
  asio::async_write(socket_, asio::buffer(write_buffer_), [this, epoch = epoch_](const error_code& ec, std::size_t) {
    if (epoch == epoch_) on_write(ec);
  });
}

void Connection::on_write(const error_code& ec) {
  writing_ = false;
  if (ec) {
    drop("write: " + ec.message(), true);
    return;
  }
  flush();
}

void Connection::read_more() {
  if (read_buffer_.size() - read_bytes_ < read_chunk_bytes) read_buffer_.resize(read_bytes_ + read_chunk_bytes);
  socket_.async_read_some(asio::buffer(read_buffer_.data() + read_bytes_, read_buffer_.size() - read_bytes_),
                          [this, epoch = epoch_](const error_code& ec, std::size_t bytes) {
                            if (epoch == epoch_) on_read(ec, bytes);
                          });
}

void Connection::on_read(const error_code& ec, std::size_t bytes) {
  if (ec) {
    drop(ec == asio::error::eof ? "closed by the server" : "read: " + ec.message(), true);
    return;
  }
  read_bytes_ += bytes;
  const auto outstanding_before = outstanding();
  const auto epoch = epoch_;
  if (!deliver_replies()) return;
  // A reply can only be this long if the server sends something no GET or SET asked for.
  const RespReplyLimits& limits = parser_.limits();
  if (read_bytes_ > limits.bulk_bytes_max + limits.line_bytes_max) {
    drop("reply longer than " + std::to_string(limits.bulk_bytes_max) + " bytes", true);
    return;
  }
  read_more();
  if (outstanding() < outstanding_before && epoch == epoch_) owner_.on_slots_free(*this);
}

// Hands every complete reply to the owner; returns false if the connection was dropped.
bool Connection::deliver_replies() {
  const std::string_view data(read_buffer_.data(), read_bytes_);
  std::size_t offset = 0;
  RespReply reply;
  while (offset < data.size()) {
    std::size_t consumed = 0;
    std::string error;
    const auto status = parser_.parse(data.substr(offset), reply, consumed, error);
    if (status == ParseStatus::incomplete) break;
    if (status == ParseStatus::error || written_.empty()) {
      drop(written_.empty() ? "a reply to no request" : "protocol error: " + error, true);
      return false;
    }
    const Request request = written_.front();
    written_.pop_front();
    owner_.on_reply(*this, request, reply);
    offset += consumed;
  }
  if (offset > 0) {
    std::memmove(read_buffer_.data(), read_buffer_.data() + offset, read_bytes_ - offset);
    read_bytes_ -= offset;
  }
  return true;
}

void Connection::drop(std::string_view reason, bool reconnect) {
  ++epoch_;
  if (state_ == State::connected) ++drops_;
  error_code ignored;
  socket_.close(ignored);
  reconnect_timer_.cancel();
  writing_ = false;
  read_bytes_ = 0;
  parser_ = RespReplyParser();
  state_ = State::waiting;
  state_since_ = Clock::now();
  std::deque<Request> lost;
  lost.swap(written_);
  std::vector<Op> unsent;
  unsent.swap(queued_);
  // Unsent ops first: the owner must know they still need a connection before it counts the
  // lost ones and wonders whether the run is over.
  if (!unsent.empty()) owner_.on_unsent(*this, unsent);
  for (const Request& request : lost) owner_.on_lost(*this, request, reason);
  if (!reconnect) return;
  reconnect_timer_.expires_after(reconnect_delay);
  reconnect_timer_.async_wait([this, epoch = epoch_](const error_code& ec) {
    if (!ec && epoch == epoch_) connect();
  });
}

void Connection::enforce_timeout(Clock::time_point now, Clock::duration limit) {
  if (state_ == State::connecting && now - state_since_ > limit) {
    drop("", true);
    owner_.on_connect_result(*this, "connect timed out");
  } else if (state_ == State::connected && !written_.empty() && now - written_.front().sent > limit) {
    drop("timeout", true);
  }
}

std::size_t Connection::discard_queued() {
  const auto n = queued_.size();
  queued_.clear();
  return n;
}

// ---- Routing ----

namespace {

bool json_uint(const boost::json::object& o, std::string_view name, std::uint64_t& out) {
  const auto* v = o.if_contains(name);
  if (v == nullptr) return false;
  if (v->is_uint64()) {
    out = v->as_uint64();
    return true;
  }
  if (v->is_int64() && v->as_int64() >= 0) {
    out = static_cast<std::uint64_t>(v->as_int64());
    return true;
  }
  return false;
}

std::string json_string(const boost::json::object& o, std::string_view name) {
  const auto* v = o.if_contains(name);
  return v != nullptr && v->is_string() ? std::string(v->as_string()) : std::string();
}

}  // namespace

Expected<ClusterView> parse_cluster_view(std::string_view json) {
  error_code ec;
  const auto value = boost::json::parse(json, ec);
  if (ec || !value.is_object()) return invalid_input("not a JSON object");
  const auto& o = value.as_object();
  ClusterView out;
  out.self_name = json_string(o, "self");
  if (out.self_name.empty()) return invalid_input("no \"self\"");
  if (const auto hash = json_string(o, "hash"); !hash.empty() && hash != "kv::hash64") {
    return invalid_input("the ring uses hash '" + hash + "', which kvbench does not know");
  }
  std::uint64_t vnodes = 0;
  if (!json_uint(o, "vnodes_per_node", vnodes) || vnodes < 1 || vnodes > ring_vnodes_per_node_max) {
    return invalid_input("no valid \"vnodes_per_node\"");
  }
  out.vnodes_per_node = static_cast<std::uint32_t>(vnodes);
  const auto* members = o.if_contains("members");
  if (members == nullptr || !members->is_array() || members->as_array().empty()) return invalid_input("no \"members\"");
  bool found_self = false;
  for (const auto& m : members->as_array()) {
    std::uint64_t id = 0;
    if (!m.is_object() || !json_uint(m.as_object(), "id", id) || id > UINT32_MAX) return invalid_input("a member without an id");
    out.members.push_back(static_cast<NodeId>(id));
    if (json_string(m.as_object(), "name") == out.self_name) {
      found_self = true;
      out.self_id = static_cast<NodeId>(id);
      out.self_resp_addr = json_string(m.as_object(), "resp_addr");
    }
  }
  if (out.members.size() > ring_nodes_max) return invalid_input("more than " + std::to_string(ring_nodes_max) + " members");
  if (!found_self) return invalid_input("\"self\" is not among the members");
  return out;
}

Expected<ClusterView> fetch_cluster_view(const HostPort& http_addr, std::chrono::milliseconds timeout) {
  try {
    asio::io_context io;
    beast::tcp_stream stream(io);
    stream.expires_after(timeout);
    stream.connect(tcp::resolver(io).resolve(http_addr.host, std::to_string(http_addr.port)));
    http::request<http::empty_body> request{http::verb::get, "/cluster", 11};
    request.set(http::field::host, http_addr.to_string());
    request.set(http::field::user_agent, "kvbench");
    http::write(stream, request);
    beast::flat_buffer buffer;
    http::response<http::string_body> response;
    http::read(stream, buffer, response);
    if (response.result_int() != 200) {
      return invalid_input("GET /cluster answered " + std::to_string(response.result_int()));
    }
    Expected<ClusterView> view = parse_cluster_view(response.body());
    if (!view) return invalid_input("GET /cluster: " + view.error().detail);
    return view;
  } catch (const boost::system::system_error& e) {
    return Error{e.code(), e.code().message()};
  } catch (const std::exception& e) {
    return invalid_input(e.what());
  }
}

Router::Router(const ClusterView& view, std::vector<std::optional<NodeId>> target_nodes)
    : ring_(view.vnodes_per_node), target_nodes_(std::move(target_nodes)) {
  for (const NodeId node : view.members) ring_.add_node(node);
}

void Router::targets_for(std::string_view key, std::vector<std::size_t>& out) const {
  out.clear();
  for (const NodeId node : ring_.preference_list(key, ring_.node_count())) {
    for (std::size_t t = 0; t < target_nodes_.size(); ++t) {
      if (target_nodes_[t] == node) out.push_back(t);
    }
  }
}

// ---- Learning the routes ----

std::optional<Router> learn_routes(const std::vector<HostPort>& targets, const std::vector<HostPort>& http,
                                   std::chrono::milliseconds timeout, bool verbose, std::ostream& log) {
  assert(http.size() == targets.size());
  std::optional<ClusterView> ring_view;
  std::vector<std::optional<NodeId>> target_nodes(targets.size());
  for (std::size_t i = 0; i < http.size(); ++i) {
    Expected<ClusterView> fetched = fetch_cluster_view(http[i], timeout);
    if (!fetched) {
      log << "kvbench: --route: " << http[i].to_string() << ": " << fetched.error().detail << "; " << targets[i].to_string()
          << " gets no requests, the keys of its node go to the next node of their preference list\n";
      continue;
    }
    const ClusterView& view = fetched.value();
    // The node's own RESP address settles which target it is; the position in --http is the
    // fallback for addresses written differently (a host name for an IP, say).
    std::size_t target = i;
    const auto same = std::find_if(targets.begin(), targets.end(),
                                   [&](const HostPort& t) { return t.to_string() == view.self_resp_addr; });
    if (same != targets.end() && same != targets.begin() + static_cast<std::ptrdiff_t>(i)) {
      target = static_cast<std::size_t>(same - targets.begin());
      log << "kvbench: --route: " << http[i].to_string() << " is " << view.self_name << " at " << view.self_resp_addr
          << ", not the target in its position; using " << view.self_resp_addr << "\n";
    }
    target_nodes[target] = view.self_id;
    if (!ring_view) {
      ring_view = view;
    } else if (view.members != ring_view->members || view.vnodes_per_node != ring_view->vnodes_per_node) {
      log << "kvbench: --route: " << view.self_name << " and " << ring_view->self_name
          << " report different rings; routing by " << ring_view->self_name << "'s\n";
    }
    if (verbose) log << "kvbench: target " << targets[target].to_string() << " is " << view.self_name << "\n";
  }
  if (!ring_view) return std::nullopt;
  return Router(*ring_view, std::move(target_nodes));
}

// ---- Verifier ----

std::string Verifier::fresh_run_id() {
  auto z = static_cast<std::uint64_t>(std::chrono::system_clock::now().time_since_epoch().count()) ^
           (static_cast<std::uint64_t>(::getpid()) << 40);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  char hex[9];
  std::snprintf(hex, sizeof hex, "%08x", static_cast<unsigned>((z ^ (z >> 31)) & 0xffffffffu));
  return hex;
}

Verifier::Verifier(std::uint32_t keyspace, std::string run_id, std::size_t value_bytes)
    : run_id_(std::move(run_id)), value_bytes_(value_bytes), floors_(keyspace, 0) {
  assert(value_bytes_ >= value_bytes_min && run_id_.size() == 8);
}

void Verifier::append_value(std::uint64_t seq, std::string& out) const {
  const auto start = out.size();
  out += run_id_;
  out += ':';
  append_decimal(out, seq);
  out += ':';
  for (std::uint64_t i = 0; out.size() - start < value_bytes_; ++i) {
    out += static_cast<char>('a' + (seq + i) % 26);
  }
}

std::uint64_t Verifier::set_invoked(std::uint32_t key) {
  sets_.push_back(SetRecord{++tick_, 0, key});
  return sets_.size() - 1;
}

void Verifier::set_acknowledged(std::uint64_t seq) {
  SetRecord& set = sets_.at(seq);
  set.acknowledged = ++tick_;
  std::uint64_t& floor = floors_[set.key];
  if (floor == 0 || sets_[floor - 1].invoked < set.invoked) floor = seq + 1;
}

std::uint64_t Verifier::get_invoked(std::uint32_t key) {
  ++tick_;
  return floors_[key];
}

void Verifier::get_completed(std::uint32_t key, std::uint64_t floor, std::optional<std::string_view> value,
                             std::string_view key_name) {
  const std::uint64_t now = ++tick_;
  ++checked_;
  if (auto why = judge(key, floor, now, value); !why.empty()) {
    ++mismatches_;
    if (first_mismatches_.size() < mismatches_kept_max) {
      first_mismatches_.push_back(std::string(key_name) + ": " + why);
    }
  }
}

// Empty if `value` is allowed, else why not.
std::string Verifier::judge(std::uint32_t key, std::uint64_t floor, std::uint64_t now,
                            std::optional<std::string_view> value) {
  const bool ours = value && value->size() > run_id_.size() && value->starts_with(run_id_) &&
                    (*value)[run_id_.size()] == ':';
  if (!ours) {
    if (floor == 0) {
      ++prior_state_reads_;
      return {};
    }
    return (value ? "GET returned a value this run did not write ('" + printable(*value) + "')"
                  : std::string("GET returned not-found")) +
           ", but SET #" + std::to_string(floor - 1) + " had been acknowledged before the GET started";
  }
  const auto digits = value->substr(run_id_.size() + 1);
  const auto parsed_seq = parse_integer<std::uint64_t>(digits.substr(0, digits.find(':')));
  if (!parsed_seq || *parsed_seq >= sets_.size()) {
    return "GET returned a value no SET of this run wrote ('" + printable(*value) + "')";
  }
  const std::uint64_t seq = *parsed_seq;
  const SetRecord& x = sets_[seq];
  if (x.key != key) {
    return "GET returned the value of SET #" + std::to_string(seq) + ", which wrote key index " +
           std::to_string(x.key);
  }
  std::string expected;
  append_value(seq, expected);
  if (*value != expected) return "GET returned a damaged copy of SET #" + std::to_string(seq) + " ('" + printable(*value) + "')";
  if (x.invoked >= now) return "GET returned SET #" + std::to_string(seq) + " before that SET was sent";
  if (floor != 0 && x.acknowledged != 0 && x.acknowledged < sets_[floor - 1].invoked) {
    return "GET returned SET #" + std::to_string(seq) + ", superseded by SET #" + std::to_string(floor - 1) +
           ", which started after #" + std::to_string(seq) +
           " was acknowledged and was itself acknowledged before the GET started";
  }
  return {};
}

}  // namespace kv::bench
