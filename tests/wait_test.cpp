// wait() and as_completed(): return_when conditions at exact virtual times, timeouts that
// cancel nothing, cancellation of the waiting task, duplicates, already-done inputs,
// completion order, TimeoutError for what is left, and early abandonment (ASan: no leaks).
#include <gtest/gtest.h>
#include <corio/as_completed.hpp>
#include <corio/corio.hpp>
#include <corio/wait.hpp>

#include <string>
#include <vector>

namespace corio {
namespace {

Runner::Options virtual_time() {
  return {.virtual_time = true};
}
double now() {
  return get_running_loop().time();
}

Coro<int> value_after(double delay, int value) {
  co_await sleep(delay);
  co_return value;
}

Coro<int> fail_after(double delay, std::string what) {
  co_await sleep(delay);
  throw ValueError(what);
}

// Task i sleeps delays[i] and returns i. (Variadic: GCC 12 cannot keep an initializer_list's
// array alive across a co_await in the same expression.)
template <class... D>
std::vector<Task<int>> spawn(D... delays) {
  std::vector<Task<int>> tasks;
  int i = 0;
  (tasks.push_back(create_task(value_after(static_cast<double>(delays), i++))), ...);
  return tasks;
}

TEST(Wait, AllCompleted) {
  auto main = []() -> Coro<void> {
    auto [done, pending] = co_await wait(spawn(1, 3, 2));
    EXPECT_EQ(done.size(), 3u);
    EXPECT_TRUE(pending.empty());
    EXPECT_DOUBLE_EQ(now(), 3.0);
    EXPECT_EQ(done[1].result(), 1);
  };
  run(main(), virtual_time());
}

TEST(Wait, FirstCompletedLeavesTheRestRunning) {
  auto main = []() -> Coro<void> {
    std::vector<Task<int>> tasks = spawn(2, 1, 3);
    auto [done, pending] = co_await wait(tasks, FIRST_COMPLETED);
    EXPECT_DOUBLE_EQ(now(), 1.0);
    EXPECT_EQ(done.size(), 1u);
    EXPECT_EQ(done[0].result(), 1);
    EXPECT_EQ(pending.size(), 2u);
    for (auto& t : pending) EXPECT_FALSE(t.done());
    EXPECT_EQ(co_await pending[1], 2);  // not cancelled: runs to completion
    EXPECT_DOUBLE_EQ(now(), 3.0);
  };
  run(main(), virtual_time());
}

TEST(Wait, FirstException) {
  auto main = []() -> Coro<void> {
    std::vector<Task<int>> tasks{create_task(value_after(1, 0)), create_task(fail_after(2, "x")),
                                 create_task(value_after(3, 2))};
    auto [done, pending] = co_await wait(tasks, no_deadline, FIRST_EXCEPTION);
    EXPECT_DOUBLE_EQ(now(), 2.0);
    EXPECT_EQ(done.size(), 2u);
    EXPECT_EQ(pending.size(), 1u);
    EXPECT_THROW(tasks[1].result(), ValueError);
    co_await pending[0];
  };
  run(main(), virtual_time());
}

TEST(Wait, FirstExceptionWithoutErrorsWaitsForAllAndIgnoresCancellations) {
  auto main = []() -> Coro<void> {
    std::vector<Task<int>> tasks = spawn(1, 2, 5);
    tasks[1].cancel();
    auto [done, pending] = co_await wait(tasks, FIRST_EXCEPTION);
    EXPECT_DOUBLE_EQ(now(), 5.0);
    EXPECT_EQ(done.size(), 3u);
    EXPECT_TRUE(pending.empty());
  };
  run(main(), virtual_time());
}

TEST(Wait, TimeoutReturnsWithoutCancellingOrRaising) {
  auto main = []() -> Coro<void> {
    std::vector<Task<int>> tasks = spawn(1, 5, 7);
    auto [done, pending] = co_await wait(tasks, 2.0);
    EXPECT_DOUBLE_EQ(now(), 2.0);
    EXPECT_EQ(done.size(), 1u);
    EXPECT_EQ(pending.size(), 2u);
    for (auto& t : pending) EXPECT_FALSE(t.cancelled());
    EXPECT_EQ(co_await pending[1], 2);
    EXPECT_DOUBLE_EQ(now(), 7.0);
  };
  run(main(), virtual_time());
}

TEST(Wait, AlreadyDoneStillYieldsOnce) {
  auto main = []() -> Coro<void> {
    Future<int> f = get_running_loop().create_future<int>();
    f.set_result(1);
    bool other_ran = false;
    get_running_loop().call_soon([&] { other_ran = true; });
    std::vector<Future<int>> futures{f};
    auto [done, pending] = co_await wait(futures);
    EXPECT_TRUE(other_ran);
    EXPECT_EQ(done.size(), 1u);
  };
  run(main(), virtual_time());
}

TEST(Wait, DuplicatesCountOnce) {
  auto main = []() -> Coro<void> {
    Task<int> t = create_task(value_after(1, 1));
    std::vector<Task<int>> tasks{t, t, t};
    auto [done, pending] = co_await wait(tasks);
    EXPECT_EQ(done.size(), 1u);
    EXPECT_TRUE(pending.empty());
  };
  run(main(), virtual_time());
}

TEST(Wait, EmptyIsAValueError) {
  auto main = []() -> Coro<void> {
    EXPECT_THROW(co_await wait(std::vector<Task<int>>{}), ValueError);
    co_return;
  };
  run(main(), virtual_time());
}

TEST(Wait, AnyTasksOfDifferentTypes) {
  auto main = []() -> Coro<void> {
    auto text = []() -> Coro<std::string> {
      co_await sleep(2);
      co_return "s";
    };
    std::vector<AnyTask> tasks{create_task(value_after(1, 1)), create_task(text())};
    auto [done, pending] = co_await wait(tasks, FIRST_COMPLETED);
    EXPECT_EQ(done.size(), 1u);
    EXPECT_EQ(pending.size(), 1u);
    EXPECT_EQ(done[0], tasks[0]);
    co_await pending[0];
  };
  run(main(), virtual_time());
}

TEST(Wait, CancellingTheWaiterCancelsNothingElse) {
  auto main = []() -> Coro<void> {
    std::vector<Task<int>> tasks = spawn(5, 6);
    auto waiter = [&]() -> Coro<void> { co_await wait(tasks, 10.0); };
    Task<void> w = create_task(waiter());
    co_await sleep(1);
    w.cancel();
    EXPECT_THROW(co_await w, CancelledError);
    for (auto& t : tasks) EXPECT_FALSE(t.done());
    co_await wait(tasks);  // and the first wait's bookkeeping is gone (ASan)
    EXPECT_DOUBLE_EQ(now(), 6.0);
  };
  run(main(), virtual_time());
}

// --- as_completed ---

TEST(AsCompleted, YieldsInCompletionOrder) {
  auto main = []() -> Coro<std::vector<std::string>> {
    std::vector<std::string> log;
    for (auto next : as_completed(spawn(3, 1, 2))) {
      int v = co_await next;
      log.push_back(std::to_string(v) + "@" + std::to_string(static_cast<int>(now())));
    }
    co_return log;
  };
  EXPECT_EQ(run(main(), virtual_time()), (std::vector<std::string>{"1@1", "2@2", "0@3"}));
}

TEST(AsCompleted, WrapsCoroutinesAndRethrowsErrors) {
  auto main = []() -> Coro<std::vector<std::string>> {
    std::vector<Coro<int>> coros;
    coros.push_back(value_after(2, 20));
    coros.push_back(fail_after(1, "first"));
    std::vector<std::string> log;
    auto it = as_completed(std::move(coros));
    EXPECT_EQ(it.size(), 2u);
    for (int i = 0; i < 2; ++i) {
      try {
        log.push_back(std::to_string(co_await it.next()));
      } catch (const ValueError& e) {
        log.push_back(e.what());
      }
    }
    EXPECT_THROW(it.next(), RuntimeError);
    co_return log;
  };
  EXPECT_EQ(run(main(), virtual_time()), (std::vector<std::string>{"first", "20"}));
}

TEST(AsCompleted, TimeoutRaisesForWhatIsLeft) {
  auto main = []() -> Coro<std::vector<std::string>> {
    std::vector<Task<int>> tasks = spawn(1, 5, 6);
    std::vector<std::string> log;
    for (auto next : as_completed(tasks, 2.0)) {
      try {
        log.push_back(std::to_string(co_await next));
      } catch (const TimeoutError&) {
        log.push_back("timeout@" + std::to_string(static_cast<int>(now())));
      }
    }
    for (auto& t : tasks) EXPECT_FALSE(t.cancelled());
    co_return log;
  };
  EXPECT_EQ(run(main(), virtual_time()), (std::vector<std::string>{"0", "timeout@2", "timeout@2"}));
}

// The timeout wakes the awaiting task one ready-queue pass after its timer, as asyncio's
// timer handle puts the timeout marker that wakes it: a callback due at the same time but
// armed after the timeout (so fired after it) still runs first.
TEST(AsCompleted, TimeoutResumesAfterTheCallbacksDueWithIt) {
  auto main = []() -> Coro<std::vector<std::string>> {
    std::vector<Task<int>> tasks = spawn(5);
    std::vector<std::string> log;
    auto completions = as_completed(tasks, 2.0);  // arms the timeout now
    get_running_loop().call_later(2.0, [&log] { log.push_back("callback"); });
    for (auto next : completions) {
      try {
        co_await next;
      } catch (const TimeoutError&) {
        log.push_back("timeout");
      }
    }
    co_await tasks[0];
    co_return log;
  };
  EXPECT_EQ(run(main(), virtual_time()), (std::vector<std::string>{"callback", "timeout"}));
}

TEST(AsCompleted, ConcurrentAwaitersAreServedInOrder) {
  auto main = []() -> Coro<std::vector<int>> {
    auto ac = as_completed(spawn(2, 1));
    auto a = ac.next();
    auto b = ac.next();
    std::vector<int> got;
    auto take = [&](AsCompleted<Future<int>>::Next& n) -> Coro<void> { got.push_back(co_await n); };
    Task<void> ta = create_task(take(a));
    Task<void> tb = create_task(take(b));
    co_await ta;
    co_await tb;
    co_return got;
  };
  EXPECT_EQ(run(main(), virtual_time()), (std::vector<int>{1, 0}));
}

TEST(AsCompleted, ACancelledAwaiterPassesItsCompletionOn) {
  auto main = []() -> Coro<void> {
    auto ac = as_completed(spawn(1, 2));
    auto first = ac.next();
    auto waiter = [&]() -> Coro<int> { co_return co_await std::move(first); };
    Task<int> w = create_task(waiter());
    co_await sleep(0.5);
    w.cancel();
    EXPECT_THROW(co_await w, CancelledError);
    EXPECT_EQ(co_await ac.next(), 0);  // the completion at t=1 is not lost
    EXPECT_DOUBLE_EQ(now(), 1.0);
  };
  run(main(), virtual_time());
}

TEST(AsCompleted, CancelledAfterBeingWokenDoesNotLoseTheResult) {
  auto main = []() -> Coro<void> {
    Task<int> source = create_task(value_after(1, 42));
    Task<int> later = create_task(value_after(2, 7));
    std::vector<Task<int>> both{source, later};
    auto ac = as_completed(both);
    auto first = ac.next();
    auto waiter = [&]() -> Coro<int> { co_return co_await std::move(first); };
    Task<int> w = create_task(waiter());
    co_await sleep(0);
    // Registered after as_completed's own watcher: runs once w has been woken with the
    // completion but before w resumes, so the completion must be handed on.
    source.add_done_callback([w](Future<int>) mutable { w.cancel(); });
    EXPECT_THROW(co_await w, CancelledError);
    EXPECT_EQ(co_await ac.next(), 42);
    EXPECT_DOUBLE_EQ(now(), 1.0);
  };
  run(main(), virtual_time());
}

TEST(AsCompleted, AbandoningEarlyCleansUp) {
  auto main = []() -> Coro<void> {
    std::vector<Task<int>> tasks = spawn(1, 2, 3);
    {
      auto ac = as_completed(tasks, 10.0);
      EXPECT_EQ(co_await ac.next(), 0);
    }  // dropped with two futures still registered and the timer armed
    co_await sleep(20);
    for (auto& t : tasks) EXPECT_TRUE(t.done());
  };
  run(main(), virtual_time());
}

TEST(AsCompleted, AnyTasks) {
  auto main = []() -> Coro<int> {
    std::vector<AnyTask> tasks{create_task(value_after(1, 1)), create_task(fail_after(0.5, "e"))};
    int errors = 0;
    for (auto next : as_completed(tasks)) {
      try {
        co_await next;
      } catch (const ValueError&) {
        ++errors;
      }
    }
    co_return errors;
  };
  EXPECT_EQ(run(main(), virtual_time()), 1);
}

// A timeout's wake-up comes one ready-queue pass after the timer fires, as asyncio's timer
// handle sets the waiter and the waiter wakes the task: a task that needs two steps is done
// by then even with timeout 0 (asyncio.wait([t], timeout=0) reports it done).
TEST(Wait, ZeroTimeoutSeesATaskThatNeedsTwoSteps) {
  auto main = []() -> Coro<void> {
    std::vector<Task<void>> tasks{create_task([]() -> Coro<void> { co_await sleep(0); }())};
    auto [done, pending] = co_await wait(tasks, 0.0);
    EXPECT_EQ(done.size(), 1u);
    EXPECT_EQ(pending.size(), 0u);
  };
  run(main());
}

}  // namespace
}  // namespace corio
