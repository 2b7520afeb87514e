// asyncio.Server semantics over real sockets: serve_forever and its cancellation, close()
// from another task, wait_closed waiting for live connections, start_serving=false,
// binding every interface, reuse_port, errors in the client callback, Unix socket files,
// async_with, close_clients/abort_clients and RAII close.
#include <gtest/gtest.h>
#ifndef _WIN32
#endif
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <corio/async_context.hpp>
#include <corio/runner.hpp>
#include <corio/server.hpp>
#include <corio/sleep.hpp>
#include <corio/streams.hpp>
#include <corio/task.hpp>
#include <string>

namespace corio {
namespace {

bool have_ipv6() {
  try {
    Socket s = Socket::create(AddressFamily::ipv6);
    s.bind(loopback_address(AddressFamily::ipv6, 0));
    return true;
  } catch (const OSError&) {
    return false;
  }
}

Coro<void> echo_until_eof(StreamReader reader, StreamWriter writer) {
  for (;;) {
    std::string data = co_await reader.read(4096);
    if (data.empty()) break;
    writer.write(data);
    co_await writer.drain();
  }
}

Coro<bool> can_connect(std::uint16_t port) {
  try {
    auto [r, w] = co_await open_connection("127.0.0.1", port);
    w.close();
    co_return true;
  } catch (const ConnectionRefusedError&) {
    co_return false;
  }
}

TEST(Server, ServeForeverCancelledClosesTheServer) {
  run([]() -> Coro<void> {
    Server server = co_await start_server(echo_until_eof, "127.0.0.1", 0);
    const std::uint16_t port = address_port(server.addresses().at(0));
    Task<void> forever = create_task(server.serve_forever());
    co_await sleep(0);
    EXPECT_TRUE(server.is_serving());
    EXPECT_TRUE(co_await can_connect(port));
    forever.cancel();
    EXPECT_THROW(co_await forever, CancelledError);
    EXPECT_FALSE(server.is_serving());
    EXPECT_TRUE(server.sockets().empty());
    EXPECT_FALSE(co_await can_connect(port));
  }());
}

TEST(Server, CloseFromAnotherTaskEndsServeForeverWithCancelledError) {
  // asyncio cancels serve_forever's future in close(): the awaiting task sees CancelledError.
  run([]() -> Coro<void> {
    Server server = co_await start_server(echo_until_eof, "127.0.0.1", 0);
    Task<void> forever = create_task(server.serve_forever());
    co_await sleep(0);
    EXPECT_THROW(co_await server.serve_forever(), RuntimeError);  // already being awaited
    server.close();
    EXPECT_THROW(co_await forever, CancelledError);
    EXPECT_THROW(co_await server.serve_forever(), RuntimeError);  // closed
  }());
}

TEST(Server, WaitClosedWaitsForLiveConnections) {
  run([]() -> Coro<void> {
    Server server = co_await start_server(echo_until_eof, "127.0.0.1", 0);
    auto [reader, writer] =
        co_await open_connection("127.0.0.1", address_port(server.addresses().at(0)));
    writer.write("ping");
    EXPECT_EQ(co_await reader.read(4), "ping");
    Task<void> closed = create_task(server.wait_closed());
    co_await sleep(0.01);
    EXPECT_FALSE(closed.done()) << "wait_closed returned before close()";
    server.close();
    co_await sleep(0.01);
    EXPECT_FALSE(closed.done()) << "wait_closed returned with a connection still open";
    writer.write("still served");  // close() stops listening, not the open connections
    EXPECT_EQ(co_await reader.read(12), "still served");
    writer.close();
    co_await closed;
    co_await server.wait_closed();  // done: returns at once
  }());
}

TEST(Server, StartServingLater) {
  run([]() -> Coro<void> {
    ServerOptions options;
    options.start_serving = false;
    Server server = co_await start_server(echo_until_eof, "127.0.0.1", 0, options);
    const std::uint16_t port = address_port(server.addresses().at(0));
    EXPECT_FALSE(server.is_serving());
    EXPECT_FALSE(co_await can_connect(port)) << "bound but not listening should refuse";
    co_await server.start_serving();
    EXPECT_TRUE(server.is_serving());
    EXPECT_TRUE(co_await can_connect(port));
  }());
}

TEST(Server, EmptyHostBindsEveryFamily) {
  run([]() -> Coro<void> {
    Server server = co_await start_server(echo_until_eof, "", 0);
    bool v4 = false;
    bool v6 = false;
    for (const SocketAddress& a : server.addresses()) {
      v4 = v4 || (address_family(a) == AddressFamily::ipv4 && address_host(a) == "0.0.0.0");
      v6 = v6 || (address_family(a) == AddressFamily::ipv6 && address_host(a) == "::");
    }
    EXPECT_TRUE(v4);
    if (have_ipv6()) EXPECT_TRUE(v6);
    for (const Socket& s : server.sockets()) {
      if (s.family() == AddressFamily::ipv6) EXPECT_EQ(s.getsockopt(SocketOption::ipv6_only), 1);
    }
  }());
}

TEST(Server, ReusePortAndAddressInUse) {
  run([]() -> Coro<void> {
    ServerOptions shared;
    shared.reuse_port = true;
    Server first = co_await start_server(echo_until_eof, "127.0.0.1", 0, shared);
    const std::uint16_t port = address_port(first.addresses().at(0));
    Server second = co_await start_server(echo_until_eof, "127.0.0.1", port, shared);
    EXPECT_EQ(address_port(second.addresses().at(0)), port);
    try {
      Server third = co_await start_server(echo_until_eof, "127.0.0.1", port);
      ADD_FAILURE() << "bound a port in use without reuse_port";
    } catch (const OSError& e) {
      EXPECT_EQ(e.error_number(), EADDRINUSE);
      EXPECT_NE(std::string(e.what()).find("error while attempting to bind on address"),
                std::string::npos);
    }
  }());
}

TEST(Server, ExceptionInTheCallbackIsReportedAndClosesTheConnection) {
  std::string reported;
  run([&]() -> Coro<void> {
    get_running_loop().set_exception_handler([&](EventLoop&, const ExceptionContext& context) {
      reported = context.message;
      try {
        std::rethrow_exception(context.exception);
      } catch (const std::exception& e) {
        reported += std::string(" / ") + e.what();
      }
    });
    auto failing = [](StreamReader reader, StreamWriter) -> Coro<void> {
      co_await reader.readline();
      throw std::runtime_error("handler failed");
    };
    Server server = co_await start_server(failing, "127.0.0.1", 0);
    auto [reader, writer] =
        co_await open_connection("127.0.0.1", address_port(server.addresses().at(0)));
    writer.write("hello\n");
    EXPECT_EQ(co_await reader.read(), "");  // the server closed the connection
    server.close();
    co_await server.wait_closed();
  }());
  EXPECT_EQ(reported, "Unhandled exception in client_connected_cb / handler failed");
}

TEST(Server, UnixServerReplacesAStaleFileAndRemovesItsOwn) {
  const std::string path = "/tmp/corio_server_" + std::to_string(::getpid()) + ".sock";
  {
    // A stale socket file, as a crashed server leaves it.
    Socket stale = Socket::create(AddressFamily::unix_domain);
    stale.bind(unix_address(path));
  }
  struct stat st {};
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  run([&]() -> Coro<void> {
    Server server = co_await start_unix_server(echo_until_eof, path);
    auto [reader, writer] = co_await open_unix_connection(path);
    writer.write("unix");
    EXPECT_EQ(co_await reader.read(4), "unix");
    writer.close();
    server.close();
    co_await server.wait_closed();
  }());
  EXPECT_NE(::stat(path.c_str(), &st), 0) << "socket file left behind";
}

TEST(Server, AbstractUnixSocket) {
  const std::string name = std::string("\0corio_abstract_", 16) + std::to_string(::getpid());
  run([&]() -> Coro<void> {
    Server server = co_await start_unix_server(echo_until_eof, name);
    auto [reader, writer] = co_await open_unix_connection(name);
    writer.write("abstract");
    EXPECT_EQ(co_await reader.read(8), "abstract");
  }());
}

TEST(Server, AsyncWithClosesAndWaits) {
  run([]() -> Coro<void> {
    Server server = co_await start_server(echo_until_eof, "127.0.0.1", 0);
    const std::uint16_t port = address_port(server.addresses().at(0));
    co_await async_with(server, [&](Server& s) -> Coro<void> {
      EXPECT_TRUE(s.is_serving());
      EXPECT_TRUE(co_await can_connect(port));
    });
    EXPECT_FALSE(server.is_serving());
    EXPECT_FALSE(co_await can_connect(port));
  }());
}

TEST(Server, CloseClientsAndAbortClients) {
  run([]() -> Coro<void> {
    Server server = co_await start_server(echo_until_eof, "127.0.0.1", 0);
    const std::uint16_t port = address_port(server.addresses().at(0));
    auto [r1, w1] = co_await open_connection("127.0.0.1", port);
    auto [r2, w2] = co_await open_connection("127.0.0.1", port);
    w1.write("x");
    w2.write("y");
    EXPECT_EQ(co_await r1.read(1), "x");
    EXPECT_EQ(co_await r2.read(1), "y");
    server.close();
    server.close_clients();
    EXPECT_EQ(co_await r1.read(), "");
    EXPECT_EQ(co_await r2.read(), "");
    co_await server.wait_closed();

    Server other = co_await start_server(echo_until_eof, "127.0.0.1", 0);
    auto [r3, w3] = co_await open_connection("127.0.0.1", address_port(other.addresses().at(0)));
    w3.write("z");
    EXPECT_EQ(co_await r3.read(1), "z");
    other.abort_clients();
    EXPECT_EQ(co_await r3.read(), "");
  }());
}

TEST(Server, DestroyingTheServerStopsListening) {
  run([]() -> Coro<void> {
    std::uint16_t port;
    {
      Server server = co_await start_server(echo_until_eof, "127.0.0.1", 0);
      port = address_port(server.addresses().at(0));
      EXPECT_TRUE(co_await can_connect(port));
    }
    EXPECT_FALSE(co_await can_connect(port));
  }());
}

TEST(Server, ServeOnAPreparedSocket) {
  run([]() -> Coro<void> {
    Socket sock = Socket::create(AddressFamily::ipv4);
    sock.bind(loopback_address(AddressFamily::ipv4, 0));
    const std::uint16_t port = address_port(sock.getsockname());
    Server server = co_await start_server(echo_until_eof, std::move(sock));
    auto [reader, writer] = co_await open_connection("127.0.0.1", port);
    writer.write("prepared");
    EXPECT_EQ(co_await reader.read(8), "prepared");
  }());
}

}  // namespace
}  // namespace corio
