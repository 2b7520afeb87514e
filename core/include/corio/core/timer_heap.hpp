// An indexed binary min-heap of intrusive timer nodes, ordered by (deadline, arming order).
// It owns no node: callers embed TimerNode in their own objects (a sleeping coroutine's
// frame, a TimerHandle), so arming a timer never allocates once the heap has grown.
// It must never call a node's callback: firing is the loop's job.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "corio/core/clock.hpp"

namespace corio::core {

struct TimerNode {
  static constexpr std::uint32_t kNotArmed = 0xffffffffu;

  Nanos deadline = 0;
  std::uint64_t sequence = 0;  // ties on deadline fire in arming order
  std::uint32_t heap_index = kNotArmed;
  void (*fire)(TimerNode*) = nullptr;
  void* context = nullptr;  // the object that embeds this node, for fire()

  bool armed() const noexcept { return heap_index != kNotArmed; }
};

class TimerHeap {
 public:
  void push(TimerNode* node);
  // Removes an armed node from anywhere in the heap; a node that is not armed is ignored.
  void erase(TimerNode* node) noexcept;
  TimerNode* top() const noexcept { return heap_.empty() ? nullptr : heap_.front(); }
  TimerNode* pop() noexcept;
  std::size_t size() const noexcept { return heap_.size(); }
  bool empty() const noexcept { return heap_.empty(); }

 private:
  static bool earlier(const TimerNode* a, const TimerNode* b) noexcept {
    return a->deadline < b->deadline || (a->deadline == b->deadline && a->sequence < b->sequence);
  }
  void sift_up(std::size_t i) noexcept;
  void sift_down(std::size_t i) noexcept;
  void place(std::size_t i, TimerNode* n) noexcept {
    heap_[i] = n;
    n->heap_index = static_cast<std::uint32_t>(i);
  }

  std::vector<TimerNode*> heap_;
  std::uint64_t next_sequence_ = 0;
};

}  // namespace corio::core
