// asio_echo.cpp - echo server on standalone asio with C++20 coroutines.
//
// Usage: asio_echo --port N
//
// One io_context, run on the main thread only.  An acceptor coroutine spawns
// one session coroutine per connection; each session reads whatever is
// available (async_read_some) and writes it all back (async_write).  This is
// the idiomatic asio coroutine echo; no custom allocators or tuning beyond
// TCP_NODELAY, which every peer sets.  Runs until killed.
#include <asio.hpp>

#include <sys/resource.h>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>

using asio::awaitable;
using asio::use_awaitable;
using asio::ip::tcp;

namespace {

awaitable<void> session(tcp::socket socket) {
  char data[4096];
  try {
    for (;;) {
      std::size_t n = co_await socket.async_read_some(asio::buffer(data), use_awaitable);
      co_await asio::async_write(socket, asio::buffer(data, n), use_awaitable);
    }
  } catch (const std::exception&) {
    // EOF or reset: the connection is over.
  }
}

awaitable<void> listener(tcp::acceptor acceptor) {
  for (;;) {
    asio::error_code ec;
    tcp::socket socket = co_await acceptor.async_accept(asio::redirect_error(use_awaitable, ec));
    if (ec) continue;  // e.g. EMFILE or an aborted handshake: keep accepting
    socket.set_option(tcp::no_delay(true), ec);
    asio::co_spawn(acceptor.get_executor(), session(std::move(socket)), asio::detached);
  }
}

int parse_port(int argc, char** argv) {
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
    std::exit(2);
  }
  return port;
}

void raise_nofile() {
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
}

}  // namespace

int main(int argc, char** argv) {
  int port = parse_port(argc, argv);
  std::signal(SIGPIPE, SIG_IGN);
  raise_nofile();
  try {
    asio::io_context io(1);
    tcp::acceptor acceptor(io);
    tcp::endpoint ep(tcp::v4(), static_cast<unsigned short>(port));
    acceptor.open(ep.protocol());
    acceptor.set_option(tcp::acceptor::reuse_address(true));
    acceptor.bind(ep);
    acceptor.listen(asio::socket_base::max_listen_connections);
    asio::co_spawn(io, listener(std::move(acceptor)), asio::detached);
    io.run();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "asio_echo: %s\n", e.what());
    return 1;
  }
  return 0;
}
