// A log whose lines someone outside the node can cause: a stranger's refused peer link, a
// client's protocol error or stalled request. Each such event is worth one line, but a flood of
// them must not flood the log: up to `burst` lines pass at once, then `per_second` lines per
// second; the lines over the rate are counted, and the count is logged a second after the
// first of them was dropped (or at flush()).
//
// Threading: one io_context thread, like the servers that use it.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

namespace kv {

class LogLimit : public std::enable_shared_from_this<LogLimit> {
 public:
  static constexpr double burst_default = 20;
  static constexpr double per_second_default = 5;

  // Lines go to stderr as "<prefix>: <line>"; `what` names the lines in the count's line.
  // Make with std::make_shared: the summary timer holds a weak reference.
  LogLimit(boost::asio::io_context& io, std::string prefix, std::string what,
           double burst = burst_default, double per_second = per_second_default);

  // Logs `line` if the rate allows, else counts it.
  void log(const std::string& line);
  // Logs the count of lines dropped so far, if any, and cancels the pending summary.
  void flush();

 private:
  void write(const std::string& line) const;

  const std::string prefix_, what_;
  const double burst_, per_second_;
  double tokens_;
  std::chrono::steady_clock::time_point refilled_ = std::chrono::steady_clock::now();
  std::uint64_t dropped_ = 0;
  boost::asio::steady_timer summary_;
};

}  // namespace kv
