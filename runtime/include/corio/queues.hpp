// asyncio's queues: Queue (FIFO), LifoQueue (LIFO) and PriorityQueue (smallest first), with
// maxsize back-pressure, task_done()/join() accounting and Python 3.13's shutdown().
// A blocked get()/put() waits in arrival order. A wake-up only grants another look at the
// queue, as in CPython: a woken getter re-tests when it would run, so an item taken meanwhile
// by a caller that did not wait sends it back to its place at the head of the line, and a
// getter cancelled after its wake-up hands the wake-up to the next getter (same for putters).
// No item is ever lost to a cancellation: items stay in the queue until get() returns them.
// Waiting allocates nothing (the wait node lives in the awaiter). Not thread-safe, like asyncio.
// A queue must never hand an item to a waiter that has not run yet: items leave the store
// only inside get(), in the task that returns them.
#pragma once

#include <algorithm>
#include <coroutine>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <utility>
#include <vector>

#include "corio/core/errors.hpp"
#include "corio/detail/waiter_list.hpp"
#include "corio/locks.hpp"

namespace corio {

namespace detail {

// Everything about a queue that does not depend on the item type.
class QueueCore {
 public:
  QueueCore(const QueueCore&) = delete;
  QueueCore& operator=(const QueueCore&) = delete;

  // Number of items allowed in the queue; 0 means unbounded.
  std::size_t maxsize() const noexcept { return maxsize_; }
  // Marks one item taken with get() as processed. ValueError when called more times than
  // items were put.
  void task_done();
  // Waits until every item put has been marked done with task_done().
  [[nodiscard]] Event::WaitAwaiter join() noexcept { return finished_.wait(); }
  bool is_shut_down() const noexcept { return shutdown_; }

 protected:
  explicit QueueCore(std::size_t maxsize) : maxsize_(maxsize) { finished_.set(); }

  void item_added();
  // Wakes the first waiter of `list`, if any.
  void wakeup_next(WaiterList& list);
  void wake_all(WaiterList& list);
  // shutdown(immediate=true) dropped `count` items: they count as done.
  void items_dropped(std::size_t count);
  void suspend(Waiter& waiter, WaiterList& list, std::coroutine_handle<> handle,
               core::ReadyItem recheck);
  // From a woken waiter's recheck: queues it again at its place when it is still blocked and
  // not cancelled. false: let the task run.
  bool wait_again(Waiter& waiter, WaiterList& list, bool blocked);
  // await_resume after a suspension. Throws CancelledError, first handing the wake-up on to
  // the next waiter of `list` when this one consumed it and `can_proceed` says it was useful.
  void finish_wait(Waiter& waiter, WaiterList& list, bool can_proceed);

  std::size_t maxsize_;
  std::size_t unfinished_tasks_ = 0;
  std::uint64_t next_ticket_ = 0;
  bool shutdown_ = false;
  Event finished_;  // set exactly when unfinished_tasks_ == 0
  WaiterList getters_;
  WaiterList putters_;
  WaiterList woken_;  // woken getters and putters that have not looked at the queue yet
};

// A ring buffer that grows by doubling and never shrinks, so a queue in steady state
// allocates nothing (std::deque would allocate a block every few hundred items).
template <class T>
class FifoStore {
 public:
  FifoStore() = default;
  FifoStore(FifoStore&& other) noexcept
      : slots_(std::exchange(other.slots_, nullptr)),
        capacity_(std::exchange(other.capacity_, 0)),
        head_(std::exchange(other.head_, 0)),
        size_(std::exchange(other.size_, 0)) {}
  FifoStore& operator=(FifoStore&&) = delete;
  ~FifoStore() {
    clear();
    if (slots_) std::allocator<T>().deallocate(slots_, capacity_);
  }

  void push(T&& item) { emplace(std::move(item)); }
  void push(const T& item) { emplace(item); }
  T pop() {
    T& slot = slots_[head_];
    T item = std::move(slot);
    std::destroy_at(&slot);
    head_ = (head_ + 1) & (capacity_ - 1);
    --size_;
    return item;
  }
  std::size_t size() const noexcept { return size_; }
  void clear() noexcept {
    for (; size_ > 0; --size_) {
      std::destroy_at(&slots_[head_]);
      head_ = (head_ + 1) & (capacity_ - 1);
    }
    head_ = 0;
  }

 private:
  template <class U>
  void emplace(U&& item) {
    if (size_ == capacity_) grow();
    std::construct_at(&slots_[(head_ + size_) & (capacity_ - 1)], std::forward<U>(item));
    ++size_;
  }
  void grow() {
    const std::size_t capacity = capacity_ ? capacity_ * 2 : 16;
    T* bigger = std::allocator<T>().allocate(capacity);
    std::size_t moved = 0;
    try {
      for (; moved < size_; ++moved) {
        std::construct_at(&bigger[moved],
                          std::move_if_noexcept(slots_[(head_ + moved) & (capacity_ - 1)]));
      }
    } catch (...) {
      std::destroy(bigger, bigger + moved);
      std::allocator<T>().deallocate(bigger, capacity);
      throw;
    }
    for (std::size_t i = 0; i < size_; ++i) std::destroy_at(&slots_[(head_ + i) & (capacity_ - 1)]);
    if (slots_) std::allocator<T>().deallocate(slots_, capacity_);
    slots_ = bigger;
    capacity_ = capacity;
    head_ = 0;
  }

  T* slots_ = nullptr;
  std::size_t capacity_ = 0;  // 0 or a power of two
  std::size_t head_ = 0;
  std::size_t size_ = 0;
};

template <class T>
class LifoStore {
 public:
  void push(T&& item) { items_.push_back(std::move(item)); }
  void push(const T& item) { items_.push_back(item); }
  T pop() {
    T item = std::move(items_.back());
    items_.pop_back();
    return item;
  }
  std::size_t size() const noexcept { return items_.size(); }
  void clear() noexcept { items_.clear(); }

 private:
  std::vector<T> items_;
};

// A binary heap that pops the smallest item by `Compare` (Python's heapq order).
template <class T, class Compare>
class HeapStore {
 public:
  explicit HeapStore(Compare compare = Compare()) : compare_(std::move(compare)) {}
  void push(T&& item) {
    items_.push_back(std::move(item));
    std::push_heap(items_.begin(), items_.end(), greater());
  }
  void push(const T& item) {
    items_.push_back(item);
    std::push_heap(items_.begin(), items_.end(), greater());
  }
  T pop() {
    std::pop_heap(items_.begin(), items_.end(), greater());
    T item = std::move(items_.back());
    items_.pop_back();
    return item;
  }
  std::size_t size() const noexcept { return items_.size(); }
  void clear() noexcept { items_.clear(); }

 private:
  // std's heap functions keep the largest on top; inverting the order keeps the smallest.
  auto greater() {
    return [this](const T& a, const T& b) { return compare_(b, a); };
  }
  std::vector<T> items_;
  Compare compare_;
};

}  // namespace detail

template <class T, class Store>
class BasicQueue : public detail::QueueCore {
 public:
  using value_type = T;

  class GetAwaiter {
   public:
    explicit GetAwaiter(BasicQueue& queue) noexcept : queue_(&queue) {}
    bool await_ready() const noexcept { return !queue_->empty() || queue_->shutdown_; }
    void await_suspend(std::coroutine_handle<> handle) {
      queue_->suspend(waiter_, queue_->getters_, handle, {&recheck, this});
    }
    T await_resume() {
      if (waiter_.suspension.begun()) {
        if (waiter_.state == detail::Waiter::State::orphaned) waiter_.throw_orphaned("Queue");
        queue_->finish_wait(waiter_, queue_->getters_, !queue_->empty());
      }
      return queue_->get_nowait();  // QueueShutDown when shut down and empty
    }

   private:
    static void recheck(void* self) {
      auto* awaiter = static_cast<GetAwaiter*>(self);
      detail::Waiter& waiter = awaiter->waiter_;
      if (waiter.state != detail::Waiter::State::orphaned) {
        BasicQueue& queue = *awaiter->queue_;
        if (queue.wait_again(waiter, queue.getters_, queue.empty() && !queue.shutdown_)) return;
      }
      waiter.resume_now();
    }

    BasicQueue* queue_;
    detail::Waiter waiter_;
  };

  class PutAwaiter {
   public:
    PutAwaiter(BasicQueue& queue, T&& item) : queue_(&queue), item_(std::move(item)) {}
    bool await_ready() const noexcept { return queue_->shutdown_ || !queue_->full(); }
    void await_suspend(std::coroutine_handle<> handle) {
      queue_->suspend(waiter_, queue_->putters_, handle, {&recheck, this});
    }
    void await_resume() {
      if (waiter_.suspension.begun()) {
        if (waiter_.state == detail::Waiter::State::orphaned) waiter_.throw_orphaned("Queue");
        queue_->finish_wait(waiter_, queue_->putters_, !queue_->full());
      }
      queue_->put_nowait(std::move(item_));  // QueueShutDown when shut down
    }

   private:
    static void recheck(void* self) {
      auto* awaiter = static_cast<PutAwaiter*>(self);
      detail::Waiter& waiter = awaiter->waiter_;
      if (waiter.state != detail::Waiter::State::orphaned) {
        BasicQueue& queue = *awaiter->queue_;
        if (queue.wait_again(waiter, queue.putters_, queue.full() && !queue.shutdown_)) return;
      }
      waiter.resume_now();
    }

    BasicQueue* queue_;
    T item_;
    detail::Waiter waiter_;
  };

  explicit BasicQueue(std::size_t maxsize = 0, Store store = Store())
      : QueueCore(maxsize), store_(std::move(store)) {}

  std::size_t qsize() const noexcept { return store_.size(); }
  bool empty() const noexcept { return store_.size() == 0; }
  // True when maxsize items are queued; never for an unbounded queue.
  bool full() const noexcept { return maxsize_ > 0 && store_.size() >= maxsize_; }

  // co_await q.put(item): waits while the queue is full. QueueShutDown after shutdown().
  [[nodiscard]] PutAwaiter put(T item) { return PutAwaiter(*this, std::move(item)); }
  // co_await q.get(): waits while the queue is empty. QueueShutDown once shut down and empty.
  [[nodiscard]] GetAwaiter get() noexcept { return GetAwaiter(*this); }

  // QueueFull / QueueShutDown. The rvalue overload moves from `item` only on success.
  void put_nowait(T&& item) {
    check_can_put();
    store_.push(std::move(item));
    item_added();
  }
  void put_nowait(const T& item) {
    check_can_put();
    store_.push(item);
    item_added();
  }
  // QueueEmpty, or QueueShutDown when shut down and empty.
  T get_nowait() {
    if (empty()) {
      if (shutdown_) throw QueueShutDown();
      throw QueueEmpty();
    }
    T item = store_.pop();
    wakeup_next(putters_);
    return item;
  }

  // Python 3.13: put() raises QueueShutDown from now on; get() does once the queue is empty.
  // immediate drops the queued items (counting them as done, which may release join()).
  // Every blocked get() and put() wakes up to look again.
  void shutdown(bool immediate = false) {
    shutdown_ = true;
    if (immediate) {
      const std::size_t dropped = store_.size();
      store_.clear();
      items_dropped(dropped);
    }
    wake_all(getters_);
    wake_all(putters_);
  }

 private:
  void check_can_put() const {
    if (shutdown_) throw QueueShutDown();
    if (full()) throw QueueFull();
  }

  Store store_;
};

// A first in, first out queue (asyncio.Queue).
template <class T>
class Queue : public BasicQueue<T, detail::FifoStore<T>> {
 public:
  explicit Queue(std::size_t maxsize = 0) : BasicQueue<T, detail::FifoStore<T>>(maxsize) {}
};

// Last in, first out (asyncio.LifoQueue).
template <class T>
class LifoQueue : public BasicQueue<T, detail::LifoStore<T>> {
 public:
  explicit LifoQueue(std::size_t maxsize = 0) : BasicQueue<T, detail::LifoStore<T>>(maxsize) {}
};

// Smallest item first by `Compare` (asyncio.PriorityQueue, usually of (priority, data) pairs).
template <class T, class Compare = std::less<T>>
class PriorityQueue : public BasicQueue<T, detail::HeapStore<T, Compare>> {
 public:
  explicit PriorityQueue(std::size_t maxsize = 0, Compare compare = Compare())
      : BasicQueue<T, detail::HeapStore<T, Compare>>(
            maxsize, detail::HeapStore<T, Compare>(std::move(compare))) {}
};

}  // namespace corio
