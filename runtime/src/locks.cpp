// The synchronization primitives' state machines (see locks.hpp for the rules they keep).
// Every wake-up goes through Waiter::wake (the ready queue); nothing here resumes a task inline
// except a recheck item, which already runs in the task's ready-queue slot.
#include "corio/locks.hpp"

#include "corio/event_loop.hpp"

namespace corio {

using detail::Waiter;

namespace {
void suspend_on(Waiter& waiter, detail::WaiterList& list, const void* owner,
                std::coroutine_handle<> handle) {
  waiter.suspension.begin(handle);
  waiter.owner = owner;
  waiter.state = Waiter::State::waiting;
  list.push_back(&waiter);
  waiter.suspension.arm({&detail::cancel_waiter, &waiter});
}
}  // namespace

// --- Event -----------------------------------------------------------------------------------

void Event::WaitAwaiter::await_suspend(std::coroutine_handle<> handle) {
  suspend_on(waiter_, event_->waiters_, event_, handle);
}

bool Event::WaitAwaiter::await_resume() {
  if (!waiter_.suspension.begun()) return true;
  // A woken waiter never touches the event again: set() already unlinked it.
  if (waiter_.state == Waiter::State::orphaned) waiter_.throw_orphaned("Event");
  if (waiter_.state == Waiter::State::cancelled || waiter_.cancel_pending)
    waiter_.throw_cancelled();
  waiter_.state = Waiter::State::idle;
  waiter_.suspension.end(false);
  return true;
}

void Event::set() {
  if (value_) return;
  value_ = true;
  while (Waiter* waiter = waiters_.pop_front()) waiter->wake();
}

// --- Lock ------------------------------------------------------------------------------------

void Lock::AcquireAwaiter::await_suspend(std::coroutine_handle<> handle) {
  waiter_.suspension.begin(handle);
  waiter_.owner = lock_;
  // await_ready failed: the lock is held, or free but promised to an already woken head.
  lock_->enqueue(waiter_);
  waiter_.suspension.arm({&detail::cancel_waiter, &waiter_});
}

void Lock::release() {
  if (!locked_) throw RuntimeError("Lock is not acquired.");
  locked_ = false;
  wake_first();
}

void Lock::enqueue(Waiter& waiter) {
  waiter.state = Waiter::State::waiting;
  waiters_.push_back(&waiter);
  wake_first();
}

void Lock::wake_first() {
  if (locked_) return;
  Waiter* head = waiters_.front();
  if (head != nullptr && head->state == Waiter::State::waiting) head->wake();
}

void Lock::finish_acquire(Waiter& waiter) {
  switch (waiter.state) {
    case Waiter::State::orphaned:
      waiter.throw_orphaned("Lock");
    case Waiter::State::cancelled:
      // Left the list before any wake-up reached it, so it consumed nothing; re-checking the
      // head (as asyncio does) only matters if the invariant was broken elsewhere.
      wake_first();
      waiter.throw_cancelled();
    default:
      break;
  }
  // Woken: the lock is free and promised to us.
  waiters_.erase(&waiter);
  const bool cancelled = waiter.cancel_pending;
  waiter.state = Waiter::State::idle;
  try {
    waiter.suspension.end(cancelled);
  } catch (...) {
    wake_first();  // cancelled as it was woken: the next waiter gets the lock instead
    throw;
  }
  locked_ = true;
}

// --- Semaphore -------------------------------------------------------------------------------

Semaphore::Semaphore(std::ptrdiff_t value, bool bounded)
    : value_(value), bound_(value), bounded_(bounded) {
  if (value < 0) throw ValueError("Semaphore initial value must be >= 0");
}

void Semaphore::AcquireAwaiter::await_suspend(std::coroutine_handle<> handle) {
  suspend_on(waiter_, semaphore_->waiting_, semaphore_, handle);
}

void Semaphore::release() {
  if (bounded_ && value_ >= bound_) throw ValueError("BoundedSemaphore released too many times");
  ++value_;
  wake_up_next();
}

bool Semaphore::wake_up_next() {
  Waiter* waiter = waiting_.pop_front();
  if (waiter == nullptr) return false;
  --value_;  // the permit goes to this waiter now; nobody can take it before it runs
  woken_.push_back(waiter);
  waiter->wake();
  return true;
}

void Semaphore::wake_while_available() {
  while (value_ > 0 && wake_up_next()) {
  }
}

void Semaphore::finish_acquire(Waiter& waiter) {
  if (waiter.state == Waiter::State::orphaned) waiter.throw_orphaned("Semaphore");
  const bool holds_permit = waiter.state == Waiter::State::woken;
  if (holds_permit) woken_.erase(&waiter);
  const bool cancelled = waiter.state == Waiter::State::cancelled || waiter.cancel_pending;
  waiter.state = Waiter::State::idle;
  try {
    waiter.suspension.end(cancelled);
  } catch (...) {
    if (holds_permit) ++value_;  // give back the permit we will not use...
    wake_while_available();      // ...to whoever waits next
    throw;
  }
  wake_while_available();
}

// --- Condition -------------------------------------------------------------------------------

namespace detail {

void ConditionWait::require_locked() const {
  if (!condition_->locked()) throw RuntimeError("cannot wait on un-acquired lock");
}

void ConditionWait::await_suspend(std::coroutine_handle<> handle) {
  suspension.begin(handle);
  owner = condition_;
  if (check_ != nullptr) recheck = {&granted, this};
  condition_->lock_->release();
  phase_ = Phase::notify;
  state = State::waiting;
  condition_->waiters_.push_back(this);
  suspension.arm({&cancel, this});
}

bool ConditionWait::cancel(void* self) noexcept {
  auto* wait = static_cast<ConditionWait*>(self);
  if (wait->state == State::orphaned) return false;
  wait->cancel_pending = true;
  if (wait->phase_ == Phase::notify) {
    // Like asyncio, a cancelled wait() still takes the lock back before raising.
    wait->condition_->waiters_.erase(wait);
    wait->phase_ = Phase::lock;
    wait->condition_->lock_->enqueue(*wait);
  }
  // In the lock phase the cancellation waits for the lock, as asyncio retries acquire().
  return true;
}

void ConditionWait::granted(void* self) {
  auto* wait = static_cast<ConditionWait*>(self);
  if (wait->state != State::orphaned) {
    Lock& lock = *wait->condition_->lock_;
    lock.claim(*wait);
    wait->phase_ = Phase::holding;
    if (!wait->cancel_pending) {
      bool done = true;
      try {
        done = wait->check_(wait);
      } catch (...) {
        wait->error_ = std::current_exception();
      }
      if (!done) {
        // Not yet: wait for the next notification, as a fresh wait() would.
        wait->notified_ = false;
        lock.release();
        wait->phase_ = Phase::notify;
        wait->state = State::waiting;
        wait->condition_->waiters_.push_back(wait);
        wait->suspension.arm({&cancel, wait});
        return;
      }
    }
  }
  wait->resume_now();
}

void ConditionWait::finish() {
  if (state == State::orphaned) throw_orphaned("Condition");
  if (phase_ == Phase::lock) {
    condition_->lock_->claim(*this);  // plain wait(): woken as the lock's head
    phase_ = Phase::holding;
  }
  const bool cancelled = cancel_pending;
  state = State::idle;
  cancel_pending = false;
  try {
    suspension.end(cancelled);
  } catch (...) {
    // A notification this waiter consumed must not be lost: hand it to the next waiter.
    if (notified_) condition_->wake(1);
    throw;
  }
  if (error_) std::rethrow_exception(std::exchange(error_, nullptr));
}

}  // namespace detail

Condition::~Condition() {
  if (lock_ == &own_lock_) return;  // own_lock_'s list orphans its own nodes
  // Our notified waiters queue on a lock that outlives us: they must not come back to us.
  bool orphaned = false;
  for (Waiter* w = lock_->waiters_.front(); w != nullptr;) {
    Waiter* next = w->next;
    if (w->owner == this) {
      w->orphan();
      orphaned = true;
    }
    w = next;
  }
  if (orphaned) lock_->wake_first();
}

void Condition::notify(std::size_t n) {
  if (!locked()) throw RuntimeError("cannot notify on un-acquired lock");
  wake(n);
}

void Condition::notify_all() {
  notify(waiters_.size());
}

void Condition::wake(std::size_t n) {
  for (; n > 0 && !waiters_.empty(); --n) {
    auto* wait = static_cast<detail::ConditionWait*>(waiters_.pop_front());
    wait->notified_ = true;
    wait->phase_ = detail::ConditionWait::Phase::lock;
    // The lock is held (notify checked it), so this only queues: the waiter runs once the
    // notifier releases the lock.
    lock_->enqueue(*wait);
  }
}

// --- Barrier ---------------------------------------------------------------------------------

Barrier::Barrier(std::size_t parties) : parties_(parties) {
  if (parties < 1) throw ValueError("parties must be > 0");
}

Barrier::Entry Barrier::enter(std::size_t& index) {
  if (state_ == State::broken) return Entry::broken;
  index = count_++;
  if (index + 1 < parties_) return Entry::wait;
  // The last party releases everyone, then leaves itself.
  state_ = State::draining;
  notify_all();
  --count_;
  leave();
  return Entry::passed;
}

void Barrier::leave() {
  if (count_ != 0) return;
  if (state_ == State::resetting || state_ == State::draining) state_ = State::filling;
  notify_all();
}

void Barrier::notify_all() {
  while (Waiter* waiter = waiters_.pop_front()) {
    woken_.push_back(waiter);
    waiter->wake();
  }
}

void Barrier::reset() {
  if (count_ > 0) {
    state_ = State::resetting;
  } else {
    state_ = State::filling;
  }
  notify_all();
}

void Barrier::abort() {
  state_ = State::broken;
  notify_all();
}

bool Barrier::WaitAwaiter::await_ready() {
  Barrier& barrier = *barrier_;
  if (barrier.state_ == State::draining || barrier.state_ == State::resetting) {
    phase_ = Phase::block;  // wait until the previous round has left
    return false;
  }
  switch (barrier.enter(index_)) {
    case Entry::passed:
      return true;
    case Entry::broken:
      throw BrokenBarrierError();
    case Entry::wait:
      break;
  }
  phase_ = Phase::wait;
  return false;
}

void Barrier::WaitAwaiter::await_suspend(std::coroutine_handle<> handle) {
  waiter_.recheck = {&recheck, this};
  suspend_on(waiter_, barrier_->waiters_, barrier_, handle);
}

void Barrier::WaitAwaiter::wait_again() {
  waiter_.state = Waiter::State::waiting;
  barrier_->waiters_.push_back(&waiter_);
  waiter_.suspension.arm({&detail::cancel_waiter, &waiter_});
}

// Runs where the woken task would run: the state it tests is the state the task would see.
void Barrier::WaitAwaiter::recheck(void* self) {
  auto* awaiter = static_cast<WaitAwaiter*>(self);
  if (awaiter->waiter_.state != Waiter::State::orphaned) {
    Barrier& barrier = *awaiter->barrier_;
    barrier.woken_.erase(&awaiter->waiter_);
    if (!awaiter->waiter_.cancel_pending) {
      if (awaiter->phase_ == Phase::block) {
        if (barrier.state_ == State::draining || barrier.state_ == State::resetting) {
          awaiter->wait_again();
          return;
        }
        switch (barrier.enter(awaiter->index_)) {
          case Entry::passed:
            awaiter->phase_ = Phase::passed;
            break;
          case Entry::broken:
            awaiter->broken_ = true;
            break;
          case Entry::wait:
            awaiter->phase_ = Phase::wait;
            awaiter->wait_again();
            return;
        }
      } else {
        if (barrier.state_ == State::filling) {
          awaiter->wait_again();
          return;
        }
        awaiter->broken_ = barrier.state_ == State::broken || barrier.state_ == State::resetting;
      }
    }
  }
  awaiter->waiter_.resume_now();
}

std::size_t Barrier::WaitAwaiter::await_resume() {
  if (!waiter_.suspension.begun()) return index_;
  if (waiter_.state == Waiter::State::orphaned) waiter_.throw_orphaned("Barrier");
  const bool cancelled = waiter_.state == Waiter::State::cancelled || waiter_.cancel_pending;
  waiter_.state = Waiter::State::idle;
  Barrier& barrier = *barrier_;
  try {
    waiter_.suspension.end(cancelled);
  } catch (...) {
    if (phase_ == Phase::wait) {
      --barrier.count_;  // a cancelled party leaves; the barrier is not broken
      barrier.leave();
    }
    throw;
  }
  switch (phase_) {
    case Phase::passed:
      return index_;
    case Phase::block:
      throw BrokenBarrierError();
    case Phase::wait:
      break;
  }
  --barrier.count_;
  barrier.leave();
  if (broken_) throw BrokenBarrierError();
  return index_;
}

}  // namespace corio
