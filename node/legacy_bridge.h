// Legacy API read-through (BridgeKind::legacy_fetch) with libcurl's multi interface on the node's
// event loop: GET url_template with {key} replaced by the percent-encoded key, connections reused,
// the answer read by parse_legacy_answer (net/legacy_json.h). See legacy_bridge.cc.
#pragma once

#include <boost/asio/io_context.hpp>
#include <memory>
#include <string>
#include <string_view>

#include "core/errors.h"
#include "node/bridge.h"

namespace kv {

std::unique_ptr<Bridge> make_legacy_bridge(boost::asio::io_context& io, const LegacyOptions& options);

// Checks the template: http:// or https://, a host, and {key} somewhere.
Expected<void> validate_legacy_url_template(const std::string& url_template);

// The URL for `key`: every {key} replaced by the key with each byte outside RFC 3986's
// unreserved characters percent-encoded.
std::string legacy_url_for(const std::string& url_template, std::string_view key);

}  // namespace kv
