// The HTTP/JSON front door as a function from request to response, with no I/O of its own:
// handle_http() routes one parsed request to the node and answers through a callback. The Beast
// server (net/http_server.h) only reads requests and writes what this returns, so every route
// and error path can be tested, and fuzzed, without a socket.
//
// Routes (compatible with the seed project's curl examples):
//   POST|PUT /v1/{key}[?w=N]   body {"value": "..."}   -> 200 {"key","version"}
//   GET      /v1/{key}[?r=N]                          -> 200 {"key","value","version"} | 404
//   DELETE   /v1/{key}[?w=N]                          -> 200 {"key","deleted":true,"version"}
//   GET /health, /ready, /metrics (Prometheus text), /cluster (JSON)
//
// Encoding rule: JSON strings are UTF-8, keys and values are bytes. A write through this API
// stores the UTF-8 bytes of the JSON string. A value written another way (RESP) may hold bytes
// that are not UTF-8; GET returns it with each invalid sequence replaced by U+FFFD and adds
// "encoding_lossy": true, so a client can tell it did not get the exact bytes. Keys echoed in
// replies follow the same rule (they are percent-decoded from the path, so any byte is reachable
// there): any reply in which a key or value had to be replaced carries "encoding_lossy": true.
#pragma once

#include <cstddef>
#include <functional>
#include <string>
#include <string_view>

#include <boost/beast/http/message.hpp>
#include <boost/beast/http/status.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/json/value.hpp>

#include "net/node_api.h"

namespace kv {

using HttpRequest = boost::beast::http::request<boost::beast::http::string_body>;
using HttpResponse = boost::beast::http::response<boost::beast::http::string_body>;
using HttpRespond = std::function<void(HttpResponse)>;

struct HttpLimits {
  std::size_t header_bytes_max = 16 * 1024;      // request line and fields together
  std::size_t body_bytes_max = 2 * 1024 * 1024;  // the request body, after de-chunking
  // The core's limit (ReplicaConfig::value_bytes_max): a put over it that the core refuses is
  // answered 413 rather than 400.
  std::size_t value_bytes_max = 1024 * 1024;
};

// Answers `req`: calls `respond` exactly once, either before returning (bad input, health
// routes) or later from NodeApi::submit's completion, on the event loop thread.
// Nothing of `req` is kept after handle_http returns.
// REQUIRES: `api` outlives every pending submit.
void handle_http(const HttpRequest& req, NodeApi& api, const HttpLimits& limits,
                 HttpRespond respond);

// A response with a serialized JSON body, Content-Type application/json and Server: kvnode.
HttpResponse http_json_response(boost::beast::http::status status, const boost::json::value& body,
                                unsigned version, bool keep_alive);

// The same with body {"error": error}; what the server sends for requests it could not parse.
HttpResponse http_error_response(boost::beast::http::status status, std::string_view error,
                                 unsigned version, bool keep_alive);

// `bytes` as valid UTF-8: each maximal invalid subsequence (W3C/Unicode "substitution of maximal
// subparts") becomes U+FFFD. Sets *lossy when anything was replaced (never clears it).
std::string utf8_lossy(std::string_view bytes, bool* lossy);

}  // namespace kv
