// A node for the front-door fuzz targets (RESP connections, the HTTP handler): records in a map,
// answered at once or, with `defer`, held until release() hands them back in reverse order (so
// completions arrive out of order, as they do from a real cluster).
//
// The input steers it through keys alone, so that the corpus stays plain protocol bytes:
//   a key "!<digit>"...  fails with the Errc 1 + digit % 5
//   a key ending in '~'  reads as a tombstone
//   any other key never written reads as a record holding the key's own bytes, so values that
//                        are not UTF-8 reach the encoders (a path can percent-encode any byte)
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "net/node_api.h"

namespace kv::fuzz {

class FakeNode final : public NodeApi {
 public:
  void submit(ClientRequest request, std::function<void(const ClientReply&)> done) override {
    request.id = ++next_id_;
    ClientReply reply{.id = request.id};
    const std::string& key = request.key;
    if (key.size() >= 2 && key[0] == '!' && key[1] >= '0' && key[1] <= '9') {
      reply.error = make_error_code(static_cast<Errc>(1 + (key[1] - '0') % 5));
      reply.detail = "fuzz: failed as the key asks";
    } else if (request.op == OpType::get) {
      if (auto it = records_.find(key); it != records_.end()) {
        reply.record = it->second;
      } else if (!key.empty() && key.back() == '~') {
        reply.record = Record{Version{7, 0, 1}, true, {}};
      } else {
        reply.record = Record{Version{7, 1, 2}, false, key};
      }
    } else {
      reply.version = Version{1000 + request.id, 0, 1};
      const bool del = request.op == OpType::del;
      records_[key] = Record{reply.version, del, del ? std::string() : request.value};
    }
    if (defer) {
      held_.emplace_back([done = std::move(done), reply] { done(reply); });
    } else {
      done(reply);
    }
  }
  bool ready() const override { return next_id_ % 2 == 0; }
  std::string metrics_text() const override { return "kv_requests_total 7\n"; }
  std::string cluster_json() const override { return R"({"nodes":["n1"]})"; }
  std::string info_text() const override { return "# Server\r\nrole:node\r\n"; }

  // Answers the held requests, newest first; true if there were any.
  bool release() {
    if (held_.empty()) return false;
    std::vector<std::function<void()>> held = std::move(held_);
    held_.clear();
    for (auto it = held.rbegin(); it != held.rend(); ++it) (*it)();
    return true;
  }

  bool defer = false;

 private:
  std::map<std::string, Record> records_;
  std::vector<std::function<void()>> held_;
  std::uint64_t next_id_ = 0;
};

}  // namespace kv::fuzz
