// The item-type-independent half of the queues: waiter bookkeeping, task_done()/join()
// accounting. It must never hold an item: items live in the typed store only.
#include "corio/queues.hpp"

#include "corio/event_loop.hpp"

namespace corio::detail {

void QueueCore::task_done() {
  if (unfinished_tasks_ == 0) throw ValueError("task_done() called too many times");
  if (--unfinished_tasks_ == 0) finished_.set();
}

void QueueCore::item_added() {
  ++unfinished_tasks_;
  finished_.clear();
  wakeup_next(getters_);
}

void QueueCore::wakeup_next(WaiterList& list) {
  if (Waiter* waiter = list.pop_front()) {
    woken_.push_back(waiter);
    waiter->wake();
  }
}

void QueueCore::wake_all(WaiterList& list) {
  while (Waiter* waiter = list.pop_front()) {
    woken_.push_back(waiter);
    waiter->wake();
  }
}

void QueueCore::items_dropped(std::size_t count) {
  unfinished_tasks_ = count > unfinished_tasks_ ? 0 : unfinished_tasks_ - count;
  if (unfinished_tasks_ == 0) finished_.set();
}

void QueueCore::suspend(Waiter& waiter, WaiterList& list, std::coroutine_handle<> handle,
                        core::ReadyItem recheck) {
  waiter.suspension.begin(handle);
  waiter.owner = this;
  waiter.recheck = recheck;
  waiter.ticket = next_ticket_++;
  waiter.state = Waiter::State::waiting;
  list.push_back(&waiter);
  waiter.suspension.arm({&cancel_waiter, &waiter});
}

bool QueueCore::wait_again(Waiter& waiter, WaiterList& list, bool blocked) {
  woken_.erase(&waiter);
  if (waiter.cancel_pending || !blocked) return false;
  waiter.state = Waiter::State::waiting;
  list.insert_by_ticket(&waiter);
  waiter.suspension.arm({&cancel_waiter, &waiter});
  return true;
}

void QueueCore::finish_wait(Waiter& waiter, WaiterList& list, bool can_proceed) {
  const bool consumed_wakeup = waiter.state == Waiter::State::woken;
  const bool cancelled = waiter.state == Waiter::State::cancelled || waiter.cancel_pending;
  waiter.state = Waiter::State::idle;
  waiter.cancel_pending = false;
  try {
    waiter.suspension.end(cancelled);
  } catch (...) {
    if (consumed_wakeup && can_proceed) wakeup_next(list);
    throw;
  }
}

}  // namespace corio::detail
