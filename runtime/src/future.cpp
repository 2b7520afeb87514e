// Future state transitions and callback scheduling (asyncio.Future's rules).
#include "corio/future.hpp"

#include <algorithm>
#include <memory>

namespace corio::detail {

FutureBase::FutureBase(EventLoop* loop) : loop_(loop) {
  next_live_ = loop->live_futures_;
  if (next_live_) next_live_->prev_live_ = this;
  loop->live_futures_ = this;
}

FutureBase::~FutureBase() {
  for (const core::ReadyItem& entry : waiters_) {
    if (entry.run == &user_callback_marker) delete static_cast<DoneCallback*>(entry.arg);
  }
  report_unretrieved_exception({});
  if (loop_ != nullptr) {
    (prev_live_ ? prev_live_->next_live_ : loop_->live_futures_) = next_live_;
    if (next_live_) next_live_->prev_live_ = prev_live_;
  }
}

void FutureBase::report_unretrieved(const std::string& task_name) noexcept {
  exception_retrieved_ = true;
  ExceptionContext context{
      is_task_ ? "Task exception was never retrieved" : "Future exception was never retrieved",
      exception_, task_name};
  if (loop_ != nullptr) {
    loop_->call_exception_handler(context);
  } else {
    EventLoop::default_exception_handler(context);
  }
}

EventLoop& FutureBase::loop() const {
  if (loop_ == nullptr) throw RuntimeError("the future's event loop is gone");
  return *loop_;
}

void FutureBase::ensure_pending(const char* operation) const {
  if (state_ != State::pending) throw InvalidStateError(std::string(operation) + ": invalid state");
}

bool FutureBase::cancel(std::string message) {
  if (state_ != State::pending) return false;
  cancel_message_ = std::move(message);
  finish(State::cancelled);
  return true;
}

void FutureBase::set_exception(std::exception_ptr exception) {
  if (is_task_) throw RuntimeError("Task does not support set_exception operation");
  ensure_pending("set_exception");
  if (!exception) throw TypeError("set_exception() needs an exception");
  exception_ = std::move(exception);
  exception_retrieved_ = false;
  finish(State::finished);
}

std::exception_ptr FutureBase::exception() {
  if (state_ == State::cancelled) throw make_cancelled_error();
  if (state_ == State::pending) throw InvalidStateError("Exception is not set.");
  exception_retrieved_ = true;
  return exception_;
}

void FutureBase::check_result() {
  if (state_ == State::finished) {
    if (exception_) {
      exception_retrieved_ = true;
      std::rethrow_exception(exception_);
    }
    return;
  }
  if (state_ == State::cancelled) throw make_cancelled_error();
  throw InvalidStateError("Result is not set.");
}

void FutureBase::finish(State state) {
  state_ = state;
  if (loop_ == nullptr) return;
  // Only scheduling happens here (no callback runs), so nothing can add to the list while
  // it is walked; registration order is kept, as asyncio does.
  auto entries = std::move(waiters_);
  waiters_.clear();
  for (const core::ReadyItem& entry : entries) {
    if (entry.run != &user_callback_marker) {
      loop_->post(entry);
      continue;
    }
    std::unique_ptr<DoneCallback> done(static_cast<DoneCallback*>(entry.arg));
    add_ref();
    loop_->call_soon([self = this, done = std::move(done)]() mutable {
      struct Release {
        FutureBase* f;
        ~Release() { f->release(); }
      } release{self};
      done->callback(*self);
    });
  }
}

std::uint64_t FutureBase::add_done_callback(absl::AnyInvocable<void(FutureBase&)> callback) {
  const std::uint64_t id = next_callback_id_++;
  if (done()) {
    add_ref();
    loop().call_soon([self = this, callback = std::move(callback)]() mutable {
      struct Release {
        FutureBase* f;
        ~Release() { f->release(); }
      } release{self};
      callback(*self);
    });
    return id;
  }
  waiters_.push_back({&user_callback_marker, new DoneCallback{std::move(callback), id}});
  return id;
}

std::size_t FutureBase::remove_done_callback(std::uint64_t id) {
  std::size_t removed = 0;
  for (auto it = waiters_.begin(); it != waiters_.end();) {
    auto* entry = it->run == &user_callback_marker ? static_cast<DoneCallback*>(it->arg) : nullptr;
    if (entry != nullptr && entry->id == id) {
      delete entry;
      it = waiters_.erase(it);
      ++removed;
    } else {
      ++it;
    }
  }
  return removed;
}

void FutureBase::add_waiter(core::ReadyItem item) {
  if (done()) {
    loop().post(item);
    return;
  }
  waiters_.push_back(item);
}

bool FutureBase::remove_waiter(core::ReadyItem item) noexcept {
  for (auto it = waiters_.begin(); it != waiters_.end(); ++it) {
    if (it->run == item.run && it->arg == item.arg) {
      waiters_.erase(it);
      return true;
    }
  }
  return false;
}

void FutureAccess::finish_ok(FutureBase* base) {
  base->finish(FutureBase::State::finished);
}

}  // namespace corio::detail
