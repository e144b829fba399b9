// The HTTP/JSON request handler (see http_api.h): routing, strict parsing of keys, quorums and
// bodies, and the mapping of core replies and errors to status codes. Bad input is answered
// here, before it reaches the node, with a JSON error that names what was wrong.
#include "net/http_api.h"

#include <cstdint>
#include <utility>

#include <boost/beast/http/field.hpp>
#include <boost/beast/http/verb.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/system/error_code.hpp>

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

// A quorum from the query: 0 when absent (the core's configured default), or an error message.
struct QuorumParse {
  std::uint32_t value = 0;
  std::string error;
};

bool parse_positive(std::string_view digits, std::uint32_t* out) {
  if (digits.empty() || digits.size() > quorum_digits_max) return false;
  std::uint32_t v = 0;
  for (char c : digits) {
    if (c < '0' || c > '9') return false;
    v = v * 10 + static_cast<std::uint32_t>(c - '0');
  }
  *out = v;
  return v > 0;
}

// Reads `name` (r or w) strictly; `misplaced` is the other one, refused rather than ignored so
// that `GET ?w=3` does not silently read with the default quorum. Other parameters are ignored.
QuorumParse parse_quorum(std::string_view query, std::string_view name, std::string_view misplaced,
                         std::string_view misplaced_why) {
  QuorumParse out;
  bool seen = false;
  while (!query.empty()) {
    const std::size_t amp = query.find('&');
    const std::string_view param = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view{} : query.substr(amp + 1);
    const std::size_t eq = param.find('=');
    const std::string_view pname = param.substr(0, eq);
    const std::string_view pvalue =
        eq == std::string_view::npos ? std::string_view{} : param.substr(eq + 1);
    if (pname == misplaced) return {0, std::string(misplaced_why)};
    if (pname != name) continue;
    if (seen) return {0, "query parameter " + std::string(name) + " given twice"};
    seen = true;
    if (!parse_positive(pvalue, &out.value)) {
      return {0, "query parameter " + std::string(name) +
                     " must be a positive integer of at most " + std::to_string(quorum_digits_max) +
                     " digits"};
    }
  }
  return out;
}

// ---- Bodies ----

// The "value" of a write body, or why there is none. Content-Type is not checked: `curl -d`
// without -H labels the body form-encoded, and the body is read as JSON whatever the label.
struct ValueParse {
  std::string value;
  std::string error;  // empty on success
};

ValueParse parse_value(std::string_view body) {
  constexpr std::string_view expected = R"(expected a JSON object {"value": "..."})";
  if (body.empty()) return {{}, "missing body: " + std::string(expected)};
  boost::system::error_code ec;
  const json::value doc = json::parse(body, ec);
  if (ec) return {{}, "invalid JSON body (" + ec.message() + "): " + std::string(expected)};
  const json::object* obj = doc.if_object();
  if (obj == nullptr) return {{}, "body is not a JSON object: " + std::string(expected)};
  const json::value* value = obj->if_contains("value");
  if (value == nullptr) return {{}, R"(missing "value" in body: )" + std::string(expected)};
  if (!value->is_string()) return {{}, R"("value" must be a JSON string)"};
  return {std::string(value->get_string()), {}};
}

// ---- Core replies ----

HttpResponse core_error_reply(const ClientReply& reply, ReplyTo to) {
  http::status status = http::status::internal_server_error;
  bool retry = false;
  if (reply.error == Errc::invalid_argument) {
    // The core names the limit it enforced in the detail; that is the only thing that tells an
    // oversized value from another invalid argument.
    const bool too_large = reply.detail.find("value_bytes_max") != std::string::npos;
    status = too_large ? http::status::payload_too_large : http::status::bad_request;
  } else if (reply.error == Errc::quorum_unavailable) {
    status = http::status::service_unavailable;
  } else if (reply.error == Errc::timeout) {
    status = http::status::gateway_timeout;
  } else if (reply.error == Errc::overloaded) {
    status = http::status::service_unavailable;
    retry = true;
  } else if (reply.error == Errc::unavailable) {
    status = http::status::service_unavailable;  // PostgreSQL or the legacy API, named in the detail
  }
  bool lossy = false;
  HttpResponse res = json_reply(
      status,
      json::object{{"error", reply.error.message()}, {"detail", utf8_lossy(reply.detail, &lossy)}},
      to);
  if (retry) res.set(http::field::retry_after, "1");
  return res;
}

HttpResponse core_reply(OpType op, const std::string& key, const ClientReply& reply, ReplyTo to) {
  if (reply.error) return core_error_reply(reply, to);
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
  const QuorumParse quorum =
      read ? parse_quorum(query, "r", "w", "query parameter w applies to writes, not GET")
           : parse_quorum(query, "w", "r", "query parameter r applies to GET, not writes");
  if (!quorum.error.empty()) {
    respond(error_reply(http::status::bad_request, quorum.error, to));
    return false;
  }
  (read ? rq.r : rq.w) = quorum.value;
  if (rq.op != OpType::put) return true;
  if (req.body().size() > limits.body_bytes_max) {
    respond(error_reply(
        http::status::payload_too_large,
        "body exceeds body_bytes_max (" + std::to_string(limits.body_bytes_max) + " bytes)", to));
    return false;
  }
  ValueParse parsed = parse_value(req.body());
  if (!parsed.error.empty()) {
    respond(error_reply(http::status::bad_request, parsed.error, to));
    return false;
  }
  rq.value = std::move(parsed.value);
  return true;
}

void handle_key(const HttpRequest& req, std::string_view raw_key, std::string_view query,
                NodeApi& api, const HttpLimits& limits, HttpRespond respond, ReplyTo to) {
  std::optional<std::string> key = percent_decode(raw_key);
  if (!key) {
    return respond(error_reply(http::status::bad_request,
                               "key has an invalid percent-encoding (want %XX, hex)", to));
  }
  if (key->empty()) {
    return respond(error_reply(http::status::bad_request, "empty key: use /v1/{key}", to));
  }
  ClientRequest rq;
  rq.key = *key;
  if (!build_request(req, query, limits, rq, respond, to)) return;
  const OpType op = rq.op;
  api.submit(std::move(rq),
             [respond = std::move(respond), key = std::move(*key), op,
              to](const ClientReply& reply) { respond(core_reply(op, key, reply, to)); });
}

// /health, /ready, /metrics and /cluster. Returns false if `path` is none of them.
bool handle_status(const HttpRequest& req, std::string_view path, NodeApi& api,
                   const HttpRespond& respond, ReplyTo to) {
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

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
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

std::optional<std::string> percent_decode(std::string_view in) {
  std::string out;
  out.reserve(in.size());
  for (std::size_t i = 0; i < in.size(); ++i) {
    if (in[i] != '%') {
      out.push_back(in[i]);
      continue;
    }
    if (i + 2 >= in.size()) return std::nullopt;
    const int hi = hex_value(in[i + 1]);
    const int lo = hex_value(in[i + 2]);
    if (hi < 0 || lo < 0) return std::nullopt;
    out.push_back(static_cast<char>(hi * 16 + lo));
    i += 2;
  }
  return out;
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
