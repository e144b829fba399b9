// Tests of the HTTP front door. The handler is tested as the function it is, against a map-backed
// fake of the node that can also fail with each core error; then the Beast server is tested over
// real loopback sockets: a keep-alive conversation, pipelining, every limit, garbage input, and
// that one bad client costs only its own connection.
#include <gtest/gtest.h>
#include <rapidcheck.h>
#include <rapidcheck/gtest.h>

#include <chrono>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/write.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include "net/http_api.h"
#include "net/http_server.h"

namespace kv {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace json = boost::json;
using tcp = asio::ip::tcp;
using ErrorCode = boost::system::error_code;

// A node that keeps records in a map and answers at once; or fails every request with `fail`;
// or, with `defer`, holds the answers until the test releases them.
class FakeNode final : public NodeApi {
 public:
  void submit(ClientRequest request, std::function<void(const ClientReply&)> done) override {
    request.id = ++next_id;
    requests.push_back(request);
    ClientReply reply{.id = request.id};
    if (fail) {
      reply.error = make_error_code(*fail);
      reply.detail = fail_detail;
    } else if (request.op == OpType::get) {
      if (auto it = records.find(request.key); it != records.end()) reply.record = it->second;
    } else {
      reply.version = Version{1000 + request.id, 0, 1};
      const bool del = request.op == OpType::del;
      records[request.key] = Record{reply.version, del, del ? std::string() : request.value};
    }
    if (defer) {
      deferred.push_back([done = std::move(done), reply] { done(reply); });
    } else {
      done(reply);
    }
  }
  bool ready() const override { return is_ready; }
  std::string metrics_text() const override { return "kv_requests_total 7\n"; }
  std::string cluster_json() const override { return R"({"nodes":["n1"]})"; }
  std::string info_text() const override { return "role:node\r\n"; }

  std::map<std::string, Record> records;
  std::vector<ClientRequest> requests;
  std::vector<std::function<void()>> deferred;
  std::optional<Errc> fail;
  std::string fail_detail;
  std::uint64_t next_id = 0;
  bool is_ready = true;
  bool defer = false;
};

HttpRequest make_request(http::verb method, std::string target, std::string body = {}) {
  HttpRequest req{method, target, 11};
  req.set(http::field::host, "localhost");
  if (!body.empty()) {
    req.set(http::field::content_type, "application/json");
    req.body() = std::move(body);
  }
  req.prepare_payload();
  return req;
}

// Runs the handler and checks that it answered exactly once, before returning.
HttpResponse call(FakeNode& node, const HttpRequest& req, const HttpLimits& limits = {}) {
  std::optional<HttpResponse> out;
  int calls = 0;
  handle_http(req, node, limits, [&](HttpResponse res) {
    ++calls;
    out = std::move(res);
  });
  EXPECT_EQ(calls, 1);
  return out ? std::move(*out) : HttpResponse{};
}

HttpResponse call(FakeNode& node, http::verb method, std::string target, std::string body = {}) {
  return call(node, make_request(method, std::move(target), std::move(body)));
}

json::object body_of(const HttpResponse& res) {
  ErrorCode ec;
  json::value v = json::parse(res.body(), ec);
  EXPECT_FALSE(ec) << res.body();
  return v.is_object() ? v.as_object() : json::object{};
}

std::string error_of(const HttpResponse& res) {
  const json::object body = body_of(res);
  const json::value* e = body.if_contains("error");
  return e != nullptr && e->is_string() ? std::string(e->get_string()) : std::string();
}

// ---- Handler: routes ----

TEST(HttpApi, PostGetDeleteGet) {
  FakeNode node;
  HttpResponse put = call(node, http::verb::post, "/v1/my_key", R"({"value": "my_value"})");
  EXPECT_EQ(put.result(), http::status::ok);
  EXPECT_EQ(put[http::field::content_type], "application/json");
  EXPECT_EQ(put[http::field::server], "kvnode");
  EXPECT_EQ(put.body(), R"({"key":"my_key","version":"1001.0@n1"})");
  ASSERT_EQ(node.requests.size(), 1u);
  EXPECT_EQ(node.requests[0].op, OpType::put);
  EXPECT_EQ(node.requests[0].value, "my_value");

  HttpResponse get = call(node, http::verb::get, "/v1/my_key");
  EXPECT_EQ(get.result(), http::status::ok);
  EXPECT_EQ(get.body(), R"({"key":"my_key","value":"my_value","version":"1001.0@n1"})");

  HttpResponse del = call(node, http::verb::delete_, "/v1/my_key");
  EXPECT_EQ(del.result(), http::status::ok);
  EXPECT_EQ(del.body(), R"({"key":"my_key","deleted":true,"version":"1003.0@n1"})");

  // The fake now holds a tombstone: not found, like an absent key.
  HttpResponse gone = call(node, http::verb::get, "/v1/my_key");
  EXPECT_EQ(gone.result(), http::status::not_found);
  EXPECT_EQ(gone.body(), R"({"error":"not found","key":"my_key"})");
  HttpResponse absent = call(node, http::verb::get, "/v1/other");
  EXPECT_EQ(absent.result(), http::status::not_found);
  EXPECT_EQ(absent.body(), R"({"error":"not found","key":"other"})");
}

TEST(HttpApi, PutIsPost) {
  FakeNode node;
  HttpResponse put = call(node, http::verb::put, "/v1/k", R"({"value": "v", "extra": 1})");
  EXPECT_EQ(put.result(), http::status::ok);
  EXPECT_EQ(node.records.at("k").value, "v");
}

TEST(HttpApi, ValuesAreEscapedAndUnicodeRoundTrips) {
  FakeNode node;
  const std::string value = "quote\" backslash\\ nl\n nul\u0001 \xC3\xA9 \xF0\x9F\x98\x80";
  json::object in{{"value", value}};
  ASSERT_EQ(call(node, http::verb::post, "/v1/k", json::serialize(in)).result(), http::status::ok);
  EXPECT_EQ(node.records.at("k").value, value);
  json::object out = body_of(call(node, http::verb::get, "/v1/k"));
  EXPECT_EQ(out.at("value").as_string(), value);
  EXPECT_FALSE(out.contains("encoding_lossy"));
}

TEST(HttpApi, InvalidUtf8ValueIsReplacedAndFlagged) {
  FakeNode node;
  node.records["k"] = Record{Version{5, 0, 2}, false, std::string("ok\xFF\xC0\x80!", 6)};
  HttpResponse res = call(node, http::verb::get, "/v1/k");
  EXPECT_EQ(res.result(), http::status::ok);
  json::object out = body_of(res);
  EXPECT_EQ(out.at("value").as_string(), "ok\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD!");
  EXPECT_EQ(out.at("encoding_lossy"), json::value(true));
}

TEST(HttpApi, BadBodies) {
  struct Case {
    std::string body;
    std::string error_part;
  };
  const std::vector<Case> cases = {
      {"", "missing body"},
      {"{not json", "invalid JSON"},
      {R"({"value": "a"} trailing)", "invalid JSON"},
      {"\"just a string\"", "not a JSON object"},
      {"[1,2]", "not a JSON object"},
      {R"({"val": "x"})", R"(missing "value")"},
      {R"({"value": 42})", "must be a JSON string"},
      {R"({"value": null})", "must be a JSON string"},
      {R"({"value": {"nested": "x"}})", "must be a JSON string"},
      {"{\"value\": \"\xFF\"}", "invalid JSON"},
  };
  for (const Case& c : cases) {
    FakeNode node;
    HttpResponse res = call(node, make_request(http::verb::post, "/v1/k", c.body));
    EXPECT_EQ(res.result(), http::status::bad_request) << c.body;
    EXPECT_NE(error_of(res).find(c.error_part), std::string::npos)
        << c.body << " -> " << res.body();
    EXPECT_TRUE(node.requests.empty()) << "bad input must not reach the node: " << c.body;
  }
}

TEST(HttpApi, BodyOverLimitIs413) {
  FakeNode node;
  HttpLimits limits;
  limits.body_bytes_max = 16;
  HttpResponse res = call(
      node, make_request(http::verb::post, "/v1/k", R"({"value": "0123456789abcdef"})"), limits);
  EXPECT_EQ(res.result(), http::status::payload_too_large);
  EXPECT_NE(error_of(res).find("body_bytes_max (16 bytes)"), std::string::npos) << res.body();
  EXPECT_TRUE(node.requests.empty());
}

TEST(HttpApi, Quorums) {
  FakeNode node;
  EXPECT_EQ(call(node, http::verb::get, "/v1/k?r=3").result(), http::status::not_found);
  EXPECT_EQ(call(node, http::verb::post, "/v1/k?w=2", R"({"value":"v"})").result(),
            http::status::ok);
  EXPECT_EQ(call(node, http::verb::delete_, "/v1/k?x=1&w=1").result(), http::status::ok);
  EXPECT_EQ(call(node, http::verb::get, "/v1/k").result(), http::status::not_found);
  ASSERT_EQ(node.requests.size(), 4u);
  EXPECT_EQ(node.requests[0].r, 3u);
  EXPECT_EQ(node.requests[1].w, 2u);
  EXPECT_EQ(node.requests[2].w, 1u);
  EXPECT_EQ(node.requests[3].r, 0u);  // absent: the configured default
}

TEST(HttpApi, BadQuorumsAre400) {
  const std::vector<std::pair<http::verb, std::string>> cases = {
      {http::verb::get, "/v1/k?r="},      {http::verb::get, "/v1/k?r"},
      {http::verb::get, "/v1/k?r=abc"},   {http::verb::get, "/v1/k?r=-1"},
      {http::verb::get, "/v1/k?r=+2"},    {http::verb::get, "/v1/k?r=0"},
      {http::verb::get, "/v1/k?r=2x"},    {http::verb::get, "/v1/k?r=99999999999"},
      {http::verb::get, "/v1/k?r=2&r=3"}, {http::verb::get, "/v1/k?w=2"},
      {http::verb::delete_, "/v1/k?r=2"}, {http::verb::post, "/v1/k?w=%32"},
      {http::verb::put, "/v1/k?w= 2"},
  };
  for (const auto& [method, target] : cases) {
    FakeNode node;
    HttpResponse res = call(node, make_request(method, target, R"({"value":"v"})"));
    EXPECT_EQ(res.result(), http::status::bad_request) << target;
    EXPECT_NE(error_of(res).find("query parameter"), std::string::npos) << res.body();
    EXPECT_TRUE(node.requests.empty()) << target;
  }
}

TEST(HttpApi, KeysArePercentDecoded) {
  FakeNode node;
  EXPECT_EQ(call(node, http::verb::post, "/v1/a%2Fb%20c%3f?w=2", R"({"value":"v"})").result(),
            http::status::ok);
  EXPECT_EQ(call(node, http::verb::post, "/v1/x/y+z", R"({"value":"v"})").result(),
            http::status::ok);
  ASSERT_EQ(node.requests.size(), 2u);
  EXPECT_EQ(node.requests[0].key, "a/b c?");
  EXPECT_EQ(node.requests[1].key, "x/y+z");
  EXPECT_EQ(body_of(call(node, http::verb::get, "/v1/a%2fb%20c%3F")).at("key").as_string(),
            "a/b c?");
}

TEST(HttpApi, BadKeysAre400) {
  for (const std::string target : {"/v1/", "/v1/?r=1", "/v1/%", "/v1/a%2", "/v1/%zz", "/v1/%G0"}) {
    FakeNode node;
    HttpResponse res = call(node, http::verb::get, target);
    EXPECT_EQ(res.result(), http::status::bad_request) << target;
    EXPECT_NE(error_of(res).find("key"), std::string::npos) << res.body();
    EXPECT_TRUE(node.requests.empty());
  }
}

TEST(HttpApi, NonUtf8KeyIsEchoedLossily) {
  FakeNode node;
  HttpResponse res = call(node, http::verb::post, "/v1/k%FF", R"({"value":"v"})");
  EXPECT_EQ(res.result(), http::status::ok);
  EXPECT_EQ(node.requests.at(0).key, "k\xFF");
  json::object out = body_of(res);
  EXPECT_EQ(out.at("key").as_string(), "k\xEF\xBF\xBD");
  EXPECT_EQ(out.at("encoding_lossy"), json::value(true));
}

TEST(HttpApi, UnknownPathIs404) {
  FakeNode node;
  for (const std::string target : {"/", "/v1", "/v2/k", "/healthz", "/health/x", "*"}) {
    HttpResponse res = call(node, http::verb::get, target);
    EXPECT_EQ(res.result(), http::status::not_found) << target;
    EXPECT_EQ(res[http::field::content_type], "application/json");
    EXPECT_EQ(error_of(res), "no such route") << target;
  }
}

TEST(HttpApi, WrongMethodIs405WithAllow) {
  FakeNode node;
  HttpResponse res = call(node, http::verb::patch, "/v1/k");
  EXPECT_EQ(res.result(), http::status::method_not_allowed);
  EXPECT_EQ(res[http::field::allow], "GET, PUT, POST, DELETE");
  for (const std::string target : {"/health", "/ready", "/metrics", "/cluster"}) {
    HttpResponse r = call(node, http::verb::post, target);
    EXPECT_EQ(r.result(), http::status::method_not_allowed) << target;
    EXPECT_EQ(r[http::field::allow], "GET") << target;
    EXPECT_EQ(error_of(r), "method not allowed");
  }
  EXPECT_TRUE(node.requests.empty());
}

TEST(HttpApi, HealthReadyMetricsCluster) {
  FakeNode node;
  HttpResponse health = call(node, http::verb::get, "/health");
  EXPECT_EQ(health.result(), http::status::ok);
  EXPECT_EQ(health.body(), R"({"status":"ok"})");

  EXPECT_EQ(call(node, http::verb::get, "/ready").body(), R"({"ready":true})");
  node.is_ready = false;
  HttpResponse not_ready = call(node, http::verb::get, "/ready");
  EXPECT_EQ(not_ready.result(), http::status::service_unavailable);
  EXPECT_EQ(not_ready.body(), R"({"ready":false})");
  EXPECT_EQ(call(node, http::verb::get, "/health").result(), http::status::ok);

  HttpResponse metrics = call(node, http::verb::get, "/metrics");
  EXPECT_EQ(metrics.result(), http::status::ok);
  EXPECT_EQ(metrics[http::field::content_type], "text/plain; version=0.0.4");
  EXPECT_EQ(metrics.body(), "kv_requests_total 7\n");

  HttpResponse cluster = call(node, http::verb::get, "/cluster?verbose=1");
  EXPECT_EQ(cluster.result(), http::status::ok);
  EXPECT_EQ(cluster[http::field::content_type], "application/json");
  EXPECT_EQ(cluster.body(), R"({"nodes":["n1"]})");
}

// ---- Handler: core errors ----

TEST(HttpApi, CoreErrorsMapToStatuses) {
  struct Case {
    Errc errc;
    std::string detail;
    http::status status;
  };
  const std::vector<Case> cases = {
      {Errc::invalid_argument, "read quorum 5 is outside 1..3 (replicas)",
       http::status::bad_request},
      {Errc::quorum_unavailable, "1 of 2 replicas answered", http::status::service_unavailable},
      {Errc::timeout, "1 of 2 acks", http::status::gateway_timeout},
      {Errc::overloaded, "requests_in_flight_max (10) reached", http::status::service_unavailable},
      {Errc::unavailable, "PostgreSQL: connection refused", http::status::service_unavailable},
  };
  for (const Case& c : cases) {
    for (http::verb method : {http::verb::get, http::verb::post, http::verb::delete_}) {
      FakeNode node;
      node.fail = c.errc;
      node.fail_detail = c.detail;
      HttpResponse res = call(node, make_request(method, "/v1/k", R"({"value":"v"})"));
      EXPECT_EQ(res.result(), c.status) << c.detail;
      json::object body = body_of(res);
      EXPECT_EQ(body.at("error").as_string(), make_error_code(c.errc).message());
      EXPECT_EQ(body.at("detail").as_string(), c.detail);
      EXPECT_EQ(res[http::field::retry_after], c.errc == Errc::overloaded ? "1" : "");
    }
  }
}

// The status comes from the error code and the request, never from the detail's text.
TEST(HttpApi, RefusedOversizedValueIs413) {
  HttpLimits limits;
  limits.value_bytes_max = 8;
  const std::string detail = "value of 9 bytes exceeds value_bytes_max (8)";
  const auto refused = [&](std::string body) {
    FakeNode node;
    node.fail = Errc::invalid_argument;
    node.fail_detail = detail;
    return call(node, make_request(http::verb::post, "/v1/k", std::move(body)), limits);
  };
  HttpResponse over = refused(R"({"value":"123456789"})");
  EXPECT_EQ(over.result(), http::status::payload_too_large);
  EXPECT_EQ(body_of(over).at("detail").as_string(), detail);
  // A value within the limit: any other invalid argument is a 400, whatever the detail says.
  EXPECT_EQ(refused(R"({"value":"12345678"})").result(), http::status::bad_request);
}

TEST(HttpApi, MalformedQueryIs400) {
  for (const std::string target : {"/v1/k?x=%zz", "/v1/k?r=1&x=%4", "/v1/k?x=a b"}) {
    FakeNode node;
    HttpResponse res = call(node, http::verb::get, target);
    EXPECT_EQ(res.result(), http::status::bad_request) << target;
    EXPECT_NE(error_of(res).find("query"), std::string::npos) << res.body();
    EXPECT_TRUE(node.requests.empty()) << target;
  }
}

TEST(HttpApi, AnswersWhenTheNodeDoes) {
  FakeNode node;
  node.defer = true;
  std::optional<HttpResponse> out;
  {
    // The request is gone before the node answers: the handler must not have kept it.
    HttpRequest req = make_request(http::verb::post, "/v1/later", R"({"value":"v"})");
    handle_http(req, node, {}, [&](HttpResponse res) { out = std::move(res); });
  }
  EXPECT_FALSE(out);
  ASSERT_EQ(node.deferred.size(), 1u);
  node.deferred[0]();
  ASSERT_TRUE(out);
  EXPECT_EQ(out->body(), R"({"key":"later","version":"1001.0@n1"})");
}

TEST(HttpApi, KeepAliveFollowsTheRequest) {
  FakeNode node;
  HttpRequest req = make_request(http::verb::get, "/health");
  EXPECT_TRUE(call(node, req).keep_alive());
  req.keep_alive(false);
  EXPECT_FALSE(call(node, req).keep_alive());
  req.version(10);
  req.keep_alive(false);
  HttpResponse old = call(node, req);
  EXPECT_EQ(old.version(), 10u);
  EXPECT_FALSE(old.keep_alive());
  req.keep_alive(true);
  EXPECT_TRUE(call(node, req).keep_alive());
}

// ---- Handler: the small parsers ----

TEST(HttpApi, Utf8LossyReplacesMaximalSubparts) {
  const std::string fffd = "\xEF\xBF\xBD";
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"plain", "plain"},
      {"\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80", "\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80"},
      {"\xC0\x80", fffd + fffd},                        // overlong NUL
      {"\xED\xA0\x80", fffd + fffd + fffd},             // surrogate
      {"\xE2\x82", fffd},                               // truncated at the end
      {"\xE2\x82x", fffd + "x"},                        // truncated in the middle
      {"\xF4\x90\x80\x80", fffd + fffd + fffd + fffd},  // above U+10FFFF
      {"\xF5", fffd},
      {std::string("a\0b", 3), std::string("a\0b", 3)},
  };
  for (const auto& [in, want] : cases) {
    bool lossy = false;
    EXPECT_EQ(utf8_lossy(in, &lossy), want);
    EXPECT_EQ(lossy, in != want);
  }
}

// Bytes drawn so that lead bytes, continuation bytes and the edges of Table 3-7 meet often.
rc::Gen<std::string> utf8_edge_bytes() {
  const std::vector<char> edges = {'a',    '\x7F', '\x80', '\x8F', '\x90', '\x9F', '\xA0',
                                   '\xBF', '\xC0', '\xC1', '\xC2', '\xDF', '\xE0', '\xE1',
                                   '\xEC', '\xED', '\xEE', '\xEF', '\xF0', '\xF1', '\xF3',
                                   '\xF4', '\xF5', '\xFF', '\0'};
  return rc::gen::container<std::string>(
      rc::gen::oneOf(rc::gen::arbitrary<char>(), rc::gen::elementOf(edges)));
}

// An independent judge of UTF-8: Boost.JSON's parser, which refuses invalid UTF-8 in strings.
bool json_accepts_as_utf8(std::string_view bytes) {
  std::string doc = "\"";
  for (char c : bytes) {
    const bool special = static_cast<unsigned char>(c) < 0x20 || c == '"' || c == '\\';
    doc += special ? 'x' : c;  // keep the JSON well formed; these are all ASCII anyway
  }
  doc += '"';
  ErrorCode ec;
  std::ignore = json::parse(doc, ec);
  return !ec;
}

RC_GTEST_PROP(HttpApi, Utf8LossyOutputIsValidAndValidInputIsKept, ()) {
  const std::string bytes = *utf8_edge_bytes();
  bool lossy = false;
  const std::string once = utf8_lossy(bytes, &lossy);
  RC_ASSERT(json_accepts_as_utf8(once));
  RC_ASSERT(lossy == !json_accepts_as_utf8(bytes));
  RC_ASSERT(lossy == (once != bytes));
}

RC_GTEST_PROP(HttpApi, EveryByteOfAKeyIsReachableEncoded, (const std::string& bytes)) {
  RC_PRE(!bytes.empty());
  constexpr std::string_view hex = "0123456789ABCDEF";
  std::string encoded;
  for (char c : bytes) {
    const auto b = static_cast<unsigned char>(c);
    encoded += '%';
    encoded += hex[b >> 4];
    encoded += hex[b & 15];
  }
  FakeNode node;
  RC_ASSERT(call(node, http::verb::get, "/v1/" + encoded).result() == http::status::not_found);
  RC_ASSERT(node.requests.size() == 1u);
  RC_ASSERT(node.requests[0].key == bytes);
}

// ---- Server over real sockets ----

constexpr std::chrono::seconds client_timeout{5};

// A blocking-style client whose every operation has a deadline, so a broken server fails the
// test instead of hanging it.
class Client {
 public:
  explicit Client(std::uint16_t port) {
    stream_.expires_after(client_timeout);
    stream_.async_connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port),
                          [this](ErrorCode ec) { ec_ = ec; });
    run();
    EXPECT_FALSE(ec_) << ec_.message();
  }

  ErrorCode send(const HttpRequest& req) {
    HttpRequest copy = req;
    stream_.expires_after(client_timeout);
    http::async_write(stream_, copy, [this](ErrorCode ec, std::size_t) { ec_ = ec; });
    run();
    return ec_;
  }

  ErrorCode send_raw(std::string bytes) {
    stream_.expires_after(client_timeout);
    asio::async_write(stream_, asio::buffer(bytes),
                      [this](ErrorCode ec, std::size_t) { ec_ = ec; });
    run();
    return ec_;
  }

  // The next response; an empty optional if the connection ended (or failed) instead.
  std::optional<HttpResponse> receive() {
    http::response_parser<http::string_body> parser;
    parser.body_limit(64u << 20);
    stream_.expires_after(client_timeout);
    http::async_read(stream_, buffer_, parser, [this](ErrorCode ec, std::size_t) { ec_ = ec; });
    run();
    if (ec_) return std::nullopt;
    return parser.release();
  }

  HttpResponse exchange(const HttpRequest& req) {
    EXPECT_FALSE(send(req));
    std::optional<HttpResponse> res = receive();
    EXPECT_TRUE(res) << ec_.message();
    return res ? std::move(*res) : HttpResponse{};
  }

  const ErrorCode& error() const { return ec_; }

 private:
  void run() {
    io_.restart();
    io_.run();
  }

  asio::io_context io_;
  beast::tcp_stream stream_{io_};
  beast::flat_buffer buffer_;
  ErrorCode ec_;
};

// The server and the fake node on their own io_context thread, as in kvnode.
class HttpServerTest : public ::testing::Test {
 protected:
  void start(HttpServerOptions options = {}) {
    server_.emplace(io_, node_, options);
    ASSERT_FALSE(server_->listen(tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0)));
    port_ = server_->port();
    ASSERT_NE(port_, 0);
    thread_ = std::thread([this] { io_.run(); });
  }

  void TearDown() override {
    if (!thread_.joinable()) return;
    asio::post(io_, [this] { server_->stop(); });
    // Returns only once every connection has ended: nothing may be left running after stop().
    thread_.join();
    EXPECT_EQ(server_->connections(), 0u);
  }

  asio::io_context io_;
  FakeNode node_;
  std::optional<HttpServer> server_;
  std::uint16_t port_ = 0;
  std::thread thread_;
};

bool ends(Client& client) { return !client.receive().has_value(); }

TEST_F(HttpServerTest, KeepAliveConversation) {
  start();
  Client client(port_);
  HttpResponse put =
      client.exchange(make_request(http::verb::post, "/v1/my_key", R"({"value": "my_value"})"));
  EXPECT_EQ(put.result(), http::status::ok);
  EXPECT_EQ(put.body(), R"({"key":"my_key","version":"1001.0@n1"})");
  EXPECT_TRUE(put.keep_alive());
  HttpResponse get = client.exchange(make_request(http::verb::get, "/v1/my_key"));
  EXPECT_EQ(get.body(), R"({"key":"my_key","value":"my_value","version":"1001.0@n1"})");
  HttpResponse del = client.exchange(make_request(http::verb::delete_, "/v1/my_key"));
  EXPECT_EQ(del.result(), http::status::ok);
  EXPECT_EQ(body_of(del).at("deleted"), json::value(true));
  HttpResponse gone = client.exchange(make_request(http::verb::get, "/v1/my_key"));
  EXPECT_EQ(gone.result(), http::status::not_found);
  EXPECT_EQ(gone[http::field::server], "kvnode");

  HttpRequest last = make_request(http::verb::get, "/health");
  last.keep_alive(false);
  HttpResponse bye = client.exchange(last);
  EXPECT_EQ(bye.result(), http::status::ok);
  EXPECT_FALSE(bye.keep_alive());
  EXPECT_TRUE(ends(client));
}

TEST_F(HttpServerTest, PipelinedRequestsAreAnsweredInOrder) {
  start();
  Client client(port_);
  std::string bytes;
  for (int i = 0; i < 5; ++i) {
    bytes += "POST /v1/k" + std::to_string(i) +
             " HTTP/1.1\r\nHost: x\r\nContent-Length: 13\r\n\r\n{\"value\":\"" + std::to_string(i) +
             "\"}";
    bytes += "GET /v1/k" + std::to_string(i) + " HTTP/1.1\r\nHost: x\r\n\r\n";
  }
  ASSERT_FALSE(client.send_raw(bytes));
  for (int i = 0; i < 5; ++i) {
    std::optional<HttpResponse> put = client.receive();
    ASSERT_TRUE(put);
    EXPECT_EQ(body_of(*put).at("key").as_string(), "k" + std::to_string(i));
    std::optional<HttpResponse> get = client.receive();
    ASSERT_TRUE(get);
    EXPECT_EQ(body_of(*get).at("value").as_string(), std::to_string(i));
  }
}

TEST_F(HttpServerTest, OversizedBodyIs413AndCloses) {
  HttpServerOptions options;
  options.limits.body_bytes_max = 1024;
  start(options);
  Client client(port_);
  const std::string body = R"({"value": ")" + std::string(4096, 'x') + R"("})";
  HttpResponse res = client.exchange(make_request(http::verb::post, "/v1/big", body));
  EXPECT_EQ(res.result(), http::status::payload_too_large);
  EXPECT_NE(error_of(res).find("body_bytes_max (1024 bytes)"), std::string::npos) << res.body();
  EXPECT_FALSE(res.keep_alive());
  EXPECT_TRUE(ends(client));

  // A chunked body is counted as it arrives.
  Client chunked(port_);
  ASSERT_FALSE(
      chunked.send_raw("POST /v1/big HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                       "800\r\n" +
                       std::string(0x800, 'x') + "\r\n0\r\n\r\n"));
  std::optional<HttpResponse> res2 = chunked.receive();
  ASSERT_TRUE(res2);
  EXPECT_EQ(res2->result(), http::status::payload_too_large);

  // With Expect: 100-continue the refusal comes before the body is sent; within the limit, the
  // go-ahead comes and the request is served.
  Client expecting(port_);
  ASSERT_FALSE(
      expecting.send_raw("POST /v1/big HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
                         "Content-Length: 5000\r\n\r\n"));
  std::optional<HttpResponse> res3 = expecting.receive();
  ASSERT_TRUE(res3);
  EXPECT_EQ(res3->result(), http::status::payload_too_large);
  EXPECT_TRUE(node_.requests.empty());
}

TEST_F(HttpServerTest, ExpectContinueWithinLimit) {
  start();
  Client client(port_);
  ASSERT_FALSE(
      client.send_raw("PUT /v1/k HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
                      "Content-Length: 13\r\n\r\n"));
  std::optional<HttpResponse> go_on = client.receive();
  ASSERT_TRUE(go_on);
  EXPECT_EQ(go_on->result(), http::status::continue_);
  ASSERT_FALSE(client.send_raw(R"({"value":"v"})"));
  std::optional<HttpResponse> res = client.receive();
  ASSERT_TRUE(res);
  EXPECT_EQ(res->result(), http::status::ok);
}

TEST_F(HttpServerTest, OversizedHeaderIs431) {
  HttpServerOptions options;
  options.limits.header_bytes_max = 1024;
  start(options);
  Client client(port_);
  HttpRequest req = make_request(http::verb::get, "/health");
  req.set("X-Padding", std::string(2048, 'p'));
  HttpResponse res = client.exchange(req);
  EXPECT_EQ(res.result(), http::status::request_header_fields_too_large);
  EXPECT_NE(error_of(res).find("header_bytes_max (1024 bytes)"), std::string::npos) << res.body();
  EXPECT_TRUE(ends(client));
}

TEST_F(HttpServerTest, GarbageIs400AndOnlyThatConnectionCloses) {
  start();
  Client good(port_);
  EXPECT_EQ(good.exchange(make_request(http::verb::get, "/health")).result(), http::status::ok);

  Client bad(port_);
  ASSERT_FALSE(bad.send_raw(std::string("\x16\x03\x01\x00\xa5garbage\0\r\n\r\n", 18)));
  std::optional<HttpResponse> res = bad.receive();
  ASSERT_TRUE(res) << bad.error().message();
  EXPECT_EQ(res->result(), http::status::bad_request);
  EXPECT_NE(error_of(*res).find("malformed request"), std::string::npos) << res->body();
  EXPECT_TRUE(ends(bad));

  for (const std::string junk :
       {"GET / HTTP/9.9\r\n\r\n", "GET /health HTTP/1.1\r\nBad Header\r\n\r\n",
        "POST /v1/k HTTP/1.1\r\nContent-Length: zz\r\n\r\n"}) {
    Client more(port_);
    ASSERT_FALSE(more.send_raw(junk));
    std::optional<HttpResponse> r = more.receive();
    ASSERT_TRUE(r) << junk;
    EXPECT_EQ(r->result(), http::status::bad_request) << junk;
  }

  // The first connection never noticed.
  EXPECT_EQ(good.exchange(make_request(http::verb::post, "/v1/k", R"({"value":"v"})")).result(),
            http::status::ok);
  EXPECT_EQ(Client(port_).exchange(make_request(http::verb::get, "/v1/k")).result(),
            http::status::ok);
}

TEST_F(HttpServerTest, ConnectionsOverTheMaximumAreRefused) {
  HttpServerOptions options;
  options.connections_max = 1;
  start(options);
  Client first(port_);
  EXPECT_EQ(first.exchange(make_request(http::verb::get, "/health")).result(), http::status::ok);
  Client second(port_);
  std::optional<HttpResponse> res = second.receive();
  ASSERT_TRUE(res);
  EXPECT_EQ(res->result(), http::status::service_unavailable);
  EXPECT_EQ(res->body(), R"({"error":"connections_max reached"})");
  EXPECT_TRUE(ends(second));
  EXPECT_EQ(first.exchange(make_request(http::verb::get, "/health")).result(), http::status::ok);
}

TEST_F(HttpServerTest, StalledClientsAreDisconnected) {
  HttpServerOptions options;
  options.idle_timeout = std::chrono::milliseconds(100);
  options.read_timeout = std::chrono::milliseconds(200);
  start(options);
  Client idle(port_);
  EXPECT_TRUE(ends(idle));  // said nothing
  Client slow(port_);
  ASSERT_FALSE(slow.send_raw("GET /health HTTP/1.1\r\nHost"));
  EXPECT_TRUE(ends(slow));  // started a request and never finished it
  Client quick(port_);
  EXPECT_EQ(quick.exchange(make_request(http::verb::get, "/health")).result(), http::status::ok);
}

TEST_F(HttpServerTest, ClientThatLeavesMidRequestIsForgotten) {
  start();
  {
    Client leaving(port_);
    ASSERT_FALSE(
        leaving.send_raw("POST /v1/k HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{"));
  }
  Client next(port_);
  EXPECT_EQ(next.exchange(make_request(http::verb::get, "/health")).result(), http::status::ok);
}

TEST_F(HttpServerTest, StopClosesOpenConnections) {
  start();
  Client client(port_);
  EXPECT_EQ(client.exchange(make_request(http::verb::get, "/health")).result(), http::status::ok);
  asio::post(io_, [this] { server_->stop(); });
  EXPECT_TRUE(ends(client));
}

}  // namespace
}  // namespace kv
