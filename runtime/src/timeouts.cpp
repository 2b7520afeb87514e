// Timeout's state machine (the rules of CPython's timeouts.py) and its embedded timer node.
#include "corio/timeouts.hpp"

#include <cerrno>
#include <cmath>
#include <string>

namespace corio {

TimeoutError make_timeout_error() {
  return TimeoutError(ETIMEDOUT, "timeout");
}

namespace {

// The first nanosecond tick whose loop.time() is not before `when`. Round deadlines such as
// loop.time() + 1.0 land exactly on their tick (from_seconds' ceil would add 1 ns to some),
// and the timer still never fires early. Past deadlines clamp to 0.
core::Nanos to_deadline(double when) noexcept {
  if (std::isnan(when) || when <= 0) return 0;
  if (when >= 9.2e9) return core::kNoDeadline;
  auto ns = static_cast<core::Nanos>(std::llround(when * 1e9));
  while (core::to_seconds(ns) < when) ++ns;
  return ns;
}

bool is_cancelled_error(const std::exception_ptr& error) {
  if (!error) return false;
  try {
    std::rethrow_exception(error);
  } catch (const CancelledError&) {
    return true;
  } catch (...) {
    return false;
  }
}

}  // namespace

namespace detail {
std::optional<double> deadline_after(std::optional<double> delay) {
  if (!delay) return std::nullopt;
  return get_running_loop().time() + *delay;
}
}  // namespace detail

Timeout timeout(std::optional<double> delay) {
  return Timeout(detail::deadline_after(delay));
}

Timeout::~Timeout() {
  disarm();
}

const char* Timeout::state_name(State state) noexcept {
  switch (state) {
    case State::created:
      return "created";
    case State::entered:
      return "active";
    case State::expiring:
      return "expiring";
    case State::expired:
      return "expired";
    case State::exited:
      return "finished";
  }
  return "?";
}

void Timeout::arm(double when) {
  timer_.fire = &on_timeout;
  timer_.context = this;
  timer_.deadline = to_deadline(when);
  if (timer_.deadline <= loop_->now_ns()) {
    on_timeout(&timer_);  // already due: queue the expiry now (asyncio's call_soon branch)
  } else {
    loop_->arm_timer(timer_);
  }
}

void Timeout::disarm() noexcept {
  if (timer_.armed()) loop_->disarm_timer(timer_);
  // Due but not run yet: asyncio cancels its handle here too.
  if (expiry_) std::exchange(expiry_, Handle()).cancel();
}

void Timeout::reschedule(std::optional<double> when) {
  if (state_ != State::entered) {
    if (state_ == State::created) throw RuntimeError("Timeout has not been entered");
    throw RuntimeError(std::string("Cannot change state of ") + state_name(state_) + " Timeout");
  }
  when_ = when;
  disarm();
  if (when) arm(*when);
}

void Timeout::enter() {
  if (state_ != State::created) throw RuntimeError("Timeout has already been entered");
  EventLoop& loop = get_running_loop();
  detail::TaskBase* task = loop.current_task();
  if (task == nullptr) throw RuntimeError("Timeout should be used inside a task");
  loop_ = &loop;
  task_ = AnyTask(task);
  cancelling_ = task->cancelling();
  state_ = State::entered;
  reschedule(when_);
}

void Timeout::on_timeout(core::TimerNode* node) noexcept {
  auto* self = static_cast<Timeout*>(node->context);
  // The expiry runs as a ready callback, behind whatever became ready before it (a callback
  // due at the same time that cancels the task, say), as asyncio's timer handle does. The
  // loop owns the handle, so a scope left before it runs (disarm cancels it) leaks nothing.
  try {
    self->expiry_ = self->loop_->call_soon([self] {
      self->expiry_ = Handle();
      self->expire();
    });
  } catch (...) {
    self->expire();  // out of memory: expire at once rather than never
  }
}

void Timeout::expire() {
  // Never inside the task: cancel() only records the request and pokes the task's current
  // suspension point.
  task_.cancel();
  state_ = State::expiring;
}

void Timeout::exit(std::exception_ptr error) {
  if (state_ != State::entered && state_ != State::expiring) {
    throw RuntimeError(state_ == State::created ? "Timeout has not been entered"
                                                : "Timeout has already been exited");
  }
  disarm();
  AnyTask task = std::move(task_);
  if (state_ == State::expiring) {
    state_ = State::expired;
    // Ours is the only cancellation left on the task: the CancelledError is this scope's
    // doing and becomes TimeoutError. Anything more pending is someone else's cancel.
    if (task.uncancel() <= cancelling_ && is_cancelled_error(error)) {
      try {
        std::rethrow_exception(error);
      } catch (...) {
        std::throw_with_nested(make_timeout_error());
      }
    }
  } else {
    state_ = State::exited;
  }
  if (error) std::rethrow_exception(error);
}

}  // namespace corio
