// IoAwaiter and IoWaitList: the suspension points of corio's networking (see net_io.hpp).
// Nothing here may resume a coroutine inline or let a coroutine go while its op is in flight.
#include "corio/detail/net_io.hpp"

#include <cerrno>

#include "corio/event_loop.hpp"

namespace corio::detail {

namespace {
void ignore_completion(core::Operation*) {}
}  // namespace

bool IoAwaiter::start_io() {
  if (loop_ == nullptr) loop_ = &get_running_loop();
  op_.owner = this;
  op_.on_complete = &on_complete;
  op_.state = core::OpState::idle;
  op_.result = 0;
  return loop_->backend().start(op_);
}

void IoAwaiter::suspend_io(std::coroutine_handle<> handle) {
  suspension_.begin(handle);
  suspended_ = true;
  // May call cancel_leaf at once when a cancellation is already pending on the task.
  suspension_.arm({&cancel_leaf, this});
}

std::int64_t IoAwaiter::finish_io() {
  if (suspended_) {
    suspended_ = false;
    const bool leaf_cancelled =
        cancelled_ || (cancel_requested_ && op_.state == core::OpState::cancelled);
    // deliver_pending = false: data that did arrive is returned, and a cancellation that
    // came too late for this op waits for the next suspension point.
    suspension_.end(leaf_cancelled, /*deliver_pending=*/false);
  }
  if (op_.state == core::OpState::cancelled || op_.result == -ECANCELED) return -EBADF;
  return op_.result;
}

void IoAwaiter::on_complete(core::Operation* op) {
  IoAwaiter* self = static_cast<Op*>(op)->owner;
  if (self->after_ != nullptr) {
    self->after_(self);
  } else {
    self->suspension_.wake();
  }
}

bool IoAwaiter::cancel_leaf(void* arg) {
  auto* self = static_cast<IoAwaiter*>(arg);
  if (self->continuation_pending_) {
    // Between two steps of a multi-step op: nothing is in flight, so stop here.
    self->cancelled_ = true;
    return true;
  }
  if (!self->op_.in_flight()) return false;  // completed; its wake-up is already queued
  self->cancel_requested_ = true;
  self->loop_->backend().cancel(self->op_);
  // A readiness backend cancels synchronously (on_complete already ran and woke us). A
  // completion backend answers later: report "not accepted" so the task keeps the
  // cancellation pending, and let the op's real outcome decide (finish_io).
  return self->op_.state == core::OpState::cancelled;
}

void IoAwaiter::post_continuation(void (*fn)(void*)) {
  continuation_pending_ = true;
  loop_->post({fn, this});
}

bool IoAwaiter::take_continuation() noexcept {
  continuation_pending_ = false;
  if (cancelled_) {
    suspension_.wake();
    return false;
  }
  return true;
}

void IoAwaiter::abandon() noexcept {
  // The frame is being destroyed with the op in flight (a task destroyed at loop teardown):
  // the completion must not touch this object any more.
  op_.on_complete = &ignore_completion;
  if (op_.in_flight() && loop_ != nullptr) loop_->backend().cancel(op_);
}

void IoWaiter::suspend_on(IoWaitList& list, std::coroutine_handle<> handle) {
  suspension_.begin(handle);
  list_ = &list;
  prev_ = list.tail_;
  next_ = nullptr;
  (list.tail_ ? list.tail_->next_ : list.head_) = this;
  list.tail_ = this;
  suspension_.arm({&cancel_leaf, this});
}

void IoWaiter::unlink() noexcept {
  if (list_ == nullptr) return;
  (prev_ ? prev_->next_ : list_->head_) = next_;
  (next_ ? next_->prev_ : list_->tail_) = prev_;
  prev_ = next_ = nullptr;
  list_ = nullptr;
}

bool IoWaiter::cancel_leaf(void* arg) {
  auto* self = static_cast<IoWaiter*>(arg);
  if (self->list_ == nullptr) return false;  // already woken
  self->unlink();
  self->cancelled_ = true;
  self->suspension_.wake();
  return true;
}

bool IoWaiter::wake() noexcept {
  if (list_ == nullptr) return false;
  unlink();
  suspension_.wake();
  return true;
}

void IoWaitList::wake_all() noexcept {
  while (IoWaiter* w = head_) {
    w->unlink();
    w->suspension_.wake();
  }
}

}  // namespace corio::detail
