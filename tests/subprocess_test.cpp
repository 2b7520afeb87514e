// Subprocesses with real children (sh, cat, head, sleep): pipes, communicate() without
// deadlocks, exit statuses and signals, cancellation at every await, and no zombies left.
#ifndef _WIN32

#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>
#include <corio/corio.hpp>
#include <corio/subprocess.hpp>

#include <cerrno>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

namespace corio {
namespace {

using subprocess::DEVNULL;
using subprocess::PIPE;
using subprocess::STDOUT;

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

TEST_F(Subprocess, CatEchoesThroughCommunicate) {
  auto main = []() -> Coro<void> {
    Process proc = co_await create_subprocess_exec(
        "cat", {}, {.std_in = PIPE, .std_out = PIPE, .std_err = PIPE});
    EXPECT_GT(proc.pid(), 0);
    EXPECT_FALSE(proc.returncode().has_value());
    EXPECT_NE(proc.std_in(), nullptr);
    EXPECT_NE(proc.std_out(), nullptr);
    EXPECT_NE(proc.std_err(), nullptr);
    auto [out, err] = co_await proc.communicate("hello\nworld\n");
    EXPECT_EQ(out, "hello\nworld\n");
    EXPECT_EQ(err, "");
    EXPECT_EQ(proc.returncode(), 0);
  };
  run(main());
}

TEST_F(Subprocess, LargeOutputOnBothPipesAtOnce) {
  auto main = []() -> Coro<void> {
    Process proc =
        co_await create_subprocess_shell("head -c 8000000 /dev/zero; head -c 8000000 /dev/zero >&2",
                                         {.std_out = PIPE, .std_err = PIPE});
    auto [out, err] = co_await proc.communicate();
    EXPECT_EQ(out.size(), 8000000u);
    EXPECT_EQ(err.size(), 8000000u);
    EXPECT_EQ(out.find_first_not_of('\0'), std::string::npos);
    EXPECT_EQ(co_await proc.wait(), 0);
  };
  run(main());
}

TEST_F(Subprocess, InterleavedOutputWhileWeStillWriteInputDoesNotDeadlock) {
  // The child copies stdin to stderr as it reads: its stderr pipe fills while we are still
  // writing 4 MB to its stdin. Only concurrent reading and writing lets both finish.
  auto main = []() -> Coro<void> {
    Process proc = co_await create_subprocess_shell(
        "cat >&2; echo done", {.std_in = PIPE, .std_out = PIPE, .std_err = PIPE});
    std::string input(4 * 1024 * 1024, 'x');
    auto [out, err] = co_await proc.communicate(input);
    EXPECT_EQ(out, "done\n");
    EXPECT_EQ(err.size(), input.size());
    EXPECT_EQ(proc.returncode(), 0);
  };
  run(main());
}

TEST_F(Subprocess, ChildThatNeverReadsItsStdinDoesNotBlockCommunicate) {
  auto main = []() -> Coro<void> {
    const std::string ten_mb(10 * 1024 * 1024, 'y');
    // Exits at once without reading.
    Process quick = co_await create_subprocess_exec("true", {}, {.std_in = PIPE, .std_out = PIPE});
    auto [out1, err1] = co_await quick.communicate(ten_mb);
    EXPECT_EQ(out1, "");
    EXPECT_EQ(quick.returncode(), 0);
    // Closes stdin first, then writes and exits a little later: the pipe breaks mid-write.
    Process closer = co_await create_subprocess_shell("exec 0<&-; sleep 0.05; echo done",
                                                      {.std_in = PIPE, .std_out = PIPE});
    auto [out2, err2] = co_await closer.communicate(ten_mb);
    EXPECT_EQ(out2, "done\n");
    EXPECT_EQ(closer.returncode(), 0);
    // Holds stdin open without reading until it exits.
    Process sleeper =
        co_await create_subprocess_exec("sleep", "0.05", SubprocessOptions{.std_in = PIPE});
    auto [out3, err3] = co_await sleeper.communicate(ten_mb);
    EXPECT_EQ(out3, "");
    EXPECT_EQ(sleeper.returncode(), 0);
  };
  run(main());  // and, above all, this process was not killed by SIGPIPE
}

TEST_F(Subprocess, DrainAfterTheChildLeftRaisesConnectionResetAndWaitClosedBrokenPipe) {
  auto main = []() -> Coro<void> {
    Process proc = co_await create_subprocess_exec("true", {}, {.std_in = PIPE});
    EXPECT_EQ(co_await proc.wait(), 0);
    PipeWriter& in = *proc.std_in();
    in.write(std::string(1024 * 1024, 'z'));  // more than the socket can take
    EXPECT_THROW(co_await in.drain(), ConnectionResetError);
    EXPECT_TRUE(in.is_closing());
    EXPECT_THROW(co_await in.wait_closed(), BrokenPipeError);
    in.write("ignored once the pipe is lost");
    EXPECT_EQ(in.get_write_buffer_size(), 0u);
  };
  run(main());
}

TEST_F(Subprocess, WriteDrainCloseThenReadTheAnswer) {
  auto main = []() -> Coro<void> {
    Process proc = co_await create_subprocess_exec(
        "wc", "-c", SubprocessOptions{.std_in = PIPE, .std_out = PIPE});
    PipeWriter& in = *proc.std_in();
    for (int i = 0; i < 16; ++i) {
      in.write(std::string(64 * 1024, 'a'));
      co_await in.drain();
      EXPECT_LE(in.get_write_buffer_size(), 64u * 1024u);
    }
    in.writelines({"b", "c\n"});
    in.close();
    EXPECT_TRUE(in.is_closing());
    co_await in.wait_closed();
    std::string answer = co_await proc.std_out()->read();
    EXPECT_EQ(std::stoul(answer), 16u * 64u * 1024u + 3u);
    EXPECT_TRUE(proc.std_out()->at_eof());
    EXPECT_EQ(co_await proc.wait(), 0);
  };
  run(main());
}

TEST_F(Subprocess, ReadlineReadexactlyAndReaduntil) {
  auto main = []() -> Coro<void> {
    Process proc = co_await create_subprocess_exec("printf", "a\\nbb\\nccc;dd;0123456789tail",
                                                   SubprocessOptions{.std_out = PIPE});
    PipeReader& out = *proc.std_out();
    EXPECT_EQ(co_await out.readline(), "a\n");
    EXPECT_EQ(co_await out.readline(), "bb\n");
    EXPECT_EQ(co_await out.readuntil(";"), "ccc;");
    EXPECT_EQ(co_await out.readuntil(";"), "dd;");
    EXPECT_EQ(co_await out.readexactly(4), "0123");
    EXPECT_EQ(co_await out.read(6), "456789");
    EXPECT_FALSE(out.at_eof());
    try {
      co_await out.readexactly(100);
      ADD_FAILURE() << "readexactly past EOF must raise";
    } catch (const IncompleteReadError& e) {
      EXPECT_EQ(e.partial(), "tail");
      EXPECT_EQ(e.expected(), 100u);
    }
    EXPECT_EQ(co_await out.readline(), "");
    EXPECT_EQ(co_await out.read(), "");
    EXPECT_TRUE(out.at_eof());
    EXPECT_EQ(co_await proc.wait(), 0);
  };
  run(main());
}

TEST_F(Subprocess, ReadlineAtEofReturnsThePartialLine) {
  auto main = []() -> Coro<void> {
    Process proc =
        co_await create_subprocess_exec("printf", "one\\ntwo", SubprocessOptions{.std_out = PIPE});
    EXPECT_EQ(co_await proc.std_out()->readline(), "one\n");
    EXPECT_EQ(co_await proc.std_out()->readline(), "two");
    EXPECT_EQ(co_await proc.std_out()->readline(), "");
    co_await proc.wait();
  };
  run(main());
}

TEST_F(Subprocess, OverlongLineRaisesAndIsDiscarded) {
  auto main = []() -> Coro<void> {
    SubprocessOptions options{.std_out = PIPE};
    options.limit = 16;
    Process proc =
        co_await create_subprocess_shell("printf '0123456789abcdefghij\\nok\\n'", options);
    EXPECT_THROW(co_await proc.std_out()->readline(), ValueError);
    EXPECT_EQ(co_await proc.std_out()->readline(), "ok\n");
    co_await proc.wait();
  };
  run(main());
}

TEST_F(Subprocess, StderrIntoStdoutAndDevnull) {
  auto main = []() -> Coro<void> {
    Process merged = co_await create_subprocess_shell("echo out; echo err >&2",
                                                      {.std_out = PIPE, .std_err = STDOUT});
    EXPECT_EQ(merged.std_err(), nullptr);
    auto [out, err] = co_await merged.communicate();
    EXPECT_EQ(out, "out\nerr\n");
    EXPECT_EQ(err, "");
    Process quiet = co_await create_subprocess_shell("echo hidden; cat",
                                                     {.std_in = DEVNULL, .std_out = DEVNULL});
    EXPECT_EQ(quiet.std_in(), nullptr);
    EXPECT_EQ(quiet.std_out(), nullptr);
    EXPECT_EQ(co_await quiet.wait(), 0);  // cat read EOF from /dev/null at once
  };
  run(main());
}

TEST_F(Subprocess, StdoutIsOnlyValidForStderr) {
  auto main = []() -> Coro<void> {
    EXPECT_THROW(co_await create_subprocess_exec("true", {}, {.std_out = STDOUT}), ValueError);
    EXPECT_THROW(co_await create_subprocess_exec("true", {}, {.std_in = STDOUT}), ValueError);
  };
  run(main());
}

TEST_F(Subprocess, RedirectToAnOpenHandle) {
  auto main = []() -> Coro<void> {
    int fds[2];
    EXPECT_EQ(::pipe2(fds, O_CLOEXEC), 0);
    Process proc = co_await create_subprocess_shell(
        "echo to-handle", {.std_out = subprocess::Redirect::to_handle(fds[1])});
    ::close(fds[1]);
    EXPECT_EQ(co_await proc.wait(), 0);
    char buffer[64] = {};
    const ssize_t n = ::read(fds[0], buffer, sizeof buffer);
    ::close(fds[0]);
    EXPECT_EQ(std::string(buffer, n > 0 ? static_cast<std::size_t>(n) : 0), "to-handle\n");
  };
  run(main());
}

TEST_F(Subprocess, CwdEnvAndExitCodes) {
  auto main = []() -> Coro<void> {
    SubprocessOptions options{.std_out = PIPE};
    options.cwd = "/";
    options.env = std::vector<std::string>{"GREETING=hi there"};
    Process proc = co_await create_subprocess_shell("pwd; echo \"$GREETING\"; exit 3", options);
    auto [out, err] = co_await proc.communicate();
    EXPECT_EQ(out, "/\nhi there\n");
    EXPECT_EQ(proc.returncode(), 3);
    EXPECT_EQ(co_await proc.wait(), 3);  // again: returns at once
  };
  run(main());
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

TEST_F(Subprocess, KillAndTerminateGiveNegativeSignalNumbers) {
  auto main = []() -> Coro<void> {
    Process a = co_await create_subprocess_exec("sleep", "30");
    a.kill();
    EXPECT_EQ(co_await a.wait(), -SIGKILL);
    EXPECT_EQ(a.returncode(), -SIGKILL);
    EXPECT_THROW(a.kill(), ProcessLookupError);  // reaped: the pid may belong to someone else
    Process b = co_await create_subprocess_exec("sleep", "30");
    b.terminate();
    EXPECT_EQ(co_await b.wait(), -SIGTERM);
    Process c = co_await create_subprocess_exec("sleep", "30");
    c.send_signal(SIGUSR1);
    EXPECT_EQ(co_await c.wait(), -SIGUSR1);
  };
  run(main());
}

TEST_F(Subprocess, MissingProgramRaisesFileNotFoundError) {
  auto main = []() -> Coro<void> {
    EXPECT_THROW(co_await create_subprocess_exec("corio-no-such-program-xyz"), FileNotFoundError);
    EXPECT_THROW(co_await create_subprocess_exec("/nonexistent/dir/prog", {},
                                                 {.std_in = PIPE, .std_out = PIPE}),
                 FileNotFoundError);
    SubprocessOptions options;
    options.cwd = "/nonexistent-directory-for-corio";
    EXPECT_THROW(co_await create_subprocess_exec("true", {}, options), FileNotFoundError);
    EXPECT_THROW(co_await create_subprocess_exec("/dev/null"), PermissionError);
  };
  run(main());
}

TEST_F(Subprocess, CancellingCommunicateLeavesTheChildKillable) {
  auto main = []() -> Coro<void> {
    Process proc = co_await create_subprocess_exec(
        "sleep", "30", SubprocessOptions{.std_in = PIPE, .std_out = PIPE, .std_err = PIPE});
    Task<std::pair<std::string, std::string>> talk = create_task(proc.communicate("input"));
    co_await sleep(0.02);
    EXPECT_FALSE(talk.done());
    talk.cancel();
    bool cancelled = false;
    try {
      co_await talk;
    } catch (const CancelledError&) {
      cancelled = true;
    }
    EXPECT_TRUE(cancelled);
    EXPECT_FALSE(proc.returncode().has_value());
    proc.kill();
    EXPECT_EQ(co_await proc.wait(), -SIGKILL);
  };
  run(main());
}

TEST_F(Subprocess, CancellingWaitAndReadLeavesTheChildAlone) {
  auto main = []() -> Coro<void> {
    Process proc = co_await create_subprocess_shell("echo first; exec sleep 30", {.std_out = PIPE});
    Task<int> waiter = create_task(proc.wait());
    Task<std::string> reader = create_task(proc.std_out()->read());  // until EOF: never
    co_await sleep(0.02);
    waiter.cancel();
    reader.cancel();
    bool wait_cancelled = false;
    bool read_cancelled = false;
    try {
      co_await waiter;
    } catch (const CancelledError&) {
      wait_cancelled = true;
    }
    try {
      co_await reader;
    } catch (const CancelledError&) {
      read_cancelled = true;
    }
    EXPECT_TRUE(wait_cancelled);
    EXPECT_TRUE(read_cancelled);
    EXPECT_FALSE(proc.returncode().has_value());
    // The bytes the cancelled read received are still there.
    EXPECT_EQ(co_await proc.std_out()->readline(), "first\n");
    proc.kill();
    EXPECT_EQ(co_await proc.wait(), -SIGKILL);
    EXPECT_EQ(co_await proc.std_out()->read(), "");
  };
  run(main());
}

TEST_F(Subprocess, CancellingDrainKeepsTheQueuedBytes) {
  auto main = []() -> Coro<void> {
    // The child reads nothing for a while, then counts what it got.
    Process proc =
        co_await create_subprocess_shell("sleep 0.1; wc -c", {.std_in = PIPE, .std_out = PIPE});
    PipeWriter& in = *proc.std_in();
    in.write(std::string(2 * 1024 * 1024, 'q'));
    Task<void> drain = create_task(in.drain());
    co_await sleep(0.01);
    EXPECT_FALSE(drain.done());
    drain.cancel();
    bool cancelled = false;
    try {
      co_await drain;
    } catch (const CancelledError&) {
      cancelled = true;
    }
    EXPECT_TRUE(cancelled);
    in.close();  // the queue is still sent, then stdin closes
    std::string count = co_await proc.std_out()->read();
    EXPECT_EQ(std::stoul(count), 2u * 1024u * 1024u);
    EXPECT_EQ(co_await proc.wait(), 0);
  };
  run(main());
}

TEST_F(Subprocess, TwoReadersAtOnceIsAnError) {
  auto main = []() -> Coro<void> {
    Process proc =
        co_await create_subprocess_exec("sleep", "30", SubprocessOptions{.std_out = PIPE});
    Task<std::string> first = create_task(proc.std_out()->read(10));
    co_await sleep(0.01);
    EXPECT_THROW(co_await proc.std_out()->read(10), RuntimeError);
    proc.kill();
    EXPECT_EQ(co_await first, "");  // EOF when the child dies
    co_await proc.wait();
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

TEST_F(Subprocess, VirtualTimeWaitsForARunningChild) {
  // With a child running, virtual time must not jump to a far timer: the child's exit is
  // real work in progress, as a socket read would be.
  for (bool pidfd : {true, false}) {
    detail::set_pidfd_child_watcher_enabled(pidfd);
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
  }
  detail::set_pidfd_child_watcher_enabled(true);
}

TEST_F(Subprocess, ManyChildrenAtOnce) {
  auto one = [](int i) -> Coro<std::string> {
    Process proc = co_await create_subprocess_exec("sh", "-c", "echo $0", std::to_string(i),
                                                   SubprocessOptions{.std_out = PIPE});
    auto [out, err] = co_await proc.communicate();
    co_return out;
  };
  auto main = [&one]() -> Coro<void> {
    std::vector<Coro<std::string>> all;
    for (int i = 0; i < 32; ++i) all.push_back(one(i));
    std::vector<std::string> outs = co_await gather(std::move(all));
    for (int i = 0; i < 32; ++i)
      EXPECT_EQ(outs[static_cast<std::size_t>(i)], std::to_string(i) + "\n");
  };
  run(main());
}

}  // namespace
}  // namespace corio

#endif  // _WIN32
