// sleep(delay[, result]): suspends the current coroutine for `delay` seconds (asyncio.sleep).
// sleep(0) yields exactly one loop iteration. The timer node lives in the awaiting frame, so
// sleeping allocates nothing. A negative delay is treated as 0 and NaN raises ValueError, as
// asyncio 3.13 does.
#pragma once

#include <chrono>
#include <cmath>
#include <coroutine>
#include <type_traits>
#include <utility>

#include "corio/core/clock.hpp"
#include "corio/core/errors.hpp"
#include "corio/core/timer_heap.hpp"
#include "corio/detail/suspension.hpp"
#include "corio/event_loop.hpp"

namespace corio {

class SleepAwaiter {
 public:
  explicit SleepAwaiter(core::Nanos delay) noexcept : delay_(delay) {}
  // Movable until awaited (gather takes leaf awaitables by value); never once suspended,
  // because the armed timer node lives in the awaiter.
  SleepAwaiter(SleepAwaiter&& other) noexcept : delay_(other.delay_) {}
  SleepAwaiter(const SleepAwaiter&) = delete;
  ~SleepAwaiter() {
    if (timer_.armed()) suspension_.loop()->disarm_timer(timer_);
  }

  bool await_ready() const noexcept { return false; }
  void await_suspend(std::coroutine_handle<> handle);
  void await_resume() { suspension_.end(cancelled_); }

 private:
  static void fire(core::TimerNode* node) noexcept;
  static bool cancel_leaf(void* self) noexcept;

  core::TimerNode timer_;
  core::Nanos delay_;
  detail::Suspension suspension_;
  bool cancelled_ = false;
};

// What sleep(delay, result) returns: the same wait, then the result (asyncio.sleep's
// result= argument). Cancelled, it raises CancelledError and the result is dropped.
template <class T>
class SleepWithResult {
 public:
  SleepWithResult(SleepAwaiter sleep, T result)
      : sleep_(std::move(sleep)), result_(std::move(result)) {}

  bool await_ready() const noexcept { return sleep_.await_ready(); }
  void await_suspend(std::coroutine_handle<> handle) { sleep_.await_suspend(handle); }
  T await_resume() {
    sleep_.await_resume();
    return std::move(result_);
  }

 private:
  SleepAwaiter sleep_;
  T result_;
};

// ValueError for NaN, as asyncio 3.13 (before, NaN slept 0).
inline SleepAwaiter sleep(double seconds) {
  if (std::isnan(seconds)) throw ValueError("Invalid delay: NaN (not a number)");
  return SleepAwaiter(seconds > 0 ? core::from_seconds(seconds) : 0);
}

template <class Rep, class Period>
SleepAwaiter sleep(std::chrono::duration<Rep, Period> delay) {
  const auto ns = std::chrono::ceil<std::chrono::nanoseconds>(delay).count();
  return SleepAwaiter(ns > 0 ? static_cast<core::Nanos>(ns) : 0);
}

// asyncio.sleep(delay, result): co_await gives `result` (moved out) once the delay is over.
template <class T>
SleepWithResult<std::decay_t<T>> sleep(double seconds, T&& result) {
  return {sleep(seconds), std::forward<T>(result)};
}
template <class Rep, class Period, class T>
SleepWithResult<std::decay_t<T>> sleep(std::chrono::duration<Rep, Period> delay, T&& result) {
  return {sleep(delay), std::forward<T>(result)};
}

}  // namespace corio
