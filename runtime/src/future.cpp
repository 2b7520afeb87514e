// Future state transitions and callback scheduling (asyncio.Future's rules).
#include "corio/future.hpp"

#include <algorithm>

namespace corio::detail {

FutureBase::FutureBase(EventLoop* loop) : loop_(loop) {
  next_live_ = loop->live_futures_;
  if (next_live_) next_live_->prev_live_ = this;
  loop->live_futures_ = this;
}

FutureBase::~FutureBase() {
  report_unretrieved_exception({});
  if (loop_ != nullptr) {
    (prev_live_ ? prev_live_->next_live_ : loop_->live_futures_) = next_live_;
    if (next_live_) next_live_->prev_live_ = prev_live_;
  }
}

void FutureBase::report_unretrieved(const std::string& task_name) noexcept {
  exception_retrieved_ = true;
  ExceptionContext context{is_task_ ? "Task exception was never retrieved"
                                    : "Future exception was never retrieved",
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
  // Callbacks are only scheduled here, never run, so nothing can add to these lists while
  // they are walked.
  for (const core::ReadyItem& waiter : waiters_) loop_->post(waiter);
  waiters_.clear();
  if (callbacks_.empty()) return;
  std::vector<DoneCallback> callbacks = std::move(callbacks_);
  callbacks_.clear();
  for (DoneCallback& entry : callbacks) {
    add_ref();
    loop_->call_soon([self = this, callback = std::move(entry.callback)]() mutable {
      struct Release {
        FutureBase* f;
        ~Release() { f->release(); }
      } release{self};
      callback(*self);
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
  callbacks_.push_back(DoneCallback{std::move(callback), id});
  return id;
}

std::size_t FutureBase::remove_done_callback(std::uint64_t id) {
  const auto before = callbacks_.size();
  callbacks_.erase(std::remove_if(callbacks_.begin(), callbacks_.end(),
                                  [id](const DoneCallback& c) { return c.id == id; }),
                   callbacks_.end());
  return before - callbacks_.size();
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

void FutureAccess::finish_ok(FutureBase* base) { base->finish(FutureBase::State::finished); }

}  // namespace corio::detail
