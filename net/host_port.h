// The one host:port type: every address a binary takes (listen addresses, peers, the targets of
// kvctl and kvbench) is parsed here. The host is kept as written (an IP address or a name); what
// it resolves to is the connecting code's business (resolve_endpoint() for kvnode's listeners,
// the peer links for peers). IPv6 addresses are written in brackets.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <boost/asio/ip/tcp.hpp>

#include "core/errors.h"

namespace kv {

struct HostPort {
  std::string host;        // without brackets
  std::uint16_t port = 0;  // 0 only where a listener may take any free port

  std::string to_string() const {
    return (host.find(':') != std::string::npos ? "[" + host + "]" : host) + ":" +
           std::to_string(port);
  }
  friend bool operator==(const HostPort&, const HostPort&) = default;
};

inline constexpr std::size_t host_port_list_max = 1024;

// "127.0.0.1:7001", "node-1.kv:7001", "[::1]:7001".
Expected<HostPort> parse_host_port(std::string_view text);
// "a:1,b:2": at least one, at most host_port_list_max.
Expected<std::vector<HostPort>> parse_host_port_list(std::string_view text);

// The TCP endpoint of an IP address, or of "localhost" (127.0.0.1); any other name is refused.
Expected<boost::asio::ip::tcp::endpoint> tcp_endpoint(const HostPort& hp);
// The endpoint to listen on: an IP address as it is, a host name looked up now (the first
// address it has). Blocks for the lookup; for start-up only. Peer links look their names up
// themselves, on every connection attempt (peer_links.h).
Expected<boost::asio::ip::tcp::endpoint> resolve_endpoint(const HostPort& hp);

}  // namespace kv
