// to_thread(fn, args...): asyncio.to_thread. `co_await to_thread(blocking_io, path)` runs the
// call on the running loop's default executor and gives its result (or rethrows its
// exception) in the awaiting coroutine, while the loop keeps running other tasks.
// Like asyncio.to_thread it is a coroutine: nothing is submitted until it is awaited (or
// wrapped in a task, e.g. by gather). Cancelling the awaiting task raises CancelledError at
// once; the call itself keeps running on its thread and its result is discarded.
// Arguments are copied (or moved) when to_thread is called, as for std::thread: pass
// std::ref(x) to share an object that outlives the call.
// GCC 12 pitfall: a lambda written inside the co_await expression whose captures have
// destructors (`co_await to_thread([s = std::string(...)] {...})`) is destroyed twice by the
// compiler. Capture by reference there, or name the lambda (or the Coro) first.
#pragma once

#include <absl/functional/any_invocable.h>

#include <tuple>
#include <type_traits>
#include <utility>

#include "corio/coro.hpp"
#include "corio/event_loop.hpp"
#include "corio/executor.hpp"
#include "corio/future.hpp"

namespace corio {

namespace detail {

template <class R>
Coro<R> to_thread_impl(absl::AnyInvocable<R() &&> function) {
  Future<R> future = run_in_executor(get_running_loop(), nullptr, std::move(function));
  // Wait without copying the result out (it may be move-only), then move it.
  co_await FutureAwaiter<void>(future.base(), nullptr);
  if constexpr (!std::is_void_v<R>) co_return std::move(**future.value_slot());
}

}  // namespace detail

template <class F, class... Args>
auto to_thread(F&& function, Args&&... args) {
  using R = std::invoke_result_t<std::decay_t<F>, std::decay_t<Args>...>;
  return detail::to_thread_impl<R>(
      [function = std::forward<F>(function),
       bound = std::make_tuple(std::forward<Args>(args)...)]() mutable -> R {
        return std::apply(std::move(function), std::move(bound));
      });
}

}  // namespace corio
