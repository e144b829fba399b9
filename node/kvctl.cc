// kvctl: the store from a shell. Talks HTTP/JSON to any node (it coordinates the request).
//
//   kvctl [--node HOST:PORT] get KEY [--r N]
//   kvctl [--node HOST:PORT] put KEY VALUE [--w N]
//   kvctl [--node HOST:PORT] del KEY [--w N]
//   kvctl [--node HOST:PORT] status
//   kvctl [--node HOST:PORT] ring
#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/json.hpp>
#include <cstdlib>
#include <iostream>
#include <string>
#include <vector>

namespace beast = boost::beast;
namespace http = beast::http;
namespace asio = boost::asio;
using tcp = asio::ip::tcp;

namespace {

constexpr int timeout_s = 10;

const char* usage =
    "kvctl: read and write the store from a shell, through any node's HTTP API.\n\n"
    "usage: kvctl [--node HOST:PORT] COMMAND [ARGS]\n\n"
    "commands:\n"
    "  get KEY [--r N]          print the value (exit 1 if not found)\n"
    "  put KEY VALUE [--w N]    write a value, print its version\n"
    "  del KEY [--w N]          delete a key (a versioned tombstone)\n"
    "  status                   health, readiness and the node's main counters\n"
    "  ring                     the cluster as this node sees it (members, links, ring settings)\n\n"
    "options:\n"
    "  --node HOST:PORT   a node's HTTP address (default $KV_NODE or 127.0.0.1:8001)\n"
    "  --r N, --w N       read or write quorum for this request (default: the node's)\n\n"
    "exit codes: 0 ok, 1 not found or the store answered with an error, 2 usage, 3 unreachable\n";

struct Response {
  unsigned status = 0;
  std::string body;
};

std::string percent_encode(const std::string& s) {
  static const char* hex = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
  return out;
}

bool call(const std::string& node, http::verb verb, const std::string& target, const std::string& body,
          Response& out) {
  const auto colon = node.rfind(':');
  if (colon == std::string::npos) {
    std::cerr << "kvctl: --node must be HOST:PORT, got '" << node << "'\n";
    std::exit(2);
  }
  try {
    asio::io_context io;
    beast::tcp_stream stream(io);
    stream.expires_after(std::chrono::seconds(timeout_s));
    stream.connect(tcp::resolver(io).resolve(node.substr(0, colon), node.substr(colon + 1)));
    http::request<http::string_body> req{verb, target, 11};
    req.set(http::field::host, node);
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
    out.status = res.result_int();
    out.body = res.body();
    return true;
  } catch (const std::exception& e) {
    std::cerr << "kvctl: cannot reach " << node << ": " << e.what() << "\n";
    return false;
  }
}

int report(const Response& r, bool print_value) {
  if (r.status == 200) {
    if (print_value) {
      boost::system::error_code ec;
      auto v = boost::json::parse(r.body, ec);
      if (!ec && v.is_object() && v.as_object().contains("value") && v.as_object().at("value").is_string()) {
        std::cout << v.as_object().at("value").as_string().c_str() << "\n";
        return 0;
      }
    }
    std::cout << r.body << "\n";
    return 0;
  }
  std::cerr << "kvctl: " << r.status << " " << r.body << "\n";
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  std::string node = std::getenv("KV_NODE") ? std::getenv("KV_NODE") : "127.0.0.1:8001";
  std::string query;
  std::vector<std::string> words;
  for (std::size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "-h" || a == "--help" || a == "help") {
      std::cout << usage;
      return 0;
    }
    if ((a == "--node" || a == "--r" || a == "--w") && i + 1 < args.size()) {
      const std::string v = args[++i];
      if (a == "--node") {
        node = v;
      } else {
        if (v.empty() || v.find_first_not_of("0123456789") != std::string::npos) {
          std::cerr << "kvctl: " << a << " takes a number\n";
          return 2;
        }
        query += (query.empty() ? "?" : "&") + a.substr(2) + "=" + v;
      }
      continue;
    }
    words.push_back(a);
  }
  if (words.empty()) {
    std::cerr << usage;
    return 2;
  }
  const std::string& cmd = words[0];
  Response r;
  auto need = [&](std::size_t n) {
    if (words.size() != n) {
      std::cerr << "kvctl: '" << cmd << "' takes " << n - 1 << " argument(s); see kvctl --help\n";
      std::exit(2);
    }
  };
  if (cmd == "get" || cmd == "del") {
    need(2);
    if (!call(node, cmd == "get" ? http::verb::get : http::verb::delete_, "/v1/" + percent_encode(words[1]) + query, "", r)) return 3;
    if (cmd == "get" && r.status == 404) {
      std::cerr << "kvctl: " << words[1] << ": not found\n";
      return 1;
    }
    return report(r, cmd == "get");
  }
  if (cmd == "put") {
    need(3);
    boost::json::object body{{"value", words[2]}};
    if (!call(node, http::verb::post, "/v1/" + percent_encode(words[1]) + query, boost::json::serialize(body), r)) return 3;
    return report(r, false);
  }
  if (cmd == "ring") {
    need(1);
    if (!call(node, http::verb::get, "/cluster", "", r)) return 3;
    return report(r, false);
  }
  if (cmd == "status") {
    need(1);
    Response health, ready, metrics;
    if (!call(node, http::verb::get, "/health", "", health)) return 3;
    call(node, http::verb::get, "/ready", "", ready);
    call(node, http::verb::get, "/metrics", "", metrics);
    std::cout << "node " << node << ": health " << health.body << ", ready " << ready.body << "\n";
    std::size_t pos = 0;
    while (pos < metrics.body.size()) {
      const auto end = metrics.body.find('\n', pos);
      const std::string line = metrics.body.substr(pos, end - pos);
      if (!line.empty() && line[0] != '#' && line.find("_bucket") == std::string::npos) std::cout << "  " << line << "\n";
      if (end == std::string::npos) break;
      pos = end + 1;
    }
    return ready.status == 200 ? 0 : 1;
  }
  std::cerr << "kvctl: unknown command '" << cmd << "'; see kvctl --help\n";
  return 2;
}
