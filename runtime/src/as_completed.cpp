// as_completed()'s shared state: completions queue up in order and are handed to waiting
// awaitables first come, first served; a woken awaitable that is cancelled before it runs
// passes its completion on, as asyncio's Queue.get does.
#include "corio/as_completed.hpp"

namespace corio::detail {

void AsCompletedState::start(EventLoop& loop, const std::vector<FutureBase*>& futures,
                             std::optional<double> timeout) {
  loop_ = &loop;
  links_.resize(futures.size());
  todo_ = futures.size();
  for (std::size_t i = 0; i < futures.size(); ++i) {
    Link& link = links_[i];
    link = {this, futures[i], static_cast<std::ptrdiff_t>(i), true};
    link.future->add_waiter({&on_done, &link});
    ++refs_;
  }
  if (todo_ > 0 && timeout) {
    const core::Nanos delay = *timeout > 0 ? core::from_seconds(*timeout) : 0;
    timer_.fire = &on_timeout;
    timer_.context = this;
    timer_.deadline = core::saturating_add(loop.now_ns(), delay);
    loop.arm_timer(timer_);
  }
}

void AsCompletedState::on_done(void* arg) {
  auto* link = static_cast<Link*>(arg);
  AsCompletedState* self = link->state;
  link->registered = false;
  if (!self->detached_ && !self->timed_out_) {
    --self->todo_;
    self->ready_.push_back(link->index);
    if (self->todo_ == 0 && self->timer_.armed()) self->loop_->disarm_timer(self->timer_);
    self->deliver();
  }
  self->release();
}

void AsCompletedState::on_timeout(core::TimerNode* node) noexcept {
  auto* self = static_cast<AsCompletedState*>(node->context);
  self->timed_out_ = true;
  // Whatever finishes from now on is not reported; asyncio drops its callbacks too.
  for (Link& link : self->links_) {
    if (link.registered && link.future->remove_waiter({&on_done, &link})) {
      link.registered = false;
      --self->refs_;  // users still hold theirs: the timer is disarmed when the last goes
    }
  }
  for (; self->todo_ > 0; --self->todo_) self->ready_.push_back(kTimedOut);
  self->deliver(/*from_timer=*/true);
}

void AsCompletedState::deliver(bool from_timer) noexcept {
  while (ready_.size() > reserved_ && head_ != nullptr) {
    Waiter* waiter = head_;
    forget(waiter);
    waiter->woken = true;
    ++reserved_;
    if (from_timer) {
      waiter->suspension.wake_from_timer();
    } else {
      waiter->suspension.wake();
    }
  }
}

bool AsCompletedState::try_take(std::ptrdiff_t& entry) {
  if (ready_.size() <= reserved_) return false;
  // The first entries belong to awaitables already woken (they waited longer).
  auto it = ready_.begin() + static_cast<std::ptrdiff_t>(reserved_);
  entry = *it;
  ready_.erase(it);
  return true;
}

std::ptrdiff_t AsCompletedState::take_reserved() {
  const std::ptrdiff_t entry = ready_.front();
  ready_.pop_front();
  --reserved_;
  return entry;
}

void AsCompletedState::enqueue(Waiter* waiter) noexcept {
  waiter->prev = tail_;
  waiter->next = nullptr;
  (tail_ ? tail_->next : head_) = waiter;
  tail_ = waiter;
  waiter->queued = true;
}

void AsCompletedState::forget(Waiter* waiter) noexcept {
  if (!waiter->queued) return;
  (waiter->prev ? waiter->prev->next : head_) = waiter->next;
  (waiter->next ? waiter->next->prev : tail_) = waiter->prev;
  waiter->prev = waiter->next = nullptr;
  waiter->queued = false;
}

void AsCompletedState::give_back() noexcept {
  --reserved_;
  deliver();
}

bool AsCompletedState::cancel_leaf(void* arg) {
  auto* waiter = static_cast<Waiter*>(arg);
  if (!waiter->queued) return false;  // already woken: the cancel lands when it resumes
  waiter->owner->forget(waiter);
  waiter->cancelled = true;
  waiter->suspension.wake();
  return true;
}

void AsCompletedState::detach() noexcept {
  detached_ = true;
  if (timer_.armed()) loop_->disarm_timer(timer_);
  for (Link& link : links_) {
    if (link.registered && link.future->remove_waiter({&on_done, &link})) {
      link.registered = false;
      --refs_;  // the caller still holds a user reference, so this never reaches zero
    }
  }
}

}  // namespace corio::detail
