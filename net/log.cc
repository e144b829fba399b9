// The log line writer (see log.h).
#include "net/log.h"

#include <unistd.h>

#include <cerrno>

#include <string>

namespace kv {

void log_line(std::string_view source, std::string_view text) {
  std::string line;
  line.reserve(source.size() + text.size() + 3);
  line.append(source).append(": ").append(text).push_back('\n');
  // stderr is unbuffered: one write(2) puts the line out whole. A short or failed write to the
  // log cannot be reported anywhere better, so it is dropped.
  std::string_view rest = line;
  while (!rest.empty()) {
    const ssize_t n = ::write(STDERR_FILENO, rest.data(), rest.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    rest.remove_prefix(static_cast<std::size_t>(n));
  }
}

}  // namespace kv
