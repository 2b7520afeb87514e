// Task<T>: a scheduled coroutine, and a Future<T> of its result (asyncio.Task).
// The loop keeps a task alive until it is done, whoever holds its handle. cancel() reaches
// the task at its current suspension point (see detail/suspension.hpp) as CancelledError;
// the task may catch it, co_await cleanup and re-raise, as in asyncio.
// It must never run its coroutine outside the loop's ready queue, but for an eager task's
// first step, which create_task runs itself (asyncio.eager_task_factory).
#pragma once

#include <coroutine>
#include <string>
#include <utility>
#include <vector>

#include "corio/coro.hpp"
#include "corio/detail/suspension.hpp"
#include "corio/event_loop.hpp"
#include "corio/future.hpp"

namespace corio {

namespace detail {

class TaskBase : public FutureBase {
 public:
  // A task that is not `scheduled` must be started with step() by its creator.
  TaskBase(EventLoop* loop, std::coroutine_handle<> root, PromiseBase* root_promise,
           std::string name, bool scheduled = true);
  ~TaskBase() override;

  bool cancel(std::string message = {}) override;
  int cancelling() const noexcept { return num_cancels_requested_; }
  int uncancel() noexcept;
  // "Task-N" unless named; built on first use so unnamed tasks cost no string formatting.
  const std::string& name() const;
  void set_name(std::string name) {
    name_ = std::move(name);
    number_ = 0;  // set_name("") names it "", as asyncio does, not "Task-N" again
  }
  // The coroutine at the top of this task's await chain (nullptr once done).
  const PromiseBase* root_promise() const noexcept { return root_ ? root_promise_ : nullptr; }

  // The ready-queue entry that runs one step of the task.
  static void step(void* task);

 private:
  friend class Suspension;
  friend struct PromiseBase;
  friend class corio::EventLoop;

  virtual void collect_value() = 0;  // moves the root coroutine's return value out
  void on_root_done() noexcept;
  void destroy_frame() noexcept;

 protected:
  std::coroutine_handle<> root_;
  PromiseBase* root_promise_;

 private:
  std::coroutine_handle<> resume_point_;
  CancelHook hook_;
  // The message of the cancellation a leaf accepted: the one delivered, even if a later
  // cancel() came before the task resumed (asyncio: the awaited future's CancelledError).
  std::string leaf_cancel_message_;
  bool must_cancel_ = false;
  int num_cancels_requested_ = 0;
  mutable std::string name_;
  std::uint64_t number_ = 0;
};

template <class T>
class TaskState final : public TaskBase {
 public:
  using TaskBase::TaskBase;
  std::optional<Stored<T>> value;

 private:
  void collect_value() override {
    if constexpr (std::is_void_v<T>) {
      value.emplace();
    } else {
      auto& promise = static_cast<Promise<T>&>(*root_promise_);
      value.emplace(std::move(*promise.result));
    }
  }
};

}  // namespace detail

// A task of any result type: what current_task() and all_tasks() return.
class AnyTask {
 public:
  AnyTask() = default;
  explicit AnyTask(detail::TaskBase* task) noexcept : task_(task) {
    if (task_) task_->add_ref();
  }
  AnyTask(const AnyTask& other) noexcept : AnyTask(other.task_) {}
  AnyTask(AnyTask&& other) noexcept : task_(std::exchange(other.task_, nullptr)) {}
  AnyTask& operator=(AnyTask other) noexcept {
    std::swap(task_, other.task_);
    return *this;
  }
  ~AnyTask() {
    if (task_) task_->release();
  }

  explicit operator bool() const noexcept { return task_ != nullptr; }
  bool operator==(const AnyTask& other) const noexcept { return task_ == other.task_; }
  bool done() const noexcept { return task_->done(); }
  bool cancelled() const noexcept { return task_->cancelled(); }
  bool cancel(std::string message = {}) { return task_->cancel(std::move(message)); }
  int cancelling() const noexcept { return task_->cancelling(); }
  int uncancel() noexcept { return task_->uncancel(); }
  const std::string& get_name() const { return task_->name(); }
  void set_name(std::string name) { task_->set_name(std::move(name)); }
  std::exception_ptr exception() const { return task_->exception(); }
  detail::TaskBase* get() const noexcept { return task_; }

  // Waits for the task to finish; rethrows its exception (the result is not returned).
  auto operator co_await() const noexcept { return detail::FutureAwaiter<void>(task_, nullptr); }

 private:
  detail::TaskBase* task_ = nullptr;
};

template <class T = void>
class Task : public Future<T> {
 public:
  Task() = default;

  int cancelling() const noexcept { return task()->cancelling(); }
  int uncancel() noexcept { return task()->uncancel(); }
  const std::string& get_name() const { return task()->name(); }
  void set_name(std::string name) { task()->set_name(std::move(name)); }
  operator AnyTask() const noexcept { return AnyTask(task()); }

 private:
  friend class EventLoop;
  Task(detail::TaskState<T>* state) noexcept : Future<T>(state, &state->value) {}
  detail::TaskBase* task() const noexcept { return static_cast<detail::TaskBase*>(this->base_); }
};

template <class T>
Task<T> EventLoop::create_task(Coro<T> coro, std::string name) {
  return start_task(std::move(coro), std::move(name), eager_tasks_);
}

template <class T>
Task<T> EventLoop::create_task(Coro<T> coro, TaskOptions options) {
  return start_task(std::move(coro), std::string(options.name),
                    options.eager_start.value_or(eager_tasks_));
}

template <class T>
Task<T> EventLoop::start_task(Coro<T> coro, std::string name, bool eager) {
  check_open();
  check_thread();
  if (!coro) throw TypeError("create_task() needs a coroutine");
  // As asyncio: without a running loop the task is scheduled.
  eager = eager && running_ && eager_nesting_ < kMaxEagerNesting;
  auto handle = coro.release();
  Task<T> task(new detail::TaskState<T>(this, handle, &handle.promise(), std::move(name), !eager));
  if (eager) {
    // Only once the handle holds its reference: a task done in this first step drops its own.
    struct Nesting {
      int& depth;
      explicit Nesting(int& d) : depth(++d) {}
      ~Nesting() { --depth; }
    } nesting(eager_nesting_);
    detail::TaskBase::step(task.task());
  }
  return task;
}

namespace detail {
template <class A>
struct IsCoro : std::false_type {};
template <class T>
struct IsCoro<Coro<T>> : std::true_type {};
}  // namespace detail

template <class Awaitable>
decltype(auto) EventLoop::run_until_complete(Awaitable&& awaitable) {
  using Plain = std::remove_cvref_t<Awaitable>;
  if constexpr (detail::IsCoro<Plain>::value) {
    using T = typename Plain::value_type;
    // Checked before the task exists (as asyncio's _check_running): an eager task factory
    // would otherwise run the coroutine before the error.
    if (running_) throw RuntimeError("This event loop is already running");
    Task<T> task = create_task(Plain(std::forward<Awaitable>(awaitable)));
    run_until_done(*task.base());
    task.base()->check_result();
    if constexpr (!std::is_void_v<T>) return T(std::move(**task.value_slot()));
  } else {
    using T = typename Plain::value_type;
    const Future<T>& future = awaitable;
    run_until_done(*future.base());
    future.base()->check_result();
    if constexpr (!std::is_void_v<T>) {
      if constexpr (std::is_copy_constructible_v<T>) {
        return T(**future.value_slot());
      } else {
        return T(std::move(**future.value_slot()));
      }
    }
  }
}

// asyncio.create_task: schedules `coro` on the running loop (or starts it at once: see
// TaskOptions and TaskFactory).
template <class T>
Task<T> create_task(Coro<T> coro, std::string name = {}) {
  return get_running_loop().create_task(std::move(coro), std::move(name));
}
template <class T>
Task<T> create_task(Coro<T> coro, TaskOptions options) {
  return get_running_loop().create_task(std::move(coro), std::move(options));
}

// The task running now on this thread's loop: empty outside a task, RuntimeError when no
// loop is running here (asyncio.current_task uses get_running_loop).
AnyTask current_task();
AnyTask current_task(EventLoop& loop);
// Every task of the loop that is not done yet.
std::vector<AnyTask> all_tasks();
std::vector<AnyTask> all_tasks(EventLoop& loop);

}  // namespace corio
