// as_completed(futures, timeout): asyncio.as_completed. Returns an iterable of exactly N
// awaitables (N = distinct inputs); awaiting the k-th yields the result of the k-th future to
// finish (or rethrows its exception), whichever awaitable object is awaited first. Once the
// timeout passes, every awaitable still to be awaited raises TimeoutError. Coroutines are
// wrapped in tasks at once.
//
//   for (auto next : corio::as_completed(std::move(tasks), 10.0)) {
//     int earliest = co_await next;
//   }
//
// Elements are Coro<T>, Future<T>, Task<T> (yielding T) or AnyTask (yielding nothing).
// An awaitable is movable until awaited (GCC 12 wants `co_await std::move(next)` when `next`
// is reached through a lambda capture).
// Nothing is cancelled on timeout. Dropping the iterable (and its awaitables) early stops the
// bookkeeping; the futures keep running. It must never be used across loops or threads.
#pragma once

#include <cstddef>
#include <deque>
#include <optional>
#include <type_traits>
#include <utility>
#include <vector>

#include "corio/core/errors.hpp"
#include "corio/core/timer_heap.hpp"
#include "corio/detail/awaitables.hpp"
#include "corio/detail/suspension.hpp"
#include "corio/event_loop.hpp"
#include "corio/future.hpp"
#include "corio/task.hpp"
#include "corio/timeouts.hpp"
#include "corio/wait.hpp"

namespace corio {

namespace detail {

// The type-independent part: a queue of completions (indexes, or kTimedOut), fed by the
// futures' done notifications and the timer, drained by waiting awaitables in FIFO order.
// Reference-counted because finished futures post pointers into it; "users" are the
// iterable and its awaitables: when the last goes, it unhooks from everything.
class AsCompletedState {
 public:
  static constexpr std::ptrdiff_t kTimedOut = -1;

  struct Waiter {
    AsCompletedState* owner = nullptr;
    Suspension suspension;
    Waiter* next = nullptr;
    Waiter* prev = nullptr;
    bool queued = false;  // in the waiter list
    bool woken = false;   // an entry is reserved for it
    bool cancelled = false;
  };

  AsCompletedState(const AsCompletedState&) = delete;
  AsCompletedState& operator=(const AsCompletedState&) = delete;

  void add_user() noexcept {
    ++users_;
    ++refs_;
  }
  void drop_user() noexcept {
    if (--users_ == 0) detach();
    release();
  }

  // An entry nobody has reserved, if one is ready.
  bool try_take(std::ptrdiff_t& entry);
  // The entry reserved for a woken waiter.
  std::ptrdiff_t take_reserved();
  void enqueue(Waiter* waiter) noexcept;
  // A woken waiter that will not consume its entry hands it to the next one.
  void give_back() noexcept;
  void forget(Waiter* waiter) noexcept;
  static bool cancel_leaf(void* waiter);
  std::size_t size() const noexcept { return links_.size(); }

 protected:
  AsCompletedState() = default;
  virtual ~AsCompletedState() = default;
  // Registers on every future; called once the derived object holds them.
  void start(EventLoop& loop, const std::vector<FutureBase*>& futures,
             std::optional<double> timeout);

 private:
  struct Link {
    AsCompletedState* state = nullptr;
    FutureBase* future = nullptr;
    std::ptrdiff_t index = 0;
    bool registered = false;
  };
  static void on_done(void* link);
  static void on_timeout(core::TimerNode* node) noexcept;
  // from_timer: see Suspension::wake_from_timer.
  void deliver(bool from_timer = false) noexcept;
  void detach() noexcept;
  void release() noexcept {
    if (--refs_ == 0) delete this;
  }

  EventLoop* loop_ = nullptr;
  std::vector<Link> links_;  // never resized after start(): the loop points into it
  core::TimerNode timer_;
  std::deque<std::ptrdiff_t> ready_;
  std::size_t reserved_ = 0;
  std::size_t todo_ = 0;
  Waiter* head_ = nullptr;
  Waiter* tail_ = nullptr;
  int refs_ = 0;  // users, plus one per registered link
  int users_ = 0;
  bool timed_out_ = false;
  bool detached_ = false;
};

template <class F>
class AsCompletedTyped final : public AsCompletedState {
 public:
  AsCompletedTyped(EventLoop& loop, std::vector<F> futures, std::optional<double> timeout)
      : futures_(std::move(futures)) {
    std::vector<FutureBase*> bases;
    bases.reserve(futures_.size());
    for (const F& f : futures_) bases.push_back(base_of(f));
    start(loop, bases, timeout);
  }
  F& future(std::size_t index) noexcept { return futures_[index]; }

 private:
  std::vector<F> futures_;
};

template <class A>
using AsCompletedElement =
    std::conditional_t<std::is_same_v<std::remove_cvref_t<A>, AnyTask>, AnyTask,
                       Future<await_result_t<std::remove_cvref_t<A>>>>;

}  // namespace detail

template <class F>
class AsCompleted {
  using State = detail::AsCompletedTyped<F>;

 public:
  // One awaitable of the iteration. Awaitable once; movable until awaited.
  class Next {
   public:
    explicit Next(State* state) noexcept : state_(state) {
      state_->add_user();
      waiter_.owner = state_;
    }
    Next(Next&& other) noexcept : state_(std::exchange(other.state_, nullptr)) {
      waiter_.owner = state_;
    }
    Next(const Next&) = delete;
    Next& operator=(const Next&) = delete;
    ~Next() {
      if (state_ == nullptr) return;
      if (waiter_.queued) state_->forget(&waiter_);
      if (waiter_.woken) state_->give_back();
      state_->drop_user();
    }

    bool await_ready() {
      if (used_) throw RuntimeError("cannot reuse already awaited as_completed() awaitable");
      used_ = true;
      return state_->try_take(entry_);
    }
    void await_suspend(std::coroutine_handle<> handle) {
      waiter_.suspension.begin(handle);
      state_->enqueue(&waiter_);
      waiter_.suspension.arm({&detail::AsCompletedState::cancel_leaf, &waiter_});
    }
    auto await_resume() {
      if (waiter_.suspension.begun()) {
        try {
          waiter_.suspension.end(waiter_.cancelled);
        } catch (...) {
          if (std::exchange(waiter_.woken, false)) state_->give_back();
          throw;
        }
        waiter_.woken = false;
        entry_ = state_->take_reserved();
      }
      if (entry_ == detail::AsCompletedState::kTimedOut) throw make_timeout_error();
      return detail::future_result(state_->future(static_cast<std::size_t>(entry_)));
    }

   private:
    State* state_;
    detail::AsCompletedState::Waiter waiter_;
    std::ptrdiff_t entry_ = detail::AsCompletedState::kTimedOut;
    bool used_ = false;
  };

  class iterator {
   public:
    using difference_type = std::ptrdiff_t;
    using value_type = Next;
    iterator() = default;
    iterator(State* state, std::size_t position) noexcept : state_(state), position_(position) {}
    Next operator*() const { return Next(state_); }
    iterator& operator++() noexcept {
      ++position_;
      return *this;
    }
    iterator operator++(int) noexcept {
      iterator old = *this;
      ++position_;
      return old;
    }
    bool operator==(const iterator& other) const noexcept { return position_ == other.position_; }

   private:
    State* state_ = nullptr;
    std::size_t position_ = 0;
  };

  AsCompleted(EventLoop& loop, std::vector<F> futures, std::optional<double> timeout)
      : state_(new State(loop, std::move(futures), timeout)) {
    state_->add_user();
  }
  AsCompleted(AsCompleted&& other) noexcept : state_(std::exchange(other.state_, nullptr)) {}
  AsCompleted(const AsCompleted&) = delete;
  AsCompleted& operator=(const AsCompleted&) = delete;
  ~AsCompleted() {
    if (state_ != nullptr) state_->drop_user();
  }

  // How many awaitables the iteration has (distinct futures).
  std::size_t size() const noexcept { return state_->size(); }
  iterator begin() const noexcept { return iterator(state_, 0); }
  iterator end() const noexcept { return iterator(state_, state_->size()); }
  // The next awaitable, for explicit loops; RuntimeError after size() of them.
  Next next() {
    if (issued_ == state_->size())
      throw RuntimeError("as_completed(): every awaitable was handed out");
    ++issued_;
    return Next(state_);
  }

 private:
  State* state_;
  std::size_t issued_ = 0;
};

template <class A>
AsCompleted<detail::AsCompletedElement<A>> as_completed(
    std::vector<A> awaitables, std::optional<double> timeout = std::nullopt) {
  using F = detail::AsCompletedElement<A>;
  EventLoop& loop = get_running_loop();
  std::vector<F> futures;
  futures.reserve(awaitables.size());
  for (A& a : awaitables) {
    if constexpr (std::is_same_v<F, AnyTask>) {
      futures.push_back(std::move(a));
    } else {
      futures.push_back(detail::as_future(loop, std::move(a)));
    }
  }
  detail::unique_futures(futures);
  return AsCompleted<F>(loop, std::move(futures), timeout);
}

}  // namespace corio
