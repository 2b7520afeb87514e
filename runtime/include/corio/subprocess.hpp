// Subprocesses (asyncio.create_subprocess_exec / create_subprocess_shell and
// asyncio.subprocess.Process), with the child's stdin/stdout/stderr as pipe streams.
//
//   using corio::subprocess::PIPE;
//   auto proc = co_await corio::create_subprocess_exec(
//       "sort", "-r", corio::SubprocessOptions{.std_in = PIPE, .std_out = PIPE});
//   auto [out, err] = co_await proc.communicate("b\na\n");
//   int code = co_await proc.wait();
//
// PipeReader / PipeWriter are twins of StreamReader / StreamWriter (same methods, same
// semantics) over a pipe. The reader pulls: bytes are read from the pipe when a read needs
// them. The writer pushes: write() never blocks, queues bytes and sends them in the
// background; drain() waits while more than the high-water mark is queued. A child that
// exits without reading its stdin makes drain() raise BrokenPipeError; it never raises
// SIGPIPE in this process.
//
// Names differ from Python where C++ forces it: `stdin`/`stdout`/`stderr` are macros in C, so
// the options are std_in/std_out/std_err and the streams proc.std_in()/std_out()/std_err()
// (nullptr when not PIPE, as Python's None). Python's None redirection is
// subprocess::INHERIT.
//
// A child is always watched to its exit, even when its Process is dropped early or its loop
// closes first: on POSIX it is reaped through a pidfd where the kernel has one, else by a
// waiting thread (corio never leaves zombies); on Windows a registered wait on the process
// handle reports the exit.
// This header must never name a platform type. The implementation: subprocess_common.cpp and
// subprocess_pipes.cpp on every platform, subprocess_posix.cpp (posix_spawn) or
// subprocess_win32.cpp (CreateProcessW, named pipes) for what differs.
#pragma once

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "corio/core/operation.hpp"
#include "corio/coro.hpp"
#include "corio/detail/separator_list.hpp"

namespace corio {

namespace detail {
class ProcessState;
class PipeReaderState;
class PipeWriterState;
}  // namespace detail

namespace subprocess {

// Where one of the child's standard streams goes (Python's stdin=/stdout=/stderr= values).
struct Redirect {
  enum class Kind : std::uint8_t { inherit, pipe, devnull, stdout_, handle };
  Kind kind = Kind::inherit;
  core::NativeHandle handle = core::kInvalidHandle;

  // An already open file, pipe or socket (Python: an int fd); the child gets a copy.
  static constexpr Redirect to_handle(core::NativeHandle h) noexcept { return {Kind::handle, h}; }
  constexpr bool operator==(const Redirect&) const = default;
};

inline constexpr Redirect INHERIT{Redirect::Kind::inherit};  // Python's None
inline constexpr Redirect PIPE{Redirect::Kind::pipe};
inline constexpr Redirect DEVNULL{Redirect::Kind::devnull};
inline constexpr Redirect STDOUT{Redirect::Kind::stdout_};  // stderr only: into stdout

}  // namespace subprocess

// With g++ 12, when cwd or env is set, build the options before the co_await expression
// (`SubprocessOptions options; options.cwd = dir;`): g++ 12 copies an aggregate temporary
// written inside a co_await expression bytewise and then destroys both copies, which frees
// the string twice. Options that set only the redirections and flags are safe inline.
struct SubprocessOptions {
  subprocess::Redirect std_in = subprocess::INHERIT;
  subprocess::Redirect std_out = subprocess::INHERIT;
  subprocess::Redirect std_err = subprocess::INHERIT;
  // Working directory of the child (Python: cwd=).
  std::optional<std::string> cwd;
  // The child's whole environment as "NAME=value" strings (Python: env=); nullopt: ours.
  std::optional<std::vector<std::string>> env;
  // setsid() in the child; on Windows, a new process group (Python: start_new_session=True).
  bool start_new_session = false;
  // Buffer limit of the stdout/stderr readers (asyncio's limit=, 64 KiB).
  std::size_t limit = 64 * 1024;
};

// The child's stdout or stderr (asyncio gives a StreamReader; same methods).
class PipeReader {
 public:
  explicit PipeReader(std::shared_ptr<detail::PipeReaderState> state) noexcept
      : state_(std::move(state)) {}

  // Up to n bytes (n < 0: everything until EOF). Empty at EOF.
  Coro<std::string> read(std::ptrdiff_t n = -1);
  // One line including "\n"; at EOF the partial line (or empty). ValueError when a line
  // exceeds the limit (the line is discarded, as asyncio does).
  Coro<std::string> readline();
  // Exactly n bytes; IncompleteReadError (carrying the partial bytes) if EOF comes first.
  Coro<std::string> readexactly(std::size_t n);
  // Up to and including `separator`; LimitOverrunError if the limit is reached first (the
  // data stays buffered), IncompleteReadError at EOF.
  Coro<std::string> readuntil(std::string separator = "\n");
  // asyncio 3.13's tuple: up to and including the separator that ends first (see
  // StreamReader::readuntil, also for GCC 12 and braced lists in co_await).
  Coro<std::string> readuntil(std::initializer_list<std::string_view> separators);
  template <detail::SeparatorList R>
  Coro<std::string> readuntil(const R& separators) {
    return readuntil_several(
        std::vector<std::string>(std::begin(separators), std::end(separators)));
  }
  bool at_eof() const noexcept;

  const std::shared_ptr<detail::PipeReaderState>& state() const noexcept { return state_; }

 private:
  Coro<std::string> readuntil_several(std::vector<std::string> separators);

  std::shared_ptr<detail::PipeReaderState> state_;
};

// The child's stdin (asyncio gives a StreamWriter; same methods).
class PipeWriter {
 public:
  explicit PipeWriter(std::shared_ptr<detail::PipeWriterState> state) noexcept
      : state_(std::move(state)) {}

  // Queues bytes and starts writing; never blocks. Ignored once the pipe is closed or
  // broken, as asyncio's transport does.
  void write(std::string_view data);
  void writelines(std::initializer_list<std::string_view> lines);
  // Waits while more than the high-water mark (64 KiB) is queued, until the queue falls to
  // the low-water mark. BrokenPipeError once the child has closed its end;
  // ConnectionResetError after close().
  Coro<void> drain();
  // Closes after the queued bytes are written (the child then reads EOF).
  void close();
  bool can_write_eof() const noexcept { return true; }
  void write_eof() { close(); }
  bool is_closing() const noexcept;
  // Waits until the pipe is closed.
  Coro<void> wait_closed();
  std::size_t get_write_buffer_size() const noexcept;

  const std::shared_ptr<detail::PipeWriterState>& state() const noexcept { return state_; }

 private:
  std::shared_ptr<detail::PipeWriterState> state_;
};

// asyncio.subprocess.Process.
class Process {
 public:
  // What create_subprocess_* build; null pipes are streams that are not PIPE.
  Process(std::shared_ptr<detail::ProcessState> state,
          std::shared_ptr<detail::PipeWriterState> std_in,
          std::shared_ptr<detail::PipeReaderState> std_out,
          std::shared_ptr<detail::PipeReaderState> std_err);
  Process(Process&&) noexcept;
  Process& operator=(Process&&) noexcept;
  // Drops its pipe handles (a pipe closes with its last handle: stdin after flushing); the
  // child keeps running and is still reaped when it exits.
  ~Process();

  int pid() const noexcept;
  // The exit status once the child is reaped: its exit code, or -N when signal N killed it
  // (POSIX; on Windows terminate() and kill() leave exit code 1, as Python).
  std::optional<int> returncode() const noexcept;
  PipeWriter* std_in() noexcept { return std_in_ ? &*std_in_ : nullptr; }
  PipeReader* std_out() noexcept { return std_out_ ? &*std_out_ : nullptr; }
  PipeReader* std_err() noexcept { return std_err_ ? &*std_err_ : nullptr; }

  // Waits for the child to exit; returns (and sets) returncode. With stdout/stderr piped
  // and not read, a child that fills a pipe never exits: use communicate().
  Coro<int> wait();
  // Writes `input` to stdin (then closes it) while reading stdout and stderr to EOF, all at
  // once, then waits for the exit. Returns (stdout, stderr); a stream that is not PIPE gives
  // an empty string (Python: None). A child that does not read its stdin is not an error.
  Coro<std::pair<std::string, std::string>> communicate(std::string input = {});

  // ProcessLookupError once the child has been reaped.
  void send_signal(int sig);
  // SIGTERM / SIGKILL on POSIX; TerminateProcess on Windows, where send_signal takes SIGTERM
  // (terminates), raises NotImplementedError for SIGINT/SIGBREAK, ValueError for the rest.
  void terminate();
  void kill();

 private:
  std::shared_ptr<detail::ProcessState> state_;
  std::optional<PipeWriter> std_in_;
  std::optional<PipeReader> std_out_;
  std::optional<PipeReader> std_err_;
};

// asyncio.create_subprocess_exec(program, *args, ...): runs `program` with `args` after
// argv[0]. FileNotFoundError / PermissionError when it cannot be executed. POSIX searches
// PATH when `program` has no '/'; Windows searches as CreateProcessW does and passes argv as
// one command line quoted by the MSVC rules (as Python's list2cmdline).
Coro<Process> create_subprocess_exec(std::string program, std::vector<std::string> args = {},
                                     SubprocessOptions options = {});

namespace detail {
template <class A>
concept SubprocessArgument = std::convertible_to<const A&, std::string_view> ||
    std::same_as<std::remove_cvref_t<A>, SubprocessOptions>;
inline void add_subprocess_argument(std::vector<std::string>& argv, SubprocessOptions&,
                                    std::string_view arg) {
  argv.emplace_back(arg);
}
inline void add_subprocess_argument(std::vector<std::string>&, SubprocessOptions& options,
                                    SubprocessOptions given) {
  options = std::move(given);
}
}  // namespace detail

// The same, spelled as Python's call: create_subprocess_exec("ls", "-l", "/tmp",
// SubprocessOptions{.std_out = PIPE}) (options, if any, last). Prefer it to a braced list of
// arguments inside co_await: g++ 12 rejects `co_await f({"a", "b"})` ("array used as
// initializer", a compiler bug with initializer lists in coroutines).
template <class... Args>
requires(sizeof...(Args) > 0 && (detail::SubprocessArgument<Args> &&
                                 ...)) Coro<Process> create_subprocess_exec(std::string program,
                                                                            Args&&... args) {
  std::vector<std::string> argv;
  argv.reserve(sizeof...(Args));
  SubprocessOptions options;
  (detail::add_subprocess_argument(argv, options, std::forward<Args>(args)), ...);
  return create_subprocess_exec(std::move(program), std::move(argv), std::move(options));
}
// asyncio.create_subprocess_shell(cmd, ...): /bin/sh -c cmd on POSIX, %ComSpec% /c "cmd" on
// Windows (as Python).
Coro<Process> create_subprocess_shell(std::string cmd, SubprocessOptions options = {});

namespace detail {
// For tests: false makes new children use the waiting-thread reaper instead of pidfd (POSIX;
// does nothing on Windows).
void set_pidfd_child_watcher_enabled(bool enabled) noexcept;
}  // namespace detail

}  // namespace corio
