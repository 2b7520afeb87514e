// asyncio's synchronization primitives: Lock, Event, Condition, Semaphore, BoundedSemaphore,
// Barrier, plus LockGuard, the C++ spelling of `async with lock:`.
// Semantics are CPython 3.12/3.13's: every primitive wakes its waiters in arrival order (FIFO),
// and a waiter cancelled in the same iteration it was woken hands its wake-up on to the next
// waiter, so a cancellation never loses a lock, a permit or a notification.
// Waiting allocates nothing: the wait-list node lives in the awaiter, in the waiting frame.
// Like asyncio's, these are not thread-safe: use them from their loop's thread only. A
// primitive should outlive the tasks that wait on it; one destroyed under a waiter wakes it
// with RuntimeError rather than leave it dangling.
// They must never resume a waiter inline (wake-ups go through the ready queue) and never
// allocate per waiter.
#pragma once

#include <coroutine>
#include <cstddef>
#include <exception>
#include <functional>
#include <optional>
#include <type_traits>
#include <utility>

#include "corio/core/errors.hpp"
#include "corio/detail/waiter_list.hpp"

namespace corio {

// ---------------------------------------------------------------------------------------------
// LockGuard: releases a Lock, Semaphore or Condition when it goes out of scope.
//   auto guard = co_await lock.scoped();   // async with lock:
// Release early with guard.unlock(). Never release the primitive itself while a guard owns it.

struct AdoptLock {};
inline constexpr AdoptLock adopt_lock{};

template <class Primitive>
class [[nodiscard]] LockGuard {
 public:
  LockGuard() = default;
  // Takes over an acquisition the caller already made (`co_await lock.acquire()`).
  LockGuard(Primitive& primitive, AdoptLock) noexcept : primitive_(&primitive) {}
  LockGuard(LockGuard&& other) noexcept : primitive_(std::exchange(other.primitive_, nullptr)) {}
  LockGuard& operator=(LockGuard&& other) noexcept {
    if (this != &other) {
      unlock();
      primitive_ = std::exchange(other.primitive_, nullptr);
    }
    return *this;
  }
  ~LockGuard() { unlock(); }

  void unlock() {
    if (primitive_) std::exchange(primitive_, nullptr)->release();
  }
  // Gives up ownership without releasing (as std::unique_lock::release).
  Primitive* release() noexcept { return std::exchange(primitive_, nullptr); }
  bool owns_lock() const noexcept { return primitive_ != nullptr; }
  explicit operator bool() const noexcept { return owns_lock(); }

 private:
  Primitive* primitive_ = nullptr;
};

// The awaitable behind `primitive.scoped()`: acquires, then hands back a LockGuard.
template <class Primitive, class Acquire>
class ScopedAcquire {
 public:
  // primitive.acquire() is a prvalue: the awaiter is built in place (it cannot move).
  explicit ScopedAcquire(Primitive& primitive) noexcept
      : primitive_(&primitive), acquire_(primitive.acquire()) {}
  ScopedAcquire(const ScopedAcquire&) = delete;

  bool await_ready() { return acquire_.await_ready(); }
  void await_suspend(std::coroutine_handle<> handle) { acquire_.await_suspend(handle); }
  LockGuard<Primitive> await_resume() {
    acquire_.await_resume();
    return LockGuard<Primitive>(*primitive_, adopt_lock);
  }

 private:
  Primitive* primitive_;
  Acquire acquire_;
};

// ---------------------------------------------------------------------------------------------
// Event: wait() until set(); set() wakes every waiter; clear() makes later waits block again.

class Event {
 public:
  class WaitAwaiter {
   public:
    explicit WaitAwaiter(Event& event) noexcept : event_(&event) {}
    bool await_ready() const noexcept { return event_->value_; }
    void await_suspend(std::coroutine_handle<> handle);
    bool await_resume();

   private:
    Event* event_;
    detail::Waiter waiter_;
  };

  Event() = default;
  Event(const Event&) = delete;
  Event& operator=(const Event&) = delete;

  bool is_set() const noexcept { return value_; }
  void set();
  void clear() noexcept { value_ = false; }
  // Returns true once the event is set (immediately when it already is).
  [[nodiscard]] WaitAwaiter wait() noexcept { return WaitAwaiter(*this); }

 private:
  bool value_ = false;
  detail::WaiterList waiters_;
};

// ---------------------------------------------------------------------------------------------
// Lock: a fair mutex for tasks. An uncontended acquire neither suspends nor allocates.
// Between release() and the next waiter running, locked() is false but the lock is promised to
// that waiter: a newcomer queues behind it (asyncio 3.12+'s rule, no barging).

class Condition;
namespace detail {
class ConditionWait;
}

class Lock {
 public:
  class AcquireAwaiter {
   public:
    explicit AcquireAwaiter(Lock& lock) noexcept : lock_(&lock) {}
    bool await_ready() noexcept { return lock_->try_acquire(); }
    void await_suspend(std::coroutine_handle<> handle);
    bool await_resume() {
      if (waiter_.suspension.begun()) lock_->finish_acquire(waiter_);
      return true;
    }

   private:
    Lock* lock_;
    detail::Waiter waiter_;
  };

  Lock() = default;
  Lock(const Lock&) = delete;
  Lock& operator=(const Lock&) = delete;

  // co_await lock.acquire() -> true once the lock is held.
  [[nodiscard]] AcquireAwaiter acquire() noexcept { return AcquireAwaiter(*this); }
  // auto guard = co_await lock.scoped(); -> released when `guard` goes out of scope.
  [[nodiscard]] ScopedAcquire<Lock, AcquireAwaiter> scoped() noexcept {
    return ScopedAcquire<Lock, AcquireAwaiter>(*this);
  }
  // RuntimeError when the lock is not held.
  void release();
  bool locked() const noexcept { return locked_; }

 private:
  friend class Condition;
  friend class detail::ConditionWait;

  bool try_acquire() noexcept {
    if (locked_ || !waiters_.empty()) return false;
    locked_ = true;
    return true;
  }
  // Queues a waiter for the lock; it is woken at once when the lock is free.
  void enqueue(detail::Waiter& waiter);
  // The waiter woken for the lock takes it (it is the head of the list).
  void claim(detail::Waiter& waiter) noexcept {
    waiters_.erase(&waiter);
    locked_ = true;
  }
  // Keeps the invariant: when the lock is free and someone waits, the head has been woken.
  void wake_first();
  void finish_acquire(detail::Waiter& waiter);

  bool locked_ = false;
  detail::WaiterList waiters_;  // the head may be `woken`; every other node is `waiting`
};

// ---------------------------------------------------------------------------------------------
// Semaphore(value): acquire() takes a permit, release() returns one. Permits are handed over
// to the first waiter at release() time, so waiters are served strictly in order.

class Semaphore {
 public:
  class AcquireAwaiter {
   public:
    explicit AcquireAwaiter(Semaphore& semaphore) noexcept : semaphore_(&semaphore) {}
    bool await_ready() noexcept { return semaphore_->try_acquire(); }
    void await_suspend(std::coroutine_handle<> handle);
    bool await_resume() {
      if (waiter_.suspension.begun()) semaphore_->finish_acquire(waiter_);
      return true;
    }

   private:
    Semaphore* semaphore_;
    detail::Waiter waiter_;
  };

  // ValueError when value < 0.
  explicit Semaphore(std::ptrdiff_t value = 1) : Semaphore(value, false) {}
  Semaphore(const Semaphore&) = delete;
  Semaphore& operator=(const Semaphore&) = delete;

  [[nodiscard]] AcquireAwaiter acquire() noexcept { return AcquireAwaiter(*this); }
  [[nodiscard]] ScopedAcquire<Semaphore, AcquireAwaiter> scoped() noexcept {
    return ScopedAcquire<Semaphore, AcquireAwaiter>(*this);
  }
  // Returns a permit. For a BoundedSemaphore, ValueError when that would exceed the bound.
  void release();
  // True when acquire() would wait (no permit, or earlier waiters still queued).
  bool locked() const noexcept { return value_ == 0 || !waiting_.empty() || !woken_.empty(); }

 protected:
  Semaphore(std::ptrdiff_t value, bool bounded);

 private:
  bool try_acquire() noexcept {
    if (locked()) return false;
    --value_;
    return true;
  }
  bool wake_up_next();
  void wake_while_available();
  void finish_acquire(detail::Waiter& waiter);

  std::ptrdiff_t value_;
  std::ptrdiff_t bound_;
  bool bounded_;
  detail::WaiterList waiting_;
  detail::WaiterList woken_;  // handed a permit, not run yet
};

// A Semaphore whose release() raises ValueError above its initial value.
class BoundedSemaphore : public Semaphore {
 public:
  explicit BoundedSemaphore(std::ptrdiff_t value = 1) : Semaphore(value, true) {}
};

// ---------------------------------------------------------------------------------------------
// Condition: wait() releases the lock, sleeps until notified, and takes the lock back before
// returning, even when cancelled (CancelledError is raised with the lock held). A notified
// waiter queues for the lock at notify() time. wait_for(predicate) re-tests the predicate with
// the lock held each time it is notified, outside the task, and returns its value.

namespace detail {

// What Condition::wait() and wait_for() share; the predicate comes in through `check`.
class ConditionWait : protected Waiter {
 public:
  ConditionWait(const ConditionWait&) = delete;
  void await_suspend(std::coroutine_handle<> handle);

 protected:
  ConditionWait(Condition& condition, bool (*check)(ConditionWait*)) noexcept
      : condition_(&condition), check_(check) {}
  void require_locked() const;
  // await_resume after a suspension: the lock is held again; throws what the wait ended with.
  void finish();

 private:
  friend class corio::Condition;
  enum class Phase : std::uint8_t { holding, notify, lock };
  static bool cancel(void* self) noexcept;
  static void granted(void* self);

  Condition* condition_;
  bool (*check_)(ConditionWait*);
  Phase phase_ = Phase::holding;
  bool notified_ = false;
  std::exception_ptr error_;  // thrown by the predicate while retesting
};

}  // namespace detail

class Condition {
 public:
  class WaitAwaiter : public detail::ConditionWait {
   public:
    explicit WaitAwaiter(Condition& condition) noexcept : ConditionWait(condition, nullptr) {}
    bool await_ready() const {
      require_locked();
      return false;
    }
    bool await_resume() {
      finish();
      return true;
    }
  };

  template <class Predicate>
  class WaitForAwaiter : public detail::ConditionWait {
   public:
    using Result = std::decay_t<std::invoke_result_t<Predicate&>>;
    WaitForAwaiter(Condition& condition, Predicate predicate)
        : ConditionWait(condition, &check), predicate_(std::move(predicate)) {}
    bool await_ready() {
      if (test()) return true;
      require_locked();
      return false;
    }
    Result await_resume() {
      if (suspension.begun()) finish();
      return std::move(*result_);
    }

   private:
    static bool check(ConditionWait* self) { return static_cast<WaitForAwaiter*>(self)->test(); }
    bool test() {
      result_.reset();
      result_.emplace(std::invoke(predicate_));
      return static_cast<bool>(*result_);
    }
    Predicate predicate_;
    std::optional<Result> result_;
  };

  // A condition with its own Lock, or sharing `lock` (which must outlive it).
  Condition() noexcept : lock_(&own_lock_) {}
  explicit Condition(Lock& lock) noexcept : lock_(&lock) {}
  Condition(const Condition&) = delete;
  Condition& operator=(const Condition&) = delete;
  ~Condition();

  [[nodiscard]] Lock::AcquireAwaiter acquire() noexcept { return lock_->acquire(); }
  [[nodiscard]] ScopedAcquire<Condition, Lock::AcquireAwaiter> scoped() noexcept {
    return ScopedAcquire<Condition, Lock::AcquireAwaiter>(*this);
  }
  void release() { lock_->release(); }
  bool locked() const noexcept { return lock_->locked(); }

  // RuntimeError unless the lock is held. Returns true.
  [[nodiscard]] WaitAwaiter wait() noexcept { return WaitAwaiter(*this); }
  // Waits until predicate() is truthy and returns its value. The predicate is tested first
  // without waiting; the lock must be held when it is false.
  template <class Predicate>
  [[nodiscard]] WaitForAwaiter<Predicate> wait_for(Predicate predicate) {
    return WaitForAwaiter<Predicate>(*this, std::move(predicate));
  }
  // Wakes up to n waiters (RuntimeError unless the lock is held).
  void notify(std::size_t n = 1);
  void notify_all();

 private:
  friend class detail::ConditionWait;
  void wake(std::size_t n);

  Lock own_lock_;
  Lock* lock_;
  detail::WaiterList waiters_;  // waiting for a notification
};

// ---------------------------------------------------------------------------------------------
// Barrier(parties): wait() blocks until `parties` tasks are waiting, then releases them all;
// each gets its arrival index (0 .. parties-1). abort() breaks the barrier (BrokenBarrierError
// for current and future waiters); reset() returns it to the empty state, failing the current
// waiters with BrokenBarrierError. A cancelled waiter simply leaves (the barrier stays intact).
// asyncio's reset()/abort() are coroutines that never wait; here they are plain calls.

class Barrier {
 public:
  class WaitAwaiter {
   public:
    explicit WaitAwaiter(Barrier& barrier) noexcept : barrier_(&barrier) {}
    bool await_ready();
    void await_suspend(std::coroutine_handle<> handle);
    std::size_t await_resume();

   private:
    enum class Phase : std::uint8_t { passed, block, wait };
    static void recheck(void* self);
    void wait_again();

    Barrier* barrier_;
    Phase phase_ = Phase::passed;
    bool broken_ = false;
    std::size_t index_ = 0;
    detail::Waiter waiter_;
  };

  // ValueError when parties < 1.
  explicit Barrier(std::size_t parties);
  Barrier(const Barrier&) = delete;
  Barrier& operator=(const Barrier&) = delete;

  [[nodiscard]] WaitAwaiter wait() noexcept { return WaitAwaiter(*this); }
  void reset();
  void abort();
  std::size_t parties() const noexcept { return parties_; }
  // Tasks waiting for the barrier to fill (0 while it drains, resets or is broken).
  std::size_t n_waiting() const noexcept { return state_ == State::filling ? count_ : 0; }
  bool broken() const noexcept { return state_ == State::broken; }

 private:
  enum class State : std::uint8_t { filling, draining, resetting, broken };
  enum class Entry : std::uint8_t { passed, broken, wait };
  Entry enter(std::size_t& index);
  void leave();
  void notify_all();

  std::size_t parties_;
  std::size_t count_ = 0;
  State state_ = State::filling;
  detail::WaiterList waiters_;
  detail::WaiterList woken_;
};

}  // namespace corio
