// Datagram endpoints over loopback UDP (IPv4 and IPv6) and Unix datagram sockets:
// unconnected and connected endpoints, message boundaries, the remote-address check,
// ICMP errors, and cancellation of a pending recvfrom.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cerrno>
#include <corio/datagram.hpp>
#include <corio/runner.hpp>
#include <corio/sleep.hpp>
#include <corio/task.hpp>
#include <string>

namespace corio {
namespace {

bool have_ipv6() {
  try {
    Socket s = Socket::create(AddressFamily::ipv6, SocketKind::datagram);
    s.bind(loopback_address(AddressFamily::ipv6, 0));
    return true;
  } catch (const OSError&) {
    return false;
  }
}

Coro<void> echo_datagrams(DatagramSocket& server, int count) {
  for (int i = 0; i < count; ++i) {
    auto [data, from] = co_await server.recvfrom();
    co_await server.sendto("echo:" + data, from);
  }
}

Coro<void> udp_round_trip(const std::string& host) {
  DatagramSocket server = co_await create_datagram_endpoint(HostPort{host, 0});
  const SocketAddress server_address = server.sockname();
  Task<void> echo = create_task(echo_datagrams(server, 2));

  // Unconnected client: sendto / recvfrom, message boundaries kept.
  DatagramSocket client = co_await create_datagram_endpoint(HostPort{host, 0});
  co_await client.sendto("one", server_address);
  auto [first, from] = co_await client.recvfrom();
  EXPECT_EQ(first, "echo:one");
  EXPECT_EQ(format_address(from), format_address(server_address));

  // Connected client: send / recv, and sendto elsewhere is refused.
  DatagramSocket connected =
      co_await create_datagram_endpoint(std::nullopt, HostPort{host, address_port(server_address)});
  EXPECT_EQ(format_address(*connected.peername()), format_address(server_address));
  co_await connected.send("two");
  EXPECT_EQ(co_await connected.recv(), "echo:two");
  EXPECT_THROW(connected.sendto("x", client.sockname()), ValueError);
  co_await echo;
}

TEST(Datagram, UdpIpv4) {
  run(udp_round_trip("127.0.0.1"));
}

TEST(Datagram, UdpIpv6) {
  if (!have_ipv6()) GTEST_SKIP() << "no IPv6 loopback";
  run(udp_round_trip("::1"));
}

TEST(Datagram, UdpByHostName) {
  run([]() -> Coro<void> {
    DatagramSocket server = co_await create_datagram_endpoint(HostPort{"localhost", 0});
    const std::uint16_t port = address_port(server.sockname());
    DatagramSocket client = co_await create_datagram_endpoint(
        std::nullopt, HostPort{"localhost", port}, {.family = address_family(server.sockname())});
    co_await client.send("named");
    auto [data, from] = co_await server.recvfrom();
    EXPECT_EQ(data, "named");
    EXPECT_EQ(format_address(from), format_address(client.sockname()));
  }());
}

TEST(Datagram, TruncatesToTheBufferSize) {
  run([]() -> Coro<void> {
    DatagramSocket a = co_await create_datagram_endpoint(HostPort{"127.0.0.1", 0});
    DatagramSocket b = co_await create_datagram_endpoint(HostPort{"127.0.0.1", 0});
    co_await b.sendto("0123456789", a.sockname());
    auto [data, from] = co_await a.recvfrom(4);
    EXPECT_EQ(data, "0123");
    char buffer[32];
    co_await b.sendto("second", a.sockname());
    auto [n, from2] = co_await a.recvfrom_into(buffer);
    EXPECT_EQ(std::string(buffer, n), "second");
  }());
}

TEST(Datagram, ConnectedEndpointSeesTheIcmpError) {
  run([]() -> Coro<void> {
    std::uint16_t closed_port;
    {
      DatagramSocket probe = co_await create_datagram_endpoint(HostPort{"127.0.0.1", 0});
      closed_port = address_port(probe.sockname());
    }
    DatagramSocket client =
        co_await create_datagram_endpoint(std::nullopt, HostPort{"127.0.0.1", closed_port});
    co_await client.send("anyone?");
    try {
      co_await client.recv();
      ADD_FAILURE() << "received from a closed port";
    } catch (const ConnectionRefusedError& e) {
      EXPECT_EQ(e.error_number(), ECONNREFUSED);
    }
  }());
}

TEST(Datagram, CancelledRecvfromLosesNoDatagram) {
  run([]() -> Coro<void> {
    DatagramSocket a = co_await create_datagram_endpoint(HostPort{"127.0.0.1", 0});
    DatagramSocket b = co_await create_datagram_endpoint(HostPort{"127.0.0.1", 0});
    Task<ReceivedFrom> pending = create_task(a.recvfrom().coro());
    co_await sleep(0);
    pending.cancel();
    EXPECT_THROW(co_await pending, CancelledError);
    co_await b.sendto("after", a.sockname());
    auto [data, from] = co_await a.recvfrom();
    EXPECT_EQ(data, "after");
  }());
}

TEST(Datagram, UnixDatagramSockets) {
  const std::string path = "/tmp/corio_dgram_" + std::to_string(::getpid()) + ".sock";
  ::unlink(path.c_str());
  run([&]() -> Coro<void> {
    Socket bound = Socket::create(AddressFamily::unix_domain, SocketKind::datagram);
    bound.bind(unix_address(path));
    DatagramSocket server(std::move(bound));
    auto [x, y] = Socket::pair(SocketKind::datagram);
    DatagramSocket left(std::move(x));
    DatagramSocket right(std::move(y));
    co_await left.send("paired");
    EXPECT_EQ(co_await right.recv(), "paired");
    DatagramSocket client(Socket::create(AddressFamily::unix_domain, SocketKind::datagram));
    co_await client.sendto("to a path", unix_address(path));
    auto [data, from] = co_await server.recvfrom();
    EXPECT_EQ(data, "to a path");
  }());
  ::unlink(path.c_str());
}

TEST(Datagram, NeedsAnAddressOrAFamily) {
  run([]() -> Coro<void> {
    EXPECT_THROW(co_await create_datagram_endpoint(std::nullopt), ValueError);
    DatagramSocket unbound = co_await create_datagram_endpoint(std::nullopt, std::nullopt,
                                                               {.family = AddressFamily::ipv4});
    DatagramSocket server = co_await create_datagram_endpoint(HostPort{"127.0.0.1", 0});
    co_await unbound.sendto("hi", server.sockname());  // binds implicitly
    auto [data, from] = co_await server.recvfrom();
    EXPECT_EQ(data, "hi");
    EXPECT_EQ(address_port(from), address_port(unbound.sockname()));
  }());
}

}  // namespace
}  // namespace corio
