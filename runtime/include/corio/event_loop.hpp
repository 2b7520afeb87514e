// EventLoop: asyncio's event loop. One per thread at most is running.
// It owns the ready queue, the timer heap and the backend (chosen at compile time, no
// virtual calls), and can be driven one iteration at a time (run_once) by a foreign runtime.
// It must never block except inside the backend's wait, and never touch another thread's
// state except through call_soon_threadsafe's queue.
#pragma once

#include <absl/base/thread_annotations.h>
#include <absl/functional/any_invocable.h>
#include <absl/synchronization/mutex.h>

#include <atomic>
#include <coroutine>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "corio/config.hpp"
#include "corio/core/clock.hpp"
#include "corio/core/errors.hpp"
#include "corio/core/ready_queue.hpp"
#include "corio/core/timer_heap.hpp"
#include "corio/handle.hpp"

namespace corio {

template <class T>
class Coro;
template <class T>
class Future;
template <class T>
class Task;
class AnyTask;

namespace detail {
class TaskBase;
class FutureBase;
}  // namespace detail

// What create_task does with a new task: schedule its first step, as asyncio's default
// factory does, or run it at once, up to its first suspension (asyncio.eager_task_factory).
// loop.set_task_factory(corio::eager_task_factory) makes eager start the loop's default.
enum class TaskFactory : std::uint8_t { standard, eager };
inline constexpr TaskFactory eager_task_factory = TaskFactory::eager;

// create_task's keyword arguments (asyncio 3.14: name=, eager_start=). Trivially copyable
// on purpose: g++ 12 copies a temporary aggregate inside a co_await expression bytewise, which
// breaks a std::string member (`co_await create_task(c(), TaskOptions{...})` freed a pointer
// into the caller's frame). create_task copies the name before it returns, so a view is enough
// for options written in the call; a named TaskOptions must not outlive the string it views.
// (`create_task(c, {})` is ambiguous between a name and options: write one or the other.)
struct TaskOptions {
  std::string_view name;
  // true: start the coroutine now, when the loop is running (3.14's eager_start=True);
  // false: schedule it; unset: as the loop's task factory says.
  std::optional<bool> eager_start;
};

// What the exception handler receives, as asyncio's context dict.
struct ExceptionContext {
  std::string message;
  std::exception_ptr exception;  // may be null
  std::string task_name;         // set when a task is involved
};

class EventLoop {
 public:
  struct Options {
    bool debug = false;
    // Time stands still while anything is runnable, and jumps to the next timer when every
    // task waits on timers only (no I/O, no thread work in flight). For tests.
    bool virtual_time = false;
    double slow_callback_duration = 0.1;  // seconds; debug mode warns above it
    // Poll I/O in every iteration, as asyncio's _run_once does, even when callbacks are
    // already ready (by default corio skips that poll for up to kPollInterval iterations).
    // Code that counts on one iteration seeing every event already delivered (CPython's
    // asyncio tests, through the Python binding) needs it; it costs a system call an iteration.
    bool poll_every_iteration = false;
    // The compiled-in backend's settings, e.g. IoUringBackend::Options (sqpoll,
    // batch_wait_us, ...); empty for backends that have none. Unset: the backend's defaults
    // as the environment adjusts them (CORIO_IO_URING).
    std::optional<SelectedBackend::Options> backend;
  };
  using ExceptionHandler = absl::AnyInvocable<void(EventLoop&, const ExceptionContext&)>;

  EventLoop();
  explicit EventLoop(Options options);
  ~EventLoop();
  EventLoop(const EventLoop&) = delete;
  EventLoop& operator=(const EventLoop&) = delete;

  // --- scheduling callbacks ---
  Handle call_soon(Callback callback);
  TimerHandle call_later(double delay, Callback callback);
  TimerHandle call_at(double when, Callback callback);
  // The only method safe to call from another thread. Wakes the loop.
  Handle call_soon_threadsafe(Callback callback);
  double time() const noexcept { return core::to_seconds(now_ns()); }

  // --- running and stopping ---
  void run_forever();
  // Runs until the awaitable (a Coro, Task or Future) is done; returns its result.
  template <class Awaitable>
  decltype(auto) run_until_complete(Awaitable&& awaitable);
  void stop() noexcept { stopping_ = true; }
  void close();
  bool is_running() const noexcept { return running_; }
  bool is_closed() const noexcept { return closed_; }
  // One iteration of asyncio's _run_once: wait for I/O or the next timer, then run what
  // was ready at the start of the iteration. For embedding in a foreign loop.
  void run_once();

  // --- futures and tasks ---
  template <class T = void>
  Future<T> create_future();
  template <class T>
  Task<T> create_task(Coro<T> coro, std::string name = {});
  // An eager task (see TaskFactory) has run up to its first suspension when this returns,
  // with current_task() naming it meanwhile; one that never suspends is already done and
  // was never scheduled. Eager starts nest on the thread's stack (an eager task creating an
  // eager task...): past kMaxEagerNesting levels a new task is scheduled instead, where
  // CPython would raise RecursionError.
  template <class T>
  Task<T> create_task(Coro<T> coro, TaskOptions options);
  void set_task_factory(TaskFactory factory) noexcept {
    eager_tasks_ = factory == TaskFactory::eager;
  }
  void set_task_factory(std::nullptr_t) noexcept { eager_tasks_ = false; }  // the default
  TaskFactory get_task_factory() const noexcept {
    return eager_tasks_ ? TaskFactory::eager : TaskFactory::standard;
  }
  // An awaitable that can become a coroutine (a StreamReader read, say) runs as one.
  template <class A>
  requires requires(A a) { std::move(a).coro(); }
  auto create_task(A awaitable, std::string name = {}) {
    return create_task(std::move(awaitable).coro(), std::move(name));
  }
  template <class A>
  requires requires(A a) { std::move(a).coro(); }
  auto create_task(A awaitable, TaskOptions options) {
    return create_task(std::move(awaitable).coro(), options);
  }

  // --- error handling and debug ---
  void set_exception_handler(ExceptionHandler handler) { exception_handler_ = std::move(handler); }
  // Run on the loop's thread right before and right after each wait that may block (never
  // around a poll that returns at once): a foreign runtime drops its own lock there and takes
  // it back (the Python binding, its GIL). `after` runs even when the wait throws.
  void set_wait_hooks(Callback before, Callback after) {
    before_wait_ = std::move(before);
    after_wait_ = std::move(after);
  }
  // Called from a callback: the iteration in progress ends once that callback returns; due
  // timers not yet fired and callbacks not yet run stay queued, first in line for the next
  // iteration. A foreign runtime uses it for a fatal error (Python's KeyboardInterrupt and
  // SystemExit leave asyncio's _run_once at once, the rest of _ready kept).
  void end_iteration() noexcept { end_iteration_ = true; }
  void call_exception_handler(const ExceptionContext& context);
  static void default_exception_handler(const ExceptionContext& context);
  bool get_debug() const noexcept { return options_.debug; }
  void set_debug(bool enabled) noexcept { options_.debug = enabled; }
  bool uses_virtual_time() const noexcept { return options_.virtual_time; }

  // --- for the runtime's awaitables and for embedders; not part of asyncio's API ---
  core::Nanos now_ns() const noexcept {
    return options_.virtual_time ? virtual_now_ : core::monotonic_now();
  }
  void post(core::ReadyItem item) { ready_.push(item); }
  // The ready-queue entry that runs a Handle's callback.
  static void run_handle(void* state);
  void post(std::coroutine_handle<> handle) { ready_.push({&resume_handle, handle.address()}); }
  void arm_timer(core::TimerNode& node) { timers_.push(&node); }
  void disarm_timer(core::TimerNode& node) noexcept { timers_.erase(&node); }
  SelectedBackend& backend() noexcept { return backend_; }
  detail::TaskBase* current_task() const noexcept { return current_task_; }
  // Work that runs outside the loop (a thread-pool job, say) and will come back through
  // call_soon_threadsafe. While any is pending, virtual time does not jump.
  void add_external_work() noexcept { external_work_.fetch_add(1, std::memory_order_relaxed); }
  void remove_external_work() noexcept { external_work_.fetch_sub(1, std::memory_order_relaxed); }
  // Backend operations that stay in flight only to hear from the outside world (the read of
  // the signal pipe): they must not keep virtual time from jumping. Loop thread only.
  void add_background_io() noexcept { ++background_io_; }
  void remove_background_io() noexcept { --background_io_; }
  // Raises RuntimeError when the loop is closed.
  void check_open() const;
  // Debug mode only, as asyncio's _check_thread: RuntimeError when a loop running on one
  // thread is handed a non-thread-safe call (call_soon, call_later, create_task...) from
  // another. Without debug a call from another thread is a data race nobody reports.
  void check_thread() const {
    if (options_.debug) [[unlikely]]
      check_thread_in_debug();
  }
  // Runs a callback when the loop closes (executors, async generators register here).
  void at_close(Callback callback) { close_callbacks_.push_back(std::move(callback)); }
  // An asynchronous clean-up step that Runner::close awaits (run_until_complete) after it has
  // cancelled the remaining tasks and before it closes the loop: shutdown_asyncgens and
  // shutdown_default_executor register here. A step may register further steps.
  using ShutdownStep = absl::AnyInvocable<Coro<void>()>;
  void at_shutdown(ShutdownStep step) { shutdown_steps_.push_back(std::move(step)); }
  std::vector<ShutdownStep> take_shutdown_steps() { return std::exchange(shutdown_steps_, {}); }

  static void resume_handle(void* address);

 private:
  friend class detail::TaskBase;
  friend class detail::FutureBase;

  void check_thread_in_debug() const;
  core::Nanos next_timeout() const noexcept;
  TimerHandle schedule_timer(core::Nanos deadline, Callback callback);
  // Runs the loop until `future` is done (run_until_complete without the result).
  void run_until_done(detail::FutureBase& future);
  void run_ready(std::size_t count);
  void drain_threadsafe(std::size_t ahead_of = SIZE_MAX);
  void destroy_pending_tasks();
  class RunningScope;

  template <class T>
  Task<T> start_task(Coro<T> coro, std::string name, bool eager);

  Options options_;
  SelectedBackend backend_;
  core::ReadyQueue ready_;
  core::TimerHeap timers_;
  core::Nanos virtual_now_ = 0;
  static constexpr int kPollInterval = 61;
  int polls_skipped_ = 0;
  bool running_ = false;
  bool stopping_ = false;
  bool end_iteration_ = false;
  bool closed_ = false;
  bool eager_tasks_ = false;
  static constexpr int kMaxEagerNesting = 64;
  int eager_nesting_ = 0;  // eager first steps running now, one inside another
  detail::TaskBase* current_task_ = nullptr;
  detail::FutureBase* live_futures_ = nullptr;  // every live future and task
  std::uint64_t task_counter_ = 0;
  ExceptionHandler exception_handler_;
  Callback before_wait_;
  Callback after_wait_;
  std::vector<Callback> close_callbacks_;
  std::vector<ShutdownStep> shutdown_steps_;
  std::atomic<std::thread::id> running_thread_{};  // while it runs; read by check_thread

  // std::mutex, not absl::Mutex: ThreadSanitizer cannot see through an uninstrumented Abseil.
  std::mutex threadsafe_mutex_;
  std::vector<detail::HandleState*> threadsafe_queue_;  // guarded by threadsafe_mutex_
  std::vector<detail::HandleState*> threadsafe_swap_;
  std::atomic<bool> threadsafe_pending_{false};
  std::atomic<int> external_work_{0};
  std::size_t background_io_ = 0;

  friend std::vector<AnyTask> all_tasks(EventLoop&);
};

// The loop running on this thread; RuntimeError("no running event loop") if none.
EventLoop& get_running_loop();
// The loop running on this thread, or nullptr.
EventLoop* try_get_running_loop() noexcept;

}  // namespace corio
