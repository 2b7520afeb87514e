// Tests of what only the kqueue backend does beyond the conformance suite: registrations
// queue up and reach the kernel with the next wait, so a wait must cope with more of them
// than its event list holds, and a registration the kernel refuses must end the operations
// waiting on it (with the kernel's error) instead of leaving them waiting forever.
// On other backends it compiles to one skipped test; it must never run kqueue code there.
#include <gtest/gtest.h>

#include "corio/config.hpp"

#if defined(CORIO_BACKEND_KQUEUE)

#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <functional>
#include <utility>
#include <vector>

#include "corio/backends/kqueue_backend.hpp"

namespace corio {
namespace {

using backends::KqueueBackend;
using core::Nanos;
using core::OpCode;
using core::Operation;

constexpr Nanos kMs = 1'000'000;

struct CountedOp : Operation {
  int completions = 0;
  CountedOp(OpCode op_code, int fd, void* into = nullptr, std::size_t size = 0) {
    code = op_code;
    handle = fd;
    buffer = into;
    length = size;
    on_complete = [](Operation* op) { ++static_cast<CountedOp*>(op)->completions; };
  }
};

bool run_until(KqueueBackend& backend, const std::function<bool()>& done) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (!done()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    backend.wait(10 * kMs);
  }
  return true;
}

// 600 descriptors start waiting before the loop waits once: more registrations than the
// 256 events one wait collects, so the change list must grow. Half of the descriptors are
// closed behind the backend's back first, so 300 registrations fail, and the kernel reports a
// failed change in the event list only when there is room (it fails the whole call when there
// is not): the event list must grow with the change list.
TEST(KqueueBackend, MoreDescriptorsStartWaitingThanOneWaitCollects) {
  constexpr int kPairs = 600;
  KqueueBackend backend;
  std::vector<int> ours, theirs;
  std::vector<char> bytes(kPairs, 0);
  std::vector<CountedOp> ops;
  ops.reserve(kPairs);
  for (int i = 0; i < kPairs; ++i) {
    int sv[2];
    ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
    ours.push_back(sv[0]);
    theirs.push_back(sv[1]);
    ops.emplace_back(OpCode::recv, sv[0], &bytes[static_cast<std::size_t>(i)], 1);
    ASSERT_FALSE(backend.start(ops.back()));  // nothing to read yet: it waits
  }
  EXPECT_EQ(backend.in_flight(), static_cast<std::size_t>(kPairs));
  for (int i = 1; i < kPairs; i += 2) ::close(std::exchange(ours[static_cast<std::size_t>(i)], -1));
  backend.wait(0);  // hands the kernel all 600 registrations
  for (int i = 0; i < kPairs; i += 2) {
    const char c = static_cast<char>('a' + i % 26);
    ASSERT_EQ(::write(theirs[static_cast<std::size_t>(i)], &c, 1), 1);
  }
  EXPECT_TRUE(run_until(backend, [&] { return backend.in_flight() == 0; }));
  for (int i = 0; i < kPairs; ++i) {
    const auto index = static_cast<std::size_t>(i);
    EXPECT_EQ(ops[index].completions, 1);
    if (i % 2 == 0) {
      EXPECT_EQ(ops[index].result, 1);
      EXPECT_EQ(bytes[index], static_cast<char>('a' + i % 26));
    } else {
      EXPECT_EQ(ops[index].result, -EBADF);
    }
  }
  for (int fd : ours)
    if (fd >= 0) backend.close(fd);
  for (int fd : theirs) ::close(fd);
}

// A descriptor closed behind the backend's back after its operation started waiting, but
// before the wait that registers it: the kernel refuses the registration (EBADF), and the
// waiting operation ends with that error rather than never.
TEST(KqueueBackend, ARefusedRegistrationEndsTheWaitingOperationWithTheKernelsError) {
  KqueueBackend backend;
  int sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
  char byte = 0;
  CountedOp op(OpCode::recv, sv[0], &byte, 1);
  ASSERT_FALSE(backend.start(op));
  const int number = sv[0];
  ::close(sv[0]);
  EXPECT_TRUE(run_until(backend, [&] { return op.completions > 0; }));
  EXPECT_EQ(op.completions, 1);
  EXPECT_EQ(op.result, -EBADF);
  EXPECT_EQ(backend.in_flight(), 0u);

  // The refusal is not remembered as a registration: the next descriptor with that number
  // registers afresh and its data is seen.
  int again[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, again), 0);
  ASSERT_EQ(again[0], number);  // the lowest free number: the one just closed
  CountedOp next(OpCode::recv, again[0], &byte, 1);
  ASSERT_FALSE(backend.start(next));
  backend.wait(0);
  ASSERT_EQ(::write(again[1], "k", 1), 1);
  EXPECT_TRUE(run_until(backend, [&] { return next.completions > 0; }));
  EXPECT_EQ(next.result, 1);
  EXPECT_EQ(byte, 'k');
  backend.close(again[0]);
  ::close(again[1]);
  ::close(sv[1]);
}

}  // namespace
}  // namespace corio

#else

TEST(KqueueBackend, OnlyBuiltWithTheKqueueBackend) {
  GTEST_SKIP() << "this build uses the " << CORIO_BACKEND_NAME << " backend";
}

#endif
