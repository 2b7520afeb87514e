// http_hello: a minimal HTTP/1.1 "Hello, World!" server in the shape of TechEmpower's
// plaintext test: keep-alive connections, pipelined requests answered in order with one
// write per batch, a Date header refreshed once a second. Every path gets the same answer.
// bench/http/README.md says what it and its asio twin (bench/peers/asio_http.cpp) each do per
// request; the two must keep doing the same work (same bytes, same parsing rules).
//
//   http_hello [--host 0.0.0.0] [--port 8080] [--workers N]
//
// --workers N forks N processes sharing the port with SO_REUSEPORT (one loop each).
// Try: curl -v http://127.0.0.1:8080/plaintext
#include <corio/runner.hpp>
#include <corio/server.hpp>
#include <corio/sleep.hpp>
#include <corio/streams.hpp>
#include <corio/task.hpp>

#ifndef _WIN32
#include <sys/wait.h>
#include <unistd.h>
#endif

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace {

struct Config {
  std::string host = "0.0.0.0";
  std::uint16_t port = 8080;
  int workers = 1;
};

Config parse(int argc, char** argv) {
  Config config;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    const bool has_value = i + 1 < argc;
    if (arg == "--host" && has_value) {
      config.host = argv[++i];
    } else if (arg == "--port" && has_value) {
      config.port = static_cast<std::uint16_t>(std::atoi(argv[++i]));
    } else if (arg == "--workers" && has_value) {
      config.workers = std::max(1, std::atoi(argv[++i]));
    } else {
      std::fprintf(stderr, "usage: %s [--host H] [--port P] [--workers N]\n", argv[0]);
      std::exit(2);
    }
  }
  return config;
}

// "Date: Sun, 22 Nov 2026 10:00:00 GMT\r\n", rebuilt once a second by date_ticker, as a real
// server does (and as the asio twin's timer does), not formatted per response.
std::string g_date;

void refresh_date() {
  const std::time_t now = std::time(nullptr);
  char text[64];
  std::tm tm{};
#ifdef _WIN32
  gmtime_s(&tm, &now);
#else
  gmtime_r(&now, &tm);
#endif
  g_date.assign(text, std::strftime(text, sizeof text, "Date: %a, %d %b %Y %H:%M:%S GMT\r\n", &tm));
}

corio::Coro<void> date_ticker() {
  for (;;) {
    refresh_date();
    co_await corio::sleep(1.0);
  }
}

void append_response(std::string& out) {
  out += "HTTP/1.1 200 OK\r\nServer: corio\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n";
  out += g_date;
  out += "\r\nHello, World!";
}

char ascii_lower(char c) {
  return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c;
}

// ASCII case-insensitive equality of a's first b.size() bytes with b (strncasecmp's job).
bool iequals(const char* a, std::string_view b) {
  for (std::size_t i = 0; i < b.size(); ++i) {
    if (ascii_lower(a[i]) != ascii_lower(b[i])) return false;
  }
  return true;
}

// The value of a header in a request head ("" when absent), name matched case-insensitively,
// leading blanks dropped: the same rule as the asio twin's header_value.
std::string_view header_value(std::string_view head, std::string_view name) {
  std::size_t pos = 0;
  while ((pos = head.find("\r\n", pos)) != std::string_view::npos) {
    pos += 2;
    if (head.size() - pos > name.size() && head[pos + name.size()] == ':' &&
        iequals(head.data() + pos, name)) {
      std::size_t v = pos + name.size() + 1;
      std::size_t end = head.find("\r\n", v);
      if (end == std::string_view::npos) end = head.size();
      while (v < end && (head[v] == ' ' || head[v] == '\t')) ++v;
      return head.substr(v, end - v);
    }
  }
  return {};
}

// Whether the connection closes after answering this request: "Connection: close", or an
// HTTP/1.0 request without "Connection: keep-alive" (the twin applies the same rule).
bool closes_after(std::string_view head) {
  const std::string_view connection = header_value(head, "Connection");
  if (connection.size() == 5 && iequals(connection.data(), "close")) return true;
  const std::string_view request_line = head.substr(0, head.find("\r\n"));
  return request_line.ends_with("HTTP/1.0") &&
         !(connection.size() == 10 && iequals(connection.data(), "keep-alive"));
}

corio::Coro<void> serve_http(corio::StreamReader reader, corio::StreamWriter writer) {
  std::string batch;
  // The current request head. Its storage is reused from request to request.
  std::string head_storage;
  // The length of the next request head when it is already known to be in the buffer: then
  // readinto copies it out without searching for its end a second time, and without
  // allocating (readuntil would return a new std::string).
  std::size_t next_head = 0;
  try {
    for (;;) {
      std::string_view head;
      if (next_head != 0) {
        if (head_storage.size() < next_head) head_storage.resize(next_head);
        // The bytes are buffered, so this copies all next_head of them without suspending.
        const std::size_t n =
            co_await reader.readinto(std::span<char>(head_storage.data(), next_head));
        head = std::string_view(head_storage.data(), n);
      } else {
        head_storage = co_await reader.readuntil("\r\n\r\n");
        head = head_storage;
      }
      // Bodies (rare here) are read and ignored so the next request parses.
      const std::string_view length = header_value(head, "Content-Length");
      if (!length.empty()) co_await reader.readexactly(std::atol(std::string(length).c_str()));
      const bool close = closes_after(head);
      append_response(batch);
      // Pipelining: while the next complete request is already buffered, answer it in the
      // same batch. (Past the reader's limit, readuntil raises LimitOverrunError as usual.)
      const std::size_t end = reader.buffered().find("\r\n\r\n");
      next_head = end != std::string_view::npos && end <= reader.limit() ? end + 4 : 0;
      if (close || next_head == 0) {
        writer.write(batch);
        batch.clear();
        co_await writer.drain();
      }
      if (close) break;
    }
  } catch (const corio::IncompleteReadError&) {
    // The client closed the connection (possibly mid-request): nothing to answer.
  } catch (const corio::LimitOverrunError&) {
    writer.write(
        "HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Length: 0\r\nConnection: "
        "close\r\n\r\n");
  } catch (const corio::ConnectionError&) {
    co_return;  // reset by the peer
  }
  writer.close();
}

corio::Coro<void> amain(Config config) {
  corio::ServerOptions options;
  options.reuse_port = config.workers > 1;
  options.backlog = 1024;
  corio::Task<void> ticker = corio::create_task(date_ticker());
  corio::Server server =
      co_await corio::start_server(serve_http, config.host, config.port, options);
  std::printf("Serving on http://%s\n", corio::format_address(server.addresses().at(0)).c_str());
  std::fflush(stdout);
  co_await server.serve_forever();
}

int run_server(const Config& config) {
  try {
    corio::run(amain(config));
  } catch (const corio::KeyboardInterrupt&) {
  } catch (const std::exception& e) {
    std::fprintf(stderr, "http_hello: %s\n", e.what());
    return 1;
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const Config config = parse(argc, argv);
#ifndef _WIN32
  if (config.workers > 1) {
    std::vector<pid_t> children;
    for (int i = 0; i < config.workers; ++i) {
      const pid_t pid = ::fork();
      if (pid == 0) return run_server(config);  // each child has its own loop
      if (pid > 0) children.push_back(pid);
    }
    int status = 0;
    for (pid_t child : children) ::waitpid(child, &status, 0);
    return 0;
  }
#endif
  return run_server(config);
}
