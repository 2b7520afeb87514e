// echo_client: the asyncio streams documentation's TCP echo client.
//
//   echo_client [--host 127.0.0.1] [--port 8888] [--unix PATH] [--repeat N] [message]
//
// Sends the message (default "Hello World!"), prints what comes back, closes. With
// --repeat N it does N round trips on one connection and prints the round-trip rate.
#include <corio/runner.hpp>
#include <corio/streams.hpp>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>

namespace {

struct Config {
  std::string host = "127.0.0.1";
  std::uint16_t port = 8888;
  std::string unix_path;
  long repeat = 1;
  std::string message = "Hello World!";
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
    } else if (arg == "--repeat" && has_value) {
      config.repeat = std::max(1L, std::atol(argv[++i]));
    } else if (!arg.empty() && arg[0] != '-') {
      config.message = arg;
    } else {
      std::fprintf(stderr, "usage: %s [--host H] [--port P] [--unix PATH] [--repeat N] [message]\n",
                   argv[0]);
      std::exit(2);
    }
  }
  return config;
}

corio::Coro<void> tcp_echo_client(Config config) {
  corio::StreamPair streams;
  if (config.unix_path.empty()) {
    streams = co_await corio::open_connection(config.host, config.port);
  } else {
    streams = co_await corio::open_unix_connection(config.unix_path);
  }
  auto& [reader, writer] = streams;
  const bool verbose = config.repeat == 1;
  const auto start = std::chrono::steady_clock::now();
  for (long i = 0; i < config.repeat; ++i) {
    if (verbose) std::printf("Send: '%s'\n", config.message.c_str());
    writer.write(config.message);
    co_await writer.drain();
    std::string data =
        co_await reader.readexactly(static_cast<std::ptrdiff_t>(config.message.size()));
    if (verbose) std::printf("Received: '%s'\n", data.c_str());
  }
  if (!verbose) {
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::printf("%ld round trips in %.3f s (%.0f/s)\n", config.repeat, seconds,
                config.repeat / seconds);
  }
  std::printf("Close the connection\n");
  writer.close();
  co_await writer.wait_closed();
}

}  // namespace

int main(int argc, char** argv) {
  try {
    corio::run(tcp_echo_client(parse(argc, argv)));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "echo_client: %s\n", e.what());
    return 1;
  }
}
