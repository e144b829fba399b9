// The "kv" error category (see errors.h).
#include "core/errors.h"

namespace kv {

namespace {

class ErrcCategory final : public std::error_category {
 public:
  const char* name() const noexcept override { return "kv"; }
  std::string message(int e) const override {
    switch (static_cast<Errc>(e)) {
      case Errc::invalid_argument: return "invalid argument";
      case Errc::quorum_unavailable: return "quorum unavailable";
      case Errc::timeout: return "timed out, outcome unknown";
      case Errc::overloaded: return "overloaded";
      case Errc::unavailable: return "unavailable";
    }
    return "unknown error";
  }
};

}  // namespace

const std::error_category& errc_category() {
  static const ErrcCategory category;
  return category;
}

std::error_code make_error_code(Errc e) { return {static_cast<int>(e), errc_category()}; }

}  // namespace kv
