// Task stepping, completion and cancellation (asyncio.Task's rules).
#include "corio/task.hpp"

#include <cstdio>

namespace corio {
namespace detail {

TaskBase::TaskBase(EventLoop* loop, std::coroutine_handle<> root, PromiseBase* root_promise,
                   std::string name, bool scheduled)
    : FutureBase(loop),
      root_(root),
      root_promise_(root_promise),
      resume_point_(root),
      name_(std::move(name)) {
  is_task_ = true;
  if (name_.empty()) number_ = ++loop->task_counter_;
  root_promise_->task = this;
  add_ref();  // held while the task runs; dropped when it is done
  if (scheduled) loop->post({&step, this});
}

TaskBase::~TaskBase() {
  destroy_frame();
  report_unretrieved_exception(name_);
}

const std::string& TaskBase::name() const {
  if (name_.empty() && number_ != 0) name_ = "Task-" + std::to_string(number_);
  return name_;
}

void TaskBase::destroy_frame() noexcept {
  if (root_) std::exchange(root_, {}).destroy();
}

void TaskBase::step(void* arg) {
  auto* task = static_cast<TaskBase*>(arg);
  EventLoop* loop = task->loop_;
  if (!task->root_) return;
  TaskBase* previous = loop->current_task_;
  loop->current_task_ = task;
  if (task->must_cancel_ && !task->root_promise_->started) {
    // Cancelled before its first step: the body never runs, as in asyncio.
    task->must_cancel_ = false;
    task->root_promise_->exception = std::make_exception_ptr(task->make_cancelled_error());
    task->on_root_done();
  } else {
    Trampoline::drive(task->resume_point_);
  }
  loop->current_task_ = previous;
}

void TaskBase::on_root_done() noexcept {
  std::exception_ptr error = root_promise_->exception;
  if (!error) {
    try {
      collect_value();
    } catch (...) {
      error = std::current_exception();
    }
  }
  destroy_frame();
  hook_ = {};
  must_cancel_ = false;
  if (!error) {
    finish(State::finished);
  } else {
    bool cancelled = false;
    try {
      std::rethrow_exception(error);
    } catch (const CancelledError& e) {
      cancel_message_ = e.message();
      cancelled = true;
    } catch (...) {
    }
    if (!cancelled) exception_ = std::move(error);
    finish(cancelled ? State::cancelled : State::finished);
  }
  release();
}

bool TaskBase::cancel(std::string message) {
  if (done()) return false;
  ++num_cancels_requested_;
  cancel_message_ = std::move(message);
  if (hook_.cancel != nullptr) {
    const CancelHook hook = hook_.repeatable ? hook_ : std::exchange(hook_, {});
    if (hook.cancel(hook.leaf)) {
      leaf_cancel_message_ = cancel_message_;
      return true;
    }
  }
  must_cancel_ = true;
  return true;
}

int TaskBase::uncancel() noexcept {
  if (num_cancels_requested_ > 0) {
    --num_cancels_requested_;
    if (num_cancels_requested_ == 0) must_cancel_ = false;
  }
  return num_cancels_requested_;
}

std::coroutine_handle<> PromiseBase::finish_task(TaskBase* task) noexcept {
  task->on_root_done();
  return std::noop_coroutine();
}

void Suspension::begin(std::coroutine_handle<> handle) {
  loop_ = try_get_running_loop();
  if (loop_ == nullptr) throw RuntimeError("no running event loop");
  handle_ = handle;
  task_ = loop_->current_task();
  if (task_) task_->resume_point_ = handle;
}

core::ReadyItem Suspension::wake_item() const noexcept {
  if (task_) return {&TaskBase::step, task_};
  return {&EventLoop::resume_handle, handle_.address()};
}

void Suspension::arm(CancelHook hook) {
  if (task_ == nullptr) return;
  task_->hook_ = hook;
  if (task_->must_cancel_ && hook.cancel != nullptr) {
    if (!hook.repeatable) task_->hook_ = {};
    if (hook.cancel(hook.leaf)) {
      task_->must_cancel_ = false;
      task_->leaf_cancel_message_ = task_->cancel_message_;
    }
  }
}

void Suspension::wake() {
  loop_->post(wake_item());
}

void Suspension::wake_from_timer() {
  if (task_ == nullptr) return wake();
  loop_->post({&step_soon, task_});
}

void Suspension::step_soon(void* task) {
  // The task is alive: it holds a reference to itself until done, and it cannot finish
  // while suspended here.
  auto* t = static_cast<TaskBase*>(task);
  t->loop_or_null()->post({&TaskBase::step, t});
}

void Suspension::end(bool leaf_cancelled, bool deliver_pending) {
  if (task_ == nullptr) {
    if (leaf_cancelled) throw CancelledError();
    return;
  }
  task_->hook_ = {};
  if (leaf_cancelled) {
    task_->must_cancel_ = false;
    throw CancelledError(std::move(task_->leaf_cancel_message_));
  }
  if (deliver_pending && task_->must_cancel_) {
    task_->must_cancel_ = false;
    throw task_->make_cancelled_error();
  }
}

void Suspension::end_by_leaf_cancellation() noexcept {
  if (task_ == nullptr) return;
  task_->hook_ = {};
  task_->must_cancel_ = false;
}

std::string Suspension::pending_cancel_message() const {
  return task_ ? task_->cancel_message() : std::string();
}

// "corio::Coro<int> ns::nested(int)" -> "ns::nested", the name a Python user would see.
static std::string short_function_name(const char* signature) {
  std::string text = signature;
  const auto paren = text.find('(');
  if (paren != std::string::npos) text.resize(paren);
  int depth = 0;
  for (std::size_t i = text.size(); i-- > 0;) {
    const char c = text[i];
    if (c == '>') ++depth;
    if (c == '<') --depth;
    if (c == ' ' && depth == 0) return text.substr(i + 1);
  }
  return text;
}

void warn_never_awaited(const char* function_name) noexcept {
  try {
    std::fprintf(stderr, "RuntimeWarning: coroutine '%s' was never awaited\n",
                 short_function_name(function_name).c_str());
  } catch (...) {
  }
}

}  // namespace detail

AnyTask current_task(EventLoop& loop) {
  return AnyTask(loop.current_task());
}

AnyTask current_task() {
  return current_task(get_running_loop());
}

std::vector<AnyTask> all_tasks(EventLoop& loop) {
  std::vector<AnyTask> tasks;
  for (detail::FutureBase* f = loop.live_futures_; f != nullptr; f = f->next_live()) {
    if (f->is_task() && !f->done()) tasks.emplace_back(static_cast<detail::TaskBase*>(f));
  }
  return tasks;
}

std::vector<AnyTask> all_tasks() {
  return all_tasks(get_running_loop());
}

}  // namespace corio
