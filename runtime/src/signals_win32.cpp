// Windows signal handlers for event loops (the twin of signals_posix.cpp).
// Windows has no kill(): the C runtime's signal() is what raise() reaches, and for SIGINT and
// SIGBREAK it is also what the console's Ctrl-C / Ctrl-Break events reach (the runtime turns
// them into those signals on a thread of its own). So the process-level handler is a C
// runtime handler, and because it never runs in an asynchronous-signal context (raise() calls
// it synchronously, console events call it on an ordinary thread) it may take a mutex and hand
// the delivery to the owning loop with call_soon_threadsafe: no self-pipe, nothing in flight,
// so it never holds virtual time back.
// Catchable here: SIGINT, SIGBREAK, SIGTERM, SIGABRT. SIGILL/SIGFPE/SIGSEGV are synchronous
// faults and are refused. Nothing here may run user code on the delivering thread.
#ifdef _WIN32

// clang-format off
#include <windows.h>
// clang-format on

#include <atomic>
#include <csignal>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <utility>

#include "corio/core/errors.hpp"
#include "corio/signals.hpp"

namespace corio {
namespace {

using CrtHandler = void (*)(int);

struct Entry {
  std::uint64_t token = 0;
  Callback callback;
  std::atomic<bool> active{true};
};

// Process-wide state under one mutex: which loop owns each signal, its entry, and the
// handler to restore. Never destroyed (a loop may close during exit).
struct Registry {
  std::mutex mutex;
  EventLoop* owner[NSIG] = {};
  std::shared_ptr<Entry> entry[NSIG];
  CrtHandler previous[NSIG] = {};
  bool saved[NSIG] = {};
  std::unordered_map<const EventLoop*, bool> closing_hooked;
};
Registry& registry() {
  static Registry* r = new Registry;
  return *r;
}

std::atomic<std::uint64_t> g_next_token{1};
// Static initialisation runs on the main thread: asyncio.Runner only handles Ctrl-C there.
const DWORD g_main_thread = ::GetCurrentThreadId();

void on_signal(int sig);

void deliver(int sig) {
  Registry& r = registry();
  std::lock_guard lock(r.mutex);
  if (sig <= 0 || sig >= NSIG || r.owner[sig] == nullptr) return;
  std::shared_ptr<Entry> entry = r.entry[sig];
  // Holding the mutex keeps the loop open: its at_close hook takes the same mutex first.
  r.owner[sig]->call_soon_threadsafe([entry = std::move(entry)] {
    if (entry->active.load()) entry->callback();
  });
}

void on_signal(int sig) {
  // The Microsoft C runtime resets a handler to SIG_DFL before calling it: re-arm first.
  std::signal(sig, &on_signal);
  deliver(sig);
}

void check_signal(int sig) {
  switch (sig) {
    case SIGINT:
    case SIGBREAK:
    case SIGTERM:
    case SIGABRT:
      return;
    case SIGILL:
    case SIGFPE:
    case SIGSEGV:
      throw RuntimeError("sig " + std::to_string(sig) + " cannot be caught");
    default:
      throw ValueError("invalid signal number " + std::to_string(sig));
  }
}

// Gives `sig` back to its previous handler if `loop` still owns it. Caller holds the mutex.
void release_locked(Registry& r, EventLoop& loop, int sig) {
  if (r.owner[sig] != &loop) return;
  if (r.entry[sig]) r.entry[sig]->active.store(false);
  r.owner[sig] = nullptr;
  r.entry[sig].reset();
  if (r.saved[sig]) {
    std::signal(sig, r.previous[sig]);
    r.saved[sig] = false;
  }
}

void hook_close(Registry& r, EventLoop& loop) {
  if (r.closing_hooked[&loop]) return;
  r.closing_hooked[&loop] = true;
  loop.at_close([&loop] {
    Registry& reg = registry();
    std::lock_guard lock(reg.mutex);
    for (int sig = 1; sig < NSIG; ++sig) release_locked(reg, loop, sig);
    reg.closing_hooked.erase(&loop);
  });
}

}  // namespace

void add_signal_handler(EventLoop& loop, int sig, Callback callback) {
  check_signal(sig);
  loop.check_open();
  auto entry = std::make_shared<Entry>();
  entry->token = g_next_token.fetch_add(1);
  entry->callback = std::move(callback);
  Registry& r = registry();
  std::lock_guard lock(r.mutex);
  hook_close(r, loop);
  if (r.entry[sig]) r.entry[sig]->active.store(false);  // replaced (maybe another loop's)
  r.owner[sig] = &loop;
  r.entry[sig] = std::move(entry);
  const CrtHandler old = std::signal(sig, &on_signal);
  if (old == SIG_ERR) {
    r.owner[sig] = nullptr;
    r.entry[sig].reset();
    throw RuntimeError("sig " + std::to_string(sig) + " cannot be caught");
  }
  if (!r.saved[sig]) {
    r.previous[sig] = old;
    r.saved[sig] = true;
  }
}

bool remove_signal_handler(EventLoop& loop, int sig) {
  check_signal(sig);
  Registry& r = registry();
  std::lock_guard lock(r.mutex);
  if (r.owner[sig] != &loop) return false;
  release_locked(r, loop, sig);
  return true;
}

namespace detail {

std::uint64_t signal_handler_token(EventLoop& loop, int sig) {
  if (sig <= 0 || sig >= NSIG) return 0;
  Registry& r = registry();
  std::lock_guard lock(r.mutex);
  return r.owner[sig] == &loop && r.entry[sig] ? r.entry[sig]->token : 0;
}

struct RunnerInterrupt::State {
  EventLoop* loop = nullptr;
  AnyTask main_task;
  int count = 0;
};

RunnerInterrupt::RunnerInterrupt(EventLoop& loop, AnyTask main_task) : loop_(loop) {
  // asyncio.Runner steps aside off the main thread or when the program has its own handler.
  if (::GetCurrentThreadId() != g_main_thread) return;
  const CrtHandler current = std::signal(SIGINT, SIG_DFL);
  std::signal(SIGINT, current);
  if (current != SIG_DFL) return;
  state_ = std::make_shared<State>();
  state_->loop = &loop;
  state_->main_task = std::move(main_task);
  add_signal_handler(loop, SIGINT, [state = state_] {
    ++state->count;
    if (state->count == 1 && !state->main_task.done()) {
      state->main_task.cancel();
      return;
    }
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

#endif  // _WIN32
