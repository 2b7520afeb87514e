// Lock, Event, Condition, Semaphore, BoundedSemaphore, Barrier and LockGuard: asyncio's rules,
// FIFO fairness, cancellation at every suspension point (including a cancel landing in the
// iteration a waiter is woken), and no allocation on the uncontended and waiting paths.
// This binary replaces the global operator new to count allocations.
#include <gtest/gtest.h>

#include <corio/corio.hpp>
#include <corio/locks.hpp>
#include "virtual_time_harness.hpp"

#include <cstdlib>
#include <memory>
#include <new>
#include <string>
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

Coro<void> tick(int n = 1) {
  for (int i = 0; i < n; ++i) co_await sleep(0);
}

double now() {
  return get_running_loop().time();
}

// Awaits a task that is expected to end with CancelledError.
template <class T>
Coro<bool> ended_cancelled(Task<T>& task) {
  try {
    co_await task;
  } catch (const CancelledError&) {
    co_return true;
  }
  co_return false;
}

// --- Event ----------------------------------------------------------------------------------

Coro<void> event_waiter(Event& e, std::vector<std::string>& log, std::string name) {
  try {
    co_await e.wait();
    log.push_back(name + "@" + std::to_string(static_cast<int>(now())));
  } catch (const CancelledError&) {
    log.push_back(name + " cancelled");
    throw;
  }
}

Coro<void> set_later(Event& e, double delay) {
  co_await sleep(delay);
  e.set();
}

TEST(Event, SetWakesEveryWaiterInOrder) {
  run_test([]() -> Coro<void> {
    Event e;
    std::vector<std::string> log;
    auto a = create_task(event_waiter(e, log, "a"));
    auto b = create_task(event_waiter(e, log, "b"));
    auto c = create_task(event_waiter(e, log, "c"));
    auto setter = create_task(set_later(e, 2));
    co_await a;
    co_await b;
    co_await c;
    co_await setter;
    EXPECT_EQ(log, (std::vector<std::string>{"a@2", "b@2", "c@2"}));
    EXPECT_TRUE(e.is_set());
  }());
}

TEST(Event, WaitOnASetEventDoesNotSuspendAndClearRearms) {
  run_test([]() -> Coro<void> {
    Event e;
    EXPECT_FALSE(e.is_set());
    e.set();
    EXPECT_TRUE(e.wait().await_ready());
    const bool result = co_await e.wait();
    EXPECT_TRUE(result);
    e.clear();
    EXPECT_FALSE(e.is_set());
    std::vector<std::string> log;
    auto a = create_task(event_waiter(e, log, "a"));
    co_await sleep(1);
    EXPECT_FALSE(a.done());
    e.set();
    co_await a;
    EXPECT_EQ(log, std::vector<std::string>{"a@1"});
  }());
}

TEST(Event, CancelledWaiterLeavesOthersWaiting) {
  run_test([]() -> Coro<void> {
    Event e;
    std::vector<std::string> log;
    auto a = create_task(event_waiter(e, log, "a"));
    auto b = create_task(event_waiter(e, log, "b"));
    co_await sleep(1);
    a.cancel();
    const bool cancelled = co_await ended_cancelled(a);
    EXPECT_TRUE(cancelled);
    EXPECT_FALSE(b.done());
    e.set();
    co_await b;
    EXPECT_EQ(log, (std::vector<std::string>{"a cancelled", "b@1"}));
  }());
}

TEST(Event, WaiterCancelledAsItIsWokenSeesCancelledError) {
  run_test([]() -> Coro<void> {
    Event e;
    std::vector<std::string> log;
    auto a = create_task(event_waiter(e, log, "a"));
    auto b = create_task(event_waiter(e, log, "b"));
    co_await tick();
    e.set();
    a.cancel();  // same iteration: asyncio raises CancelledError in a
    co_await b;
    const bool cancelled = co_await ended_cancelled(a);
    EXPECT_TRUE(cancelled);
    EXPECT_EQ(log, (std::vector<std::string>{"a cancelled", "b@0"}));
  }());
}

TEST(Event, DestroyedEventWakesWaitersWithRuntimeError) {
  run_test([]() -> Coro<void> {
    auto e = std::make_unique<Event>();
    std::string outcome;
    auto t = create_task([](Event& e, std::string& outcome) -> Coro<void> {
      try {
        co_await e.wait();
      } catch (const RuntimeError&) {
        outcome = "runtime error";
      }
    }(*e, outcome));
    co_await tick();
    e.reset();
    co_await t;
    EXPECT_EQ(outcome, "runtime error");
  }());
}

// --- Lock ------------------------------------------------------------------------------------

Coro<void> hold_lock(Lock& lock, std::vector<std::string>& log, std::string name, double hold) {
  try {
    co_await lock.acquire();
  } catch (const CancelledError&) {
    log.push_back(name + " cancelled");
    throw;
  }
  log.push_back(name + "@" + std::to_string(static_cast<int>(now())));
  EXPECT_TRUE(lock.locked());
  co_await sleep(hold);
  lock.release();
}

TEST(Lock, UncontendedAcquireDoesNotSuspendOrAllocate) {
  run_test([]() -> Coro<void> {
    Lock lock;
    bool other_ran = false;
    auto other = create_task([](bool& ran) -> Coro<void> {
      ran = true;
      co_return;
    }(other_ran));
    const std::size_t before = g_allocations;
    for (int i = 0; i < 1000; ++i) {
      auto acquire = lock.acquire();
      EXPECT_TRUE(acquire.await_ready());  // checked before co_await: this is the fast path
      EXPECT_TRUE(lock.locked());
      lock.release();
      co_await lock.acquire();
      lock.release();
    }
    EXPECT_EQ(g_allocations - before, 0u);
    EXPECT_FALSE(other_ran);  // never suspended, so the other task never got to run
    EXPECT_FALSE(lock.locked());
    co_await other;
  }());
}

TEST(Lock, ReleasingAnUnlockedLockRaisesRuntimeError) {
  Lock lock;
  EXPECT_THROW(lock.release(), RuntimeError);
}

TEST(Lock, MutualExclusionInArrivalOrder) {
  run_test([]() -> Coro<void> {
    Lock lock;
    std::vector<std::string> log;
    auto a = create_task(hold_lock(lock, log, "a", 1));
    auto b = create_task(hold_lock(lock, log, "b", 1));
    auto c = create_task(hold_lock(lock, log, "c", 1));
    co_await a;
    co_await b;
    co_await c;
    EXPECT_EQ(log, (std::vector<std::string>{"a@0", "b@1", "c@2"}));
    EXPECT_FALSE(lock.locked());
  }());
}

TEST(Lock, ANewcomerQueuesBehindTheWokenWaiter) {
  run_test([]() -> Coro<void> {
    Lock lock;
    std::vector<std::string> log;
    co_await lock.acquire();
    auto b = create_task(hold_lock(lock, log, "b", 1));
    co_await tick();
    lock.release();               // promised to b, which has not run yet
    EXPECT_FALSE(lock.locked());  // as asyncio: unlocked, but...
    auto acquire = lock.acquire();
    EXPECT_FALSE(acquire.await_ready());  // ...a newcomer may not barge in
    auto x = create_task(hold_lock(lock, log, "x", 1));
    co_await b;
    co_await x;
    EXPECT_EQ(log, (std::vector<std::string>{"b@0", "x@1"}));
  }());
}

TEST(Lock, CancelledWaiterLeavesTheQueue) {
  run_test([]() -> Coro<void> {
    Lock lock;
    std::vector<std::string> log;
    co_await lock.acquire();
    auto b = create_task(hold_lock(lock, log, "b", 1));
    auto c = create_task(hold_lock(lock, log, "c", 1));
    co_await sleep(1);
    b.cancel();
    co_await tick();
    lock.release();
    co_await c;
    const bool cancelled = co_await ended_cancelled(b);
    EXPECT_TRUE(cancelled);
    EXPECT_EQ(log, (std::vector<std::string>{"b cancelled", "c@1"}));
  }());
}

TEST(Lock, WaiterCancelledAsItIsWokenHandsTheLockOn) {
  run_test([]() -> Coro<void> {
    Lock lock;
    std::vector<std::string> log;
    co_await lock.acquire();
    auto b = create_task(hold_lock(lock, log, "b", 1));
    auto c = create_task(hold_lock(lock, log, "c", 1));
    co_await tick();
    lock.release();  // wakes b
    b.cancel();      // before b runs
    co_await c;
    const bool cancelled = co_await ended_cancelled(b);
    EXPECT_TRUE(cancelled);
    EXPECT_EQ(log, (std::vector<std::string>{"b cancelled", "c@0"}));
    EXPECT_FALSE(lock.locked());
  }());
}

TEST(Lock, WaiterCancelledAsItIsWokenWithNobodyBehindLeavesItFree) {
  run_test([]() -> Coro<void> {
    Lock lock;
    std::vector<std::string> log;
    co_await lock.acquire();
    auto b = create_task(hold_lock(lock, log, "b", 1));
    co_await tick();
    lock.release();
    b.cancel();
    const bool cancelled = co_await ended_cancelled(b);
    EXPECT_TRUE(cancelled);
    EXPECT_FALSE(lock.locked());
    EXPECT_TRUE(lock.acquire().await_ready());  // the fast path works again
    lock.release();
  }());
}

TEST(Lock, WaitingAllocatesNothing) {
  run_test([]() -> Coro<void> {
    Lock lock;
    std::size_t during_wait = 99;
    co_await lock.acquire();
    auto b = create_task([](Lock& lock, std::size_t& allocations) -> Coro<void> {
      const std::size_t before = g_allocations;
      co_await lock.acquire();  // suspends: the wait node lives in this frame
      allocations = g_allocations - before;
      lock.release();
    }(lock, during_wait));
    co_await tick();
    lock.release();
    co_await b;
    EXPECT_EQ(during_wait, 0u);
  }());
}

TEST(Lock, ScopedGuardReleasesOnScopeExitAndOnException) {
  run_test([]() -> Coro<void> {
    Lock lock;
    {
      auto guard = co_await lock.scoped();
      EXPECT_TRUE(guard.owns_lock());
      EXPECT_TRUE(lock.locked());
    }
    EXPECT_FALSE(lock.locked());
    try {
      auto guard = co_await lock.scoped();
      throw ValueError("boom");
    } catch (const ValueError&) {
    }
    EXPECT_FALSE(lock.locked());
    {
      auto guard = co_await lock.scoped();
      guard.unlock();  // early release
      EXPECT_FALSE(lock.locked());
      EXPECT_FALSE(guard.owns_lock());
    }
    {
      co_await lock.acquire();
      LockGuard<Lock> adopted(lock, adopt_lock);
      LockGuard<Lock> moved = std::move(adopted);
      EXPECT_FALSE(adopted.owns_lock());
      EXPECT_TRUE(moved.owns_lock());
    }
    EXPECT_FALSE(lock.locked());
  }());
}

Coro<void> guarded_section(Lock& lock, std::vector<std::string>& log, std::string name) {
  auto guard = co_await lock.scoped();
  log.push_back(name + " in");
  co_await sleep(1);
  log.push_back(name + " out");
}

TEST(Lock, ScopedGuardSerializesTasksAndReleasesOnCancellation) {
  run_test([]() -> Coro<void> {
    Lock lock;
    std::vector<std::string> log;
    auto a = create_task(guarded_section(lock, log, "a"));
    auto b = create_task(guarded_section(lock, log, "b"));
    auto c = create_task(guarded_section(lock, log, "c"));
    co_await sleep(0.5);
    a.cancel();  // cancelled inside its section: the guard must release for b
    co_await b;
    co_await c;
    const bool cancelled = co_await ended_cancelled(a);
    EXPECT_TRUE(cancelled);
    EXPECT_EQ(log, (std::vector<std::string>{"a in", "b in", "b out", "c in", "c out"}));
    EXPECT_DOUBLE_EQ(now(), 2.5);
  }());
}

// --- Semaphore -------------------------------------------------------------------------------

Coro<void> use_permit(Semaphore& s, std::vector<std::string>& log, std::string name, double hold) {
  try {
    co_await s.acquire();
  } catch (const CancelledError&) {
    log.push_back(name + " cancelled");
    throw;
  }
  log.push_back(name + "@" + std::to_string(static_cast<int>(now())));
  co_await sleep(hold);
  s.release();
}

TEST(Semaphore, NegativeValueIsAValueError) {
  EXPECT_THROW(Semaphore(-1), ValueError);
  EXPECT_THROW(BoundedSemaphore(-1), ValueError);
  Semaphore zero(0);
  EXPECT_TRUE(zero.locked());
}

TEST(Semaphore, LimitsConcurrencyInArrivalOrder) {
  run_test([]() -> Coro<void> {
    Semaphore s(2);
    std::vector<std::string> log;
    std::vector<Task<void>> tasks;
    for (const char* name : {"a", "b", "c", "d", "e"})
      tasks.push_back(create_task(use_permit(s, log, name, 1)));
    for (auto& t : tasks) co_await t;
    EXPECT_EQ(log, (std::vector<std::string>{"a@0", "b@0", "c@1", "d@1", "e@2"}));
    EXPECT_FALSE(s.locked());
  }());
}

TEST(Semaphore, UncontendedAcquireDoesNotSuspendOrAllocate) {
  run_test([]() -> Coro<void> {
    Semaphore s(3);
    const std::size_t before = g_allocations;
    for (int i = 0; i < 100; ++i) {
      co_await s.acquire();
      co_await s.acquire();
      s.release();
      s.release();
    }
    EXPECT_EQ(g_allocations - before, 0u);
  }());
}

TEST(Semaphore, PermitGoesToTheWaiterNotToANewcomer) {
  run_test([]() -> Coro<void> {
    Semaphore s(1);
    std::vector<std::string> log;
    co_await s.acquire();
    auto b = create_task(use_permit(s, log, "b", 1));
    co_await tick();
    s.release();                 // the permit is handed to b now
    EXPECT_TRUE(s.locked());     // so the semaphore stays locked...
    auto acquire = s.acquire();  // ...and a newcomer must wait
    EXPECT_FALSE(acquire.await_ready());
    auto x = create_task(use_permit(s, log, "x", 1));
    co_await b;
    co_await x;
    EXPECT_EQ(log, (std::vector<std::string>{"b@0", "x@1"}));
  }());
}

TEST(Semaphore, WaiterCancelledAsItIsWokenHandsThePermitOn) {
  run_test([]() -> Coro<void> {
    Semaphore s(0);
    std::vector<std::string> log;
    auto b = create_task(use_permit(s, log, "b", 1));
    auto c = create_task(use_permit(s, log, "c", 1));
    co_await tick();
    s.release();  // hands the permit to b
    b.cancel();   // before b runs
    co_await c;
    const bool cancelled = co_await ended_cancelled(b);
    EXPECT_TRUE(cancelled);
    EXPECT_EQ(log, (std::vector<std::string>{"b cancelled", "c@0"}));
    // c released its permit: exactly one is left.
    co_await s.acquire();
    EXPECT_TRUE(s.locked());
    s.release();
  }());
}

TEST(Semaphore, WaiterCancelledAsItIsWokenGivesThePermitBack) {
  run_test([]() -> Coro<void> {
    Semaphore s(0);
    std::vector<std::string> log;
    auto b = create_task(use_permit(s, log, "b", 1));
    co_await tick();
    s.release();
    b.cancel();
    const bool cancelled = co_await ended_cancelled(b);
    EXPECT_TRUE(cancelled);
    EXPECT_FALSE(s.locked());  // the permit came back
    co_await s.acquire();
    EXPECT_TRUE(s.locked());
  }());
}

TEST(Semaphore, CancelledWaitingAcquirerConsumesNoPermit) {
  run_test([]() -> Coro<void> {
    Semaphore s(0);
    std::vector<std::string> log;
    auto b = create_task(use_permit(s, log, "b", 1));
    auto c = create_task(use_permit(s, log, "c", 1));
    co_await sleep(1);
    b.cancel();
    co_await tick();
    s.release();
    co_await c;
    const bool cancelled = co_await ended_cancelled(b);
    EXPECT_TRUE(cancelled);
    EXPECT_EQ(log, (std::vector<std::string>{"b cancelled", "c@1"}));
    EXPECT_FALSE(s.locked());
  }());
}

TEST(Semaphore, BoundedSemaphoreRejectsOverRelease) {
  run_test([]() -> Coro<void> {
    BoundedSemaphore b(2);
    EXPECT_THROW(b.release(), ValueError);
    co_await b.acquire();
    b.release();
    EXPECT_THROW(b.release(), ValueError);

    Semaphore plain(1);
    plain.release();  // an unbounded Semaphore may grow
    co_await plain.acquire();
    co_await plain.acquire();
    EXPECT_TRUE(plain.locked());
  }());
}

TEST(Semaphore, ScopedGuard) {
  run_test([]() -> Coro<void> {
    BoundedSemaphore s(1);
    {
      auto guard = co_await s.scoped();
      EXPECT_TRUE(s.locked());
    }
    EXPECT_FALSE(s.locked());
    EXPECT_THROW(s.release(), ValueError);  // the guard released exactly once
  }());
}

// --- Condition -------------------------------------------------------------------------------

Coro<void> cond_waiter(Condition& cond, std::vector<std::string>& log, std::string name) {
  auto guard = co_await cond.scoped();
  try {
    co_await cond.wait();
  } catch (const CancelledError&) {
    log.push_back(name + " cancelled, locked=" + (cond.locked() ? "yes" : "no"));
    throw;
  }
  EXPECT_TRUE(cond.locked());
  log.push_back(name + "@" + std::to_string(static_cast<int>(now())));
}

TEST(Condition, WaitAndNotifyNeedTheLock) {
  run_test([]() -> Coro<void> {
    Condition cond;
    EXPECT_THROW(cond.notify(), RuntimeError);
    EXPECT_THROW(cond.notify_all(), RuntimeError);
    bool raised = false;
    try {
      co_await cond.wait();
    } catch (const RuntimeError&) {
      raised = true;
    }
    EXPECT_TRUE(raised);
    EXPECT_FALSE(cond.locked());
  }());
}

TEST(Condition, NotifyWakesWaitersInOrderWithTheLockHeld) {
  run_test([]() -> Coro<void> {
    Condition cond;
    std::vector<std::string> log;
    std::vector<Task<void>> tasks;
    for (const char* name : {"a", "b", "c", "d"})
      tasks.push_back(create_task(cond_waiter(cond, log, name)));
    co_await sleep(1);
    EXPECT_FALSE(cond.locked());  // every waiter released the lock while waiting
    {
      auto guard = co_await cond.scoped();
      cond.notify();
      co_await sleep(1);  // a cannot proceed while we hold the lock
      EXPECT_TRUE(log.empty());
    }
    co_await tick(3);
    EXPECT_EQ(log, std::vector<std::string>{"a@2"});
    {
      auto guard = co_await cond.scoped();
      cond.notify(2);
    }
    co_await tick(3);
    EXPECT_EQ(log, (std::vector<std::string>{"a@2", "b@2", "c@2"}));
    {
      auto guard = co_await cond.scoped();
      cond.notify_all();
      cond.notify_all();  // nobody left to wake: a no-op
    }
    for (auto& t : tasks) co_await t;
    EXPECT_EQ(log, (std::vector<std::string>{"a@2", "b@2", "c@2", "d@2"}));
  }());
}

TEST(Condition, CancelledWaitTakesTheLockBackBeforeRaising) {
  run_test([]() -> Coro<void> {
    Condition cond;
    std::vector<std::string> log;
    auto a = create_task(cond_waiter(cond, log, "a"));
    co_await sleep(1);
    co_await cond.acquire();
    a.cancel();
    co_await sleep(1);
    EXPECT_TRUE(log.empty());  // a waits for the lock before it raises
    EXPECT_FALSE(a.done());
    cond.release();
    const bool cancelled = co_await ended_cancelled(a);
    EXPECT_TRUE(cancelled);
    EXPECT_EQ(log, std::vector<std::string>{"a cancelled, locked=yes"});
    EXPECT_FALSE(cond.locked());  // a's guard released it while unwinding
  }());
}

TEST(Condition, CancellationWhileReacquiringIsDeliveredOnceTheLockIsHeld) {
  run_test([]() -> Coro<void> {
    Condition cond;
    std::vector<std::string> log;
    auto a = create_task(cond_waiter(cond, log, "a"));
    co_await sleep(1);
    co_await cond.acquire();
    cond.notify();  // a now waits for the lock
    co_await tick(2);
    a.cancel();  // cancelled in the lock phase
    a.cancel();  // twice: still a single CancelledError
    co_await tick(2);
    EXPECT_FALSE(a.done());
    cond.release();
    const bool cancelled = co_await ended_cancelled(a);
    EXPECT_TRUE(cancelled);
    EXPECT_EQ(log, std::vector<std::string>{"a cancelled, locked=yes"});
    EXPECT_FALSE(cond.locked());
  }());
}

TEST(Condition, WaiterCancelledAsItIsNotifiedHandsTheNotificationOn) {
  run_test([]() -> Coro<void> {
    Condition cond;
    std::vector<std::string> log;
    auto a = create_task(cond_waiter(cond, log, "a"));
    auto b = create_task(cond_waiter(cond, log, "b"));
    auto c = create_task(cond_waiter(cond, log, "c"));
    co_await sleep(1);
    {
      auto guard = co_await cond.scoped();
      cond.notify(1);  // meant for a...
      a.cancel();      // ...which is cancelled before it runs
    }
    co_await tick(4);
    const bool cancelled = co_await ended_cancelled(a);
    EXPECT_TRUE(cancelled);
    // b got the notification a could not use; c still waits.
    EXPECT_EQ(log, (std::vector<std::string>{"a cancelled, locked=yes", "b@1"}));
    EXPECT_FALSE(c.done());
    {
      auto guard = co_await cond.scoped();
      cond.notify();
    }
    co_await b;
    co_await c;
  }());
}

TEST(Condition, CancelledWaiterThatWasNotNotifiedWakesNobody) {
  run_test([]() -> Coro<void> {
    Condition cond;
    std::vector<std::string> log;
    auto a = create_task(cond_waiter(cond, log, "a"));
    auto b = create_task(cond_waiter(cond, log, "b"));
    co_await sleep(1);
    a.cancel();
    co_await tick(3);
    EXPECT_EQ(log, std::vector<std::string>{"a cancelled, locked=yes"});
    EXPECT_FALSE(b.done());  // no spurious wake-up for b
    {
      auto guard = co_await cond.scoped();
      cond.notify();
    }
    co_await b;
    const bool cancelled = co_await ended_cancelled(a);
    EXPECT_TRUE(cancelled);
  }());
}

Coro<int> wait_for_value(Condition& cond, int& value, int wanted, int& tests) {
  auto guard = co_await cond.scoped();
  const int seen = co_await cond.wait_for([&] {
    ++tests;
    return value >= wanted ? value : 0;
  });
  EXPECT_TRUE(cond.locked());
  co_return seen;
}

TEST(Condition, WaitForRetestsThePredicateOnEveryNotification) {
  run_test([]() -> Coro<void> {
    Condition cond;
    int value = 0;
    int tests = 0;
    auto t = create_task(wait_for_value(cond, value, 3, tests));
    co_await tick();
    EXPECT_EQ(tests, 1);  // tested once before waiting
    for (int i = 1; i <= 3; ++i) {
      auto guard = co_await cond.scoped();
      value = i;
      cond.notify_all();
      guard.unlock();
      co_await tick(2);
      EXPECT_EQ(tests, i + 1);
      EXPECT_EQ(t.done(), i == 3);
    }
    const int seen = co_await t;
    EXPECT_EQ(seen, 3);  // wait_for returns the predicate's value
    EXPECT_FALSE(cond.locked());
  }());
}

TEST(Condition, WaitForReturnsAtOnceWhenThePredicateHolds) {
  run_test([]() -> Coro<void> {
    Condition cond;
    // Like asyncio, a true predicate returns without touching the lock (not even held here).
    const bool ok = co_await cond.wait_for([] { return true; });
    EXPECT_TRUE(ok);
    bool raised = false;
    try {
      co_await cond.wait_for([] { return false; });
    } catch (const RuntimeError&) {
      raised = true;  // false predicate: must wait, and the lock is not held
    }
    EXPECT_TRUE(raised);
  }());
}

TEST(Condition, WaitForPropagatesThePredicatesException) {
  run_test([]() -> Coro<void> {
    Condition cond;
    int calls = 0;
    std::string outcome;
    auto t = create_task([](Condition& cond, int& calls, std::string& outcome) -> Coro<void> {
      auto guard = co_await cond.scoped();
      try {
        co_await cond.wait_for([&] {
          if (++calls == 2) throw ValueError("bad predicate");
          return false;
        });
      } catch (const ValueError&) {
        outcome = cond.locked() ? "error with lock" : "error without lock";
      }
    }(cond, calls, outcome));
    co_await tick();
    {
      auto guard = co_await cond.scoped();
      cond.notify();
    }
    co_await t;
    EXPECT_EQ(outcome, "error with lock");
    EXPECT_FALSE(cond.locked());
  }());
}

TEST(Condition, WaitForCancelledWhileWaitingReleasesCleanly) {
  run_test([]() -> Coro<void> {
    Condition cond;
    int value = 0, tests = 0;
    auto t = create_task(wait_for_value(cond, value, 1, tests));
    co_await sleep(1);
    t.cancel();
    const bool cancelled = co_await ended_cancelled(t);
    EXPECT_TRUE(cancelled);
    EXPECT_FALSE(cond.locked());
    EXPECT_EQ(tests, 1);  // cancelled: the predicate was not retested
  }());
}

TEST(Condition, SharesAnExternalLock) {
  run_test([]() -> Coro<void> {
    Lock lock;
    Condition cond(lock);
    std::vector<std::string> log;
    auto a = create_task(cond_waiter(cond, log, "a"));
    co_await sleep(1);
    co_await lock.acquire();
    EXPECT_TRUE(cond.locked());
    cond.notify();
    lock.release();
    co_await a;
    EXPECT_EQ(log, std::vector<std::string>{"a@1"});
    EXPECT_FALSE(lock.locked());
  }());
}

TEST(Condition, WaitingAllocatesNothing) {
  run_test([]() -> Coro<void> {
    Condition cond;
    std::size_t during_wait = 99;
    auto t = create_task([](Condition& cond, std::size_t& allocations) -> Coro<void> {
      co_await cond.acquire();
      const std::size_t before = g_allocations;
      co_await cond.wait();
      allocations = g_allocations - before;
      cond.release();
    }(cond, during_wait));
    co_await tick();
    co_await cond.acquire();
    cond.notify();
    cond.release();
    co_await t;
    EXPECT_EQ(during_wait, 0u);
  }());
}

// --- Barrier ---------------------------------------------------------------------------------

Coro<void> party(Barrier& barrier, double arrive, std::vector<std::string>& log, std::string name,
                 std::size_t* index = nullptr) {
  if (arrive > 0) co_await sleep(arrive);  // 0: wait on the barrier in the task's first step
  try {
    const std::size_t i = co_await barrier.wait();
    if (index) *index = i;
    log.push_back(name + " passed@" + std::to_string(static_cast<int>(now())));
  } catch (const BrokenBarrierError&) {
    log.push_back(name + " broken@" + std::to_string(static_cast<int>(now())));
  } catch (const CancelledError&) {
    log.push_back(name + " cancelled");
    throw;
  }
}

TEST(Barrier, PartiesMustBePositive) {
  EXPECT_THROW(Barrier(0), ValueError);
}

TEST(Barrier, ReleasesEveryPartyWhenTheLastArrives) {
  run_test([]() -> Coro<void> {
    Barrier barrier(3);
    EXPECT_EQ(barrier.parties(), 3u);
    std::vector<std::string> log;
    std::size_t ia = 9, ib = 9, ic = 9;
    auto a = create_task(party(barrier, 0, log, "a", &ia));
    auto b = create_task(party(barrier, 1, log, "b", &ib));
    auto c = create_task(party(barrier, 2, log, "c", &ic));
    co_await sleep(1.5);
    EXPECT_EQ(barrier.n_waiting(), 2u);
    co_await a;
    co_await b;
    co_await c;
    // The last to arrive returns first (it never suspends); indices are arrival order.
    EXPECT_EQ(log, (std::vector<std::string>{"c passed@2", "a passed@2", "b passed@2"}));
    EXPECT_EQ(ia, 0u);
    EXPECT_EQ(ib, 1u);
    EXPECT_EQ(ic, 2u);
    EXPECT_EQ(barrier.n_waiting(), 0u);
    EXPECT_FALSE(barrier.broken());
  }());
}

TEST(Barrier, IsCyclic) {
  run_test([]() -> Coro<void> {
    Barrier barrier(2);
    std::vector<std::string> log;
    for (int round = 0; round < 3; ++round) {
      auto a = create_task(party(barrier, 0, log, "a"));
      auto b = create_task(party(barrier, 1, log, "b"));
      co_await a;
      co_await b;
    }
    EXPECT_EQ(log.size(), 6u);
    EXPECT_EQ(log.back(), "a passed@3");
  }());
}

TEST(Barrier, SinglePartyPassesAtOnce) {
  run_test([]() -> Coro<void> {
    Barrier barrier(1);
    const std::size_t first = co_await barrier.wait();
    const std::size_t second = co_await barrier.wait();
    EXPECT_EQ(first, 0u);
    EXPECT_EQ(second, 0u);
  }());
}

TEST(Barrier, AbortBreaksCurrentAndFutureWaitersUntilReset) {
  run_test([]() -> Coro<void> {
    Barrier barrier(3);
    std::vector<std::string> log;
    auto a = create_task(party(barrier, 0, log, "a"));
    auto b = create_task(party(barrier, 0, log, "b"));
    co_await sleep(1);
    barrier.abort();
    EXPECT_TRUE(barrier.broken());
    co_await a;
    co_await b;
    bool raised = false;
    try {
      co_await barrier.wait();
    } catch (const BrokenBarrierError&) {
      raised = true;
    }
    EXPECT_TRUE(raised);
    EXPECT_EQ(log, (std::vector<std::string>{"a broken@1", "b broken@1"}));
    barrier.reset();
    EXPECT_FALSE(barrier.broken());
    log.clear();
    std::vector<Task<void>> round;
    for (const char* n : {"x", "y", "z"}) round.push_back(create_task(party(barrier, 0, log, n)));
    for (auto& t : round) co_await t;
    EXPECT_EQ(log.size(), 3u);
    for (const auto& line : log) EXPECT_NE(line.find("passed"), std::string::npos);
  }());
}

TEST(Barrier, ResetFailsTheCurrentWaitersAndKeepsTheBarrierUsable) {
  run_test([]() -> Coro<void> {
    Barrier barrier(3);
    std::vector<std::string> log;
    auto a = create_task(party(barrier, 0, log, "a"));
    auto b = create_task(party(barrier, 0, log, "b"));
    co_await sleep(1);
    barrier.reset();
    EXPECT_EQ(barrier.n_waiting(), 0u);  // resetting
    co_await a;
    co_await b;
    EXPECT_EQ(log, (std::vector<std::string>{"a broken@1", "b broken@1"}));
    EXPECT_FALSE(barrier.broken());
    log.clear();
    std::vector<Task<void>> round;
    for (const char* n : {"x", "y", "z"}) round.push_back(create_task(party(barrier, 0, log, n)));
    for (auto& t : round) co_await t;
    EXPECT_EQ(log.size(), 3u);
    for (const auto& line : log) EXPECT_NE(line.find("passed"), std::string::npos);
  }());
}

TEST(Barrier, CancelledPartyLeavesWithoutBreakingIt) {
  run_test([]() -> Coro<void> {
    Barrier barrier(2);
    std::vector<std::string> log;
    auto a = create_task(party(barrier, 0, log, "a"));
    co_await sleep(1);
    EXPECT_EQ(barrier.n_waiting(), 1u);
    a.cancel();
    const bool cancelled = co_await ended_cancelled(a);
    EXPECT_TRUE(cancelled);
    EXPECT_EQ(barrier.n_waiting(), 0u);
    EXPECT_FALSE(barrier.broken());
    auto b = create_task(party(barrier, 0, log, "b"));
    auto c = create_task(party(barrier, 1, log, "c"));
    co_await b;
    co_await c;
    EXPECT_EQ(log, (std::vector<std::string>{"a cancelled", "c passed@2", "b passed@2"}));
  }());
}

TEST(Barrier, AbortBeforeReleasedPartiesRunBreaksThemAsInAsyncio) {
  // asyncio decides a waiter's fate when it runs: released, then aborted before it ran, it
  // sees the broken state.
  run_test([]() -> Coro<void> {
    Barrier barrier(2);
    std::vector<std::string> log;
    auto a = create_task(party(barrier, 0, log, "a"));
    co_await tick();
    const std::size_t index = co_await barrier.wait();  // releases a...
    EXPECT_EQ(index, 1u);
    barrier.abort();  // ...and breaks the barrier before a runs
    co_await a;
    EXPECT_EQ(log, std::vector<std::string>{"a broken@0"});
  }());
}

TEST(Barrier, ArrivalsDuringDrainingWaitForTheNextRound) {
  run_test([]() -> Coro<void> {
    Barrier barrier(2);
    std::vector<std::string> log;
    std::size_t ia = 9, ic = 9, id = 9;
    auto a = create_task(party(barrier, 0, log, "a", &ia));
    co_await tick();
    auto c = create_task(party(barrier, 0, log, "c", &ic));  // arrives while draining
    const std::size_t mine = co_await barrier.wait();        // releases a: draining
    EXPECT_EQ(mine, 1u);
    co_await a;
    auto d = create_task(party(barrier, 1, log, "d", &id));
    co_await c;
    co_await d;
    EXPECT_EQ(ia, 0u);
    EXPECT_EQ(ic, 0u);  // counted in the next round
    EXPECT_EQ(id, 1u);
    EXPECT_EQ(log, (std::vector<std::string>{"a passed@0", "d passed@1", "c passed@1"}));
  }());
}

TEST(Barrier, WaitingAllocatesNothing) {
  run_test([]() -> Coro<void> {
    Barrier barrier(2);
    std::size_t during_wait = 99;
    auto t = create_task([](Barrier& barrier, std::size_t& allocations) -> Coro<void> {
      const std::size_t before = g_allocations;
      co_await barrier.wait();
      allocations = g_allocations - before;
    }(barrier, during_wait));
    co_await tick();
    co_await barrier.wait();
    co_await t;
    EXPECT_EQ(during_wait, 0u);
  }());
}

// --- lifetime --------------------------------------------------------------------------------

TEST(Lock, DestroyedLockWakesWaitersWithRuntimeError) {
  run_test([]() -> Coro<void> {
    auto lock = std::make_unique<Lock>();
    co_await lock->acquire();
    std::string outcome;
    auto t = create_task([](Lock& lock, std::string& outcome) -> Coro<void> {
      try {
        co_await lock.acquire();
      } catch (const RuntimeError&) {
        outcome = "runtime error";
      }
    }(*lock, outcome));
    co_await tick();
    lock.reset();
    co_await t;
    EXPECT_EQ(outcome, "runtime error");
  }());
}

Coro<void> own_primitives_and_block(Lock& outer) {
  Lock lock;
  Condition cond;
  Semaphore sem(0);
  Event event;
  Barrier barrier(3);
  std::vector<std::string> log;
  co_await lock.acquire();
  co_await cond.acquire();
  auto t1 = create_task(hold_lock(lock, log, "lock", 1));
  auto t2 = create_task(cond_waiter(cond, log, "cond"));
  auto t3 = create_task(use_permit(sem, log, "sem", 1));
  auto t4 = create_task(event_waiter(event, log, "event"));
  auto t5 = create_task(party(barrier, 0, log, "barrier"));
  co_await outer.acquire();  // blocks until the loop is destroyed
}

TEST(Lock, LoopTeardownWithBlockedWaitersIsClean) {
  // The primitives die with one frame while other tasks wait on them, and a lock that lives
  // on loses its waiter; ASan checks that nothing dangles, whichever frame goes first.
  Lock outer;
  {
    EventLoop loop;
    loop.set_exception_handler([](EventLoop&, const ExceptionContext&) {});
    loop.run_until_complete([](Lock& l) -> Coro<void> { co_await l.acquire(); }(outer));
    auto owner = loop.create_task(own_primitives_and_block(outer));
    loop.run_until_complete(tick(3));
    EXPECT_FALSE(owner.done());
  }
  EXPECT_TRUE(outer.locked());
  outer.release();
  EXPECT_TRUE(outer.acquire().await_ready());  // no stale waiter holds a claim
  outer.release();
}

}  // namespace
}  // namespace corio
