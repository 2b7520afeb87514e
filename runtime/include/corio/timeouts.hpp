// timeout() / timeout_at(): asyncio's scoped deadlines (asyncio.Timeout).
//
// C++ has no `async with`, so the scope is a body the scope awaits inline, in the current task:
//
//   int n = co_await corio::timeout(5.0, [&](corio::Timeout& cm) -> corio::Coro<int> {
//     cm.reschedule(cm.when().value() + 1);   // optional
//     co_return co_await work();
//   });                                        // TimeoutError if the deadline passed
//
// When the caller wants to ask expired() after the scope, it owns the Timeout:
//
//   corio::Timeout cm = corio::timeout(corio::no_deadline);    // async with timeout(None) as cm
//   try { co_await cm.run([&]() -> corio::Coro<void> { ... }); }
//   catch (const corio::TimeoutError&) { assert(cm.expired()); }
//
// The lower-level enter()/exit(error) pair is what run() does; exit(error) must be called on
// every path (it rethrows `error`, or throws TimeoutError in its place).
//
// On expiry the task running the scope is cancelled; the CancelledError that comes out of the
// body is turned into TimeoutError only when no other cancellation is pending on the task
// (Task::cancelling()/uncancel(), as CPython's timeouts.py), so an outer cancellation always
// stays a CancelledError and of nested scopes that expired together, the outermost raises.
// The TimeoutError a scope raises is a std::nested_exception holding that CancelledError
// ("raise TimeoutError from exc"); cm.expired() says whether this scope was the one.
// A scope arms a timer node embedded in itself: entering and leaving one allocates nothing.
// The expiry runs from the ready queue, after callbacks that became due before it, exactly
// where asyncio runs its timer handle; only then is anything allocated.
// It must never be entered twice, and never outlive the loop while armed.
#pragma once

#include <exception>
#include <functional>
#include <optional>
#include <type_traits>
#include <utility>

#include "corio/core/errors.hpp"
#include "corio/core/timer_heap.hpp"
#include "corio/coro.hpp"
#include "corio/event_loop.hpp"
#include "corio/handle.hpp"
#include "corio/task.hpp"

namespace corio {

// Python's None for a deadline or a delay: wait forever (until rescheduled).
inline constexpr std::nullopt_t no_deadline = std::nullopt;

// The TimeoutError corio raises for an expired deadline (asyncio raises a bare TimeoutError).
TimeoutError make_timeout_error();

template <class F>
class TimeoutRun;
template <class F>
class TimeoutScope;

class Timeout {
 public:
  // timeout_at(when): `when` is an absolute loop.time(), or nullopt for no deadline.
  explicit Timeout(std::optional<double> when) noexcept : when_(when) {}
  ~Timeout();
  Timeout(const Timeout&) = delete;
  Timeout& operator=(const Timeout&) = delete;

  // The deadline in loop.time() seconds, nullopt when there is none.
  std::optional<double> when() const noexcept { return when_; }
  // Moves the deadline (nullopt removes it). Only while entered and not expired.
  void reschedule(std::optional<double> when);
  // The deadline passed while the scope was active (the scope is cancelling or did cancel).
  bool expired() const noexcept { return state_ == State::expiring || state_ == State::expired; }

  // __aenter__: binds the scope to the current task and arms the deadline.
  void enter();
  // __aexit__: `error` is what the body raised (null: it completed). Rethrows `error`, or
  // throws TimeoutError instead of a CancelledError this scope caused; returns normally only
  // when `error` is null.
  void exit(std::exception_ptr error);

  // enter(), co_await body(*this) (or body()), exit(): an awaitable yielding the body's
  // result. The body must return a Coro<T>.
  template <class F>
  TimeoutRun<F> run(F body) {
    return TimeoutRun<F>(*this, std::move(body));
  }

 private:
  enum class State : std::uint8_t { created, entered, expiring, expired, exited };

  void arm(double when);
  void disarm() noexcept;
  void expire();
  static void on_timeout(core::TimerNode* node) noexcept;
  static const char* state_name(State state) noexcept;

  core::TimerNode timer_;
  Handle expiry_;  // the expiry, queued to run (call_soon); only exists once due
  std::optional<double> when_;
  EventLoop* loop_ = nullptr;
  AnyTask task_;
  int cancelling_ = 0;
  State state_ = State::created;
};

// asyncio.timeout(delay): a scope whose deadline is loop.time() + delay (nullopt: none).
// Needs a running loop (the deadline is computed now, as in asyncio).
Timeout timeout(std::optional<double> delay);
// asyncio.timeout_at(when).
inline Timeout timeout_at(std::optional<double> when) {
  return Timeout(when);
}

namespace detail {
template <class F>
auto invoke_body(F& body, Timeout& cm) {
  if constexpr (std::is_invocable_v<F&, Timeout&>) {
    return std::invoke(body, cm);
  } else {
    return std::invoke(body);
  }
}
template <class F>
using TimeoutBodyCoro = decltype(invoke_body(std::declval<F&>(), std::declval<Timeout&>()));
}  // namespace detail

// The awaitable Timeout::run returns: runs the body inline in the awaiting coroutine (by
// symmetric transfer, no extra frame) between enter() and exit().
template <class F>
class TimeoutRun {
  using BodyCoro = detail::TimeoutBodyCoro<F>;
  static_assert(detail::IsCoro<BodyCoro>::value, "a timeout body must return a corio::Coro<T>");
  using T = typename BodyCoro::value_type;
  using BodyAwaiter = decltype(std::declval<BodyCoro&>().operator co_await());

 public:
  TimeoutRun(Timeout& cm, F body) : cm_(cm), body_(std::move(body)) {}
  TimeoutRun(const TimeoutRun&) = delete;
  TimeoutRun& operator=(const TimeoutRun&) = delete;

  bool await_ready() {
    cm_.enter();
    try {
      coro_ = detail::invoke_body(body_, cm_);
      awaiter_.emplace(coro_.operator co_await());
      return awaiter_->await_ready();
    } catch (...) {
      cm_.exit(std::current_exception());
      throw;  // not reached: exit rethrows
    }
  }
  template <class P>
  auto await_suspend(std::coroutine_handle<P> handle) {
    return awaiter_->await_suspend(handle);
  }
  T await_resume() {
    if constexpr (std::is_void_v<T>) {
      try {
        awaiter_->await_resume();
      } catch (...) {
        cm_.exit(std::current_exception());
      }
      cm_.exit(nullptr);
    } else {
      std::optional<T> result;
      try {
        result.emplace(awaiter_->await_resume());
      } catch (...) {
        cm_.exit(std::current_exception());
      }
      cm_.exit(nullptr);
      return std::move(*result);
    }
  }

 private:
  Timeout& cm_;
  F body_;
  BodyCoro coro_;
  std::optional<BodyAwaiter> awaiter_;
};

// The awaitable timeout(delay, body) returns: owns its Timeout.
template <class F>
class TimeoutScope {
 public:
  TimeoutScope(std::optional<double> when, F body) : cm_(when), run_(cm_, std::move(body)) {}
  TimeoutScope(const TimeoutScope&) = delete;
  TimeoutScope& operator=(const TimeoutScope&) = delete;

  bool await_ready() { return run_.await_ready(); }
  template <class P>
  auto await_suspend(std::coroutine_handle<P> handle) {
    return run_.await_suspend(handle);
  }
  decltype(auto) await_resume() { return run_.await_resume(); }

 private:
  Timeout cm_;
  TimeoutRun<F> run_;
};

namespace detail {
// loop.time() + delay, or nullopt.
std::optional<double> deadline_after(std::optional<double> delay);
}  // namespace detail

// `async with asyncio.timeout(delay) as cm: <body>` in one expression.
template <class F>
requires std::is_invocable_v<F&, Timeout&> || std::is_invocable_v<F&> TimeoutScope<F> timeout(
    std::optional<double> delay, F body) {
  return TimeoutScope<F>(detail::deadline_after(delay), std::move(body));
}

// `async with asyncio.timeout_at(when) as cm: <body>`.
template <class F>
requires std::is_invocable_v<F&, Timeout&> || std::is_invocable_v<F&> TimeoutScope<F> timeout_at(
    std::optional<double> when, F body) {
  return TimeoutScope<F>(when, std::move(body));
}

}  // namespace corio
