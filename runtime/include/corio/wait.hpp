// wait(futures, timeout, return_when): asyncio.wait. Waits until the condition holds (or the
// timeout passes) and returns {done, pending}; it never cancels anything and never raises
// TimeoutError: on timeout the unfinished ones are simply in `pending`.
//
//   auto [done, pending] = co_await corio::wait(tasks, 5.0, corio::FIRST_COMPLETED);
//
// `futures` is a vector of Future<T>, Task<T> or AnyTask (coroutines are refused at compile
// time, as asyncio refuses them: wrap them in tasks). Duplicates count once; done and pending
// keep the input order (asyncio returns sets). An empty vector raises ValueError. Like
// asyncio, wait() always yields to the loop at least once, even when everything is done.
// It must never cancel, or consume the results of, the futures it watches (FIRST_EXCEPTION
// looks at exceptions, which marks them retrieved, as asyncio's exception() call does).
#pragma once

#include <cstdint>
#include <optional>
#include <type_traits>
#include <vector>

#include "corio/core/errors.hpp"
#include "corio/core/timer_heap.hpp"
#include "corio/coro.hpp"
#include "corio/detail/awaitables.hpp"
#include "corio/event_loop.hpp"
#include "corio/future.hpp"
#include "corio/task.hpp"

namespace corio {

enum class ReturnWhen : std::uint8_t { first_completed, first_exception, all_completed };
inline constexpr ReturnWhen FIRST_COMPLETED = ReturnWhen::first_completed;
inline constexpr ReturnWhen FIRST_EXCEPTION = ReturnWhen::first_exception;
inline constexpr ReturnWhen ALL_COMPLETED = ReturnWhen::all_completed;

template <class F>
struct WaitResult {
  std::vector<F> done;
  std::vector<F> pending;
};

namespace detail {

// Drops duplicates (same underlying future), keeping the first occurrence.
template <class F>
void unique_futures(std::vector<F>& futures) {
  std::vector<F> unique;
  unique.reserve(futures.size());
  for (F& f : futures) {
    bool seen = false;
    for (const F& u : unique) seen = seen || base_of(u) == base_of(f);
    if (!seen) unique.push_back(std::move(f));
  }
  futures = std::move(unique);
}

// asyncio's _wait without the future types. Heap-allocated and reference-counted because
// a future that finishes posts a pointer to it, which may run after wait() has returned.
class WaitState {
 public:
  WaitState(EventLoop& loop, const std::vector<FutureBase*>& futures, ReturnWhen return_when,
            std::optional<double> timeout);
  WaitState(const WaitState&) = delete;
  WaitState& operator=(const WaitState&) = delete;

  bool fired() const noexcept { return fired_; }
  WakeLeaf wait() noexcept { return WakeLeaf(&waiter_); }
  // The owner is done with it: unregister from the futures and drop the owner's reference.
  void close() noexcept;

 private:
  struct Link {
    WaitState* state = nullptr;
    FutureBase* future = nullptr;
    bool registered = false;
  };
  ~WaitState();
  static void on_done(void* link);
  static void on_timeout(core::TimerNode* node) noexcept;
  void fire() noexcept;
  void release() noexcept {
    if (--refs_ == 0) delete this;
  }

  EventLoop* loop_;
  std::vector<Link> links_;  // never resized after construction: the loop points into it
  core::TimerNode timer_;
  WakeLeaf* waiter_ = nullptr;
  std::size_t counter_;
  int refs_ = 1;
  ReturnWhen return_when_;
  bool fired_ = false;
  bool closed_ = false;
};

class WaitStateOwner {
 public:
  explicit WaitStateOwner(WaitState* state) noexcept : state_(state) {}
  WaitStateOwner(const WaitStateOwner&) = delete;
  WaitStateOwner& operator=(const WaitStateOwner&) = delete;
  ~WaitStateOwner() { state_->close(); }
  WaitState* operator->() const noexcept { return state_; }

 private:
  WaitState* state_;
};

}  // namespace detail

template <class F>
Coro<WaitResult<F>> wait(std::vector<F> futures, std::optional<double> timeout = std::nullopt,
                         ReturnWhen return_when = ALL_COMPLETED) {
  static_assert(!detail::IsCoro<F>::value,
                "Passing coroutines is forbidden, use tasks explicitly.");
  static_assert(detail::IsFuture<F>::value || std::is_same_v<F, AnyTask>,
                "wait() takes a vector of Future<T>, Task<T> or AnyTask");
  if (futures.empty()) throw ValueError("Set of Tasks/Futures is empty.");
  if (return_when != FIRST_COMPLETED && return_when != FIRST_EXCEPTION &&
      return_when != ALL_COMPLETED) {
    throw ValueError("Invalid return_when value");
  }
  detail::unique_futures(futures);
  std::vector<detail::FutureBase*> bases;
  bases.reserve(futures.size());
  for (const F& f : futures) bases.push_back(detail::base_of(f));
  detail::WaitStateOwner state(
      new detail::WaitState(get_running_loop(), bases, return_when, timeout));
  if (!state->fired()) co_await state->wait();
  WaitResult<F> result;
  for (F& f : futures)
    (detail::base_of(f)->done() ? result.done : result.pending).push_back(std::move(f));
  co_return result;
}

template <class F>
Coro<WaitResult<F>> wait(std::vector<F> futures, ReturnWhen return_when) {
  return wait(std::move(futures), std::nullopt, return_when);
}

}  // namespace corio
