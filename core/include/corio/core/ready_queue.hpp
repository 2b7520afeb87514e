// The FIFO of work that is ready to run on the next loop iteration.
// An item is a plain function pointer and argument, so resuming a coroutine or waking a
// task costs no allocation; the ring only grows, never shrinks, so steady state is free.
// It must never run items itself: the loop decides how many run per iteration.
#pragma once

#include <cstddef>
#include <memory>
#include <utility>

namespace corio::core {

struct ReadyItem {
  void (*run)(void*) = nullptr;
  void* arg = nullptr;
};

class ReadyQueue {
 public:
  ReadyQueue()
      : ring_(std::make_unique<ReadyItem[]>(kInitialCapacity)), mask_(kInitialCapacity - 1) {}

  void push(ReadyItem item) {
    if (size_ == mask_ + 1) grow();
    ring_[(head_ + size_) & mask_] = item;
    ++size_;
  }
  ReadyItem pop() noexcept {
    ReadyItem item = ring_[head_];
    head_ = (head_ + 1) & mask_;
    --size_;
    return item;
  }
  std::size_t size() const noexcept { return size_; }
  bool empty() const noexcept { return size_ == 0; }

  // Moves the `count` items that start `first` places from the front behind all the others,
  // keeping the order within each part (three reversals: no allocation).
  void move_to_back(std::size_t first, std::size_t count) noexcept {
    if (first >= size_ || count == 0 || first + count >= size_) return;
    reverse(first, first + count);
    reverse(first + count, size_);
    reverse(first, size_);
  }

 private:
  static constexpr std::size_t kInitialCapacity = 256;

  void reverse(std::size_t begin, std::size_t end) noexcept {  // positions from the front
    while (begin + 1 < end) {
      std::swap(ring_[(head_ + begin) & mask_], ring_[(head_ + end - 1) & mask_]);
      ++begin;
      --end;
    }
  }

  void grow() {
    const std::size_t capacity = (mask_ + 1) * 2;
    auto bigger = std::make_unique<ReadyItem[]>(capacity);
    for (std::size_t i = 0; i < size_; ++i) bigger[i] = ring_[(head_ + i) & mask_];
    ring_ = std::move(bigger);
    mask_ = capacity - 1;
    head_ = 0;
  }

  std::unique_ptr<ReadyItem[]> ring_;
  std::size_t mask_;
  std::size_t head_ = 0;
  std::size_t size_ = 0;
};

}  // namespace corio::core
