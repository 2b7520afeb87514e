// asio_http.cpp - minimal HTTP/1.1 keep-alive "Hello, World!" server on
// standalone asio with C++20 coroutines (TechEmpower plaintext shape).
//
// Usage: asio_http --port N
//
// One io_context on the main thread.  Each connection is a coroutine that
// reads what is available, answers every complete request found in the
// buffer (pipelining), and writes all those responses with one write.
// Requests are not routed: every request gets the same 200 response.  A
// request body announced by Content-Length is skipped; "Connection: close"
// (or HTTP/1.0 without "Connection: keep-alive") closes after the response.  The Date header is
// refreshed once a second by a timer coroutine.  Runs until killed.
#include <asio.hpp>

#include <strings.h>
#include <sys/resource.h>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <exception>
#include <string>
#include <string_view>
#include <vector>

using asio::awaitable;
using asio::use_awaitable;
using asio::ip::tcp;

namespace {

constexpr std::size_t kMaxRequestBytes = 1 << 20;
constexpr std::string_view kBody = "Hello, World!";

char g_date[64];  // "Date: <rfc1123>\r\n"
std::size_t g_date_len;

void refresh_date() {
  std::time_t now = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&now, &tm);
  g_date_len = std::strftime(g_date, sizeof g_date, "Date: %a, %d %b %Y %H:%M:%S GMT\r\n", &tm);
}

void append_response(std::string& out) {
  out.append(
      "HTTP/1.1 200 OK\r\nServer: asio\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n");
  out.append(g_date, g_date_len);
  out.append("\r\n");
  out.append(kBody);
}

// Case-insensitive search for "\r\nName:" inside the header block; returns the
// value with leading blanks removed, or an empty view.
std::string_view header_value(std::string_view head, std::string_view name) {
  std::size_t pos = 0;
  while ((pos = head.find("\r\n", pos)) != std::string_view::npos) {
    pos += 2;
    if (head.size() - pos > name.size() && head[pos + name.size()] == ':' &&
        strncasecmp(head.data() + pos, name.data(), name.size()) == 0) {
      std::size_t v = pos + name.size() + 1;
      std::size_t end = head.find("\r\n", v);
      if (end == std::string_view::npos) end = head.size();
      while (v < end && (head[v] == ' ' || head[v] == '\t')) ++v;
      return head.substr(v, end - v);
    }
  }
  return {};
}

// "Connection: close", or an HTTP/1.0 request without "Connection: keep-alive" (the same
// rule as corio's http_hello).
bool closes_after(std::string_view head) {
  const std::string_view conn = header_value(head, "Connection");
  if (conn.size() == 5 && strncasecmp(conn.data(), "close", 5) == 0) return true;
  std::string_view request_line = head.substr(0, head.find("\r\n"));
  return request_line.size() >= 8 && request_line.substr(request_line.size() - 8) == "HTTP/1.0" &&
         !(conn.size() == 10 && strncasecmp(conn.data(), "keep-alive", 10) == 0);
}

awaitable<void> session(tcp::socket socket) {
  std::vector<char> in(8192);
  std::size_t have = 0;
  std::string out;
  out.reserve(4096);
  try {
    for (;;) {
      if (have == in.size()) {
        if (in.size() >= kMaxRequestBytes) co_return;  // request too large
        in.resize(in.size() * 2);
      }
      have += co_await socket.async_read_some(asio::buffer(in.data() + have, in.size() - have),
                                              use_awaitable);
      // Answer every complete request in the buffer.
      std::size_t pos = 0;
      bool close_after = false;
      out.clear();
      for (;;) {
        const char* start = in.data() + pos;
        const void* end = memmem(start, have - pos, "\r\n\r\n", 4);
        if (!end) break;
        std::size_t head_len = static_cast<const char*>(end) - start + 4;
        std::string_view head(start, head_len - 2);
        std::size_t body = 0;
        if (auto cl = header_value(head, "Content-Length"); !cl.empty())
          body = std::strtoull(std::string(cl).c_str(), nullptr, 10);
        if (body > kMaxRequestBytes) co_return;
        if (have - pos < head_len + body) break;  // body not complete yet
        append_response(out);
        pos += head_len + body;
        if (closes_after(head)) {
          close_after = true;
          break;
        }
      }
      if (pos > 0) {
        std::memmove(in.data(), in.data() + pos, have - pos);
        have -= pos;
      }
      if (!out.empty()) co_await asio::async_write(socket, asio::buffer(out), use_awaitable);
      if (close_after) co_return;
    }
  } catch (const std::exception&) {
    // EOF or reset.
  }
}

awaitable<void> listener(tcp::acceptor acceptor) {
  for (;;) {
    asio::error_code ec;
    tcp::socket socket = co_await acceptor.async_accept(asio::redirect_error(use_awaitable, ec));
    if (ec) continue;
    socket.set_option(tcp::no_delay(true), ec);
    asio::co_spawn(acceptor.get_executor(), session(std::move(socket)), asio::detached);
  }
}

awaitable<void> date_ticker() {
  asio::steady_timer timer(co_await asio::this_coro::executor);
  for (;;) {
    refresh_date();
    timer.expires_after(std::chrono::seconds(1));
    co_await timer.async_wait(use_awaitable);
  }
}

}  // namespace

int main(int argc, char** argv) {
  int port = -1;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--port") == 0 && i + 1 < argc) {
      port = std::atoi(argv[++i]);
    } else {
      port = -1;
      break;
    }
  }
  if (port < 0 || port > 65535) {
    std::fprintf(stderr, "usage: %s --port N\n", argv[0]);
    return 2;
  }
  std::signal(SIGPIPE, SIG_IGN);
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
  refresh_date();
  try {
    asio::io_context io(1);
    tcp::acceptor acceptor(io);
    tcp::endpoint ep(tcp::v4(), static_cast<unsigned short>(port));
    acceptor.open(ep.protocol());
    acceptor.set_option(tcp::acceptor::reuse_address(true));
    acceptor.bind(ep);
    acceptor.listen(asio::socket_base::max_listen_connections);
    asio::co_spawn(io, listener(std::move(acceptor)), asio::detached);
    asio::co_spawn(io, date_ticker(), asio::detached);
    io.run();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "asio_http: %s\n", e.what());
    return 1;
  }
  return 0;
}
