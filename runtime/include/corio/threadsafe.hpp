// run_coroutine_threadsafe(coro, loop) and ConcurrentFuture<T>: submitting a coroutine to a
// loop running on another thread (asyncio.run_coroutine_threadsafe) and waiting for it there
// (a concurrent.futures.Future). The foreign thread blocks on result(timeout); cancel()
// cancels the task on the loop's thread. Everything a ConcurrentFuture exposes is safe to use
// from any thread; the task itself is only ever touched on the loop's thread.
// It must never block the loop's thread: result() is for other threads (calling it on the
// loop's own thread would wait forever, as in Python).
#pragma once

#include <absl/functional/any_invocable.h>

#include <condition_variable>
#include <cstdint>
#include <exception>
#include <memory>
#include <mutex>
#include <optional>
#include <type_traits>
#include <utility>
#include <vector>

#include "corio/coro.hpp"
#include "corio/detail/loop_link.hpp"
#include "corio/event_loop.hpp"
#include "corio/future.hpp"
#include "corio/task.hpp"

namespace corio {

namespace detail {

class ConcurrentStateBase : public std::enable_shared_from_this<ConcurrentStateBase> {
 public:
  enum class Status : std::uint8_t { pending, cancelled, finished };

  virtual ~ConcurrentStateBase() = default;

  // --- any thread ---
  bool done() const;
  bool cancelled() const;
  // False once finished; true if cancelled now or before. Cancels the task on its loop.
  bool cancel();
  // Blocks until done; false if `timeout` seconds passed first (nullopt: no limit).
  bool wait(std::optional<double> timeout) const;
  // Runs `callback` once done: now on this thread if already done, else on the thread that
  // completes the future (the loop's, or the one that cancels).
  void add_done_callback(absl::AnyInvocable<void()> callback);
  // Throws what result() throws when not finished with a value: TimeoutError, CancelledError,
  // or the stored exception. Returns with the lock held, for the caller to read the value.
  void wait_for_value(std::optional<double> timeout) const;
  void unlock() const { mutex_.unlock(); }
  // Waits, then gives the stored exception (null on success); CancelledError if cancelled.
  std::exception_ptr exception(std::optional<double> timeout) const;

  // --- loop thread ---
  // The task now runs the coroutine. True: a cancel() came first and could not reach the
  // loop; cancel the task now.
  bool attach(std::shared_ptr<LoopLink> link, TaskBase* task);
  void detach_task() noexcept { task_ = nullptr; }
  // Finished with an exception (unless cancelled first).
  void set_exception(std::exception_ptr error);
  // The task ended cancelled.
  void set_cancelled();

 protected:
  // Moves to `status` if still pending, with `store` run under the lock; then wakes waiters
  // and runs the callbacks (outside the lock). False if it was already done.
  template <class Store>
  bool complete(Status status, Store&& store) {
    std::vector<absl::AnyInvocable<void()>> callbacks;
    {
      std::lock_guard lock(mutex_);
      if (status_ != Status::pending) return false;
      store();
      status_ = status;
      callbacks.swap(callbacks_);
      done_cv_.notify_all();
    }
    run_callbacks(callbacks);
    return true;
  }
  static void run_callbacks(std::vector<absl::AnyInvocable<void()>>& callbacks);

  // std primitives rather than absl's: ThreadSanitizer understands them without an
  // instrumented Abseil build. The fields below are guarded by mutex_.
  mutable std::mutex mutex_;
  mutable std::condition_variable done_cv_;
  Status status_ = Status::pending;
  std::exception_ptr error_;

 private:
  std::vector<absl::AnyInvocable<void()>> callbacks_;
  std::shared_ptr<LoopLink> link_;
  bool cancel_unposted_ = false;
  TaskBase* task_ = nullptr;  // loop thread only; null once the task is done
};

template <class T>
class ConcurrentState final : public ConcurrentStateBase {
 public:
  // Loop thread: the task finished; copy its outcome (unless this was cancelled meanwhile).
  void set_from(Future<T>& task) {
    detach_task();
    if (task.cancelled()) {
      set_cancelled();
    } else if (std::exception_ptr error = task.exception()) {
      set_exception(std::move(error));
    } else {
      complete(Status::finished, [&] { value.emplace(std::move(**task.value_slot())); });
    }
  }

  std::optional<Stored<T>> value;  // guarded by mutex_
};

// If the loop closes before the scheduling callback runs, the future fails instead of
// leaving its waiters blocked forever.
class ScheduleGuard {
 public:
  explicit ScheduleGuard(std::shared_ptr<ConcurrentStateBase> state) : state_(std::move(state)) {}
  ScheduleGuard(ScheduleGuard&& other) noexcept = default;
  ScheduleGuard& operator=(ScheduleGuard&&) = delete;
  ~ScheduleGuard();
  void disarm() noexcept { state_.reset(); }

 private:
  std::shared_ptr<ConcurrentStateBase> state_;
};

template <class T>
void start_threadsafe(EventLoop& loop, Coro<T> coro,
                      const std::shared_ptr<ConcurrentState<T>>& state) {
  Task<T> task;
  try {
    task = loop.create_task(std::move(coro));
    task.add_done_callback([state](Future<T> done) { state->set_from(done); });
  } catch (...) {
    state->set_exception(std::current_exception());
    return;
  }
  if (state->attach(loop_link(loop), static_cast<TaskBase*>(task.base()))) task.cancel();
}

}  // namespace detail

// concurrent.futures.Future, as returned by run_coroutine_threadsafe.
template <class T = void>
class ConcurrentFuture {
 public:
  ConcurrentFuture() = default;
  explicit ConcurrentFuture(std::shared_ptr<detail::ConcurrentState<T>> state)
      : state_(std::move(state)) {}

  bool valid() const noexcept { return static_cast<bool>(state_); }
  bool done() const { return state_->done(); }
  bool cancelled() const { return state_->cancelled(); }
  // Marks the future cancelled at once (waiters wake with CancelledError) and cancels the
  // task on the loop's thread. False if the result is already there.
  bool cancel() { return state_->cancel(); }

  // Waits (at most `timeout` seconds; nullopt: no limit) and returns the coroutine's result,
  // or throws its exception, CancelledError, or TimeoutError when the time runs out. A copy
  // each call; a move-only result can be taken once.
  T result(std::optional<double> timeout = std::nullopt) {
    state_->wait_for_value(timeout);
    struct Unlock {
      const detail::ConcurrentStateBase* s;
      ~Unlock() { s->unlock(); }
    } unlock{state_.get()};
    if constexpr (!std::is_void_v<T>) {
      auto& slot = *state_->value;  // NOLINT: guarded by the lock wait_for_value returned with
      if constexpr (std::is_copy_constructible_v<T>) {
        return slot;
      } else {
        return std::move(slot);
      }
    }
  }
  // Waits like result(); the exception the coroutine raised, or null if it returned.
  std::exception_ptr exception(std::optional<double> timeout = std::nullopt) {
    return state_->exception(timeout);
  }
  // `callback(future)` once done (see ConcurrentStateBase::add_done_callback for the thread).
  void add_done_callback(absl::AnyInvocable<void(ConcurrentFuture<T>)> callback) {
    // Weak: the state keeps its callbacks until done, and must not keep itself alive.
    std::weak_ptr<detail::ConcurrentState<T>> weak = state_;
    state_->add_done_callback([weak = std::move(weak), callback = std::move(callback)]() mutable {
      if (auto state = weak.lock()) callback(ConcurrentFuture<T>(std::move(state)));
    });
  }

 private:
  std::shared_ptr<detail::ConcurrentState<T>> state_;
};

// asyncio.run_coroutine_threadsafe(coro, loop): from any thread, schedules `coro` as a task
// on `loop` (which runs on another thread) and returns a ConcurrentFuture of its result.
// RuntimeError if the loop is already closed. The loop must outlive the call itself.
template <class T>
ConcurrentFuture<T> run_coroutine_threadsafe(Coro<T> coro, EventLoop& loop) {
  auto state = std::make_shared<detail::ConcurrentState<T>>();
  loop.call_soon_threadsafe(
      [&loop, state, coro = std::move(coro), guard = detail::ScheduleGuard(state)]() mutable {
        guard.disarm();
        detail::start_threadsafe(loop, std::move(coro), state);
      });
  return ConcurrentFuture<T>(state);
}

}  // namespace corio
