// PostgreSQL write-through and lookup (BridgeKind::pg_write, pg_lookup) with libpq, asynchronous
// on the node's event loop: a pool of non-blocking connections in pipeline mode, each sending a
// batch of prepared statements and one sync (one round trip, one commit), reconnecting with
// backoff. See pg_bridge.cc.
#pragma once

#include <boost/asio/io_context.hpp>
#include <memory>
#include <string>

#include "core/errors.h"
#include "node/bridge.h"

namespace kv {

std::unique_ptr<Bridge> make_pg_bridge(boost::asio::io_context& io, const PgOptions& options);

// Checks what can be checked before connecting: the connection string parses and the table name
// is a plain identifier.
Expected<void> validate_pg_options(const PgOptions& options);
Expected<void> validate_pg_url(const std::string& url);
Expected<void> validate_pg_table(const std::string& table);

// The connection string with any password replaced by "***", for logs.
std::string redact_pg_url(const std::string& url);

}  // namespace kv
