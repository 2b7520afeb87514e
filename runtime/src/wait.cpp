// wait()'s shared state: one link per watched future, an embedded timeout timer, and the
// single waiter to wake when the return_when condition holds.
#include "corio/wait.hpp"

namespace corio::detail {

WaitState::WaitState(EventLoop& loop, const std::vector<FutureBase*>& futures,
                     ReturnWhen return_when, std::optional<double> timeout)
    : loop_(&loop), links_(futures.size()), counter_(futures.size()), return_when_(return_when) {
  for (std::size_t i = 0; i < futures.size(); ++i) {
    Link& link = links_[i];
    link.state = this;
    link.future = futures[i];
    link.future->add_ref();
    link.future->add_waiter({&on_done, &link});
    link.registered = true;
    ++refs_;
  }
  if (timeout) {
    const core::Nanos delay = *timeout > 0 ? core::from_seconds(*timeout) : 0;
    timer_.fire = &on_timeout;
    timer_.context = this;
    timer_.deadline = core::saturating_add(loop.now_ns(), delay);
    loop.arm_timer(timer_);
  }
}

WaitState::~WaitState() {
  for (Link& link : links_) link.future->release();
}

void WaitState::on_done(void* arg) {
  auto* link = static_cast<Link*>(arg);
  WaitState* self = link->state;
  link->registered = false;
  if (!self->closed_) {
    --self->counter_;
    FutureBase* f = link->future;
    if (self->counter_ == 0 || self->return_when_ == ReturnWhen::first_completed ||
        (self->return_when_ == ReturnWhen::first_exception && !f->cancelled() && f->exception())) {
      self->fire();
    }
  }
  self->release();
}

void WaitState::on_timeout(core::TimerNode* node) noexcept {
  auto* self = static_cast<WaitState*>(node->context);
  self->fired_ = true;
  WakeLeaf::notify(&self->waiter_, /*from_timer=*/true);
}

void WaitState::fire() noexcept {
  fired_ = true;
  if (timer_.armed()) loop_->disarm_timer(timer_);
  WakeLeaf::notify(&waiter_);
}

void WaitState::close() noexcept {
  closed_ = true;
  if (timer_.armed()) loop_->disarm_timer(timer_);
  for (Link& link : links_) {
    // A link whose future already finished is queued to run: it drops its reference then.
    if (link.registered && link.future->remove_waiter({&on_done, &link})) {
      link.registered = false;
      --refs_;
    }
  }
  release();
}

}  // namespace corio::detail
