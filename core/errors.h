// Errors as values, for the whole project: the client-visible error codes of the store (Errc,
// category "kv"), Result<T> for operating errors that a code says all about (disk, recovery),
// and Expected<T> for errors a person reads, where the code comes with what exactly was wrong
// (bad flags, addresses, scenario files, client input). Both are Boost.Outcome results:
// propagate with BOOST_OUTCOME_TRY; observing the value of a failed Expected aborts.
#pragma once

#include <string>
#include <system_error>
#include <utility>

#include <boost/outcome/result.hpp>
#include <boost/outcome/try.hpp>

namespace kv {

// Errors a client can see. A put or delete that fails with `quorum_unavailable` wrote nothing;
// one that fails with `timeout` may or may not have been applied (the outcome is unknown).
enum class Errc {
  invalid_argument = 1,  // bad key, value or quorum for this cluster; any malformed input
  quorum_unavailable,    // too few replicas answered before the deadline; nothing was written
  timeout,               // too few acknowledgements before the deadline; outcome unknown
  overloaded,            // requests_in_flight_max reached, or the PostgreSQL write-behind queue
                         // is full (pg_queue_max); nothing was written
  unavailable,           // PostgreSQL or the legacy API failed (the detail names which): a get
                         // of a key the cluster does not hold cannot tell "absent" from "not
                         // reachable", so it fails rather than answer a false not-found; a put
                         // or delete whose PostgreSQL write failed in sync mode may or may not
                         // be applied on the replicas, and is not acknowledged
};
const std::error_category& errc_category();
std::error_code make_error_code(Errc e);

namespace outcome = boost::outcome_v2;

template <typename T>
using Result = outcome::result<T, std::error_code>;

// An error with the sentence that explains it ("--seeds: expected A-B, got 'x'").
struct Error {
  std::error_code code;
  std::string detail;
};

template <typename T>
using Expected = outcome::result<T, Error, outcome::policy::terminate>;

// Bad input from outside: a flag, an address, a file, a request.
inline Error invalid_input(std::string detail) {
  return Error{make_error_code(Errc::invalid_argument), std::move(detail)};
}

}  // namespace kv

template <>
struct std::is_error_code_enum<kv::Errc> : std::true_type {};
