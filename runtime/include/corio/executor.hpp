// Executors and run_in_executor: where blocking work runs off the loop.
// Executor / ThreadPoolExecutor are concurrent.futures' twins; run_in_executor(loop, executor,
// fn, args...) is asyncio's loop.run_in_executor: it submits fn(args...) at once and returns
// an asyncio Future (awaitable, gatherable) of its result, with exceptions crossing threads
// intact. Passing nullptr uses the loop's default executor, a ThreadPoolExecutor started
// lazily and shut down (waiting for running jobs) by Runner::close via
// shutdown_default_executor, or by the loop's close.
// Cancelling the Future (or the task awaiting it) does not stop a job already running, as in
// asyncio: its result is discarded; a job not started yet is skipped. While a job is pending
// the loop counts it as external work, so virtual time does not jump past it.
// Nothing here may touch a loop object from a worker thread: results come back through
// call_soon_threadsafe and are set on the loop's thread.
#pragma once

#include <absl/functional/any_invocable.h>

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <exception>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "corio/coro.hpp"
#include "corio/event_loop.hpp"
#include "corio/future.hpp"
#include "corio/task.hpp"

namespace corio {

// concurrent.futures.Executor: runs submitted jobs somewhere else.
class Executor {
 public:
  using Job = absl::AnyInvocable<void() &&>;
  virtual ~Executor() = default;
  // Schedules `job`. RuntimeError after shutdown. A job dropped without running (shutdown with
  // cancel_futures) is destroyed uncalled: its destructor is the notification.
  virtual void submit(Job job) = 0;
  // No new jobs; with wait, returns once every running and queued job has finished; with
  // cancel_futures, queued jobs that have not started are dropped.
  virtual void shutdown(bool wait = true, bool cancel_futures = false) = 0;
};

// concurrent.futures.ThreadPoolExecutor: at most max_workers threads, started on demand (a new
// one only when no idle thread can take the job), reused until shutdown.
class ThreadPoolExecutor final : public Executor {
 public:
  // 0 means Python's default: min(32, number of cores + 4).
  explicit ThreadPoolExecutor(std::size_t max_workers = 0);
  // shutdown(wait = true).
  ~ThreadPoolExecutor() override;
  ThreadPoolExecutor(const ThreadPoolExecutor&) = delete;
  ThreadPoolExecutor& operator=(const ThreadPoolExecutor&) = delete;

  void submit(Job job) override;
  void shutdown(bool wait = true, bool cancel_futures = false) override;

  std::size_t max_workers() const noexcept { return max_workers_; }
  // How many threads have been started so far.
  std::size_t thread_count() const;
  static std::size_t default_max_workers() noexcept;

 private:
  void work();

  const std::size_t max_workers_;
  // std primitives rather than absl's: ThreadSanitizer understands them without an
  // instrumented Abseil build.
  mutable std::mutex mutex_;
  std::condition_variable wake_;
  // Guarded by mutex_:
  std::deque<Job> queue_;
  std::vector<std::thread> threads_;
  std::size_t idle_ = 0;
  bool shutdown_ = false;
};

namespace detail {

class LoopThreads;

// One job submitted through run_in_executor, shared by the worker and the loop.
class ThreadJobBase {
 public:
  virtual ~ThreadJobBase() = default;
  // Worker thread: calls the function and keeps its outcome.
  virtual void run() noexcept = 0;
  // Loop thread: moves the outcome into `future` (still pending).
  virtual void deliver(FutureBase& future) = 0;

  std::atomic<bool> cancelled{false};  // set on the loop thread when the Future is cancelled
  bool ran = false;                    // written by the worker before it posts completion

  // Loop thread only.
  FutureBase* future = nullptr;  // one reference, released on the loop thread
  LoopThreads* owner = nullptr;
  ThreadJobBase* prev = nullptr;
  ThreadJobBase* next = nullptr;
};

template <class R>
class ThreadJob final : public ThreadJobBase {
 public:
  explicit ThreadJob(absl::AnyInvocable<R() &&> function) : function_(std::move(function)) {}

  void run() noexcept override {
    try {
      if constexpr (std::is_void_v<R>) {
        std::move(function_)();
        value_.emplace();
      } else {
        value_.emplace(std::move(function_)());
      }
    } catch (...) {
      error_ = std::current_exception();
    }
    function_ = nullptr;  // the function's captures die on the worker, where they were used
  }

  void deliver(FutureBase& future) override {
    if (error_) {
      future.set_exception(std::move(error_));
      return;
    }
    static_cast<FutureState<R>&>(future).value.emplace(std::move(*value_));
    FutureAccess::finish_ok(&future);
  }

 private:
  absl::AnyInvocable<R() &&> function_;
  std::optional<Stored<R>> value_;
  std::exception_ptr error_;
};

// The Future of a job: cancelling it also tells a job that has not started not to run.
template <class R>
class ExecutorFutureState final : public FutureState<R> {
 public:
  ExecutorFutureState(EventLoop* loop, std::shared_ptr<ThreadJobBase> job)
      : FutureState<R>(loop), job_(std::move(job)) {}
  bool cancel(std::string message = {}) override {
    if (!FutureState<R>::cancel(std::move(message))) return false;
    job_->cancelled.store(true, std::memory_order_release);
    return true;
  }

 private:
  std::shared_ptr<ThreadJobBase> job_;
};

// Loop thread: hands `job` to `executor` (nullptr: the loop's default executor).
void submit_job(EventLoop& loop, Executor* executor, const std::shared_ptr<ThreadJobBase>& job,
                FutureBase* future);

}  // namespace detail

// loop.run_in_executor(executor, fn, *args). Arguments are copied (or moved) now, as for
// std::thread; use std::ref to pass a reference that outlives the job.
template <class F, class... Args>
auto run_in_executor(EventLoop& loop, Executor* executor, F&& function, Args&&... args) {
  using R = std::invoke_result_t<std::decay_t<F>, std::decay_t<Args>...>;
  static_assert(
      !detail::IsCoro<std::remove_cvref_t<R>>::value,
      "run_in_executor() runs plain functions; a coroutine would only be created on the worker");
  loop.check_open();
  auto job = std::make_shared<detail::ThreadJob<R>>(
      [function = std::forward<F>(function),
       bound = std::make_tuple(std::forward<Args>(args)...)]() mutable -> R {
        return std::apply(std::move(function), std::move(bound));
      });
  auto* state = new detail::ExecutorFutureState<R>(&loop, job);
  Future<R> future = detail::FutureAccess::adopt<R>(state, &state->value);
  detail::submit_job(loop, executor, job, state);
  return future;
}

// asyncio's loop.shutdown_default_executor(): lets every job of the default executor finish
// (waiting on a helper thread, so the loop keeps running and delivering results), then stops
// its threads. After it, run_in_executor(loop, nullptr, ...) raises RuntimeError. Closes the
// loop's async generators first, as asyncio.run does, since their clean-up may need threads.
Coro<void> shutdown_default_executor(EventLoop& loop);

}  // namespace corio
