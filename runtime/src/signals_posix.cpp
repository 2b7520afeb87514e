// POSIX signal handlers for event loops: a self-pipe per loop.
// The process-level handler (sigaction, SA_RESTART) only writes the signal number into the
// non-blocking pipe of the loop that owns the signal: that is all a signal handler may safely
// do, and it works whichever thread the kernel picks to deliver the signal (signalfd would
// need the signal blocked in every thread, which a library cannot promise). The loop keeps one
// read of the pipe in flight while it has handlers, so a signal wakes it without polling; the
// read counts as background I/O, so it never holds virtual time back; a signal written but not
// yet read counts as external work, so virtual time cannot jump past a delivery the backend has
// not reported yet (an SQPOLL ring reports it a moment later, from its poller thread).
// Nothing here may run user code inside the signal handler, nor close a pipe a handler might
// still be writing to.
#ifndef _WIN32

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/syscall.h>
#else
#include <pthread.h>
#if defined(__FreeBSD__) || defined(__DragonFly__) || defined(__OpenBSD__)
#include <pthread_np.h>
#endif
#endif

#include <atomic>
#include <cerrno>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include "corio/core/errors.hpp"
#include "corio/core/operation.hpp"
#include "corio/core/posix_fd.hpp"
#include "corio/signals.hpp"

namespace corio {
namespace {

// Where the handler of a signal delivers: the write end of the owning loop's pipe, and the loop
// whose external work counts the bytes not yet read. Lives in the hub, which outlives every
// handler that could have loaded it (see g_in_handler).
struct Sink {
  int write_fd = -1;
  EventLoop* loop = nullptr;
};
// Null means nobody, so the array needs no initialiser. Read inside the signal handler.
std::atomic<const Sink*> g_sink[NSIG];
// Handlers executing right now; a pipe is closed only once this is 0 after its signals have
// been detached, so no handler can write into a recycled descriptor.
std::atomic<int> g_in_handler{0};
std::atomic<std::uint64_t> g_next_token{1};

void on_signal(int sig) {
  const int saved_errno = errno;
  g_in_handler.fetch_add(1);
  if (sig > 0 && sig < NSIG) {
    if (const Sink* sink = g_sink[sig].load()) {
      const unsigned char byte = static_cast<unsigned char>(sig);
      // Counted before the write, so the loop never reads a byte it has not counted.
      sink->loop->add_external_work();
      // A full pipe means the loop already has wake-ups to read: losing this byte only
      // merges two deliveries, as the kernel itself merges pending signals.
      if (::write(sink->write_fd, &byte, 1) != 1) sink->loop->remove_external_work();
    }
  }
  g_in_handler.fetch_sub(1);
  errno = saved_errno;
}

class SignalHub;

// Process-wide bookkeeping, under one mutex: which hub owns each signal and the disposition
// to restore when corio lets go of it. Never destroyed (a loop may close during exit).
struct Registry {
  std::mutex mutex;
  SignalHub* owner[NSIG] = {};
  struct sigaction previous[NSIG] = {};
  bool saved[NSIG] = {};
  std::unordered_map<const EventLoop*, std::shared_ptr<SignalHub>> hubs;
};
Registry& registry() {
  static Registry* r = new Registry;
  return *r;
}

void check_signal(int sig) {
  sigset_t valid;
  sigfillset(&valid);  // glibc leaves out the signals it reserves for itself, as Python does
  if (sig <= 0 || sig >= NSIG || sigismember(&valid, sig) != 1) {
    throw ValueError("invalid signal number " + std::to_string(sig));
  }
}

// One loop's signal handlers and the pipe their signals arrive through.
class SignalHub : public std::enable_shared_from_this<SignalHub> {
 public:
  explicit SignalHub(EventLoop& loop) : loop_(loop) {
    int fds[2];
    if (core::posix::make_pipe(true, fds) < 0) throw_os_error(errno, "pipe");
    read_fd_ = fds[0];
    write_fd_ = fds[1];
    sink_.write_fd = write_fd_;
    sink_.loop = &loop;
    op_.hub = this;
  }
  ~SignalHub() {
    // Normally closed by on_loop_close; this covers a hub that never got registered.
    if (read_fd_ >= 0) ::close(read_fd_);
    if (write_fd_ >= 0) ::close(write_fd_);
  }

  void add(int sig, Callback callback) {
    auto entry = std::make_shared<Entry>();
    entry->token = g_next_token.fetch_add(1);
    entry->callback = std::move(callback);
    {
      Registry& r = registry();
      std::lock_guard lock(r.mutex);
      struct sigaction action = {};
      action.sa_handler = &on_signal;
      sigemptyset(&action.sa_mask);
      action.sa_flags = SA_RESTART;  // asyncio's siginterrupt(sig, False): no EINTR surprises
      // Publish the pipe first, so a signal that lands right after sigaction is not lost.
      const Sink* before = g_sink[sig].exchange(&sink_);
      struct sigaction old = {};
      if (::sigaction(sig, &action, &old) < 0) {
        const int error = errno;
        g_sink[sig].store(before);
        if (error == EINVAL) throw RuntimeError("sig " + std::to_string(sig) + " cannot be caught");
        throw_os_error(error, "sigaction");
      }
      if (!r.saved[sig]) {
        r.previous[sig] = old;
        r.saved[sig] = true;
      }
      r.owner[sig] = this;  // taken over from another loop, if one had it
    }
    if (auto it = handlers_.find(sig); it != handlers_.end()) it->second->active = false;
    handlers_[sig] = std::move(entry);
    arm();
  }

  bool remove(int sig) {
    auto it = handlers_.find(sig);
    if (it == handlers_.end()) return false;
    it->second->active = false;  // a delivery already scheduled must not run any more
    handlers_.erase(it);
    release_signal(sig);
    if (handlers_.empty()) {
      // A handler on another thread may have loaded our sink just before release_signal: let
      // it finish its write, so the byte it counts is in the pipe when drop_unread empties it.
      while (g_in_handler.load() != 0) std::this_thread::yield();
      if (op_.in_flight()) {
        loop_.backend().cancel(op_);  // its completion schedules the dispatch that drops
      } else if (!dispatch_scheduled_) {
        drop_unread();
      }
    }
    return true;
  }

  // 0 when this hub has no handler for `sig` or another loop has taken the signal over.
  std::uint64_t token(int sig) const {
    {
      Registry& r = registry();
      std::lock_guard lock(r.mutex);
      if (r.owner[sig] != this) return 0;
    }
    auto it = handlers_.find(sig);
    return it == handlers_.end() ? 0 : it->second->token;
  }

  // The loop is closing: give every signal back, stop reading, close the pipe.
  void on_loop_close() {
    closing_ = true;
    for (auto& [sig, entry] : handlers_) {
      entry->active = false;
      release_signal(sig);
    }
    handlers_.clear();
    drop_unread();
    // Cancels the read if it is in flight (its completion sees closing_ and does nothing).
    loop_.backend().close(read_fd_);
    read_fd_ = -1;
    // Every signal now points elsewhere; wait out a handler that read our descriptor before.
    while (g_in_handler.load() != 0) std::this_thread::yield();
    ::close(write_fd_);
    write_fd_ = -1;
  }

 private:
  struct Entry {
    std::uint64_t token = 0;
    Callback callback;
    bool active = true;
  };
  struct Op : core::Operation {
    SignalHub* hub = nullptr;
  };

  // Gives `sig` back to its previous disposition, if this hub still owns it.
  void release_signal(int sig) {
    Registry& r = registry();
    std::lock_guard lock(r.mutex);
    if (r.owner[sig] != this) return;
    r.owner[sig] = nullptr;
    g_sink[sig].store(nullptr);
    if (r.saved[sig]) {
      ::sigaction(sig, &r.previous[sig], nullptr);
      r.saved[sig] = false;
    }
  }

  // Reads and discards what is left in the pipe once nobody listens, so no delivery stays
  // counted as external work (that would stop virtual time for good).
  void drop_unread() {
    if (op_.in_flight()) return;  // its completion records what it read
    unsigned char sink[64];
    for (ssize_t n; (n = ::read(read_fd_, sink, sizeof sink)) > 0;) {
      for (ssize_t i = 0; i < n; ++i) loop_.remove_external_work();
    }
  }

  // Keeps one read of the pipe in flight while there are handlers.
  void arm() {
    while (!closing_ && !handlers_.empty() && !op_.in_flight()) {
      op_.code = core::OpCode::read_at;
      op_.offset = ~std::uint64_t{0};  // a pipe: plain read()
      op_.handle = read_fd_;
      op_.buffer = buffer_;
      op_.length = sizeof buffer_;
      op_.on_complete = &on_complete;
      op_.state = core::OpState::idle;
      op_.result = 0;
      if (!loop_.backend().start(op_)) {
        keepalive_ = shared_from_this();
        loop_.add_background_io();
        return;
      }
      if (op_.result <= 0) {
        report_read_error(op_.result);
        return;
      }
      record(static_cast<std::size_t>(op_.result));
    }
  }

  void record(std::size_t count) {
    for (std::size_t i = 0; i < count; ++i) loop_.remove_external_work();
    pending_.insert(pending_.end(), buffer_, buffer_ + count);
    schedule_dispatch();
  }

  void schedule_dispatch() {
    if (dispatch_scheduled_ || closing_) return;
    dispatch_scheduled_ = true;
    loop_.call_soon([self = shared_from_this()] { self->dispatch(); });
  }

  // A loop callback: schedules the user's callbacks, one handle per delivery, then re-arms.
  void dispatch() {
    dispatch_scheduled_ = false;
    std::vector<unsigned char> signals = std::exchange(pending_, {});
    for (unsigned char sig : signals) {
      auto it = handlers_.find(sig);
      if (it == handlers_.end()) continue;
      loop_.call_soon([entry = it->second] {
        if (entry->active) entry->callback();
      });
    }
    arm();
    if (handlers_.empty()) drop_unread();
  }

  // Runs inside the backend's dispatch: record and schedule only.
  static void on_complete(core::Operation* operation) {
    SignalHub* hub = static_cast<Op*>(operation)->hub;
    std::shared_ptr<SignalHub> self = std::move(hub->keepalive_);  // released on return
    hub->loop_.remove_background_io();
    if (hub->closing_) return;
    const std::int64_t result = operation->result;
    if (result > 0) {
      hub->record(static_cast<std::size_t>(result));
    } else if (result != -ECANCELED) {
      hub->report_read_error(result);
      return;
    } else {
      hub->schedule_dispatch();  // re-arms if handlers came back while the cancel was pending
    }
  }

  void report_read_error(std::int64_t result) {
    const int error = result < 0 ? static_cast<int>(-result) : EPIPE;
    try {
      throw_os_error(error, "reading the signal pipe");
    } catch (...) {
      loop_.call_exception_handler({"signal handling stopped", std::current_exception(), {}});
    }
  }

  EventLoop& loop_;
  int read_fd_ = -1;
  int write_fd_ = -1;
  Op op_;
  unsigned char buffer_[64] = {};
  std::map<int, std::shared_ptr<Entry>> handlers_;
  Sink sink_;
  std::vector<unsigned char> pending_;
  std::shared_ptr<SignalHub> keepalive_;  // set while the read is in flight
  bool dispatch_scheduled_ = false;
  bool closing_ = false;
};

std::shared_ptr<SignalHub> find_hub(EventLoop& loop) {
  Registry& r = registry();
  std::lock_guard lock(r.mutex);
  auto it = r.hubs.find(&loop);
  return it == r.hubs.end() ? nullptr : it->second;
}

std::shared_ptr<SignalHub> hub_for(EventLoop& loop) {
  if (std::shared_ptr<SignalHub> hub = find_hub(loop)) return hub;
  loop.check_open();
  auto hub = std::make_shared<SignalHub>(loop);
  {
    Registry& r = registry();
    std::lock_guard lock(r.mutex);
    r.hubs.emplace(&loop, hub);
  }
  loop.at_close([&loop] {
    std::shared_ptr<SignalHub> closing;
    {
      Registry& r = registry();
      std::lock_guard lock(r.mutex);
      auto it = r.hubs.find(&loop);
      if (it == r.hubs.end()) return;
      closing = std::move(it->second);
      r.hubs.erase(it);
    }
    closing->on_loop_close();
  });
  return hub;
}

bool on_main_thread() {
#ifdef __linux__
  return ::syscall(SYS_gettid) == ::getpid();
#else
  return ::pthread_main_np() == 1;  // FreeBSD, macOS
#endif
}

}  // namespace

void add_signal_handler(EventLoop& loop, int sig, Callback callback) {
  check_signal(sig);
  loop.check_open();
  hub_for(loop)->add(sig, std::move(callback));
}

bool remove_signal_handler(EventLoop& loop, int sig) {
  check_signal(sig);
  std::shared_ptr<SignalHub> hub = find_hub(loop);
  return hub != nullptr && hub->remove(sig);
}

namespace detail {

std::uint64_t signal_handler_token(EventLoop& loop, int sig) {
  if (sig <= 0 || sig >= NSIG) return 0;
  std::shared_ptr<SignalHub> hub = find_hub(loop);
  return hub ? hub->token(sig) : 0;
}

struct RunnerInterrupt::State {
  EventLoop* loop = nullptr;
  AnyTask main_task;
  int count = 0;
};

RunnerInterrupt::RunnerInterrupt(EventLoop& loop, AnyTask main_task) : loop_(loop) {
  // asyncio.Runner steps aside when it is not on the main thread or when the program has
  // its own SIGINT handler.
  if (!on_main_thread()) return;
  struct sigaction current = {};
  if (::sigaction(SIGINT, nullptr, &current) < 0) return;
  if ((current.sa_flags & SA_SIGINFO) != 0 || current.sa_handler != SIG_DFL) return;
  state_ = std::make_shared<State>();
  state_->loop = &loop;
  state_->main_task = std::move(main_task);
  add_signal_handler(loop, SIGINT, [state = state_] {
    ++state->count;
    if (state->count == 1 && !state->main_task.done()) {
      state->main_task.cancel();
      return;
    }
    // A second Ctrl-C (or one after the main task finished): asyncio raises
    // KeyboardInterrupt from wherever the program is; we stop the loop and run() raises it.
    state->loop->stop();
  });
  token_ = signal_handler_token(loop, SIGINT);
}

RunnerInterrupt::~RunnerInterrupt() {
  if (token_ == 0 || loop_.is_closed()) return;
  if (signal_handler_token(loop_, SIGINT) == token_) remove_signal_handler(loop_, SIGINT);
}

int RunnerInterrupt::count() const noexcept {
  return state_ ? state_->count : 0;
}

}  // namespace detail
}  // namespace corio

#else  // _WIN32

// Until signals_win32.cpp exists (console control events for SIGINT/SIGBREAK): Runner runs
// without Ctrl-C handling and add_signal_handler says it is not there yet. Delete this block
// when the Windows implementation lands.
#include "corio/signals.hpp"

namespace corio {
void add_signal_handler(EventLoop&, int, Callback) {
  throw NotImplementedError("add_signal_handler is not implemented on Windows yet");
}
bool remove_signal_handler(EventLoop&, int) {
  return false;
}
namespace detail {
std::uint64_t signal_handler_token(EventLoop&, int) {
  return 0;
}
struct RunnerInterrupt::State {};
RunnerInterrupt::RunnerInterrupt(EventLoop& loop, AnyTask) : loop_(loop) {}
RunnerInterrupt::~RunnerInterrupt() = default;
int RunnerInterrupt::count() const noexcept {
  return 0;
}
}  // namespace detail
}  // namespace corio

#endif  // _WIN32
