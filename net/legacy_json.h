// The legacy API's answer, read without I/O: an HTTP status and a body in, a value, a not-found
// or an error out. Pure, so the node's libcurl bridge and the fuzzer run the same code.
//
//   200 with a JSON object whose `field` is a string      -> the string's bytes (UTF-8)
//   200 with that member a number, boolean or null         -> an error (the value must be a string)
//   404                                                     -> not found (no value)
//   anything else (other statuses, bad JSON, a missing field, a body over body_bytes_max)
//                                                           -> an error naming what was wrong
//                                                              (Errc::unavailable)
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

#include "core/errors.h"

namespace kv {

Expected<std::optional<std::string>> parse_legacy_answer(long http_status, std::string_view body,
                                                         std::string_view field,
                                                         std::size_t body_bytes_max);

}  // namespace kv
