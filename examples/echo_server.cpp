// echo_server: the asyncio streams documentation's TCP echo server, echoing every message
// until the client closes (not just the first one), over TCP or a Unix socket.
//
//   echo_server [--host 127.0.0.1] [--port 8888] [--unix PATH] [--quiet]
//
// Prints "Serving on ..." and, unless --quiet, one line per message received. Runs until
// interrupted (Ctrl-C).
#include <corio/async_context.hpp>
#include <corio/runner.hpp>
#include <corio/server.hpp>
#include <corio/streams.hpp>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

namespace {

struct Config {
  std::string host = "127.0.0.1";
  std::uint16_t port = 8888;
  std::string unix_path;
  bool quiet = false;
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
    } else if (arg == "--unix" && has_value) {
      config.unix_path = argv[++i];
    } else if (arg == "--quiet" || arg == "-q") {
      config.quiet = true;
    } else {
      std::fprintf(stderr, "usage: %s [--host H] [--port P] [--unix PATH] [--quiet]\n", argv[0]);
      std::exit(2);
    }
  }
  return config;
}

bool g_quiet = false;

corio::Coro<void> handle_echo(corio::StreamReader reader, corio::StreamWriter writer) {
  const std::string peer = writer.peername() ? corio::format_address(*writer.peername()) : "?";
  for (;;) {
    std::string data = co_await reader.read(64 * 1024);
    if (data.empty()) break;
    if (!g_quiet) {
      std::printf("Received %zu bytes '%.60s' from %s\n", data.size(), data.c_str(), peer.c_str());
      std::fflush(stdout);  // the log is read live, also through a pipe
    }
    writer.write(data);
    co_await writer.drain();
  }
  if (!g_quiet) {
    std::printf("Close the connection to %s\n", peer.c_str());
    std::fflush(stdout);
  }
  writer.close();
  co_await writer.wait_closed();
}

corio::Coro<void> amain(Config config) {
  corio::Server server;
  if (config.unix_path.empty()) {
    server = co_await corio::start_server(handle_echo, config.host, config.port);
  } else {
    server = co_await corio::start_unix_server(handle_echo, config.unix_path);
  }
  std::string addresses;
  for (const corio::SocketAddress& a : server.addresses()) {
    addresses += (addresses.empty() ? "" : ", ") + corio::format_address(a);
  }
  std::printf("Serving on %s\n", addresses.c_str());
  std::fflush(stdout);
  co_await corio::async_with(server, [](corio::Server& s) { return s.serve_forever(); });
}

}  // namespace

int main(int argc, char** argv) {
  Config config = parse(argc, argv);
  g_quiet = config.quiet;
  try {
    corio::run(amain(config));
  } catch (const corio::KeyboardInterrupt&) {
    std::printf("\nInterrupted\n");
  } catch (const std::exception& e) {
    std::fprintf(stderr, "echo_server: %s\n", e.what());
    return 1;
  }
}
