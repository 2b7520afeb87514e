// Plumbing shared by the composition functions (wait_for, shield, wait, as_completed,
// TaskGroup): what an awaitable yields, turning any awaitable into a future (asyncio's
// ensure_future), and two leaf awaiters built on detail::Suspension.
// It must never resume a coroutine inline (an eager task factory's first step, inside
// create_task, is the loop's doing) and never cancel a future it was only asked to watch.
#pragma once

#include <coroutine>
#include <type_traits>
#include <utility>

#include "corio/coro.hpp"
#include "corio/detail/await_result.hpp"
#include "corio/detail/suspension.hpp"
#include "corio/event_loop.hpp"
#include "corio/future.hpp"
#include "corio/task.hpp"

namespace corio::detail {

// What `co_await std::move(a)` evaluates to (awaiter_of lives in await_result.hpp).
template <class A>
using await_result_t = AwaitResultOf<A>;

template <class A>
struct IsFuture : std::false_type {};
template <class T>
struct IsFuture<Future<T>> : std::true_type {};
template <class T>
struct IsFuture<Task<T>> : std::true_type {};

// The future behind a Future<T>, Task<T> or AnyTask.
template <class T>
FutureBase* base_of(const Future<T>& f) noexcept {
  return f.base();
}
inline FutureBase* base_of(const AnyTask& t) noexcept {
  return t.get();
}

// The result of a done Future<T>, Task<T> (copied unless T is move-only) or AnyTask
// (nothing); rethrows its exception, CancelledError if it was cancelled.
template <class A>
decltype(auto) future_result(A& future) {
  if constexpr (std::is_same_v<A, AnyTask>) {
    future.get()->check_result();
  } else {
    using T = typename A::value_type;
    future.base()->check_result();
    if constexpr (std::is_copy_constructible_v<T>) {
      return T(**future.value_slot());
    } else if constexpr (!std::is_void_v<T>) {
      return T(std::move(**future.value_slot()));
    }
  }
}

// Lets a plain awaitable (neither coroutine nor future) run as a task, as asyncio's
// _wrap_awaitable does.
template <class A>
Coro<await_result_t<A>> wrap_awaitable(A awaitable) {
  co_return co_await std::move(awaitable);
}

// asyncio.ensure_future for any awaitable: a future or task stays itself, a coroutine (or
// another awaitable) becomes a task on `loop`.
template <class A>
Future<await_result_t<std::remove_cvref_t<A>>> as_future(EventLoop& loop, A&& awaitable) {
  using Plain = std::remove_cvref_t<A>;
  if constexpr (IsCoro<Plain>::value) {
    return loop.create_task(Plain(std::forward<A>(awaitable)));
  } else if constexpr (IsFuture<Plain>::value) {
    return awaitable;  // slices a Task<T> into the Future<T> it is
  } else {
    return loop.create_task(wrap_awaitable<Plain>(Plain(std::forward<A>(awaitable))));
  }
}

// Suspends until someone calls notify() on the slot it registered in. Cancelling the waiting
// task unregisters it and delivers CancelledError. The slot holds at most one waiter.
class WakeLeaf {
 public:
  explicit WakeLeaf(WakeLeaf** slot) noexcept : slot_(slot) {}
  WakeLeaf(const WakeLeaf&) = delete;
  WakeLeaf& operator=(const WakeLeaf&) = delete;
  ~WakeLeaf() {
    if (*slot_ == this) *slot_ = nullptr;
  }

  bool await_ready() const noexcept { return false; }
  void await_suspend(std::coroutine_handle<> handle) {
    suspension_.begin(handle);
    *slot_ = this;
    suspension_.arm({&cancel_leaf, this});
  }
  void await_resume() { suspension_.end(cancelled_); }

  // Wakes the waiter registered in `slot`, if any. Returns whether there was one.
  // from_timer: see Suspension::wake_from_timer.
  static bool notify(WakeLeaf** slot, bool from_timer = false) {
    WakeLeaf* waiter = std::exchange(*slot, nullptr);
    if (waiter == nullptr) return false;
    if (from_timer) {
      waiter->suspension_.wake_from_timer();
    } else {
      waiter->suspension_.wake();
    }
    return true;
  }

 private:
  static bool cancel_leaf(void* self) {
    auto* leaf = static_cast<WakeLeaf*>(self);
    if (*leaf->slot_ != leaf) return false;  // already notified: the wake-up is queued
    *leaf->slot_ = nullptr;
    leaf->cancelled_ = true;
    leaf->suspension_.wake();
    return true;
  }

  WakeLeaf** slot_;
  Suspension suspension_;
  bool cancelled_ = false;
};

// Waits until a future is done without looking at its outcome. Unlike awaiting the future
// itself, cancelling the waiting task leaves the future alone (asyncio's _cancel_and_wait
// waits on a separate waiter future for the same reason).
class DoneWaiter {
 public:
  explicit DoneWaiter(FutureBase* future) noexcept : future_(future) {}
  DoneWaiter(const DoneWaiter&) = delete;
  DoneWaiter& operator=(const DoneWaiter&) = delete;
  ~DoneWaiter() {
    if (registered_) future_->remove_waiter(suspension_.wake_item());
  }

  bool await_ready() const noexcept { return future_->done(); }
  void await_suspend(std::coroutine_handle<> handle) {
    suspension_.begin(handle);
    future_->add_waiter(suspension_.wake_item());
    registered_ = true;
    suspension_.arm({&cancel_leaf, this});
  }
  void await_resume() {
    registered_ = false;
    if (suspension_.begun()) suspension_.end(cancelled_);
  }

 private:
  static bool cancel_leaf(void* self) {
    auto* waiter = static_cast<DoneWaiter*>(self);
    if (!waiter->future_->remove_waiter(waiter->suspension_.wake_item())) return false;
    waiter->registered_ = false;
    waiter->cancelled_ = true;
    waiter->suspension_.wake();
    return true;
  }

  FutureBase* future_;
  Suspension suspension_;
  bool registered_ = false;
  bool cancelled_ = false;
};

}  // namespace corio::detail
