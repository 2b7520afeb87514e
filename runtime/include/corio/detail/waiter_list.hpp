// The intrusive wait list shared by the queues and the synchronization primitives.
// A Waiter lives in the awaiting coroutine's frame (inside the awaiter object), so waiting on
// a Lock, an Event or a Queue allocates nothing. A primitive only links and unlinks nodes and
// wakes them through detail::Suspension; it must never resume a coroutine inline, and a node
// must never stay linked once its frame is gone (the destructor unlinks it).
#pragma once

#include <cstddef>
#include <cstdint>

#include "corio/core/errors.hpp"
#include "corio/core/ready_queue.hpp"
#include "corio/detail/suspension.hpp"

namespace corio::detail {

class WaiterList;

struct Waiter {
  enum class State : std::uint8_t {
    idle,       // not suspended (never was, or already resumed)
    waiting,    // linked in a primitive's wait list
    woken,      // a wake-up was delivered to it; it has not run yet
    cancelled,  // unlinked by a cancellation before any wake-up reached it
    orphaned,   // the primitive was destroyed under it
  };

  Waiter() = default;
  Waiter(const Waiter&) = delete;
  Waiter& operator=(const Waiter&) = delete;
  ~Waiter();

  // Marks the node woken and schedules it: its `recheck` item when it has one (the primitive
  // re-examines its condition when the task would have run, as asyncio's waiter loops do),
  // otherwise the suspended coroutine itself.
  void wake();
  // From a recheck item: runs the suspended task now, in the ready-queue slot the recheck got.
  void resume_now();
  // The primitive is going away: unlink, and wake the task if no wake-up is on its way.
  void orphan();
  // Delivers a cancellation (state cancelled, or cancel_pending) as CancelledError.
  [[noreturn]] void throw_cancelled();
  // What an awaiter throws when its primitive was destroyed while it waited.
  [[noreturn]] void throw_orphaned(const char* primitive);

  bool linked() const noexcept { return list != nullptr; }

  Waiter* prev = nullptr;
  Waiter* next = nullptr;
  WaiterList* list = nullptr;
  const void* owner =
      nullptr;                // which primitive queued it (a Condition's nodes share a Lock's list)
  std::uint64_t ticket = 0;   // arrival order, kept when a woken waiter must wait again
  core::ReadyItem recheck{};  // optional: run instead of the task when woken
  State state = State::idle;
  bool cancel_pending = false;  // a cancellation arrived after the wake-up; delivered on resume
  Suspension suspension;
};

class WaiterList {
 public:
  WaiterList() = default;
  WaiterList(const WaiterList&) = delete;
  WaiterList& operator=(const WaiterList&) = delete;
  // Orphans whatever is still linked.
  ~WaiterList() { orphan_all(); }

  bool empty() const noexcept { return head_ == nullptr; }
  std::size_t size() const noexcept { return size_; }
  Waiter* front() const noexcept { return head_; }

  void push_back(Waiter* w) noexcept {
    w->list = this;
    w->next = nullptr;
    w->prev = tail_;
    (tail_ ? tail_->next : head_) = w;
    tail_ = w;
    ++size_;
  }
  // Puts back a waiter that was woken but found it must wait again, at the place its ticket
  // gives it, so a task that lost a race to a non-waiting caller keeps its turn (FIFO).
  void insert_by_ticket(Waiter* w) noexcept;
  void erase(Waiter* w) noexcept {
    (w->prev ? w->prev->next : head_) = w->next;
    (w->next ? w->next->prev : tail_) = w->prev;
    w->prev = w->next = nullptr;
    w->list = nullptr;
    --size_;
  }
  Waiter* pop_front() noexcept {
    Waiter* w = head_;
    if (w) erase(w);
    return w;
  }
  void orphan_all() noexcept {
    while (head_) head_->orphan();
  }

 private:
  Waiter* head_ = nullptr;
  Waiter* tail_ = nullptr;
  std::size_t size_ = 0;
};

inline Waiter::~Waiter() {
  if (list) list->erase(this);
}

// The CancelHook of a plain waiter: a waiting node leaves its list and its task is woken to
// see CancelledError; a node already woken keeps its wake-up and records the cancellation,
// which its awaiter delivers on resume (after handing the wake-up on, if it consumed one).
bool cancel_waiter(void* waiter) noexcept;

}  // namespace corio::detail
