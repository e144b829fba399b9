// Prometheus text exposition for the node: counters and fixed-bucket histograms, written by hand
// (a few dozen lines; a client library would bring threads and registries the node does not need).
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <string>

namespace kv {

class Histogram {
 public:
  // Upper bounds in seconds (or units), ascending; +Inf is implicit.
  static constexpr std::array<double, 16> latency_bounds_s = {
      0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
      0.025,   0.05,   0.1,     0.25,   0.5,   1.0,    2.5,   5.0};
  static constexpr std::array<double, 16> count_bounds = {
      1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768};

  explicit Histogram(const std::array<double, 16>& bounds = latency_bounds_s) : bounds_(bounds) {}
  void observe(double v);
  // Appends the _bucket, _sum and _count lines of `name` with `labels` ("" or `op="get"`).
  void write(std::string& out, const std::string& name, const std::string& labels) const;

 private:
  std::array<double, 16> bounds_;
  std::array<std::uint64_t, 17> counts_{};
  double sum_ = 0;
  std::uint64_t count_ = 0;
};

// Appends "# HELP" and "# TYPE" lines.
void metric_header(std::string& out, const std::string& name, const std::string& type,
                   const std::string& help);

}  // namespace kv
