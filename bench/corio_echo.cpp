// corio's echo server for the side-by-side echo benchmark (bench/echo/run_echo_bench.py):
// the same job as bench/peers/*_echo, one loop thread, TCP_NODELAY like the peers.
//   corio_echo --port N [--mode sock|streams|streams-into]
// sock:    low-level sock_recv_into/sock_sendall into a buffer in the connection's frame
//          (no allocation per message);
// streams: asyncio's StreamReader.read / StreamWriter.write + drain, as users write servers
//          (read returns a new std::string: one allocation per message over 15 bytes);
// streams-into: the same with StreamReader.readinto into the frame's buffer (none).
// Prints the count of heap allocations per echoed message on exit (SIGTERM/SIGINT).
#include <corio/corio.hpp>
#include <corio/server.hpp>
#include <corio/signals.hpp>
#include <corio/sock_ops.hpp>
#include <corio/socket.hpp>
#include <corio/streams.hpp>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "alloc_counter.hpp"

namespace {

std::uint64_t g_messages = 0;

corio::Coro<void> echo_connection(corio::Socket sock) {
  sock.setsockopt(corio::SocketOption::tcp_nodelay, 1);
  char buffer[16 * 1024];
  try {
    for (;;) {
      const std::size_t n =
          co_await corio::sock_recv_into(sock, std::span<char>(buffer, sizeof buffer));
      if (n == 0) break;
      ++g_messages;
      co_await corio::sock_sendall(sock, std::string_view(buffer, n));
    }
  } catch (const corio::OSError&) {
    // a client resetting its connection ends it
  }
}

corio::Coro<void> serve_sock(std::uint16_t port) {
  corio::Socket listener = corio::Socket::create(corio::AddressFamily::ipv4);
  listener.setsockopt(corio::SocketOption::reuse_address, 1);
  listener.bind(corio::core::net::ipv4_address("127.0.0.1", port));
  listener.listen(4096);
  for (;;) {
    auto [conn, peer] = co_await corio::sock_accept(listener);
    corio::create_task(echo_connection(std::move(conn)));
  }
}

corio::Coro<void> echo_stream(corio::StreamReader reader, corio::StreamWriter writer) {
  try {
    for (;;) {
      std::string data = co_await reader.read(16 * 1024);
      if (data.empty()) break;
      ++g_messages;
      writer.write(data);
      co_await writer.drain();
    }
  } catch (const corio::OSError&) {
  }
  writer.close();
}

corio::Coro<void> echo_stream_into(corio::StreamReader reader, corio::StreamWriter writer) {
  char buffer[16 * 1024];
  try {
    for (;;) {
      const std::size_t n = co_await reader.readinto(buffer);
      if (n == 0) break;
      ++g_messages;
      writer.write(std::string_view(buffer, n));
      co_await writer.drain();
    }
  } catch (const corio::OSError&) {
  }
  writer.close();
}

enum class Mode { sock, streams, streams_into };

corio::Coro<void> serve_streams(std::uint16_t port, Mode mode) {
  corio::Server server = co_await corio::start_server(
      mode == Mode::streams ? echo_stream : echo_stream_into, "127.0.0.1", port);
  co_await server.serve_forever();
}

corio::Coro<void> amain(std::uint16_t port, Mode mode) {
  corio::Future<> stop = corio::get_running_loop().create_future();
  for (int sig : {SIGTERM, SIGINT}) {
    corio::add_signal_handler(corio::get_running_loop(), sig, [stop]() mutable {
      if (!stop.done()) stop.set_result();
    });
  }
  corio::Task<void> server =
      corio::create_task(mode == Mode::sock ? serve_sock(port) : serve_streams(port, mode));
  const corio::bench::AllocationScope allocations;
  co_await stop;
  std::fprintf(stderr, "corio_echo: %llu messages, %.3f allocations per message\n",
               static_cast<unsigned long long>(g_messages),
               g_messages
                   ? static_cast<double>(allocations.count()) / static_cast<double>(g_messages)
                   : 0.0);
  server.cancel();
}

}  // namespace

int main(int argc, char** argv) {
  std::uint16_t port = 9000;
  Mode mode = Mode::sock;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--port") == 0 && i + 1 < argc)
      port = static_cast<std::uint16_t>(std::atoi(argv[++i]));
    else if (std::strcmp(argv[i], "--mode") == 0 && i + 1 < argc) {
      const char* name = argv[++i];
      if (std::strcmp(name, "sock") == 0) {
        mode = Mode::sock;
      } else if (std::strcmp(name, "streams") == 0) {
        mode = Mode::streams;
      } else if (std::strcmp(name, "streams-into") == 0) {
        mode = Mode::streams_into;
      } else {
        std::fprintf(stderr, "corio_echo: unknown --mode %s (sock, streams, streams-into)\n", name);
        return 2;
      }
    }
  }
  corio::run(amain(port, mode));
}
