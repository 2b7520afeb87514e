// Subprocesses on Windows: what differs from POSIX (the rest, pipe streams included, is in
// subprocess_common.cpp and subprocess_pipes.cpp; same public API, same semantics).
//  * Spawning: CreateProcessW with a UTF-16 command line built from argv by the MSVC quoting
//    rules (what Python's subprocess.list2cmdline does), so the child's CRT splits it back
//    into the same argv. create_subprocess_shell runs `%ComSpec% /c "cmd"` as Python does.
//    STARTUPINFOEX with PROC_THREAD_ATTRIBUTE_HANDLE_LIST: the child inherits exactly its
//    three standard handles, never a pipe end another thread is creating for another child
//    at the same moment (a leaked write end would keep that child's reader from seeing EOF).
//    corio's own spawns are also serialised by a mutex, which covers wine, whose
//    CreateProcess ignores the handle list.
//  * Pipes: anonymous pipes cannot do overlapped I/O, so each PIPE is a uniquely named pipe.
//    Our end is overlapped and driven by the loop's backend (read_at / write_at are
//    ReadFile / WriteFile on the completion port); the child's end is inheritable and
//    synchronous, as programs expect of their standard handles.
//  * Waiting: RegisterWaitForSingleObject on the process handle. The thread pool's wait
//    thread posts the exit to the loop with call_soon_threadsafe. Chosen over a thread per
//    child because one pool thread watches up to 63 handles, and over job-object completion
//    messages because those would put packets that are not Operations on the backend's port.
//    A wait is always unregistered with UnregisterWaitEx(INVALID_HANDLE_VALUE), which
//    returns only once the callback is not running, so its context can then be freed.
//    Windows has no zombies: a Process dropped early just closes its handle, and the child
//    runs on unwatched.
//  * Signals: Windows has none to send. terminate() and kill() are TerminateProcess with exit
//    code 1 (Python's Popen.terminate), so returncode is 1, not -SIGTERM. send_signal(SIGTERM)
//    terminates; SIGINT/SIGBREAK (Python's CTRL_C_EVENT/CTRL_BREAK_EVENT) raise
//    NotImplementedError: console control events reach whole process groups sharing our
//    console, not one child, and cannot be tested under wine; other numbers raise ValueError.
// Nothing here may block the loop (the only blocking call, UnregisterWaitEx, waits at most
// for a callback that only posts), no operation's buffer may move while it is in flight,
// and no handle may outlive its owner.
#ifdef _WIN32

// clang-format off
#include <windows.h>
// clang-format on

#include <algorithm>
#include <atomic>
#include <csignal>
#include <mutex>
#include <random>
#include <string>

#include "corio/core/errors.hpp"
#include "corio/core/win32_error.hpp"
#include "subprocess_common.hpp"

namespace corio {
namespace detail {
namespace {

constexpr std::size_t kWriteChunk = 64 * 1024;  // one WriteFile at most: bounds what the
                                                // kernel pins, and lets drain() see progress
constexpr DWORD kPipeBuffer = 64 * 1024;
constexpr int kTerminatedExitCode = 1;  // what Python's Popen.terminate() gives TerminateProcess

HANDLE handle_of(core::NativeHandle h) noexcept {
  return reinterpret_cast<HANDLE>(h);
}
core::NativeHandle native_of(HANDLE h) noexcept {
  return reinterpret_cast<core::NativeHandle>(h);
}

// Reads GetLastError() before anything (building a std::string) can change it.
[[noreturn]] void throw_last_error(const char* context) {
  const DWORD error = ::GetLastError();
  throw_os_error(core::win32::errno_from_error(error), context);
}

}  // namespace

// ---------------------------------------------------------------------------------------
// The pipe hooks (subprocess_common.hpp).

namespace pipe_os {

void close(core::NativeHandle handle) noexcept {
  ::CloseHandle(handle_of(handle));
}

bool empty_read_is_eof(core::NativeHandle handle) noexcept {
  // The backend reads a broken pipe (the child's end closed) as 0 bytes. So does a
  // zero-length WriteFile by the child on a byte-mode pipe, which is no EOF: the pipe still
  // answers a peek then.
  DWORD waiting = 0;
  return handle == core::kInvalidHandle ||
         !::PeekNamedPipe(handle_of(handle), nullptr, 0, nullptr, &waiting, nullptr);
}

void prepare_write(core::Operation& op, core::NativeHandle handle, const char* data,
                   std::size_t size) noexcept {
  op.code = core::OpCode::write_at;
  op.offset = ~std::uint64_t{0};  // a pipe has no offset
  op.handle = handle;
  op.buffer = const_cast<char*>(data);
  op.length = std::min(size, kWriteChunk);
}

int write_error(std::int64_t result) noexcept {
  // The child closed its end: ERROR_BROKEN_PIPE / STATUS_PIPE_BROKEN (EPIPE), or, for a
  // write issued after that, ERROR_NO_DATA ("the pipe is being closed"), which the error
  // table reads as EAGAIN. Our pipe blocks, so EAGAIN means nothing else here.
  return result == -EAGAIN ? EPIPE : static_cast<int>(-result);
}

}  // namespace pipe_os

// ---------------------------------------------------------------------------------------
// The child: its process handle, the registered wait on it, and its exit status.

namespace {

// The context of one registered wait. The pool thread reads it; it is freed only after
// UnregisterWaitEx(INVALID_HANDLE_VALUE) says the callback is not running and never will.
struct ExitWatch {
  std::weak_ptr<LoopResource> process;
  std::shared_ptr<LoopResources> resources;
  std::atomic<bool> fired{false};
  HANDLE wait = nullptr;
};

class Win32Process final : public ProcessState {
 public:
  Win32Process(EventLoop& loop, std::shared_ptr<LoopResources> resources, HANDLE process, DWORD pid)
      : ProcessState(loop, std::move(resources), static_cast<int>(pid)), process_(process) {}
  ~Win32Process() override {
    detach_from_loop();
    stop_watch();
    ::CloseHandle(process_);
  }

  void loop_closing() override {
    stop_watch();
    loop_ = nullptr;  // the handle stays ours until the Process goes: pid() and kill() work
  }

  void start_watch() {
    auto watch = std::make_unique<ExitWatch>();
    watch->process = weak_from_this();
    watch->resources = resources_;
    // The exit comes from outside the loop: virtual time must wait for it.
    loop_->add_external_work();
    if (!::RegisterWaitForSingleObject(&watch->wait, process_, &on_signalled, watch.get(), INFINITE,
                                       WT_EXECUTEONLYONCE)) {
      const DWORD error = ::GetLastError();
      loop_->remove_external_work();
      throw_os_error(core::win32::errno_from_error(error), "RegisterWaitForSingleObject");
    }
    watch_ = std::move(watch);
  }

  void send_signal(int sig) override {
    if (sig == SIGTERM) {
      terminate();
      return;
    }
    if (returncode()) throw ProcessLookupError(ESRCH, "the process has already exited");
    if (sig == SIGINT || sig == SIGBREAK) {
      throw NotImplementedError(
          "send_signal: console control events (SIGINT, SIGBREAK) are not supported on "
          "Windows; use terminate() or kill()");
    }
    throw ValueError("Unsupported signal: " + std::to_string(sig));
  }

  void terminate() override {
    if (returncode()) throw ProcessLookupError(ESRCH, "the process has already exited");
    if (::TerminateProcess(process_, kTerminatedExitCode)) return;
    const DWORD error = ::GetLastError();
    // Access is denied to a process that has already exited (and is not waited for yet):
    // it is gone, which is what was asked for (Python's Popen.terminate does the same).
    DWORD code = 0;
    if (error == ERROR_ACCESS_DENIED && ::GetExitCodeProcess(process_, &code) &&
        code != STILL_ACTIVE) {
      return;
    }
    throw_os_error(core::win32::errno_from_error(error), "TerminateProcess");
  }

  // Windows has one way to end a process (asyncio: kill = terminate).
  void kill() override { terminate(); }

 private:
  // On the thread pool's wait thread: post, nothing else.
  static void CALLBACK on_signalled(void* context, BOOLEAN /*timed_out*/) {
    auto* watch = static_cast<ExitWatch*>(context);
    watch->fired.store(true, std::memory_order_release);
    std::weak_ptr<LoopResource> weak = watch->process;
    watch->resources->post_from_thread([weak = std::move(weak)](EventLoop& loop) {
      loop.remove_external_work();
      if (auto self = weak.lock()) static_cast<Win32Process&>(*self).exited();
    });
  }

  void exited() {
    if (returncode()) return;
    stop_watch();
    DWORD code = 0;
    if (!::GetExitCodeProcess(process_, &code)) code = 255;
    set_returncode(static_cast<int>(code));
  }

  // Unregisters the wait (blocking until its callback, if running, has returned). Loop thread
  // only, or after the loop has closed.
  void stop_watch() noexcept {
    if (!watch_) return;
    std::unique_ptr<ExitWatch> watch = std::move(watch_);
    ::UnregisterWaitEx(watch->wait, INVALID_HANDLE_VALUE);
    // Not fired: nothing was posted, so the external work is ours to give back.
    if (!watch->fired.load(std::memory_order_acquire) && loop_ != nullptr)
      loop_->remove_external_work();
  }

  HANDLE process_;
  std::unique_ptr<ExitWatch> watch_;
};

}  // namespace

void set_pidfd_child_watcher_enabled(bool) noexcept {}  // no pidfd on Windows

}  // namespace detail

// ---------------------------------------------------------------------------------------
// Spawning.

namespace {

using detail::handle_of;
using detail::kPipeBuffer;
using detail::throw_last_error;

// A handle closed when it goes out of scope unless released.
class OwnedHandle {
 public:
  OwnedHandle() = default;
  explicit OwnedHandle(HANDLE h) noexcept : h_(h) {}
  OwnedHandle(OwnedHandle&& other) noexcept : h_(std::exchange(other.h_, nullptr)) {}
  OwnedHandle& operator=(OwnedHandle&& other) noexcept {
    reset(std::exchange(other.h_, nullptr));
    return *this;
  }
  ~OwnedHandle() { reset(); }
  HANDLE get() const noexcept { return h_; }
  HANDLE release() noexcept { return std::exchange(h_, nullptr); }
  void reset(HANDLE h = nullptr) noexcept {
    if (h_ != nullptr && h_ != INVALID_HANDLE_VALUE) ::CloseHandle(h_);
    h_ = h;
  }

 private:
  HANDLE h_ = nullptr;
};

// UTF-8 → UTF-16. ValueError for invalid UTF-8 or an embedded NUL (as Python's
// "embedded null character"), which would silently cut a Windows string short.
std::wstring widen(std::string_view s, const char* what) {
  if (s.find('\0') != std::string_view::npos)
    throw ValueError(std::string("embedded null character in ") + what);
  if (s.empty()) return {};
  const int n = ::MultiByteToWideChar(CP_UTF8, MB_ERR_INVALID_CHARS, s.data(),
                                      static_cast<int>(s.size()), nullptr, 0);
  if (n <= 0) throw ValueError(std::string("invalid UTF-8 in ") + what);
  std::wstring out(static_cast<std::size_t>(n), L'\0');
  ::MultiByteToWideChar(CP_UTF8, MB_ERR_INVALID_CHARS, s.data(), static_cast<int>(s.size()),
                        out.data(), n);
  return out;
}

// Appends one argument quoted so that the MSVC runtime's parser (CommandLineToArgvW and
// every C/C++ program's main) gives it back unchanged: quotes only when it is empty or holds
// a space or tab; backslashes are literal unless they precede a quote, where each is doubled
// and the quote escaped.
void append_quoted(std::wstring& line, std::wstring_view arg) {
  if (!line.empty()) line += L' ';
  const bool quote = arg.empty() || arg.find_first_of(L" \t") != std::wstring_view::npos;
  if (quote) line += L'"';
  std::size_t backslashes = 0;
  for (const wchar_t c : arg) {
    if (c == L'\\') {
      ++backslashes;
      continue;
    }
    if (c == L'"') {
      line.append(backslashes * 2 + 1, L'\\');
    } else {
      line.append(backslashes, L'\\');
    }
    backslashes = 0;
    line += c;
  }
  line.append(backslashes, L'\\');
  if (quote) {
    line.append(backslashes, L'\\');  // so the closing quote is not escaped
    line += L'"';
  }
}

// Environment variable `name` of this process, UTF-16; empty when unset.
std::wstring getenv_wide(const wchar_t* name) {
  const DWORD n = ::GetEnvironmentVariableW(name, nullptr, 0);
  if (n == 0) return {};
  std::wstring value(n, L'\0');
  const DWORD got = ::GetEnvironmentVariableW(name, value.data(), n);
  value.resize(got < n ? got : 0);
  return value;
}

// The child's environment block: "NAME=value\0...\0\0", sorted by name without regard to
// case, as CreateProcess documents it wants (CPython sorts it too).
std::wstring environment_block(const std::vector<std::string>& env) {
  std::vector<std::wstring> entries;
  entries.reserve(env.size());
  for (const std::string& e : env) entries.push_back(widen(e, "env"));
  // A name may start with '=' (the per-drive current directories): its '=' is part of it.
  auto name_of = [](const std::wstring& e) {
    const std::size_t eq = e.find(L'=', 1);
    return std::wstring_view(e).substr(0, eq == std::wstring::npos ? e.size() : eq);
  };
  std::stable_sort(
      entries.begin(), entries.end(), [&](const std::wstring& a, const std::wstring& b) {
        const std::wstring_view na = name_of(a), nb = name_of(b);
        return ::CompareStringOrdinal(na.data(), static_cast<int>(na.size()), nb.data(),
                                      static_cast<int>(nb.size()), TRUE) == CSTR_LESS_THAN;
      });
  std::wstring block;
  for (const std::wstring& e : entries) {
    block += e;
    block += L'\0';
  }
  if (entries.empty()) block += L'\0';
  block += L'\0';
  return block;
}

// One pipe for a standard stream: our end overlapped (for the completion port) and not
// inheritable, the child's end synchronous and inheritable.
void make_pipe(bool child_reads, OwnedHandle& ours, OwnedHandle& childs) {
  static std::atomic<unsigned long long> counter{0};
  static const unsigned long salt = [] {
    std::random_device device;
    return static_cast<unsigned long>(device());
  }();
  for (int attempt = 0;; ++attempt) {
    const std::wstring name = L"\\\\.\\pipe\\corio-" + std::to_wstring(::GetCurrentProcessId()) +
                              L"-" + std::to_wstring(salt) + L"-" +
                              std::to_wstring(counter.fetch_add(1, std::memory_order_relaxed));
    const DWORD open_mode = (child_reads ? PIPE_ACCESS_OUTBOUND : PIPE_ACCESS_INBOUND) |
                            FILE_FLAG_OVERLAPPED | FILE_FLAG_FIRST_PIPE_INSTANCE;
    const HANDLE server = ::CreateNamedPipeW(
        name.c_str(), open_mode,
        PIPE_TYPE_BYTE | PIPE_READMODE_BYTE | PIPE_WAIT | PIPE_REJECT_REMOTE_CLIENTS, 1,
        kPipeBuffer, kPipeBuffer, 0, nullptr);
    if (server == INVALID_HANDLE_VALUE) {
      const DWORD error = ::GetLastError();
      // The name is taken (by a stranger squatting on it): take the next one.
      if ((error == ERROR_ACCESS_DENIED || error == ERROR_PIPE_BUSY) && attempt < 16) continue;
      throw_os_error(core::win32::errno_from_error(error), "CreateNamedPipeW");
    }
    ours.reset(server);
    SECURITY_ATTRIBUTES inherit{sizeof inherit, nullptr, TRUE};
    const HANDLE client = ::CreateFileW(
        name.c_str(), child_reads ? GENERIC_READ : (GENERIC_WRITE | FILE_READ_ATTRIBUTES), 0,
        &inherit, OPEN_EXISTING, FILE_ATTRIBUTE_NORMAL, nullptr);
    if (client == INVALID_HANDLE_VALUE) throw_last_error("CreateFileW(pipe)");
    childs.reset(client);
    return;
  }
}

// An inheritable copy of `h` for the child (null when `h` is not a usable handle).
OwnedHandle inheritable_copy(HANDLE h) {
  if (h == nullptr || h == INVALID_HANDLE_VALUE) return {};
  HANDLE copy = nullptr;
  if (!::DuplicateHandle(::GetCurrentProcess(), h, ::GetCurrentProcess(), &copy, 0, TRUE,
                         DUPLICATE_SAME_ACCESS)) {
    throw_last_error("DuplicateHandle");
  }
  return OwnedHandle(copy);
}

// Arranges standard stream `which` (0, 1, 2) of the child: `childs` gets the handle it will
// inherit, `ours` our end of a pipe. `child_stdout` is the child's stdout, for STDOUT.
void plan_stream(int which, const subprocess::Redirect& how, OwnedHandle& childs, OwnedHandle& ours,
                 HANDLE child_stdout) {
  using Kind = subprocess::Redirect::Kind;
  switch (how.kind) {
    case Kind::inherit: {
      static constexpr DWORD kStd[] = {STD_INPUT_HANDLE, STD_OUTPUT_HANDLE, STD_ERROR_HANDLE};
      // No standard handle (a GUI program): the child gets none either. A handle that cannot
      // be duplicated (not a real handle) is left out the same way rather than failing.
      try {
        childs = inheritable_copy(::GetStdHandle(kStd[which]));
      } catch (const OSError&) {
        childs.reset();
      }
      return;
    }
    case Kind::devnull: {
      SECURITY_ATTRIBUTES inherit{sizeof inherit, nullptr, TRUE};
      const HANDLE h = ::CreateFileW(L"NUL", which == 0 ? GENERIC_READ : GENERIC_WRITE,
                                     FILE_SHARE_READ | FILE_SHARE_WRITE, &inherit, OPEN_EXISTING,
                                     FILE_ATTRIBUTE_NORMAL, nullptr);
      if (h == INVALID_HANDLE_VALUE) throw_last_error("CreateFileW(NUL)");
      childs.reset(h);
      return;
    }
    case Kind::stdout_:
      // ValueError for stdin/stdout is raised before anything is created.
      childs = inheritable_copy(child_stdout);
      return;
    case Kind::handle:
      if (how.handle == core::kInvalidHandle || how.handle == 0)
        throw ValueError("invalid handle for a standard stream");
      childs = inheritable_copy(handle_of(how.handle));
      return;
    case Kind::pipe:
      make_pipe(which == 0, ours, childs);
      return;
  }
}

// Serialises corio's spawns: every inheritable handle exists only inside it. The handle list
// already keeps other children from inheriting them on Windows; this also covers wine, which
// ignores the list and hands every inheritable handle to every child.
std::mutex& spawn_mutex() {
  static std::mutex* m = new std::mutex;  // never destroyed: spawns may run at exit
  return *m;
}

// Frees an attribute list however creation ends.
struct AttributeList {
  std::unique_ptr<char[]> storage;
  LPPROC_THREAD_ATTRIBUTE_LIST list = nullptr;
  ~AttributeList() {
    if (list != nullptr) ::DeleteProcThreadAttributeList(list);
  }
};

Process spawn(const std::wstring* application, std::wstring command_line,
              const std::string& program, const SubprocessOptions& options) {
  EventLoop& loop = get_running_loop();
  loop.check_open();
  if (options.std_in.kind == subprocess::Redirect::Kind::stdout_ ||
      options.std_out.kind == subprocess::Redirect::Kind::stdout_) {
    throw ValueError("STDOUT can only be used for stderr");
  }
  std::shared_ptr<detail::LoopResources> resources = detail::resources_for(loop);

  std::wstring cwd;
  if (options.cwd) cwd = widen(*options.cwd, "cwd");
  std::wstring env;
  if (options.env) env = environment_block(*options.env);

  OwnedHandle ours[3];
  PROCESS_INFORMATION info{};
  {
    std::lock_guard lock(spawn_mutex());
    OwnedHandle childs[3];
    plan_stream(0, options.std_in, childs[0], ours[0], nullptr);
    plan_stream(1, options.std_out, childs[1], ours[1], nullptr);
    plan_stream(2, options.std_err, childs[2], ours[2], childs[1].get());

    STARTUPINFOEXW startup{};
    startup.StartupInfo.cb = sizeof startup;
    startup.StartupInfo.dwFlags = STARTF_USESTDHANDLES;
    startup.StartupInfo.hStdInput = childs[0].get();
    startup.StartupInfo.hStdOutput = childs[1].get();
    startup.StartupInfo.hStdError = childs[2].get();

    // Exactly these handles are inherited (each once: the list must not repeat one).
    HANDLE inherit[3];
    DWORD count = 0;
    for (const OwnedHandle& h : childs) {
      if (h.get() != nullptr && std::find(inherit, inherit + count, h.get()) == inherit + count)
        inherit[count++] = h.get();
    }
    AttributeList attributes;
    DWORD flags = CREATE_UNICODE_ENVIRONMENT;
    if (options.start_new_session) flags |= CREATE_NEW_PROCESS_GROUP;
    if (count > 0) {
      SIZE_T size = 0;
      ::InitializeProcThreadAttributeList(nullptr, 1, 0, &size);
      attributes.storage = std::make_unique<char[]>(size);
      auto* list = reinterpret_cast<LPPROC_THREAD_ATTRIBUTE_LIST>(attributes.storage.get());
      if (!::InitializeProcThreadAttributeList(list, 1, 0, &size))
        throw_last_error("InitializeProcThreadAttributeList");
      attributes.list = list;
      if (!::UpdateProcThreadAttribute(list, 0, PROC_THREAD_ATTRIBUTE_HANDLE_LIST, inherit,
                                       count * sizeof(HANDLE), nullptr, nullptr)) {
        throw_last_error("UpdateProcThreadAttribute");
      }
      startup.lpAttributeList = list;
      flags |= EXTENDED_STARTUPINFO_PRESENT;
    }

    if (!::CreateProcessW(application != nullptr ? application->c_str() : nullptr,
                          command_line.data(), nullptr, nullptr, count > 0 ? TRUE : FALSE, flags,
                          options.env ? env.data() : nullptr, options.cwd ? cwd.c_str() : nullptr,
                          &startup.StartupInfo, &info)) {
      throw_last_error(program.c_str());
    }
    // Leaving the scope closes the child's ends: the child has its copies, and ours must go
    // so that it sees EOF and we see a broken pipe when it exits.
  }
  ::CloseHandle(info.hThread);

  auto process =
      std::make_shared<detail::Win32Process>(loop, resources, info.hProcess, info.dwProcessId);
  process->start_watch();
  const auto ours_or_invalid = [](OwnedHandle& h) {
    return h.get() != nullptr ? detail::native_of(h.release()) : core::kInvalidHandle;
  };
  return detail::make_process(loop, resources, std::move(process), ours_or_invalid(ours[0]),
                              ours_or_invalid(ours[1]), ours_or_invalid(ours[2]), options.limit);
}

}  // namespace

Coro<Process> create_subprocess_exec(std::string program, std::vector<std::string> args,
                                     SubprocessOptions options) {
  // CreateProcessW finds the program as Windows does (the application's directory, the
  // current one, the system directories, then PATH; ".exe" added when it has no extension).
  std::wstring line;
  append_quoted(line, widen(program, "program"));
  for (const std::string& a : args) append_quoted(line, widen(a, "argument"));
  co_return spawn(nullptr, std::move(line), program, options);
}

Coro<Process> create_subprocess_shell(std::string cmd, SubprocessOptions options) {
  // As Python: %ComSpec% (else %SystemRoot%\System32\cmd.exe) /c "cmd", the command given
  // to cmd.exe as is, inside one pair of quotes that cmd.exe strips.
  std::wstring comspec = getenv_wide(L"ComSpec");
  if (comspec.empty()) {
    const std::wstring root = getenv_wide(L"SystemRoot");
    comspec = (root.empty() ? std::wstring(L"C:\\Windows") : root) + L"\\System32\\cmd.exe";
  }
  std::wstring line;
  append_quoted(line, comspec);
  line += L" /c \"";
  line += widen(cmd, "cmd");
  line += L'"';
  co_return spawn(&comspec, std::move(line), "cmd.exe", options);
}

}  // namespace corio

#endif  // _WIN32
