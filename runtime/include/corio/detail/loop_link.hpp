// LoopLink: the way back to an event loop from other threads (thread-pool workers, threads
// waiting on a ConcurrentFuture) that stays safe after the loop has closed or been destroyed:
// post() then simply reports false instead of touching a dead loop.
// It must never run a callback itself, and never hold its mutex while the loop runs one.
#pragma once

#include <memory>
#include <mutex>

#include "corio/event_loop.hpp"
#include "corio/handle.hpp"

namespace corio::detail {

class LoopLink {
 public:
  explicit LoopLink(EventLoop& loop) : loop_(&loop) {}

  // call_soon_threadsafe(callback) while the loop is open; false (callback destroyed here)
  // once it closed. Callable from any thread. A callback that ran is destroyed on the loop's
  // thread or here; one that never ran is destroyed here or by the closing loop: release
  // thread-affine resources inside the callback body, not in its destructor.
  bool post(Callback callback);
  // The loop is closing (called on its thread): later post() calls fail.
  void detach();

 private:
  std::mutex mutex_;
  EventLoop* loop_;  // guarded by mutex_; null once detached
};

// The link of `loop`, created on first use. Loop thread only; RuntimeError if it is closed.
std::shared_ptr<LoopLink> loop_link(EventLoop& loop);

}  // namespace corio::detail
