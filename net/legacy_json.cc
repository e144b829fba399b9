#include "net/legacy_json.h"

#include <utility>

#include <boost/json/parse.hpp>
#include <boost/json/value.hpp>

namespace kv {

namespace {

Error error(std::string what) { return Error{make_error_code(Errc::unavailable), std::move(what)}; }

}  // namespace

Expected<std::optional<std::string>> parse_legacy_answer(long http_status, std::string_view body,
                                                         std::string_view field,
                                                         std::size_t body_bytes_max) {
  if (http_status == 404) return std::optional<std::string>();
  if (http_status != 200) return error("legacy API answered HTTP " + std::to_string(http_status));
  if (body.size() > body_bytes_max) {
    return error("legacy API body of " + std::to_string(body.size()) +
                 " bytes exceeds body_bytes_max (" + std::to_string(body_bytes_max) + ")");
  }
  boost::system::error_code ec;
  boost::json::parse_options opts;
  opts.max_depth = 32;
  const boost::json::value v = boost::json::parse(body, ec, {}, opts);
  if (ec) return error("legacy API body is not JSON: " + ec.message());
  const boost::json::object* o = v.if_object();
  if (!o) return error("legacy API body is not a JSON object");
  const boost::json::value* member = o->if_contains(field);
  if (!member) return error("legacy API body has no \"" + std::string(field) + "\" member");
  const boost::json::string* s = member->if_string();
  if (!s) return error("legacy API member \"" + std::string(field) + "\" is not a string");
  return std::optional<std::string>(std::in_place, s->data(), s->size());
}

}  // namespace kv
