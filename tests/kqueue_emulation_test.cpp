// Tests of the Linux emulation of BSD kqueue (backends/kqueue/emulation), the epoll-based
// stand-in that lets the kqueue backend run its suites on Linux: EVFILT_READ (bytes ready,
// level and EV_CLEAR, EV_EOF), EVFILT_WRITE, EV_ONESHOT, EV_DISPATCH, EV_ENABLE/EV_DISABLE,
// EV_ERROR entries (and -1/errno without room), EV_RECEIPT, what it refuses with EINVAL
// (EVFILT_TIMER and the other filters it does not emulate, fflags on READ/WRITE, knotes of one
// descriptor that disagree on EV_CLEAR), EVFILT_USER (NOTE_TRIGGER across threads,
// NOTE_FFOR/FFAND/FFCOPY), timeouts (also on kernels without epoll_pwait2), EINTR, an event
// list too small for what is ready, descriptor and kqueue numbers reused after close(), and
// waits, triggers and changes racing on one kqueue.
// Outside the kqueue build on Linux it compiles to one skipped test; it must never run there
// (a real BSD kqueue must not be held to the emulation's documented deviations).
#include <gtest/gtest.h>

#include "corio/config.hpp"

#if defined(CORIO_BACKEND_KQUEUE_EMULATED)

#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sys/event.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <ctime>
#include <initializer_list>
#include <thread>
#include <vector>

namespace corio {
namespace {

// `kevent` alone names the function.
using KEvent = struct kevent;

constexpr timespec kZero{0, 0};
// For waits that return as soon as something is ready: never what a test waits out.
constexpr timespec kPatience{10, 0};

// Owns a descriptor, so that a failed assertion leaks none.
class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() { reset(); }

  int get() const { return fd_; }
  std::uintptr_t ident() const { return static_cast<std::uintptr_t>(fd_); }
  void reset(int fd = -1) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = fd;
  }

 private:
  int fd_ = -1;
};

// A connected pair of non-blocking Unix stream sockets.
struct SocketPair {
  Fd ours;
  Fd theirs;
  SocketPair() {
    int sv[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) == 0) {
      ours.reset(sv[0]);
      theirs.reset(sv[1]);
    }
  }
  bool ok() const { return ours.get() >= 0 && theirs.get() >= 0; }
};

// One change, no event list: 0, or -1 with errno.
int change(int kq, std::uintptr_t ident, short filter, unsigned short flags,
           unsigned int fflags = 0, void* udata = nullptr) {
  KEvent kev;
  EV_SET(&kev, ident, filter, flags, fflags, 0, udata);
  return kevent(kq, &kev, 1, nullptr, 0, nullptr);
}

// Collects what is ready now, without waiting.
int poll_events(int kq, KEvent* out, int n, const timespec* timeout = &kZero) {
  return kevent(kq, nullptr, 0, out, n, timeout);
}

void drain(int fd) {
  char buf[4096];
  while (::read(fd, buf, sizeof buf) > 0) {
  }
}

// Gives `at`'s number to `fresh`'s first end (which `at` then holds), closing the file that
// had it: dup2 closes and reuses the number at once, so nothing else can take it in between,
// and the number is certainly reused (not merely the lowest free one, as close() would leave).
bool reuse_number(Fd& at, SocketPair& fresh) {
  if (!fresh.ok() || ::dup2(fresh.ours.get(), at.get()) != at.get()) return false;
  fresh.ours.reset();
  return true;
}

// The system call thread `tid` of this process sleeps in, or -1 (running, or not known).
long blocked_syscall(pid_t tid) {
  char path[64];
  std::snprintf(path, sizeof path, "/proc/self/task/%d/syscall", static_cast<int>(tid));
  std::FILE* file = std::fopen(path, "re");
  if (file == nullptr) return -1;
  long number = -1;
  if (std::fscanf(file, "%ld", &number) != 1) number = -1;  // "running"
  std::fclose(file);
  return number;
}

bool in_epoll_wait(long number) {
  return number == SYS_epoll_wait || number == SYS_epoll_pwait || number == SYS_epoll_pwait2;
}

// The handshake of the blocking tests: true once thread `tid` (0 until it is known) sleeps in
// an epoll wait, from where only an event or a signal gets it out; false after 10 s.
bool wait_until_blocked_in_epoll(const std::atomic<pid_t>& tid) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (std::chrono::steady_clock::now() < deadline) {
    const pid_t t = tid.load();
    if (t != 0 && in_epoll_wait(blocked_syscall(t))) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));  // polling, not synchronising
  }
  return false;
}

// True once `done` holds; false after 10 s.
template <typename Done>
bool wait_until(Done done) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (!done()) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return true;
}

void ignore_signal(int) {}

// While it lives, SIGUSR1 runs a handler that does nothing: the signal ends a blocked wait
// (EINTR) and not the process. The previous disposition comes back after.
class InterruptingSignal {
 public:
  InterruptingSignal() {
    struct sigaction action {};
    action.sa_handler = ignore_signal;
    sigemptyset(&action.sa_mask);
    installed_ = ::sigaction(SIGUSR1, &action, &previous_) == 0;
  }
  InterruptingSignal(const InterruptingSignal&) = delete;
  InterruptingSignal& operator=(const InterruptingSignal&) = delete;
  ~InterruptingSignal() {
    if (installed_) ::sigaction(SIGUSR1, &previous_, nullptr);
  }
  bool installed() const { return installed_; }

 private:
  struct sigaction previous_ {};
  bool installed_ = false;
};

// --- EVFILT_READ / EVFILT_WRITE -----------------------------------------------------------

TEST(KqueueEmulation, ReadFilterReportsTheBytesReadyWithItsUdataAndNoActionFlags) {
  Fd kq(kqueue());
  ASSERT_GE(kq.get(), 0);
  SocketPair sp;
  ASSERT_TRUE(sp.ok());
  int tag = 0;
  ASSERT_EQ(change(kq.get(), sp.ours.ident(), EVFILT_READ, EV_ADD, 0, &tag), 0);
  KEvent ev[4];
  EXPECT_EQ(poll_events(kq.get(), ev, 4), 0);  // nothing to read yet
  ASSERT_EQ(::write(sp.theirs.get(), "hello", 5), 5);
  ASSERT_EQ(poll_events(kq.get(), ev, 4), 1);
  EXPECT_EQ(ev[0].ident, sp.ours.ident());
  EXPECT_EQ(ev[0].filter, EVFILT_READ);
  EXPECT_EQ(ev[0].data, 5);  // FIONREAD
  EXPECT_EQ(ev[0].udata, &tag);
  EXPECT_EQ(ev[0].flags & EV_EOF, 0);
  EXPECT_EQ(ev[0].flags & EV_ADD, 0);  // FreeBSD strips the actions from returned flags
}

TEST(KqueueEmulation, LevelReadFilterReportsAgainUntilEverythingIsRead) {
  Fd kq(kqueue());
  ASSERT_GE(kq.get(), 0);
  SocketPair sp;
  ASSERT_TRUE(sp.ok());
  ASSERT_EQ(change(kq.get(), sp.ours.ident(), EVFILT_READ, EV_ADD), 0);
  ASSERT_EQ(::write(sp.theirs.get(), "hello", 5), 5);
  KEvent ev[4];
  ASSERT_EQ(poll_events(kq.get(), ev, 4), 1);
  ASSERT_EQ(poll_events(kq.get(), ev, 4), 1);  // still unread: reported again
  EXPECT_EQ(ev[0].data, 5);
  char buf[8];
  ASSERT_EQ(::read(sp.ours.get(), buf, 2), 2);
  ASSERT_EQ(poll_events(kq.get(), ev, 4), 1);
  EXPECT_EQ(ev[0].data, 3);
  drain(sp.ours.get());
  EXPECT_EQ(poll_events(kq.get(), ev, 4), 0);
}

TEST(KqueueEmulation, ClearedReadFilterReportsOnlyNewData) {
  Fd kq(kqueue());
  ASSERT_GE(kq.get(), 0);
  SocketPair sp;
  ASSERT_TRUE(sp.ok());
  ASSERT_EQ(change(kq.get(), sp.ours.ident(), EVFILT_READ, EV_ADD | EV_CLEAR), 0);
  KEvent ev[4];
  ASSERT_EQ(::write(sp.theirs.get(), "abc", 3), 3);
  ASSERT_EQ(poll_events(kq.get(), ev, 4), 1);
  EXPECT_EQ(ev[0].data, 3);
  EXPECT_NE(ev[0].flags & EV_CLEAR, 0);
  EXPECT_EQ(poll_events(kq.get(), ev, 4), 0);  // unread, but not new: not reported again
  ASSERT_EQ(::write(sp.theirs.get(), "d", 1), 1);
  ASSERT_EQ(poll_events(kq.get(), ev, 4), 1);
  EXPECT_EQ(ev[0].data, 4);
  EXPECT_EQ(poll_events(kq.get(), ev, 4), 0);
}

TEST(KqueueEmulation, AddingAClearedKnoteAgainReportsCurrentReadinessAgain) {
  Fd kq(kqueue());
  ASSERT_GE(kq.get(), 0);
  SocketPair sp;
  ASSERT_TRUE(sp.ok());
  ASSERT_EQ(change(kq.get(), sp.ours.ident(), EVFILT_READ, EV_ADD | EV_CLEAR), 0);
  ASSERT_EQ(::write(sp.theirs.get(), "abcd", 4), 4);
  KEvent ev[4];
  ASSERT_EQ(poll_events(kq.get(), ev, 4), 1);
  ASSERT_EQ(poll_events(kq.get(), ev, 4), 0);
  ASSERT_EQ(change(kq.get(), sp.ours.ident(), EVFILT_READ, EV_ADD | EV_CLEAR), 0);
  ASSERT_EQ(poll_events(kq.get(), ev, 4), 1);
  EXPECT_EQ(ev[0].data, 4);
}

// FreeBSD would silently keep the old mode; the emulation refuses, and the knote is unchanged.
TEST(KqueueEmulation, AddingAKnoteAgainWithAnotherClearModeIsEinval) {
  Fd kq(kqueue());
  ASSERT_GE(kq.get(), 0);
  SocketPair sp;
  ASSERT_TRUE(sp.ok());
  ASSERT_EQ(change(kq.get(), sp.ours.ident(), EVFILT_READ, EV_ADD | EV_CLEAR), 0);
  errno = 0;
  EXPECT_EQ(change(kq.get(), sp.ours.ident(), EVFILT_READ, EV_ADD), -1);
  EXPECT_EQ(errno, EINVAL);
  ASSERT_EQ(::write(sp.theirs.get(), "e", 1), 1);
  KEvent ev[4];
  ASSERT_EQ(poll_events(kq.get(), ev, 4), 1);
  EXPECT_NE(ev[0].flags & EV_CLEAR, 0);
  EXPECT_EQ(poll_events(kq.get(), ev, 4), 0);  // still EV_CLEAR
}

TEST(KqueueEmulation, WriteFilterReportsAWritableSocket) {
  Fd kq(kqueue());
  ASSERT_GE(kq.get(), 0);
  SocketPair sp;
  ASSERT_TRUE(sp.ok());
  ASSERT_EQ(change(kq.get(), sp.ours.ident(), EVFILT_WRITE, EV_ADD), 0);
  KEvent ev[4];
  ASSERT_EQ(poll_events(kq.get(), ev, 4), 1);
  EXPECT_EQ(ev[0].ident, sp.ours.ident());
  EXPECT_EQ(ev[0].filter, EVFILT_WRITE);
  EXPECT_EQ(ev[0].flags & EV_EOF, 0);
}

TEST(KqueueEmulation, ReadFilterReportsEofWithTheBytesLeftAfterThePeerShutsDown) {
  Fd kq(kqueue());
  ASSERT_GE(kq.get(), 0);
  SocketPair sp;
  ASSERT_TRUE(sp.ok());
  ASSERT_EQ(change(kq.get(), sp.ours.ident(), EVFILT_READ, EV_ADD), 0);
  ASSERT_EQ(::write(sp.theirs.get(), "xy", 2), 2);
  ASSERT_EQ(::shutdown(sp.theirs.get(), SHUT_WR), 0);
  KEvent ev[4];
  ASSERT_EQ(poll_events(kq.get(), ev, 4), 1);
  EXPECT_NE(ev[0].flags & EV_EOF, 0);
  EXPECT_EQ(ev[0].data, 2);
}

TEST(KqueueEmulation, BothFiltersReportEofWithZeroFflagsWhenThePeerCloses) {
  Fd kq(kqueue());
  ASSERT_GE(kq.get(), 0);
  SocketPair sp;
  ASSERT_TRUE(sp.ok());
  ASSERT_EQ(change(kq.get(), sp.ours.ident(), EVFILT_READ, EV_ADD), 0);
  ASSERT_EQ(change(kq.get(), sp.ours.ident(), EVFILT_WRITE, EV_ADD), 0);
  sp.theirs.reset();
  KEvent ev[4];
  const int n = poll_events(kq.get(), ev, 4);
  ASSERT_EQ(n, 2);
  EXPECT_NE(ev[0].filter, ev[1].filter);  // one read, one write
  for (int i = 0; i < n; ++i) {
    EXPECT_NE(ev[i].flags & EV_EOF, 0) << "filter " << ev[i].filter;
    EXPECT_EQ(ev[i].fflags, 0u) << "filter " << ev[i].filter;  // SO_ERROR is left unread
  }
}

TEST(KqueueEmulation, ClearedReadFilterReportsEofWhenAPipesWriteEndCloses) {
  Fd kq(kqueue());
  ASSERT_GE(kq.get(), 0);
  int p[2];
  ASSERT_EQ(::pipe2(p, O_NONBLOCK | O_CLOEXEC), 0);
  Fd read_end(p[0]);
  Fd write_end(p[1]);
  ASSERT_EQ(change(kq.get(), read_end.ident(), EVFILT_READ, EV_ADD | EV_CLEAR), 0);
  write_end.reset();
  KEvent ev[4];
  ASSERT_EQ(poll_events(kq.get(), ev, 4), 1);
  EXPECT_NE(ev[0].flags & EV_EOF, 0);
  EXPECT_EQ(ev[0].data, 0);
}

TEST(KqueueEmulation, ListeningSocketIsReadableWithDataOneWhenAConnectionWaits) {
  Fd kq(kqueue());
  ASSERT_GE(kq.get(), 0);
  Fd listener(::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  ASSERT_GE(listener.get(), 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);  // port 0: an ephemeral one
  ASSERT_EQ(::bind(listener.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_EQ(::listen(listener.get(), 8), 0);
  socklen_t len = sizeof addr;
  ASSERT_EQ(::getsockname(listener.get(), reinterpret_cast<sockaddr*>(&addr), &len), 0);
  ASSERT_EQ(change(kq.get(), listener.ident(), EVFILT_READ, EV_ADD), 0);
  KEvent ev[2];
  EXPECT_EQ(poll_events(kq.get(), ev, 2), 0);
  Fd client(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  ASSERT_GE(client.get(), 0);
  ASSERT_EQ(::connect(client.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_EQ(poll_events(kq.get(), ev, 2, &kPatience), 1);
  EXPECT_EQ(ev[0].ident, listener.ident());
  EXPECT_EQ(ev[0].filter, EVFILT_READ);
  EXPECT_EQ(ev[0].data, 1);  // FIONREAD does not answer on a listening socket
}

// A bound socket that does not listen holds the port, so the refusal is certain.
TEST(KqueueEmulation, RefusedConnectReportsEofOnTheWriteFilterAndLeavesSoErrorToTheCaller) {
  Fd kq(kqueue());
  ASSERT_GE(kq.get(), 0);
  Fd holder(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  ASSERT_GE(holder.get(), 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(holder.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  socklen_t len = sizeof addr;
  ASSERT_EQ(::getsockname(holder.get(), reinterpret_cast<sockaddr*>(&addr), &len), 0);
  Fd client(::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  ASSERT_GE(client.get(), 0);
  const int r = ::connect(client.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  ASSERT_EQ(r, -1);
  if (errno == ECONNREFUSED) GTEST_SKIP() << "the connect was refused before it could wait";
  ASSERT_EQ(errno, EINPROGRESS);
  ASSERT_EQ(change(kq.get(), client.ident(), EVFILT_WRITE, EV_ADD | EV_ONESHOT), 0);
  KEvent ev[2];
  ASSERT_EQ(poll_events(kq.get(), ev, 2, &kPatience), 1);
  EXPECT_EQ(ev[0].filter, EVFILT_WRITE);
  EXPECT_NE(ev[0].flags & EV_EOF, 0);
  EXPECT_EQ(ev[0].fflags, 0u);
  int err = 0;
  len = sizeof err;
  ASSERT_EQ(::getsockopt(client.get(), SOL_SOCKET, SO_ERROR, &err, &len), 0);
  EXPECT_EQ(err, ECONNREFUSED);
}

// --- EV_ONESHOT, EV_DISPATCH, EV_ENABLE / EV_DISABLE -------------------------------------

TEST(KqueueEmulation, OneshotKnoteIsDeliveredOnceAndThenDeleted) {
  Fd kq(kqueue());
  ASSERT_GE(kq.get(), 0);
  SocketPair sp;
  ASSERT_TRUE(sp.ok());
  ASSERT_EQ(::write(sp.theirs.get(), "a", 1), 1);
  ASSERT_EQ(change(kq.get(), sp.ours.ident(), EVFILT_READ, EV_ADD | EV_ONESHOT), 0);
  KEvent ev[4];
  ASSERT_EQ(poll_events(kq.get(), ev, 4), 1);
  EXPECT_NE(ev[0].flags & EV_ONESHOT, 0);
  EXPECT_EQ(poll_events(kq.get(), ev, 4), 0);  // data still unread
  errno = 0;
  EXPECT_EQ(change(kq.get(), sp.ours.ident(), EVFILT_READ, EV_DELETE), -1);
  EXPECT_EQ(errno, ENOENT);  // gone
}

TEST(KqueueEmulation, DispatchKnoteIsDisabledAfterItsDelivery) {
  Fd kq(kqueue());
  ASSERT_GE(kq.get(), 0);
  SocketPair sp;
  ASSERT_TRUE(sp.ok());
  ASSERT_EQ(::write(sp.theirs.get(), "a", 1), 1);
  ASSERT_EQ(change(kq.get(), sp.ours.ident(), EVFILT_READ, EV_ADD | EV_DISPATCH), 0);
  KEvent ev[4];
  ASSERT_EQ(poll_events(kq.get(), ev, 4), 1);
  EXPECT_NE(ev[0].flags & EV_DISPATCH, 0);
  EXPECT_EQ(poll_events(kq.get(), ev, 4), 0);  // disabled, the data still unread
  EXPECT_EQ(change(kq.get(), sp.ours.ident(), EVFILT_READ, EV_DELETE), 0);  // not deleted
}

// As FreeBSD's kernel does (its man page says otherwise).
TEST(KqueueEmulation, AddDoesNotReEnableADispatchedKnoteButEnableDoes) {
  Fd kq(kqueue());
  ASSERT_GE(kq.get(), 0);
  SocketPair sp;
  ASSERT_TRUE(sp.ok());
  ASSERT_EQ(::write(sp.theirs.get(), "a", 1), 1);
  ASSERT_EQ(change(kq.get(), sp.ours.ident(), EVFILT_READ, EV_ADD | EV_DISPATCH), 0);
  KEvent ev[4];
  ASSERT_EQ(poll_events(kq.get(), ev, 4), 1);
  ASSERT_EQ(poll_events(kq.get(), ev, 4), 0);
  ASSERT_EQ(change(kq.get(), sp.ours.ident(), EVFILT_READ, EV_ADD | EV_DISPATCH), 0);
  EXPECT_EQ(poll_events(kq.get(), ev, 4), 0);
  ASSERT_EQ(change(kq.get(), sp.ours.ident(), EVFILT_READ, EV_ENABLE), 0);
  EXPECT_EQ(poll_events(kq.get(), ev, 4), 1);
  EXPECT_EQ(poll_events(kq.get(), ev, 4), 0);  // dispatched again
  EXPECT_EQ(change(kq.get(), sp.ours.ident(), EVFILT_READ, EV_DELETE), 0);
}

TEST(KqueueEmulation, KnoteAddedDisabledReportsNothingUntilEnabledAndAgainOnceDisabled) {
  Fd kq(kqueue());
  ASSERT_GE(kq.get(), 0);
  SocketPair sp;
  ASSERT_TRUE(sp.ok());
  ASSERT_EQ(::write(sp.theirs.get(), "a", 1), 1);
  ASSERT_EQ(change(kq.get(), sp.ours.ident(), EVFILT_READ, EV_ADD | EV_DISABLE), 0);
  KEvent ev[4];
  EXPECT_EQ(poll_events(kq.get(), ev, 4), 0);
  ASSERT_EQ(change(kq.get(), sp.ours.ident(), EVFILT_READ, EV_ENABLE), 0);
  EXPECT_EQ(poll_events(kq.get(), ev, 4), 1);
  ASSERT_EQ(change(kq.get(), sp.ours.ident(), EVFILT_READ, EV_DISABLE), 0);
  EXPECT_EQ(poll_events(kq.get(), ev, 4), 0);
}

// --- EV_ERROR entries, EV_RECEIPT, refusals ----------------------------------------------

TEST(KqueueEmulation, FailedChangeBecomesAnErrorEntryAndTheLaterChangesStillApply) {
  Fd kq(kqueue());
  ASSERT_GE(kq.get(), 0);
  SocketPair sp;
  ASSERT_TRUE(sp.ok());
  int tag = 0;
  KEvent ch[2];
  KEvent ev[4];
  EV_SET(&ch[0], sp.ours.ident(), EVFILT_READ, EV_DELETE, 0, 0, &tag);  // no such knote
  EV_SET(&ch[1], sp.ours.ident(), EVFILT_WRITE, EV_ADD, 0, 0, nullptr);
  // Only the entry: a call that placed entries collects no events (the socket is writable).
  ASSERT_EQ(kevent(kq.get(), ch, 2, ev, 4, &kZero), 1);
  EXPECT_EQ(ev[0].flags, EV_ERROR);
  EXPECT_EQ(ev[0].data, ENOENT);
  EXPECT_EQ(ev[0].udata, &tag);
  EXPECT_EQ(ev[0].ident, sp.ours.ident());
  EXPECT_EQ(ev[0].filter, EVFILT_READ);
  ASSERT_EQ(poll_events(kq.get(), ev, 4), 1);  // the second change was applied
  EXPECT_EQ(ev[0].filter, EVFILT_WRITE);
}

TEST(KqueueEmulation, FailedChangeWithoutRoomFailsTheCallAfterApplyingTheEarlierChanges) {
  Fd kq(kqueue());
  ASSERT_GE(kq.get(), 0);
  SocketPair sp;
  ASSERT_TRUE(sp.ok());
  ASSERT_EQ(change(kq.get(), sp.ours.ident(), EVFILT_WRITE, EV_ADD), 0);
  KEvent ch[2];
  EV_SET(&ch[0], sp.ours.ident(), EVFILT_WRITE, EV_DELETE, 0, 0, nullptr);
  EV_SET(&ch[1], sp.ours.ident(), EVFILT_READ, EV_DELETE, 0, 0, nullptr);  // no such knote
  errno = 0;
  EXPECT_EQ(kevent(kq.get(), ch, 2, nullptr, 0, nullptr), -1);
  EXPECT_EQ(errno, ENOENT);
  KEvent ev[4];
  EXPECT_EQ(poll_events(kq.get(), ev, 4), 0);  // the write knote was deleted
}

TEST(KqueueEmulation, ReceiptGivesEveryChangeAnEntryAndCollectsNoEvents) {
  Fd kq(kqueue());
  ASSERT_GE(kq.get(), 0);
  SocketPair sp;
  ASSERT_TRUE(sp.ok());
  ASSERT_EQ(::write(sp.theirs.get(), "z", 1), 1);
  int tag = 0;
  KEvent ch[3];
  EV_SET(&ch[0], sp.ours.ident(), EVFILT_READ, EV_ADD | EV_RECEIPT, 0, 0, &tag);
  EV_SET(&ch[1], sp.ours.ident(), EVFILT_WRITE, EV_ADD | EV_RECEIPT, 0, 0, nullptr);
  EV_SET(&ch[2], 12345, EVFILT_USER, EV_DELETE | EV_RECEIPT, 0, 0, nullptr);
  KEvent ev[4];
  ASSERT_EQ(kevent(kq.get(), ch, 3, ev, 4, &kZero), 3);  // readable and writable: no events
  EXPECT_EQ(ev[0].flags, EV_ERROR);
  EXPECT_EQ(ev[0].data, 0);
  EXPECT_EQ(ev[0].udata, &tag);
  EXPECT_EQ(ev[1].flags, EV_ERROR);
  EXPECT_EQ(ev[1].data, 0);
  EXPECT_EQ(ev[2].flags, EV_ERROR);
  EXPECT_EQ(ev[2].data, ENOENT);
  EXPECT_EQ(poll_events(kq.get(), ev, 4), 2);  // both knotes were added
}

TEST(KqueueEmulation, ChangelistMayBeTheEventlist) {
  Fd kq(kqueue());
  ASSERT_GE(kq.get(), 0);
  SocketPair sp;
  ASSERT_TRUE(sp.ok());
  ASSERT_EQ(change(kq.get(), sp.ours.ident(), EVFILT_READ, EV_ADD), 0);
  KEvent ch[2];
  EV_SET(&ch[0], sp.ours.ident(), EVFILT_READ, EV_DELETE | EV_RECEIPT, 0, 0, nullptr);
  EV_SET(&ch[1], sp.ours.ident(), EVFILT_READ, EV_DELETE | EV_RECEIPT, 0, 0, nullptr);
  ASSERT_EQ(kevent(kq.get(), ch, 2, ch, 2, &kZero), 2);
  EXPECT_EQ(ch[0].flags, EV_ERROR);
  EXPECT_EQ(ch[0].data, 0);
  EXPECT_EQ(ch[1].flags, EV_ERROR);
  EXPECT_EQ(ch[1].data, ENOENT);  // the second change was read before entry 1 was written
}

// epoll's EPOLLET is per descriptor, so the emulation cannot mix them.
TEST(KqueueEmulation, KnotesOfOneDescriptorThatDisagreeOnClearAreEinval) {
  Fd kq(kqueue());
  ASSERT_GE(kq.get(), 0);
  SocketPair sp;
  ASSERT_TRUE(sp.ok());
  ASSERT_EQ(change(kq.get(), sp.ours.ident(), EVFILT_WRITE, EV_ADD), 0);
  errno = 0;
  EXPECT_EQ(change(kq.get(), sp.ours.ident(), EVFILT_READ, EV_ADD | EV_CLEAR), -1);
  EXPECT_EQ(errno, EINVAL);
  SocketPair other;
  ASSERT_TRUE(other.ok());
  ASSERT_EQ(change(kq.get(), other.ours.ident(), EVFILT_READ, EV_ADD | EV_CLEAR), 0);
  errno = 0;
  EXPECT_EQ(change(kq.get(), other.ours.ident(), EVFILT_WRITE, EV_ADD), -1);
  EXPECT_EQ(errno, EINVAL);
  KEvent ev[4];
  ASSERT_EQ(poll_events(kq.get(), ev, 4), 1);  // only the first write knote exists
  EXPECT_EQ(ev[0].ident, sp.ours.ident());
  EXPECT_EQ(ev[0].filter, EVFILT_WRITE);
}

TEST(KqueueEmulation, TimerFilterIsEinval) {
  Fd kq(kqueue());
  ASSERT_GE(kq.get(), 0);
  errno = 0;
  EXPECT_EQ(change(kq.get(), 1, EVFILT_TIMER, EV_ADD), -1);
  EXPECT_EQ(errno, EINVAL);
  KEvent ch;
  EV_SET(&ch, 1, EVFILT_TIMER, EV_ADD, 0, 1000, nullptr);
  KEvent ev[4];
  ASSERT_EQ(kevent(kq.get(), &ch, 1, ev, 4, &kZero), 1);
  EXPECT_EQ(ev[0].flags, EV_ERROR);
  EXPECT_EQ(ev[0].data, EINVAL);
}

TEST(KqueueEmulation, OtherFiltersItDoesNotEmulateAreEinval) {
  Fd kq(kqueue());
  ASSERT_GE(kq.get(), 0);
  for (const short filter :
       std::initializer_list<short>{EVFILT_PROC, EVFILT_SIGNAL, EVFILT_VNODE, EVFILT_AIO}) {
    errno = 0;
    EXPECT_EQ(change(kq.get(), 1, filter, EV_ADD), -1) << "filter " << filter;
    EXPECT_EQ(errno, EINVAL) << "filter " << filter;
  }
}

TEST(KqueueEmulation, FflagsOnReadAndWriteFiltersAreEinval) {
  Fd kq(kqueue());
  ASSERT_GE(kq.get(), 0);
  SocketPair sp;
  ASSERT_TRUE(sp.ok());
  errno = 0;
  EXPECT_EQ(change(kq.get(), sp.ours.ident(), EVFILT_READ, EV_ADD, 1 /* NOTE_LOWAT */), -1);
  EXPECT_EQ(errno, EINVAL);
}

TEST(KqueueEmulation, NegativeCountsAreEinval) {
  Fd kq(kqueue());
  ASSERT_GE(kq.get(), 0);
  KEvent ev[1];
  errno = 0;
  EXPECT_EQ(kevent(kq.get(), nullptr, -1, nullptr, 0, nullptr), -1);
  EXPECT_EQ(errno, EINVAL);
  errno = 0;
  EXPECT_EQ(kevent(kq.get(), nullptr, 0, ev, -1, nullptr), -1);
  EXPECT_EQ(errno, EINVAL);
}

TEST(KqueueEmulation, MissingListsWithPositiveCountsAreEfault) {
  Fd kq(kqueue());
  ASSERT_GE(kq.get(), 0);
  errno = 0;
  EXPECT_EQ(kevent(kq.get(), nullptr, 1, nullptr, 0, nullptr), -1);
  EXPECT_EQ(errno, EFAULT);
  errno = 0;
  EXPECT_EQ(kevent(kq.get(), nullptr, 0, nullptr, 1, &kZero), -1);
  EXPECT_EQ(errno, EFAULT);
}

TEST(KqueueEmulation, KeventOnANumberThatIsNoKqueueIsEbadf) {
  errno = 0;
  EXPECT_EQ(kevent(-1, nullptr, 0, nullptr, 0, nullptr), -1);
  EXPECT_EQ(errno, EBADF);
}

// BSD reports a regular file always readable; epoll refuses it, and so does the emulation.
TEST(KqueueEmulation, RegularFileIsEperm) {
  Fd kq(kqueue());
  ASSERT_GE(kq.get(), 0);
  std::FILE* file = std::tmpfile();
  ASSERT_NE(file, nullptr);
  errno = 0;
  const auto ident = static_cast<std::uintptr_t>(::fileno(file));
  EXPECT_EQ(change(kq.get(), ident, EVFILT_READ, EV_ADD), -1);
  EXPECT_EQ(errno, EPERM);
  std::fclose(file);
}

TEST(KqueueEmulation, NumbersThatAreNotOpenDescriptorsAreEbadf) {
  Fd kq(kqueue());
  ASSERT_GE(kq.get(), 0);
  // A number just closed in this thread, so that nothing has it now.
  int number = ::dup(kq.get());
  ASSERT_GE(number, 0);
  ASSERT_EQ(::close(number), 0);
  errno = 0;
  EXPECT_EQ(change(kq.get(), static_cast<std::uintptr_t>(number), EVFILT_READ, EV_ADD), -1);
  EXPECT_EQ(errno, EBADF);
  // Beyond what an int descriptor can be, though its low 32 bits name an open socket.
  SocketPair sp;
  ASSERT_TRUE(sp.ok());
  const std::uintptr_t too_big = (std::uintptr_t{1} << 32) | sp.ours.ident();
  errno = 0;
  EXPECT_EQ(change(kq.get(), too_big, EVFILT_READ, EV_ADD), -1);
  EXPECT_EQ(errno, EBADF);
}

// --- EVFILT_USER ----------------------------------------------------------------------------

TEST(KqueueEmulation, UserEventIsReportedOnlyOnceTriggered) {
  Fd kq(kqueue());
  ASSERT_GE(kq.get(), 0);
  int tag = 0;
  ASSERT_EQ(change(kq.get(), 42, EVFILT_USER, EV_ADD | EV_CLEAR, 0, &tag), 0);
  KEvent ev[4];
  EXPECT_EQ(poll_events(kq.get(), ev, 4), 0);
  ASSERT_EQ(change(kq.get(), 42, EVFILT_USER, 0, NOTE_TRIGGER, &tag), 0);
  ASSERT_EQ(poll_events(kq.get(), ev, 4), 1);
  EXPECT_EQ(ev[0].ident, 42u);
  EXPECT_EQ(ev[0].filter, EVFILT_USER);
  EXPECT_EQ(ev[0].udata, &tag);
}

TEST(KqueueEmulation, ClearedUserEventIsDeliveredOncePerTrigger) {
  Fd kq(kqueue());
  ASSERT_GE(kq.get(), 0);
  ASSERT_EQ(change(kq.get(), 42, EVFILT_USER, EV_ADD | EV_CLEAR), 0);
  KEvent ev[4];
  ASSERT_EQ(change(kq.get(), 42, EVFILT_USER, 0, NOTE_TRIGGER), 0);
  ASSERT_EQ(poll_events(kq.get(), ev, 4), 1);
  EXPECT_NE(ev[0].flags & EV_CLEAR, 0);
  EXPECT_EQ(poll_events(kq.get(), ev, 4), 0);
  ASSERT_EQ(change(kq.get(), 42, EVFILT_USER, 0, NOTE_TRIGGER), 0);
  EXPECT_EQ(poll_events(kq.get(), ev, 4), 1);
  EXPECT_EQ(poll_events(kq.get(), ev, 4), 0);
}

TEST(KqueueEmulation, UserEventCarriesTheFflagsFoldedInWithNoteFfor) {
  Fd kq(kqueue());
  ASSERT_GE(kq.get(), 0);
  int tag = 0;
  ASSERT_EQ(change(kq.get(), 42, EVFILT_USER, EV_ADD | EV_CLEAR, 0, &tag), 0);
  ASSERT_EQ(change(kq.get(), 42, EVFILT_USER, 0, NOTE_TRIGGER | NOTE_FFOR | 0x5, &tag), 0);
  ASSERT_EQ(change(kq.get(), 42, EVFILT_USER, 0, NOTE_FFOR | 0x10, &tag), 0);
  KEvent ev[4];
  ASSERT_EQ(poll_events(kq.get(), ev, 4), 1);
  EXPECT_EQ(ev[0].ident, 42u);
  EXPECT_EQ(ev[0].filter, EVFILT_USER);
  EXPECT_EQ(ev[0].fflags, 0x15u);
  EXPECT_EQ(ev[0].udata, &tag);
  EXPECT_NE(ev[0].flags & EV_CLEAR, 0);
}

TEST(KqueueEmulation, NoteFfandKeepsOnlyTheFflagsInBoth) {
  Fd kq(kqueue());
  ASSERT_GE(kq.get(), 0);
  ASSERT_EQ(change(kq.get(), 42, EVFILT_USER, EV_ADD | EV_CLEAR), 0);
  ASSERT_EQ(change(kq.get(), 42, EVFILT_USER, 0, NOTE_FFOR | 0x15), 0);
  ASSERT_EQ(change(kq.get(), 42, EVFILT_USER, 0, NOTE_TRIGGER | NOTE_FFAND | 0x4), 0);
  KEvent ev[4];
  ASSERT_EQ(poll_events(kq.get(), ev, 4), 1);
  EXPECT_EQ(ev[0].fflags, 0x4u);
}

TEST(KqueueEmulation, NoteFfcopyReplacesTheFflags) {
  Fd kq(kqueue());
  ASSERT_GE(kq.get(), 0);
  ASSERT_EQ(change(kq.get(), 42, EVFILT_USER, EV_ADD | EV_CLEAR), 0);
  ASSERT_EQ(change(kq.get(), 42, EVFILT_USER, 0, NOTE_FFOR | 0x14), 0);
  ASSERT_EQ(change(kq.get(), 42, EVFILT_USER, 0, NOTE_TRIGGER | NOTE_FFCOPY | 0x7), 0);
  KEvent ev[4];
  ASSERT_EQ(poll_events(kq.get(), ev, 4), 1);
  EXPECT_EQ(ev[0].fflags, 0x7u);
}

TEST(KqueueEmulation, UserTriggerFromAnotherThreadWakesAWaitWithoutTimeout) {
  Fd kq(kqueue());
  ASSERT_GE(kq.get(), 0);
  int tag = 0;
  ASSERT_EQ(change(kq.get(), 42, EVFILT_USER, EV_ADD | EV_CLEAR, 0, &tag), 0);
  const InterruptingSignal interrupting;  // the way out should the trigger not wake it
  ASSERT_TRUE(interrupting.installed());
  std::atomic<pid_t> waiter_tid{0};
  std::atomic<int> result{-2};  // -2: still waiting
  std::atomic<std::uintptr_t> ident{0};
  std::thread waiter([&] {
    waiter_tid = ::gettid();
    KEvent out[2];
    const int r = kevent(kq.get(), nullptr, 0, out, 2, nullptr);
    if (r == 1) ident = out[0].ident;
    result = r;
  });
  EXPECT_TRUE(wait_until_blocked_in_epoll(waiter_tid));
  EXPECT_EQ(result.load(), -2);  // nothing to report, no timeout: it waits
  EXPECT_EQ(change(kq.get(), 42, EVFILT_USER, 0, NOTE_TRIGGER, &tag), 0);
  if (!wait_until([&] { return result.load() != -2; })) {
    ADD_FAILURE() << "the trigger did not wake the wait";
    ::pthread_kill(waiter.native_handle(), SIGUSR1);  // ends it, so the test cannot hang
  }
  waiter.join();
  EXPECT_EQ(result.load(), 1);
  EXPECT_EQ(ident.load(), 42u);
}

TEST(KqueueEmulation, LevelUserEventStaysActiveUntilAChangeClearsIt) {
  Fd kq(kqueue());
  ASSERT_GE(kq.get(), 0);
  ASSERT_EQ(change(kq.get(), 7, EVFILT_USER, EV_ADD, NOTE_TRIGGER), 0);
  KEvent ev[4];
  ASSERT_EQ(poll_events(kq.get(), ev, 4), 1);
  EXPECT_EQ(ev[0].ident, 7u);
  ASSERT_EQ(poll_events(kq.get(), ev, 4), 1);
  EXPECT_EQ(ev[0].ident, 7u);
  ASSERT_EQ(change(kq.get(), 7, EVFILT_USER, EV_CLEAR, 0), 0);
  EXPECT_EQ(poll_events(kq.get(), ev, 4), 0);
}

TEST(KqueueEmulation, DeletedUserEventIsNotReportedThoughTriggered) {
  Fd kq(kqueue());
  ASSERT_GE(kq.get(), 0);
  ASSERT_EQ(change(kq.get(), 7, EVFILT_USER, EV_ADD), 0);
  ASSERT_EQ(change(kq.get(), 7, EVFILT_USER, 0, NOTE_TRIGGER), 0);
  ASSERT_EQ(change(kq.get(), 7, EVFILT_USER, EV_DELETE), 0);
  KEvent ev[4];
  EXPECT_EQ(poll_events(kq.get(), ev, 4), 0);
}

TEST(KqueueEmulation, OneshotUserEventIsDeletedAfterItsDelivery) {
  Fd kq(kqueue());
  ASSERT_GE(kq.get(), 0);
  ASSERT_EQ(change(kq.get(), 8, EVFILT_USER, EV_ADD | EV_ONESHOT, NOTE_TRIGGER), 0);
  KEvent ev[4];
  ASSERT_EQ(poll_events(kq.get(), ev, 4), 1);
  EXPECT_EQ(ev[0].ident, 8u);
  errno = 0;
  EXPECT_EQ(change(kq.get(), 8, EVFILT_USER, EV_DELETE), -1);
  EXPECT_EQ(errno, ENOENT);
}

TEST(KqueueEmulation, DisablingATriggeredUserEventHoldsItUntilEnabled) {
  Fd kq(kqueue());
  ASSERT_GE(kq.get(), 0);
  ASSERT_EQ(change(kq.get(), 42, EVFILT_USER, EV_ADD | EV_CLEAR), 0);
  ASSERT_EQ(change(kq.get(), 42, EVFILT_USER, 0, NOTE_TRIGGER), 0);
  ASSERT_EQ(change(kq.get(), 42, EVFILT_USER, EV_DISABLE), 0);
  KEvent ev[4];
  EXPECT_EQ(poll_events(kq.get(), ev, 4), 0);
  ASSERT_EQ(change(kq.get(), 42, EVFILT_USER, EV_ENABLE), 0);
  ASSERT_EQ(poll_events(kq.get(), ev, 4), 1);
  EXPECT_EQ(ev[0].ident, 42u);
}

// Two threads wait on one kqueue with a one-slot list, and one kevent() call triggers two
// events. epoll wakes only one of the waiters, which can take only one event: the other event
// must still reach the second waiter at once, as BSD wakes every waiter, not when that
// waiter's own wait times out (here 5 s, which fails the test).
TEST(KqueueEmulation, TwoBlockedWaitersEachGetOneOfTwoUserEvents) {
  Fd kq(kqueue());
  ASSERT_GE(kq.get(), 0);
  ASSERT_EQ(change(kq.get(), 100, EVFILT_USER, EV_ADD | EV_CLEAR), 0);
  ASSERT_EQ(change(kq.get(), 101, EVFILT_USER, EV_ADD | EV_CLEAR), 0);
  std::atomic<int> got[2] = {0, 0};
  std::atomic<int> other{0};
  std::atomic<pid_t> tids[2] = {0, 0};
  std::vector<std::thread> waiters;
  for (int t = 0; t < 2; ++t) {
    waiters.emplace_back([&, t] {
      tids[t] = ::gettid();
      const timespec five_seconds{5, 0};
      KEvent out[1];
      const int n = kevent(kq.get(), nullptr, 0, out, 1, &five_seconds);
      if (n == 1 && (out[0].ident == 100 || out[0].ident == 101)) {
        ++got[out[0].ident - 100];
      } else {
        ++other;  // a timeout (0), an error (-1) or a stranger
      }
    });
  }
  EXPECT_TRUE(wait_until_blocked_in_epoll(tids[0]));
  EXPECT_TRUE(wait_until_blocked_in_epoll(tids[1]));
  KEvent triggers[2];
  EV_SET(&triggers[0], 100, EVFILT_USER, 0, NOTE_TRIGGER, 0, nullptr);
  EV_SET(&triggers[1], 101, EVFILT_USER, 0, NOTE_TRIGGER, 0, nullptr);
  const auto start = std::chrono::steady_clock::now();
  ASSERT_EQ(kevent(kq.get(), triggers, 2, nullptr, 0, nullptr), 0);
  for (auto& w : waiters) w.join();
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(4));
  EXPECT_EQ(got[0].load(), 1);
  EXPECT_EQ(got[1].load(), 1);
  EXPECT_EQ(other.load(), 0);
}

// --- timeouts, signals -----------------------------------------------------------------------

TEST(KqueueEmulation, TimeoutReturnsZeroNoSoonerThanItsTime) {
  Fd kq(kqueue());
  ASSERT_GE(kq.get(), 0);
  KEvent ev[1];
  for (const long ns : {5'000'000L, 1'500'000L, 1L}) {
    const timespec ts{0, ns};
    const auto start = std::chrono::steady_clock::now();
    EXPECT_EQ(kevent(kq.get(), nullptr, 0, ev, 1, &ts), 0) << ns << " ns";
    const auto elapsed = std::chrono::steady_clock::now() - start;
    EXPECT_GE(elapsed, std::chrono::nanoseconds(ns));
    EXPECT_LT(elapsed, std::chrono::nanoseconds(ns) + std::chrono::seconds(3));
  }
}

// A wake-up that turns out to bring nothing (here: the trigger of a user event deleted
// before the wait) does not end the wait early: BSD returns empty-handed only at the timeout.
TEST(KqueueEmulation, StaleWakeUpDoesNotEndATimedWaitEarly) {
  Fd kq(kqueue());
  ASSERT_GE(kq.get(), 0);
  ASSERT_EQ(change(kq.get(), 6, EVFILT_USER, EV_ADD | EV_CLEAR), 0);
  ASSERT_EQ(change(kq.get(), 6, EVFILT_USER, 0, NOTE_TRIGGER), 0);
  ASSERT_EQ(change(kq.get(), 6, EVFILT_USER, EV_DELETE), 0);
  KEvent ev[1];
  const timespec ts{0, 100'000'000};
  const auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(kevent(kq.get(), nullptr, 0, ev, 1, &ts), 0);
  const auto elapsed = std::chrono::steady_clock::now() - start;
  EXPECT_GE(elapsed, std::chrono::milliseconds(100));
  EXPECT_LT(elapsed, std::chrono::milliseconds(100) + std::chrono::seconds(3));
}

TEST(KqueueEmulation, TimeoutWithNanosecondsOutOfRangeIsEinval) {
  Fd kq(kqueue());
  ASSERT_GE(kq.get(), 0);
  KEvent ev[1];
  const timespec bad{0, 1'000'000'000};
  errno = 0;
  EXPECT_EQ(kevent(kq.get(), nullptr, 0, ev, 1, &bad), -1);
  EXPECT_EQ(errno, EINVAL);
}

// As FreeBSD: the timeout is checked only when it comes to waiting.
TEST(KqueueEmulation, BadTimeoutIsRefusedAfterTheChangesWereApplied) {
  Fd kq(kqueue());
  ASSERT_GE(kq.get(), 0);
  KEvent ch;
  EV_SET(&ch, 3, EVFILT_USER, EV_ADD | EV_CLEAR, 0, 0, nullptr);
  const timespec bad{-1, 0};
  errno = 0;
  EXPECT_EQ(kevent(kq.get(), &ch, 1, &ch, 1, &bad), -1);
  EXPECT_EQ(errno, EINVAL);
  EXPECT_EQ(change(kq.get(), 3, EVFILT_USER, EV_DELETE), 0);  // it was added
}

TEST(KqueueEmulation, SignalEndsAWaitWithEintr) {
  Fd kq(kqueue());
  ASSERT_GE(kq.get(), 0);
  // Ends the wait should the signal fail to, so that a failure cannot hang the test.
  ASSERT_EQ(change(kq.get(), 1, EVFILT_USER, EV_ADD | EV_CLEAR), 0);
  const InterruptingSignal interrupting;
  ASSERT_TRUE(interrupting.installed());
  std::atomic<pid_t> waiter_tid{0};
  std::atomic<bool> done{false};
  std::atomic<int> result{0};
  std::atomic<int> saved_errno{0};
  std::thread waiter([&] {
    waiter_tid = ::gettid();
    KEvent out[1];
    result = kevent(kq.get(), nullptr, 0, out, 1, nullptr);
    saved_errno = errno;
    done = true;
  });
  EXPECT_TRUE(wait_until_blocked_in_epoll(waiter_tid));
  EXPECT_EQ(::pthread_kill(waiter.native_handle(), SIGUSR1), 0);
  if (!wait_until([&] { return done.load(); })) {
    ADD_FAILURE() << "the signal did not end the wait";
    EXPECT_EQ(change(kq.get(), 1, EVFILT_USER, 0, NOTE_TRIGGER), 0);
  }
  waiter.join();
  EXPECT_EQ(result.load(), -1);
  EXPECT_EQ(saved_errno.load(), EINTR);
}

// In a child whose seccomp filter answers epoll_pwait2 with ENOSYS (as kernels before 5.11
// do), timeouts and wake-ups go through epoll_wait's whole milliseconds, rounded up.
TEST(KqueueEmulation, TimeoutsAndWakeupsWorkWithoutEpollPwait2) {
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    sock_filter filter[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_epoll_pwait2, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (ENOSYS & SECCOMP_RET_DATA)),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    sock_fprog program{static_cast<unsigned short>(sizeof filter / sizeof filter[0]), filter};
    if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 ||
        ::prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &program) != 0) {
      ::_exit(77);
    }
    const timespec ts0{0, 0};
    errno = 0;
    if (::syscall(SYS_epoll_pwait2, -1, nullptr, 0, &ts0, nullptr, 0) != -1 || errno != ENOSYS) {
      ::_exit(4);
    }
    const int kq = kqueue();
    if (kq < 0) ::_exit(3);
    KEvent ev[1];
    for (const long ns : {5'000'000L, 1'500'000L, 1L}) {
      const timespec ts{0, ns};
      const auto start = std::chrono::steady_clock::now();
      if (kevent(kq, nullptr, 0, ev, 1, &ts) != 0) ::_exit(5);
      if (std::chrono::steady_clock::now() - start < std::chrono::nanoseconds(ns)) ::_exit(6);
    }
    if (change(kq, 9, EVFILT_USER, EV_ADD | EV_CLEAR) != 0) ::_exit(7);
    // This thread's id is the child's pid; the trigger comes once it sleeps in epoll_wait.
    const std::atomic<pid_t> main_tid{::getpid()};
    std::thread trigger([&] {
      wait_until_blocked_in_epoll(main_tid);
      change(kq, 9, EVFILT_USER, 0, NOTE_TRIGGER);
    });
    const int n = kevent(kq, nullptr, 0, ev, 1, &kPatience);
    trigger.join();
    ::close(kq);
    ::_exit(n == 1 && ev[0].ident == 9 ? 0 : 8);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status)) << "child status " << status;
  if (WEXITSTATUS(status) == 77) GTEST_SKIP() << "seccomp filters are not allowed here";
  EXPECT_EQ(WEXITSTATUS(status), 0)
      << "3: kqueue failed, 4: the filter did not take, 5: a timeout did not return 0, "
         "6: a timeout returned early, 7: EVFILT_USER add failed, 8: the trigger did not wake";
}

// --- small event lists, deletion of queued events -----------------------------------------

TEST(KqueueEmulation, OneSlotEventlistDeliversTwoReadyKnotesOverTwoCalls) {
  Fd kq(kqueue());
  ASSERT_GE(kq.get(), 0);
  SocketPair sp;
  ASSERT_TRUE(sp.ok());
  ASSERT_EQ(change(kq.get(), sp.ours.ident(), EVFILT_READ, EV_ADD | EV_CLEAR), 0);
  ASSERT_EQ(change(kq.get(), sp.ours.ident(), EVFILT_WRITE, EV_ADD | EV_CLEAR), 0);
  ASSERT_EQ(::write(sp.theirs.get(), "q", 1), 1);
  KEvent ev[1];
  bool got_read = false;
  bool got_write = false;
  for (int i = 0; i < 2; ++i) {
    ASSERT_EQ(poll_events(kq.get(), ev, 1), 1) << "call " << i;
    if (ev[0].filter == EVFILT_READ) got_read = true;
    if (ev[0].filter == EVFILT_WRITE) got_write = true;
  }
  EXPECT_TRUE(got_read);
  EXPECT_TRUE(got_write);
  EXPECT_EQ(poll_events(kq.get(), ev, 1), 0);  // EV_CLEAR: nothing more
}

TEST(KqueueEmulation, QueuedEventOfAKnoteDeletedMeanwhileIsDropped) {
  Fd kq(kqueue());
  ASSERT_GE(kq.get(), 0);
  SocketPair sp;
  ASSERT_TRUE(sp.ok());
  ASSERT_EQ(change(kq.get(), sp.ours.ident(), EVFILT_READ, EV_ADD | EV_CLEAR), 0);
  ASSERT_EQ(change(kq.get(), sp.ours.ident(), EVFILT_WRITE, EV_ADD | EV_CLEAR), 0);
  ASSERT_EQ(::write(sp.theirs.get(), "r", 1), 1);
  KEvent ev[1];
  ASSERT_EQ(poll_events(kq.get(), ev, 1), 1);  // the other one stays queued
  const short first = ev[0].filter;
  const short other = first == EVFILT_READ ? EVFILT_WRITE : EVFILT_READ;
  ASSERT_EQ(change(kq.get(), sp.ours.ident(), other, EV_DELETE), 0);
  // The deletion re-arms the descriptor, so `first` may come again (a documented
  // deviation); `other` must not.
  KEvent more[4];
  const int m = poll_events(kq.get(), more, 4);
  EXPECT_GE(m, 0);
  EXPECT_LE(m, 1);
  for (int i = 0; i < m; ++i) EXPECT_EQ(more[i].filter, first);
}

// --- numbers reused after close() --------------------------------------------------------

TEST(KqueueEmulation, KnotesOfAClosedDescriptorReportNothingOnceItsNumberIsReused) {
  Fd kq(kqueue());
  ASSERT_GE(kq.get(), 0);
  SocketPair sp;
  ASSERT_TRUE(sp.ok());
  int tag_old = 1;
  ASSERT_EQ(change(kq.get(), sp.ours.ident(), EVFILT_READ, EV_ADD, 0, &tag_old), 0);
  ASSERT_EQ(change(kq.get(), sp.ours.ident(), EVFILT_WRITE, EV_ADD | EV_DISABLE), 0);
  sp.theirs.reset();  // the old socket is at EOF now: a knote left on it would report
  SocketPair fresh;
  ASSERT_TRUE(reuse_number(sp.ours, fresh));
  KEvent ev[4];
  EXPECT_EQ(poll_events(kq.get(), ev, 4), 0);
}

// As BSD, where close() removed the knote: the number now names another file.
TEST(KqueueEmulation, EnablingAKnoteOfAClosedDescriptorWhoseNumberIsReusedIsEnoent) {
  Fd kq(kqueue());
  ASSERT_GE(kq.get(), 0);
  SocketPair sp;
  ASSERT_TRUE(sp.ok());
  int tag_old = 1;
  int tag_new = 2;
  ASSERT_EQ(change(kq.get(), sp.ours.ident(), EVFILT_READ, EV_ADD, 0, &tag_old), 0);
  ASSERT_EQ(change(kq.get(), sp.ours.ident(), EVFILT_WRITE, EV_ADD | EV_DISABLE), 0);
  SocketPair fresh;
  ASSERT_TRUE(reuse_number(sp.ours, fresh));
  errno = 0;
  EXPECT_EQ(change(kq.get(), sp.ours.ident(), EVFILT_WRITE, EV_ENABLE), -1);
  EXPECT_EQ(errno, ENOENT);
  // The leftovers went with it: a new knote starts afresh, with the new udata.
  ASSERT_EQ(change(kq.get(), sp.ours.ident(), EVFILT_READ, EV_ADD, 0, &tag_new), 0);
  ASSERT_EQ(::write(fresh.theirs.get(), "new", 3), 3);
  KEvent ev[4];
  ASSERT_EQ(poll_events(kq.get(), ev, 4), 1);
  EXPECT_EQ(ev[0].filter, EVFILT_READ);
  EXPECT_EQ(ev[0].udata, &tag_new);
  EXPECT_EQ(ev[0].data, 3);
}

TEST(KqueueEmulation, AddingAKnoteOnAReusedNumberStartsAFreshOneWithTheNewUdata) {
  Fd kq(kqueue());
  ASSERT_GE(kq.get(), 0);
  SocketPair sp;
  ASSERT_TRUE(sp.ok());
  int tag_old = 1;
  int tag_new = 2;
  ASSERT_EQ(change(kq.get(), sp.ours.ident(), EVFILT_READ, EV_ADD, 0, &tag_old), 0);
  SocketPair fresh;
  ASSERT_TRUE(reuse_number(sp.ours, fresh));
  ASSERT_EQ(change(kq.get(), sp.ours.ident(), EVFILT_READ, EV_ADD, 0, &tag_new), 0);
  ASSERT_EQ(::write(fresh.theirs.get(), "new", 3), 3);
  KEvent ev[4];
  ASSERT_EQ(poll_events(kq.get(), ev, 4), 1);  // the new socket's data, seen by the new knote
  EXPECT_EQ(ev[0].filter, EVFILT_READ);
  EXPECT_EQ(ev[0].udata, &tag_new);
  EXPECT_EQ(ev[0].data, 3);
}

// A level read knote left over would refuse the cleared write knote (EINVAL) and report.
TEST(KqueueEmulation, AddingAKnoteOnAReusedNumberDropsTheOtherFiltersLeftovers) {
  Fd kq(kqueue());
  ASSERT_GE(kq.get(), 0);
  SocketPair sp;
  ASSERT_TRUE(sp.ok());
  ASSERT_EQ(change(kq.get(), sp.ours.ident(), EVFILT_READ, EV_ADD), 0);
  SocketPair fresh;
  ASSERT_TRUE(reuse_number(sp.ours, fresh));
  ASSERT_EQ(::write(fresh.theirs.get(), "x", 1), 1);  // the new socket is readable too
  ASSERT_EQ(change(kq.get(), sp.ours.ident(), EVFILT_WRITE, EV_ADD | EV_CLEAR), 0);
  KEvent ev[4];
  ASSERT_EQ(poll_events(kq.get(), ev, 4), 1);
  EXPECT_EQ(ev[0].filter, EVFILT_WRITE);
}

TEST(KqueueEmulation, DeletingAKnoteOfAClosedDescriptorIsEbadf) {
  Fd kq(kqueue());
  ASSERT_GE(kq.get(), 0);
  SocketPair sp;
  ASSERT_TRUE(sp.ok());
  const std::uintptr_t ident = sp.ours.ident();
  ASSERT_EQ(change(kq.get(), ident, EVFILT_WRITE, EV_ADD | EV_CLEAR), 0);
  sp.ours.reset();  // its peer stays open
  // Just closed in this thread: nothing has the number again.
  ASSERT_EQ(::fcntl(static_cast<int>(ident), F_GETFD), -1);
  errno = 0;
  EXPECT_EQ(change(kq.get(), ident, EVFILT_WRITE, EV_DELETE), -1);
  EXPECT_EQ(errno, EBADF);
}

// The old kqueue's bookkeeping (its user knote and its eventfd) goes when kqueue() gets
// its number again.
TEST(KqueueEmulation, KqueueGivenAClosedKqueuesNumberStartsEmpty) {
  Fd first(kqueue());
  ASSERT_GE(first.get(), 0);
  const int number = first.get();
  ASSERT_EQ(change(first.get(), 5, EVFILT_USER, EV_ADD, NOTE_TRIGGER), 0);
  first.reset();
  Fd second(kqueue());
  ASSERT_EQ(second.get(), number);  // the lowest free number: the one just closed
  KEvent ev[4];
  EXPECT_EQ(poll_events(second.get(), ev, 4), 0);
  errno = 0;
  EXPECT_EQ(change(second.get(), 5, EVFILT_USER, EV_DELETE), -1);
  EXPECT_EQ(errno, ENOENT);
}

// --- concurrency ------------------------------------------------------------------------------

// For the sanitizers above all: waits, triggers and changes racing on one kqueue.
TEST(KqueueEmulation, ConcurrentWaitsTriggersAndChangesOnOneKqueue) {
  Fd kq(kqueue());
  ASSERT_GE(kq.get(), 0);
  SocketPair sp;
  ASSERT_TRUE(sp.ok());
  ASSERT_EQ(change(kq.get(), 1, EVFILT_USER, EV_ADD | EV_CLEAR), 0);
  std::atomic<bool> stop{false};
  std::atomic<int> delivered{0};
  std::atomic<int> failed_waits{0};
  std::atomic<int> failed_changes{0};
  std::vector<std::thread> waiters;
  for (int t = 0; t < 2; ++t) {
    waiters.emplace_back([&] {
      KEvent out[8];
      const timespec ts{0, 20'000'000};
      while (!stop) {
        const int n = kevent(kq.get(), nullptr, 0, out, 8, &ts);
        if (n < 0) ++failed_waits;
        if (n > 0) delivered += n;
        for (int i = 0; i < n; ++i) {
          if (out[i].filter == EVFILT_READ) drain(static_cast<int>(out[i].ident));
        }
      }
    });
  }
  std::thread changer([&] {
    for (int i = 0; i < 2000; ++i) {
      if (change(kq.get(), sp.ours.ident(), EVFILT_READ, EV_ADD | EV_CLEAR) != 0) {
        ++failed_changes;
      }
      (void)!::write(sp.theirs.get(), "x", 1);
      if (change(kq.get(), sp.ours.ident(), EVFILT_READ, EV_DELETE) != 0) ++failed_changes;
    }
  });
  for (int i = 0; i < 2000; ++i) {
    if (change(kq.get(), 1, EVFILT_USER, 0, NOTE_TRIGGER) != 0) ++failed_changes;
  }
  changer.join();
  EXPECT_TRUE(wait_until([&] { return delivered.load() > 0; }));
  stop = true;
  for (auto& w : waiters) w.join();
  EXPECT_GT(delivered.load(), 0);
  EXPECT_EQ(failed_waits.load(), 0);
  EXPECT_EQ(failed_changes.load(), 0);
}

}  // namespace
}  // namespace corio

#else

TEST(KqueueEmulation, OnlyBuiltOnTheLinuxKqueueEmulation) {
  GTEST_SKIP() << "this build uses the " << CORIO_BACKEND_NAME
               << " backend, not the Linux kqueue emulation";
}

#endif
