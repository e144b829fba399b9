// The HTTP/JSON request handler (see http_api.h): routing, strict parsing of keys, quorums and
// bodies, and the mapping of core replies and errors to status codes. Bad input is answered
// here, before it reaches the node, with a JSON error that names what was wrong. Percent-encoding
// and query strings are read with Boost.URL.
#include "net/http_api.h"

#include <cstdint>
#include <optional>
#include <utility>

#include <boost/beast/http/field.hpp>
#include <boost/beast/http/verb.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/system/error_code.hpp>
#include <boost/url/params_encoded_view.hpp>
#include <boost/url/parse_query.hpp>
#include <boost/url/pct_string_view.hpp>

#include "core/parse.h"

namespace kv {

namespace {

namespace http = boost::beast::http;
namespace json = boost::json;

constexpr std::string_view key_prefix = "/v1/";
constexpr std::string_view key_route_allow = "GET, PUT, POST, DELETE";
constexpr std::string_view metrics_content_type = "text/plain; version=0.0.4";
constexpr std::string_view replacement_character = "\xEF\xBF\xBD";
// Nine digits cannot overflow a uint32; the core rejects anything above N anyway.
constexpr std::size_t quorum_digits_max = 9;

// What a reply needs of its request once handle_http has returned.
struct ReplyTo {
  unsigned version = 11;
  bool keep_alive = true;
};

HttpResponse json_reply(http::status status, const json::value& body, ReplyTo to) {
  return http_json_response(status, body, to.version, to.keep_alive);
}

HttpResponse error_reply(http::status status, std::string_view error, ReplyTo to) {
  return http_error_response(status, error, to.version, to.keep_alive);
}

HttpResponse method_not_allowed(std::string_view method, std::string_view allow, ReplyTo to) {
  bool lossy = false;
  HttpResponse res = json_reply(http::status::method_not_allowed,
                                json::object{{"error", "method not allowed"},
                                             {"method", utf8_lossy(method, &lossy)},
                                             {"allow", allow}},
                                to);
  res.set(http::field::allow, allow);
  return res;
}

// ---- Query parameters ----

// A quorum from the query: 0 when absent (the core's configured default).
// Reads `name` (r or w) strictly; `misplaced` is the other one, refused rather than ignored so
// that `GET ?w=3` does not silently read with the default quorum. Other parameters are ignored,
// but the whole query must be well formed (RFC 3986 characters, valid %XX escapes). Names and
// values are compared as sent, not decoded: "w=%32" is not a quorum.
Expected<std::uint32_t> parse_quorum(std::string_view query, std::string_view name,
                                     std::string_view misplaced, std::string_view misplaced_why) {
  if (query.empty()) return 0u;
  // Boost 1.81's parse_query sizes the view it returns with strlen(), so it is given a copy that
  // ends in a NUL; a query it accepts holds no NUL byte, so the view covers exactly the query.
  const std::string terminated(query);
  const auto params = boost::urls::parse_query(terminated);
  if (!params) {
    return invalid_input("query parameters are not a valid URL query (" +
                         params.error().message() + ")");
  }
  std::optional<std::uint32_t> quorum;
  for (const auto param : *params) {
    const std::string_view key(param.key.data(), param.key.size());
    if (key == misplaced) return invalid_input(std::string(misplaced_why));
    if (key != name) continue;
    if (quorum) return invalid_input("query parameter " + std::string(name) + " given twice");
    const std::string_view digits(param.value.data(), param.has_value ? param.value.size() : 0);
    quorum = digits.size() <= quorum_digits_max ? parse_integer<std::uint32_t>(digits)
                                                : std::nullopt;
    if (!quorum || *quorum == 0) {
      return invalid_input("query parameter " + std::string(name) +
                           " must be a positive integer of at most " +
                           std::to_string(quorum_digits_max) + " digits");
    }
  }
  return quorum.value_or(0);
}

// ---- Bodies ----

// The "value" of a write body. Content-Type is not checked: `curl -d` without -H labels the
// body form-encoded, and the body is read as JSON whatever the label.
Expected<std::string> parse_value(std::string_view body) {
  constexpr std::string_view expected = R"(expected a JSON object {"value": "..."})";
  if (body.empty()) return invalid_input("missing body: " + std::string(expected));
  boost::system::error_code ec;
  const json::value doc = json::parse(body, ec);
  if (ec) {
    return invalid_input("invalid JSON body (" + ec.message() + "): " + std::string(expected));
  }
  const json::object* obj = doc.if_object();
  if (obj == nullptr) return invalid_input("body is not a JSON object: " + std::string(expected));
  const json::value* value = obj->if_contains("value");
  if (value == nullptr) {
    return invalid_input(R"(missing "value" in body: )" + std::string(expected));
  }
  if (!value->is_string()) return invalid_input(R"("value" must be a JSON string)");
  return std::string(value->get_string());
}

// ---- Core replies ----

// The status for an error a client can see (core/errors.h). Anything outside the "kv"
// category is a bug in the node: 500.
http::status status_of(std::error_code error) {
  if (error.category() != errc_category()) return http::status::internal_server_error;
  switch (static_cast<Errc>(error.value())) {
    case Errc::invalid_argument: return http::status::bad_request;
    case Errc::quorum_unavailable: return http::status::service_unavailable;
    case Errc::timeout: return http::status::gateway_timeout;
    case Errc::overloaded: return http::status::service_unavailable;  // with Retry-After
    case Errc::unavailable: return http::status::service_unavailable;  // PostgreSQL or legacy API
  }
  return http::status::internal_server_error;
}

// `oversized`: the request was a put whose value is over value_bytes_max, so an invalid
// argument is that value (413), whatever else the core found wrong with the request.
HttpResponse core_error_reply(const ClientReply& reply, bool oversized, ReplyTo to) {
  http::status status = status_of(reply.error);
  if (oversized && reply.error == Errc::invalid_argument) status = http::status::payload_too_large;
  const bool retry = reply.error == Errc::overloaded;
  bool lossy = false;
  HttpResponse res = json_reply(
      status,
      json::object{{"error", reply.error.message()}, {"detail", utf8_lossy(reply.detail, &lossy)}},
      to);
  if (retry) res.set(http::field::retry_after, "1");
  return res;
}

HttpResponse core_reply(OpType op, const std::string& key, const ClientReply& reply,
                        bool oversized, ReplyTo to) {
  if (reply.error) return core_error_reply(reply, oversized, to);
  bool lossy = false;
  const std::string shown_key = utf8_lossy(key, &lossy);
  if (op == OpType::get && (!reply.record || reply.record->tombstone)) {
    // A tombstone is a delete that has not been collected yet: to a client, not found.
    json::object body{{"error", "not found"}, {"key", shown_key}};
    if (lossy) body["encoding_lossy"] = true;
    return json_reply(http::status::not_found, body, to);
  }
  json::object body{{"key", shown_key}};
  if (op == OpType::get) {
    body["value"] = utf8_lossy(reply.record->value, &lossy);
    body["version"] = reply.record->version.to_string();
  } else {
    if (op == OpType::del) body["deleted"] = true;
    body["version"] = reply.version.to_string();
  }
  if (lossy) body["encoding_lossy"] = true;
  return json_reply(http::status::ok, body, to);
}

// ---- Routes ----

// Fills `rq` from the method, query and body of a /v1/{key} request, or answers it.
bool build_request(const HttpRequest& req, std::string_view query, const HttpLimits& limits,
                   ClientRequest& rq, const HttpRespond& respond, ReplyTo to) {
  const http::verb method = req.method();
  if (method == http::verb::get) {
    rq.op = OpType::get;
  } else if (method == http::verb::put || method == http::verb::post) {
    rq.op = OpType::put;
  } else if (method == http::verb::delete_) {
    rq.op = OpType::del;
  } else {
    respond(method_not_allowed(req.method_string(), key_route_allow, to));
    return false;
  }
  const bool read = rq.op == OpType::get;
  const Expected<std::uint32_t> quorum =
      read ? parse_quorum(query, "r", "w", "query parameter w applies to writes, not GET")
           : parse_quorum(query, "w", "r", "query parameter r applies to GET, not writes");
  if (!quorum) {
    respond(error_reply(http::status::bad_request, quorum.error().detail, to));
    return false;
  }
  (read ? rq.r : rq.w) = quorum.value();
  if (rq.op != OpType::put) return true;
  if (req.body().size() > limits.body_bytes_max) {
    respond(error_reply(
        http::status::payload_too_large,
        "body exceeds body_bytes_max (" + std::to_string(limits.body_bytes_max) + " bytes)", to));
    return false;
  }
  Expected<std::string> value = parse_value(req.body());
  if (!value) {
    respond(error_reply(http::status::bad_request, value.error().detail, to));
    return false;
  }
  rq.value = std::move(value).value();
  return true;
}

void handle_key(const HttpRequest& req, std::string_view raw_key, std::string_view query,
                NodeApi& api, const HttpLimits& limits, HttpRespond respond, ReplyTo to) {
  // Only the escapes are checked: any other byte of the path is part of the key as sent.
  const auto encoded = boost::urls::make_pct_string_view(raw_key);
  if (!encoded) {
    return respond(error_reply(http::status::bad_request,
                               "key has an invalid percent-encoding (want %XX, hex)", to));
  }
  std::string key = encoded->decode();
  if (key.empty()) {
    return respond(error_reply(http::status::bad_request, "empty key: use /v1/{key}", to));
  }
  ClientRequest rq;
  rq.key = key;
  if (!build_request(req, query, limits, rq, respond, to)) return;
  const OpType op = rq.op;
  const bool oversized = op == OpType::put && rq.value.size() > limits.value_bytes_max;
  api.submit(std::move(rq), [respond = std::move(respond), key = std::move(key), op, oversized,
                             to](const ClientReply& reply) {
    respond(core_reply(op, key, reply, oversized, to));
  });
}

// /health, /ready, /metrics and /cluster, and POST /cluster/remove/{name}. Returns false if
// `path` is none of them.
bool handle_status(const HttpRequest& req, std::string_view path, NodeApi& api,
                   const HttpRespond& respond, ReplyTo to) {
  constexpr std::string_view remove_prefix = "/cluster/remove/";
  if (path.starts_with(remove_prefix)) {
    if (req.method() != http::verb::post) {
      respond(method_not_allowed(req.method_string(), "POST", to));
      return true;
    }
    const std::string name(path.substr(remove_prefix.size()));
    const std::string refused = api.remove_member(name);
    if (refused.empty()) {
      respond(json_reply(http::status::accepted,
                         json::object{{"removing", name},
                                      {"detail", "its ranges are copied to the remaining replicas; "
                                                 "/cluster shows it leaving, then left"}},
                         to));
    } else {
      bool lossy = false;
      respond(json_reply(http::status::conflict,
                         json::object{{"error", "refused"}, {"detail", utf8_lossy(refused, &lossy)}}, to));
    }
    return true;
  }
  if (path != "/health" && path != "/ready" && path != "/metrics" && path != "/cluster") {
    return false;
  }
  if (req.method() != http::verb::get) {
    respond(method_not_allowed(req.method_string(), "GET", to));
  } else if (path == "/health") {
    // Liveness only: the process answers. Readiness is /ready.
    respond(json_reply(http::status::ok, json::object{{"status", "ok"}}, to));
  } else if (path == "/ready") {
    const bool ready = api.ready();
    respond(json_reply(ready ? http::status::ok : http::status::service_unavailable,
                       json::object{{"ready", ready}}, to));
  } else {
    HttpResponse res{http::status::ok, to.version};
    res.set(http::field::server, "kvnode");
    const bool metrics = path == "/metrics";
    res.set(http::field::content_type, metrics ? metrics_content_type : "application/json");
    res.keep_alive(to.keep_alive);
    res.body() = metrics ? api.metrics_text() : api.cluster_json();
    res.prepare_payload();
    respond(std::move(res));
  }
  return true;
}

// Length of the UTF-8 sequence at the start of `s` if it is valid, else the length of its
// maximal invalid subpart (at least 1), per Unicode Table 3-7 (no overlongs, no surrogates,
// nothing above U+10FFFF).
std::size_t utf8_step(std::string_view s, bool* valid) {
  const auto b0 = static_cast<unsigned char>(s[0]);
  *valid = true;
  if (b0 < 0x80) return 1;
  std::size_t need = 0;
  unsigned char lo = 0x80;
  unsigned char hi = 0xBF;
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    need = 1;
  } else if (b0 == 0xE0) {
    need = 2, lo = 0xA0;
  } else if (b0 == 0xED) {
    need = 2, hi = 0x9F;
  } else if (b0 >= 0xE1 && b0 <= 0xEF) {
    need = 2;
  } else if (b0 == 0xF0) {
    need = 3, lo = 0x90;
  } else if (b0 >= 0xF1 && b0 <= 0xF3) {
    need = 3;
  } else if (b0 == 0xF4) {
    need = 3, hi = 0x8F;
  }
  for (std::size_t k = 1; k <= need; ++k) {
    const auto b = k < s.size() ? static_cast<unsigned char>(s[k]) : 0;
    if (k >= s.size() || b < lo || b > hi) {
      *valid = false;
      return k;
    }
    lo = 0x80, hi = 0xBF;
  }
  *valid = need > 0;
  return need + 1;
}

}  // namespace

void handle_http(const HttpRequest& req, NodeApi& api, const HttpLimits& limits,
                 HttpRespond respond) {
  const ReplyTo to{req.version(), req.keep_alive()};
  const std::string_view target = req.target();
  const std::size_t question = target.find('?');
  const std::string_view path = target.substr(0, question);
  const std::string_view query =
      question == std::string_view::npos ? std::string_view{} : target.substr(question + 1);
  if (path.starts_with(key_prefix)) {
    // Everything after /v1/ is the key, so a key may hold '/' literally or as %2F.
    return handle_key(req, path.substr(key_prefix.size()), query, api, limits, std::move(respond),
                      to);
  }
  if (handle_status(req, path, api, respond, to)) return;
  bool lossy = false;
  respond(json_reply(http::status::not_found,
                     json::object{{"error", "no such route"}, {"path", utf8_lossy(path, &lossy)}},
                     to));
}

HttpResponse http_json_response(http::status status, const json::value& body, unsigned version,
                                bool keep_alive) {
  HttpResponse res{status, version};
  res.set(http::field::server, "kvnode");
  res.set(http::field::content_type, "application/json");
  res.keep_alive(keep_alive);
  res.body() = json::serialize(body);
  res.prepare_payload();
  return res;
}

HttpResponse http_error_response(http::status status, std::string_view error, unsigned version,
                                 bool keep_alive) {
  bool lossy = false;
  return http_json_response(status, json::object{{"error", utf8_lossy(error, &lossy)}}, version,
                            keep_alive);
}

std::string utf8_lossy(std::string_view bytes, bool* lossy) {
  std::string out;
  out.reserve(bytes.size());
  while (!bytes.empty()) {
    bool valid = false;
    const std::size_t n = utf8_step(bytes, &valid);
    if (valid) {
      out.append(bytes.substr(0, n));
    } else {
      out.append(replacement_character);
      *lossy = true;
    }
    bytes.remove_prefix(n);
  }
  return out;
}

}  // namespace kv
