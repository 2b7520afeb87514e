// The one place that knows how a coroutine suspended at a leaf awaitable (a sleep, a future,
// an I/O operation) is woken and how a cancellation reaches it. Every leaf awaitable uses it,
// so Task::cancel works the same at every kind of suspension point.
// It must never resume a coroutine inline: wake-ups go through the ready queue.
#pragma once

#include <coroutine>
#include <string>

#include "corio/core/ready_queue.hpp"

namespace corio {
class EventLoop;
namespace detail {

class TaskBase;

// How a task asks the leaf it is suspended on to stop. Returns true when the leaf accepted:
// it will wake the task, which then sees CancelledError. false: the leaf already completed.
// A repeatable hook stays after it was used: its leaf (another task) may catch the
// cancellation and keep running, so each later cancel() is passed on to it again.
struct CancelHook {
  bool (*cancel)(void* leaf) = nullptr;
  void* leaf = nullptr;
  bool repeatable = false;
};

class Suspension {
 public:
  // 1. In await_suspend: remember whom to wake (the current task, or the bare coroutine).
  void begin(std::coroutine_handle<> handle);
  // What to post to wake the suspended coroutine (valid after begin()).
  core::ReadyItem wake_item() const noexcept;
  // 2. Once the leaf is registered: let Task::cancel reach it. A cancellation requested while
  // the task was running is delivered now, through the hook, as asyncio's Task.__step does.
  void arm(CancelHook hook);
  // Schedules the suspended coroutine.
  void wake();
  // The same from a timer's expiry: the task steps one ready-queue pass later, as in asyncio,
  // where the timer's handle runs first (with the callbacks due at the same time) and only
  // then wakes the task.
  void wake_from_timer();
  // 3. In await_resume: detach from the task; throw CancelledError if the leaf was cancelled
  // or a cancellation is pending on the task. deliver_pending = false lets an I/O leaf return
  // data it already received and leave the cancellation for the next suspension point.
  void end(bool leaf_cancelled, bool deliver_pending = true);
  // 3, when the leaf itself raises CancelledError (an awaited future that was cancelled):
  // detach; that error is the cancellation, so a pending one is consumed, not raised again.
  void end_by_leaf_cancellation() noexcept;

  EventLoop* loop() const noexcept { return loop_; }
  TaskBase* task() const noexcept { return task_; }
  bool begun() const noexcept { return static_cast<bool>(handle_); }
  // The message of the cancellation being delivered (empty outside a task).
  std::string pending_cancel_message() const;

 private:
  static void step_soon(void* task);

  EventLoop* loop_ = nullptr;
  TaskBase* task_ = nullptr;
  std::coroutine_handle<> handle_;
};

}  // namespace detail
}  // namespace corio
