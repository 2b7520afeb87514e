// What `co_await x` produces for an expression x, computed without awaiting anything, so
// helpers such as async_with, async_for and AsyncExitStack can accept any awaitable (a Coro,
// a Future, a hand-written awaiter) and name its result type.
// It must never evaluate its argument: it is for unevaluated contexts only.
#pragma once

#include <concepts>
#include <type_traits>
#include <utility>

namespace corio::detail {

template <class A>
decltype(auto) awaiter_of(A&& awaitable) noexcept {
  if constexpr (requires { std::forward<A>(awaitable).operator co_await(); }) {
    return std::forward<A>(awaitable).operator co_await();
  } else if constexpr (requires { operator co_await(std::forward<A>(awaitable)); }) {
    return operator co_await(std::forward<A>(awaitable));
  } else {
    return std::forward<A>(awaitable);
  }
}

// The type of `co_await std::declval<A>()`.
template <class A>
using AwaitResultOf =
    decltype(std::declval<std::remove_reference_t<decltype(awaiter_of(std::declval<A>()))>&>()
                 .await_resume());

template <class A>
concept Awaitable = !std::is_void_v<A> &&
                    requires(std::remove_reference_t<decltype(awaiter_of(std::declval<A>()))> & a) {
  { a.await_ready() } -> std::convertible_to<bool>;
  a.await_resume();
};

// What `co_await` on an A gives if A is awaitable; A itself otherwise (a plain result).
template <class A, bool = Awaitable<A>>
struct AwaitedOrPlain {
  using type = A;
};
template <class A>
struct AwaitedOrPlain<A, true> {
  using type = AwaitResultOf<A>;
};

}  // namespace corio::detail
