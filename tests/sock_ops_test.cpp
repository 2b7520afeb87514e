// Low-level socket operations over real loopback sockets: round trips on IPv4, IPv6 and Unix
// sockets, errors with their errno, add_reader's level-triggered callbacks, and cancellation
// at every suspension point without losing data.
#include <gtest/gtest.h>
#include <unistd.h>

#include "test_os.hpp"  // os::read: a raw read of a socket on POSIX and Windows

#include <cerrno>
#include <corio/corio.hpp>
#include <corio/sock_ops.hpp>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace corio {
namespace {

// A listening socket on an ephemeral loopback port.
Socket listener(AddressFamily family, int backlog = 16) {
  Socket s = Socket::create(family);
  s.setsockopt(SocketOption::reuse_address, 1);
  s.bind(loopback_address(family, 0));
  s.listen(backlog);
  return s;
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

std::string pattern(std::size_t n) {
  std::string s(n, '\0');
  for (std::size_t i = 0; i < n; ++i) s[i] = static_cast<char>('a' + (i * 7 + i / 251) % 26);
  return s;
}

Coro<std::string> echo_once(Socket& lsock) {
  auto [conn, peer] = co_await sock_accept(lsock);
  EXPECT_EQ(address_family(peer), lsock.family());
  std::string got = co_await sock_recv(conn, 1024);
  co_await sock_sendall(conn, "echo:" + got);
  co_return got;
}

Coro<void> round_trip(Socket lsock, SocketAddress target) {
  Task<std::string> server = create_task(echo_once(lsock));
  Socket client = Socket::create(address_family(target));
  co_await sock_connect(client, target);
  co_await sock_sendall(client, "hello");
  std::string reply;
  while (reply.size() < 10) {
    std::string part = co_await sock_recv(client, 100);
    if (part.empty()) break;
    reply += part;
  }
  EXPECT_EQ(reply, "echo:hello");
  EXPECT_EQ(co_await server, "hello");
}

TEST(SockOps, EchoRoundTripIpv4) {
  run([]() -> Coro<void> {
    Socket l = listener(AddressFamily::ipv4);
    SocketAddress target = l.getsockname();
    EXPECT_EQ(address_host(target), "127.0.0.1");
    EXPECT_NE(address_port(target), 0);
    co_await round_trip(std::move(l), target);
  }());
}

TEST(SockOps, EchoRoundTripIpv6) {
  if (!have_ipv6()) GTEST_SKIP() << "no IPv6 loopback";
  run([]() -> Coro<void> {
    Socket l = listener(AddressFamily::ipv6);
    SocketAddress target = l.getsockname();
    EXPECT_EQ(address_host(target), "::1");
    EXPECT_EQ(format_address(target), "[::1]:" + std::to_string(address_port(target)));
    co_await round_trip(std::move(l), target);
  }());
}

TEST(SockOps, EchoRoundTripUnix) {
  const std::string path = "/tmp/corio_sockops_" + std::to_string(::getpid()) + ".sock";
  ::unlink(path.c_str());
  run([&]() -> Coro<void> {
    Socket l = Socket::create(AddressFamily::unix_domain);
    l.bind(unix_address(path));
    l.listen(4);
    EXPECT_EQ(format_address(l.getsockname()), path);
    co_await round_trip(std::move(l), unix_address(path));
  }());
  ::unlink(path.c_str());
}

TEST(SockOps, SendAllAndRecvIntoMoveFourMegabytes) {
  run([]() -> Coro<void> {
    auto [a, b] = Socket::pair();
    a.setsockopt(SocketOption::send_buffer, 16 * 1024);  // force sendall to suspend many times
    const std::string data = pattern(4 << 20);
    Task<void> sender = create_task([](Socket& s, const std::string& d) -> Coro<void> {
      co_await sock_sendall(s, d);
      s.shutdown(ShutdownHow::write);
    }(a, data));
    std::string received;
    std::string chunk(8192, '\0');
    for (;;) {
      const std::size_t n = co_await sock_recv_into(b, chunk);
      if (n == 0) break;
      received.append(chunk.data(), n);
    }
    co_await sender;
    EXPECT_EQ(received.size(), data.size());
    EXPECT_TRUE(received == data);
  }());
}

TEST(SockOps, RefusedConnectionKeepsErrno) {
  run([]() -> Coro<void> {
    SocketAddress closed_port;
    {
      Socket probe = Socket::create(AddressFamily::ipv4);
      probe.bind(loopback_address(AddressFamily::ipv4, 0));
      closed_port = probe.getsockname();  // bound, never listening, then closed
    }
    Socket client = Socket::create(AddressFamily::ipv4);
    try {
      co_await sock_connect(client, closed_port);
      ADD_FAILURE() << "connected to a closed port";
    } catch (const ConnectionRefusedError& e) {
      EXPECT_EQ(e.error_number(), ECONNREFUSED);
      EXPECT_NE(std::string(e.what()).find("connect(127.0.0.1:"), std::string::npos) << e.what();
    }
  }());
}

TEST(SockOps, RecvReturnsEmptyAtEof) {
  run([]() -> Coro<void> {
    auto [a, b] = Socket::pair();
    co_await sock_sendall(a, "xy");
    a.close();
    EXPECT_EQ(co_await sock_recv(b, 10), "xy");
    EXPECT_EQ(co_await sock_recv(b, 10), "");
  }());
}

// Zero bytes asked: empty at once, as Python's socket.recv(0), whether data is queued or not;
// on a datagram socket no datagram is consumed. A closed socket still raises EBADF.
TEST(SockOps, RecvOfZeroBytesAnswersAtOnceAndConsumesNothing) {
  run([]() -> Coro<void> {
    auto [a, b] = Socket::pair();
    EXPECT_EQ(co_await wait_for(sock_recv(b, 0).coro(), 5.0), "");
    EXPECT_EQ(co_await wait_for(sock_recv_into(b, std::span<char>()).coro(), 5.0), 0u);
    co_await sock_sendall(a, "xy");
    EXPECT_EQ(co_await sock_recv(b, 0), "");
    EXPECT_EQ(co_await sock_recv(b, 10), "xy");
    auto [d1, d2] = Socket::pair(SocketKind::datagram);
    co_await sock_sendall(d1, "first");
    co_await sock_sendall(d1, "second");
    EXPECT_EQ(co_await sock_recv(d2, 0), "");
    EXPECT_EQ(co_await sock_recv(d2, 100), "first");
    EXPECT_EQ(co_await sock_recv(d2, 100), "second");
    b.close();
    try {
      co_await sock_recv(b, 0);
      ADD_FAILURE() << "recv(0) of a closed socket did not raise";
    } catch (const OSError& e) {
      EXPECT_EQ(e.error_number(), EBADF);
    }
  }());
}

TEST(SockOps, PeerResetRaisesConnectionResetOrBrokenPipe) {
  run([]() -> Coro<void> {
    Socket l = listener(AddressFamily::ipv4);
    Socket client = Socket::create(AddressFamily::ipv4);
    co_await sock_connect(client, l.getsockname());
    auto [conn, peer] = co_await sock_accept(l);
    co_await sock_sendall(client, "unread");  // unread data makes the close a reset
    co_await sleep(0.01);
    conn.setsockopt(SocketOption::linger_abort, 1);
    conn.close();
    bool failed = false;
    const std::string block = pattern(64 * 1024);
    for (int i = 0; i < 1000 && !failed; ++i) {
      try {
        co_await sock_sendall(client, block);
      } catch (const ConnectionResetError& e) {
        EXPECT_EQ(e.error_number(), ECONNRESET);
        failed = true;
      } catch (const BrokenPipeError& e) {
        EXPECT_EQ(e.error_number(), EPIPE);
        failed = true;
      }
    }
    EXPECT_TRUE(failed);
  }());
}

TEST(SockOps, CancelledAcceptLeavesTheListenerUsable) {
  run([]() -> Coro<void> {
    Socket l = listener(AddressFamily::ipv4);
    Task<Accepted> pending = create_task(sock_accept(l).coro());
    co_await sleep(0);
    pending.cancel();
    try {
      co_await pending;
      ADD_FAILURE() << "accept was not cancelled";
    } catch (const CancelledError&) {
    }
    Socket client = Socket::create(AddressFamily::ipv4);
    co_await sock_connect(client, l.getsockname());
    auto [conn, peer] = co_await sock_accept(l);
    EXPECT_EQ(format_address(peer), format_address(client.getsockname()));
  }());
}

TEST(SockOps, CancelledConnectRaisesCancelledError) {
  run([]() -> Coro<void> {
    // With backlog 0 the second handshake is never answered: that connect stays pending.
    Socket l = listener(AddressFamily::ipv4, 0);
    Socket first = Socket::create(AddressFamily::ipv4);
    co_await sock_connect(first, l.getsockname());
    Socket second = Socket::create(AddressFamily::ipv4);
    Task<void> pending = create_task(sock_connect(second, l.getsockname()).coro());
    co_await sleep(0.05);
    EXPECT_FALSE(pending.done()) << "connect did not stay pending";
    pending.cancel();
    try {
      co_await pending;
      ADD_FAILURE() << "connect was not cancelled";
    } catch (const CancelledError&) {
    }
    EXPECT_TRUE(pending.cancelled());
  }());
}

TEST(SockOps, CancelledRecvLosesNoData) {
  run([]() -> Coro<void> {
    auto [a, b] = Socket::pair();
    Task<std::string> pending = create_task(sock_recv(b, 100).coro());
    co_await sleep(0);
    pending.cancel();
    try {
      co_await pending;
      ADD_FAILURE() << "recv was not cancelled";
    } catch (const CancelledError&) {
    }
    co_await sock_sendall(a, "after");
    EXPECT_EQ(co_await sock_recv(b, 100), "after");
  }());
}

TEST(SockOps, CancelledSendAllSentAPrefix) {
  run([]() -> Coro<void> {
    auto [a, b] = Socket::pair();
    a.setsockopt(SocketOption::send_buffer, 8 * 1024);
    const std::string data = pattern(8 << 20);
    Task<void> pending = create_task(sock_sendall(a, data).coro());
    co_await sleep(0.01);
    EXPECT_FALSE(pending.done());
    pending.cancel();
    try {
      co_await pending;
      ADD_FAILURE() << "sendall was not cancelled";
    } catch (const CancelledError&) {
    }
    a.shutdown(ShutdownHow::write);
    std::string got;
    for (;;) {
      std::string part = co_await sock_recv(b, 65536);
      if (part.empty()) break;
      got += part;
    }
    EXPECT_GT(got.size(), 0u);
    EXPECT_LT(got.size(), data.size());
    EXPECT_TRUE(data.compare(0, got.size(), got) == 0) << "the bytes sent are not a prefix";
  }());
}

TEST(SockOps, ClosingTheSocketEndsAPendingRecvWithEbadf) {
  run([]() -> Coro<void> {
    auto [a, b] = Socket::pair();
    Task<std::string> pending = create_task(sock_recv(b, 100).coro());
    co_await sleep(0);
    b.close();
    try {
      co_await pending;
      ADD_FAILURE() << "recv on a closed socket returned";
    } catch (const OSError& e) {
      EXPECT_EQ(e.error_number(), EBADF);
    }
  }());
}

TEST(SockOps, WaitReadableAndWritable) {
  run([]() -> Coro<void> {
    auto [a, b] = Socket::pair();
    co_await wait_writable(a);  // an empty socket buffer is writable at once
    Task<void> waiting = create_task(wait_readable(b).coro());
    co_await sleep(0);
    EXPECT_FALSE(waiting.done());
    co_await sock_sendall(a, "x");
    co_await waiting;
    // Readable again and again while the byte stays unread, even after a raw read elsewhere
    // emptied it and refilled it.
    co_await wait_readable(b);
    char c = 0;
    EXPECT_EQ(testing::os::read(static_cast<int>(b.fileno()), &c, 1), 1);
    Task<void> again = create_task(wait_readable(b).coro());
    co_await sleep(0.01);
    EXPECT_FALSE(again.done()) << "wait_readable completed on an empty socket";
    again.cancel();
    try {
      co_await again;
    } catch (const CancelledError&) {
    }
    EXPECT_TRUE(again.cancelled());
  }());
}

// The loop may skip polling I/O while work is ready, so these tests yield with short real
// sleeps (an idle loop always polls).
TEST(SockOps, AddReaderIsLevelTriggered) {
  run([]() -> Coro<void> {
    auto [a, b] = Socket::pair();
    const NativeHandle fd = b.fileno();
    int calls = 0;
    bool drain = false;
    add_reader(fd, [&] {
      ++calls;
      if (drain) {
        char buf[16];
        EXPECT_GT(testing::os::read(static_cast<int>(fd), buf, sizeof buf), 0);
      }
    });
    for (int i = 0; i < 5; ++i) co_await sleep(0.001);
    EXPECT_EQ(calls, 0) << "called before the handle was readable";
    co_await sock_sendall(a, "ping");
    for (int i = 0; i < 5; ++i) co_await sleep(0.001);
    EXPECT_GE(calls, 3) << "not called again while the data stays unread";
    drain = true;
    co_await sleep(0.001);
    co_await sleep(0.001);
    const int after_drain = calls;
    for (int i = 0; i < 5; ++i) co_await sleep(0.001);
    EXPECT_EQ(calls, after_drain) << "called again with nothing to read";
    co_await sock_sendall(a, "more");
    for (int i = 0; i < 3; ++i) co_await sleep(0.001);
    EXPECT_GT(calls, after_drain);
    EXPECT_TRUE(remove_reader(fd));
    EXPECT_FALSE(remove_reader(fd));
    const int after_remove = calls;
    co_await sock_sendall(a, "ignored");
    for (int i = 0; i < 3; ++i) co_await sleep(0.001);
    EXPECT_EQ(calls, after_remove);
  }());
}

#ifndef _WIN32
// A foreign runtime (asyncio's transports over corio's loop) removes its reader and closes the
// descriptor itself; the next file it opens may get the same number. Watching that number
// again must see the new file: corio must not think it is still registered with the kernel.
TEST(SockOps, AReaderOnANumberClosedBehindTheLoopAndReusedSeesTheNewFile) {
  run([]() -> Coro<void> {
    int first[2];
    EXPECT_EQ(testing::os::stream_pair(first), 0);
    const int number = first[0];
    int calls = 0;
    add_reader(number, [&] {
      ++calls;
      char buf[16];
      testing::os::read(number, buf, sizeof buf);
    });
    EXPECT_EQ(testing::os::send_nowait(first[1], "a", 1), 1);
    for (int i = 0; i < 200 && calls == 0; ++i) co_await sleep(0.001);
    EXPECT_EQ(calls, 1);
    EXPECT_TRUE(remove_reader(number));
    testing::os::close(first[0]);  // behind the loop's back
    testing::os::close(first[1]);
    int second[2];
    EXPECT_EQ(testing::os::stream_pair(second), 0);
    if (second[0] != number) {  // the lowest free number is normally the same one
      EXPECT_EQ(::dup2(second[0], number), number);
      testing::os::close(second[0]);
    }
    calls = 0;
    add_reader(number, [&] {
      ++calls;
      char buf[16];
      testing::os::read(number, buf, sizeof buf);
    });
    EXPECT_EQ(testing::os::send_nowait(second[1], "b", 1), 1);
    for (int i = 0; i < 500 && calls == 0; ++i) co_await sleep(0.001);
    EXPECT_EQ(calls, 1) << "the new file under the old number was never reported readable";
    EXPECT_TRUE(remove_reader(number));
    testing::os::close(number);
    testing::os::close(second[1]);
  }());
}
#endif

// Options::poll_every_iteration: an iteration that already has callbacks ready still polls
// I/O, so a descriptor made ready before it runs its watcher in that same iteration (what
// asyncio's _run_once does; by default corio may skip the poll).
TEST(SockOps, PollEveryIterationSeesReadyDescriptorsInTheSameIteration) {
  EventLoop loop(EventLoop::Options{.poll_every_iteration = true});
  auto [a, b] = Socket::pair();
  bool seen = false;
  add_reader(loop, b.fileno(), [&] { seen = true; });
  loop.call_soon([] {});
  loop.run_once();  // the watcher now waits in the backend
  EXPECT_FALSE(seen);
  char byte = 'x';
  EXPECT_EQ(testing::os::send_nowait(static_cast<int>(a.fileno()), &byte, 1), 1);
  loop.call_soon([] {});  // work is ready: without the option the poll may be skipped
  loop.run_once();
  EXPECT_TRUE(seen);
  EXPECT_TRUE(remove_reader(loop, b.fileno()));
  loop.close();
}

// A thread that queues a callback and then writes to a socket has its callback run before the
// reader's, as asyncio's call_soon_threadsafe appends to _ready at once. The before-wait hook
// plays that thread just as the loop is about to block, so both arrive in one wait.
TEST(SockOps, ThreadsafeCallbacksRunBeforeTheReadersOfTheSameWait) {
  EventLoop loop(EventLoop::Options{.poll_every_iteration = true});
  auto [a, b] = Socket::pair();
  std::vector<std::string> order;
  bool sent = false;
  loop.set_wait_hooks(
      [&] {
        if (std::exchange(sent, true)) return;
        loop.call_soon_threadsafe([&] { order.push_back("threadsafe"); });
        char byte = 'x';
        EXPECT_EQ(testing::os::send_nowait(static_cast<int>(a.fileno()), &byte, 1), 1);
      },
      [] {});
  add_reader(loop, b.fileno(), [&] {
    order.push_back("reader");
    EXPECT_TRUE(remove_reader(loop, b.fileno()));
  });
  for (int i = 0; i < 10 && order.size() < 2; ++i) loop.run_once();
  EXPECT_EQ(order, (std::vector<std::string>{"threadsafe", "reader"}));
  loop.close();
}

TEST(SockOps, AddWriterCallbackCanRemoveItself) {
  run([]() -> Coro<void> {
    auto [a, b] = Socket::pair();
    const NativeHandle fd = a.fileno();
    int calls = 0;
    add_writer(fd, [&] {
      ++calls;
      EXPECT_TRUE(remove_writer(fd));
    });
    for (int i = 0; i < 5; ++i) co_await sleep(0.001);
    EXPECT_EQ(calls, 1);
  }());
}

TEST(SockOps, RegistrationsEndWithTheLoop) {
  // A reader registered and never removed must not leak or fire after the loop closes.
  auto [a, b] = Socket::pair();
  int calls = 0;
  {
    Runner runner;
    runner.run([](Socket& s, int& n) -> Coro<void> {
      add_reader(s.fileno(), [&n] { ++n; });
      co_return;
    }(b, calls));
  }
  EXPECT_EQ(calls, 0);
}

TEST(SockOps, ASocketOutlivingItsLoopClosesWithoutIt) {
  Socket kept;
  Socket peer;
  {
    Runner runner;
    runner.run([](Socket& a, Socket& b) -> Coro<void> {
      auto [x, y] = Socket::pair();
      co_await sock_sendall(x, "ping");  // the loop's backend has seen both handles
      EXPECT_EQ(co_await sock_recv(y, 4), "ping");
      a = std::move(x);
      b = std::move(y);
    }(kept, peer));
  }  // the loop is gone; closing must not reach into it (ASan would see it)
  kept.close();
  char c;
  EXPECT_EQ(testing::os::read(static_cast<int>(peer.fileno()), &c, 1), 0)
      << "the peer did not see the close";
}

TEST(SockOps, ClosingFromAnotherThreadGoesThroughTheLoop) {
  run([]() -> Coro<void> {
    auto [a, b] = Socket::pair();
    co_await sock_sendall(a, "x");
    EXPECT_EQ(co_await sock_recv(b, 1), "x");
    std::thread closer([s = std::move(a)]() mutable { s.close(); });
    closer.join();
    // The close was handed to the loop's thread; the peer sees EOF once it ran.
    EXPECT_EQ(co_await sock_recv(b, 1), "");
  }());
}

#ifndef _WIN32
// However a socket is made (flags set by the creating call on Linux, by fcntl after it in the
// portable build that stands in for macOS), it ends up non-blocking and close-on-exec, and
// knows its family and kind (SO_DOMAIN, or the local address where there is none).
TEST(SockOps, EverySocketIsNonBlockingCloseOnExecAndKnowsItsFamily) {
  run([]() -> Coro<void> {
    Socket l = listener(AddressFamily::ipv4);
    Socket client = Socket::create(AddressFamily::ipv4);
    co_await sock_connect(client, l.getsockname());
    auto [conn, peer] = co_await sock_accept(l);
    auto [a, b] = Socket::pair();
    Socket udp = Socket::create(AddressFamily::ipv4, SocketKind::datagram);
    // A blocking, inheritable socket made behind corio's back, as a user might hand over.
    Socket adopted = Socket::adopt(::socket(AF_UNIX, SOCK_DGRAM, 0));
    for (const Socket* s : {&l, &client, &conn, &a, &b, &udp, &adopted}) {
      EXPECT_TRUE(testing::os::is_nonblocking(s->fileno())) << s->fileno();
      EXPECT_TRUE(testing::os::is_cloexec(s->fileno())) << s->fileno();
    }
    EXPECT_EQ(conn.family(), AddressFamily::ipv4);
    EXPECT_EQ(conn.kind(), SocketKind::stream);
    EXPECT_EQ(a.family(), AddressFamily::unix_domain);  // unbound
    EXPECT_EQ(udp.family(), AddressFamily::ipv4);       // unbound
    EXPECT_EQ(udp.kind(), SocketKind::datagram);
    EXPECT_EQ(adopted.family(), AddressFamily::unix_domain);
    EXPECT_EQ(adopted.kind(), SocketKind::datagram);
  }());
}
#endif

TEST(SockOps, AddressHelpers) {
  EXPECT_EQ(format_address(ipv4_address("10.1.2.3", 80)), "10.1.2.3:80");
  EXPECT_EQ(format_address(ipv6_address("::1", 443)), "[::1]:443");
  EXPECT_EQ(address_port(with_port(ipv4_address("1.2.3.4", 1), 99)), 99);
  EXPECT_EQ(format_address(unix_address(std::string("\0abstract", 9))), "@abstract");
  EXPECT_TRUE(parse_ip_address("fe80::1", 1).has_value());
  EXPECT_FALSE(parse_ip_address("localhost", 1).has_value());
  EXPECT_THROW(ipv4_address("::1", 1), ValueError);
  EXPECT_THROW(ipv6_address("1.2.3.4", 1), ValueError);
  EXPECT_EQ(address_family(ipv6_address("::", 0)), AddressFamily::ipv6);
}

}  // namespace
}  // namespace corio
