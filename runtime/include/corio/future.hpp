// Future<T>: asyncio.Future in C++. A reference-counted handle to a result that will be set
// later, awaitable from any task on the same loop. Tasks are futures too (see task.hpp).
// Futures belong to one loop and one thread; only call_soon_threadsafe crosses threads.
// Awaiting never allocates: the waiting task is linked into the future's callback list.
#pragma once

#include <absl/container/inlined_vector.h>
#include <absl/functional/any_invocable.h>

#include <coroutine>
#include <cstdint>
#include <exception>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "corio/core/errors.hpp"
#include "corio/core/ready_queue.hpp"
#include "corio/detail/suspension.hpp"
#include "corio/event_loop.hpp"

namespace corio {

namespace detail {

template <class T>
using Stored = std::conditional_t<std::is_void_v<T>, std::monostate, T>;

class FutureBase {
 public:
  enum class State : std::uint8_t { pending, cancelled, finished };

  explicit FutureBase(EventLoop* loop);
  FutureBase(const FutureBase&) = delete;
  FutureBase& operator=(const FutureBase&) = delete;
  virtual ~FutureBase();

  void add_ref() noexcept { ++refs_; }
  void release() noexcept {
    if (--refs_ == 0) delete this;
  }
  int use_count() const noexcept { return refs_; }

  bool done() const noexcept { return state_ != State::pending; }
  bool cancelled() const noexcept { return state_ == State::cancelled; }
  // asyncio's Future.cancel(); a Task overrides it with Task.cancel()'s rules.
  virtual bool cancel(std::string message = {});
  void set_exception(std::exception_ptr exception);
  // The stored exception (nullptr on success). CancelledError if cancelled,
  // InvalidStateError if pending. Marks the exception as retrieved.
  std::exception_ptr exception();
  // Throws what result() would throw; returns normally when a result is stored.
  void check_result();
  std::uint64_t add_done_callback(absl::AnyInvocable<void(FutureBase&)> callback);
  std::size_t remove_done_callback(std::uint64_t id);
  // Runtime-internal: post `item` when done. Costs no allocation for the first waiter.
  void add_waiter(core::ReadyItem item);
  bool remove_waiter(core::ReadyItem item) noexcept;

  EventLoop& loop() const;
  EventLoop* loop_or_null() const noexcept { return loop_; }
  bool is_task() const noexcept { return is_task_; }
  const std::string& cancel_message() const noexcept { return cancel_message_; }
  FutureBase* next_live() const noexcept { return next_live_; }
  // Who is waiting for this future (for call graphs).
  const absl::InlinedVector<core::ReadyItem, 1>& waiters() const noexcept { return waiters_; }
  CancelledError make_cancelled_error() const { return CancelledError(cancel_message_); }

 protected:
  // Moves to a final state and schedules every callback.
  void finish(State state);
  void ensure_pending(const char* operation) const;
  // Reports an exception nobody looked at (once); called by the most derived destructor.
  void report_unretrieved_exception(const std::string& task_name) noexcept {
    if (state_ == State::finished && exception_ && !exception_retrieved_)
      report_unretrieved(task_name);
  }

  EventLoop* loop_;
  State state_ = State::pending;
  bool is_task_ = false;
  bool exception_retrieved_ = false;
  int refs_ = 1;
  std::exception_ptr exception_;
  std::string cancel_message_;

 private:
  friend class corio::EventLoop;
  friend struct FutureAccess;
  struct DoneCallback {
    absl::AnyInvocable<void(FutureBase&)> callback;
    std::uint64_t id = 0;
  };
  // Marks a waiters_ entry that stands for a user callback (arg is a DoneCallback*).
  static void user_callback_marker(void*) {}
  void report_unretrieved(const std::string& task_name) noexcept;
  // Everything to schedule when done, in registration order as asyncio keeps it: awaiting
  // tasks are plain ready-queue items (16 bytes, no allocation); user callbacks are marked
  // entries pointing at a DoneCallback this future owns.
  absl::InlinedVector<core::ReadyItem, 1> waiters_;
  std::uint64_t next_callback_id_ = 1;
  FutureBase* prev_live_ = nullptr;  // every live future of the loop, so ~EventLoop can
  FutureBase* next_live_ = nullptr;  // detach them and they never touch a dead loop
};

template <class T>
class FutureState : public FutureBase {
 public:
  using FutureBase::FutureBase;
  std::optional<Stored<T>> value;
};

struct FutureAccess;

// Waits for a future from a coroutine. Copies the result, or moves it when this awaiter
// holds the only reference (nobody else can observe the future any more).
template <class T>
class FutureAwaiter {
 public:
  FutureAwaiter(FutureBase* base, std::optional<Stored<T>>* value) noexcept
      : base_(base), value_(value) {
    base_->add_ref();
  }
  FutureAwaiter(FutureAwaiter&& other) noexcept
      : base_(std::exchange(other.base_, nullptr)), value_(other.value_) {}
  FutureAwaiter(const FutureAwaiter&) = delete;
  ~FutureAwaiter() {
    if (registered_) base_->remove_waiter(suspension_wake_item());
    if (base_) base_->release();
  }

  bool await_ready() const noexcept { return base_->done(); }
  void await_suspend(std::coroutine_handle<> handle) {
    EventLoop& running = get_running_loop();
    if (&running != base_->loop_or_null()) {
      throw RuntimeError("Task got Future attached to a different loop");
    }
    if (static_cast<void*>(running.current_task()) == static_cast<void*>(base_)) {
      throw RuntimeError("Task cannot await on itself");
    }
    suspension_.begin(handle);
    base_->add_waiter(suspension_.wake_item());
    registered_ = true;
    suspension_.arm({&cancel_leaf, this, kRepeatable});
  }
  T await_resume() {
    registered_ = false;
    // As asyncio's Task.__wakeup: the future's outcome is taken first (so an exception counts
    // as retrieved); a cancellation requested meanwhile then replaces any outcome but the
    // future's own CancelledError, which carries the message the future was cancelled with.
    try {
      base_->check_result();
    } catch (const CancelledError&) {
      suspension_.end_by_leaf_cancellation();
      throw;
    } catch (...) {
      suspension_.end(false);
      throw;
    }
    suspension_.end(false);
    if constexpr (!std::is_void_v<T>) {
      if constexpr (std::is_copy_constructible_v<T>) {
        if (base_->use_count() != 1) return **value_;
      }
      return std::move(**value_);  // nobody else can observe it, or it cannot be copied
    }
  }

 private:
  core::ReadyItem suspension_wake_item() const noexcept { return suspension_.wake_item(); }
  static bool cancel_leaf(void* self) {
    auto* awaiter = static_cast<FutureAwaiter*>(self);
    return awaiter->base_->cancel(awaiter->suspension_.pending_cancel_message());
  }
  // Repeatable: the future may be a task that catches the cancellation and goes on, and
  // then a later cancel() of the waiting task must reach it again (asyncio keeps
  // _fut_waiter for this).
  static constexpr bool kRepeatable = true;

  FutureBase* base_;
  std::optional<Stored<T>>* value_;
  Suspension suspension_;
  bool registered_ = false;
};

}  // namespace detail

namespace detail {
struct FutureAccess;
}

template <class T = void>
class Future {
 public:
  using value_type = T;

  Future() = default;
  Future(const Future& other) noexcept : base_(other.base_), value_(other.value_) {
    if (base_) base_->add_ref();
  }
  Future(Future&& other) noexcept
      : base_(std::exchange(other.base_, nullptr)), value_(std::exchange(other.value_, nullptr)) {}
  Future& operator=(Future other) noexcept {
    std::swap(base_, other.base_);
    std::swap(value_, other.value_);
    return *this;
  }
  ~Future() {
    if (base_) base_->release();
  }

  // A new pending future on `loop`.
  static Future create(EventLoop& loop) {
    auto* state = new detail::FutureState<T>(&loop);
    return Future(state, &state->value);
  }

  explicit operator bool() const noexcept { return base_ != nullptr; }
  bool done() const noexcept { return base_->done(); }
  bool cancelled() const noexcept { return base_->cancelled(); }
  bool cancel(std::string message = {}) { return base_->cancel(std::move(message)); }

  template <class U = T>
  requires(!std::is_void_v<U>) void set_result(detail::Stored<U> value) {
    ensure_settable();
    value_->emplace(std::move(value));
    finish_ok();
  }
  template <class U = T>
  requires std::is_void_v<U>
  void set_result() {
    ensure_settable();
    value_->emplace();
    finish_ok();
  }
  void set_exception(std::exception_ptr exception) { base_->set_exception(std::move(exception)); }
  template <class E>
  requires(!std::is_same_v<std::decay_t<E>, std::exception_ptr>) void set_exception(E&& error) {
    base_->set_exception(std::make_exception_ptr(std::forward<E>(error)));
  }

  // The result; rethrows the stored exception, CancelledError if cancelled,
  // InvalidStateError if not done.
  decltype(auto) result() const {
    base_->check_result();
    if constexpr (!std::is_void_v<T>) return static_cast<const T&>(**value_);
  }
  std::exception_ptr exception() const { return base_->exception(); }

  std::uint64_t add_done_callback(absl::AnyInvocable<void(Future<T>)> callback) {
    std::optional<detail::Stored<T>>* value = value_;
    return base_->add_done_callback(
        [callback = std::move(callback), value](detail::FutureBase& base) mutable {
          base.add_ref();
          callback(Future(&base, value));
        });
  }
  std::size_t remove_done_callback(std::uint64_t id) { return base_->remove_done_callback(id); }
  EventLoop& get_loop() const { return base_->loop(); }

  detail::FutureAwaiter<T> operator co_await() const noexcept { return {base_, value_}; }

  detail::FutureBase* base() const noexcept { return base_; }
  std::optional<detail::Stored<T>>* value_slot() const noexcept { return value_; }

 protected:
  // Adopts one reference.
  Future(detail::FutureBase* base, std::optional<detail::Stored<T>>* value) noexcept
      : base_(base), value_(value) {}

  detail::FutureBase* base_ = nullptr;
  std::optional<detail::Stored<T>>* value_ = nullptr;

 private:
  template <class>
  friend class Future;
  friend class EventLoop;
  friend struct detail::FutureAccess;
  void ensure_settable() const {
    if (base_->is_task()) throw RuntimeError("Task does not support set_result operation");
    if (base_->done()) throw InvalidStateError("invalid state: the future is already done");
  }
  void finish_ok();
};

namespace detail {
// Lets the Future template finish a plain future without exposing finish() publicly.
struct FutureAccess {
  static void finish_ok(FutureBase* base);
  // A Future handle that adopts the creator's reference to `base`.
  template <class T>
  static Future<T> adopt(FutureBase* base, std::optional<Stored<T>>* value) {
    return Future<T>(base, value);
  }
};
}  // namespace detail

template <class T>
void Future<T>::finish_ok() {
  detail::FutureAccess::finish_ok(base_);
}

template <class T>
// No closed-loop check, as asyncio's Future(loop=...): completing it later schedules its
// callbacks, and that raises on a closed loop.
Future<T> EventLoop::create_future() {
  return Future<T>::create(*this);
}

}  // namespace corio
