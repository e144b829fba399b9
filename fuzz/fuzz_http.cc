// The HTTP front door as the server runs it (net/http_server.cc): Beast's request parser under
// the server's limits reads requests from the bytes of one connection, back to back, and each
// request read whole goes to handle_http() (net/http_api.h) with a fake node; a request that
// cannot be read gets the server's error reply.
//
// Properties: every request is answered exactly once (at once, or when the node answers); every
// response serializes and parses back as an HTTP response with the same status and body, so no
// input can split a response or corrupt its framing; a JSON response's body is JSON, and an
// error carries an "error" member.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>

#include <boost/asio/buffer.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/write.hpp>
#include <boost/json/parse.hpp>

#include "fuzz/common.h"
#include "fuzz/fake_node.h"
#include "net/http_api.h"

namespace kv::fuzz {
namespace {

namespace http = boost::beast::http;
using ErrorCode = boost::system::error_code;

constexpr int requests_per_input_max = 16;

void check_response(const HttpResponse& res) {
  std::ostringstream wire;
  wire << res;
  const std::string bytes = wire.str();
  http::response_parser<http::string_body> parser;
  parser.eager(true);
  parser.body_limit(bytes.size());
  ErrorCode ec;
  parser.put(boost::asio::buffer(bytes), ec);
  if (!ec && !parser.is_done()) parser.put_eof(ec);
  require(!ec && parser.is_done(), "a response does not parse back: " + ec.message());
  const HttpResponse& back = parser.get();
  require(back.result_int() == res.result_int(), "a response's status changed on the wire");
  require(back.body() == res.body(), "a response's body changed on the wire");
  require(back.count(http::field::content_type) == res.count(http::field::content_type),
          "a response's fields changed on the wire");

  if (res[http::field::content_type] == "application/json") {
    ErrorCode jec;
    const boost::json::value body = boost::json::parse(res.body(), jec);
    require(!jec, "a JSON response's body is not JSON: " + res.body());
    if (res.result_int() >= 400) {
      require(body.is_object() && body.as_object().contains("error"),
              "an error response without an \"error\" member: " + res.body());
    }
  }
}

// The server's answer to a request it could not read (answer_read_error).
std::optional<HttpResponse> read_error_response(ErrorCode ec, const HttpLimits& limits) {
  if (ec == http::error::body_limit) {
    return http_error_response(http::status::payload_too_large,
                               "request body exceeds body_bytes_max (" +
                                   std::to_string(limits.body_bytes_max) + " bytes)",
                               11, false);
  }
  if (ec == http::error::header_limit || ec == http::error::buffer_overflow) {
    return http_error_response(http::status::request_header_fields_too_large,
                               "request header exceeds header_bytes_max", 11, false);
  }
  if (ec.category() == http::make_error_code(http::error::bad_target).category()) {
    return http_error_response(http::status::bad_request, "malformed request: " + ec.message(),
                               11, false);
  }
  return std::nullopt;
}

}  // namespace
}  // namespace kv::fuzz

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace kv;
  using namespace kv::fuzz;
  std::string_view rest(reinterpret_cast<const char*>(data), size);
  const HttpLimits limits;  // the server's defaults
  FakeNode node;
  for (int n = 0; n < requests_per_input_max && !rest.empty(); ++n) {
    http::request_parser<http::string_body> parser;
    parser.header_limit(static_cast<std::uint32_t>(limits.header_bytes_max));
    parser.body_limit(limits.body_bytes_max);
    parser.eager(true);
    ErrorCode ec;
    std::size_t used = 0;
    for (;;) {
      const std::size_t got =
          parser.put(boost::asio::buffer(rest.data() + used, rest.size() - used), ec);
      used += got;
      if (parser.is_done() || got == 0 || used == rest.size()) break;
      if (ec == http::error::need_more) ec = {};
      if (ec) break;
    }
    // The connection ends mid-request: the server answers nothing.
    if (ec == http::error::need_more || (!ec && !parser.is_done())) return 0;
    if (ec) {
      if (auto res = read_error_response(ec, limits)) check_response(*res);
      return 0;  // the server closes the connection after a bad request
    }
    rest.remove_prefix(used);
    const HttpRequest req = parser.release();

    // Every other request is answered later, as a node answers after its quorum.
    node.defer = n % 2 == 1;
    int answers = 0;
    HttpResponse last;
    handle_http(req, node, limits, [&](HttpResponse res) {
      ++answers;
      last = std::move(res);
    });
    node.release();
    require(answers == 1, "a request was answered " + std::to_string(answers) + " times");
    check_response(last);
    if (!req.keep_alive()) break;
  }
  return 0;
}
