// create_datagram_endpoint: resolve the addresses, pick a family both agree on, bind and/or
// connect a datagram socket. It must never block on a name lookup (that goes to dns.cpp).
#include "corio/datagram.hpp"

#include <cerrno>
#include <exception>
#include <vector>

#include "corio/dns.hpp"
#include "corio/event_loop.hpp"
#include "net_internal.hpp"

namespace corio {

namespace {

Coro<std::vector<AddressInfo>> resolve_datagram(const HostPort& where, AddressFamily family,
                                                int flags) {
  if (std::optional<SocketAddress> numeric = parse_ip_address(where.first, where.second)) {
    std::vector<AddressInfo> out;
    AddressInfo info;
    info.family = address_family(*numeric);
    info.kind = SocketKind::datagram;
    info.protocol = core::net::kProtocolUdp;
    info.address = *numeric;
    if (family == AddressFamily::unspecified || family == info.family) out.push_back(info);
    co_return out;
  }
  co_return co_await getaddrinfo(where.first, std::to_string(where.second), family,
                                 SocketKind::datagram, 0, flags);
}

Socket open_datagram(AddressFamily family, int protocol, const DatagramOptions& options) {
  Socket sock = Socket::create(family, SocketKind::datagram, protocol);
  if (options.reuse_port) sock.setsockopt(SocketOption::reuse_port, 1);
  if (options.allow_broadcast) sock.setsockopt(SocketOption::broadcast, 1);
  return sock;
}

}  // namespace

SockSendTo DatagramSocket::sendto(std::string_view data, const SocketAddress& address) {
  if (remote_ && !(format_address(*remote_) == format_address(address))) {
    throw ValueError("Invalid address: must be None or " + format_address(*remote_));
  }
  return sock_sendto(sock_, data, address);
}

SockConnect DatagramSocket::connect(const SocketAddress& address) {
  remote_ = address;
  return sock_connect(sock_, address);
}

Coro<DatagramSocket> create_datagram_endpoint(std::optional<HostPort> local_addr,
                                              std::optional<HostPort> remote_addr,
                                              DatagramOptions options) {
  if (!local_addr && !remote_addr) {
    if (options.family == AddressFamily::unspecified) throw ValueError("unexpected address family");
    co_return DatagramSocket(open_datagram(options.family, 0, options));
  }
  std::vector<AddressInfo> locals;
  std::vector<AddressInfo> remotes;
  if (local_addr) locals = co_await resolve_datagram(*local_addr, options.family, ai::passive);
  if (remote_addr) remotes = co_await resolve_datagram(*remote_addr, options.family, 0);
  if ((local_addr && locals.empty()) || (remote_addr && remotes.empty())) {
    throw OSError(EADDRNOTAVAIL, "getaddrinfo() returned empty list");
  }

  // Candidate (family, local, remote) pairs in the resolver's order, as asyncio pairs them.
  struct Candidate {
    AddressFamily family;
    int protocol;
    std::optional<SocketAddress> local;
    std::optional<SocketAddress> remote;
  };
  std::vector<Candidate> candidates;
  if (remote_addr) {
    for (const AddressInfo& r : remotes) {
      if (!local_addr) {
        candidates.push_back({r.family, r.protocol, std::nullopt, r.address});
        continue;
      }
      for (const AddressInfo& l : locals) {
        if (l.family == r.family)
          candidates.push_back({r.family, r.protocol, l.address, r.address});
      }
    }
  } else {
    for (const AddressInfo& l : locals)
      candidates.push_back({l.family, l.protocol, l.address, std::nullopt});
  }
  if (candidates.empty()) throw ValueError("can not get address information");

  std::exception_ptr last_error;
  for (const Candidate& c : candidates) {
    try {
      Socket sock = open_datagram(c.family, c.protocol, options);
      if (c.local) sock.bind(*c.local);
      DatagramSocket endpoint(std::move(sock));
      if (c.remote) co_await endpoint.connect(*c.remote);
      co_return endpoint;
    } catch (const OSError&) {
      last_error = std::current_exception();
    }
  }
  std::rethrow_exception(last_error);
}

}  // namespace corio
