// Tests of what only the readiness backends (epoll, kqueue: backends/posix) promise beyond
// the conformance suite, where a completion backend keeps its own reference to the file and
// behaves otherwise: operations waiting on a descriptor closed behind the backend's back end
// when accept() hands out that number again; a wait re-armed after an edge (as every
// add_reader watcher is, after each callback) is answered correctly whether its owner drained
// the descriptor or not, on a descriptor first registered by an operation (edge-triggered:
// one poll() answers all such waits before the next wait) or by a watcher (level-triggered
// where the backend offers it); and a level-triggered descriptor nothing waits on does not
// wake every wait.
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

// A loopback TCP listener, for tests that need accept() to hand out a number.
struct Listener {
  int fd = -1;
  sockaddr_in address{};
  Listener() {
    fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t length = sizeof address;
    EXPECT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&address), length), 0);
    EXPECT_EQ(::listen(fd, 4), 0);
    EXPECT_EQ(::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length), 0);
  }
  Listener(const Listener&) = delete;
  Listener& operator=(const Listener&) = delete;
  ~Listener() { ::close(fd); }
  // A blocking client connected to it (the connection waits in the backlog), or -1.
  int connect_client() const {
    const int client = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (client < 0) return -1;
    if (::connect(client, reinterpret_cast<const sockaddr*>(&address), sizeof address) != 0) {
      ::close(client);
      return -1;
    }
    return client;
  }
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

// How a descriptor was first registered with the backend: by an operation with a syscall
// (a recv that found nothing: edge-triggered) or by a watcher's wait op (level-triggered on a
// backend with kLevelWatch, edge-triggered on the others).
enum class FirstUse { operation, watcher };

std::string first_use_name(const testing::TestParamInfo<FirstUse>& info) {
  return info.param == FirstUse::operation ? "RegisteredByAnOperation" : "RegisteredByAWatcher";
}

// Registers fd (which has nothing to read) the FirstUse way.
void register_by(SelectedBackend& backend, int fd, FirstUse use) {
  if (use == FirstUse::watcher) return;  // the test's first wait op registers it
  char byte;
  CountedOp probe(OpCode::recv, fd);
  probe.buffer = &byte;
  probe.length = 1;
  ASSERT_FALSE(backend.start(probe));  // EAGAIN: queued, so the descriptor is watched
  backend.cancel(probe);
  ASSERT_EQ(probe.result, -ECANCELED);
}

class ReArmedWait : public testing::TestWithParam<FirstUse> {};

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
TEST_P(ReArmedWait, AWaitReArmedAfterItsOwnerDrainedWaitsForTheNextEdge) {
  SelectedBackend backend;
  SocketPair pair;
  register_by(backend, pair.ours(), GetParam());
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
TEST_P(ReArmedWait, AWaitReArmedWithDataLeftCompletesInTheNextWait) {
  SelectedBackend backend;
  SocketPair pair;
  register_by(backend, pair.ours(), GetParam());
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
TEST_P(ReArmedWait, ManyReArmedWaitsAreAnsweredTogether) {
  SelectedBackend backend;
  constexpr int kPairs = 40;
  std::vector<SocketPair> pairs(kPairs);
  for (int i = 0; i < kPairs; ++i) {
    register_by(backend, pairs[i].ours(), GetParam());
    see_edge_then_read(backend, pairs[i].ours(), pairs[i].peer(), "xy", i % 2 == 0 ? 2 : 1);
  }

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
TEST_P(ReArmedWait, AWritableWaitReArmedOverAFullBufferWaitsForRoom) {
  SelectedBackend backend;
  SocketPair pair;
  register_by(backend, pair.ours(), GetParam());
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
TEST_P(ReArmedWait, ClosingADescriptorWithAWaitToRecheckCancelsItOnce) {
  SelectedBackend backend;
  auto pair = std::make_unique<SocketPair>();
  register_by(backend, pair->ours(), GetParam());
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
TEST_P(ReArmedWait, ARecheckAndAnEdgeInOneWaitCompleteTheWaitOnce) {
  SelectedBackend backend;
  SocketPair pair;
  register_by(backend, pair.ours(), GetParam());
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
// direction): they are still answered one by one, and only the ready ones complete. Only
// edge-triggered descriptors have rechecks.
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
      register_by(backend, end, FirstUse::operation);
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

// Twenty rounds of what a reader's callback does (data comes, the edge is seen, the owner
// drains the socket, the watcher re-arms), then five more after the peer hung up. Level-
// triggered, no round asks the kernel anything beyond the wait itself: no poll() and no
// change of registration. Edge-triggered, re-arming over the old edge needs a recheck.
TEST_P(ReArmedWait, ReArmingCostsNoSyscallWhenLevelTriggered) {
  SelectedBackend backend;
  SocketPair pair;
  register_by(backend, pair.ours(), GetParam());
  see_edge_then_read(backend, pair.ours(), pair.peer(), "ab", 2);
  const std::uint64_t registrations = backend.registration_changes();
  const std::uint64_t polls = backend.recheck_polls();
  for (int i = 0; i < 20; ++i) see_edge_then_read(backend, pair.ours(), pair.peer(), "xy", 2);
  ::close(pair.fds[1]);  // a hang-up, which epoll reports in both directions
  pair.fds[1] = -1;
  for (int i = 0; i < 5; ++i) see_edge(backend, pair.ours(), OpCode::wait_readable);
  if (SelectedBackend::kLevelWatch && GetParam() == FirstUse::watcher) {
    EXPECT_EQ(backend.recheck_polls(), polls);
    EXPECT_EQ(backend.registration_changes(), registrations);
  } else {
    EXPECT_GE(backend.recheck_polls(), polls + 20);
  }
}

// A reader watcher waits while a writer watcher completes and is not re-armed: turning the
// writer's direction off must leave the reader's on.
TEST_P(ReArmedWait, AWriterLeavingDoesNotStopTheReader) {
  SelectedBackend backend;
  SocketPair pair;
  register_by(backend, pair.ours(), GetParam());
  CountedOp reader(OpCode::wait_readable, pair.ours());
  ASSERT_FALSE(backend.start(reader));
  see_edge(backend, pair.ours(), OpCode::wait_writable);
  for (int i = 0; i < 3; ++i) backend.wait(0);
  EXPECT_EQ(reader.completions, 0);
  ASSERT_EQ(::send(pair.peer(), "a", 1, 0), 1);
  ASSERT_TRUE(settle(backend, reader));
  EXPECT_EQ(reader.result, 0);
}

// A watcher starts waiting and, before any wait, the program closes the descriptor behind
// the backend's back; accept() then hands out the number. Whatever the backend had queued
// for the kernel under that number (kqueue registers with the next wait) belonged to the old
// file and must not reach the new socket, which then works for a recv.
TEST(ReadinessBackend, AnAcceptReusingANumberDropsWhatWasQueuedForTheOldFile) {
  SelectedBackend backend;
  Listener listener;
  auto pair = std::make_unique<SocketPair>();
  const int client = listener.connect_client();  // before the close: it must not take the number
  ASSERT_GE(client, 0);
  const int number = pair->ours();
  CountedOp watcher(OpCode::wait_readable, number);
  ASSERT_FALSE(backend.start(watcher));
  ::close(pair->fds[0]);  // behind the backend's back, before any wait
  pair->fds[0] = -1;
  CountedOp accept(OpCode::accept, listener.fd);
  if (!backend.start(accept)) ASSERT_TRUE(settle(backend, accept));
  ASSERT_EQ(accept.result, number);
  EXPECT_EQ(watcher.completions, 1);
  EXPECT_EQ(watcher.result, -EBADF);

  char into[4] = {};
  CountedOp recv(OpCode::recv, number);
  recv.buffer = into;
  recv.length = sizeof into;
  ASSERT_FALSE(backend.start(recv));
  EXPECT_EQ(backend.wait(0), 0u);
  ASSERT_EQ(::send(client, "hi", 2, 0), 2);
  ASSERT_TRUE(settle(backend, recv));
  EXPECT_EQ(recv.result, 2);
  EXPECT_EQ(std::string(into, 2), "hi");
  backend.close(number);
  ::close(client);
}

INSTANTIATE_TEST_SUITE_P(ReadinessBackend, ReArmedWait,
                         testing::Values(FirstUse::operation, FirstUse::watcher), first_use_name);

// Whether a wait with nothing to do slept out its timeout: a descriptor the backend keeps
// reporting, though nothing waits on it, would end every wait at once.
bool sleeps_out(SelectedBackend& backend) {
  constexpr core::Nanos kTimeout = 100'000'000;
  const auto started = std::chrono::steady_clock::now();
  const std::size_t completed = backend.wait(kTimeout);
  return completed == 0 &&
         std::chrono::steady_clock::now() - started >= std::chrono::milliseconds(80);
}

// A watcher removed after its callback (not re-armed) over data left unread: the descriptor
// stays readable, and nothing waits on it. One wait may see it to learn that; the next
// sleeps. A watcher added again then sees the data already there.
TEST(ReadinessBackend, AReadableDescriptorNothingWaitsOnLetsTheWaitSleep) {
  SelectedBackend backend;
  SocketPair pair;
  see_edge_then_read(backend, pair.ours(), pair.peer(), "abcd", 1);
  backend.wait(0);
  EXPECT_TRUE(sleeps_out(backend));
  EXPECT_TRUE(sleeps_out(backend));

  CountedOp again(OpCode::wait_readable, pair.ours());
  ASSERT_FALSE(backend.start(again));
  ASSERT_TRUE(settle(backend, again));
  EXPECT_EQ(again.result, 0);
  char got[8];
  EXPECT_EQ(::recv(pair.ours(), got, sizeof got, 0), 3);  // waiting consumed nothing
}

// The same for a peer that hung up (reported whatever was asked for) and for a writable
// descriptor (writable nearly always).
TEST(ReadinessBackend, AHungUpDescriptorNothingWaitsOnLetsTheWaitSleep) {
  SelectedBackend backend;
  SocketPair pair;
  ::close(pair.fds[1]);
  pair.fds[1] = -1;
  see_edge(backend, pair.ours(), OpCode::wait_readable);
  backend.wait(0);
  EXPECT_TRUE(sleeps_out(backend));
  EXPECT_TRUE(sleeps_out(backend));
  CountedOp again(OpCode::wait_readable, pair.ours());
  ASSERT_FALSE(backend.start(again));
  ASSERT_TRUE(settle(backend, again));  // at end of file: a read would not block
}

TEST(ReadinessBackend, AWritableDescriptorNothingWaitsOnLetsTheWaitSleep) {
  SelectedBackend backend;
  SocketPair pair;
  see_edge(backend, pair.ours(), OpCode::wait_writable);
  backend.wait(0);
  EXPECT_TRUE(sleeps_out(backend));
  EXPECT_TRUE(sleeps_out(backend));
}

// A watcher removed (cancelled) while it waited, then data arrives: nothing is reported over
// and over, and nothing completes.
TEST(ReadinessBackend, ACancelledWatcherLeavesNothingThatWakesTheWait) {
  SelectedBackend backend;
  SocketPair pair;
  CountedOp watcher(OpCode::wait_readable, pair.ours());
  ASSERT_FALSE(backend.start(watcher));
  backend.cancel(watcher);
  EXPECT_EQ(watcher.result, -ECANCELED);
  ASSERT_EQ(::send(pair.peer(), "a", 1, 0), 1);
  backend.wait(0);
  EXPECT_TRUE(sleeps_out(backend));
  EXPECT_EQ(watcher.completions, 1);
  EXPECT_EQ(backend.in_flight(), 0u);
}

// A descriptor a watcher registered first still serves operations with syscalls: a recv that
// finds data, one queued after a short read emptied the socket, and a recv queued behind a
// watcher, each in order, with no byte lost.
TEST(ReadinessBackend, ADescriptorAWatcherRegisteredServesRecvs) {
  SelectedBackend backend;
  SocketPair pair;
  see_edge_then_read(backend, pair.ours(), pair.peer(), "ab", 0);
  char into[8] = {};
  CountedOp first(OpCode::recv, pair.ours());
  first.buffer = into;
  first.length = sizeof into;
  ASSERT_TRUE(backend.start(first));  // data there: done at once, and short
  EXPECT_EQ(first.result, 2);

  CountedOp second(OpCode::recv, pair.ours());
  second.buffer = into;
  second.length = sizeof into;
  ASSERT_FALSE(backend.start(second));
  EXPECT_EQ(backend.wait(0), 0u);
  ASSERT_EQ(::send(pair.peer(), "cde", 3, 0), 3);
  ASSERT_TRUE(settle(backend, second));
  EXPECT_EQ(second.result, 3);
  EXPECT_EQ(std::string(into, 3), "cde");

  CountedOp watcher(OpCode::wait_readable, pair.ours());
  CountedOp third(OpCode::recv, pair.ours());
  third.buffer = into;
  third.length = sizeof into;
  ASSERT_FALSE(backend.start(watcher));
  ASSERT_FALSE(backend.start(third));
  ASSERT_EQ(::send(pair.peer(), "f", 1, 0), 1);
  ASSERT_TRUE(settle(backend, third));
  EXPECT_EQ(watcher.completions, 1);
  EXPECT_EQ(third.result, 1);
  EXPECT_EQ(into[0], 'f');
  backend.wait(0);
  EXPECT_TRUE(sleeps_out(backend));
  EXPECT_EQ(backend.in_flight(), 0u);
}

// A descriptor let go (release: its owner keeps it open) and then used the other way round:
// first watched by a watcher, then by a recv, then by a watcher again. Each registers afresh
// (kqueue keeps a filter's mode, EV_CLEAR or not, for as long as the filter exists).
TEST(ReadinessBackend, ADescriptorLetGoIsRegisteredAfreshTheOtherWay) {
  SelectedBackend backend;
  SocketPair pair;
  see_edge_then_read(backend, pair.ours(), pair.peer(), "ab", 2);
  backend.release(pair.ours());

  char into[8] = {};
  CountedOp recv(OpCode::recv, pair.ours());
  recv.buffer = into;
  recv.length = sizeof into;
  ASSERT_FALSE(backend.start(recv));
  EXPECT_EQ(backend.wait(0), 0u);
  ASSERT_EQ(::send(pair.peer(), "c", 1, 0), 1);
  ASSERT_TRUE(settle(backend, recv));
  EXPECT_EQ(recv.result, 1);
  EXPECT_EQ(into[0], 'c');
  backend.release(pair.ours());

  CountedOp watcher(OpCode::wait_readable, pair.ours());
  ASSERT_FALSE(backend.start(watcher));
  EXPECT_EQ(backend.wait(0), 0u);
  ASSERT_EQ(::send(pair.peer(), "de", 2, 0), 2);
  ASSERT_TRUE(settle(backend, watcher));
  EXPECT_EQ(watcher.result, 0);
  CountedOp rearmed(OpCode::wait_readable, pair.ours());  // over the data, still unread
  ASSERT_FALSE(backend.start(rearmed));
  ASSERT_TRUE(settle(backend, rearmed));
  EXPECT_EQ(::recv(pair.ours(), into, sizeof into, 0), 2);
  backend.wait(0);
  EXPECT_TRUE(sleeps_out(backend));
}

}  // namespace
}  // namespace corio

#else

TEST(ReadinessBackend, OnlyBuiltWithAReadinessBackend) {
  GTEST_SKIP() << "this build uses the " << CORIO_BACKEND_NAME << " backend";
}

#endif
