// sleep(): a timer node in the awaiting frame; cancelling disarms it and wakes the task.
#include "corio/sleep.hpp"

namespace corio {

void SleepAwaiter::await_suspend(std::coroutine_handle<> handle) {
  suspension_.begin(handle);
  EventLoop* loop = suspension_.loop();
  if (delay_ == 0) {
    // A bare yield, as asyncio's sleep(0): nothing to cancel, a pending cancel lands on resume.
    suspension_.wake();
    suspension_.arm({});
    return;
  }
  timer_.context = this;
  timer_.fire = &fire;
  timer_.deadline = core::saturating_add(loop->now_ns(), delay_);
  loop->arm_timer(timer_);
  suspension_.arm({&cancel_leaf, this});
}

void SleepAwaiter::fire(core::TimerNode* node) noexcept {
  static_cast<SleepAwaiter*>(node->context)->suspension_.wake_from_timer();
}

bool SleepAwaiter::cancel_leaf(void* self) noexcept {
  auto* sleeper = static_cast<SleepAwaiter*>(self);
  if (!sleeper->timer_.armed()) return false;
  sleeper->suspension_.loop()->disarm_timer(sleeper->timer_);
  sleeper->cancelled_ = true;
  sleeper->suspension_.wake();
  return true;
}

}  // namespace corio
