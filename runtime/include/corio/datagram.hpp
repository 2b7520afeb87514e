// Datagrams (UDP, and Unix datagram sockets): the twin of loop.create_datagram_endpoint,
// shaped as an awaitable socket instead of a transport/protocol pair:
//
//   auto ep = co_await corio::create_datagram_endpoint(HostPort{"127.0.0.1", 9999});
//   auto [data, from] = co_await ep.recvfrom();
//   co_await ep.sendto(data, from);
//
// Unconnected endpoints use recvfrom/sendto; an endpoint created with a remote address (or
// connect()ed) also has recv/send, and sendto() to another address raises ValueError, as
// asyncio's transport does. An ICMP error for a connected endpoint surfaces as
// ConnectionRefusedError on its next operation. Every op is an allocation-free awaiter
// (see sock_ops.hpp); the data passed to sendto/send must live until the co_await ends.
// It must never block: host names are resolved off the loop.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "corio/coro.hpp"
#include "corio/sock_ops.hpp"
#include "corio/socket.hpp"

namespace corio {

// (host, port), as asyncio's local_addr / remote_addr tuples.
using HostPort = std::pair<std::string, std::uint16_t>;

struct DatagramOptions {
  AddressFamily family = AddressFamily::unspecified;
  bool reuse_port = false;
  bool allow_broadcast = false;
};

class DatagramSocket {
 public:
  DatagramSocket() noexcept = default;
  // Adopts a datagram socket (bound or connected as it is).
  explicit DatagramSocket(Socket sock, std::optional<SocketAddress> remote = std::nullopt) noexcept
      : sock_(std::move(sock)), remote_(remote) {}

  SockRecvFrom recvfrom(std::size_t max_size = 65536) noexcept {
    return sock_recvfrom(sock_, max_size);
  }
  SockRecvFromInto recvfrom_into(std::span<char> buffer) noexcept {
    return sock_recvfrom_into(sock_, buffer);
  }
  // Connected endpoints only.
  SockRecv recv(std::size_t max_size = 65536) noexcept { return sock_recv(sock_, max_size); }
  SockSend send(std::string_view data) noexcept { return sock_send(sock_, data); }
  // ValueError when connected to another address.
  SockSendTo sendto(std::string_view data, const SocketAddress& address);
  // Sets the default peer (connect(2) on a datagram socket completes at once).
  SockConnect connect(const SocketAddress& address);

  SocketAddress sockname() const { return sock_.getsockname(); }
  std::optional<SocketAddress> peername() const noexcept { return remote_; }
  void close() noexcept { sock_.close(); }
  bool is_closing() const noexcept { return !sock_.is_open(); }
  Socket& socket() noexcept { return sock_; }

 private:
  Socket sock_;
  std::optional<SocketAddress> remote_;
};

// loop.create_datagram_endpoint(local_addr=, remote_addr=, family=, reuse_port=,
// allow_broadcast=). Host names are resolved off the loop. With neither address, `family`
// picks the socket's family and it stays unbound until the first sendto.
Coro<DatagramSocket> create_datagram_endpoint(std::optional<HostPort> local_addr,
                                              std::optional<HostPort> remote_addr = std::nullopt,
                                              DatagramOptions options = {});

}  // namespace corio
