// kvctl: the store from a shell. Talks HTTP/JSON to any node (it coordinates the request).
//
//   kvctl [--node HOST:PORT] get KEY [--r N]
//   kvctl [--node HOST:PORT] put KEY VALUE [--w N]
//   kvctl [--node HOST:PORT] del KEY [--w N]
//   kvctl [--node HOST:PORT] status
//   kvctl [--node HOST:PORT] ring
//   kvctl [--node HOST:PORT] members
//   kvctl [--node HOST:PORT] remove NAME
//
// Flags are read by Boost.ProgramOptions, the node's address by net/host_port.h and keys are
// percent-encoded into the request path by Boost.URL, as every other part of the project does.
#include <algorithm>
#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/json.hpp>
#include <boost/program_options.hpp>
#include <boost/url/encode.hpp>
#include <boost/url/rfc/unreserved_chars.hpp>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "core/parse.h"
#include "net/host_port.h"

namespace beast = boost::beast;
namespace http = beast::http;
namespace asio = boost::asio;
namespace po = boost::program_options;
using tcp = asio::ip::tcp;

namespace {

constexpr int exit_ok = 0;
constexpr int exit_failed = 1;  // not found, or the store answered with an error
constexpr int exit_usage = 2;
constexpr int exit_unreachable = 3;

constexpr int timeout_s = 10;
constexpr unsigned help_width_chars = 96;
constexpr const char* node_default = "127.0.0.1:8001";

constexpr const char* usage_text =
    "kvctl: read and write the store from a shell, through any node's HTTP API.\n\n"
    "usage: kvctl [--node HOST:PORT] COMMAND [ARGS]\n\n"
    "commands:\n"
    "  get KEY [--r N]          print the value (exit 1 if not found)\n"
    "  put KEY VALUE [--w N]    write a value, print its version\n"
    "  del KEY [--w N]          delete a key (a versioned tombstone)\n"
    "  status                   health, readiness and the node's main counters\n"
    "  ring                     the cluster as this node sees it (members, links, ring settings)\n"
    "  members                  a table of the members: state, up or down, share of the ring,\n"
    "                           keys held (asked of each member), and whether their tables agree\n"
    "  remove NAME              take a dead member (e.g. n4) out of the cluster: its ranges are\n"
    "                           copied to the remaining replicas; watch it go with 'members'\n\n"
    "A key or value that starts with '--' goes after a lone '--', as in: kvctl put k -- --x\n";

constexpr const char* exit_codes_text =
    "exit codes: 0 ok, 1 not found or the store answered with an error, 2 usage, 3 unreachable\n";

po::options_description describe_options() {
  po::options_description d("options", help_width_chars, help_width_chars / 2);
  d.add_options()
    ("node", po::value<std::string>()->value_name("HOST:PORT"),
     "a node's HTTP address (default $KV_NODE or 127.0.0.1:8001)")
    ("r", po::value<std::string>()->value_name("N"), "read quorum for this request (default: the node's)")
    ("w", po::value<std::string>()->value_name("N"), "write quorum for this request (default: the node's)")
    ("help", "this text (also -h)");
  return d;
}

struct Options {
  kv::HostPort node;
  std::string query;  // "?r=2", or empty
  std::vector<std::string> words;  // the command and its arguments
};

// Returns the options, or the exit code to stop with (0 after --help).
std::variant<Options, int> parse_args(int argc, char** argv) {
  const po::options_description visible = describe_options();
  po::options_description all;
  all.add(visible).add_options()("words", po::value<std::vector<std::string>>());
  po::positional_options_description positional;
  positional.add("words", -1);
  po::variables_map vm;
  try {
    // Long options only: a word such as "-1" is a key or a value, not a flag.
    const int style = po::command_line_style::allow_long | po::command_line_style::long_allow_adjacent |
                      po::command_line_style::long_allow_next;
    po::store(po::command_line_parser(argc, argv).options(all).positional(positional).style(style).run(), vm);
  } catch (const po::error& e) {
    std::cerr << "kvctl: " << e.what() << "; see kvctl --help\n";
    return exit_usage;
  }
  std::vector<std::string> words;
  if (vm.count("words")) words = vm["words"].as<std::vector<std::string>>();
  // -h is a word to the parser (which reads no short options), so that it is found here.
  const bool help_word = std::find(words.begin(), words.end(), "-h") != words.end();
  if (vm.count("help") || help_word || (!words.empty() && words[0] == "help")) {
    std::cout << usage_text << "\n" << visible << "\n" << exit_codes_text;
    return exit_ok;
  }
  Options o;
  const char* env = std::getenv("KV_NODE");
  const std::string node = vm.count("node") ? vm["node"].as<std::string>() : env ? env : node_default;
  auto parsed = kv::parse_host_port(node);
  if (!parsed) {
    std::cerr << "kvctl: --node: " << parsed.error().detail << "\n";
    return exit_usage;
  }
  o.node = parsed.value();
  for (const char* q : {"r", "w"}) {
    if (!vm.count(q)) continue;
    const auto n = kv::parse_integer<std::uint32_t>(vm[q].as<std::string>());
    if (!n) {
      std::cerr << "kvctl: --" << q << " takes a number\n";
      return exit_usage;
    }
    o.query += (o.query.empty() ? "?" : "&") + std::string(q) + "=" + std::to_string(*n);
  }
  if (words.empty()) {
    std::cerr << usage_text << "\n" << visible << "\n" << exit_codes_text;
    return exit_usage;
  }
  o.words = std::move(words);
  return o;
}

struct Response {
  unsigned status = 0;
  std::string body;
};

// "/v1/" and the key, percent-encoded but for RFC 3986's unreserved characters.
std::string key_target(const std::string& key, const std::string& query) {
  return "/v1/" + boost::urls::encode(key, boost::urls::unreserved_chars) + query;
}

std::optional<Response> call(const kv::HostPort& node, http::verb verb, const std::string& target,
                             const std::string& body, bool quiet = false) {
  try {
    asio::io_context io;
    beast::tcp_stream stream(io);
    stream.expires_after(std::chrono::seconds(timeout_s));
    stream.connect(tcp::resolver(io).resolve(node.host, std::to_string(node.port)));
    http::request<http::string_body> req{verb, target, 11};
    req.set(http::field::host, node.to_string());
    req.set(http::field::user_agent, "kvctl");
    if (!body.empty()) {
      req.set(http::field::content_type, "application/json");
      req.body() = body;
      req.prepare_payload();
    }
    http::write(stream, req);
    beast::flat_buffer buffer;
    http::response<http::string_body> res;
    http::read(stream, buffer, res);
    return Response{res.result_int(), res.body()};
  } catch (const boost::system::system_error& e) {
    if (!quiet) std::cerr << "kvctl: cannot reach " << node.to_string() << ": " << e.code().message() << "\n";
    return std::nullopt;
  } catch (const std::exception& e) {
    if (!quiet) std::cerr << "kvctl: cannot reach " << node.to_string() << ": " << e.what() << "\n";
    return std::nullopt;
  }
}

int report(const Response& r, bool print_value) {
  if (r.status == 200) {
    if (print_value) {
      boost::system::error_code ec;
      auto v = boost::json::parse(r.body, ec);
      if (!ec && v.is_object() && v.as_object().contains("value") && v.as_object().at("value").is_string()) {
        std::cout << v.as_object().at("value").as_string().c_str() << "\n";
        return exit_ok;
      }
    }
    std::cout << r.body << "\n";
    return exit_ok;
  }
  std::cerr << "kvctl: " << r.status << " " << r.body << "\n";
  return exit_failed;
}

// Health and readiness, then the node's counters (histogram buckets left out).
int status(const kv::HostPort& node) {
  const auto health = call(node, http::verb::get, "/health", "");
  if (!health) return exit_unreachable;
  const auto ready = call(node, http::verb::get, "/ready", "").value_or(Response{});
  const auto metrics = call(node, http::verb::get, "/metrics", "").value_or(Response{});
  std::cout << "node " << node.to_string() << ": health " << health->body << ", ready " << ready.body << "\n";
  std::size_t pos = 0;
  while (pos < metrics.body.size()) {
    const auto end = metrics.body.find('\n', pos);
    const std::string line = metrics.body.substr(pos, end - pos);
    if (!line.empty() && line[0] != '#' && line.find("_bucket") == std::string::npos) std::cout << "  " << line << "\n";
    if (end == std::string::npos) break;
    pos = end + 1;
  }
  return ready.status == 200 ? exit_ok : exit_failed;
}

std::optional<boost::json::object> json_object(const std::string& text) {
  boost::system::error_code ec;
  auto v = boost::json::parse(text, ec);
  if (ec || !v.is_object()) return std::nullopt;
  return std::move(v.as_object());
}

std::string text_of(const boost::json::object& o, const char* field) {
  auto it = o.find(field);
  if (it == o.end()) return "";
  if (it->value().is_string()) return std::string(it->value().as_string());
  return boost::json::serialize(it->value());
}

// The members table as `node` holds it, with each member's key count asked of the member itself
// (a member that does not answer shows "-"), and whether the members that answered hold the
// same table.
int members(const kv::HostPort& node) {
  const auto r = call(node, http::verb::get, "/cluster", "");
  if (!r) return exit_unreachable;
  const auto cluster = r->status == 200 ? json_object(r->body) : std::nullopt;
  if (!cluster || !cluster->contains("members") || !cluster->at("members").is_array()) {
    std::cerr << "kvctl: " << node.to_string() << " answered /cluster with " << r->status << " " << r->body << "\n";
    return exit_failed;
  }
  const std::string hash = text_of(*cluster, "members_hash");
  std::vector<std::vector<std::string>> rows{{"NAME", "STATE", "STATUS", "PHI", "SHARE", "KEYS", "PEER", "HTTP"}};
  std::size_t asked = 0, agree = 0;
  for (const auto& v : cluster->at("members").as_array()) {
    if (!v.is_object()) continue;
    const auto& m = v.as_object();
    std::string keys = "-";
    const std::string http_addr = text_of(m, "http_addr");
    if (auto hp = kv::parse_host_port(http_addr); hp) {
      if (const auto mr = call(hp.value(), http::verb::get, "/cluster", "", true); mr && mr->status == 200) {
        if (const auto mc = json_object(mr->body)) {
          keys = text_of(*mc, "keys");
          ++asked;
          agree += text_of(*mc, "members_hash") == hash;
        }
      }
    }
    char share[16];
    const double fraction = m.contains("share") && m.at("share").is_number() ? m.at("share").to_number<double>() : 0.0;
    std::snprintf(share, sizeof share, "%.1f%%", 100.0 * fraction);
    std::string phi = "-";
    if (m.contains("phi") && m.at("phi").is_number()) {
      char text[16];
      std::snprintf(text, sizeof text, "%.2f", m.at("phi").to_number<double>());
      phi = text;
    }
    rows.push_back({text_of(m, "name"), text_of(m, "state"), text_of(m, "status"), phi,
                    share, keys, text_of(m, "peer_addr"), http_addr.empty() ? "-" : http_addr});
  }
  std::vector<std::size_t> width(rows[0].size(), 0);
  for (const auto& row : rows) {
    for (std::size_t i = 0; i < row.size(); ++i) width[i] = std::max(width[i], row[i].size());
  }
  for (const auto& row : rows) {
    std::string line;
    for (std::size_t i = 0; i < row.size(); ++i) {
      line += row[i];
      if (i + 1 < row.size()) line += std::string(width[i] - row[i].size() + 2, ' ');
    }
    std::cout << line << "\n";
  }
  std::cout << "as seen by " << text_of(*cluster, "self") << "; " << agree << " of the " << asked
            << " members that answered hold the same members table\n";
  return exit_ok;
}

int run(const Options& o) {
  const std::vector<std::string>& words = o.words;
  const std::string& cmd = words[0];
  const auto arity = [&](std::size_t n) {
    if (words.size() == n) return true;
    std::cerr << "kvctl: '" << cmd << "' takes " << n - 1 << " argument(s); see kvctl --help\n";
    return false;
  };
  if (cmd == "get" || cmd == "del") {
    if (!arity(2)) return exit_usage;
    const auto r = call(o.node, cmd == "get" ? http::verb::get : http::verb::delete_, key_target(words[1], o.query), "");
    if (!r) return exit_unreachable;
    if (cmd == "get" && r->status == 404) {
      std::cerr << "kvctl: " << words[1] << ": not found\n";
      return exit_failed;
    }
    return report(*r, cmd == "get");
  }
  if (cmd == "put") {
    if (!arity(3)) return exit_usage;
    const boost::json::object body{{"value", words[2]}};
    const auto r = call(o.node, http::verb::post, key_target(words[1], o.query), boost::json::serialize(body));
    return r ? report(*r, false) : exit_unreachable;
  }
  if (cmd == "ring") {
    if (!arity(1)) return exit_usage;
    const auto r = call(o.node, http::verb::get, "/cluster", "");
    return r ? report(*r, false) : exit_unreachable;
  }
  if (cmd == "remove") {
    if (!arity(2)) return exit_usage;
    const auto r = call(o.node, http::verb::post, "/cluster/remove/" + words[1], "");
    if (!r) return exit_unreachable;
    if (r->status == 202) {
      std::cout << "removing " << words[1] << ": its ranges are being copied to the remaining replicas;"
                << " 'kvctl members' shows it leaving, then left\n";
      return exit_ok;
    }
    const auto body = json_object(r->body);
    std::cerr << "kvctl: remove " << words[1] << " refused: " << (body ? text_of(*body, "detail") : r->body) << "\n";
    return exit_failed;
  }
  if (cmd == "members") {
    if (!arity(1)) return exit_usage;
    return members(o.node);
  }
  if (cmd == "status") {
    if (!arity(1)) return exit_usage;
    return status(o.node);
  }
  std::cerr << "kvctl: unknown command '" << cmd << "'; see kvctl --help\n";
  return exit_usage;
}

}  // namespace

int main(int argc, char** argv) {
  auto parsed = parse_args(argc, argv);
  if (const int* code = std::get_if<int>(&parsed)) return *code;
  return run(std::get<Options>(parsed));
}
