// LoopLocal<T>: state that belongs to one event loop but that the loop itself does not know
// about (the default executor, the async-generator registry). Created on first use, dropped
// when the loop closes, after T::on_loop_close() has run on the closing thread.
// get() must only be called on the loop's own thread (it registers an at_close callback);
// find() may be called anywhere. It must never hand out state for a closed loop.
#pragma once

#include <memory>
#include <mutex>
#include <unordered_map>

#include "corio/event_loop.hpp"

namespace corio::detail {

template <class T>
class LoopLocal {
 public:
  // The T of `loop`, created on first use; nullptr when the loop is already closed.
  static std::shared_ptr<T> get(EventLoop& loop) {
    if (std::shared_ptr<T> found = find(loop)) return found;
    if (loop.is_closed()) return nullptr;
    auto value = std::make_shared<T>(loop);
    {
      Registry& r = registry();
      std::lock_guard lock(r.mutex);
      r.map.emplace(&loop, value);
    }
    loop.at_close([&loop] {
      std::shared_ptr<T> closing;
      {
        Registry& r = registry();
        std::lock_guard lock(r.mutex);
        auto it = r.map.find(&loop);
        if (it == r.map.end()) return;
        closing = std::move(it->second);
        r.map.erase(it);
      }
      closing->on_loop_close();
    });
    return value;
  }

  // The T of `loop` if it was created and the loop is not closed yet.
  static std::shared_ptr<T> find(const EventLoop& loop) {
    Registry& r = registry();
    std::lock_guard lock(r.mutex);
    auto it = r.map.find(&loop);
    return it == r.map.end() ? nullptr : it->second;
  }

 private:
  // Keyed by address: an entry is erased when its loop closes, before the address can be
  // reused by another loop. Loops run on different threads, hence the mutex (get and find
  // are rare: once per executor job set-up or generator, not per step).
  struct Registry {
    std::mutex mutex;
    std::unordered_map<const EventLoop*, std::shared_ptr<T>> map;
  };
  // Never destroyed: a loop may close during static destruction.
  static Registry& registry() {
    static Registry* r = new Registry;
    return *r;
  }
};

}  // namespace corio::detail
