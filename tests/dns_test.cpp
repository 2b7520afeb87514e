// Name resolution off the loop and connecting by name: real lookups of localhost and of an
// unknown host, getnameinfo, cancellation that returns at once while the resolver thread is
// still busy, external-work accounting under virtual time, addresses tried in order, the
// "Multiple exceptions" error, family interleaving and happy eyeballs.
#include <gtest/gtest.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <corio/dns.hpp>
#include <corio/runner.hpp>
#include <corio/server.hpp>
#include <corio/sleep.hpp>
#include <corio/streams.hpp>
#include <corio/task.hpp>
#include <string>
#include <thread>
#include <vector>

namespace corio {
namespace {

// --- a scriptable resolver (runs on the executor's thread) ---
std::atomic<bool> g_block{false};
std::atomic<bool> g_running{false};
std::atomic<int> g_delay_ms{0};
std::vector<SocketAddress> g_answer;  // written before the lookup starts

std::vector<AddressInfo> fake_resolver(const std::string&, const std::string&, AddressFamily,
                                       SocketKind, int, int) {
  g_running = true;
  while (g_block) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  if (g_delay_ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(g_delay_ms.load()));
  std::vector<AddressInfo> out;
  for (const SocketAddress& a : g_answer) {
    AddressInfo info;
    info.family = address_family(a);
    info.kind = SocketKind::stream;
    info.address = a;
    out.push_back(info);
  }
  g_running = false;
  return out;
}

struct FakeResolver {
  explicit FakeResolver(std::vector<SocketAddress> answer) {
    g_answer = std::move(answer);
    g_block = false;
    g_delay_ms = 0;
    detail::set_resolver_for_testing(&fake_resolver);
  }
  ~FakeResolver() {
    g_block = false;
    detail::set_resolver_for_testing(nullptr);
  }
};

SocketAddress refused_address(AddressFamily family = AddressFamily::ipv4) {
  Socket probe = Socket::create(family);
  probe.bind(loopback_address(family, 0));
  return probe.getsockname();  // bound, never listening, closed on return
}

bool have_ipv6() {
  try {
    Socket s = Socket::create(AddressFamily::ipv6);
    s.bind(loopback_address(AddressFamily::ipv6, 0));
    return true;
  } catch (const OSError&) {
    return false;
  }
}

Coro<void> ignore_client(StreamReader, StreamWriter) {
  co_return;
}

TEST(Dns, LocalhostResolvesToLoopback) {
  run([]() -> Coro<void> {
    std::vector<AddressInfo> infos =
        co_await getaddrinfo("localhost", 8080, AddressFamily::unspecified, SocketKind::stream);
    bool found = false;
    for (const AddressInfo& info : infos) {
      EXPECT_EQ(info.kind, SocketKind::stream);
      EXPECT_EQ(address_port(info.address), 8080);
      found = found || format_address(info.address) == "127.0.0.1:8080" ||
              format_address(info.address) == "[::1]:8080";
    }
    EXPECT_TRUE(found);
  }());
}

TEST(Dns, NumericLookupAndFlags) {
  run([]() -> Coro<void> {
    std::vector<AddressInfo> infos = co_await getaddrinfo(
        "10.0.0.7", "443", AddressFamily::ipv4, SocketKind::datagram, 0, ai::numeric_host);
    EXPECT_EQ(infos.size(), 1u);
    EXPECT_EQ(format_address(infos.at(0).address), "10.0.0.7:443");
    EXPECT_EQ(infos.at(0).kind, SocketKind::datagram);
    EXPECT_THROW(co_await getaddrinfo("not-numeric", "1", AddressFamily::ipv4, SocketKind::stream,
                                      0, ai::numeric_host),
                 GaiError);
  }());
}

TEST(Dns, UnknownHostRaisesGaiError) {
  run([]() -> Coro<void> {
    try {
      co_await getaddrinfo("nonexistent.invalid", 80);
      ADD_FAILURE() << "resolved nonexistent.invalid";
    } catch (const GaiError& e) {
      EXPECT_NE(e.error_number(), 0);
      EXPECT_NE(std::string(e.what()).find("getaddrinfo(nonexistent.invalid)"), std::string::npos)
          << e.what();
    }
    EXPECT_THROW(co_await open_connection("nonexistent.invalid", 80), GaiError);
  }());
}

TEST(Dns, GetnameinfoNumeric) {
  run([]() -> Coro<void> {
    auto [host, port] =
        co_await getnameinfo(ipv4_address("127.0.0.1", 80), ni::numeric_host | ni::numeric_service);
    EXPECT_EQ(host, "127.0.0.1");
    EXPECT_EQ(port, "80");
  }());
}

TEST(Dns, CancelledLookupReturnsAtOnce) {
  FakeResolver fake({ipv4_address("127.0.0.1", 1)});
  g_block = true;
  bool resolver_was_busy = false;
  run([&]() -> Coro<void> {
    Task<std::vector<AddressInfo>> lookup = create_task(getaddrinfo("blocked.example", 80));
    while (!g_running) co_await sleep(0.001);
    lookup.cancel();
    EXPECT_THROW(co_await lookup, CancelledError);
    resolver_was_busy = g_running;  // control came back while the thread still resolves
    g_block = false;                // let it finish, so the executor can shut down
  }());
  EXPECT_TRUE(resolver_was_busy);
}

TEST(Dns, ALookupIsExternalWorkForVirtualTime) {
  FakeResolver fake({ipv4_address("127.0.0.1", 1)});
  g_delay_ms = 50;
  double resolved_at = -1;
  double slept_until = -1;
  Runner runner(Runner::Options{.virtual_time = true});
  runner.run([&]() -> Coro<void> {
    EventLoop& loop = get_running_loop();
    // (A coroutine lambda's captures die with the lambda: pass what the task needs.)
    Task<void> sleeper = create_task([](EventLoop& l, double& until) -> Coro<void> {
      co_await sleep(100);
      until = l.time();
    }(loop, slept_until));
    co_await getaddrinfo("slow.example", 80);
    resolved_at = loop.time();
    co_await sleeper;
  }());
  EXPECT_EQ(resolved_at, 0.0) << "virtual time jumped while the resolver was running";
  EXPECT_EQ(slept_until, 100.0);
}

TEST(Dns, ConnectTriesTheAddressesInOrder) {
  run([]() -> Coro<void> {
    Server server = co_await start_server(ignore_client, "127.0.0.1", 0);
    const SocketAddress good = server.addresses().at(0);
    FakeResolver fake({refused_address(), good});
    auto [reader, writer] = co_await open_connection("two.example", 9);
    EXPECT_EQ(format_address(*writer.peername()), format_address(good));
  }());
}

TEST(Dns, EveryAddressFailingRaisesMultipleExceptions) {
  run([]() -> Coro<void> {
    const SocketAddress a = refused_address();
    const SocketAddress b = refused_address();
    {
      FakeResolver fake({a, b});
      try {
        co_await create_connection("all.fail", 9);
        ADD_FAILURE();
      } catch (const OSError& e) {
        const std::string what = e.what();
        EXPECT_EQ(what.find("Multiple exceptions: "), 0u) << what;
        EXPECT_LT(what.find(format_address(a)), what.find(format_address(b))) << what;
      }
    }
    {
      FakeResolver fake({a});
      EXPECT_THROW(co_await create_connection("one.fails", 9), ConnectionRefusedError);
    }
  }());
}

TEST(Dns, InterleavesFamilies) {
  if (!have_ipv6()) GTEST_SKIP() << "no IPv6 loopback";
  run([]() -> Coro<void> {
    const SocketAddress v6a = refused_address(AddressFamily::ipv6);
    const SocketAddress v6b = refused_address(AddressFamily::ipv6);
    const SocketAddress v4 = refused_address(AddressFamily::ipv4);
    FakeResolver fake({v6a, v6b, v4});
    ConnectOptions options;
    options.interleave = 1;
    try {
      co_await create_connection("mixed.example", 9, options);
      ADD_FAILURE();
    } catch (const OSError& e) {
      const std::string what = e.what();
      const auto p6a = what.find(format_address(v6a));
      const auto p4 = what.find(format_address(v4));
      const auto p6b = what.find(format_address(v6b));
      EXPECT_LT(p6a, p4) << what;
      EXPECT_LT(p4, p6b) << what;
      EXPECT_NE(p6b, std::string::npos) << what;
    }
  }());
}

TEST(Dns, HappyEyeballsSkipsAStalledAddress) {
  run([]() -> Coro<void> {
    // A listener with backlog 0 whose queue is full: connecting to it stalls.
    Socket stalled = Socket::create(AddressFamily::ipv4);
    stalled.bind(loopback_address(AddressFamily::ipv4, 0));
    stalled.listen(0);
    Socket filler = Socket::create(AddressFamily::ipv4);
    co_await sock_connect(filler, stalled.getsockname());
    Server server = co_await start_server(ignore_client, "127.0.0.1", 0);
    const SocketAddress good = server.addresses().at(0);
    FakeResolver fake({stalled.getsockname(), good});
    ConnectOptions options;
    options.happy_eyeballs_delay = 0.05;
    const auto started = std::chrono::steady_clock::now();
    Socket sock = co_await create_connection("race.example", 9, options);
    EXPECT_EQ(format_address(sock.getpeername()), format_address(good));
    EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::seconds(5));
  }());
}

TEST(Dns, CancelledHappyEyeballsCancelsEveryAttempt) {
  run([]() -> Coro<void> {
    Socket stalled = Socket::create(AddressFamily::ipv4);
    stalled.bind(loopback_address(AddressFamily::ipv4, 0));
    stalled.listen(0);
    Socket filler = Socket::create(AddressFamily::ipv4);
    co_await sock_connect(filler, stalled.getsockname());
    FakeResolver fake({stalled.getsockname(), stalled.getsockname()});
    ConnectOptions options;
    options.happy_eyeballs_delay = 0.01;
    Task<Socket> racing = create_task(create_connection("stalled.example", 9, options));
    co_await sleep(0.05);  // both attempts are pending now
    EXPECT_FALSE(racing.done());
    racing.cancel();
    EXPECT_THROW(co_await racing, CancelledError);
    co_await sleep(0);  // let the cancelled attempts unwind
  }());
}

}  // namespace
}  // namespace corio
