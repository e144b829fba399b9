// Boost.JSON compiled into the fuzz build from its sources, so that its parser is instrumented
// too: the JSON bodies of HTTP requests and legacy answers then steer the fuzzer.
#include <boost/json/src.hpp>
