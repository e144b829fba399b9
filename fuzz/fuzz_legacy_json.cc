// The legacy API's answer (net/legacy_json.h): an HTTP status and a body, as libcurl hands them
// to the bridge.
//
// Input: byte 0 picks the status (0-159: 200, 160-199: 404, else 100 + the next byte * 4, so
// 3xx, 4xx and 5xx all occur), byte 1 the body limit (0: the default 2 MiB, else that many
// bytes times 4), the rest is the body; the field is "value", the bridge's default.
// Properties: 404 is not-found whatever the body; a value comes only from a 200 within the limit
// and is valid UTF-8; an error says what was wrong; a value written back into {"value": s} by
// Boost.JSON parses back to the same bytes.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include <boost/json/object.hpp>
#include <boost/json/serialize.hpp>

#include "fuzz/common.h"
#include "net/http_api.h"
#include "net/legacy_json.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace kv;
  using namespace kv::fuzz;
  if (size < 2) return 0;
  long status = 200;
  std::size_t skip = 2;
  if (data[0] >= 200) {
    status = 100 + (size > 2 ? data[2] : 0) * 4;
    skip = 3;
  } else if (data[0] >= 160) {
    status = 404;
  }
  const std::size_t limit = data[1] == 0 ? std::size_t{2} << 20 : std::size_t{data[1]} * 4;
  const std::string_view body(reinterpret_cast<const char*>(data) + std::min(skip, size),
                              size - std::min(skip, size));

  const auto a = parse_legacy_answer(status, body, "value", limit);
  if (status == 404) {
    require(a && !a.value(), "404 is not a not-found");
    return 0;
  }
  if (!a) {
    require(!a.error().detail.empty(), "an error that does not say what was wrong");
    return 0;
  }
  require(a.value().has_value(), "a not-found without a 404");
  const std::string& value = *a.value();
  require(status == 200 && body.size() <= limit, "a value from a non-200 or oversized body");
  bool lossy = false;
  utf8_lossy(value, &lossy);
  require(!lossy, "a value that is not valid UTF-8");

  const std::string again = boost::json::serialize(boost::json::object{{"value", value}});
  const auto b = parse_legacy_answer(200, again, "value", again.size());
  require(b && b.value() == value, "a value does not survive being written back as JSON");
  return 0;
}
