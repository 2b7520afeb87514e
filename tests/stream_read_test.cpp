// StreamRead, the awaiter StreamReader's reads return, over real loopback connections: reads
// answered from the buffer, reads that need several receives, and the ways an awaitable is
// used (wait_for, gather, create_task, TaskGroup, conversion to Coro). Asserts the asyncio
// semantics only (bytes, errors, no byte lost); allocation counts are benchmarks
// (bench/library_bench.cpp), never asserted here.
#include <gtest/gtest.h>

#include <array>
#include <cerrno>
#include <corio/corio.hpp>
#include <corio/server.hpp>
#include <corio/streams.hpp>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <tuple>

namespace corio {
namespace {

// Starts a server running `handler` and hands `body` a connected (reader, writer).
template <class Handler, class Body>
void with_connection(Handler handler, Body body, std::size_t limit = kDefaultStreamLimit) {
  run([&]() -> Coro<void> {
    Server server = co_await start_server(handler, "127.0.0.1", 0);
    auto [reader, writer] =
        co_await open_connection("127.0.0.1", address_port(server.addresses().at(0)), limit);
    co_await body(reader, writer);
    writer.close();
    server.close();
    co_await server.wait_closed();
  }());
}

// Like with_connection, for a server that sends `early` at once and `late` only when the
// body sets the future it is handed.
template <class Body>
void with_late_reply(std::string early, std::string late, Body body) {
  std::optional<Future<void>> go;
  auto reply = [&](StreamReader reader, StreamWriter writer) -> Coro<void> {
    if (!early.empty()) writer.write(early);
    co_await *go;
    writer.write(late);
    co_await reader.read(-1);
  };
  run([&]() -> Coro<void> {
    go = get_running_loop().create_future<void>();
    Server server = co_await start_server(reply, "127.0.0.1", 0);
    auto [reader, writer] =
        co_await open_connection("127.0.0.1", address_port(server.addresses().at(0)));
    co_await body(reader, writer, *go);
    writer.close();
    server.close();
    co_await server.wait_closed();
  }());
}

TEST(StreamRead, PipelinedLinesFromOneReceive) {
  auto lines = [](StreamReader reader, StreamWriter writer) -> Coro<void> {
    writer.write("one\ntwo\nthree\nGET / HTTP/1.1\r\nHost: x\r\n\r\nrest");
    co_await reader.read(-1);
  };
  with_connection(lines, [](StreamReader& reader, StreamWriter&) -> Coro<void> {
    EXPECT_EQ(co_await reader.readline(), "one\n");
    EXPECT_EQ(co_await reader.readuntil("\n"), "two\n");
    EXPECT_EQ(co_await reader.readexactly(6), "three\n");
    EXPECT_EQ(co_await reader.readuntil("\r\n\r\n"), "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    EXPECT_EQ(co_await reader.read(2), "re");
    EXPECT_EQ(reader.buffered(), "st");
  });
}

TEST(StreamRead, SeparatorArrivingInPiecesTakesSeveralReceives) {
  auto pieces = [](StreamReader reader, StreamWriter writer) -> Coro<void> {
    for (const char* part : {"GET / HTTP/1.1\r", "\nHost: x\r\n", "\r", "\nnext"}) {
      writer.write(part);
      co_await writer.drain();
      co_await sleep(0.01);  // separate segments, so the reader receives more than once
    }
    co_await reader.read(-1);
  };
  with_connection(pieces, [](StreamReader& reader, StreamWriter&) -> Coro<void> {
    EXPECT_EQ(co_await reader.readuntil("\r\n\r\n"), "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    EXPECT_EQ(co_await reader.readexactly(4), "next");
  });
}

TEST(StreamRead, SeveralSeparatorsOnASocket) {
  auto pieces = [](StreamReader reader, StreamWriter writer) -> Coro<void> {
    for (const char* part : {"first;", "second\r", "\nthird|", "=", "=", "=fourth"}) {
      writer.write(part);
      co_await writer.drain();
      co_await sleep(0.01);  // separate segments, so the reader receives more than once
    }
    co_await reader.read(-1);
  };
  // Named lists: GCC 12 cannot compile a braced list inside a co_await expression.
  with_connection(pieces, [](StreamReader& reader, StreamWriter&) -> Coro<void> {
    const std::array<std::string_view, 2> crlf_or_semicolon = {"\r\n", ";"};
    const std::array<std::string_view, 2> equals_or_bar = {"===", "|"};
    EXPECT_EQ(co_await reader.readuntil(crlf_or_semicolon), "first;");
    EXPECT_EQ(co_await reader.readuntil(crlf_or_semicolon), "second\r\n");
    // "|" is there, "===" not yet: no wait for it.
    EXPECT_EQ(co_await reader.readuntil(equals_or_bar), "third|");
    // Only "===" comes, in three receives.
    StreamRead equals = reader.readuntil({"===", "|"});
    EXPECT_EQ(co_await wait_for(std::move(equals), 5.0), "===");
    EXPECT_EQ(co_await reader.readexactly(6), "fourth");
  });
}

TEST(StreamRead, ReadexactlyAcrossManyReceives) {
  const std::string payload(300000, 'x');
  auto big = [&payload](StreamReader reader, StreamWriter writer) -> Coro<void> {
    writer.write(payload);
    writer.write("tail");
    co_await writer.drain();
    co_await reader.read(-1);
  };
  with_connection(big, [&payload](StreamReader& reader, StreamWriter&) -> Coro<void> {
    const std::string got =
        co_await reader.readexactly(static_cast<std::ptrdiff_t>(payload.size()));
    EXPECT_TRUE(got == payload);
    EXPECT_EQ(co_await reader.readexactly(4), "tail");
  });
}

TEST(StreamRead, WaitForTimingOutMidLineKeepsTheBytes) {
  auto body = [](StreamReader& reader, StreamWriter&, Future<void>& finish) -> Coro<void> {
    for (int i = 0; i < 200 && reader.buffered().size() < 7; ++i) {
      try {
        co_await wait_for(reader.readline(), 0.005);
        ADD_FAILURE() << "a line arrived before the server sent its end";
      } catch (const TimeoutError&) {
      }
    }
    EXPECT_EQ(reader.buffered(), "half a ");
    finish.set_result();
    EXPECT_EQ(co_await wait_for(reader.readline(), 10.0), "half a line\n");
  };
  with_late_reply("half a ", "line\n", body);
}

TEST(StreamRead, GatherCreateTaskTaskGroupAndCoro) {
  auto lines = [](StreamReader reader, StreamWriter writer) -> Coro<void> {
    writer.write("0\na\nb\nc\nd\ne\nf\n");  // one segment on loopback: one receive takes it all
    co_await reader.read(-1);
  };
  with_connection(lines, [](StreamReader& reader, StreamWriter&) -> Coro<void> {
    // Two reads of one reader at once only work from the buffer (else the second raises
    // RuntimeError, as in asyncio), so the first line pulls the rest in.
    EXPECT_EQ(co_await reader.readline(), "0\n");
    auto [first, second] = co_await gather(reader.readline(), reader.readline());
    EXPECT_EQ(first, "a\n");
    EXPECT_EQ(second, "b\n");
    Task<std::string> task = create_task(reader.readline(), "third");
    EXPECT_EQ(co_await task, "c\n");
    std::string from_group;
    co_await TaskGroup::run([&](TaskGroup& tg) -> Coro<void> {
      Task<std::string> t = tg.create_task(reader.readline());  // as asyncio spells it
      from_group = co_await t;
    });
    EXPECT_EQ(from_group, "d\n");
    Task<std::string> on_loop = get_running_loop().create_task(reader.readline());
    EXPECT_EQ(co_await on_loop, "e\n");
    Coro<std::string> as_coro = reader.readline();
    EXPECT_EQ(co_await std::move(as_coro), "f\n");
  });
}

TEST(StreamRead, SecondWaiterOnASocketRaisesRuntimeError) {
  auto body = [](StreamReader& reader, StreamWriter&, Future<void>& finish) -> Coro<void> {
    Task<std::string> first = create_task(reader.readline());
    co_await sleep(0);
    EXPECT_THROW(co_await reader.readline(), RuntimeError);
    finish.set_result();
    EXPECT_EQ(co_await first, "late\n");
  };
  with_late_reply("", "late\n", body);
}

TEST(StreamRead, LimitOverrunOnASocketKeepsTheData) {
  auto long_line = [](StreamReader reader, StreamWriter writer) -> Coro<void> {
    writer.write("0123456789abcdef\nok\n");
    co_await reader.read(-1);
  };
  with_connection(
      long_line,
      [](StreamReader& reader, StreamWriter&) -> Coro<void> {
        try {
          co_await reader.readuntil("\n");
          ADD_FAILURE() << "no LimitOverrunError";
        } catch (const LimitOverrunError& e) {
          EXPECT_GT(e.consumed(), 8u);  // 16 when the line came in one piece
        }
        EXPECT_EQ(co_await reader.readexactly(17), "0123456789abcdef\n");
        EXPECT_EQ(co_await reader.readline(), "ok\n");
      },
      8);
}

TEST(StreamRead, EofInTheMiddleGivesThePartialBytes) {
  auto short_reply = [](StreamReader, StreamWriter writer) -> Coro<void> {
    writer.write("12345");
    writer.close();
    co_await writer.wait_closed();
  };
  with_connection(short_reply, [](StreamReader& reader, StreamWriter&) -> Coro<void> {
    try {
      const std::string got = co_await reader.readexactly(10);
      ADD_FAILURE() << "no IncompleteReadError: got '" << got << "'";
    } catch (const IncompleteReadError& e) {
      EXPECT_EQ(e.partial(), "12345");
      EXPECT_EQ(e.expected(), 10u);
    }
    EXPECT_EQ(co_await reader.readline(), "");
    EXPECT_TRUE(reader.at_eof());
  });
}

// readinto (corio's allocation-free twin of read(n)): at most the span's size, the rest stays
// buffered, 0 at EOF; an empty span answers 0 and leaves the buffer alone.
TEST(StreamRead, ReadintoCopiesAtMostTheSpanAndLeavesTheRest) {
  auto reply = [](StreamReader, StreamWriter writer) -> Coro<void> {
    writer.write("hello world");
    writer.close();
    co_await writer.wait_closed();
  };
  with_connection(reply, [](StreamReader& reader, StreamWriter&) -> Coro<void> {
    char small[5];
    EXPECT_EQ(co_await reader.readinto(small), 5u);
    EXPECT_EQ(std::string_view(small, 5), "hello");
    EXPECT_EQ(co_await reader.readinto(std::span<char>()), 0u);
    EXPECT_EQ(reader.buffered(), " world");
    std::array<char, 64> big{};
    std::size_t got = 0;
    for (std::size_t n = 1; n != 0; got += n) {
      n = co_await reader.readinto(std::span<char>(big).subspan(got));
    }
    EXPECT_EQ(std::string_view(big.data(), got), " world");
    EXPECT_TRUE(reader.at_eof());
  });
}

TEST(StreamRead, ReadintoAcrossManyReceivesLosesNothing) {
  std::string payload(300000, ' ');
  for (std::size_t i = 0; i < payload.size(); ++i) payload[i] = static_cast<char>('a' + i % 26);
  auto big = [&payload](StreamReader, StreamWriter writer) -> Coro<void> {
    writer.write(payload);
    writer.close();
    co_await writer.wait_closed();
  };
  with_connection(big, [&payload](StreamReader& reader, StreamWriter&) -> Coro<void> {
    std::string got;
    char chunk[4093];
    for (;;) {
      const std::size_t n = co_await reader.readinto(chunk);
      if (n == 0) break;
      EXPECT_LE(n, sizeof chunk);
      got.append(chunk, n);
    }
    EXPECT_TRUE(got == payload) << got.size() << " bytes of " << payload.size();
  });
}

// A readinto that times out has written nothing into the span, and the bytes that arrive
// later go to the next read.
TEST(StreamRead, ReadintoTimedOutWritesNothingAndTheNextReadGetsTheBytes) {
  auto body = [](StreamReader& reader, StreamWriter&, Future<void>& finish) -> Coro<void> {
    char buffer[8] = {'#', '#', '#', '#', '#', '#', '#', '#'};
    EXPECT_THROW(co_await wait_for(reader.readinto(buffer), 0.02), TimeoutError);
    EXPECT_EQ(std::string_view(buffer, 8), "########");
    finish.set_result();
    Task<std::size_t> task = create_task(reader.readinto(buffer));
    EXPECT_EQ(co_await wait_for(std::move(task), 10.0), 4u);
    EXPECT_EQ(std::string_view(buffer, 4), "late");
  };
  with_late_reply("", "late", body);
}

TEST(StreamRead, ReadintoOfAHandFedReader) {
  run([]() -> Coro<void> {
    StreamReader reader;
    char buffer[4];
    Task<std::size_t> waiting = create_task(reader.readinto(buffer));
    co_await sleep(0);
    EXPECT_FALSE(waiting.done());
    reader.feed_data("abcdef");
    EXPECT_EQ(co_await waiting, 4u);
    EXPECT_EQ(std::string_view(buffer, 4), "abcd");
    EXPECT_EQ(co_await reader.readinto(buffer), 2u);
    EXPECT_EQ(std::string_view(buffer, 2), "ef");
    reader.feed_eof();
    EXPECT_EQ(co_await reader.readinto(buffer), 0u);
    StreamReader failed;
    failed.set_exception(std::make_exception_ptr(ConnectionResetError(ECONNRESET, "reset")));
    EXPECT_THROW(co_await failed.readinto(buffer), ConnectionResetError);
  }());
}

}  // namespace
}  // namespace corio
