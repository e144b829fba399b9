// The rate-limited log of net/ (see log_limit.h): a token bucket and a summary timer.
#include "net/log_limit.h"

#include <algorithm>

#include "net/log.h"

namespace kv {

namespace {
constexpr std::chrono::milliseconds summary_delay{1000};
}  // namespace

LogLimit::LogLimit(boost::asio::io_context& io, std::string prefix, std::string what,
                   double burst, double per_second)
    : prefix_(std::move(prefix)),
      what_(std::move(what)),
      burst_(burst),
      per_second_(per_second),
      tokens_(burst),
      summary_(io) {}

void LogLimit::write(const std::string& line) const {
  log_line(prefix_, line);
}

void LogLimit::log(const std::string& line) {
  const auto now = std::chrono::steady_clock::now();
  const double elapsed = std::chrono::duration<double>(now - refilled_).count();
  tokens_ = std::min(burst_, tokens_ + elapsed * per_second_);
  refilled_ = now;
  if (tokens_ >= 1) {
    tokens_ -= 1;
    write(line);
    return;
  }
  if (dropped_++ > 0) return;  // the summary is already due
  summary_.expires_after(summary_delay);
  summary_.async_wait([weak = weak_from_this()](const boost::system::error_code& ec) {
    if (ec) return;
    if (auto self = weak.lock()) self->flush();
  });
}

void LogLimit::flush() {
  summary_.cancel();
  if (dropped_ == 0) return;
  write(std::to_string(dropped_) + " more line(s) about " + what_ + " not logged (over " +
        std::to_string(static_cast<long>(per_second_)) + " per second)");
  dropped_ = 0;
}

}  // namespace kv
