// ExitStack and AsyncExitStack (contextlib): a stack of exit callbacks, unwound last in first
// out, for a number of context managers only known at run time.
//
//   co_await async_with(AsyncExitStack(), [&](AsyncExitStack& stack) -> Coro<void> {
//     for (auto& name : names)
//       conns.push_back(co_await stack.enter_async_context(connection(name)));
//     ...                         // every entered connection is closed, in reverse,
//   });                           // even when a later enter throws
//
// Unwinding follows contextlib exactly: each callback gets the exception pending at that
// point (null if none); one that returns true suppresses it; one that throws replaces it (the
// replaced one becomes the new one's exception_context(), see async_context.hpp) and the
// remaining callbacks still run. exit()/aexit() return true when the exception they were
// given was suppressed. A manager passed as an lvalue is borrowed and must outlive the stack;
// an rvalue one is moved into the stack.
// The stacks must never drop a registered callback silently: ExitStack runs what is left when
// destroyed; AsyncExitStack cannot await there, so it warns instead.
#pragma once

#include <absl/functional/any_invocable.h>

#include <coroutine>
#include <cstddef>
#include <exception>
#include <functional>
#include <memory>
#include <tuple>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "corio/async_context.hpp"
#include "corio/coro.hpp"
#include "corio/detail/await_result.hpp"

namespace corio {

namespace detail {

using SyncExit = absl::AnyInvocable<bool(std::exception_ptr)>;
using AsyncExit = absl::AnyInvocable<Coro<bool>(std::exception_ptr)>;

// An object that can be pushed for its exit alone (contextlib's push of a manager).
template <class X>
concept HasExit = requires(X& x, std::exception_ptr error) {
  x.exit(error);
};
template <class X>
concept HasAsyncExit = requires(X& x, std::exception_ptr error) {
  requires Awaitable<decltype(x.aexit(error))>;
};

template <class R>
bool as_suppress(R&& result) {
  return static_cast<bool>(std::forward<R>(result));
}

// A callable of (std::exception_ptr) returning bool or void, as a SyncExit.
template <class F>
SyncExit make_sync_exit(F function) {
  using R = std::invoke_result_t<F&, std::exception_ptr>;
  if constexpr (std::is_void_v<R>) {
    return [function = std::move(function)](std::exception_ptr error) mutable {
      function(std::move(error));
      return false;
    };
  } else {
    return [function = std::move(function)](std::exception_ptr error) mutable {
      return static_cast<bool>(function(std::move(error)));
    };
  }
}

// Awaits any awaitable of bool or void and gives its truth (void: false).
template <class A>
Coro<bool> await_suppress(A awaitable) {
  if constexpr (std::is_void_v<AwaitResultOf<A>>) {
    co_await std::move(awaitable);
    co_return false;
  } else {
    co_return static_cast<bool>(co_await std::move(awaitable));
  }
}

// A callable of (std::exception_ptr) returning an awaitable of bool or void, as an AsyncExit.
// The callable stays in the stack's entry while its coroutine runs, so a coroutine lambda's
// captures are alive for the whole await.
template <class F>
AsyncExit make_async_exit(F function) {
  using R = std::invoke_result_t<F&, std::exception_ptr>;
  if constexpr (std::is_same_v<R, Coro<bool>>) {
    return AsyncExit(std::move(function));
  } else {
    return [function = std::move(function)](std::exception_ptr error) mutable {
      return await_suppress(function(std::move(error)));
    };
  }
}

// Runs a synchronous exit inside a handler of `pending`, so std::throw_with_nested in it nests
// the pending exception (std::current_exception() is `pending` there).
bool call_sync_exit(SyncExit& exit, const std::exception_ptr& pending);

// Unwinding of a stack of synchronous exits (ExitStack::exit).
bool unwind_sync(std::vector<SyncExit>& exits, std::exception_ptr error);

// Registration shared by both stacks.
template <class Entry>
class ExitStackBase {
 public:
  ExitStackBase() = default;
  ExitStackBase(ExitStackBase&& other) noexcept : exits_(std::exchange(other.exits_, {})) {}
  ExitStackBase& operator=(ExitStackBase&&) = delete;

  // enter_context: calls cm.enter(), registers cm.exit and returns what enter() returned.
  template <class CM>
  requires ContextManager<std::remove_reference_t<CM>>
  decltype(auto) enter_context(CM&& cm) {
    using Manager = std::remove_cvref_t<CM>;
    if constexpr (std::is_lvalue_reference_v<CM>) {
      return enter_with(cm,
                        [&cm](std::exception_ptr error) { return exit_of(cm, std::move(error)); });
    } else {
      auto owned = std::make_unique<Manager>(std::move(cm));
      Manager& manager = *owned;
      return enter_with(manager, [owned = std::move(owned)](std::exception_ptr error) {
        return exit_of(*owned, std::move(error));
      });
    }
  }

  // push: an exit callback bool(std::exception_ptr) (or void), or a manager whose exit alone
  // is registered (its enter is not called).
  template <class X>
  void push(X&& exit) {
    using Plain = std::remove_cvref_t<X>;
    if constexpr (HasExit<Plain>) {
      if constexpr (std::is_lvalue_reference_v<X>) {
        push_sync([&exit](std::exception_ptr error) { return exit_of(exit, std::move(error)); });
      } else {
        push_sync([owned = std::make_unique<Plain>(std::move(exit))](std::exception_ptr error) {
          return exit_of(*owned, std::move(error));
        });
      }
    } else {
      static_assert(std::is_invocable_v<Plain&, std::exception_ptr>,
                    "push() takes a callable of (std::exception_ptr) or an object with exit()");
      push_sync(make_sync_exit(Plain(std::forward<X>(exit))));
    }
  }

  // callback: fn(args...) at unwinding, whatever the exception; it never suppresses. The
  // arguments are copied (or moved) now, as Python binds them at registration.
  template <class F, class... Args>
  void callback(F&& function, Args&&... args) {
    push_sync([function = std::forward<F>(function),
               bound = std::make_tuple(std::forward<Args>(args)...)](std::exception_ptr) mutable {
      std::apply(function, bound);
      return false;
    });
  }

  std::size_t size() const noexcept { return exits_.size(); }
  bool empty() const noexcept { return exits_.empty(); }

 protected:
  template <class Manager>
  static bool exit_of(Manager& manager, std::exception_ptr error) {
    if constexpr (std::is_void_v<decltype(manager.exit(error))>) {
      manager.exit(std::move(error));
      return false;
    } else {
      return static_cast<bool>(manager.exit(std::move(error)));
    }
  }

  template <class Manager, class Exit>
  decltype(auto) enter_with(Manager& manager, Exit exit) {
    if constexpr (std::is_void_v<decltype(manager.enter())>) {
      manager.enter();
      push_sync(std::move(exit));
    } else {
      decltype(auto) entered = manager.enter();
      push_sync(std::move(exit));
      return entered;  // decltype(auto): a reference stays a reference, a value is moved
    }
  }

  void push_sync(SyncExit exit) {
    if constexpr (std::is_same_v<Entry, SyncExit>) {
      exits_.push_back(std::move(exit));
    } else {
      exits_.emplace_back(std::in_place_index<0>, std::move(exit));
    }
  }

  std::vector<Entry> exits_;
};

}  // namespace detail

class ExitStack : public detail::ExitStackBase<detail::SyncExit> {
 public:
  ExitStack() = default;
  ExitStack(ExitStack&&) noexcept = default;
  // Runs the callbacks still registered (as close()); errors are reported on stderr, since a
  // destructor can neither throw nor see the exception unwinding it. Prefer with(stack, ...).
  ~ExitStack() { close_quietly(); }
  // Closes this stack as the destructor would, then takes over the other's callbacks.
  ExitStack& operator=(ExitStack&& other) noexcept {
    if (this != &other) {
      close_quietly();
      exits_ = std::exchange(other.exits_, {});
    }
    return *this;
  }

  // A new stack holding every callback of this one, which becomes empty: the callbacks no
  // longer run when this one closes (hand the clean-up to someone else).
  ExitStack pop_all() {
    ExitStack moved;
    moved.exits_ = std::exchange(exits_, {});
    return moved;
  }
  // Unwinds with no exception.
  void close() { exit(nullptr); }

  // The `with` protocol: `with(ExitStack(), [&](ExitStack& stack) { ... })`.
  void enter() noexcept {}
  bool exit(std::exception_ptr error) { return detail::unwind_sync(exits_, std::move(error)); }

 private:
  void close_quietly() noexcept;
};

namespace detail {
// One registered exit of an AsyncExitStack: synchronous or asynchronous.
using AnyExit = std::variant<SyncExit, AsyncExit>;
}  // namespace detail

class AsyncExitStack : public detail::ExitStackBase<detail::AnyExit> {
 public:
  AsyncExitStack() = default;
  AsyncExitStack(AsyncExitStack&&) noexcept = default;
  // Warns (stderr) if exit callbacks are still registered: they can only run when awaited,
  // through aclose() or async_with.
  ~AsyncExitStack() { warn_if_pending(); }
  // Drops this stack's callbacks as the destructor would (with the warning), then takes over
  // the other's: `outer = stack.pop_all();`.
  AsyncExitStack& operator=(AsyncExitStack&& other) noexcept {
    if (this != &other) {
      warn_if_pending();
      exits_ = std::exchange(other.exits_, {});
    }
    return *this;
  }

  // enter_async_context: awaits cm.aenter(), registers cm.aexit, returns the entered value.
  // When aenter throws nothing is registered.
  template <class CM>
  requires AsyncContextManager<std::remove_reference_t<CM>>
      Coro<AsyncEnterResult<std::remove_reference_t<CM>>> enter_async_context(CM&& cm) {
    using Manager = std::remove_cvref_t<CM>;
    if constexpr (std::is_lvalue_reference_v<CM>) {
      return enter_async<Manager>(&cm, nullptr);
    } else {
      auto owned = std::make_unique<Manager>(std::move(cm));
      Manager* manager = owned.get();
      return enter_async<Manager>(manager, std::move(owned));
    }
  }

  // push_async_exit: a callable of (std::exception_ptr) returning an awaitable of bool (true
  // suppresses) or void, or an async manager whose aexit alone is registered.
  template <class X>
  void push_async_exit(X&& exit) {
    using Plain = std::remove_cvref_t<X>;
    if constexpr (detail::HasAsyncExit<Plain>) {
      if constexpr (std::is_lvalue_reference_v<X>) {
        push_async(manager_exit(&exit, std::unique_ptr<Plain>()));
      } else {
        auto owned = std::make_unique<Plain>(std::move(exit));
        Plain* manager = owned.get();
        push_async(manager_exit(manager, std::move(owned)));
      }
    } else {
      static_assert(
          std::is_invocable_v<Plain&, std::exception_ptr>,
          "push_async_exit() takes a callable of (std::exception_ptr) or an object with aexit()");
      push_async(detail::make_async_exit(Plain(std::forward<X>(exit))));
    }
  }

  // push_async_callback: `co_await fn(args...)` at unwinding; it never suppresses.
  template <class F, class... Args>
  void push_async_callback(F&& function, Args&&... args) {
    push_async([function = std::forward<F>(function),
                bound = std::make_tuple(std::forward<Args>(args)...)](std::exception_ptr) mutable {
      return discard(std::apply(function, bound));
    });
  }

  AsyncExitStack pop_all() {
    AsyncExitStack moved;
    moved.exits_ = std::exchange(exits_, {});
    return moved;
  }
  // Unwinds with no exception.
  Coro<void> aclose();

  // The `async with` protocol: `async_with(AsyncExitStack(), [&](AsyncExitStack& s) -> Coro<void>
  // {...})`.
  std::suspend_never aenter() noexcept { return {}; }
  Coro<bool> aexit(std::exception_ptr error);

 private:
  // Awaits `awaitable` and forgets its result: an async callback never suppresses.
  template <class A>
  static Coro<bool> discard(A awaitable) {
    co_await std::move(awaitable);
    co_return false;
  }

  template <class Manager>
  static detail::AsyncExit manager_exit(Manager* manager, std::unique_ptr<Manager> owned) {
    return [manager, owned = std::move(owned)](std::exception_ptr error) {
      using Returned = decltype(manager->aexit(error));
      if constexpr (std::is_same_v<Returned, Coro<bool>>) {
        return manager->aexit(std::move(error));
      } else {
        return detail::await_suppress(manager->aexit(std::move(error)));
      }
    };
  }

  template <class Manager>
  Coro<AsyncEnterResult<Manager>> enter_async(Manager* manager, std::unique_ptr<Manager> owned) {
    using V = AsyncEnterResult<Manager>;
    if constexpr (std::is_void_v<V>) {
      co_await manager->aenter();
      push_async(manager_exit(manager, std::move(owned)));
    } else {
      V value = co_await manager->aenter();
      push_async(manager_exit(manager, std::move(owned)));
      co_return value;
    }
  }

  void push_async(detail::AsyncExit exit) {
    exits_.emplace_back(std::in_place_index<1>, std::move(exit));
  }
  void warn_if_pending() noexcept;
};

}  // namespace corio
