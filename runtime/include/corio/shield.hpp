// shield(awaitable): asyncio.shield. Returns a new Future<T> (the "outer") that follows the
// work (the "inner": a future or task; a coroutine or other awaitable is wrapped in a task).
// Cancelling the outer, or the task awaiting it, does not cancel the inner, which runs on;
// if the inner itself is cancelled, the outer is cancelled too. An inner that is already done
// is returned as it is.
//
//   try { r = co_await corio::shield(something()); }
//   catch (const corio::CancelledError&) { /* we were cancelled; something() still runs */ }
//
// The outer holds no reference to the inner, so an inner that never finishes keeps nothing
// alive. If the outer was cancelled and the inner later fails, the error is not consumed:
// it is reported as "exception was never retrieved" unless someone else awaits the inner,
// as in asyncio. It must never cancel the inner.
#pragma once

#include <type_traits>
#include <utility>

#include "corio/detail/awaitables.hpp"
#include "corio/event_loop.hpp"
#include "corio/future.hpp"

namespace corio {

template <class A>
auto shield(A&& awaitable) {
  using T = detail::await_result_t<std::remove_cvref_t<A>>;
  EventLoop& loop = get_running_loop();
  Future<T> inner = detail::as_future(loop, std::forward<A>(awaitable));
  if (inner.done()) return inner;
  Future<T> outer = loop.template create_future<T>();
  inner.add_done_callback([outer](Future<T> done) mutable {
    if (outer.done()) return;  // the outer was cancelled: the inner is on its own
    if (done.cancelled()) {
      outer.cancel();
    } else if (std::exception_ptr error = done.exception()) {
      outer.set_exception(error);
    } else if constexpr (std::is_void_v<T>) {
      outer.set_result();
    } else if constexpr (std::is_copy_constructible_v<T>) {
      outer.set_result(done.result());
    } else {
      outer.set_result(std::move(**done.value_slot()));  // move-only: the outer is its heir
    }
  });
  return outer;
}

}  // namespace corio
