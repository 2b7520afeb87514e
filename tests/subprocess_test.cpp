// The POSIX-only part of the subprocess tests: what only POSIX has, with real children (sh,
// sleep). Signal setup the child must not inherit, arbitrary signals, the exact OSError types
// of a failed exec, and reaping: no zombie left by a dropped Process, a child outliving its
// loop, or the waiting thread used when pidfd is unavailable. The portable behaviour (pipes,
// communicate, readers and writers, cancellation, exit codes, kill/terminate) is asserted
// once, for every platform, in subprocess_child_test.cpp: never repeat it here.
#ifndef _WIN32

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>
#include <corio/corio.hpp>
#include <corio/subprocess.hpp>

#include <cerrno>
#include <chrono>
#include <optional>
#include <string>
#include <thread>

namespace corio {
namespace {

using subprocess::PIPE;

// Every test must leave no child behind: neither running nor a zombie.
class Subprocess : public ::testing::Test {
 protected:
  void TearDown() override {
    int status = 0;
    errno = 0;
    const pid_t r = ::waitpid(-1, &status, WNOHANG);
    EXPECT_EQ(r, -1) << "a child is still running or was left as a zombie (pid " << r << ")";
    EXPECT_EQ(errno, ECHILD);
  }
};

Coro<void> nap(double seconds) {
  co_await sleep(seconds);
}

// Waits (really) until `pid` is gone and reaped by someone other than us.
bool eventually_reaped(pid_t pid) {
  for (int i = 0; i < 5000; ++i) {
    if (::kill(pid, 0) < 0 && errno == ESRCH) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return false;
}

TEST_F(Subprocess, ChildDoesNotInheritOurSignalSetup) {
  auto main = []() -> Coro<void> {
    // Ignored and blocked here; the child must see SIGTERM at its default again.
    struct sigaction ignore = {};
    ignore.sa_handler = SIG_IGN;
    struct sigaction previous = {};
    ::sigaction(SIGTERM, &ignore, &previous);
    sigset_t block;
    sigemptyset(&block);
    sigaddset(&block, SIGTERM);
    sigset_t old;
    pthread_sigmask(SIG_BLOCK, &block, &old);
    Process proc = co_await create_subprocess_exec("sleep", "30");
    pthread_sigmask(SIG_SETMASK, &old, nullptr);
    ::sigaction(SIGTERM, &previous, nullptr);
    proc.terminate();
    EXPECT_EQ(co_await proc.wait(), -SIGTERM);
  };
  run(main());
}

TEST_F(Subprocess, SendSignalDeliversAnySignalAsANegativeReturncode) {
  // kill(), terminate() and send_signal(SIGTERM) are in SubprocessChild.KillTerminateAndSendSignal.
  auto main = []() -> Coro<void> {
    Process c = co_await create_subprocess_exec("sleep", "30");
    c.send_signal(SIGUSR1);
    EXPECT_EQ(co_await c.wait(), -SIGUSR1);
  };
  run(main());
}

TEST_F(Subprocess, FailedExecRaisesTheErrnoSubclass) {
  // A missing program is in SubprocessChild.MissingProgramAndDirectoryRaise, which can only
  // say OSError for a missing cwd (Windows raises NotADirectoryError).
  auto main = []() -> Coro<void> {
    SubprocessOptions options;
    options.cwd = "/nonexistent-directory-for-corio";
    EXPECT_THROW(co_await create_subprocess_exec("true", {}, options), FileNotFoundError);
    EXPECT_THROW(co_await create_subprocess_exec("/dev/null"), PermissionError);
  };
  run(main());
}

TEST_F(Subprocess, DroppedProcessIsStillReaped) {
  pid_t pid = 0;
  auto main = [](pid_t& pid) -> Coro<void> {
    {
      Process proc = co_await create_subprocess_exec(
          "sleep", "0.05", SubprocessOptions{.std_in = PIPE, .std_out = PIPE});
      pid = proc.pid();
      proc.std_in()->write("never read");
    }
    co_await sleep(0.3);  // the loop keeps watching the child it no longer has a handle on
    EXPECT_EQ(::waitpid(pid, nullptr, WNOHANG), -1);  // already reaped by corio
    EXPECT_EQ(errno, ECHILD);
  };
  run(main(pid));
}

TEST_F(Subprocess, ChildOutlivingItsLoopIsReapedAnyway) {
  pid_t pid = 0;
  auto main = [](pid_t& pid) -> Coro<void> {
    Process proc =
        co_await create_subprocess_exec("sleep", "0.1", SubprocessOptions{.std_out = PIPE});
    pid = proc.pid();
  };
  run(main(pid));  // the loop closes with the child still running
  ASSERT_GT(pid, 0);
  EXPECT_TRUE(eventually_reaped(pid));
}

TEST_F(Subprocess, ProcessKeptBeyondItsLoopIsHarmless) {
  std::optional<Process> kept;
  auto main = [](std::optional<Process>& kept) -> Coro<void> {
    kept.emplace(co_await create_subprocess_exec(
        "sleep", "0.05", SubprocessOptions{.std_in = PIPE, .std_out = PIPE}));
  };
  run(main(kept));
  const pid_t pid = kept->pid();
  kept.reset();  // after the loop is gone: must not touch it
  EXPECT_TRUE(eventually_reaped(pid));
}

TEST_F(Subprocess, ThreadWatcherWhenPidfdIsUnavailable) {
  detail::set_pidfd_child_watcher_enabled(false);
  auto main = []() -> Coro<void> {
    Process a = co_await create_subprocess_shell("echo hi; exit 7", {.std_out = PIPE});
    auto [out, err] = co_await a.communicate();
    EXPECT_EQ(out, "hi\n");
    EXPECT_EQ(a.returncode(), 7);
    Process b = co_await create_subprocess_exec("sleep", "30");
    b.kill();
    EXPECT_EQ(co_await b.wait(), -SIGKILL);
    Process c = co_await create_subprocess_exec("sleep", "30");
    Task<int> waiter = create_task(c.wait());
    co_await sleep(0.01);
    waiter.cancel();
    bool cancelled = false;
    try {
      co_await waiter;
    } catch (const CancelledError&) {
      cancelled = true;
    }
    EXPECT_TRUE(cancelled);
    c.terminate();
    EXPECT_EQ(co_await c.wait(), -SIGTERM);
  };
  run(main());
  detail::set_pidfd_child_watcher_enabled(true);
}

TEST_F(Subprocess, VirtualTimeWaitsForAChildWatchedByTheThread) {
  // With a child running, virtual time must not jump to a far timer: the child's exit is
  // real work in progress, as a socket read would be. SubprocessChild checks this with
  // pidfd; here the waiting thread must count as work in progress too.
  detail::set_pidfd_child_watcher_enabled(false);
  auto main = []() -> Coro<void> {
    EventLoop& loop = get_running_loop();
    Task<void> far_timer = create_task(nap(50));
    Process proc = co_await create_subprocess_exec("sleep", "0.05");
    const double start = loop.time();
    EXPECT_EQ(co_await proc.wait(), 0);
    EXPECT_LT(loop.time() - start, 50.0);
    far_timer.cancel();
  };
  run(main(), Runner::Options{.virtual_time = true});
  detail::set_pidfd_child_watcher_enabled(true);
}

}  // namespace
}  // namespace corio

#endif  // _WIN32
