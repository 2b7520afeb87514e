// Handle and TimerHandle: what call_soon / call_later / call_at return, as in asyncio.
// A handle is a reference to a scheduled callback; cancel() makes sure it will not run.
// Handles never own the loop, and cancel() is for the loop's thread (asyncio's rule too).
#pragma once

#include <absl/functional/any_invocable.h>

#include <atomic>
#include <utility>

#include "corio/core/timer_heap.hpp"

namespace corio {

class EventLoop;

using Callback = absl::AnyInvocable<void()>;

namespace detail {

// Shared by the handle objects the user holds and the loop's queues. Only handles made by
// call_soon_threadsafe are referenced from two threads; the others are counted with plain
// loads and stores, sparing two locked instructions per callback on the hot path.
struct HandleState {
  HandleState(EventLoop* owner, Callback fn, bool shared) noexcept
      : loop(owner), callback(std::move(fn)), cross_thread(shared) {}

  std::atomic<int> refs{1};
  std::atomic<bool> cancelled{false};
  EventLoop* loop;
  Callback callback;
  core::TimerNode timer;  // used only when the handle is a timer
  const bool cross_thread;

  void add_ref() noexcept {
    if (cross_thread) {
      refs.fetch_add(1, std::memory_order_relaxed);
    } else {
      refs.store(refs.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
    }
  }
  void release() noexcept {
    if (cross_thread) {
      if (refs.fetch_sub(1, std::memory_order_acq_rel) == 1) delete this;
      return;
    }
    const int left = refs.load(std::memory_order_relaxed) - 1;
    if (left == 0) {
      delete this;
    } else {
      refs.store(left, std::memory_order_relaxed);
    }
  }
};

}  // namespace detail

class Handle {
 public:
  Handle() = default;
  explicit Handle(detail::HandleState* state) noexcept : state_(state) {}
  Handle(const Handle& other) noexcept : state_(other.state_) {
    if (state_) state_->add_ref();
  }
  Handle(Handle&& other) noexcept : state_(std::exchange(other.state_, nullptr)) {}
  Handle& operator=(Handle other) noexcept {
    std::swap(state_, other.state_);
    return *this;
  }
  ~Handle() {
    if (state_) state_->release();
  }

  // The callback will not run (no effect if it already ran).
  void cancel();
  bool cancelled() const noexcept {
    return state_ && state_->cancelled.load(std::memory_order_relaxed);
  }
  explicit operator bool() const noexcept { return state_ != nullptr; }

 protected:
  detail::HandleState* state_ = nullptr;
};

class TimerHandle : public Handle {
 public:
  using Handle::Handle;
  // The absolute time, in the loop's time() seconds, at which the callback is due.
  double when() const noexcept;
};

}  // namespace corio
