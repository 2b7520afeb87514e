// ConcurrentFuture's shared state: waiting with timeouts, cancellation from any thread, and
// done-callbacks. The task pointer is only read on the loop's thread, from callbacks posted
// through the loop's LoopLink; everything else is guarded by the state's mutex.
#include "corio/threadsafe.hpp"

#include <cerrno>
#include <chrono>

namespace corio::detail {

bool ConcurrentStateBase::done() const {
  std::lock_guard lock(mutex_);
  return status_ != Status::pending;
}

bool ConcurrentStateBase::cancelled() const {
  std::lock_guard lock(mutex_);
  return status_ == Status::cancelled;
}

bool ConcurrentStateBase::cancel() {
  std::shared_ptr<LoopLink> link;
  std::vector<absl::AnyInvocable<void()>> callbacks;
  {
    std::lock_guard lock(mutex_);
    if (status_ == Status::cancelled) return true;
    if (status_ == Status::finished) return false;
    status_ = Status::cancelled;
    callbacks.swap(callbacks_);
    done_cv_.notify_all();
    link = link_;
    if (!link) cancel_unposted_ = true;  // attach() will cancel the task when it exists
  }
  run_callbacks(callbacks);
  if (link) {
    link->post([self = shared_from_this()] {
      if (self->task_ != nullptr) self->task_->cancel();
    });
  }
  return true;
}

bool ConcurrentStateBase::wait(std::optional<double> timeout) const {
  std::unique_lock lock(mutex_);
  const auto finished = [this] { return status_ != Status::pending; };
  if (!timeout) {
    done_cv_.wait(lock, finished);
    return true;
  }
  const auto limit = std::chrono::duration<double>(*timeout > 0 ? *timeout : 0);
  return done_cv_.wait_until(lock, std::chrono::steady_clock::now() + limit, finished);
}

void ConcurrentStateBase::wait_for_value(std::optional<double> timeout) const {
  if (!wait(timeout)) throw TimeoutError(ETIMEDOUT, "the future did not complete in time");
  mutex_.lock();
  if (status_ == Status::cancelled) {
    mutex_.unlock();
    throw CancelledError();
  }
  if (error_) {
    std::exception_ptr error = error_;
    mutex_.unlock();
    std::rethrow_exception(error);
  }
}

std::exception_ptr ConcurrentStateBase::exception(std::optional<double> timeout) const {
  if (!wait(timeout)) throw TimeoutError(ETIMEDOUT, "the future did not complete in time");
  std::lock_guard lock(mutex_);
  if (status_ == Status::cancelled) throw CancelledError();
  return error_;
}

void ConcurrentStateBase::add_done_callback(absl::AnyInvocable<void()> callback) {
  {
    std::lock_guard lock(mutex_);
    if (status_ == Status::pending) {
      callbacks_.push_back(std::move(callback));
      return;
    }
  }
  std::vector<absl::AnyInvocable<void()>> now;
  now.push_back(std::move(callback));
  run_callbacks(now);
}

void ConcurrentStateBase::run_callbacks(std::vector<absl::AnyInvocable<void()>>& callbacks) {
  for (auto& callback : callbacks) {
    try {
      callback();
    } catch (...) {
      EventLoop::default_exception_handler(
          {"exception calling a ConcurrentFuture's done callback", std::current_exception(), {}});
    }
  }
  callbacks.clear();
}

bool ConcurrentStateBase::attach(std::shared_ptr<LoopLink> link, TaskBase* task) {
  task_ = task;
  std::lock_guard lock(mutex_);
  link_ = std::move(link);
  return std::exchange(cancel_unposted_, false);
}

void ConcurrentStateBase::set_exception(std::exception_ptr error) {
  complete(Status::finished, [&] { error_ = std::move(error); });
}

void ConcurrentStateBase::set_cancelled() {
  complete(Status::cancelled, [] {});
}

ScheduleGuard::~ScheduleGuard() {
  if (state_) {
    state_->set_exception(std::make_exception_ptr(
        RuntimeError("the event loop closed before the coroutine could be scheduled")));
  }
}

}  // namespace corio::detail
