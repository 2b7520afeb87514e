// AsyncGenerator<T>: the C++ twin of a Python asynchronous generator (an `async def` that
// both awaits and yields), and async_for(), the `async for` statement over any async iterable.
//
//   AsyncGenerator<int> ticker(int n) {
//     for (int i = 0; i < n; ++i) { co_await sleep(1); co_yield i; }
//   }
//   // __anext__; nullopt is StopAsyncIteration:
//   while (std::optional<int> v = co_await gen.next()) ...
//   co_await async_for(ticker(3), [&](int& v) -> Coro<void> { ... });
//
// Like a Coro it is lazy: the body starts at the first next(). The generator runs inside the
// task that awaits next(), so a cancellation of that task reaches the generator's own
// co_await as CancelledError. aclose() throws GeneratorExit at the co_yield so the body can
// co_await its cleanup; an AsyncGenerator destroyed while suspended at a co_yield is closed
// that way by a task on its loop (asyncio's finalizer hook), and the Runner closes every
// generator still open when it shuts down (asyncio's shutdown_asyncgens).
// It must never be resumed by two consumers at once ("already running") and never runs
// outside the awaiting coroutine's task. Destroy a generator on its loop's thread, and not
// while another task is suspended inside its body (that task would never be resumed).
#pragma once

#include <concepts>
#include <coroutine>
#include <cstdint>
#include <exception>
#include <functional>
#include <optional>
#include <type_traits>
#include <utility>

#include "corio/core/errors.hpp"
#include "corio/coro.hpp"
#include "corio/detail/await_result.hpp"

namespace corio {

class EventLoop;

// Thrown into a generator at its co_yield by aclose() (Python's GeneratorExit). Like
// CancelledError it is not a std::exception, so `catch (const std::exception&)` in a
// generator body does not swallow it. Let it propagate (or return) to finish the generator.
class GeneratorExit : public BaseException {
 public:
  GeneratorExit() : BaseException({}) {}
};

template <class T>
class AsyncGenerator;

namespace detail {

class AsyncGenRegistry;

// Everything about a generator frame that does not depend on the yielded type.
class AsyncGenPromiseBase {
 public:
  enum class State : std::uint8_t { created, suspended, running, finished };

  AsyncGenPromiseBase() = default;
  AsyncGenPromiseBase(const AsyncGenPromiseBase&) = delete;
  ~AsyncGenPromiseBase();

  std::suspend_always initial_suspend() noexcept { return {}; }

  struct FinalAwaiter {
    bool await_ready() const noexcept { return false; }
    template <class P>
    std::coroutine_handle<> await_suspend(std::coroutine_handle<P> self) noexcept {
      return self.promise().on_finished();
    }
    void await_resume() const noexcept {}
  };
  FinalAwaiter final_suspend() noexcept { return {}; }
  void unhandled_exception() noexcept { error_ = std::current_exception(); }
  void return_void() noexcept {}

  // What `co_yield v` suspends on: back to the consumer; on resume, throws what athrow() or
  // aclose() sent in.
  struct YieldAwaiter {
    AsyncGenPromiseBase* promise;
    bool await_ready() const noexcept { return false; }
    std::coroutine_handle<> await_suspend(std::coroutine_handle<>) noexcept {
      return promise->on_yield();
    }
    void await_resume() const {
      if (promise->inject_) std::rethrow_exception(std::exchange(promise->inject_, nullptr));
    }
  };

  // --- for the awaiters of next()/athrow()/aclose() ---
  State state() const noexcept { return state_; }
  // Throws RuntimeError("<operation>(): asynchronous generator is already running").
  void check_not_running(const char* operation) const;
  // Resumes the generator on behalf of `consumer`; `inject` is thrown at the co_yield.
  std::coroutine_handle<> resume_from(std::coroutine_handle<> consumer, std::exception_ptr inject);
  // After a resumption: rethrows what escaped the body; true when a value was yielded.
  bool finish_resume();
  void mark_finished() noexcept;

 protected:
  std::coroutine_handle<> on_yield() noexcept;
  std::coroutine_handle<> on_finished() noexcept;

  std::coroutine_handle<> self_;  // set by the typed promise (from_promise needs the real type)
  bool yielded_ = false;

 private:
  friend class AsyncGenRegistry;
  friend void release_async_generator(std::coroutine_handle<>, AsyncGenPromiseBase*) noexcept;

  std::coroutine_handle<> consumer_;
  std::exception_ptr error_;   // escaped from the body, handed to the consumer once
  std::exception_ptr inject_;  // thrown at the co_yield when resumed
  State state_ = State::created;
  // Membership in the loop's registry (first iterated, not finished): loop thread only.
  AsyncGenRegistry* registry_ = nullptr;
  AsyncGenPromiseBase* prev_ = nullptr;
  AsyncGenPromiseBase* next_ = nullptr;
};

// Destroys the frame, or, if it is suspended at a co_yield and its loop is open, hands it
// to a task that closes it first (asyncio's async-generator finalizer hook).
void release_async_generator(std::coroutine_handle<> frame, AsyncGenPromiseBase* promise) noexcept;

template <class T>
class AsyncGenPromise : public AsyncGenPromiseBase {
 public:
  AsyncGenerator<T> get_return_object() noexcept;
  YieldAwaiter yield_value(const T& value) {
    value_.emplace(value);
    yielded_ = true;
    return YieldAwaiter{this};
  }
  YieldAwaiter yield_value(T&& value) {
    value_.emplace(std::move(value));
    yielded_ = true;
    return YieldAwaiter{this};
  }
  std::optional<T> take_value() {
    std::optional<T> out = std::move(value_);
    value_.reset();
    return out;
  }

 private:
  std::optional<T> value_;
};

// Awaiter of next() and athrow(): the next value, nullopt once the generator is exhausted.
template <class T>
class AsyncGenResumeAwaiter {
 public:
  AsyncGenResumeAwaiter(AsyncGenPromise<T>* promise, std::exception_ptr thrown) noexcept
      : promise_(promise), thrown_(std::move(thrown)) {}

  bool await_ready() {
    using State = AsyncGenPromiseBase::State;
    if (promise_ == nullptr) throw RuntimeError("cannot iterate an empty AsyncGenerator");
    promise_->check_not_running(thrown_ ? "athrow" : "anext");
    if (promise_->state() == State::finished) {
      thrown_ = nullptr;  // an exhausted generator just ends the iteration
      return true;
    }
    if (thrown_ && promise_->state() == State::created) {
      promise_->mark_finished();  // raised where the body would have started
      immediate_ = true;
      return true;
    }
    return false;
  }
  std::coroutine_handle<> await_suspend(std::coroutine_handle<> consumer) {
    resumed_ = true;
    return promise_->resume_from(consumer, std::exchange(thrown_, nullptr));
  }
  std::optional<T> await_resume() {
    if (immediate_) std::rethrow_exception(thrown_);
    if (!resumed_) return std::nullopt;
    if (promise_->finish_resume()) return promise_->take_value();
    return std::nullopt;
  }

 private:
  AsyncGenPromise<T>* promise_;
  std::exception_ptr thrown_;
  bool immediate_ = false;
  bool resumed_ = false;
};

// Awaiter of aclose(): throws GeneratorExit at the co_yield and waits for the body to end.
class AsyncGenCloseAwaiter {
 public:
  explicit AsyncGenCloseAwaiter(AsyncGenPromiseBase* promise) noexcept : promise_(promise) {}
  bool await_ready();
  std::coroutine_handle<> await_suspend(std::coroutine_handle<> consumer);
  void await_resume();

 private:
  AsyncGenPromiseBase* promise_;
  bool resumed_ = false;
};

}  // namespace detail

template <class T>
class [[nodiscard]] AsyncGenerator {
  static_assert(!std::is_reference_v<T>,
                "yield pointers or std::reference_wrapper instead of references");

 public:
  using promise_type = detail::AsyncGenPromise<T>;
  using Handle = std::coroutine_handle<promise_type>;
  using value_type = T;

  AsyncGenerator() = default;
  explicit AsyncGenerator(Handle handle) noexcept : handle_(handle) {}
  AsyncGenerator(AsyncGenerator&& other) noexcept : handle_(std::exchange(other.handle_, {})) {}
  AsyncGenerator& operator=(AsyncGenerator&& other) noexcept {
    if (this != &other) {
      reset();
      handle_ = std::exchange(other.handle_, {});
    }
    return *this;
  }
  ~AsyncGenerator() { reset(); }

  explicit operator bool() const noexcept { return static_cast<bool>(handle_); }
  // The body ended (returned, threw, or was closed).
  bool finished() const noexcept {
    return !handle_ || handle_.promise().state() == detail::AsyncGenPromiseBase::State::finished;
  }
  // The body is executing (between a resumption and its next co_yield): ag_running.
  bool running() const noexcept {
    return handle_ && handle_.promise().state() == detail::AsyncGenPromiseBase::State::running;
  }

  // __anext__: co_await gen.next() runs the body to its next co_yield; nullopt when it ends.
  // An exception escaping the body is rethrown here, after which the generator is finished.
  detail::AsyncGenResumeAwaiter<T> next() {
    return {handle_ ? &handle_.promise() : nullptr, nullptr};
  }
  // athrow(): raises `error` at the co_yield; returns the next value the body yields, nullopt
  // if it ends, or rethrows what escapes it.
  detail::AsyncGenResumeAwaiter<T> athrow(std::exception_ptr error) {
    if (!error) throw TypeError("athrow() needs an exception");
    return {handle_ ? &handle_.promise() : nullptr, std::move(error)};
  }
  template <class E>
  requires(!std::is_same_v<std::decay_t<E>, std::exception_ptr>)
      detail::AsyncGenResumeAwaiter<T> athrow(E&& error) {
    return athrow(std::make_exception_ptr(std::forward<E>(error)));
  }
  // aclose(): raises GeneratorExit at the co_yield and waits until the body ends. RuntimeError
  // if the body yields again ("ignored GeneratorExit"); any other exception propagates.
  detail::AsyncGenCloseAwaiter aclose() {
    return detail::AsyncGenCloseAwaiter(handle_ ? &handle_.promise() : nullptr);
  }

 private:
  void reset() noexcept {
    if (!handle_) return;
    const Handle handle = std::exchange(handle_, {});
    detail::release_async_generator(handle, &handle.promise());
  }

  Handle handle_;
};

template <class T>
AsyncGenerator<T> detail::AsyncGenPromise<T>::get_return_object() noexcept {
  auto handle = std::coroutine_handle<AsyncGenPromise<T>>::from_promise(*this);
  self_ = handle;
  return AsyncGenerator<T>(handle);
}

// asyncio's shutdown_asyncgens: closes every generator of `loop` that was iterated and is
// still suspended at a co_yield, concurrently, and waits for the closes already scheduled
// for destroyed generators. Errors go to the loop's exception handler. Runner::close runs it.
Coro<void> shutdown_asyncgens(EventLoop& loop);

// --- async iteration ---

// An async iterator: next() returns an awaitable of std::optional<V>, nullopt meaning
// StopAsyncIteration. AsyncGenerator<T> is one; so is any class with such a next().
template <class I>
concept AsyncIterable = requires(I& it) {
  it.next();
  requires detail::Awaitable<decltype(it.next())>;
};

template <AsyncIterable I>
using AsyncIterValue =
    typename detail::AwaitResultOf<decltype(std::declval<I&>().next())>::value_type;

namespace detail {

template <class I, class Body>
Coro<void> async_for_impl(I iterable, Body body) {
  auto& it = static_cast<std::remove_reference_t<I>&>(iterable);
  using V = AsyncIterValue<std::remove_reference_t<I>>;
  using R = std::invoke_result_t<Body&, V&>;
  while (true) {
    std::optional<V> item = co_await it.next();
    if (!item) co_return;
    if constexpr (std::is_void_v<R>) {
      body(*item);
    } else if constexpr (std::is_convertible_v<R, bool>) {
      if (!body(*item)) co_return;
    } else if constexpr (std::is_void_v<AwaitResultOf<R>>) {
      co_await body(*item);
    } else {
      static_assert(std::is_convertible_v<AwaitResultOf<R>, bool>,
                    "an async_for body returns void, bool, or an awaitable of void or bool");
      if (!static_cast<bool>(co_await body(*item))) co_return;
    }
  }
}

}  // namespace detail

// `async for v in iterable: body`. The body gets each value as V&; it may be synchronous or
// return an awaitable (a Coro). A body that returns bool (or an awaitable of bool) stops the
// loop by returning false, as `break` would. An lvalue iterable is borrowed (it must outlive
// the loop); an rvalue one is moved into the loop and destroyed with it. Exceptions from the
// body or the iterator propagate; a generator left unfinished is closed as asyncio does.
template <class I, class Body>
requires AsyncIterable<std::remove_reference_t<I>> Coro<void> async_for(I&& iterable, Body body) {
  if constexpr (std::is_lvalue_reference_v<I>) {
    return detail::async_for_impl<I>(iterable, std::move(body));
  } else {
    return detail::async_for_impl<std::remove_cvref_t<I>>(std::move(iterable), std::move(body));
  }
}

}  // namespace corio
