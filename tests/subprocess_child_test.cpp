// The portable subprocess suite, run on every platform: it drives tests/subprocess_child.cpp,
// a helper program built next to this test, instead of sh, cat or head (Windows has none), so
// one set of expectations holds on POSIX (epoll, io_uring) and on Windows (IOCP, named pipes,
// CreateProcessW): pipes in both directions, communicate() without deadlocks, exit codes,
// terminate/kill, argument quoting, cwd/env, cancellation at every await, and no handle
// leaks. Where Windows differs (no signals: a terminated child's returncode is 1, not
// -SIGTERM), the expectation says so. It must never depend on a POSIX tool or on signals
// beyond terminate/kill: what only POSIX has (the shell, signal setup, zombies, pidfd and
// the reaping thread) belongs in subprocess_test.cpp.
#include <gtest/gtest.h>
#include <corio/corio.hpp>
#include <corio/subprocess.hpp>

#include <csignal>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#ifdef _WIN32
// clang-format off
#include <windows.h>
// clang-format on
#else
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#endif

namespace corio {
namespace {

using subprocess::DEVNULL;
using subprocess::PIPE;
using subprocess::STDOUT;

#ifdef _WIN32
constexpr int kTerminated = 1;  // TerminateProcess(handle, 1), as Python's Popen.terminate
constexpr int kKilled = 1;
#else
constexpr int kTerminated = -SIGTERM;
constexpr int kKilled = -SIGKILL;
#endif

// POSIX: a test must leave no child behind, neither running nor a zombie (Windows has no
// zombies, and a dropped Process only closes its handle there).
class SubprocessChild : public ::testing::Test {
 protected:
  void TearDown() override {
#ifndef _WIN32
    if (child_may_outlive_test_) return;
    int status = 0;
    errno = 0;
    const pid_t r = ::waitpid(-1, &status, WNOHANG);
    EXPECT_EQ(r, -1) << "a child is still running or was left as a zombie (pid " << r << ")";
    EXPECT_EQ(errno, ECHILD);
#endif
  }
  // For the one test whose child outlives its loop on purpose; its reaping is asserted by
  // Subprocess.ChildOutlivingItsLoopIsReapedAnyway.
  bool child_may_outlive_test_ = false;
};

// The helper program, next to this test's executable.
std::string child_program() {
#ifdef _WIN32
  wchar_t self[MAX_PATH];
  const DWORD n = ::GetModuleFileNameW(nullptr, self, MAX_PATH);
  std::filesystem::path path(std::wstring(self, n));
  const std::u8string utf8 = path.replace_filename("subprocess_child.exe").u8string();
  return std::string(utf8.begin(), utf8.end());
#else
  return (std::filesystem::read_symlink("/proc/self/exe").parent_path() / "subprocess_child")
      .string();
#endif
}

// The helper with these arguments (and options, last), as create_subprocess_exec takes them.
template <class... Args>
Coro<Process> child(Args&&... args) {
  return create_subprocess_exec(child_program(), std::forward<Args>(args)...);
}

// Cancels `task` and awaits it: true when it ended in CancelledError, as it must here.
template <class T>
Coro<bool> cancel_and_await(Task<T>& task) {
  task.cancel();
  bool cancelled = false;
  try {
    co_await task;
  } catch (const CancelledError&) {
    cancelled = true;
  }
  co_return cancelled;
}

long self_pid() {
#ifdef _WIN32
  return static_cast<long>(::GetCurrentProcessId());
#else
  return static_cast<long>(::getpid());
#endif
}

// Handles (Windows) or descriptors (POSIX) this process has open.
long open_handles() {
#ifdef _WIN32
  // Every valid handle value, probed: wine's GetProcessHandleCount always says 0.
  long n = 0;
  DWORD flags = 0;
  for (ULONG_PTR value = 4; value < 0x40000; value += 4) {
    if (::GetHandleInformation(reinterpret_cast<HANDLE>(value), &flags)) ++n;
  }
  return n;
#else
  long n = 0;
  for ([[maybe_unused]] const auto& entry : std::filesystem::directory_iterator("/proc/self/fd"))
    ++n;
  return n;
#endif
}

TEST_F(SubprocessChild, CatEchoesThroughCommunicate) {
  auto main = []() -> Coro<void> {
    SubprocessOptions options{.std_in = PIPE, .std_out = PIPE, .std_err = PIPE};
    Process proc = co_await child("cat", options);
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

TEST_F(SubprocessChild, LargeOutputOnBothPipesAtOnce) {
  auto main = []() -> Coro<void> {
    // All of stdout first, then all of stderr: stdout alone is far more than a pipe holds,
    // so only reading both at once lets the child finish.
    Process proc = co_await child("fill", "8000000", "8000000",
                                  SubprocessOptions{.std_out = PIPE, .std_err = PIPE});
    auto [out, err] = co_await proc.communicate();
    EXPECT_EQ(out.size(), 8000000u);
    EXPECT_EQ(err.size(), 8000000u);
    EXPECT_EQ(out.find_first_not_of('o'), std::string::npos);
    EXPECT_EQ(err.find_first_not_of('e'), std::string::npos);
    EXPECT_EQ(co_await proc.wait(), 0);
  };
  run(main());
}

TEST_F(SubprocessChild, InterleavedOutputWhileWeStillWriteInputDoesNotDeadlock) {
  auto main = []() -> Coro<void> {
    Process proc =
        co_await child("cat-to-stderr", "done\n",
                       SubprocessOptions{.std_in = PIPE, .std_out = PIPE, .std_err = PIPE});
    std::string input(4 * 1024 * 1024, 'x');
    auto [out, err] = co_await proc.communicate(input);
    EXPECT_EQ(out, "done\n");
    EXPECT_EQ(err, input);
    EXPECT_EQ(proc.returncode(), 0);
  };
  run(main());
}

TEST_F(SubprocessChild, ChildThatNeverReadsItsStdinDoesNotBlockCommunicate) {
  auto main = []() -> Coro<void> {
    const std::string ten_mb(10 * 1024 * 1024, 'y');
    Process quick = co_await child("exit", "0", SubprocessOptions{.std_in = PIPE, .std_out = PIPE});
    auto [out1, err1] = co_await quick.communicate(ten_mb);
    EXPECT_EQ(out1, "");
    EXPECT_EQ(quick.returncode(), 0);
    // Closes stdin first, then writes and exits a little later: the pipe breaks mid-write.
    Process closer = co_await child("close-stdin-then", "50", "done\n",
                                    SubprocessOptions{.std_in = PIPE, .std_out = PIPE});
    auto [out2, err2] = co_await closer.communicate(ten_mb);
    EXPECT_EQ(out2, "done\n");
    EXPECT_EQ(closer.returncode(), 0);
    // Holds stdin open without reading until it exits.
    Process sleeper = co_await child("sleep", "50", SubprocessOptions{.std_in = PIPE});
    auto [out3, err3] = co_await sleeper.communicate(ten_mb);
    EXPECT_EQ(out3, "");
    EXPECT_EQ(sleeper.returncode(), 0);
  };
  run(main());  // and, above all, this process was not killed by SIGPIPE (POSIX)
}

TEST_F(SubprocessChild, DrainAfterTheChildLeftRaisesConnectionResetAndWaitClosedBrokenPipe) {
  auto main = []() -> Coro<void> {
    Process proc = co_await child("exit", "0", SubprocessOptions{.std_in = PIPE});
    EXPECT_EQ(co_await proc.wait(), 0);
    PipeWriter& in = *proc.std_in();
    in.write(std::string(1024 * 1024, 'z'));  // more than the pipe can take
    // ConnectionResetError where the write fails at once (readiness backends, as asyncio's
    // synchronous write); a completion backend learns it while drain() waits:
    // BrokenPipeError, as the test below.
    EXPECT_THROW(co_await in.drain(), ConnectionError);
    EXPECT_TRUE(in.is_closing());
    EXPECT_THROW(co_await in.wait_closed(), BrokenPipeError);
    in.write("ignored once the pipe is lost");
    EXPECT_EQ(in.get_write_buffer_size(), 0u);
  };
  run(main());
}

// drain() waiting when the child exits without reading gets the BrokenPipeError that ended
// the pipe (asyncio hands its drain waiters connection_lost's exception); a drain after that
// raises ConnectionResetError.
TEST_F(SubprocessChild, DrainWaitingWhenTheChildLeavesRaisesBrokenPipe) {
  auto main = []() -> Coro<void> {
    Process proc = co_await child("sleep", "100", SubprocessOptions{.std_in = PIPE});
    PipeWriter& in = *proc.std_in();
    in.write(std::string(1024 * 1024, 'z'));  // more than the pipe can take
    EXPECT_THROW(co_await wait_for(in.drain(), 30.0), BrokenPipeError);
    EXPECT_THROW(co_await in.drain(), ConnectionResetError);
    EXPECT_EQ(co_await proc.wait(), 0);
  };
  run(main());
}

TEST_F(SubprocessChild, WriteDrainCloseThenReadTheAnswer) {
  auto main = []() -> Coro<void> {
    Process proc = co_await child("count", SubprocessOptions{.std_in = PIPE, .std_out = PIPE});
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
    EXPECT_EQ(answer, std::to_string(16u * 64u * 1024u + 3u));
    EXPECT_TRUE(proc.std_out()->at_eof());
    EXPECT_EQ(co_await proc.wait(), 0);
  };
  run(main());
}

TEST_F(SubprocessChild, ReadlineReadexactlyAndReaduntil) {
  auto main = []() -> Coro<void> {
    Process proc = co_await child("print", "a\\nbb\\nccc;dd;0123456789tail",
                                  SubprocessOptions{.std_out = PIPE});
    PipeReader& out = *proc.std_out();
    EXPECT_EQ(co_await out.readline(), "a\n");
    EXPECT_EQ(co_await out.readline(), "bb\n");
    EXPECT_EQ(co_await out.readuntil(";"), "ccc;");
    // Several separators (named: GCC 12 cannot compile a braced list inside co_await).
    const std::vector<std::string> dd_first = {"\n", ";", "dd"};
    EXPECT_EQ(co_await out.readuntil(dd_first), "dd");
    const std::vector<std::string> none;
    EXPECT_THROW(co_await out.readuntil(none), ValueError);
    Coro<std::string> semicolon = out.readuntil({"0123", ";"});
    EXPECT_EQ(co_await std::move(semicolon), ";");
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

TEST_F(SubprocessChild, AZeroLengthWriteIsNotEof) {
  auto main = []() -> Coro<void> {
    Process proc = co_await child("zero-write-then", "after", SubprocessOptions{.std_out = PIPE});
    EXPECT_EQ(co_await proc.std_out()->read(), "after");  // the read is pending at the write
    EXPECT_TRUE(proc.std_out()->at_eof());
    EXPECT_EQ(co_await proc.wait(), 0);
  };
  run(main());
}

TEST_F(SubprocessChild, OverlongLineRaisesAndIsDiscarded) {
  auto main = []() -> Coro<void> {
    SubprocessOptions options{.std_out = PIPE};
    options.limit = 16;
    Process proc = co_await child("print", "0123456789abcdefghij\\nok\\ntail", options);
    EXPECT_THROW(co_await proc.std_out()->readline(), ValueError);
    EXPECT_EQ(co_await proc.std_out()->readline(), "ok\n");
    EXPECT_EQ(co_await proc.std_out()->readline(), "tail");  // the partial line at EOF
    EXPECT_EQ(co_await proc.std_out()->readline(), "");
    co_await proc.wait();
  };
  run(main());
}

TEST_F(SubprocessChild, StderrIntoStdoutAndDevnull) {
  auto main = []() -> Coro<void> {
    Process merged = co_await child("out-err", "out\n", "err\n",
                                    SubprocessOptions{.std_out = PIPE, .std_err = STDOUT});
    EXPECT_EQ(merged.std_err(), nullptr);
    auto [out, err] = co_await merged.communicate();
    EXPECT_EQ(out, "out\nerr\n");
    EXPECT_EQ(err, "");
    Process quiet = co_await child("cat", SubprocessOptions{.std_in = DEVNULL, .std_out = DEVNULL});
    EXPECT_EQ(quiet.std_in(), nullptr);
    EXPECT_EQ(quiet.std_out(), nullptr);
    EXPECT_EQ(co_await quiet.wait(), 0);  // cat read EOF from the null device at once
    Process hidden = co_await child("print", "hidden\\n", SubprocessOptions{.std_out = DEVNULL});
    EXPECT_EQ(co_await hidden.wait(), 0);  // its writes went to the null device
  };
  run(main());
}

TEST_F(SubprocessChild, StdoutIsOnlyValidForStderr) {
  auto main = []() -> Coro<void> {
    EXPECT_THROW(co_await child("exit", SubprocessOptions{.std_out = STDOUT}), ValueError);
    EXPECT_THROW(co_await child("exit", SubprocessOptions{.std_in = STDOUT}), ValueError);
  };
  run(main());
}

TEST_F(SubprocessChild, RedirectToAnOpenHandle) {
  auto main = []() -> Coro<void> {
#ifdef _WIN32
    HANDLE read_end = nullptr;
    HANDLE write_end = nullptr;
    EXPECT_TRUE(::CreatePipe(&read_end, &write_end, nullptr, 0));  // not inheritable
    const auto target = reinterpret_cast<core::NativeHandle>(write_end);
#else
    int fds[2];
    EXPECT_EQ(::pipe2(fds, O_CLOEXEC), 0);
    const core::NativeHandle target = fds[1];
#endif
    SubprocessOptions options{.std_out = subprocess::Redirect::to_handle(target)};
    Process proc = co_await child("print", "to-handle\\n", options);
#ifdef _WIN32
    ::CloseHandle(write_end);  // the child has its own copy
#else
    ::close(fds[1]);
#endif
    EXPECT_EQ(co_await proc.wait(), 0);
    char buffer[64] = {};
    std::size_t got = 0;
#ifdef _WIN32
    DWORD n = 0;
    if (::ReadFile(read_end, buffer, sizeof buffer, &n, nullptr)) got = n;
    ::CloseHandle(read_end);
#else
    const ssize_t n = ::read(fds[0], buffer, sizeof buffer);
    if (n > 0) got = static_cast<std::size_t>(n);
    ::close(fds[0]);
#endif
    EXPECT_EQ(std::string(buffer, got), "to-handle\n");
  };
  run(main());
}

TEST_F(SubprocessChild, CwdEnvAndExitCodes) {
  const std::filesystem::path dir = std::filesystem::temp_directory_path() /
                                    ("corio-subprocess-cwd-" + std::to_string(self_pid()));
  std::filesystem::create_directories(dir);
  auto main = [](std::filesystem::path dir) -> Coro<void> {
    SubprocessOptions options{.std_out = PIPE};
    options.cwd = dir.string();
    Process in_dir = co_await child("cwd", options);
    auto [where, err1] = co_await in_dir.communicate();
    EXPECT_FALSE(where.empty());
    if (!where.empty()) {
      where.pop_back();  // the newline
      EXPECT_TRUE(std::filesystem::equivalent(where, dir)) << where << " vs " << dir;
    }
    SubprocessOptions with_env{.std_out = PIPE};
    with_env.env = std::vector<std::string>{"GREETING=hi there", "OTHER=x"};
    Process greeter = co_await child("env", "GREETING", with_env);
    auto [greeting, err2] = co_await greeter.communicate();
    EXPECT_EQ(greeting, "hi there\n");
    with_env.env = std::vector<std::string>{};
    Process bare = co_await child("env", "GREETING", with_env);
    auto [nothing, err3] = co_await bare.communicate();
    EXPECT_EQ(nothing, "<unset>\n");
    Process exits = co_await child("exit", "3");
    EXPECT_EQ(co_await exits.wait(), 3);
    EXPECT_EQ(exits.returncode(), 3);
    EXPECT_EQ(co_await exits.wait(), 3);  // again: returns at once
    Process big = co_await child("exit", "200", SubprocessOptions{.std_out = PIPE});
    auto [none, err4] = co_await big.communicate();
    EXPECT_EQ(none, "");
    EXPECT_EQ(big.returncode(), 200);  // set by communicate() itself
    EXPECT_EQ(co_await big.wait(), 200);
  };
  run(main(dir));
  std::filesystem::remove(dir);
}

TEST_F(SubprocessChild, ArgumentsArriveExactlyAsGiven) {
  auto main = []() -> Coro<void> {
    // The hard cases of the Windows command line: empty arguments, spaces and tabs, quotes,
    // backslashes before quotes and at the end of a quoted argument.
    const std::vector<std::string> args = {
        "plain",       "",           "two words",         "tab\there", "quote\"inside", "\"",
        "back\\slash", "trailing\\", "trailing space\\ ", "a\\\\\"b",  "\\\\",          "end \\\\"};
    std::vector<std::string> argv = {"args"};
    argv.insert(argv.end(), args.begin(), args.end());
    SubprocessOptions options{.std_out = PIPE};
    Process proc = co_await child(argv, options);
    auto [out, err] = co_await proc.communicate();
    std::string expected;
    for (const std::string& a : args) expected += std::to_string(a.size()) + ":" + a + "\n";
    EXPECT_EQ(out, expected);
    EXPECT_EQ(proc.returncode(), 0);
  };
  run(main());
}

TEST_F(SubprocessChild, ShellRunsTheCommandLine) {
  auto main = []() -> Coro<void> {
#ifdef _WIN32
    Process echo = co_await create_subprocess_shell("echo hello& exit /b 5", {.std_out = PIPE});
    auto [out, err] = co_await echo.communicate();
    EXPECT_EQ(out, "hello\r\n");  // cmd.exe's echo ends lines with CRLF
    EXPECT_EQ(echo.returncode(), 5);
    // A quoted program path and quoted arguments survive cmd.exe's /c quote stripping.
    const std::string line = "\"" + child_program() + "\" args \"a b\" c";
#else
    Process echo = co_await create_subprocess_shell("echo hello; exit 5", {.std_out = PIPE});
    auto [out, err] = co_await echo.communicate();
    EXPECT_EQ(out, "hello\n");
    EXPECT_EQ(echo.returncode(), 5);
    const std::string line = "'" + child_program() + "' args 'a b' c";
#endif
    Process helper = co_await create_subprocess_shell(line, {.std_out = PIPE});
    auto [args, err2] = co_await helper.communicate();
    EXPECT_EQ(args, "3:a b\n1:c\n");
    EXPECT_EQ(helper.returncode(), 0);
  };
  run(main());
}

TEST_F(SubprocessChild, MissingProgramAndDirectoryRaise) {
  auto main = []() -> Coro<void> {
    EXPECT_THROW(co_await create_subprocess_exec("corio-no-such-program-xyz"), FileNotFoundError);
    SubprocessOptions piped{.std_in = PIPE, .std_out = PIPE};
    EXPECT_THROW(co_await create_subprocess_exec("/nonexistent/dir/prog", {}, piped),
                 FileNotFoundError);
    SubprocessOptions options;
    options.cwd = (std::filesystem::temp_directory_path() / "corio-no-such-directory").string();
    // POSIX: FileNotFoundError; Windows: ERROR_DIRECTORY, NotADirectoryError as in Python.
    EXPECT_THROW(co_await child("exit", "0", options), OSError);
  };
  run(main());
}

TEST_F(SubprocessChild, KillTerminateAndSendSignal) {
  auto main = []() -> Coro<void> {
    Process a = co_await child("sleep", "30000");
    a.kill();
    EXPECT_EQ(co_await a.wait(), kKilled);
    EXPECT_EQ(a.returncode(), kKilled);
    EXPECT_THROW(a.kill(), ProcessLookupError);
    EXPECT_THROW(a.terminate(), ProcessLookupError);
    Process b = co_await child("sleep", "30000");
    b.terminate();
    EXPECT_EQ(co_await b.wait(), kTerminated);
    Process c = co_await child("sleep", "30000");
    c.send_signal(SIGTERM);
    EXPECT_EQ(co_await c.wait(), kTerminated);
#ifdef _WIN32
    Process d = co_await child("sleep", "30000");
    EXPECT_THROW(d.send_signal(SIGINT), NotImplementedError);
    EXPECT_THROW(d.send_signal(SIGBREAK), NotImplementedError);
    EXPECT_THROW(d.send_signal(12345), ValueError);
    EXPECT_FALSE(d.returncode().has_value());
    d.kill();
    EXPECT_EQ(co_await d.wait(), kKilled);
#endif
  };
  run(main());
}

TEST_F(SubprocessChild, CancellingCommunicateLeavesTheChildKillable) {
  auto main = []() -> Coro<void> {
    Process proc = co_await child(
        "sleep", "30000", SubprocessOptions{.std_in = PIPE, .std_out = PIPE, .std_err = PIPE});
    Task<std::pair<std::string, std::string>> talk = create_task(proc.communicate("input"));
    co_await sleep(0.02);
    EXPECT_FALSE(talk.done());
    const bool cancelled = co_await cancel_and_await(talk);
    EXPECT_TRUE(cancelled);
    EXPECT_FALSE(proc.returncode().has_value());
    proc.kill();
    EXPECT_EQ(co_await proc.wait(), kKilled);
  };
  run(main());
}

TEST_F(SubprocessChild, CancellingWaitAndReadLosesNothing) {
  auto main = []() -> Coro<void> {
    Process proc =
        co_await child("print-then-sleep", "first\\n", "30000", SubprocessOptions{.std_out = PIPE});
    Task<int> waiter = create_task(proc.wait());
    Task<std::string> reader = create_task(proc.std_out()->read());  // until EOF: never
    co_await sleep(0.05);
    const bool wait_cancelled = co_await cancel_and_await(waiter);
    const bool read_cancelled = co_await cancel_and_await(reader);
    EXPECT_TRUE(wait_cancelled);
    EXPECT_TRUE(read_cancelled);
    EXPECT_FALSE(proc.returncode().has_value());
    // The bytes the cancelled read received are still there.
    EXPECT_EQ(co_await proc.std_out()->readline(), "first\n");
    proc.kill();
    EXPECT_EQ(co_await proc.wait(), kKilled);
    EXPECT_EQ(co_await proc.std_out()->read(), "");
  };
  run(main());
}

TEST_F(SubprocessChild, CancellingDrainKeepsTheQueuedBytes) {
  auto main = []() -> Coro<void> {
    // The child reads nothing for a while, then counts what it got.
    Process proc = co_await child("sleep-then-count", "100",
                                  SubprocessOptions{.std_in = PIPE, .std_out = PIPE});
    PipeWriter& in = *proc.std_in();
    in.write(std::string(2 * 1024 * 1024, 'q'));
    Task<void> drain = create_task(in.drain());
    co_await sleep(0.01);
    EXPECT_FALSE(drain.done());
    const bool cancelled = co_await cancel_and_await(drain);
    EXPECT_TRUE(cancelled);
    in.close();  // the queue is still sent, then stdin closes
    std::string count = co_await proc.std_out()->read();
    EXPECT_EQ(count, std::to_string(2u * 1024u * 1024u));
    EXPECT_EQ(co_await proc.wait(), 0);
  };
  run(main());
}

TEST_F(SubprocessChild, TwoReadersAtOnceIsAnError) {
  auto main = []() -> Coro<void> {
    Process proc = co_await child("sleep", "30000", SubprocessOptions{.std_out = PIPE});
    Task<std::string> first = create_task(proc.std_out()->read(10));
    co_await sleep(0.01);
    EXPECT_THROW(co_await proc.std_out()->read(10), RuntimeError);
    proc.kill();
    EXPECT_EQ(co_await first, "");  // EOF when the child dies
    co_await proc.wait();
  };
  run(main());
}

TEST_F(SubprocessChild, DroppedAndOutlivingProcessesAreHarmless) {
  child_may_outlive_test_ = true;
  std::optional<Process> kept;
  auto main = [](std::optional<Process>& kept) -> Coro<void> {
    {
      Process dropped =
          co_await child("sleep", "50", SubprocessOptions{.std_in = PIPE, .std_out = PIPE});
      dropped.std_in()->write("never read");
    }
    // A child still running when its loop closes, with a read and a write in flight. Two
    // seconds, not less: spawning and waiting for the "exit" child below can take a good
    // part of a second under wine on a loaded machine.
    kept.emplace(
        co_await child("sleep", "2000", SubprocessOptions{.std_in = PIPE, .std_out = PIPE}));
    kept->std_in()->write(std::string(1024 * 1024, 'k'));
    Task<std::string> reading = create_task(kept->std_out()->read());
    co_await sleep(0.01);
    EXPECT_FALSE(reading.done());
    const bool cancelled = co_await cancel_and_await(reading);
    EXPECT_TRUE(cancelled);
    Process other = co_await child("exit", "4");
    EXPECT_EQ(co_await other.wait(), 4);  // the loop carries on
  };
  run(main(kept));
  EXPECT_GT(kept->pid(), 0);
  EXPECT_FALSE(kept->returncode().has_value());
  kept.reset();  // after the loop is gone: must not touch it
}

TEST_F(SubprocessChild, VirtualTimeWaitsForARunningChild) {
  auto main = []() -> Coro<void> {
    EventLoop& loop = get_running_loop();
    Task<void> far_timer = create_task([]() -> Coro<void> { co_await sleep(50); }());
    Process proc = co_await child("sleep", "50");
    const double start = loop.time();
    EXPECT_EQ(co_await proc.wait(), 0);
    EXPECT_LT(loop.time() - start, 50.0);
    far_timer.cancel();
  };
  run(main(), Runner::Options{.virtual_time = true});
}

TEST_F(SubprocessChild, ManyChildrenAtOnce) {
  auto one = [](int i) -> Coro<std::string> {
    std::vector<std::string> args{"args", std::to_string(i)};
    SubprocessOptions options{.std_in = PIPE, .std_out = PIPE, .std_err = PIPE};
    Process proc = co_await child(args, options);
    auto [out, err] = co_await proc.communicate();
    co_return out;
  };
  auto main = [&one]() -> Coro<void> {
    std::vector<Coro<std::string>> all;
    for (int i = 0; i < 32; ++i) all.push_back(one(i));
    std::vector<std::string> outs = co_await gather(std::move(all));
    for (int i = 0; i < 32; ++i) {
      const std::string s = std::to_string(i);
      EXPECT_EQ(outs[static_cast<std::size_t>(i)], std::to_string(s.size()) + ":" + s + "\n");
    }
  };
  run(main());
}

TEST_F(SubprocessChild, LoopsOnTwoThreadsSpawnAtOnce) {
  // Each child must see EOF on stdin and we on its stdout: a pipe end inherited by a child
  // of the other thread would hold them open until that child exits.
  auto batch = [](int base) {
    auto main = [](int base) -> Coro<void> {
      for (int i = 0; i < 8; ++i) {
        Process proc = co_await child("cat", SubprocessOptions{.std_in = PIPE, .std_out = PIPE});
        const std::string line = std::to_string(base + i) + "\n";
        auto [out, err] = co_await proc.communicate(line);
        EXPECT_EQ(out, line);
        EXPECT_EQ(proc.returncode(), 0);
      }
    };
    run(main(base));
  };
  std::thread other(batch, 100);
  batch(0);
  other.join();
}

TEST_F(SubprocessChild, NoHandleIsLeaked) {
  auto batch = []() -> Coro<void> {
    for (int i = 0; i < 20; ++i) {
      Process proc =
          co_await child("cat-to-stderr", "x",
                         SubprocessOptions{.std_in = PIPE, .std_out = PIPE, .std_err = PIPE});
      auto [out, err] = co_await proc.communicate("y");
      EXPECT_EQ(out, "x");
      EXPECT_EQ(err, "y");
      Process killed =
          co_await child("sleep", "30000", SubprocessOptions{.std_in = PIPE, .std_out = PIPE});
      killed.kill();
      co_await killed.wait();
    }
  };
  run(batch());  // warm-up: thread pools and the like take their handles once
  const long before = open_handles();
  run(batch());
  const long after = open_handles();
  // Five handles per round would be 100: allow a few for threads that come and go.
  EXPECT_LT(after - before, 10) << before << " before, " << after << " after";
}

}  // namespace
}  // namespace corio
