// The event loop's iteration, scheduling, shutdown and error reporting.
#include "corio/event_loop.hpp"

#include <cxxabi.h>

#include <cstdio>
#include <cstdlib>
#include <typeinfo>

#include "corio/future.hpp"
#include "corio/task.hpp"

namespace corio {

namespace {
thread_local EventLoop* t_running_loop = nullptr;

std::string describe(const std::exception_ptr& error) {
  if (!error) return {};
  std::string type = "unknown exception";
  if (const std::type_info* info = abi::__cxa_current_exception_type(); info == nullptr) {
    // Not inside a handler: find the type by rethrowing below.
  }
  try {
    std::rethrow_exception(error);
  } catch (const BaseException& e) {
    int status = 0;
    char* name = abi::__cxa_demangle(typeid(e).name(), nullptr, nullptr, &status);
    type = status == 0 ? name : typeid(e).name();
    std::free(name);
    return e.message().empty() ? type : type + ": " + e.what();
  } catch (const std::exception& e) {
    int status = 0;
    char* name = abi::__cxa_demangle(typeid(e).name(), nullptr, nullptr, &status);
    type = status == 0 ? name : typeid(e).name();
    std::free(name);
    return type + ": " + e.what();
  } catch (...) {
    return type;
  }
}
}  // namespace

class EventLoop::RunningScope {
 public:
  explicit RunningScope(EventLoop& loop) : loop_(loop) {
    loop.check_open();
    if (loop.running_) throw RuntimeError("This event loop is already running");
    if (t_running_loop != nullptr) {
      throw RuntimeError("Cannot run the event loop while another loop is running");
    }
    loop.running_ = true;
    loop.running_thread_.store(std::this_thread::get_id(), std::memory_order_relaxed);
    t_running_loop = &loop;
  }
  ~RunningScope() {
    loop_.running_ = false;
    loop_.running_thread_.store(std::thread::id(), std::memory_order_relaxed);
    loop_.stopping_ = false;
    t_running_loop = nullptr;
  }

 private:
  EventLoop& loop_;
};

EventLoop& get_running_loop() {
  if (t_running_loop == nullptr) throw RuntimeError("no running event loop");
  return *t_running_loop;
}

EventLoop* try_get_running_loop() noexcept {
  return t_running_loop;
}

EventLoop::EventLoop() : EventLoop(Options{}) {}

EventLoop::EventLoop(Options options)
    : options_(options),
      backend_(options.backend ? *options.backend : SelectedBackend::default_options()) {}

EventLoop::~EventLoop() {
  if (running_) {
    std::fputs("corio: an EventLoop was destroyed while running\n", stderr);
    std::abort();
  }
  if (!closed_) close();
  destroy_pending_tasks();
  // Whatever futures outlive the loop must not reach back into it.
  for (detail::FutureBase* f = live_futures_; f != nullptr; f = f->next_live_) f->loop_ = nullptr;
}

void EventLoop::check_open() const {
  if (closed_) throw RuntimeError("Event loop is closed");
}

void EventLoop::check_thread_in_debug() const {
  const std::thread::id owner = running_thread_.load(std::memory_order_relaxed);
  if (owner != std::thread::id() && owner != std::this_thread::get_id()) {
    throw RuntimeError(
        "Non-thread-safe operation invoked on an event loop other than the current one");
  }
}

void EventLoop::resume_handle(void* address) {
  detail::Trampoline::drive(std::coroutine_handle<>::from_address(address));
}

void EventLoop::run_handle(void* state) {
  auto* handle = static_cast<detail::HandleState*>(state);
  if (!handle->cancelled.load(std::memory_order_relaxed)) {
    try {
      handle->callback();
    } catch (...) {
      handle->loop->call_exception_handler({"Exception in callback", std::current_exception(), {}});
    }
  }
  handle->release();
}

namespace {
void fire_timer_handle(core::TimerNode* node) {
  auto* state = static_cast<detail::HandleState*>(node->context);
  state->loop->post({&EventLoop::run_handle, state});  // the heap's reference moves to the queue
}
}  // namespace

Handle EventLoop::call_soon(Callback callback) {
  check_open();
  check_thread();
  auto* state = new detail::HandleState(this, std::move(callback), false);
  state->add_ref();
  // One FIFO, as asyncio's: what another thread queued before this call runs before it.
  if (threadsafe_pending_.load(std::memory_order_acquire)) drain_threadsafe();
  ready_.push({&run_handle, state});
  return Handle(state);
}

TimerHandle EventLoop::call_at(double when, Callback callback) {
  return schedule_timer(core::from_seconds(when), std::move(callback));
}

// time() + delay, as asyncio: a negative delay is not clamped, so the callback runs before
// those due now (only sleep() treats a negative delay as 0).
TimerHandle EventLoop::call_later(double delay, Callback callback) {
  return schedule_timer(core::saturating_add(now_ns(), core::from_seconds(delay)),
                        std::move(callback));
}

TimerHandle EventLoop::schedule_timer(core::Nanos deadline, Callback callback) {
  check_open();
  check_thread();
  auto* state = new detail::HandleState(this, std::move(callback), false);
  state->timer.deadline = deadline;
  state->timer.fire = &fire_timer_handle;
  state->timer.context = state;
  state->add_ref();
  timers_.push(&state->timer);
  return TimerHandle(state);
}

Handle EventLoop::call_soon_threadsafe(Callback callback) {
  auto* state = new detail::HandleState(this, std::move(callback), true);
  state->add_ref();
  bool closed = false;
  {
    std::lock_guard lock(threadsafe_mutex_);
    closed = closed_;
    if (!closed) threadsafe_queue_.push_back(state);
  }
  if (closed) {
    // Outside the lock: dropping the callback may run arbitrary code (a foreign runtime's
    // finalizer), which may call back in here.
    state->release();
    state->release();
    throw RuntimeError("Event loop is closed");
  }
  if (!threadsafe_pending_.exchange(true, std::memory_order_acq_rel)) backend_.wake();
  return Handle(state);
}

// `ahead_of`: the callbacks go in front of what was queued from that position on.
void EventLoop::drain_threadsafe(std::size_t ahead_of) {
  if (!threadsafe_pending_.exchange(false, std::memory_order_acq_rel)) return;
  {
    std::lock_guard lock(threadsafe_mutex_);
    threadsafe_swap_.swap(threadsafe_queue_);
  }
  const std::size_t queued = ready_.size();
  for (detail::HandleState* state : threadsafe_swap_) ready_.push({&run_handle, state});
  threadsafe_swap_.clear();
  if (ahead_of < queued) ready_.move_to_back(ahead_of, queued - ahead_of);
}

core::Nanos EventLoop::next_timeout() const noexcept {
  if (!ready_.empty() || stopping_ || threadsafe_pending_.load(std::memory_order_acquire)) return 0;
  const core::TimerNode* next = timers_.top();
  if (next == nullptr) return core::kNoDeadline;
  const core::Nanos delta = next->deadline - now_ns();
  return delta > 0 ? delta : 0;
}

void EventLoop::run_once() {
  if (!running_) {
    RunningScope scope(*this);
    run_once();
    return;
  }
  core::Nanos timeout = next_timeout();
  const bool jump = options_.virtual_time && timeout > 0 && !timers_.empty() &&
                    backend_.in_flight() == background_io_ &&
                    external_work_.load(std::memory_order_acquire) == 0;
  // With work already ready, polling the backend (a syscall on epoll) is skipped for a
  // bounded number of iterations: I/O is still polled at least every kPollInterval
  // iterations, so a task that keeps yielding cannot starve it.
  std::size_t queued_before_wait = SIZE_MAX;
  if (timeout != 0 || ready_.empty() || options_.poll_every_iteration ||
      ++polls_skipped_ >= kPollInterval) {
    polls_skipped_ = 0;
    const core::Nanos wait_for = jump ? 0 : timeout;
    queued_before_wait = ready_.size();
    if (wait_for != 0 && before_wait_) {
      before_wait_();
      // Not a scope guard: `after` may unwind (a Python thread ended at interpreter exit
      // unwinds from taking the GIL back), which a destructor must never do.
      try {
        backend_.wait(wait_for);
      } catch (...) {
        after_wait_();
        throw;
      }
      after_wait_();
    } else {
      backend_.wait(wait_for);
    }
  }
  // What other threads queued runs before the I/O callbacks of the wait that saw it, as in
  // asyncio, where call_soon_threadsafe appends to _ready at once: a thread that queues a
  // callback and then writes to a socket gets its callback run before the reader's.
  drain_threadsafe(queued_before_wait);
  if (options_.virtual_time && ready_.empty() && !timers_.empty()) {
    // Nothing can happen before the next timer: let virtual time reach it.
    if (jump || backend_.in_flight() > 0)
      virtual_now_ = std::max(virtual_now_, timers_.top()->deadline);
  }
  end_iteration_ = false;
  if (!timers_.empty()) {  // reading the clock costs a vDSO call: only when a timer is armed
    const core::Nanos now = now_ns();
    while (core::TimerNode* next = timers_.top()) {
      if (next->deadline > now) break;
      timers_.pop();
      next->fire(next);
      if (end_iteration_) return;
    }
  }
  run_ready(ready_.size());
}

void EventLoop::run_ready(std::size_t count) {
  if (!options_.debug) {
    for (std::size_t i = 0; i < count && !end_iteration_; ++i) {
      const core::ReadyItem item = ready_.pop();
      item.run(item.arg);
    }
    return;
  }
  const core::Nanos threshold = core::from_seconds(options_.slow_callback_duration);
  for (std::size_t i = 0; i < count && !end_iteration_; ++i) {
    const core::ReadyItem item = ready_.pop();
    std::string what = "callback";
    if (item.run == &detail::TaskBase::step) {
      what = "Task '" + static_cast<detail::TaskBase*>(item.arg)->name() + "'";
    }
    const core::Nanos started = core::monotonic_now();
    item.run(item.arg);
    const core::Nanos took = core::monotonic_now() - started;
    if (took >= threshold) {
      std::fprintf(stderr, "corio: executing %s took %.3f seconds\n", what.c_str(),
                   core::to_seconds(took));
    }
  }
}

void EventLoop::run_forever() {
  RunningScope scope(*this);
  for (;;) {
    run_once();
    if (stopping_) break;
  }
}

void EventLoop::run_until_done(detail::FutureBase& future) {
  if (future.loop_or_null() != this) {
    throw ValueError("The future belongs to a different loop than the one given");
  }
  check_open();
  const std::uint64_t id = future.add_done_callback([](detail::FutureBase& f) { f.loop().stop(); });
  try {
    run_forever();
  } catch (...) {
    future.remove_done_callback(id);
    throw;
  }
  future.remove_done_callback(id);
  if (!future.done()) throw RuntimeError("Event loop stopped before Future completed.");
}

void EventLoop::close() {
  if (running_) throw RuntimeError("Cannot close a running event loop");
  if (closed_) return;
  {
    std::lock_guard lock(threadsafe_mutex_);  // call_soon_threadsafe reads closed_ on other threads
    closed_ = true;
  }
  std::vector<Callback> callbacks = std::move(close_callbacks_);
  for (Callback& callback : callbacks) callback();
  {
    std::lock_guard lock(threadsafe_mutex_);
    threadsafe_swap_.swap(threadsafe_queue_);
  }
  for (detail::HandleState* state : threadsafe_swap_) state->release();
  threadsafe_swap_.clear();
  // Handles waiting to run or to fire are dropped; tasks stay until the loop is destroyed.
  for (std::size_t n = ready_.size(); n > 0; --n) {
    const core::ReadyItem item = ready_.pop();
    if (item.run == &run_handle) {
      static_cast<detail::HandleState*>(item.arg)->release();
    } else {
      ready_.push(item);
    }
  }
  std::vector<core::TimerNode*> kept;
  while (core::TimerNode* node = timers_.pop()) {
    if (node->fire == &fire_timer_handle) {
      static_cast<detail::HandleState*>(node->context)->release();
    } else {
      kept.push_back(node);
    }
  }
  for (core::TimerNode* node : kept) timers_.push(node);
}

void EventLoop::destroy_pending_tasks() {
  std::vector<detail::TaskBase*> pending;
  for (detail::FutureBase* f = live_futures_; f != nullptr; f = f->next_live_) {
    if (f->is_task() && !f->done()) {
      f->add_ref();
      pending.push_back(static_cast<detail::TaskBase*>(f));
    }
  }
  for (detail::TaskBase* task : pending) {
    if (task->root_) {
      call_exception_handler({"Task was destroyed but it is pending!", nullptr, task->name()});
      task->destroy_frame();
      task->release();  // the reference the loop held while the task was running
    }
  }
  for (detail::TaskBase* task : pending) task->release();
}

void EventLoop::call_exception_handler(const ExceptionContext& context) {
  if (!exception_handler_) {
    default_exception_handler(context);
    return;
  }
  try {
    exception_handler_(*this, context);
  } catch (...) {
    default_exception_handler(
        {"Unhandled error in exception handler", std::current_exception(), {}});
    default_exception_handler(context);
  }
}

void EventLoop::default_exception_handler(const ExceptionContext& context) {
  std::string text =
      context.message.empty() ? "Unhandled exception in event loop" : context.message;
  if (!context.task_name.empty()) text += "\ntask: " + context.task_name;
  if (context.exception) text += "\n" + describe(context.exception);
  std::fprintf(stderr, "%s\n", text.c_str());
}

void Handle::cancel() {
  if (state_ == nullptr || state_->cancelled.exchange(true)) return;
  if (state_->timer.armed()) {
    state_->loop->disarm_timer(state_->timer);
    state_->release();  // the heap's reference
  }
}

double TimerHandle::when() const noexcept {
  return core::to_seconds(state_->timer.deadline);
}

}  // namespace corio
