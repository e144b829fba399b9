// Parsing of host:port (see host_port.h).
#include "net/host_port.h"

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/ip/tcp.hpp>

#include "core/parse.h"

namespace kv {

Expected<HostPort> parse_host_port(std::string_view text) {
  const auto colon = text.rfind(':');
  if (colon == std::string_view::npos || colon == 0) {
    return invalid_input("expected host:port, got '" + std::string(text) + "'");
  }
  std::string_view host = text.substr(0, colon);
  if (host.front() == '[') {
    if (host.size() < 3 || host.back() != ']') {
      return invalid_input("expected [address]:port, got '" + std::string(text) + "'");
    }
    host = host.substr(1, host.size() - 2);
  } else if (host.find(':') != std::string_view::npos) {
    return invalid_input("an IPv6 address needs brackets, as in [::1]:7001, got '" +
                         std::string(text) + "'");
  }
  const auto port = parse_integer<std::uint16_t>(text.substr(colon + 1));
  if (!port) {
    return invalid_input("bad port in '" + std::string(text) + "' (expected 0 to 65535)");
  }
  return HostPort{std::string(host), *port};
}

Expected<boost::asio::ip::tcp::endpoint> tcp_endpoint(const HostPort& hp) {
  boost::system::error_code ec;
  const auto address =
      boost::asio::ip::make_address(hp.host == "localhost" ? "127.0.0.1" : hp.host, ec);
  if (ec) {
    return invalid_input("'" + hp.host +
                         "' is not an IP address (names other than localhost are not looked up)");
  }
  return boost::asio::ip::tcp::endpoint(address, hp.port);
}

Expected<boost::asio::ip::tcp::endpoint> resolve_endpoint(const HostPort& hp) {
  if (auto ip = tcp_endpoint(hp)) return ip;
  boost::asio::io_context io;
  boost::asio::ip::tcp::resolver resolver(io);
  boost::system::error_code ec;
  const auto found = resolver.resolve(hp.host, std::to_string(hp.port),
                                      boost::asio::ip::tcp::resolver::numeric_service, ec);
  if (ec || found.empty()) {
    return invalid_input("cannot resolve '" + hp.host + "': " + (ec ? ec.message() : "no address"));
  }
  return found.begin()->endpoint();
}

Expected<std::vector<HostPort>> parse_host_port_list(std::string_view text) {
  std::vector<HostPort> out;
  std::size_t start = 0;
  while (true) {
    const auto comma = text.find(',', start);
    BOOST_OUTCOME_TRY(auto hp, parse_host_port(text.substr(start, comma - start)));
    out.push_back(std::move(hp));
    if (out.size() > host_port_list_max) {
      return invalid_input("more than " + std::to_string(host_port_list_max) + " addresses");
    }
    if (comma == std::string_view::npos) return out;
    start = comma + 1;
  }
}

}  // namespace kv
