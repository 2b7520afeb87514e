// The two leaves corio's networking suspends on:
//  * IoAwaiter: one backend Operation embedded in the awaiting frame (no allocation per op).
//    Cancelling asks the backend to stop the op; the coroutine stays suspended until the
//    backend reports the op finished, because a completion backend may still be writing
//    into the buffer. If the op completed anyway (the completion won the race) its data is
//    delivered and the task's cancellation stays pending for the next suspension point.
//  * IoWaiter / IoWaitList: an intrusive list of coroutines waiting for a condition that some
//    callback makes true (drain, wait_closed, serve_forever, feed_data).
// Neither ever resumes a coroutine inline: wake-ups go through the loop's ready queue.
#pragma once

#include <coroutine>
#include <cstdint>

#include "corio/core/operation.hpp"
#include "corio/coro.hpp"
#include "corio/detail/suspension.hpp"

namespace corio {
class EventLoop;
namespace detail {

class IoAwaiter {
 public:
  IoAwaiter() noexcept = default;
  // Moving is only meaningful before the operation starts (to wrap an awaiter in a Coro);
  // every Operation field is filled in when it starts, so there is nothing to carry over.
  IoAwaiter(IoAwaiter&&) noexcept {}
  IoAwaiter& operator=(IoAwaiter&&) = delete;
  ~IoAwaiter() {
    if (op_.in_flight() || continuation_pending_) abandon();
  }

 protected:
  struct Op : core::Operation {
    IoAwaiter* owner = nullptr;
  };
  // Runs inside the backend's dispatch when the op completes; may only record and schedule.
  using AfterComplete = void (*)(IoAwaiter* self);

  // Starts op_ (code, handle, buffer... already filled in) on the running loop.
  // true: it completed inline, op_.result holds the outcome.
  bool start_io();
  // Suspends the coroutine until on_complete (or a cancellation) wakes it.
  void suspend_io(std::coroutine_handle<> handle);
  // Ends the suspension and returns op_.result (bytes, a handle, or -errno). Throws
  // CancelledError only when this leaf's cancellation took effect. A handle closed under a
  // pending op (by another task) reads as -EBADF.
  std::int64_t finish_io();
  // For multi-step awaiters: run `fn(this)` from the ready queue (not inside a dispatch).
  void post_continuation(void (*fn)(void*));
  // A continuation calls this first; false means the awaiter was cancelled meanwhile (the
  // coroutine has been woken to see CancelledError) and it must not start anything.
  bool take_continuation() noexcept;

  Op op_;
  EventLoop* loop_ = nullptr;
  Suspension suspension_;
  AfterComplete after_ = nullptr;  // null: wake the coroutine
  bool suspended_ = false;
  bool cancel_requested_ = false;  // this leaf asked the backend to cancel
  bool cancelled_ = false;         // decided: the coroutine will see CancelledError

 private:
  static void on_complete(core::Operation* op);
  static bool cancel_leaf(void* self);
  void abandon() noexcept;

  bool continuation_pending_ = false;
};

// Builds a Coro from an awaiter (for create_task, gather, wait_for...). The awaiter is moved
// into the coroutine frame before it starts.
template <class Awaiter>
auto awaiter_coro(Awaiter awaiter) -> Coro<decltype(awaiter.await_resume())> {
  co_return co_await awaiter;
}

class IoWaitList;

// One coroutine waiting on an IoWaitList; lives in the waiting frame.
class IoWaiter {
 public:
  IoWaiter() noexcept = default;
  IoWaiter(const IoWaiter&) = delete;
  IoWaiter& operator=(const IoWaiter&) = delete;
  ~IoWaiter() { unlink(); }

  // Links into `list` and suspends; IoWaitList::wake_all() or a cancellation resumes.
  void suspend_on(IoWaitList& list, std::coroutine_handle<> handle);
  // Throws CancelledError when cancelled (or a cancellation is pending on the task).
  void resume() { suspension_.end(cancelled_); }
  bool linked() const noexcept { return list_ != nullptr; }
  // Unlinks and schedules this waiter alone (a timeout, say); false if it was not waiting.
  bool wake() noexcept;

 private:
  friend class IoWaitList;
  static bool cancel_leaf(void* self);
  void unlink() noexcept;

  IoWaitList* list_ = nullptr;
  IoWaiter* prev_ = nullptr;
  IoWaiter* next_ = nullptr;
  bool cancelled_ = false;
  Suspension suspension_;
};

class IoWaitList {
 public:
  IoWaitList() = default;
  IoWaitList(const IoWaitList&) = delete;
  IoWaitList& operator=(const IoWaitList&) = delete;
  ~IoWaitList() { wake_all(); }

  // Schedules every waiter (FIFO) and empties the list.
  void wake_all() noexcept;
  bool empty() const noexcept { return head_ == nullptr; }

 private:
  friend class IoWaiter;
  IoWaiter* head_ = nullptr;
  IoWaiter* tail_ = nullptr;
};

// A plain awaitable over an IoWaitList: suspends until woken.
class IoWaitOn {
 public:
  explicit IoWaitOn(IoWaitList& list) noexcept : list_(&list) {}
  bool await_ready() const noexcept { return false; }
  void await_suspend(std::coroutine_handle<> handle) { waiter_.suspend_on(*list_, handle); }
  void await_resume() { waiter_.resume(); }

 private:
  IoWaitList* list_;
  IoWaiter waiter_;
};

}  // namespace detail
}  // namespace corio
