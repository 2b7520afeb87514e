// Tests of what only the readiness backends (epoll, kqueue: backends/posix) promise beyond
// the conformance suite, where a completion backend keeps its own reference to the file and
// behaves otherwise: operations waiting on a descriptor closed behind the backend's back end
// when accept() hands out that number again; and a wait re-armed after an edge (as every
// add_reader watcher is, after each callback) is answered by one poll() for all such waits
// before the next wait, rather than one poll() each.
// On other backends it compiles to one skipped test; it must never run there.
#include <gtest/gtest.h>

#include "corio/config.hpp"

#if defined(CORIO_BACKEND_READINESS)

#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

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

constexpr core::Nanos kLongWait = 5'000'000'000;  // far longer than any answer here takes
// A wait that had something to answer returned without sleeping out kLongWait.
constexpr auto kDidNotSleep = std::chrono::milliseconds(2500);

struct SocketPair {
  int fds[2] = {-1, -1};
  SocketPair() {
    EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds), 0);
  }
  SocketPair(const SocketPair&) = delete;
  SocketPair& operator=(const SocketPair&) = delete;
  ~SocketPair() {
    for (int fd : fds)
      if (fd >= 0) ::close(fd);
  }
  int ours() const { return fds[0]; }
  int peer() const { return fds[1]; }
};

// Waits (in slices) until op has completed; false after 10 s.
bool settle(SelectedBackend& backend, const CountedOp& op) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (op.completions == 0 && std::chrono::steady_clock::now() < deadline)
    backend.wait(10'000'000);
  return op.completions == 1;
}

// Leaves fd's readiness flag for `wait` (wait_readable or wait_writable) set the way a
// watcher finds it after its callback: a wait that an edge answered.
void see_edge(SelectedBackend& backend, int fd, OpCode wait) {
  CountedOp watcher(wait, fd);
  if (!backend.start(watcher)) {
    ASSERT_TRUE(settle(backend, watcher));
  }
}

// What a reader's callback does: `peer` sends `sent`, the readable edge is seen, and the
// owner reads `taken` bytes of it with its own recv (all of them drains the socket).
void see_edge_then_read(SelectedBackend& backend, int fd, int peer, std::string_view sent,
                        std::size_t taken) {
  ASSERT_EQ(::send(peer, sent.data(), sent.size(), 0), static_cast<ssize_t>(sent.size()));
  see_edge(backend, fd, OpCode::wait_readable);
  if (taken == 0) return;
  char got[16];
  ASSERT_EQ(::recv(fd, got, taken, 0), static_cast<ssize_t>(taken));
}

// The owner read everything itself after the edge: a re-armed wait must not take the old
// edge for readiness, and must complete when new data comes.
TEST(ReadinessBackend, AWaitReArmedAfterItsOwnerDrainedWaitsForTheNextEdge) {
  SelectedBackend backend;
  SocketPair pair;
  see_edge_then_read(backend, pair.ours(), pair.peer(), "ab", 2);

  CountedOp rearmed(OpCode::wait_readable, pair.ours());
  ASSERT_FALSE(backend.start(rearmed));
  EXPECT_EQ(backend.wait(0), 0u);
  EXPECT_EQ(backend.wait(1'000'000), 0u);
  EXPECT_EQ(rearmed.completions, 0);
  EXPECT_EQ(backend.in_flight(), 1u);

  ASSERT_EQ(::send(pair.peer(), "c", 1, 0), 1);
  ASSERT_TRUE(settle(backend, rearmed));
  EXPECT_EQ(rearmed.result, 0);
  char got[8];
  EXPECT_EQ(::recv(pair.ours(), got, sizeof got, 0), 1);  // waiting consumed nothing
}

// The owner left data behind, so no new edge will come: the next wait must answer the
// re-armed wait itself, without sleeping for its timeout.
TEST(ReadinessBackend, AWaitReArmedWithDataLeftCompletesInTheNextWait) {
  SelectedBackend backend;
  SocketPair pair;
  see_edge_then_read(backend, pair.ours(), pair.peer(), "abcd", 1);

  CountedOp rearmed(OpCode::wait_readable, pair.ours());
  ASSERT_FALSE(backend.start(rearmed));  // answered with the others before the next wait
  const auto started = std::chrono::steady_clock::now();
  EXPECT_EQ(backend.wait(kLongWait), 1u);
  EXPECT_LT(std::chrono::steady_clock::now() - started, kDidNotSleep);
  EXPECT_EQ(rearmed.completions, 1);
  EXPECT_EQ(rearmed.result, 0);
  char got[8];
  EXPECT_EQ(::recv(pair.ours(), got, sizeof got, 0), 3);
}

// Many watchers re-armed in one iteration, some over data left behind and some drained: one
// wait answers exactly the first kind, and the others still see their next edge.
TEST(ReadinessBackend, ManyReArmedWaitsAreAnsweredTogether) {
  SelectedBackend backend;
  constexpr int kPairs = 40;
  std::vector<SocketPair> pairs(kPairs);
  for (int i = 0; i < kPairs; ++i)
    see_edge_then_read(backend, pairs[i].ours(), pairs[i].peer(), "xy", i % 2 == 0 ? 2 : 1);

  std::vector<CountedOp> rearmed;
  rearmed.reserve(kPairs);
  for (SocketPair& pair : pairs) rearmed.emplace_back(OpCode::wait_readable, pair.ours());
  int inline_done = 0;
  for (CountedOp& op : rearmed) inline_done += backend.start(op) ? 1 : 0;
  EXPECT_EQ(inline_done, 0);
  const auto started = std::chrono::steady_clock::now();
  EXPECT_EQ(backend.wait(kLongWait), static_cast<std::size_t>(kPairs / 2));
  EXPECT_LT(std::chrono::steady_clock::now() - started, kDidNotSleep);
  for (int i = 0; i < kPairs; ++i) EXPECT_EQ(rearmed[i].completions, i % 2) << "pair " << i;
  EXPECT_EQ(backend.wait(0), 0u);

  for (int i = 0; i < kPairs; i += 2) ASSERT_EQ(::send(pairs[i].peer(), "z", 1, 0), 1);
  for (int i = 0; i < kPairs; i += 2) EXPECT_TRUE(settle(backend, rearmed[i])) << "pair " << i;
  EXPECT_EQ(backend.in_flight(), 0u);
}

// The same for writers: a writable edge seen, then the owner filled the send buffer.
TEST(ReadinessBackend, AWritableWaitReArmedOverAFullBufferWaitsForRoom) {
  SelectedBackend backend;
  SocketPair pair;
  see_edge(backend, pair.ours(), OpCode::wait_writable);
  std::vector<char> chunk(65536, 'x');
  while (::send(pair.ours(), chunk.data(), chunk.size(), 0) > 0) {
  }

  CountedOp rearmed(OpCode::wait_writable, pair.ours());
  ASSERT_FALSE(backend.start(rearmed));
  EXPECT_EQ(backend.wait(0), 0u);
  EXPECT_EQ(rearmed.completions, 0);
  while (::recv(pair.peer(), chunk.data(), chunk.size(), 0) > 0) {
  }
  ASSERT_TRUE(settle(backend, rearmed));
  EXPECT_EQ(rearmed.result, 0);
}

// Closing a descriptor whose re-armed wait is still to be checked cancels that wait once; a
// new file given the same number inherits nothing of it.
TEST(ReadinessBackend, ClosingADescriptorWithAWaitToRecheckCancelsItOnce) {
  SelectedBackend backend;
  auto pair = std::make_unique<SocketPair>();
  see_edge_then_read(backend, pair->ours(), pair->peer(), "ab", 0);

  const int number = pair->ours();
  CountedOp rearmed(OpCode::wait_readable, number);
  ASSERT_FALSE(backend.start(rearmed));
  SocketPair reused;  // opened first, so it cannot take the number that is closed next
  backend.close(number);
  pair->fds[0] = -1;
  EXPECT_EQ(rearmed.completions, 1);
  EXPECT_EQ(rearmed.result, -ECANCELED);
  EXPECT_EQ(rearmed.state, OpState::cancelled);

  ASSERT_EQ(::dup2(reused.ours(), number), number);  // a new file behind the same number
  ::close(reused.fds[0]);
  reused.fds[0] = number;
  CountedOp fresh(OpCode::wait_readable, number);
  ASSERT_FALSE(backend.start(fresh));
  EXPECT_EQ(backend.wait(1'000'000), 0u);
  EXPECT_EQ(rearmed.completions, 1);
  EXPECT_EQ(fresh.completions, 0);
  ASSERT_EQ(::send(reused.peer(), "c", 1, 0), 1);
  EXPECT_TRUE(settle(backend, fresh));
  backend.close(number);
  reused.fds[0] = -1;
}

// A re-armed wait and a fresh edge for the same descriptor in one wait(): it completes once,
// and a recv queued behind it gets the data.
TEST(ReadinessBackend, ARecheckAndAnEdgeInOneWaitCompleteTheWaitOnce) {
  SelectedBackend backend;
  SocketPair pair;
  see_edge_then_read(backend, pair.ours(), pair.peer(), "ab", 2);

  CountedOp rearmed(OpCode::wait_readable, pair.ours());
  ASSERT_FALSE(backend.start(rearmed));
  char into[8] = {};
  CountedOp recv(OpCode::recv, pair.ours());
  recv.buffer = into;
  recv.length = sizeof into;
  ASSERT_FALSE(backend.start(recv));              // queued behind the wait, in order
  ASSERT_EQ(::send(pair.peer(), "cd", 2, 0), 2);  // readable for the recheck and a new edge
  ASSERT_TRUE(settle(backend, recv));
  EXPECT_EQ(rearmed.completions, 1);
  EXPECT_EQ(rearmed.result, 0);
  EXPECT_EQ(recv.result, 2);
  EXPECT_EQ(std::string(into, 2), "cd");
  for (int i = 0; i < 3; ++i) backend.wait(1'000'000);
  EXPECT_EQ(rearmed.completions, 1);
  EXPECT_EQ(backend.in_flight(), 0u);
}

// More rechecks than RLIMIT_NOFILE allows in one poll() (a descriptor is there once per
// direction): they are still answered one by one, and only the ready ones complete.
TEST(ReadinessBackend, MoreRechecksThanTheDescriptorLimitAreAnsweredExactly) {
  constexpr int kPairs = 40;
  std::vector<SocketPair> pairs(kPairs);
  SelectedBackend backend;
  int highest = 0;
  for (SocketPair& pair : pairs) highest = std::max({highest, pair.ours(), pair.peer()});
  // Every end of every pair has a drained reader and a writable writer re-armed: 4 entries
  // per pair, over twice the limit set below, which still admits every descriptor open.
  std::vector<CountedOp> readers;
  std::vector<CountedOp> writers;
  readers.reserve(2 * kPairs);
  writers.reserve(2 * kPairs);
  for (SocketPair& pair : pairs) {
    for (int end : pair.fds) {
      see_edge_then_read(backend, end, end == pair.ours() ? pair.peer() : pair.ours(), "x", 1);
      see_edge(backend, end, OpCode::wait_writable);
    }
  }
  rlimit saved{};
  ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &saved), 0);
  rlimit low = saved;
  low.rlim_cur = static_cast<rlim_t>(highest + 8);
  ASSERT_LT(low.rlim_cur, static_cast<rlim_t>(4 * kPairs));
  ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &low), 0);
  for (SocketPair& pair : pairs) {
    for (int end : pair.fds) {
      readers.emplace_back(OpCode::wait_readable, end);
      writers.emplace_back(OpCode::wait_writable, end);
      EXPECT_FALSE(backend.start(readers.back()));
      EXPECT_FALSE(backend.start(writers.back()));
    }
  }
  const std::size_t completed = backend.wait(0);
  ::setrlimit(RLIMIT_NOFILE, &saved);
  EXPECT_EQ(completed, writers.size());
  int readers_done = 0;
  int writers_done = 0;
  for (const CountedOp& op : readers) readers_done += op.completions;
  for (const CountedOp& op : writers) writers_done += op.completions;
  EXPECT_EQ(readers_done, 0);  // drained: a reader answered "ready" here was a spurious wake-up
  EXPECT_EQ(writers_done, static_cast<int>(writers.size()));
  for (CountedOp& op : readers) backend.cancel(op);
}

}  // namespace
}  // namespace corio

#else

TEST(ReadinessBackend, OnlyBuiltWithAReadinessBackend) {
  GTEST_SKIP() << "this build uses the " << CORIO_BACKEND_NAME << " backend";
}

#endif
