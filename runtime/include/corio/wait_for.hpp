// wait_for(awaitable, timeout): asyncio.wait_for with 3.12's semantics, built on a timeout
// scope. A coroutine is awaited inline in the calling task (not wrapped in a task); a future
// or task is awaited and, on timeout, cancelled. Either way wait_for waits until the work has
// finished cancelling, then raises TimeoutError; if the work swallowed the cancellation and
// produced a value, that value is returned. Cancelling the caller cancels the work too and
// raises CancelledError. timeout = nullopt (no_deadline) waits forever; timeout <= 0 turns the
// awaitable into a task, cancels it at once unless it is already done, and waits for it.
//
//   try { co_await corio::wait_for(eternity(), 1.0); }
//   catch (const corio::TimeoutError&) { std::puts("timeout!"); }
//
// Movable awaitables (Coro, Future, Task, AnyTask, ...) are moved into the returned Coro.
// A non-movable leaf awaitable (sleep(5), say) is held by reference: then the result must be
// co_awaited in the same full-expression that created it, as in the example above.
// It must never return while the work is still running, except when the caller is cancelled
// during the timeout <= 0 wait (as asyncio).
#pragma once

#include <exception>
#include <optional>
#include <type_traits>
#include <utility>

#include "corio/coro.hpp"
#include "corio/detail/awaitables.hpp"
#include "corio/event_loop.hpp"
#include "corio/future.hpp"
#include "corio/sleep.hpp"
#include "corio/task.hpp"
#include "corio/timeouts.hpp"

namespace corio {

namespace detail {

// asyncio's `timeout <= 0` branch: the work gets no chance to run (but for an eager task's
// first step, as in asyncio).
template <class A, class R>
Coro<R> wait_for_expired(A awaitable) {
  EventLoop& loop = get_running_loop();
  using Plain = std::remove_cvref_t<A>;
  if constexpr (std::is_same_v<Plain, AnyTask> || IsFuture<Plain>::value || IsCoro<Plain>::value ||
                std::is_move_constructible_v<Plain>) {
    auto future = [&] {
      if constexpr (std::is_same_v<Plain, AnyTask>) {
        return AnyTask(awaitable);
      } else {
        return as_future(loop, std::move(awaitable));
      }
    }();
    if (!base_of(future)->done()) {
      base_of(future)->cancel();
      co_await DoneWaiter(base_of(future));
    }
    try {
      co_return future_result(future);
    } catch (const CancelledError&) {
      std::throw_with_nested(make_timeout_error());
    }
  } else {
    // Held by reference: it cannot become a task, and a task that is cancelled before its
    // first step would never have run it anyway.
    co_await sleep(0);
    throw make_timeout_error();
  }
}

// Awaits a non-movable awaiter through a reference (GCC 12 would try to copy it when the
// co_await operand is a reference).
template <class A>
struct AwaitThrough {
  A& awaiter;
  bool await_ready() { return awaiter.await_ready(); }
  template <class P>
  auto await_suspend(std::coroutine_handle<P> handle) {
    return awaiter.await_suspend(handle);
  }
  decltype(auto) await_resume() { return awaiter.await_resume(); }
};

template <class A>
decltype(auto) awaitable_of(A&& awaitable) {
  if constexpr (std::is_reference_v<A> && requires { awaitable.await_ready(); }) {
    return AwaitThrough<std::remove_reference_t<A>>{awaitable};
  } else {
    return std::forward<A>(awaitable);
  }
}

template <class A, class R>
Coro<R> wait_for_impl(A awaitable, std::optional<double> delay) {
  if (delay && *delay <= 0) co_return co_await wait_for_expired<A, R>(std::forward<A>(awaitable));
  Timeout cm = timeout(delay);
  cm.enter();
  if constexpr (std::is_void_v<R>) {
    try {
      co_await awaitable_of<A>(std::forward<A>(awaitable));
    } catch (...) {
      cm.exit(std::current_exception());
    }
    cm.exit(nullptr);
  } else {
    std::optional<R> result;
    try {
      result.emplace(co_await awaitable_of<A>(std::forward<A>(awaitable)));
    } catch (...) {
      cm.exit(std::current_exception());
    }
    cm.exit(nullptr);
    co_return std::move(*result);
  }
}

}  // namespace detail

template <class A>
auto wait_for(A&& awaitable, std::optional<double> timeout) {
  using Plain = std::remove_cvref_t<A>;
  using R = detail::await_result_t<Plain>;
  if constexpr (std::is_move_constructible_v<Plain>) {
    return detail::wait_for_impl<Plain, R>(Plain(std::forward<A>(awaitable)), timeout);
  } else {
    return detail::wait_for_impl<Plain&, R>(awaitable, timeout);
  }
}

}  // namespace corio
