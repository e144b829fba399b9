// What the front doors (RESP and HTTP servers) need from the node, and nothing more: submit a
// client request to the core and hear back once, plus the node's health and figures.
// The servers are written against this interface, so they can be tested with a fake.
#pragma once

#include <functional>
#include <string>
#include <string_view>

#include "core/messages.h"

namespace kv {

class NodeApi {
 public:
  virtual ~NodeApi() = default;

  // Runs one request through the core. `done` is called exactly once, on the event loop thread,
  // possibly before submit returns (e.g. an invalid request). request.id is assigned here.
  virtual void submit(ClientRequest request, std::function<void(const ClientReply&)> done) = 0;

  virtual bool ready() const = 0;                // recovered and in touch with a quorum
  virtual std::string metrics_text() const = 0;  // Prometheus text exposition
  virtual std::string cluster_json() const = 0;  // ring and peers, for /cluster
  virtual std::string info_text() const = 0;     // the body of the RESP INFO reply
  // Starts taking the dead member named `name` (n<number>) out of the cluster: empty, or why not.
  virtual std::string remove_member(std::string_view name) {
    return "removing " + std::string(name) + ": not supported by this node";
  }
};

}  // namespace kv
