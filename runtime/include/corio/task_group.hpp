// TaskGroup: structured concurrency, asyncio.TaskGroup. C++ has no `async with`, so the group
// is a scope around a body the current task runs inline:
//
//   co_await corio::TaskGroup::run([&](corio::TaskGroup& tg) -> corio::Coro<void> {
//     auto a = tg.create_task(say_after(1, "hello"));
//     tg.create_task(say_after(2, "world"));
//     co_return;
//   });                        // returns once every child is done (here after 2 s)
//
// run() returns what the body co_returns. Children may be added at any time while the group
// is open (from the body or from children). The first child that fails with anything but
// CancelledError cancels the other children and the body (the parent task); once that has
// happened create_task raises RuntimeError. When the scope ends, every error (children's, and
// the body's own) is raised together as an ExceptionGroup; a KeyboardInterrupt (any
// corio::BaseException other than CancelledError) is raised alone instead. A parent cancelled
// from outside cancels the children and gets CancelledError, not the group. The parent's
// cancellation count is restored (uncancel) for the cancel the group itself requested.
// The rules are CPython's taskgroups.py, with 3.13's fixes for counting cancellations.
// The TaskGroup lives in run()'s frame: a reference to it must not escape the body and the
// children (using it after run() returned is a use-after-free, not Python's RuntimeError).
// A coroutine lambda reads its captures through its closure object: a lambda declared inside
// the body dies when the body returns, so children made from lambdas must be declared outside
// the body (or be functions taking their arguments by value).
#pragma once

#include <coroutine>
#include <cstddef>
#include <deque>
#include <exception>
#include <functional>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "corio/coro.hpp"
#include "corio/detail/awaitables.hpp"
#include "corio/event_loop.hpp"
#include "corio/exception_group.hpp"
#include "corio/task.hpp"

namespace corio {

class TaskGroup {
  template <class F>
  using BodyResult = typename std::invoke_result_t<F&, TaskGroup&>::value_type;

 public:
  TaskGroup(const TaskGroup&) = delete;
  TaskGroup& operator=(const TaskGroup&) = delete;
  ~TaskGroup();

  // `async with TaskGroup() as tg: <body>`; body(tg) must return a Coro<T>.
  template <class F>
  requires detail::IsCoro<std::invoke_result_t<F&, TaskGroup&>>::value static Coro<BodyResult<F>>
  run(F body);

  // Schedules `coro` as a child. RuntimeError once the group is shutting down (a child
  // failed) or finished; the coroutine is then discarded without running.
  template <class T>
  Task<T> create_task(Coro<T> coro, std::string_view name = {}) {
    return create_task(std::move(coro), TaskOptions{name, std::nullopt});
  }
  // An eager child (TaskOptions::eager_start, or the loop's task factory) has run its first
  // step when this returns; if it is done, the group learns it one callback later, as for
  // any child.
  template <class T>
  Task<T> create_task(Coro<T> coro, TaskOptions options) {
    if (const char* why = refuse_reason()) {
      if (auto handle = coro.release()) handle.destroy();  // closed, as Python closes it
      throw RuntimeError(std::string("TaskGroup ") + why);
    }
    Task<T> task = loop_->create_task(std::move(coro), std::move(options));
    adopt(static_cast<detail::TaskBase*>(task.base()));
    return task;
  }

  // An awaitable that can become a coroutine (a StreamReader read, say) runs as one.
  template <class A>
  requires requires(A a) { std::move(a).coro(); }
  auto create_task(A awaitable, std::string_view name = {}) {
    return create_task(std::move(awaitable).coro(), name);
  }
  template <class A>
  requires requires(A a) { std::move(a).coro(); }
  auto create_task(A awaitable, TaskOptions options) {
    return create_task(std::move(awaitable).coro(), options);
  }

  // Children not done yet.
  std::size_t size() const noexcept { return pending_; }

 private:
  struct Child {
    TaskGroup* group = nullptr;
    detail::TaskBase* task = nullptr;  // holds a reference while the child runs
    Child* next_free = nullptr;
  };

  TaskGroup() = default;
  void enter();
  const char* refuse_reason() const noexcept;
  void adopt(detail::TaskBase* task);
  void abort();
  static void on_child_done(void* child);
  void begin_exit(std::exception_ptr error);
  detail::WakeLeaf children_done() noexcept { return detail::WakeLeaf(&waiter_); }
  void on_wait_cancelled(std::exception_ptr error);
  void finish_exit();

  EventLoop* loop_ = nullptr;
  AnyTask parent_;
  std::deque<Child> children_;  // stable addresses: the loop holds pointers to them
  Child* free_ = nullptr;
  std::size_t pending_ = 0;
  detail::WakeLeaf* waiter_ = nullptr;
  std::vector<std::exception_ptr> errors_;
  std::exception_ptr base_error_;
  std::exception_ptr body_error_;
  std::exception_ptr propagate_cancellation_;
  bool entered_ = false;
  bool exiting_ = false;
  bool aborting_ = false;
  bool parent_cancel_requested_ = false;
};

template <class F>
requires detail::IsCoro<std::invoke_result_t<F&, TaskGroup&>>::value Coro<TaskGroup::BodyResult<F>>
TaskGroup::run(F body) {
  using T = BodyResult<F>;
  TaskGroup group;
  group.enter();
  std::exception_ptr error;
  std::optional<detail::Stored<T>> result;
  try {
    if constexpr (std::is_void_v<T>) {
      co_await std::invoke(body, group);
      result.emplace();
    } else {
      result.emplace(co_await std::invoke(body, group));
    }
  } catch (...) {
    error = std::current_exception();
  }
  group.begin_exit(error);
  // Several rounds: the wait can be cancelled (the parent cancelled, perhaps repeatedly),
  // and children may add children while we wait.
  while (group.pending_ > 0) {
    try {
      co_await group.children_done();
    } catch (const CancelledError&) {
      group.on_wait_cancelled(std::current_exception());
    }
  }
  group.finish_exit();
  if constexpr (!std::is_void_v<T>) {
    if (!result) std::rethrow_exception(error);  // the group swallowed it, but no value exists
    co_return std::move(*result);
  }
}

}  // namespace corio
