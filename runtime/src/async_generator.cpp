// Async generators: resumption bookkeeping, aclose(), and the per-loop registry that plays
// the part of asyncio's asyncgen hooks (firstiter registers, the finalizer closes a generator
// destroyed mid-iteration, shutdown_asyncgens closes what is left when the Runner closes).
// The registry must never own a generator that a user still holds: it only closes them.
#include "corio/async_generator.hpp"

#include <memory>
#include <string>
#include <vector>

#include "corio/detail/loop_local.hpp"
#include "corio/event_loop.hpp"
#include "corio/task.hpp"

namespace corio::detail {

namespace {

std::coroutine_handle<> transfer(std::coroutine_handle<> to) noexcept {
  if (!to) return std::noop_coroutine();
  return Trampoline::transfer(to);
}

// Owns the frame of a generator dropped at a co_yield until it is closed. It is a parameter
// of the closing coroutine, so it is destroyed with that coroutine's frame however the task
// ends. If the task was cancelled before it could even start the close (Runner::close cancels
// every leftover task first), the frame goes back to the registry, whose shutdown step closes it.
class FrameOwner {
 public:
  FrameOwner(std::coroutine_handle<> frame, AsyncGenPromiseBase* promise,
             std::weak_ptr<AsyncGenRegistry> registry) noexcept
      : frame_(frame), promise_(promise), registry_(std::move(registry)) {}
  FrameOwner(FrameOwner&& other) noexcept
      : frame_(std::exchange(other.frame_, {})),
        promise_(other.promise_),
        registry_(std::move(other.registry_)),
        attempted_(other.attempted_) {}
  FrameOwner& operator=(FrameOwner&&) = delete;
  ~FrameOwner();

  AsyncGenPromiseBase* promise() const noexcept { return promise_; }
  void mark_attempted() noexcept { attempted_ = true; }

 private:
  std::coroutine_handle<> frame_;
  AsyncGenPromiseBase* promise_;
  std::weak_ptr<AsyncGenRegistry> registry_;
  bool attempted_ = false;
};

// Closes one generator; errors other than a cancellation go to the loop's handler, as
// asyncio reports "an error occurred during closing of asynchronous generator".
Coro<void> close_generator(AsyncGenPromiseBase* promise) {
  try {
    co_await AsyncGenCloseAwaiter(promise);
  } catch (const CancelledError&) {
    throw;
  } catch (...) {
    get_running_loop().call_exception_handler(
        {"an error occurred during closing of asynchronous generator",
         std::current_exception(),
         {}});
  }
}

// The same for a frame nobody else owns.
Coro<void> close_dropped_generator(FrameOwner owner) {
  owner.mark_attempted();
  co_await close_generator(owner.promise());
}

}  // namespace

class AsyncGenRegistry : public std::enable_shared_from_this<AsyncGenRegistry> {
 public:
  explicit AsyncGenRegistry(EventLoop& loop) : loop_(&loop) {}

  // The loop is closing: generators still open will simply be destroyed by their owners, and
  // dropped ones without their asynchronous clean-up.
  void on_loop_close() {
    loop_ = nullptr;  // first: owners destroyed below must not queue their frames again
    while (head_ != nullptr) unlink(head_);
    std::exchange(dropped_, {}).clear();
    std::exchange(finalizers_, {}).clear();
  }

  void link(AsyncGenPromiseBase* promise) {
    promise->registry_ = this;
    promise->prev_ = nullptr;
    promise->next_ = head_;
    if (head_ != nullptr) head_->prev_ = promise;
    head_ = promise;
    schedule_shutdown();
  }

  void unlink(AsyncGenPromiseBase* promise) noexcept {
    (promise->prev_ ? promise->prev_->next_ : head_) = promise->next_;
    if (promise->next_) promise->next_->prev_ = promise->prev_;
    promise->prev_ = promise->next_ = nullptr;
    promise->registry_ = nullptr;
  }

  // Takes over a frame suspended at a co_yield whose AsyncGenerator is being destroyed (or
  // whose closing task was cancelled before it started). The closing task is created on the
  // next loop iteration, as asyncio's finalizer hook does. False: destroy the frame yourself.
  bool finalize_later(std::coroutine_handle<> frame, AsyncGenPromiseBase* promise) noexcept {
    if (loop_ == nullptr || loop_->is_closed()) return false;
    if (promise->registry_ == this) unlink(promise);
    try {
      dropped_.emplace_back(frame, promise, weak_from_this());
    } catch (...) {
      return false;  // out of memory: destroyed without its clean-up
    }
    try {
      schedule_shutdown();
      if (!spawn_scheduled_) {
        loop_->call_soon([self = shared_from_this()] {
          self->spawn_scheduled_ = false;
          self->spawn_dropped();
        });
        spawn_scheduled_ = true;
      }
    } catch (...) {
      loop_->call_exception_handler({"could not schedule the closing of an asynchronous generator",
                                     std::current_exception(),
                                     {}});
    }
    return true;
  }

  // shutdown_asyncgens: close, concurrently, every generator still open, and wait for the
  // closes of dropped ones. Runs as a shutdown step of the loop.
  Coro<void> shutdown(std::shared_ptr<AsyncGenRegistry> self) {
    step_pending_ = false;
    if (loop_ == nullptr) co_return;
    spawn_dropped();
    std::vector<AnyTask> waiting = std::exchange(finalizers_, {});
    std::vector<AsyncGenPromiseBase*> open;
    for (AsyncGenPromiseBase* p = head_; p != nullptr; p = p->next_) {
      if (p->state() == AsyncGenPromiseBase::State::suspended) open.push_back(p);
    }
    for (AsyncGenPromiseBase* p : open) {
      unlink(p);  // closed once: a generator that ignores GeneratorExit is not retried
      waiting.push_back(loop_->create_task(close_generator(p), TaskOptions{.eager_start = false}));
    }
    for (AnyTask& task : waiting) {
      try {
        co_await task;
      } catch (...) {  // reported by close_generator; a cancelled close is not an error here
      }
    }
    (void)self;  // keeps the registry alive while this step runs
  }

 private:
  void spawn_dropped() {
    if (loop_ == nullptr) return;
    std::erase_if(finalizers_, [](const AnyTask& t) { return t.done(); });
    for (FrameOwner& owner : std::exchange(dropped_, {})) {
      finalizers_.push_back(loop_->create_task(close_dropped_generator(std::move(owner)),
                                               TaskOptions{.eager_start = false}));
    }
  }

  void schedule_shutdown() {
    if (step_pending_ || loop_ == nullptr) return;
    step_pending_ = true;
    loop_->at_shutdown([self = shared_from_this()] { return self->shutdown(self); });
  }

  EventLoop* loop_;
  AsyncGenPromiseBase* head_ = nullptr;  // first iterated, not finished, still owned by users
  std::vector<FrameOwner> dropped_;      // dropped at a co_yield, closing task not created yet
  std::vector<AnyTask> finalizers_;      // closing dropped generators
  bool step_pending_ = false;
  bool spawn_scheduled_ = false;
};

FrameOwner::~FrameOwner() {
  if (!frame_) return;
  if (!attempted_ && promise_->state() == AsyncGenPromiseBase::State::suspended) {
    if (std::shared_ptr<AsyncGenRegistry> registry = registry_.lock()) {
      if (registry->finalize_later(frame_, promise_)) return;
    }
  }
  frame_.destroy();
}

AsyncGenPromiseBase::~AsyncGenPromiseBase() {
  if (registry_ != nullptr) registry_->unlink(this);
}

void AsyncGenPromiseBase::check_not_running(const char* operation) const {
  if (state_ == State::running) {
    throw RuntimeError(std::string(operation) + "(): asynchronous generator is already running");
  }
}

std::coroutine_handle<> AsyncGenPromiseBase::resume_from(std::coroutine_handle<> consumer,
                                                         std::exception_ptr inject) {
  if (state_ == State::created) {
    // asyncio's firstiter hook: from now on the loop knows the generator and can close it.
    if (EventLoop* loop = try_get_running_loop()) {
      if (std::shared_ptr<AsyncGenRegistry> registry = LoopLocal<AsyncGenRegistry>::get(*loop)) {
        registry->link(this);
      }
    }
  }
  state_ = State::running;
  consumer_ = consumer;
  inject_ = std::move(inject);
  yielded_ = false;
  return transfer(self_);
}

bool AsyncGenPromiseBase::finish_resume() {
  if (error_) std::rethrow_exception(std::exchange(error_, nullptr));
  return yielded_;
}

void AsyncGenPromiseBase::mark_finished() noexcept {
  state_ = State::finished;
  if (registry_ != nullptr) registry_->unlink(this);
}

std::coroutine_handle<> AsyncGenPromiseBase::on_yield() noexcept {
  state_ = State::suspended;
  return transfer(std::exchange(consumer_, {}));
}

std::coroutine_handle<> AsyncGenPromiseBase::on_finished() noexcept {
  mark_finished();
  return transfer(std::exchange(consumer_, {}));
}

void release_async_generator(std::coroutine_handle<> frame, AsyncGenPromiseBase* promise) noexcept {
  if (promise->state_ == AsyncGenPromiseBase::State::suspended && promise->registry_ != nullptr &&
      promise->registry_->finalize_later(frame, promise)) {
    return;
  }
  frame.destroy();
}

bool AsyncGenCloseAwaiter::await_ready() {
  if (promise_ == nullptr) return true;
  promise_->check_not_running("aclose");
  switch (promise_->state()) {
    case AsyncGenPromiseBase::State::created:
      promise_->mark_finished();  // never started: nothing to clean up
      return true;
    case AsyncGenPromiseBase::State::finished:
      return true;
    default:
      return false;
  }
}

std::coroutine_handle<> AsyncGenCloseAwaiter::await_suspend(std::coroutine_handle<> consumer) {
  resumed_ = true;
  return promise_->resume_from(consumer, std::make_exception_ptr(GeneratorExit()));
}

void AsyncGenCloseAwaiter::await_resume() {
  if (!resumed_) return;
  bool yielded = false;
  try {
    yielded = promise_->finish_resume();
  } catch (const GeneratorExit&) {
    return;  // the body let GeneratorExit out: closed
  }
  if (yielded) throw RuntimeError("async generator ignored GeneratorExit");
}

}  // namespace corio::detail

namespace corio {

Coro<void> shutdown_asyncgens(EventLoop& loop) {
  if (std::shared_ptr<detail::AsyncGenRegistry> registry =
          detail::LoopLocal<detail::AsyncGenRegistry>::find(loop)) {
    co_await registry->shutdown(registry);
  }
}

}  // namespace corio
