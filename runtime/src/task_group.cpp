// TaskGroup's bookkeeping: children, aborting, and the exit rules of CPython's taskgroups.py.
#include "corio/task_group.hpp"

namespace corio {

namespace {

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

// The twins of SystemExit/KeyboardInterrupt: not errors, so they are raised alone.
bool is_base_error(const std::exception_ptr& error) {
  if (!error) return false;
  try {
    std::rethrow_exception(error);
  } catch (const CancelledError&) {
    return false;
  } catch (const BaseException&) {
    return true;
  } catch (...) {
    return false;
  }
}

}  // namespace

TaskGroup::~TaskGroup() {
  // run() only returns once every child is done. Children are left only when run()'s frame
  // is destroyed while suspended (a loop torn down with tasks pending): unhook them so they
  // never reach back into this object.
  for (Child& child : children_) {
    if (child.task == nullptr) continue;
    child.task->remove_waiter({&on_child_done, &child});
    std::exchange(child.task, nullptr)->release();
  }
}

void TaskGroup::enter() {
  if (entered_) throw RuntimeError("TaskGroup has already been entered");
  EventLoop& loop = get_running_loop();
  detail::TaskBase* task = loop.current_task();
  if (task == nullptr) throw RuntimeError("TaskGroup cannot determine the parent task");
  loop_ = &loop;
  parent_ = AnyTask(task);
  entered_ = true;
}

const char* TaskGroup::refuse_reason() const noexcept {
  if (!entered_) return "has not been entered";
  if (exiting_ && pending_ == 0) return "is finished";
  if (aborting_) return "is shutting down";
  return nullptr;
}

void TaskGroup::adopt(detail::TaskBase* task) {
  Child* child = free_;
  if (child != nullptr) {
    free_ = child->next_free;
  } else {
    child = &children_.emplace_back();
  }
  child->group = this;
  child->task = task;
  child->next_free = nullptr;
  task->add_ref();
  ++pending_;
  // A child that finished in its first step (an eager task) is counted through the same
  // posted callback as any other, not at once: counted at once, its error would abort the
  // group before the task that created it (an eager sibling still inside create_task) is a
  // child, and that sibling would never be cancelled (CPython gh-128550).
  task->add_waiter({&on_child_done, child});
  if (aborting_ && !task->done()) task->cancel();
}

void TaskGroup::abort() {
  aborting_ = true;
  for (Child& child : children_) {
    if (child.task != nullptr && !child.task->done()) child.task->cancel();
  }
}

void TaskGroup::on_child_done(void* arg) {
  auto* child = static_cast<Child*>(arg);
  TaskGroup* group = child->group;
  detail::TaskBase* task = std::exchange(child->task, nullptr);
  child->next_free = group->free_;
  group->free_ = child;
  struct Release {
    detail::TaskBase* task;
    ~Release() { task->release(); }
  } release{task};

  if (--group->pending_ == 0) detail::WakeLeaf::notify(&group->waiter_);
  if (task->cancelled()) return;
  std::exception_ptr error = task->exception();
  if (!error) return;
  group->errors_.push_back(error);
  if (is_base_error(error) && !group->base_error_) group->base_error_ = error;
  if (group->parent_.done()) {
    group->loop_->call_exception_handler({"Task '" + task->name() +
                                              "' has errored out but its parent task '" +
                                              group->parent_.get_name() + "' is already completed",
                                          error, task->name()});
    return;
  }
  if (!group->aborting_ && !group->parent_cancel_requested_) {
    // Stop whatever the body is awaiting. The cancel is ours, so exit() takes it back
    // (uncancel) and the parent is not left looking cancelled.
    group->abort();
    group->parent_cancel_requested_ = true;
    group->parent_.cancel();
  }
}

void TaskGroup::begin_exit(std::exception_ptr error) {
  exiting_ = true;
  body_error_ = error;
  if (is_base_error(error) && !base_error_) base_error_ = error;
  propagate_cancellation_ = is_cancelled_error(error) ? error : nullptr;
  // The body failed, or the parent is being cancelled: nothing left to wait for normally.
  if (error && !aborting_) abort();
}

void TaskGroup::on_wait_cancelled(std::exception_ptr error) {
  if (aborting_) return;  // our own cancel of the parent, or a repeat
  // The parent is cancelled from outside while the children still run.
  propagate_cancellation_ = std::move(error);
  abort();
}

void TaskGroup::finish_exit() {
  // Only now, with every child done, can the parent's count be settled: a child failing
  // during the wait above requests a cancel too (CPython 3.13 moved this for that reason).
  if (parent_cancel_requested_ && parent_.uncancel() == 0) propagate_cancellation_ = nullptr;
  if (base_error_) std::rethrow_exception(base_error_);
  // A cancellation is raised as itself, unless errors take priority.
  if (propagate_cancellation_ && errors_.empty()) std::rethrow_exception(propagate_cancellation_);
  if (body_error_ && !is_cancelled_error(body_error_)) errors_.push_back(body_error_);
  if (errors_.empty()) return;
  if (parent_.cancelling() > 0) {
    // Someone else is cancelling the parent and the group error hides the CancelledError:
    // re-arm it so it is delivered at the next suspension point (count unchanged, as 3.13).
    parent_.uncancel();
    parent_.cancel();
  }
  throw ExceptionGroup("unhandled errors in a TaskGroup", std::move(errors_));
}

}  // namespace corio
