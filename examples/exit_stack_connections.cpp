// exit_stack_connections: an AsyncExitStack holding five "connections", each from an
// @asynccontextmanager generator; they are closed last in, first out when the stack's scope
// ends, and, when opening a later one throws, the ones already open are still closed in
// reverse order before the error propagates (contextlib's AsyncExitStack example).
// Usage: exit_stack_connections [fail]   ("fail": connecting the 4th connection raises
// ConnectionRefusedError)
#include <corio/async_context.hpp>  // not in corio.hpp yet
#include <corio/corio.hpp>
#include <corio/exit_stack.hpp>

#include <cerrno>
#include <cstdio>
#include <exception>
#include <string>
#include <vector>

namespace {

int fail_at = 0;  // the connection whose connect raises; 0: none

struct Connection {
  int id;
};

// @asynccontextmanager
// async def get_connection(i):
//     conn = await connect(i)
//     try: yield conn
//     finally: await conn.close()
corio::AsyncGenerator<Connection*> get_connection(int i) {
  std::printf("opening connection %d\n", i);
  co_await corio::sleep(0.1);  // the handshake
  if (i == fail_at)
    throw corio::ConnectionRefusedError(ECONNREFUSED, "connection " + std::to_string(i));
  Connection conn{i};
  std::printf("connection %d open\n", i);
  std::exception_ptr error;
  try {
    co_yield &conn;
  } catch (...) {  // C++ has no `finally`, and no co_await in a handler: close below
    error = std::current_exception();
  }
  co_await corio::sleep(0.1);  // the goodbye
  std::printf("closing connection %d\n", conn.id);
  if (error) std::rethrow_exception(error);
}

corio::Coro<void> amain() {
  corio::EventLoop& loop = corio::get_running_loop();
  const double start = loop.time();
  try {
    co_await corio::async_with(
        corio::AsyncExitStack(), [&](corio::AsyncExitStack& stack) -> corio::Coro<void> {
          // Registered first, so it runs last; it sees the exception that is unwinding, if any.
          stack.push_async_exit([](std::exception_ptr error) -> corio::Coro<bool> {
            std::printf("exit callback: %s\n", error ? "an error is propagating" : "no error");
            co_return false;  // do not suppress
          });
          std::vector<Connection*> connections;
          for (int i = 1; i <= 5; ++i) {
            connections.push_back(
                co_await stack.enter_async_context(corio::asynccontextmanager(get_connection(i))));
          }
          std::printf("using %zu connections\n", connections.size());
          co_await corio::sleep(1);
          // All opened connections will automatically be released at the end of the scope, even if
          // attempts to open a connection later in the list raise an exception.
        });
    std::printf("all connections closed\n");
  } catch (const corio::ConnectionRefusedError& e) {
    std::printf("ConnectionRefusedError: %s\n", e.what());
  }
  std::printf("elapsed %0.2f seconds\n", loop.time() - start);
}

}  // namespace

int main(int argc, char** argv) {
  const std::string mode = argc > 1 ? argv[1] : "";
  if (mode == "fail") {
    fail_at = 4;
  } else if (!mode.empty()) {
    std::fprintf(stderr, "usage: %s [fail]\n", argv[0]);
    return 2;
  }
  corio::Runner runner;
  runner.run(amain());
}
