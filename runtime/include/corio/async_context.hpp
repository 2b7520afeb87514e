// Context managers: the protocol (enter/exit, aenter/aexit), the statements that drive them
// (with() for `with`, async_with() for `async with`) and asynccontextmanager, which makes an
// async context manager out of an AsyncGenerator that yields exactly once.
//
//   AsyncGenerator<Conn*> connection(std::string name) {
//     Conn conn = co_await connect(name);
//     std::exception_ptr error;
//     try { co_yield &conn; } catch (...) { error = std::current_exception(); }
//     co_await conn.close();                      // C++ has no `finally`, nor co_await in a catch
//     if (error) std::rethrow_exception(error);   // let it propagate: not suppressed
//   }
//   co_await async_with(asynccontextmanager(connection("db")),
//                       [&](Conn*& c) -> Coro<void> { ... });
//
// A type is an async context manager when `co_await cm.aenter()` gives the entered value (or
// void) and `co_await cm.aexit(error)` gives true to suppress `error` (null on success).
// Helpers here must never swallow an exception that the manager did not suppress, and never
// call aexit when aenter failed.
#pragma once

#include <concepts>
#include <exception>
#include <optional>
#include <type_traits>
#include <utility>
#include <variant>

#include "corio/async_generator.hpp"
#include "corio/core/errors.hpp"
#include "corio/coro.hpp"
#include "corio/detail/await_result.hpp"

namespace corio {

// --- the protocol ---

// `with` protocol: enter() returns the value bound by `as` (or void); exit(error) returns true
// (or something convertible) to suppress `error`, or void for "do not suppress".
template <class CM>
concept ContextManager = requires(CM& cm, std::exception_ptr error) {
  cm.enter();
  cm.exit(error);
};

// `async with` protocol: aenter() and aexit(error) return awaitables (usually Coro<V> and
// Coro<bool>); aexit's result is a bool (true suppresses) or void.
template <class CM>
concept AsyncContextManager = requires(CM& cm, std::exception_ptr error) {
  requires detail::Awaitable<decltype(cm.aenter())>;
  requires detail::Awaitable<decltype(cm.aexit(error))>;
};

template <ContextManager CM>
using EnterResult = decltype(std::declval<CM&>().enter());
template <AsyncContextManager CM>
using AsyncEnterResult = detail::AwaitResultOf<decltype(std::declval<CM&>().aenter())>;

// Python's __context__: when an exit raises while `error` was propagating, the new exception
// replaces it and exception_context(new) returns the one it replaced (null if none is known).
// C++ cannot attach data to an arbitrary thrown object, so corio remembers the pairs in a small
// process-wide table holding the most recent 64 replacements: use it for diagnostics only.
// Synchronous exit callbacks also run inside a handler of the pending exception, so one that
// throws with std::throw_with_nested gets standard nesting (std::rethrow_if_nested) too.
std::exception_ptr exception_context(const std::exception_ptr& error);

namespace detail {

void set_exception_context(const std::exception_ptr& error, const std::exception_ptr& context);

template <class V>
using StoredValue =
    std::conditional_t<std::is_void_v<V>, std::monostate,
                       std::conditional_t<std::is_reference_v<V>, std::remove_reference_t<V>*, V>>;

// The body gets the entered value; a manager whose enter gives void hands itself over.
template <class V, class CM, class Body>
decltype(auto) call_body(Body& body, CM& cm, StoredValue<V>& value) {
  if constexpr (std::is_void_v<V>) {
    if constexpr (std::is_invocable_v<Body&, CM&>) {
      return body(cm);
    } else {
      return body();
    }
  } else if constexpr (std::is_reference_v<V>) {
    return body(*value);
  } else {
    return body(value);
  }
}

template <class V, class CM, class Body>
struct BodyTraits {
  using Returned = decltype(call_body<V>(std::declval<Body&>(), std::declval<CM&>(),
                                         std::declval<StoredValue<V>&>()));
  static constexpr bool awaitable = Awaitable<Returned>;
  using R = typename AwaitedOrPlain<Returned>::type;
  // void stays void; a value becomes optional: empty when the manager suppressed an exception.
  using Result = std::conditional_t<std::is_void_v<R>, void, std::optional<R>>;
};

template <class Hold, class Body>
using AsyncWithResult = typename BodyTraits<AsyncEnterResult<std::remove_reference_t<Hold>>,
                                            std::remove_reference_t<Hold>, Body>::Result;

template <class Hold, class Body>
Coro<AsyncWithResult<Hold, Body>> async_with_impl(Hold held, Body body) {
  using CM = std::remove_reference_t<Hold>;
  using V = AsyncEnterResult<CM>;
  using Traits = BodyTraits<V, CM, Body>;
  using R = typename Traits::R;
  CM& cm = held;

  // aenter failing propagates without aexit, as in Python.
  std::optional<StoredValue<V>> value;
  if constexpr (std::is_void_v<V>) {
    co_await cm.aenter();
    value.emplace();
  } else if constexpr (std::is_reference_v<V>) {
    value.emplace(&(co_await cm.aenter()));
  } else {
    value.emplace(co_await cm.aenter());
  }

  std::exception_ptr error;
  std::optional<std::conditional_t<std::is_void_v<R>, std::monostate, R>> result;
  try {
    if constexpr (std::is_void_v<R>) {
      if constexpr (Traits::awaitable) {
        co_await call_body<V>(body, cm, *value);
      } else {
        call_body<V>(body, cm, *value);
      }
      result.emplace();
    } else if constexpr (Traits::awaitable) {
      result.emplace(co_await call_body<V>(body, cm, *value));
    } else {
      result.emplace(call_body<V>(body, cm, *value));
    }
  } catch (...) {
    error = std::current_exception();
  }

  using ExitResult = AwaitResultOf<decltype(cm.aexit(error))>;
  if (error) {
    bool suppress = false;
    try {
      if constexpr (std::is_void_v<ExitResult>) {
        co_await cm.aexit(error);
      } else {
        suppress = static_cast<bool>(co_await cm.aexit(error));
      }
    } catch (...) {
      set_exception_context(std::current_exception(), error);
      throw;
    }
    if (!suppress) std::rethrow_exception(error);
    if constexpr (std::is_void_v<R>) {
      co_return;
    } else {
      co_return std::nullopt;
    }
  }
  co_await cm.aexit(nullptr);
  if constexpr (!std::is_void_v<R>) co_return std::move(*result);
}

}  // namespace detail

// `async with cm as value: body`. aenter is awaited; the body is called with the entered value
// as V& (or with the manager itself when aenter gives void, or with nothing) and may return a
// Coro (awaited) or a plain value; aexit gets the exception that escaped the body (null if
// none) and the exception is rethrown unless aexit returns true. An exception raised by aexit
// replaces the body's (see exception_context). Returns what the body returned: void, or a
// std::optional that is empty when an exception was suppressed.
// An lvalue manager is borrowed (it must outlive the statement); an rvalue one is moved in.
template <class CM, class Body>
requires AsyncContextManager<std::remove_reference_t<CM>>
auto async_with(CM&& cm, Body body) {
  if constexpr (std::is_lvalue_reference_v<CM>) {
    return detail::async_with_impl<CM>(cm, std::move(body));
  } else {
    return detail::async_with_impl<std::remove_cvref_t<CM>>(std::move(cm), std::move(body));
  }
}

// `with cm as value: body`, synchronously: the same rules as async_with without awaiting.
template <class CM, class Body>
requires ContextManager<std::remove_reference_t<CM>>
auto with(CM&& cm, Body body) ->
    typename detail::BodyTraits<EnterResult<std::remove_reference_t<CM>>,
                                std::remove_reference_t<CM>, Body>::Result {
  using Manager = std::remove_reference_t<CM>;
  using V = EnterResult<Manager>;
  using Traits = detail::BodyTraits<V, Manager, Body>;
  using R = typename Traits::R;
  static_assert(!Traits::awaitable,
                "with() runs a synchronous body; use async_with for a Coro body");
  Manager& manager = cm;
  detail::StoredValue<V> value{};
  if constexpr (std::is_void_v<V>) {
    manager.enter();
  } else if constexpr (std::is_reference_v<V>) {
    value = &manager.enter();
  } else {
    value = manager.enter();
  }
  std::exception_ptr error;
  std::optional<std::conditional_t<std::is_void_v<R>, std::monostate, R>> result;
  try {
    if constexpr (std::is_void_v<R>) {
      detail::call_body<V>(body, manager, value);
      result.emplace();
    } else {
      result.emplace(detail::call_body<V>(body, manager, value));
    }
  } catch (...) {
    error = std::current_exception();
  }
  if (error) {
    bool suppress = false;
    try {
      if constexpr (std::is_void_v<decltype(manager.exit(error))>) {
        manager.exit(error);
      } else {
        suppress = static_cast<bool>(manager.exit(error));
      }
    } catch (...) {
      detail::set_exception_context(std::current_exception(), error);
      throw;
    }
    if (!suppress) std::rethrow_exception(error);
    if constexpr (std::is_void_v<R>) {
      return;
    } else {
      return std::nullopt;
    }
  }
  manager.exit(nullptr);
  if constexpr (!std::is_void_v<R>) return std::move(*result);
}

// --- @asynccontextmanager ---

// The async context manager made from a generator (contextlib's _AsyncGeneratorContextManager):
// aenter runs the generator to its co_yield and gives the yielded value; aexit resumes it
// (on success) or throws the body's exception at the co_yield (athrow). If the generator then
// ends, the exception is suppressed; if it lets the same exception out, it is not; a different
// exception replaces it. RuntimeError when the generator does not yield, or yields twice.
template <class T>
class AsyncGeneratorContextManager {
 public:
  explicit AsyncGeneratorContextManager(AsyncGenerator<T> generator)
      : generator_(std::move(generator)) {}

  Coro<T> aenter() {
    std::optional<T> value = co_await generator_.next();
    if (!value) throw RuntimeError("generator didn't yield");
    co_return std::move(*value);
  }

  Coro<bool> aexit(std::exception_ptr error) {
    if (!error) {
      if (!co_await generator_.next()) co_return false;
      co_await generator_.aclose();
      throw RuntimeError("generator didn't stop");
    }
    std::exception_ptr raised;
    bool yielded = false;
    try {
      yielded = static_cast<bool>(co_await generator_.athrow(error));
    } catch (...) {
      raised = std::current_exception();
    }
    if (!raised) {
      if (!yielded) co_return true;  // the generator swallowed the exception and ended
      co_await generator_.aclose();
      throw RuntimeError("generator didn't stop after athrow()");
    }
    if (raised == error) co_return false;  // re-raised as is: async_with rethrows it
    std::rethrow_exception(raised);
  }

 private:
  AsyncGenerator<T> generator_;
};

// @asynccontextmanager. Given a generator object, the context manager that drives it; given a
// generator function, a function with the same parameters that returns such managers:
//   auto connection = asynccontextmanager(open_connection);   // AsyncGenerator<Conn*>(std::string)
//   co_await async_with(connection("db"), [&](Conn*& c) -> Coro<void> { ... });
// A capturing generator lambda is kept inside the returned function, which must then outlive
// the generators it makes.
template <class T>
AsyncGeneratorContextManager<T> asynccontextmanager(AsyncGenerator<T> generator) {
  return AsyncGeneratorContextManager<T>(std::move(generator));
}

namespace detail {
template <class G>
struct IsAsyncGenerator : std::false_type {};
template <class T>
struct IsAsyncGenerator<AsyncGenerator<T>> : std::true_type {};
}  // namespace detail

template <class F>
requires(!detail::IsAsyncGenerator<std::remove_cvref_t<F>>::value) auto asynccontextmanager(
    F&& function) {
  return [function = std::forward<F>(function)](auto&&... args) {
    return asynccontextmanager(function(std::forward<decltype(args)>(args)...));
  };
}

}  // namespace corio
