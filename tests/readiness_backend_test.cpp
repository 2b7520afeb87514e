// Tests of what only the readiness backends (epoll, kqueue: backends/posix) promise beyond
// the conformance suite, where a completion backend keeps its own reference to the file and
// behaves otherwise: operations waiting on a descriptor closed behind the backend's back end
// when accept() hands out that number again.
// On other backends it compiles to one skipped test; it must never run there.
#include <gtest/gtest.h>

#include "corio/config.hpp"

#if defined(CORIO_BACKEND_READINESS)

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <string>

namespace corio {
namespace {

using core::OpCode;
using core::Operation;
using core::OpState;

struct CountedOp : Operation {
  int completions = 0;
  CountedOp(OpCode op_code, int fd) {
    code = op_code;
    handle = fd;
    on_complete = [](Operation* op) { ++static_cast<CountedOp*>(op)->completions; };
  }
};

// A recv waits on one end of a socket pair; the program closes that end itself (not through
// the backend), and the next accept() gets the same number. The recv waited on a file that
// is gone: it must end (EBADF), not stay linked to the new socket's queue, where it would
// never complete and where cancelling it would unlink it from someone else's queue.
TEST(ReadinessBackend, AnAcceptReusingAClosedNumberEndsWhatWaitedOnTheOldFile) {
  SelectedBackend backend;
  int pair[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, pair), 0);
  char byte = 0;
  CountedOp stale(OpCode::recv, pair[0]);
  stale.buffer = &byte;
  stale.length = 1;
  ASSERT_FALSE(backend.start(stale));
  backend.wait(0);  // registered with the kernel, whichever way the backend does it

  const int listener = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  ASSERT_GE(listener, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof address;
  ASSERT_EQ(::bind(listener, reinterpret_cast<sockaddr*>(&address), length), 0);
  ASSERT_EQ(::listen(listener, 4), 0);
  ASSERT_EQ(::getsockname(listener, reinterpret_cast<sockaddr*>(&address), &length), 0);
  const int client = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(client, 0);
  ASSERT_EQ(::connect(client, reinterpret_cast<sockaddr*>(&address), length), 0);

  const int number = pair[0];
  ::close(pair[0]);  // behind the backend's back
  CountedOp accept(OpCode::accept, listener);
  if (!backend.start(accept)) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (accept.completions == 0 && std::chrono::steady_clock::now() < deadline)
      backend.wait(10'000'000);
  }
  ASSERT_EQ(accept.result, number);  // the lowest free number: the one just closed

  EXPECT_EQ(stale.completions, 1);
  EXPECT_EQ(stale.result, -EBADF);
  EXPECT_EQ(stale.state, OpState::completed);
  EXPECT_EQ(backend.in_flight(), 0u);
  backend.cancel(stale);  // already over: changes nothing
  EXPECT_EQ(stale.completions, 1);

  // The new socket behind the number works, through the backend.
  ASSERT_EQ(::send(client, "hi", 2, 0), 2);
  char got[4] = {};
  CountedOp fresh(OpCode::recv, number);
  fresh.buffer = got;
  fresh.length = sizeof got;
  if (!backend.start(fresh)) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (fresh.completions == 0 && std::chrono::steady_clock::now() < deadline)
      backend.wait(10'000'000);
  }
  EXPECT_EQ(fresh.result, 2);
  EXPECT_EQ(std::string(got, 2), "hi");
  backend.close(number);
  ::close(client);
  ::close(listener);
  ::close(pair[1]);
}

}  // namespace
}  // namespace corio

#else

TEST(ReadinessBackend, OnlyBuiltWithAReadinessBackend) {
  GTEST_SKIP() << "this build uses the " << CORIO_BACKEND_NAME << " backend";
}

#endif
