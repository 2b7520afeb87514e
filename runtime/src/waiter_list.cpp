// The wait-list node's transitions (see detail/waiter_list.hpp). Nothing here resumes a
// coroutine except resume_now(), which only a recheck item (already in a ready-queue slot) calls.
#include "corio/detail/waiter_list.hpp"

#include <string>

#include "corio/event_loop.hpp"

namespace corio::detail {

void Waiter::wake() {
  state = State::woken;
  if (recheck.run != nullptr) {
    suspension.loop()->post(recheck);
  } else {
    suspension.wake();
  }
}

void Waiter::resume_now() {
  const core::ReadyItem item = suspension.wake_item();
  item.run(item.arg);
}

void Waiter::orphan() {
  const bool was_waiting = state == State::waiting;
  if (list != nullptr) list->erase(this);
  state = State::orphaned;
  // A woken node already has its task (or its recheck, which looks at `state` first) queued.
  if (was_waiting) suspension.wake();
}

void Waiter::throw_cancelled() {
  state = State::idle;
  cancel_pending = false;
  suspension.end(true);
  throw CancelledError();  // not reached: end(true) always throws
}

void Waiter::throw_orphaned(const char* primitive) {
  state = State::idle;
  suspension.end(cancel_pending);
  throw RuntimeError(std::string(primitive) + " was destroyed while a task was waiting on it");
}

void WaiterList::insert_by_ticket(Waiter* w) noexcept {
  // Re-inserted waiters are old, so their place is near the head: search from there.
  Waiter* before = head_;
  while (before != nullptr && before->ticket < w->ticket) before = before->next;
  w->list = this;
  w->next = before;
  w->prev = before ? before->prev : tail_;
  (w->prev ? w->prev->next : head_) = w;
  (before ? before->prev : tail_) = w;
  ++size_;
}

bool cancel_waiter(void* waiter) noexcept {
  auto* w = static_cast<Waiter*>(waiter);
  switch (w->state) {
    case Waiter::State::waiting:
      w->list->erase(w);
      w->state = Waiter::State::cancelled;
      w->suspension.wake();
      return true;
    case Waiter::State::woken:
      // Its wake-up is already queued; the awaiter sees the flag when it runs.
      w->cancel_pending = true;
      return true;
    default:
      return false;
  }
}

}  // namespace corio::detail
