// Coro<T>: the C++ twin of a Python coroutine object (what calling an `async def` returns).
// Lazy: nothing runs until it is awaited or wrapped in a task. Awaiting one transfers control
// symmetrically (no stack growth however deep the chain), and its exception propagates to
// the awaiter. Dropping one that never ran prints asyncio's "never awaited" warning.
// It must never be resumed by anything but its awaiter or its task.
#pragma once

#include <coroutine>
#include <cstdint>
#include <exception>
#include <optional>
#include <source_location>
#include <type_traits>
#include <utility>

#include "corio/core/errors.hpp"

namespace corio {

template <class T = void>
class Coro;

namespace detail {

class TaskBase;
void warn_never_awaited(const char* function_name) noexcept;

// Symmetric transfer without relying on the optimiser: GCC turns "await_suspend returns a
// handle" into a tail call only at -O2, so a million-deep await chain would overflow the
// stack in debug and sanitizer builds. While a driver (a task step) is active, the next
// coroutine to run is handed back to it instead of being resumed from inside this one.
struct Trampoline {
  static inline thread_local bool active = false;
  static inline thread_local void* next = nullptr;

  // Transfers control to `to`: through the active driver, or by symmetric transfer.
  static std::coroutine_handle<> transfer(std::coroutine_handle<> to) noexcept {
    if (!active) return to;
    next = to.address();
    return std::noop_coroutine();
  }
  // Resumes `start` and every coroutine control is transferred to, iteratively.
  static void drive(std::coroutine_handle<> start) {
    const bool was_active = active;
    active = true;
    void* current = start.address();
    while (current != nullptr) {
      next = nullptr;
      std::coroutine_handle<>::from_address(current).resume();
      current = next;
    }
    active = was_active;
  }
};

struct PromiseBase {
  explicit PromiseBase(const std::source_location& where) noexcept
      : function(where.function_name()), file(where.file_name()), line(where.line()) {}

  struct InitialAwaiter {
    PromiseBase* promise;
    bool await_ready() const noexcept { return false; }
    void await_suspend(std::coroutine_handle<>) const noexcept {}
    void await_resume() const noexcept { promise->started = true; }
  };
  struct FinalAwaiter {
    bool await_ready() const noexcept { return false; }
    template <class P>
    std::coroutine_handle<> await_suspend(std::coroutine_handle<P> self) noexcept {
      PromiseBase& promise = self.promise();
      if (promise.parent) promise.parent->child = nullptr;
      if (promise.task) return finish_task(promise.task);
      return promise.continuation ? Trampoline::transfer(promise.continuation)
                                  : std::noop_coroutine();
    }
    void await_resume() const noexcept {}
  };

  InitialAwaiter initial_suspend() noexcept { return {this}; }
  FinalAwaiter final_suspend() noexcept { return {}; }
  void unhandled_exception() noexcept { exception = std::current_exception(); }

  // Finishes the task whose root coroutine just completed (destroys the frame).
  static std::coroutine_handle<> finish_task(TaskBase* task) noexcept;

  std::coroutine_handle<> continuation;
  TaskBase* task = nullptr;       // set when this coroutine is a task's root
  PromiseBase* parent = nullptr;  // the coroutine awaiting this one (for call graphs)
  PromiseBase* child = nullptr;   // the coroutine this one awaits
  std::exception_ptr exception;
  const char* function;  // where the coroutine is defined, for warnings and call graphs
  const char* file;
  std::uint_least32_t line;
  bool started = false;
};

template <class T>
struct Promise : PromiseBase {
  explicit Promise(std::source_location where = std::source_location::current()) noexcept
      : PromiseBase(where) {}
  Coro<T> get_return_object() noexcept;
  template <class U = T>
  requires std::is_convertible_v<U&&, T>
  void return_value(U&& value) { result.emplace(std::forward<U>(value)); }
  std::optional<T> result;
};

template <>
struct Promise<void> : PromiseBase {
  explicit Promise(std::source_location where = std::source_location::current()) noexcept
      : PromiseBase(where) {}
  Coro<void> get_return_object() noexcept;
  void return_void() noexcept {}
};

}  // namespace detail

template <class T>
class [[nodiscard]] Coro {
 public:
  using promise_type = detail::Promise<T>;
  using Handle = std::coroutine_handle<promise_type>;
  using value_type = T;

  Coro() = default;
  explicit Coro(Handle handle) noexcept : handle_(handle) {}
  Coro(Coro&& other) noexcept : handle_(std::exchange(other.handle_, {})) {}
  Coro& operator=(Coro&& other) noexcept {
    if (this != &other) {
      reset();
      handle_ = std::exchange(other.handle_, {});
    }
    return *this;
  }
  ~Coro() { reset(); }

  explicit operator bool() const noexcept { return static_cast<bool>(handle_); }
  // Gives up ownership of the frame (a task takes it).
  Handle release() noexcept { return std::exchange(handle_, {}); }
  const char* function_name() const noexcept { return handle_ ? handle_.promise().function : ""; }

  auto operator co_await() && { return Awaiter{handle_}; }
  auto operator co_await() & { return Awaiter{handle_}; }

 private:
  struct Awaiter {
    Handle child;
    bool await_ready() const {
      if (!child) throw RuntimeError("cannot await an empty coroutine");
      if (child.promise().started) throw RuntimeError("cannot reuse already awaited coroutine");
      return false;
    }
    template <class P>
    std::coroutine_handle<> await_suspend(std::coroutine_handle<P> parent) noexcept {
      promise_type& promise = child.promise();
      promise.continuation = parent;
      if constexpr (std::is_base_of_v<detail::PromiseBase, P>) {
        promise.parent = &parent.promise();
        parent.promise().child = &promise;
      }
      return detail::Trampoline::transfer(child);
    }
    T await_resume() {
      promise_type& promise = child.promise();
      if (promise.exception) std::rethrow_exception(promise.exception);
      if constexpr (!std::is_void_v<T>) return std::move(*promise.result);
    }
  };

  void reset() noexcept {
    if (!handle_) return;
    if (!handle_.promise().started) detail::warn_never_awaited(handle_.promise().function);
    handle_.destroy();
    handle_ = {};
  }

  Handle handle_;
};

namespace detail {
template <class T>
Coro<T> Promise<T>::get_return_object() noexcept {
  return Coro<T>(std::coroutine_handle<Promise<T>>::from_promise(*this));
}
inline Coro<void> Promise<void>::get_return_object() noexcept {
  return Coro<void>(std::coroutine_handle<Promise<void>>::from_promise(*this));
}
}  // namespace detail

}  // namespace corio
