// StreamReader / StreamWriter: the reader's asyncio semantics on hand-fed data, and streams
// over real loopback connections (IPv4, IPv6, Unix): flow control with bounded memory,
// half-close, resets, a thousand connections at once, and cancellation without data loss.
#include <gtest/gtest.h>
#ifndef _WIN32
#include <sys/resource.h>
#endif
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <corio/corio.hpp>
#include <corio/server.hpp>
#include <corio/streams.hpp>
#include <functional>
#include <initializer_list>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "test_os.hpp"

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

std::string pattern(std::size_t n, unsigned seed = 0) {
  std::string s(n, '\0');
  for (std::size_t i = 0; i < n; ++i) s[i] = static_cast<char>('a' + (i * 7 + seed + i / 251) % 26);
  return s;
}

std::uint64_t fnv(std::uint64_t h, std::string_view data) {
  for (unsigned char c : data) h = (h ^ c) * 1099511628211ull;
  return h;
}

// --- the reader on hand-fed data ---------------------------------------------------

TEST(StreamReader, ReadVariantsOnFedData) {
  run([]() -> Coro<void> {
    StreamReader r;
    r.feed_data("line one\nline two\nrest");
    r.feed_eof();
    EXPECT_EQ(co_await r.readline(), "line one\n");
    EXPECT_EQ(co_await r.read(4), "line");
    EXPECT_EQ(co_await r.readuntil(" "), " ");
    EXPECT_EQ(co_await r.readexactly(4), "two\n");
    EXPECT_FALSE(r.at_eof());
    EXPECT_EQ(co_await r.readline(), "rest");  // a partial line at EOF
    EXPECT_TRUE(r.at_eof());
    EXPECT_EQ(co_await r.read(), "");
    EXPECT_EQ(co_await r.readline(), "");
  }());
}

TEST(StreamReader, ReadAllUntilEof) {
  run([]() -> Coro<void> {
    StreamReader r;
    Task<std::string> all = create_task(r.read(-1));
    co_await sleep(0);
    r.feed_data("ab");
    co_await sleep(0);
    r.feed_data("cd");
    co_await sleep(0);
    EXPECT_FALSE(all.done());
    r.feed_eof();
    EXPECT_EQ(co_await all, "abcd");
  }());
}

TEST(StreamReader, ReadexactlyRaisesIncompleteReadWithThePartialBytes) {
  run([]() -> Coro<void> {
    StreamReader r;
    r.feed_data("12345");
    r.feed_eof();
    try {
      co_await r.readexactly(10);
      ADD_FAILURE() << "no IncompleteReadError";
    } catch (const IncompleteReadError& e) {
      EXPECT_EQ(e.partial(), "12345");
      EXPECT_EQ(e.expected(), 10u);
    }
    EXPECT_THROW(co_await r.readexactly(-1), ValueError);
    EXPECT_EQ(co_await r.readexactly(0), "");
  }());
}

TEST(StreamReader, ReaduntilFindsASeparatorSplitAcrossChunks) {
  run([]() -> Coro<void> {
    StreamReader r;
    Task<std::string> until = create_task(r.readuntil("\r\n\r\n"));
    for (const char* part : {"GET / HTTP/1.1\r", "\nHost: x\r\n", "\r", "\nnext"}) {
      co_await sleep(0);
      EXPECT_FALSE(until.done());
      r.feed_data(part);
    }
    EXPECT_EQ(co_await until, "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    EXPECT_EQ(r.buffered(), "next");
    r.feed_eof();
    try {
      co_await r.readuntil("\n");
      ADD_FAILURE();
    } catch (const IncompleteReadError& e) {
      EXPECT_EQ(e.partial(), "next");
    }
    EXPECT_THROW(co_await r.readuntil(""), ValueError);
  }());
}

TEST(StreamReader, ReaduntilLimitOverrunKeepsTheData) {
  run([]() -> Coro<void> {
    StreamReader r(8);
    r.feed_data("0123456789abcdef\nshort\n");
    try {
      co_await r.readuntil("\n");
      ADD_FAILURE() << "no LimitOverrunError";
    } catch (const LimitOverrunError& e) {
      EXPECT_EQ(e.consumed(), 16u);  // where the separator was found
    }
    EXPECT_EQ(r.buffered(), "0123456789abcdef\nshort\n") << "data lost on LimitOverrunError";
    EXPECT_EQ(co_await r.read(17), "0123456789abcdef\n");
    EXPECT_EQ(co_await r.readuntil("\n"), "short\n");

    // Separator not found and more than `limit` bytes buffered: also kept.
    StreamReader r2(4);
    r2.feed_data("abcdefgh");
    try {
      co_await r2.readuntil("\n");
      ADD_FAILURE() << "no LimitOverrunError";
    } catch (const LimitOverrunError& e) {
      EXPECT_EQ(e.consumed(), 8u);
    }
    EXPECT_EQ(co_await r2.read(100), "abcdefgh");
  }());
}

// GCC 12 cannot compile a braced list inside a co_await expression, so these tests name the
// read or the list first.
TEST(StreamReader, ReaduntilWithSeveralSeparatorsEndsAtTheFirstToEnd) {
  // asyncio 3.13's readuntil((sep, ...)): the shortest chunk that ends in any separator.
  run([]() -> Coro<void> {
    StreamReader r;
    r.feed_data("key=value;next|rest\r\nlast\n");
    StreamRead bar_or_semicolon = r.readuntil({"|", ";"});
    EXPECT_EQ(co_await bar_or_semicolon, "key=value;");
    const std::array<std::string_view, 2> semicolon_or_bar = {";", "|"};
    EXPECT_EQ(co_await r.readuntil(semicolon_or_bar), "next|");
    const std::vector<std::string> line_ends = {"\r\n", "\n"};
    EXPECT_EQ(co_await r.readuntil(line_ends), "rest\r\n");
    EXPECT_EQ(co_await r.readuntil(line_ends), "last\n");

    // A longer separator that ends first wins over a shorter one found later, also when
    // the longer one arrives in pieces.
    Task<std::string> until = create_task(r.readuntil({"!", "==="}));
    for (const char* part : {"abc=", "=", "=!"}) {
      co_await sleep(0);
      EXPECT_FALSE(until.done());
      r.feed_data(part);
    }
    EXPECT_EQ(co_await until, "abc===");
    EXPECT_EQ(r.buffered(), "!");

    // Raised when awaited, and the buffer is untouched.
    StreamRead none = r.readuntil(std::vector<std::string>{});
    EXPECT_THROW(co_await none, ValueError);
    StreamRead an_empty_one = r.readuntil({"x", ""});
    EXPECT_THROW(co_await an_empty_one, ValueError);
    EXPECT_EQ(r.buffered(), "!");
    r.feed_data("no separator");
    r.feed_eof();
    try {
      co_await r.readuntil(line_ends);
      ADD_FAILURE() << "no IncompleteReadError";
    } catch (const IncompleteReadError& e) {
      EXPECT_EQ(e.partial(), "!no separator");
    }
  }());
}

TEST(StreamReader, ReaduntilWithSeveralSeparatorsOverrunsAsAsyncioCountsIt) {
  run([]() -> Coro<void> {
    const std::array<std::string_view, 2> line_ends = {"\r\n", "\n"};
    // Not found: the search may resume one byte short of the longest separator's length.
    StreamReader r(4);
    r.feed_data("abcdefgh");
    try {
      co_await r.readuntil(line_ends);
      ADD_FAILURE() << "no LimitOverrunError";
    } catch (const LimitOverrunError& e) {
      EXPECT_EQ(e.consumed(), 7u);
    }
    EXPECT_EQ(r.buffered(), "abcdefgh") << "data lost on LimitOverrunError";

    // Found past the limit: "\r\n" and "\n" end together, and the shorter one is the match.
    StreamReader r2(4);
    r2.feed_data("0123456789\r\nok\n");
    try {
      co_await r2.readuntil(line_ends);
      ADD_FAILURE() << "no LimitOverrunError";
    } catch (const LimitOverrunError& e) {
      EXPECT_EQ(e.consumed(), 11u);
    }
    EXPECT_EQ(co_await r2.read(12), "0123456789\r\n");
    EXPECT_EQ(co_await r2.readuntil(line_ends), "ok\n");
  }());
}

TEST(StreamReader, ReadlineLimitOverrunDropsOnlyTheLongLine) {
  // asyncio's readline: ValueError, the over-long line is discarded, what follows is kept.
  run([]() -> Coro<void> {
    StreamReader r(8);
    r.feed_data("0123456789abcdef\nok\n");
    EXPECT_THROW(co_await r.readline(), ValueError);
    EXPECT_EQ(co_await r.readline(), "ok\n");
  }());
}

TEST(StreamReader, OnlyOneCoroutineMayWaitForData) {
  run([]() -> Coro<void> {
    StreamReader r;
    Task<std::string> first = create_task(r.read(1));
    co_await sleep(0);
    EXPECT_THROW(co_await r.read(1), RuntimeError);
    r.feed_data("x");
    EXPECT_EQ(co_await first, "x");
  }());
}

TEST(StreamReader, SetExceptionWakesAndRaises) {
  run([]() -> Coro<void> {
    StreamReader r;
    Task<std::string> waiting = create_task(r.readline());
    co_await sleep(0);
    r.set_exception(std::make_exception_ptr(ConnectionResetError(ECONNRESET, "gone")));
    EXPECT_THROW(co_await waiting, ConnectionResetError);
    EXPECT_THROW(co_await r.read(1), ConnectionResetError);
  }());
}

TEST(StreamReader, CancelledReadexactlyKeepsTheBytesOnAFedReader) {
  run([]() -> Coro<void> {
    StreamReader r;
    r.feed_data("12345");
    Task<std::string> pending = create_task(r.readexactly(10));
    co_await sleep(0);
    EXPECT_FALSE(pending.done());
    pending.cancel();
    EXPECT_THROW(co_await pending, CancelledError);
    EXPECT_EQ(co_await r.read(100), "12345");
  }());
}

// --- streams over sockets ------------------------------------------------------------

Coro<void> echo_lines(StreamReader reader, StreamWriter writer) {
  for (;;) {
    std::string line = co_await reader.readline();
    if (line.empty()) break;
    writer.write(line);
    co_await writer.drain();
  }
  writer.close();
  co_await writer.wait_closed();
}

Coro<void> echo_client(StreamReader reader, StreamWriter writer) {
  for (int i = 0; i < 3; ++i) {
    const std::string line = "message " + std::to_string(i) + "\n";
    writer.write(line);
    co_await writer.drain();
    EXPECT_EQ(co_await reader.readline(), line);
  }
  writer.write_eof();
  EXPECT_EQ(co_await reader.read(), "");
  EXPECT_TRUE(reader.at_eof());
  writer.close();
  co_await writer.wait_closed();
}

TEST(Streams, EchoOverIpv4) {
  run([]() -> Coro<void> {
    Server server = co_await start_server(echo_lines, "127.0.0.1", 0);
    const SocketAddress address = server.addresses().at(0);
    auto [reader, writer] = co_await open_connection("127.0.0.1", address_port(address));
    EXPECT_EQ(format_address(*writer.peername()), format_address(address));
    EXPECT_EQ(std::any_cast<SocketAddress>(writer.get_extra_info("peername")), *writer.peername());
    EXPECT_EQ(std::any_cast<SocketAddress>(writer.get_extra_info("sockname")), *writer.sockname());
    EXPECT_FALSE(writer.get_extra_info("nonsense").has_value());
    co_await echo_client(reader, writer);
    server.close();
    co_await server.wait_closed();
  }());
}

TEST(Streams, EchoOverIpv6) {
  if (!have_ipv6()) GTEST_SKIP() << "no IPv6 loopback";
  run([]() -> Coro<void> {
    Server server = co_await start_server(echo_lines, "::1", 0);
    auto [reader, writer] = co_await open_connection("::1", address_port(server.addresses().at(0)));
    EXPECT_EQ(address_family(*writer.peername()), AddressFamily::ipv6);
    co_await echo_client(reader, writer);
    server.close();
    co_await server.wait_closed();
  }());
}

TEST(Streams, EchoOverUnixSockets) {
  const std::string path = "/tmp/corio_streams_" + std::to_string(::getpid()) + ".sock";
  run([&]() -> Coro<void> {
    Server server = co_await start_unix_server(echo_lines, path);
    auto [reader, writer] = co_await open_unix_connection(path);
    co_await echo_client(reader, writer);
    server.close();
    co_await server.wait_closed();
  }());
  EXPECT_NE(::access(path.c_str(), F_OK), 0) << "the socket file was left behind";
}

TEST(Streams, SixtyFourMegabytesToASlowReaderWithBoundedMemory) {
  constexpr std::size_t kTotal = 64u << 20;
  constexpr std::size_t kBlock = 256u << 10;
  constexpr std::size_t kHigh = 128u << 10;
  std::uint64_t sent_hash = 1469598103934665603ull;
  std::uint64_t received_hash = 1469598103934665603ull;
  std::size_t received = 0;
  std::size_t max_writer_buffer = 0;
  std::size_t max_reader_buffer = 0;
  bool writer_paused = false;
  run([&]() -> Coro<void> {
    auto slow_reader = [&](StreamReader reader, StreamWriter writer) -> Coro<void> {
      for (int i = 0;; ++i) {
        std::string chunk = co_await reader.read(64 * 1024);
        if (chunk.empty()) break;
        received += chunk.size();
        received_hash = fnv(received_hash, chunk);
        max_reader_buffer = std::max(max_reader_buffer, reader.buffered().size());
        if (i % 64 == 0) co_await sleep(0.001);  // slower than the writer
      }
      writer.close();
    };
    Server server = co_await start_server(slow_reader, "127.0.0.1", 0);
    auto [reader, writer] =
        co_await open_connection("127.0.0.1", address_port(server.addresses().at(0)));
    writer.set_write_buffer_limits(kHigh);
    EXPECT_EQ(writer.get_write_buffer_limits(), std::make_pair(kHigh / 4, kHigh));
    for (std::size_t off = 0; off < kTotal; off += kBlock) {
      const std::string block = pattern(kBlock, static_cast<unsigned>(off / kBlock));
      sent_hash = fnv(sent_hash, block);
      writer.write(block);
      max_writer_buffer = std::max(max_writer_buffer, writer.get_write_buffer_size());
      writer_paused = writer_paused || writer.get_write_buffer_size() > kHigh;
      co_await writer.drain();
      EXPECT_LE(writer.get_write_buffer_size(), kHigh);
    }
    writer.write_eof();
    EXPECT_EQ(co_await reader.read(), "");
    server.close();
    co_await server.wait_closed();
  }());
  EXPECT_EQ(received, kTotal);
  EXPECT_EQ(received_hash, sent_hash);
  EXPECT_TRUE(writer_paused) << "the writer never had to wait: the reader was not slow";
  EXPECT_LE(max_writer_buffer, kHigh + kBlock);
  EXPECT_LE(max_reader_buffer, 2 * kDefaultStreamLimit);
}

TEST(Streams, HalfCloseWithWriteEof) {
  run([]() -> Coro<void> {
    auto handler = [](StreamReader reader, StreamWriter writer) -> Coro<void> {
      std::string request = co_await reader.read(-1);  // until the client's EOF
      writer.write("got " + std::to_string(request.size()) + " bytes: " + request);
      writer.close();
      co_await writer.wait_closed();
    };
    Server server = co_await start_server(handler, "127.0.0.1", 0);
    auto [reader, writer] =
        co_await open_connection("127.0.0.1", address_port(server.addresses().at(0)));
    EXPECT_TRUE(writer.can_write_eof());
    writer.write("question");
    writer.write_eof();
    EXPECT_THROW(writer.write("more"), RuntimeError);
    EXPECT_EQ(co_await reader.read(-1), "got 8 bytes: question");  // reading still works
    EXPECT_TRUE(reader.at_eof());
    server.close();
    co_await server.wait_closed();
  }());
}

TEST(Streams, PeerResetMidWriteRaisesFromDrainAndRead) {
  run([]() -> Coro<void> {
    auto resetter = [](StreamReader reader, StreamWriter writer) -> Coro<void> {
      co_await reader.readexactly(1000);
      core::net::set_option(std::any_cast<NativeHandle>(writer.get_extra_info("socket")),
                            SocketOption::linger_abort, 1);
      writer.abort();  // RST: the client's pending bytes are refused
    };
    Server server = co_await start_server(resetter, "127.0.0.1", 0);
    auto [reader, writer] =
        co_await open_connection("127.0.0.1", address_port(server.addresses().at(0)));
    const std::string block = pattern(64 * 1024);
    int error = 0;
    for (int i = 0; i < 2000 && error == 0; ++i) {
      try {
        writer.write(block);
        co_await writer.drain();
      } catch (const ConnectionResetError& e) {
        error = e.error_number();
      } catch (const BrokenPipeError& e) {
        error = e.error_number();
      }
      if (i % 8 == 0) co_await sleep(0.001);
    }
    EXPECT_TRUE(error == ECONNRESET || error == EPIPE) << error;
    EXPECT_TRUE(writer.is_closing());
    try {
      co_await reader.read(10);
      ADD_FAILURE() << "read after a reset did not raise";
    } catch (const ConnectionError& e) {
      EXPECT_EQ(e.error_number(), error);
    }
    EXPECT_THROW(co_await writer.wait_closed(), ConnectionError);
    server.close();
    co_await server.wait_closed();
  }());
}

TEST(Streams, RefusedConnection) {
  run([]() -> Coro<void> {
    std::uint16_t port;
    {
      Socket probe = Socket::create(AddressFamily::ipv4);
      probe.bind(loopback_address(AddressFamily::ipv4, 0));
      port = address_port(probe.getsockname());
    }
    try {
      co_await open_connection("127.0.0.1", port);
      ADD_FAILURE() << "connected to a closed port";
    } catch (const ConnectionRefusedError& e) {
      EXPECT_EQ(e.error_number(), ECONNREFUSED);
    }
  }());
}

TEST(Streams, DroppingTheWriterFlushesThenCloses) {
  const std::string payload = pattern(32 << 20);
  std::string received;
  run([&]() -> Coro<void> {
    auto collector = [&](StreamReader reader, StreamWriter) -> Coro<void> {
      received = co_await reader.read(-1);
    };
    Server server = co_await start_server(collector, "127.0.0.1", 0);
    {
      auto [reader, writer] =
          co_await open_connection("127.0.0.1", address_port(server.addresses().at(0)));
      writer.write(payload);  // more than the socket buffers hold
      EXPECT_GT(writer.get_write_buffer_size(), 0u);
    }  // both handles gone: the queued bytes are still sent, then the connection closes
    server.close();
    co_await server.wait_closed();  // waits for the connection to finish
  }());
  EXPECT_EQ(received.size(), payload.size());
  EXPECT_TRUE(received == payload);
}

TEST(Streams, CancelledReadexactlyKeepsTheBytesReceived) {
  run([]() -> Coro<void> {
    Future<void> release = get_running_loop().create_future<void>();
    auto five_bytes = [&](StreamReader, StreamWriter writer) -> Coro<void> {
      writer.write("abcde");
      co_await release;
      writer.write("fgh");
    };
    Server server = co_await start_server(five_bytes, "127.0.0.1", 0);
    auto [reader, writer] =
        co_await open_connection("127.0.0.1", address_port(server.addresses().at(0)));
    Task<std::string> pending = create_task(reader.readexactly(10));
    for (int i = 0; i < 200 && reader.buffered().size() < 5; ++i) co_await sleep(0.001);
    EXPECT_EQ(reader.buffered(), "abcde");
    EXPECT_FALSE(pending.done());
    pending.cancel();
    EXPECT_THROW(co_await pending, CancelledError);
    EXPECT_EQ(co_await reader.read(100), "abcde");
    release.set_result();
    EXPECT_EQ(co_await reader.readexactly(3), "fgh");
    server.close();
    co_await server.wait_closed();
  }());
}

TEST(Streams, CancelledReadlineAndReaduntilKeepTheBytes) {
  run([]() -> Coro<void> {
    auto partial = [](StreamReader reader, StreamWriter writer) -> Coro<void> {
      writer.write("no newline yet");
      co_await reader.read(-1);
    };
    Server server = co_await start_server(partial, "127.0.0.1", 0);
    auto [reader, writer] =
        co_await open_connection("127.0.0.1", address_port(server.addresses().at(0)));
    for (auto* which : {"readline", "readuntil"}) {
      Task<std::string> pending =
          create_task(std::string(which) == "readline" ? reader.readline() : reader.readuntil("!"));
      for (int i = 0; i < 200 && reader.buffered().size() < 14; ++i) co_await sleep(0.001);
      co_await sleep(0.001);
      EXPECT_FALSE(pending.done()) << which;
      pending.cancel();
      EXPECT_THROW(co_await pending, CancelledError) << which;
      EXPECT_EQ(reader.buffered(), "no newline yet") << which;
    }
    writer.close();
    server.close();
    co_await server.wait_closed();
  }());
}

TEST(Streams, CancelledDrainLosesNoQueuedBytes) {
  const std::string payload = pattern(4 << 20);
  std::string received;
  run([&]() -> Coro<void> {
    Future<void> start_reading = get_running_loop().create_future<void>();
    auto late_reader = [&](StreamReader reader, StreamWriter) -> Coro<void> {
      co_await start_reading;
      received = co_await reader.read(-1);
    };
    Server server = co_await start_server(late_reader, "127.0.0.1", 0);
    auto [reader, writer] =
        co_await open_connection("127.0.0.1", address_port(server.addresses().at(0)));
    writer.write(payload);
    Task<void> draining = create_task(writer.drain().coro());
    co_await sleep(0.01);
    EXPECT_FALSE(draining.done()) << "drain did not wait for a reader that does not read";
    draining.cancel();
    EXPECT_THROW(co_await draining, CancelledError);
    EXPECT_GT(writer.get_write_buffer_size(), 0u);
    start_reading.set_result();
    co_await writer.drain();
    writer.close();
    co_await writer.wait_closed();
    server.close();
    co_await server.wait_closed();
  }());
  EXPECT_EQ(received.size(), payload.size());
  EXPECT_TRUE(received == payload);
}

TEST(Streams, CancelledOpenConnectionWhileConnecting) {
  run([]() -> Coro<void> {
    // A listener with backlog 0 answers one handshake; the next connect stays pending.
    Socket l = Socket::create(AddressFamily::ipv4);
    l.bind(loopback_address(AddressFamily::ipv4, 0));
    l.listen(0);
    const std::uint16_t port = address_port(l.getsockname());
    auto first = co_await open_connection("127.0.0.1", port);
    Task<StreamPair> pending = create_task(open_connection("127.0.0.1", port));
    co_await sleep(0.05);
    EXPECT_FALSE(pending.done());
    pending.cancel();
    EXPECT_THROW(co_await pending, CancelledError);
  }());
}

TEST(Streams, AThousandConcurrentConnections) {
  constexpr int kClients = 1000;
#ifndef _WIN32  // Windows has no descriptor limit to raise
  rlimit lim{};
  ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &lim), 0);
  const rlim_t wanted = 4 * kClients + 64;
  if (lim.rlim_cur < wanted) {
    lim.rlim_cur = std::min<rlim_t>(wanted, lim.rlim_max);
    ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &lim), 0);
  }
  if (lim.rlim_cur < 2 * kClients + 64) GTEST_SKIP() << "RLIMIT_NOFILE too low: " << lim.rlim_cur;
#endif
  int connected = 0;
  int accepted = 0;  // handlers started; never goes down, unlike open_now
  int max_open = 0;
  int open_now = 0;
  int echoed = 0;
  run([&]() -> Coro<void> {
    auto handler = [&](StreamReader reader, StreamWriter writer) -> Coro<void> {
      ++accepted;
      ++open_now;
      max_open = std::max(max_open, open_now);
      std::string line = co_await reader.readline();
      writer.write(line);
      co_await writer.drain();
      co_await reader.read(-1);  // until the client closes
      --open_now;
    };
    ServerOptions options;
    options.backlog = 2 * kClients;
    Server server = co_await start_server(handler, "127.0.0.1", 0, options);
    const std::uint16_t port = address_port(server.addresses().at(0));
    auto client = [&](int id) -> Coro<void> {
      auto [reader, writer] = co_await open_connection("127.0.0.1", port);
      ++connected;
      // Everybody connected, and every connection accepted and served, at once. The latch
      // counts handlers started, not handlers open: the first client to finish closes its
      // connection, and a client still sleeping here must not wait for it to reopen.
      while (connected < kClients || accepted < kClients) co_await sleep(0.001);
      const std::string line = "client " + std::to_string(id) + "\n";
      writer.write(line);
      if (co_await reader.readline() == line) ++echoed;
      writer.close();
      co_await writer.wait_closed();
    };
    std::vector<Task<void>> clients;
    for (int i = 0; i < kClients; ++i) clients.push_back(create_task(client(i)));
    for (Task<void>& t : clients) co_await t;
    server.close();
    co_await server.wait_closed();
  }());
  EXPECT_EQ(connected, kClients);
  EXPECT_EQ(echoed, kClients);
  EXPECT_EQ(max_open, kClients);
  EXPECT_EQ(open_now, 0);
}

TEST(Streams, WriterStateAndBufferLimits) {
  run([]() -> Coro<void> {
    Server server = co_await start_server(echo_lines, "127.0.0.1", 0);
    auto [reader, writer] =
        co_await open_connection("127.0.0.1", address_port(server.addresses().at(0)));
    EXPECT_EQ(writer.get_write_buffer_limits(),
              (std::pair<std::size_t, std::size_t>(16384, 65536)));
    EXPECT_THROW(writer.set_write_buffer_limits(10, 20), ValueError);
    writer.writelines({"a", "b", "\n"});
    EXPECT_EQ(co_await reader.readline(), "ab\n");
    EXPECT_FALSE(writer.is_closing());
    writer.close();
    EXPECT_TRUE(writer.is_closing());
    co_await writer.wait_closed();
    EXPECT_THROW(co_await writer.drain(), ConnectionResetError);
    writer.write("ignored after close");    // asyncio drops it silently
    EXPECT_EQ(co_await reader.read(), "");  // our own close ends our reading too
    server.close();
    co_await server.wait_closed();
  }());
}

// --- replies to a peer outside the loop -------------------------------------------------
// The peer is a plain thread, so nothing but the loop's own sends can wake the loop: a send
// completion the loop must act on (more bytes queued behind it, a short count) but does not
// wake for would stall the exchange. wait_for turns such a stall into a failure.

// The peer's side: `rounds` times, send "ping" and read `reply_size` bytes, which must be
// expect(round). Non-blocking handle, so it polls; returns what went wrong, or "".
std::string ping_peer(int fd, int rounds, std::size_t reply_size,
                      const std::function<std::string(int)>& expect) {
  namespace os = testing::os;
  std::string reply(reply_size, '\0');
  for (int round = 0; round < rounds; ++round) {
    for (std::size_t put = 0; put < 4;) {
      const ssize_t n = os::write(fd, "ping" + put, 4 - put);
      if (n > 0) put += static_cast<std::size_t>(n);
      if (n < 0 && errno != EAGAIN) return "peer write failed";
      if (n <= 0) std::this_thread::sleep_for(std::chrono::microseconds(100));
    }
    for (std::size_t got = 0; got < reply_size;) {
      const ssize_t n = os::read(fd, reply.data() + got, reply_size - got);
      if (n == 0) return "EOF in round " + std::to_string(round);
      if (n < 0 && errno != EAGAIN) return "peer read failed";
      if (n > 0) got += static_cast<std::size_t>(n);
      if (n < 0) std::this_thread::sleep_for(std::chrono::microseconds(100));
    }
    if (reply != expect(round)) return "wrong reply in round " + std::to_string(round);
  }
  return "";
}

// Serves `rounds` pings on `sock`, answering each with reply(round) written in `parts` writes.
Coro<void> serve_pings(Socket sock, int rounds, int parts, std::function<std::string(int)> reply) {
  auto [reader, writer] = co_await open_connection(std::move(sock));
  for (int round = 0; round < rounds; ++round) {
    EXPECT_EQ(co_await reader.readexactly(4), "ping");
    const std::string data = reply(round);
    const std::size_t step = (data.size() + static_cast<std::size_t>(parts) - 1) / parts;
    for (std::size_t at = 0; at < data.size(); at += step)
      writer.write(std::string_view(data).substr(at, step));
    co_await writer.drain();
  }
  writer.close();
  co_await writer.wait_closed();
}

void ping_pong_with_a_thread(int rounds, int parts, std::size_t reply_size, int send_buffer) {
  auto reply = [reply_size](int round) {
    return pattern(reply_size, static_cast<unsigned>(round));
  };
  std::string peer_error = "peer never ran";
  run([&]() -> Coro<void> {
    auto [ours, theirs] = Socket::pair();
    if (send_buffer > 0) {
      EXPECT_EQ(testing::os::set_send_buffer(static_cast<int>(ours.fileno()), send_buffer), 0);
    }
    const int peer_fd = static_cast<int>(theirs.detach());
    std::thread peer([&, peer_fd] {
      peer_error = ping_peer(peer_fd, rounds, reply_size, reply);
      testing::os::close(peer_fd);
    });
    try {
      co_await wait_for(serve_pings(std::move(ours), rounds, parts, reply), 60.0);
    } catch (const TimeoutError&) {
      ADD_FAILURE() << "the exchange stalled";  // our socket is closed: the peer sees EOF
    }
    co_await to_thread([&peer] { peer.join(); });
  }());
  EXPECT_EQ(peer_error, "");
}

TEST(Streams, RepliesWrittenInTwoPartsReachAPeerOutsideTheLoop) {
  // The second write queues behind the first's send, whose completion must wake the loop.
  ping_pong_with_a_thread(200, 2, 64, 0);
}

TEST(Streams, RepliesLargerThanTheSendBufferReachAPeerOutsideTheLoop) {
  // Each 48 KiB reply is under the high-water mark but over the socket's send buffer: its
  // send comes back short (or finds no room) and the loop must wake to send the rest.
  ping_pong_with_a_thread(30, 1, 48 * 1024, 4096);
}

}  // namespace
}  // namespace corio
