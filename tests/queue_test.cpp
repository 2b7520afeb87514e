// Queue, LifoQueue, PriorityQueue: ordering, back-pressure, FIFO fairness among waiters,
// cancellation at every suspension point (including the same-iteration wake/cancel race),
// task_done()/join() accounting and 3.13 shutdown(). Sleeps use virtual time.
// This binary replaces the global operator new to count allocations.
#include <gtest/gtest.h>

#include <corio/corio.hpp>
#include <corio/queues.hpp>
#include "virtual_time_harness.hpp"

#include <algorithm>
#include <cstdlib>
#include <memory>
#include <new>
#include <string>
#include <utility>
#include <vector>

namespace {
std::size_t g_allocations = 0;
}

void* operator new(std::size_t size) {
  ++g_allocations;
  if (void* p = std::malloc(size ? size : 1)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept {
  std::free(p);
}
void operator delete(void* p, std::size_t) noexcept {
  std::free(p);
}

namespace corio {
namespace {

using testing_support::kVirtual;
using testing_support::run_test;

template <class T>
Coro<void> getter(Queue<T>& q, std::vector<T>& got, std::string* outcome = nullptr) {
  try {
    got.push_back(co_await q.get());
    if (outcome) *outcome = "got";
  } catch (const CancelledError&) {
    if (outcome) *outcome = "cancelled";
    throw;
  } catch (const QueueShutDown&) {
    if (outcome) *outcome = "shutdown";
  }
}

Coro<void> putter(Queue<int>& q, int item, std::string* outcome = nullptr) {
  try {
    co_await q.put(item);
    if (outcome) *outcome = "put";
  } catch (const CancelledError&) {
    if (outcome) *outcome = "cancelled";
    throw;
  } catch (const QueueShutDown&) {
    if (outcome) *outcome = "shutdown";
  }
}

Coro<void> tick(int n = 1) {
  for (int i = 0; i < n; ++i) co_await sleep(0);
}

// --- ordering and the _nowait API ---------------------------------------------------------

TEST(Queue, FifoLifoAndPriorityOrders) {
  Queue<int> fifo;
  LifoQueue<int> lifo;
  PriorityQueue<int> prio;
  for (int v : {3, 1, 2}) {
    fifo.put_nowait(v);
    lifo.put_nowait(v);
    prio.put_nowait(v);
  }
  EXPECT_EQ(fifo.qsize(), 3u);
  std::vector<int> f, l, p;
  for (int i = 0; i < 3; ++i) {
    f.push_back(fifo.get_nowait());
    l.push_back(lifo.get_nowait());
    p.push_back(prio.get_nowait());
  }
  EXPECT_EQ(f, (std::vector<int>{3, 1, 2}));
  EXPECT_EQ(l, (std::vector<int>{2, 1, 3}));
  EXPECT_EQ(p, (std::vector<int>{1, 2, 3}));
  EXPECT_TRUE(fifo.empty());
}

TEST(Queue, PriorityQueueOfPairsAndCustomComparator) {
  PriorityQueue<std::pair<int, std::string>> jobs;
  jobs.put_nowait({2, "b"});
  jobs.put_nowait({0, "urgent"});
  jobs.put_nowait({1, "a"});
  EXPECT_EQ(jobs.get_nowait().second, "urgent");
  EXPECT_EQ(jobs.get_nowait().second, "a");
  EXPECT_EQ(jobs.get_nowait().second, "b");

  PriorityQueue<int, std::greater<int>> largest_first;
  for (int v : {5, 9, 1, 7}) largest_first.put_nowait(v);
  EXPECT_EQ(largest_first.get_nowait(), 9);
  EXPECT_EQ(largest_first.get_nowait(), 7);
}

TEST(Queue, NowaitErrorsAndCapacity) {
  Queue<int> q(2);
  EXPECT_EQ(q.maxsize(), 2u);
  EXPECT_THROW(q.get_nowait(), QueueEmpty);
  q.put_nowait(1);
  EXPECT_FALSE(q.full());
  q.put_nowait(2);
  EXPECT_TRUE(q.full());
  EXPECT_THROW(q.put_nowait(3), QueueFull);
  EXPECT_EQ(q.qsize(), 2u);

  Queue<int> unbounded;
  for (int i = 0; i < 1000; ++i) unbounded.put_nowait(i);
  EXPECT_FALSE(unbounded.full());
  EXPECT_EQ(unbounded.maxsize(), 0u);
}

TEST(Queue, MoveOnlyItemsSurviveAFailedPutNowait) {
  Queue<std::unique_ptr<int>> q(1);
  q.put_nowait(std::make_unique<int>(1));
  auto item = std::make_unique<int>(2);
  EXPECT_THROW(q.put_nowait(std::move(item)), QueueFull);
  ASSERT_NE(item, nullptr);  // not consumed by the failed put
  EXPECT_EQ(*q.get_nowait(), 1);
  q.put_nowait(std::move(item));
  EXPECT_EQ(*q.get_nowait(), 2);
}

TEST(Queue, FifoRingKeepsOrderAcrossWrapAroundAndGrowth) {
  Queue<std::string> q;
  int next_in = 0, next_out = 0;
  for (int round = 0; round < 60; ++round) {
    const int puts = round % 7 + 1 + round / 6;  // grows while it wraps
    for (int k = 0; k < puts; ++k) q.put_nowait(std::to_string(next_in++));
    for (int k = 0; k < round % 5 + 1 && !q.empty(); ++k) {
      EXPECT_EQ(q.get_nowait(), std::to_string(next_out++));
    }
  }
  EXPECT_EQ(q.qsize(), static_cast<std::size_t>(next_in - next_out));
  while (!q.empty()) EXPECT_EQ(q.get_nowait(), std::to_string(next_out++));
  EXPECT_EQ(next_in, next_out);
  for (int i = 0; i < 40; ++i) q.put_nowait(std::string(100, 'x'));  // freed by ~Queue (ASan)
}

struct NoDefault {
  explicit NoDefault(int v) : value(v) {}
  int value;
};

TEST(Queue, ItemsNeedNoDefaultConstructor) {
  Queue<NoDefault> fifo;
  LifoQueue<NoDefault> lifo;
  PriorityQueue<NoDefault, bool (*)(const NoDefault&, const NoDefault&)> prio(
      0, [](const NoDefault& a, const NoDefault& b) { return a.value < b.value; });
  for (int v : {2, 1, 3}) {
    fifo.put_nowait(NoDefault(v));
    lifo.put_nowait(NoDefault(v));
    prio.put_nowait(NoDefault(v));
  }
  EXPECT_EQ(fifo.get_nowait().value, 2);
  EXPECT_EQ(lifo.get_nowait().value, 3);
  EXPECT_EQ(prio.get_nowait().value, 1);
}

TEST(Queue, SteadyStateTrafficAllocatesNothing) {
  run_test([]() -> Coro<void> {
    Queue<int> ping, pong;
    Queue<int> bounded(1);
    auto echo = create_task([](Queue<int>& in, Queue<int>& out) -> Coro<void> {
      for (;;) {
        const int v = co_await in.get();  // waits every time
        if (v < 0) co_return;
        co_await out.put(v);
      }
    }(ping, pong));
    auto drain = create_task([](Queue<int>& q) -> Coro<void> {
      while (co_await q.get() >= 0) {
      }
    }(bounded));
    int v = 0;
    for (int i = 0; i < 1000; ++i) {  // warm up: the rings reach their working size
      co_await ping.put(i);
      v = co_await pong.get();
      co_await bounded.put(i);
    }
    const std::size_t before = g_allocations;
    for (int i = 0; i < 10000; ++i) {
      co_await ping.put(i);
      v = co_await pong.get();
      co_await bounded.put(i);  // back-pressure: the putter waits too
    }
    EXPECT_EQ(g_allocations - before, 0u);
    EXPECT_EQ(v, 9999);
    co_await ping.put(-1);
    co_await bounded.put(-1);
    co_await echo;
    co_await drain;
  }());
}

// --- blocking get/put ---------------------------------------------------------------------

Coro<void> delayed_put(Queue<int>& q, double delay, int item) {
  co_await sleep(delay);
  co_await q.put(item);
}

TEST(Queue, GetWaitsForAnItem) {
  run_test([]() -> Coro<void> {
    Queue<int> q;
    auto producer = create_task(delayed_put(q, 1.5, 42));
    const int item = co_await q.get();
    EXPECT_EQ(item, 42);
    EXPECT_DOUBLE_EQ(get_running_loop().time(), 1.5);
    co_await producer;
  }());
}

Coro<void> slow_consumer(Queue<int>& q, int n, std::vector<int>& got) {
  for (int i = 0; i < n; ++i) {
    co_await sleep(1);
    got.push_back(co_await q.get());
  }
}

TEST(Queue, PutWaitsWhileFull) {
  run_test([]() -> Coro<void> {
    Queue<int> q(2);
    std::vector<int> got;
    std::vector<double> put_times;
    auto consumer = create_task(slow_consumer(q, 5, got));
    for (int i = 0; i < 5; ++i) {
      co_await q.put(i);
      put_times.push_back(get_running_loop().time());
      EXPECT_LE(q.qsize(), 2u);
    }
    co_await consumer;
    EXPECT_EQ(got, (std::vector<int>{0, 1, 2, 3, 4}));
    // Two fit at once; each further put waits for the consumer's next get (one a second).
    EXPECT_EQ(put_times, (std::vector<double>{0, 0, 1, 2, 3}));
  }());
}

TEST(Queue, GettersAreServedInArrivalOrder) {
  run_test([]() -> Coro<void> {
    Queue<int> q;
    std::vector<int> a, b, c;
    auto ta = create_task(getter(q, a));
    auto tb = create_task(getter(q, b));
    auto tc = create_task(getter(q, c));
    co_await tick();
    q.put_nowait(1);
    q.put_nowait(2);
    q.put_nowait(3);
    co_await ta;
    co_await tb;
    co_await tc;
    EXPECT_EQ(a, std::vector<int>{1});
    EXPECT_EQ(b, std::vector<int>{2});
    EXPECT_EQ(c, std::vector<int>{3});
  }());
}

TEST(Queue, PuttersAreServedInArrivalOrder) {
  run_test([]() -> Coro<void> {
    Queue<int> q(1);
    q.put_nowait(0);
    std::vector<Task<void>> putters;
    for (int i = 1; i <= 3; ++i) putters.push_back(create_task(putter(q, i)));
    co_await tick();
    std::vector<int> got;
    for (int i = 0; i < 4; ++i) got.push_back(co_await q.get());
    EXPECT_EQ(got, (std::vector<int>{0, 1, 2, 3}));
    for (auto& t : putters) co_await t;
  }());
}

TEST(Queue, AWokenGetterThatLostTheItemKeepsItsPlace) {
  run_test([]() -> Coro<void> {
    Queue<int> q;
    std::vector<int> a, b;
    auto ta = create_task(getter(q, a));
    auto tb = create_task(getter(q, b));
    co_await tick();
    q.put_nowait(1);               // wakes A...
    EXPECT_EQ(q.get_nowait(), 1);  // ...but a caller that never waited takes it first
    co_await tick();               // A looks, finds nothing, waits again - ahead of B
    EXPECT_FALSE(ta.done());
    q.put_nowait(2);
    q.put_nowait(3);
    co_await ta;
    co_await tb;
    EXPECT_EQ(a, std::vector<int>{2});
    EXPECT_EQ(b, std::vector<int>{3});
  }());
}

// --- cancellation -------------------------------------------------------------------------

TEST(Queue, CancelledWaitingGetterTakesNothing) {
  run_test([]() -> Coro<void> {
    Queue<int> q;
    std::vector<int> a, b;
    std::string outcome;
    auto ta = create_task(getter(q, a, &outcome));
    co_await tick();
    ta.cancel();
    co_await tick();
    EXPECT_TRUE(ta.cancelled());
    EXPECT_EQ(outcome, "cancelled");
    q.put_nowait(7);
    EXPECT_EQ(q.qsize(), 1u);  // nobody took it
    auto tb = create_task(getter(q, b));
    co_await tb;
    EXPECT_EQ(b, std::vector<int>{7});
    EXPECT_TRUE(a.empty());
  }());
}

TEST(Queue, GetterCancelledInTheIterationItIsWokenPassesTheItemOn) {
  run_test([]() -> Coro<void> {
    Queue<int> q;
    std::vector<int> a, b;
    std::string outcome_a;
    auto ta = create_task(getter(q, a, &outcome_a));
    auto tb = create_task(getter(q, b));
    co_await tick();
    q.put_nowait(5);  // wakes A
    ta.cancel();      // before A runs
    co_await tb;      // B must get the item A did not take
    EXPECT_EQ(b, std::vector<int>{5});
    EXPECT_TRUE(a.empty());
    EXPECT_EQ(outcome_a, "cancelled");
    EXPECT_TRUE(ta.cancelled());
    EXPECT_TRUE(q.empty());
  }());
}

TEST(Queue, GetterCancelledAfterWakeWithNoOtherGetterLeavesTheItemQueued) {
  run_test([]() -> Coro<void> {
    Queue<int> q;
    std::vector<int> a;
    auto ta = create_task(getter(q, a));
    co_await tick();
    q.put_nowait(5);
    ta.cancel();
    co_await tick(2);
    EXPECT_TRUE(ta.cancelled());
    EXPECT_EQ(q.qsize(), 1u);
    EXPECT_EQ(q.get_nowait(), 5);
  }());
}

TEST(Queue, PutterCancelledInTheIterationItIsWokenPassesTheSlotOn) {
  run_test([]() -> Coro<void> {
    Queue<int> q(1);
    q.put_nowait(0);
    std::string outcome1, outcome2;
    auto p1 = create_task(putter(q, 10, &outcome1));
    auto p2 = create_task(putter(q, 20, &outcome2));
    co_await tick();
    EXPECT_EQ(q.get_nowait(), 0);  // frees the slot, wakes P1
    p1.cancel();                   // before P1 runs
    co_await p2;
    EXPECT_EQ(outcome1, "cancelled");
    EXPECT_EQ(outcome2, "put");
    EXPECT_EQ(q.qsize(), 1u);
    EXPECT_EQ(q.get_nowait(), 20);  // P1's item never went in
  }());
}

TEST(Queue, CancelledWaitingPutterLeavesNoItem) {
  run_test([]() -> Coro<void> {
    Queue<int> q(1);
    q.put_nowait(0);
    auto p = create_task(putter(q, 1));
    co_await tick();
    p.cancel();
    co_await tick();
    EXPECT_TRUE(p.cancelled());
    EXPECT_EQ(q.get_nowait(), 0);
    co_await tick(2);
    EXPECT_TRUE(q.empty());
  }());
}

Coro<void> self_cancel_then_get(Queue<int>& q, std::vector<std::string>& log) {
  current_task().cancel();
  try {
    const int item = co_await q.get();  // no suspension when an item is there
    log.push_back("got " + std::to_string(item));
  } catch (const CancelledError&) {
    log.push_back("cancelled at get");
    throw;
  }
  try {
    co_await sleep(0);
  } catch (const CancelledError&) {
    log.push_back("cancelled at sleep");
    throw;
  }
}

TEST(Queue, PendingCancellationMeetsGet) {
  run_test([]() -> Coro<void> {
    Queue<int> q;
    std::vector<std::string> log;
    q.put_nowait(1);
    auto t1 = create_task(self_cancel_then_get(q, log));
    co_await tick(2);
    EXPECT_EQ(log, (std::vector<std::string>{"got 1", "cancelled at sleep"}));
    log.clear();
    auto t2 = create_task(self_cancel_then_get(q, log));  // empty queue: get suspends
    co_await tick(2);
    EXPECT_EQ(log, std::vector<std::string>{"cancelled at get"});
    q.put_nowait(2);  // t2 must not be registered as a getter any more
    EXPECT_EQ(q.get_nowait(), 2);
  }());
}

// Many getters, random cancellations: every item is received exactly once or stays queued.
Coro<void> counting_getter(Queue<int>& q, std::vector<int>& received) {
  for (;;) received.push_back(co_await q.get());
}

TEST(Queue, ItemsAreConservedUnderRandomCancellation) {
  run_test([]() -> Coro<void> {
    Queue<int> q(3);
    std::vector<int> received;
    std::vector<Task<void>> getters;
    unsigned seed = 12345;
    auto next = [&seed] { return seed = seed * 1103515245u + 12345u, (seed >> 16) & 0x7fff; };
    for (int i = 0; i < 8; ++i) getters.push_back(create_task(counting_getter(q, received)));
    int produced = 0;
    for (int round = 0; round < 300; ++round) {
      const unsigned n = next() % 4;
      for (unsigned k = 0; k < n && !q.full(); ++k) q.put_nowait(produced++);
      auto& victim = getters[next() % getters.size()];
      if (next() % 3 == 0) {
        victim.cancel();
        victim = create_task(counting_getter(q, received));
      }
      co_await sleep(next() % 2 == 0 ? 0.0 : 0.001);
    }
    co_await tick(3);
    std::vector<int> all = received;
    while (!q.empty()) all.push_back(q.get_nowait());
    std::sort(all.begin(), all.end());
    EXPECT_EQ(all.size(), static_cast<std::size_t>(produced));
    for (int i = 0; i < produced && i < static_cast<int>(all.size()); ++i) EXPECT_EQ(all[i], i);
    for (auto& t : getters) t.cancel();
    for (auto& t : getters) {
      try {
        co_await t;
      } catch (const CancelledError&) {
      }
    }
  }());
}

// --- task_done / join ---------------------------------------------------------------------

Coro<void> worker(Queue<int>& q, std::vector<int>& done) {
  for (;;) {
    const int item = co_await q.get();
    co_await sleep(1);
    done.push_back(item);
    q.task_done();
  }
}

TEST(Queue, JoinWaitsForEveryTaskDone) {
  run_test([]() -> Coro<void> {
    Queue<int> q;
    EXPECT_TRUE(q.join().await_ready());  // nothing unfinished: join does not wait
    std::vector<int> done;
    for (int i = 0; i < 3; ++i) q.put_nowait(i);
    EXPECT_FALSE(q.join().await_ready());
    auto w = create_task(worker(q, done));
    co_await q.join();
    EXPECT_DOUBLE_EQ(get_running_loop().time(), 3.0);
    EXPECT_EQ(done, (std::vector<int>{0, 1, 2}));
    w.cancel();
    try {
      co_await w;
    } catch (const CancelledError&) {
    }
  }());
}

TEST(Queue, GetWithoutTaskDoneKeepsJoinBlocked) {
  run_test([]() -> Coro<void> {
    Queue<int> q;
    q.put_nowait(1);
    q.put_nowait(2);
    (void)q.get_nowait();
    (void)q.get_nowait();
    EXPECT_FALSE(q.join().await_ready());  // taken is not done
    q.task_done();
    EXPECT_FALSE(q.join().await_ready());
    q.task_done();
    EXPECT_TRUE(q.join().await_ready());
    EXPECT_THROW(q.task_done(), ValueError);
    co_return;
  }());
}

TEST(Queue, TaskDoneTooManyTimesRaisesValueError) {
  Queue<int> q;
  EXPECT_THROW(q.task_done(), ValueError);
  q.put_nowait(1);
  q.task_done();  // allowed even before get(), as in asyncio
  EXPECT_THROW(q.task_done(), ValueError);
}

Coro<void> joiner(Queue<int>& q, std::vector<double>& times) {
  co_await q.join();
  times.push_back(get_running_loop().time());
}

TEST(Queue, CancelledJoinDoesNotDisturbOtherJoiners) {
  run_test([]() -> Coro<void> {
    Queue<int> q;
    q.put_nowait(1);
    std::vector<double> times;
    auto j1 = create_task(joiner(q, times));
    auto j2 = create_task(joiner(q, times));
    co_await sleep(1);
    j1.cancel();
    co_await sleep(1);
    q.task_done();
    co_await j2;
    EXPECT_TRUE(j1.cancelled());
    EXPECT_EQ(times, std::vector<double>{2.0});
  }());
}

// --- shutdown (Python 3.13) ---------------------------------------------------------------

TEST(Queue, ShutdownRejectsPutsAndDrainsGets) {
  run_test([]() -> Coro<void> {
    Queue<int> q;
    q.put_nowait(1);
    q.put_nowait(2);
    q.shutdown();
    EXPECT_TRUE(q.is_shut_down());
    EXPECT_THROW(q.put_nowait(3), QueueShutDown);
    bool raised = false;
    try {
      co_await q.put(3);  // not full, still refused
    } catch (const QueueShutDown&) {
      raised = true;
    }
    EXPECT_TRUE(raised);
    const int first = co_await q.get();  // what is queued can still be taken
    EXPECT_EQ(first, 1);
    EXPECT_EQ(q.get_nowait(), 2);
    EXPECT_THROW(q.get_nowait(), QueueShutDown);
    raised = false;
    try {
      (void)co_await q.get();
    } catch (const QueueShutDown&) {
      raised = true;
    }
    EXPECT_TRUE(raised);
  }());
}

TEST(Queue, ShutdownWakesBlockedGettersAndPutters) {
  run_test([]() -> Coro<void> {
    Queue<int> empty_q;
    std::vector<int> got;
    std::string g1, g2;
    auto t1 = create_task(getter(empty_q, got, &g1));
    auto t2 = create_task(getter(empty_q, got, &g2));

    Queue<int> full_q(1);
    full_q.put_nowait(0);
    std::string p1;
    auto t3 = create_task(putter(full_q, 1, &p1));
    co_await sleep(1);
    empty_q.shutdown();
    full_q.shutdown();
    co_await t1;
    co_await t2;
    co_await t3;
    EXPECT_EQ(g1, "shutdown");
    EXPECT_EQ(g2, "shutdown");
    EXPECT_EQ(p1, "shutdown");
    EXPECT_DOUBLE_EQ(get_running_loop().time(), 1.0);
    EXPECT_EQ(full_q.get_nowait(), 0);  // the blocked item never went in
  }());
}

TEST(Queue, ImmediateShutdownDropsItemsAndReleasesJoin) {
  run_test([]() -> Coro<void> {
    Queue<int> q;
    for (int i = 0; i < 3; ++i) q.put_nowait(i);
    std::vector<double> times;
    auto j = create_task(joiner(q, times));
    co_await sleep(1);
    q.shutdown(/*immediate=*/true);
    EXPECT_TRUE(q.empty());
    co_await j;
    EXPECT_EQ(times, std::vector<double>{1.0});
    EXPECT_THROW(q.get_nowait(), QueueShutDown);
    EXPECT_THROW(q.task_done(), ValueError);  // the dropped items counted as done
  }());
}

TEST(Queue, ImmediateShutdownKeepsJoinBlockedForItemsTakenButNotDone) {
  run_test([]() -> Coro<void> {
    Queue<int> q;
    for (int i = 0; i < 3; ++i) q.put_nowait(i);
    (void)q.get_nowait();  // one in progress
    q.shutdown(true);
    EXPECT_FALSE(q.join().await_ready());
    q.task_done();
    EXPECT_TRUE(q.join().await_ready());
    co_return;
  }());
}

TEST(Queue, GetterWokenByAPutThenImmediateShutdownRaises) {
  run_test([]() -> Coro<void> {
    Queue<int> q;
    std::vector<int> got;
    std::string outcome;
    auto t = create_task(getter(q, got, &outcome));
    co_await tick();
    q.put_nowait(1);   // wakes the getter...
    q.shutdown(true);  // ...but the item is dropped before it runs
    co_await t;
    EXPECT_EQ(outcome, "shutdown");
    EXPECT_TRUE(got.empty());
  }());
}

TEST(Queue, GracefulShutdownLetsWaitingWorkersFinish) {
  run_test([]() -> Coro<void> {
    Queue<int> q(2);
    std::vector<int> got;
    std::string outcome;
    auto t =
        create_task([](Queue<int>& q, std::vector<int>& got, std::string& outcome) -> Coro<void> {
          try {
            for (;;) got.push_back(co_await q.get());
          } catch (const QueueShutDown&) {
            outcome = "shutdown";
          }
        }(q, got, outcome));
    co_await q.put(1);
    co_await q.put(2);
    q.shutdown();
    co_await t;
    EXPECT_EQ(got, (std::vector<int>{1, 2}));
    EXPECT_EQ(outcome, "shutdown");
  }());
}

// --- with wait_for (the seed's bounded producer/consumer) -----------------------------------

Coro<void> put_every_second(Queue<int>& q, int n) {
  for (int i = 0; i < n; ++i) {
    co_await sleep(1);
    co_await q.put(i);
  }
}

TEST(Queue, ConsumerExitsWhenWaitForOnGetTimesOut) {
  run_test([]() -> Coro<void> {
    Queue<int> q(5);
    std::vector<int> got;
    auto producer = create_task(put_every_second(q, 3));
    for (;;) {
      try {
        got.push_back(co_await wait_for(q.get(), 5.0));
      } catch (const TimeoutError&) {
        break;
      }
    }
    co_await producer;
    EXPECT_EQ(got, (std::vector<int>{0, 1, 2}));
    EXPECT_DOUBLE_EQ(get_running_loop().time(), 8.0);  // last item at 3 s, then 5 s of nothing
    q.put_nowait(9);                                   // the timed-out getters left no trace
    EXPECT_EQ(q.get_nowait(), 9);
  }());
}

TEST(Queue, TimeoutRacingAPutLosesNoItem) {
  run_test([]() -> Coro<void> {
    Queue<int> q;
    std::vector<int> got;
    int timeouts = 0;
    // The put lands exactly at the deadline: whichever wins, the item is received once.
    auto producer = create_task(put_every_second(q, 1));
    try {
      got.push_back(co_await wait_for(q.get(), 1.0));
    } catch (const TimeoutError&) {
      ++timeouts;
    }
    co_await producer;
    co_await tick(2);
    while (!q.empty()) got.push_back(q.get_nowait());
    EXPECT_EQ(got, std::vector<int>{0});
    EXPECT_LE(timeouts, 1);
  }());
}

Coro<void> wait_inner_then_outer(Queue<int>& outer) {
  Queue<int> inner;  // dies with this frame while another task still waits on it
  std::vector<int> got;
  auto g = create_task(getter(inner, got));
  co_await outer.put(1);  // blocks: outer is full
}

TEST(Queue, LoopTeardownWithBlockedGettersAndPuttersIsClean) {
  // Tasks still blocked when the loop is destroyed are destroyed with it: their wait nodes
  // unlink from queues that live on, and a queue dying in one frame orphans the waiters of
  // another (ASan checks that nothing dangles, whichever frame goes first).
  Queue<int> outer(1);
  outer.put_nowait(0);
  {
    EventLoop loop;
    loop.set_exception_handler(
        [](EventLoop&, const ExceptionContext&) {});  // "destroyed but pending"
    auto a = loop.create_task(wait_inner_then_outer(outer));
    auto b = loop.create_task(putter(outer, 2));
    loop.run_until_complete(tick(3));  // everybody reaches its wait
    EXPECT_FALSE(a.done());
    EXPECT_FALSE(b.done());
  }
  EXPECT_EQ(outer.qsize(), 1u);
  EXPECT_EQ(outer.get_nowait(), 0);
  outer.put_nowait(3);  // no stale waiter is woken
  EXPECT_EQ(outer.get_nowait(), 3);
}

// --- lifetime ------------------------------------------------------------------------------

TEST(Queue, DestroyedQueueWakesItsWaitersWithRuntimeError) {
  run_test([]() -> Coro<void> {
    auto q = std::make_unique<Queue<int>>();
    std::string outcome;
    auto t = create_task([](Queue<int>& q, std::string& outcome) -> Coro<void> {
      try {
        (void)co_await q.get();
      } catch (const RuntimeError&) {
        outcome = "runtime error";
      }
    }(*q, outcome));
    co_await tick();
    q.reset();
    co_await t;
    EXPECT_EQ(outcome, "runtime error");
  }());
}

// --- the asyncq.py shape: producers, consumers, join, cancel the consumers ------------------

Coro<void> produce(Queue<std::pair<int, int>>& q, int id, int n) {
  for (int i = 0; i < n; ++i) {
    co_await sleep(0.1 * (id + 1));
    co_await q.put({id, i});
  }
}

Coro<void> consume(Queue<std::pair<int, int>>& q, std::vector<std::pair<int, int>>& seen) {
  for (;;) {
    auto item = co_await q.get();
    co_await sleep(0.05);
    seen.push_back(item);
    q.task_done();
  }
}

TEST(Queue, ProducersConsumersJoinThenCancel) {
  run_test([]() -> Coro<void> {
    Queue<std::pair<int, int>> q(2);
    std::vector<std::pair<int, int>> seen;
    std::vector<Task<void>> producers, consumers;
    for (int id = 0; id < 3; ++id) producers.push_back(create_task(produce(q, id, 4)));
    for (int c = 0; c < 2; ++c) consumers.push_back(create_task(consume(q, seen)));
    for (auto& p : producers) co_await p;
    co_await q.join();
    EXPECT_EQ(seen.size(), 12u);
    for (auto& c : consumers) c.cancel();
    for (auto& c : consumers) {
      try {
        co_await c;
      } catch (const CancelledError&) {
      }
      EXPECT_TRUE(c.cancelled());
    }
    std::sort(seen.begin(), seen.end());
    for (int id = 0; id < 3; ++id) {
      for (int i = 0; i < 4; ++i) EXPECT_EQ(seen[id * 4 + i], std::make_pair(id, i));
    }
  }());
}

}  // namespace
}  // namespace corio
