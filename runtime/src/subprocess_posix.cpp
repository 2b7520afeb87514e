// Subprocesses on POSIX: what differs from Windows (the rest, pipe streams included, is in
// subprocess_common.cpp and subprocess_pipes.cpp).
//  * Spawning: posix_spawn (glibc's is clone+exec and reports exec errors, so a missing
//    program raises FileNotFoundError here, as Python does). The child gets an empty signal
//    mask, every signal at its default action, and no descriptor beyond 0-2; ours are all
//    close-on-exec from birth.
//  * stdout/stderr: pipes, read with read_at ops (offset ~0 means read()).
//  * stdin: a Unix socket pair, written with send ops. A write to a pipe whose reader has gone
//    raises SIGPIPE in the writing thread, which would kill a C++ program (Python ignores
//    SIGPIPE at start-up; a library must not). send() takes MSG_NOSIGNAL, which every
//    backend passes, so a child that exits without reading is only a BrokenPipeError. libuv
//    does the same. The one visible difference: the child cannot open /dev/stdin.
//  * Reaping: a pidfd watched with a wait_readable op (Linux 5.3+), else (older kernels, the
//    BSDs, macOS) one thread per child blocked in waitpid (asyncio's ThreadedChildWatcher:
//    SIGCHLD is process-wide and one loop at a time may own a signal, so a SIGCHLD watcher
//    would break with loops on two threads). A child whose loop closes first is handed to a
//    waiting thread: never a zombie.
// Nothing here may block the loop (waitpid is only called with WNOHANG on the loop thread),
// and no operation's buffer may move while the operation is in flight.
#ifndef _WIN32

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <mutex>
#include <thread>

#include "corio/core/errors.hpp"
#include "corio/core/posix_fd.hpp"
#include "subprocess_common.hpp"

extern char** environ;

// pidfd: Linux only. Elsewhere, and in the portable build (CORIO_PORTABLE_POSIX, see
// core/posix_fd.hpp), every child is watched by a thread.
#if defined(__linux__) && !defined(CORIO_PORTABLE_POSIX)
#define CORIO_HAVE_PIDFD 1
#include <sys/syscall.h>
#else
#define CORIO_HAVE_PIDFD 0
#endif

namespace corio {
namespace detail {

// ---------------------------------------------------------------------------------------
// The pipe hooks (subprocess_common.hpp).

namespace pipe_os {

void close(core::NativeHandle handle) noexcept {
  ::close(static_cast<int>(handle));
}

bool empty_read_is_eof(core::NativeHandle) noexcept {
  return true;
}

void prepare_write(core::Operation& op, core::NativeHandle handle, const char* data,
                   std::size_t size) noexcept {
  op.code = core::OpCode::send;  // stdin is a socket: send() never raises SIGPIPE
  op.handle = handle;
  op.buffer = const_cast<char*>(data);
  op.length = size;
}

int write_error(std::int64_t result) noexcept {
  if (result == -EAGAIN || result == -EINTR) return 0;
  // A child that exits leaving bytes unread resets the socket (ECONNRESET) where a pipe
  // would say EPIPE; callers see a pipe, so it is BrokenPipeError either way, as in asyncio.
  if (result == -ECONNRESET) return EPIPE;
  return static_cast<int>(-result);  // EPIPE: the child closed its end
}

}  // namespace pipe_os

// ---------------------------------------------------------------------------------------
// The child: its pid, how it is watched, and its exit status.

namespace {

std::atomic<bool> g_pidfd_enabled{true};

int decode_status(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return -WTERMSIG(status);
  return status;
}

// Reaps `pid` from a thread of its own, whatever becomes of the loop.
void reap_in_thread(pid_t pid, absl::AnyInvocable<void(int)> done) {
  std::thread([pid, done = std::move(done)]() mutable {
    int status = 0;
    pid_t r;
    do {
      r = ::waitpid(pid, &status, 0);
    } while (r < 0 && errno == EINTR);
    done(r < 0 ? 255 : decode_status(status));
  }).detach();
}

class PosixProcess final : public ProcessState {
 public:
  PosixProcess(EventLoop& loop, std::shared_ptr<LoopResources> resources, pid_t pid, int pidfd)
      : ProcessState(loop, std::move(resources), pid), pidfd_(pidfd) {
    op_.owner = this;
  }
  ~PosixProcess() override {
    detach_from_loop();
    close_loop_handle(loop_, pidfd_);
  }

  void loop_closing() override {
    EventLoop* loop = std::exchange(loop_, nullptr);
    close_loop_handle(loop, pidfd_);
    if (!returncode() && !thread_watched_) reap_in_thread(pid(), [](int) {});
  }

  void start_watch() {
    if (pidfd_ != core::kInvalidHandle) {
      arm_pidfd();
      return;
    }
    // No pidfd: a thread waits. The loop counts it as outside work so virtual time waits too.
    thread_watched_ = true;
    loop_->add_external_work();
    std::weak_ptr<LoopResource> weak = weak_from_this();
    std::shared_ptr<LoopResources> resources = resources_;
    reap_in_thread(pid(), [weak, resources](int code) {
      resources->post_from_thread([weak, code](EventLoop& loop) {
        loop.remove_external_work();
        if (auto self = weak.lock()) static_cast<PosixProcess&>(*self).set_exit(code);
      });
    });
  }

  void send_signal(int sig) override {
    if (returncode()) throw ProcessLookupError(ESRCH, "the process has already exited");
    long r = -1;
#if CORIO_HAVE_PIDFD
    if (pidfd_ != core::kInvalidHandle) {
      r = ::syscall(SYS_pidfd_send_signal, static_cast<int>(pidfd_), sig, nullptr, 0);
      if (r < 0 && errno == ENOSYS) r = ::kill(pid(), sig);
    } else {
      r = ::kill(pid(), sig);
    }
#else
    // A thread-watched child reaped a moment ago frees its pid before returncode() is set: a
    // narrow window in which the pid could be reused (asyncio's threaded watcher has it too).
    r = ::kill(pid(), sig);
#endif
    // ESRCH before we reaped it: it is exiting right now, which is what was asked for.
    if (r < 0 && errno != ESRCH) throw_os_error(errno, "send_signal");
  }
  void terminate() override {
    send_signal(SIGTERM);
  }
  void kill() override {
    send_signal(SIGKILL);
  }

 private:
  struct Op : core::Operation {
    PosixProcess* owner = nullptr;
  };

  void arm_pidfd() {
    op_.code = core::OpCode::wait_readable;
    op_.handle = pidfd_;
    op_.on_complete = &on_complete;
    op_.state = core::OpState::idle;
    op_.result = 0;
    if (loop_->backend().start(op_)) {
      loop_->call_soon([self = shared_from_this()] { static_cast<PosixProcess&>(*self).reap(); });
      return;
    }
    keepalive_ = std::static_pointer_cast<PosixProcess>(shared_from_this());
  }

  // Inside the backend's dispatch: schedule the reaping.
  static void on_complete(core::Operation* operation) {
    PosixProcess* process = static_cast<Op*>(operation)->owner;
    std::shared_ptr<PosixProcess> self = std::move(process->keepalive_);
    if (process->loop_ == nullptr || operation->result == -ECANCELED) return;
    process->loop_->call_soon([self = std::move(self)] { self->reap(); });
  }

  void reap() {
    if (returncode() || loop_ == nullptr) return;
    int status = 0;
    pid_t r;
    do {
      r = ::waitpid(pid(), &status, WNOHANG);
    } while (r < 0 && errno == EINTR);
    if (r == 0) {  // readable but not exited (cannot happen on Linux): keep waiting
      arm_pidfd();
      return;
    }
    if (r < 0) {
      // Someone else reaped it (a waitpid(-1) elsewhere in the program): asyncio's answer.
      std::fprintf(stderr, "corio: unknown child process pid %d, will report returncode 255\n",
                   pid());
      set_exit(255);
      return;
    }
    set_exit(decode_status(status));
  }

  void set_exit(int code) {
    if (returncode()) return;
    close_loop_handle(loop_, pidfd_);
    set_returncode(code);
  }

  core::NativeHandle pidfd_;  // kInvalidHandle: watched by a thread, or reaped
  bool thread_watched_ = false;
  Op op_;
  std::shared_ptr<PosixProcess> keepalive_;  // set while the pidfd wait is in flight
};

}  // namespace

void set_pidfd_child_watcher_enabled(bool enabled) noexcept {
  g_pidfd_enabled.store(enabled);
}

}  // namespace detail

// ---------------------------------------------------------------------------------------
// Spawning.

namespace {

// A descriptor closed when it goes out of scope unless released.
class OwnedFd {
 public:
  OwnedFd() = default;
  explicit OwnedFd(int fd) noexcept : fd_(fd) {}
  OwnedFd(OwnedFd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  OwnedFd& operator=(OwnedFd&& other) noexcept {
    reset(std::exchange(other.fd_, -1));
    return *this;
  }
  ~OwnedFd() { reset(); }
  int get() const noexcept { return fd_; }
  int release() noexcept { return std::exchange(fd_, -1); }
  void reset(int fd = -1) noexcept {
    if (fd_ >= 0) ::close(fd_);
    fd_ = fd;
  }

 private:
  int fd_ = -1;
};

// Moves `fd` above 2, so installing the child's 0-2 never overwrites a descriptor that a
// later step still reads from.
OwnedFd above_stdio(int fd) {
  if (fd >= 3) return OwnedFd(fd);
  const int moved = ::fcntl(fd, F_DUPFD_CLOEXEC, 3);
  const int error = errno;
  ::close(fd);
  if (moved < 0) throw_os_error(error, "fcntl(F_DUPFD_CLOEXEC)");
  return OwnedFd(moved);
}

void set_nonblocking(int fd) {
  const int flags = ::fcntl(fd, F_GETFL);
  if (flags < 0 || ::fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0)
    throw_os_error(errno, "fcntl(O_NONBLOCK)");
}

void check(int error, const char* what) {
  if (error != 0) throw_os_error(error, what);
}

struct FileActions {
  posix_spawn_file_actions_t actions;
  FileActions() { check(posix_spawn_file_actions_init(&actions), "posix_spawn_file_actions_init"); }
  ~FileActions() { posix_spawn_file_actions_destroy(&actions); }
};

struct SpawnAttributes {
  posix_spawnattr_t attributes;
  SpawnAttributes() { check(posix_spawnattr_init(&attributes), "posix_spawnattr_init"); }
  ~SpawnAttributes() { posix_spawnattr_destroy(&attributes); }
};

// The parent's side of the child's three standard streams (-1 where there is no pipe).
struct ParentEnds {
  OwnedFd in, out, err;
};

// Arranges descriptor `target` (0, 1, 2) of the child. `keep` holds what must stay open until
// posix_spawn returns.
void plan_stream(int target, const subprocess::Redirect& how, posix_spawn_file_actions_t* actions,
                 OwnedFd& parent_end, std::vector<OwnedFd>& keep) {
  using Kind = subprocess::Redirect::Kind;
  switch (how.kind) {
    case Kind::inherit:
      return;
    case Kind::devnull:
      check(posix_spawn_file_actions_addopen(actions, target, "/dev/null",
                                             target == 0 ? O_RDONLY : O_WRONLY, 0),
            "posix_spawn_file_actions_addopen");
      return;
    case Kind::stdout_:
      if (target != 2) throw ValueError("STDOUT can only be used for stderr");
      check(posix_spawn_file_actions_adddup2(actions, 1, 2), "posix_spawn_file_actions_adddup2");
      return;
    case Kind::handle: {
      if (how.handle < 0) throw ValueError("invalid handle for a standard stream");
      const int copy = ::fcntl(static_cast<int>(how.handle), F_DUPFD_CLOEXEC, 3);
      if (copy < 0) throw_os_error(errno, "fcntl(F_DUPFD_CLOEXEC)");
      keep.emplace_back(copy);
      check(posix_spawn_file_actions_adddup2(actions, copy, target),
            "posix_spawn_file_actions_adddup2");
      return;
    }
    case Kind::pipe: {
      int fds[2];
      OwnedFd child;
      if (target == 0) {
        // stdin: a socket pair (see the top of this file), one-way like a pipe.
        if (core::posix::make_socket_pair(AF_UNIX, SOCK_STREAM, false, fds) < 0)
          throw_os_error(errno, "socketpair");
        OwnedFd first(fds[0]), second(fds[1]);  // both closed if moving one fails
        parent_end = above_stdio(first.release());
        child = above_stdio(second.release());
        ::shutdown(parent_end.get(), SHUT_RD);
        ::shutdown(child.get(), SHUT_WR);
      } else {
        if (core::posix::make_pipe(false, fds) < 0) throw_os_error(errno, "pipe");
        OwnedFd first(fds[0]), second(fds[1]);
        parent_end = above_stdio(first.release());
        child = above_stdio(second.release());
      }
      set_nonblocking(parent_end.get());  // the child's end stays blocking, as programs expect
      check(posix_spawn_file_actions_adddup2(actions, child.get(), target),
            "posix_spawn_file_actions_adddup2");
      keep.push_back(std::move(child));
      return;
    }
  }
}

Process spawn(const std::vector<std::string>& argv, const SubprocessOptions& options) {
  EventLoop& loop = get_running_loop();
  loop.check_open();
  std::shared_ptr<detail::LoopResources> resources = detail::resources_for(loop);

  FileActions file_actions;
  SpawnAttributes spawn_attributes;
  posix_spawn_file_actions_t* actions = &file_actions.actions;
  posix_spawnattr_t* attributes = &spawn_attributes.attributes;

  ParentEnds parent;
  std::vector<OwnedFd> keep;
  plan_stream(0, options.std_in, actions, parent.in, keep);
  plan_stream(1, options.std_out, actions, parent.out, keep);
  plan_stream(2, options.std_err, actions, parent.err, keep);
  if (options.cwd) {
    check(posix_spawn_file_actions_addchdir_np(actions, options.cwd->c_str()),
          "posix_spawn_file_actions_addchdir_np");
  }
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 34))
  // Python's close_fds=True: a descriptor someone opened without O_CLOEXEC stays ours.
  check(posix_spawn_file_actions_addclosefrom_np(actions, 3),
        "posix_spawn_file_actions_addclosefrom_np");
#endif

  // The child starts clean: nothing blocked, every signal at its default action (our
  // handlers would not survive exec anyway, but ignored signals would).
  sigset_t none;
  sigemptyset(&none);
  sigset_t all;
  sigfillset(&all);
  sigdelset(&all, SIGKILL);
  sigdelset(&all, SIGSTOP);
  check(posix_spawnattr_setsigmask(attributes, &none), "posix_spawnattr_setsigmask");
  check(posix_spawnattr_setsigdefault(attributes, &all), "posix_spawnattr_setsigdefault");
  short flags = POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF;
  if (options.start_new_session) {
#ifdef POSIX_SPAWN_SETSID
    flags |= POSIX_SPAWN_SETSID;
#else
    throw NotImplementedError("start_new_session: posix_spawn has no POSIX_SPAWN_SETSID here");
#endif
  }
  check(posix_spawnattr_setflags(attributes, flags), "posix_spawnattr_setflags");

  std::vector<char*> arguments;
  arguments.reserve(argv.size() + 1);
  for (const std::string& a : argv) arguments.push_back(const_cast<char*>(a.c_str()));
  arguments.push_back(nullptr);
  std::vector<char*> environment;
  char** envp = environ;
  if (options.env) {
    environment.reserve(options.env->size() + 1);
    for (const std::string& e : *options.env) environment.push_back(const_cast<char*>(e.c_str()));
    environment.push_back(nullptr);
    envp = environment.data();
  }

  pid_t pid = -1;
  int error = 0;
  {
#if !CORIO_POSIX_FLAGS_AT_CREATION
    // Flags set after creation: no descriptor may be caught between the two (posix_fd.hpp).
    std::unique_lock creations(core::posix::creation_lock());
#endif
    error = ::posix_spawnp(&pid, argv[0].c_str(), actions, attributes, arguments.data(), envp);
  }
  if (error != 0) throw_os_error(error, argv[0]);
  keep.clear();  // the child has its copies; ours must go so it sees EOF / EPIPE

  int pidfd = -1;
#if CORIO_HAVE_PIDFD
  if (detail::g_pidfd_enabled.load()) {
    pidfd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
    if (pidfd >= 0) {
      const int fd_flags = ::fcntl(pidfd, F_GETFD);
      if (fd_flags >= 0) ::fcntl(pidfd, F_SETFD, fd_flags | FD_CLOEXEC);
    } else if (errno == ENOSYS) {
      detail::g_pidfd_enabled.store(false);  // an old kernel: don't ask again
    }
  }
#endif
  auto process = std::make_shared<detail::PosixProcess>(loop, resources, pid, pidfd);
  process->start_watch();
  return detail::make_process(loop, resources, std::move(process), parent.in.release(),
                              parent.out.release(), parent.err.release(), options.limit);
}

}  // namespace

Coro<Process> create_subprocess_exec(std::string program, std::vector<std::string> args,
                                     SubprocessOptions options) {
  std::vector<std::string> argv;
  argv.reserve(args.size() + 1);
  argv.push_back(std::move(program));
  for (std::string& a : args) argv.push_back(std::move(a));
  co_return spawn(argv, options);
}

Coro<Process> create_subprocess_shell(std::string cmd, SubprocessOptions options) {
  co_return spawn({"/bin/sh", "-c", std::move(cmd)}, options);
}

}  // namespace corio

#endif  // _WIN32
