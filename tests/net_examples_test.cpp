// Runs the networking examples as a user would: each server is a separate process started
// on port 0, its port read from the "Serving on ..." line it prints, and talked to over real
// loopback sockets. echo_server with echo_client; http_hello with hand-written HTTP/1.1
// requests (pipelined, split across writes, with bodies, closing, oversized).
#include <gtest/gtest.h>

#include <corio/corio.hpp>

#include <cstdlib>
#include <exception>
#include <functional>
#include <string>
#include <vector>

#include "example_runner.hpp"

namespace {

using namespace corio;

std::string example_path(const std::string& name) {
#ifdef _WIN32
  return corio::testing::examples_dir() + "\\" + name + ".exe";
#else
  return corio::testing::examples_dir() + "/" + name;
#endif
}

// Text a program printed, with Windows' "\r\n" line ends made "\n".
std::string without_cr(std::string text) {
  std::erase(text, '\r');
  return text;
}

// A server example running in its own process, started on port 0.
class ExampleServer {
 public:
  explicit ExampleServer(Process process) : process_(std::move(process)) {}

  // Reads the "Serving on 127.0.0.1:PORT" (echo_server) or "Serving on
  // http://127.0.0.1:PORT" (http_hello) line; port() stays 0 when it is not that.
  Coro<void> read_banner() {
    banner_ = co_await wait_for(process_.std_out()->readline(), 30.0);
    const std::size_t colon = banner_.rfind(':');
    if (banner_.rfind("Serving on ", 0) == 0 && colon != std::string::npos) {
      port_ = static_cast<std::uint16_t>(std::atoi(banner_.c_str() + colon + 1));
    }
  }

  std::uint16_t port() const { return port_; }
  const std::string& banner() const { return banner_; }
  PipeReader& output() { return *process_.std_out(); }

  Coro<void> stop() {
    if (!process_.returncode()) process_.kill();
    co_await process_.wait();
  }

 private:
  Process process_;
  std::string banner_;
  std::uint16_t port_ = 0;
};

// Starts the example `name` with `args` (spelled out, not a braced list: g++ 12 rejects a
// braced list inside a co_await expression), runs `body` against it, and stops the server
// whatever happens, so a failing test leaves no process behind.
template <class... Args>
void with_example_server(const std::function<Coro<void>(ExampleServer&)>& body, std::string name,
                         Args... args) {
  run([&]() -> Coro<void> {
    ExampleServer server(co_await create_subprocess_exec(
        example_path(name), std::string(args)..., SubprocessOptions{.std_out = subprocess::PIPE}));
    std::exception_ptr error;
    try {
      co_await server.read_banner();
      if (server.port() == 0) {
        ADD_FAILURE() << "no port in the banner: " << server.banner();
      } else {
        co_await wait_for(body(server), 60.0);
      }
    } catch (...) {
      error = std::current_exception();
    }
    co_await server.stop();
    if (error) std::rethrow_exception(error);
  }());
}

TEST(NetExamples, EchoClientTalksToEchoServer) {
  with_example_server(
      [](ExampleServer& server) -> Coro<void> {
        Process client = co_await create_subprocess_exec(
            example_path("echo_client"), "--port", std::to_string(server.port()), "ping pong",
            SubprocessOptions{.std_out = subprocess::PIPE});
        auto [out, err] = co_await client.communicate();
        EXPECT_EQ(co_await client.wait(), 0) << out;
        EXPECT_EQ(without_cr(out),
                  "Send: 'ping pong'\nReceived: 'ping pong'\nClose the connection\n");
        // The server's log, live: one line per message and one per closed connection.
        const std::string received = co_await server.output().readline();
        EXPECT_EQ(received.rfind("Received 9 bytes 'ping pong' from 127.0.0.1:", 0), 0u)
            << received;
        const std::string closed = co_await server.output().readline();
        EXPECT_EQ(closed.rfind("Close the connection to 127.0.0.1:", 0), 0u) << closed;
      },
      "echo_server", "--host", "127.0.0.1", "--port", "0");
}

TEST(NetExamples, EchoClientRepeatsRoundTripsOnOneConnection) {
  with_example_server(
      [](ExampleServer& server) -> Coro<void> {
        Process client = co_await create_subprocess_exec(
            example_path("echo_client"), "--port", std::to_string(server.port()), "--repeat", "500",
            "x", SubprocessOptions{.std_out = subprocess::PIPE});
        auto [out, err] = co_await client.communicate();
        EXPECT_EQ(co_await client.wait(), 0) << out;
        EXPECT_EQ(out.rfind("500 round trips in ", 0), 0u) << out;
      },
      "echo_server", "--host", "127.0.0.1", "--port", "0", "--quiet");
}

// One response of http_hello: its head (status line and headers, through the blank line)
// and its body, read by its Content-Length.
struct Response {
  std::string head;
  std::string body;
};

Coro<Response> read_response(StreamReader& reader) {
  Response response;
  response.head = co_await reader.readuntil("\r\n\r\n");
  const std::size_t at = response.head.find("\r\nContent-Length: ");
  const std::size_t length =
      at == std::string::npos ? 0 : std::stoul(response.head.substr(at + 18));
  response.body = co_await reader.readexactly(static_cast<std::ptrdiff_t>(length));
  co_return response;
}

// A 200 answer in the shape the example promises: status, Server, Content-Type, length, a
// Date header in the HTTP format, and the body.
void expect_hello(const Response& response) {
  EXPECT_EQ(response.head.rfind("HTTP/1.1 200 OK\r\n", 0), 0u) << response.head;
  EXPECT_NE(response.head.find("\r\nServer: corio\r\n"), std::string::npos) << response.head;
  EXPECT_NE(response.head.find("\r\nContent-Type: text/plain\r\n"), std::string::npos);
  EXPECT_NE(response.head.find("\r\nContent-Length: 13\r\n"), std::string::npos);
  const std::size_t date = response.head.find("\r\nDate: ");
  ASSERT_NE(date, std::string::npos) << response.head;
  // "Date: Mon, 07 Dec 2026 19:00:00 GMT": the value is 29 characters, ending in " GMT".
  const std::size_t end = response.head.find("\r\n", date + 2);
  EXPECT_EQ(end - (date + 8), 29u) << response.head;
  EXPECT_EQ(response.head.substr(end - 4, 4), " GMT") << response.head;
  EXPECT_EQ(response.body, "Hello, World!");
}

// Runs `body` against a fresh http_hello, given its port.
void with_http_hello(std::function<Coro<void>(std::uint16_t)> body) {
  with_example_server(
      [&](ExampleServer& server) -> Coro<void> {
        EXPECT_EQ(server.banner().rfind("Serving on http://127.0.0.1:", 0), 0u) << server.banner();
        co_await body(server.port());
      },
      "http_hello", "--host", "127.0.0.1", "--port", "0");
}

const std::string kGet = "GET /plaintext HTTP/1.1\r\nHost: localhost\r\n\r\n";

TEST(NetExamples, HttpHelloAnswersPipelinedRequestsInOrder) {
  with_http_hello([](std::uint16_t port) -> Coro<void> {
    auto [reader, writer] = co_await open_connection("127.0.0.1", port);
    // Three requests in one write, and a fourth split across two writes.
    writer.write(kGet + kGet + kGet + kGet.substr(0, 20));
    co_await writer.drain();
    for (int i = 0; i < 3; ++i) expect_hello(co_await read_response(reader));
    co_await sleep(0.05);
    writer.write(kGet.substr(20));
    co_await writer.drain();
    expect_hello(co_await read_response(reader));
    // A request split inside its final blank line.
    writer.write(kGet.substr(0, kGet.size() - 1));
    co_await writer.drain();
    co_await sleep(0.05);
    writer.write("\n");
    expect_hello(co_await read_response(reader));
    // Then nothing more: the server closes when the client does.
    writer.write_eof();
    EXPECT_EQ(co_await reader.read(), "");
    writer.close();
    co_await writer.wait_closed();
  });
}

TEST(NetExamples, HttpHelloSkipsRequestBodiesAndMatchesHeaderNamesInAnyCase) {
  with_http_hello([](std::uint16_t port) -> Coro<void> {
    auto [reader, writer] = co_await open_connection("127.0.0.1", port);
    // The body "GET / HTTP/1.1\r\n\r\n" would be a request of its own if it were not skipped.
    const std::string body = "GET / HTTP/1.1\r\n\r\n";
    writer.write("POST /submit HTTP/1.1\r\nHost: x\r\ncontent-LENGTH:  " +
                 std::to_string(body.size()) + "\r\n\r\n" + body + kGet);
    co_await writer.drain();
    expect_hello(co_await read_response(reader));
    expect_hello(co_await read_response(reader));
    writer.write_eof();
    EXPECT_EQ(co_await reader.read(), "") << "a request body was answered as a request";
    writer.close();
  });
}

TEST(NetExamples, HttpHelloClosesAfterConnectionCloseAndPlainHttp10) {
  with_http_hello([](std::uint16_t port) -> Coro<void> {
    {
      // "Connection: close": answered, then closed; the request after it is not answered.
      auto [reader, writer] = co_await open_connection("127.0.0.1", port);
      writer.write("GET / HTTP/1.1\r\nConnection: Close\r\n\r\n" + kGet);
      expect_hello(co_await read_response(reader));
      EXPECT_EQ(co_await reader.read(), "");
      writer.close();
    }
    {
      // HTTP/1.0 closes unless it asks for keep-alive.
      auto [reader, writer] = co_await open_connection("127.0.0.1", port);
      writer.write("GET / HTTP/1.0\r\n\r\n");
      expect_hello(co_await read_response(reader));
      EXPECT_EQ(co_await reader.read(), "");
      writer.close();
    }
    {
      auto [reader, writer] = co_await open_connection("127.0.0.1", port);
      const std::string keep_alive = "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n";
      writer.write(keep_alive);
      expect_hello(co_await read_response(reader));
      writer.write(keep_alive);
      expect_hello(co_await read_response(reader));
      writer.close();
    }
  });
}

TEST(NetExamples, HttpHelloRejectsAnOversizedHeadAndKeepsServingOthers) {
  with_http_hello([](std::uint16_t port) -> Coro<void> {
    auto [reader, writer] = co_await open_connection("127.0.0.1", port);
    auto [reader2, writer2] = co_await open_connection("127.0.0.1", port);
    // 80 KiB of headers and no end of head: past the reader's 64 KiB limit.
    writer.write("GET / HTTP/1.1\r\nX-Filler: " + std::string(80 * 1024, 'a'));
    const std::string answer = co_await reader.read();
    EXPECT_EQ(answer.rfind("HTTP/1.1 431 ", 0), 0u) << answer.substr(0, 80);
    EXPECT_NE(answer.find("\r\nConnection: close\r\n"), std::string::npos);
    // Then the connection ends (an EOF, or a reset for the unread filler).
    try {
      std::string rest = co_await reader.read();
      while (!rest.empty()) rest = co_await reader.read();
    } catch (const ConnectionResetError&) {
    }
    writer.close();
    // A connection that went away mid-request does not disturb the server either.
    {
      auto [reader3, writer3] = co_await open_connection("127.0.0.1", port);
      writer3.write(kGet.substr(0, 10));
      co_await writer3.drain();
      writer3.close();
      co_await writer3.wait_closed();
    }
    writer2.write(kGet);
    expect_hello(co_await read_response(reader2));
    writer2.close();
  });
}

TEST(NetExamples, HttpHelloServesManyConnectionsAtOnce) {
  with_http_hello([](std::uint16_t port) -> Coro<void> {
    auto client = [port](int requests) -> Coro<int> {
      auto [reader, writer] = co_await open_connection("127.0.0.1", port);
      int answered = 0;
      for (int i = 0; i < requests; ++i) {
        // Alternately one request and a pipelined pair.
        writer.write(i % 2 == 0 ? kGet : kGet + kGet);
        for (int k = 0; k < (i % 2 == 0 ? 1 : 2); ++k) {
          const Response response = co_await read_response(reader);
          if (response.body == "Hello, World!") ++answered;
        }
      }
      writer.close();
      co_return answered;
    };
    std::vector<Task<int>> clients;
    for (int i = 0; i < 100; ++i) clients.push_back(create_task(client(10)));
    int total = 0;
    for (Task<int>& task : clients) total += co_await task;
    EXPECT_EQ(total, 100 * 15);
  });
}

}  // namespace
