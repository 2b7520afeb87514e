// Task<T>: scheduling, results, cancellation at every kind of suspension point, the
// cancelling()/uncancel() counts, current_task/all_tasks, and reporting of lost errors.
#include <gtest/gtest.h>
#include <corio/corio.hpp>

#include <string>
#include <vector>

namespace corio {
namespace {

Coro<int> answer() {
  co_return 42;
}

TEST(Task, CreateTaskRunsOnTheNextIteration) {
  EventLoop loop;
  std::vector<std::string> order;
  auto body = [](std::vector<std::string>& log) -> Coro<void> {
    log.push_back("task");
    co_return;
  };
  Task<void> t = loop.create_task(body(order), "worker");
  order.push_back("created");
  EXPECT_EQ(t.get_name(), "worker");
  loop.run_until_complete(t);
  EXPECT_EQ(order, (std::vector<std::string>{"created", "task"}));
}

TEST(Task, DefaultNamesCount) {
  EventLoop loop;
  Task<int> a = loop.create_task(answer());
  Task<int> b = loop.create_task(answer());
  EXPECT_EQ(a.get_name(), "Task-1");
  EXPECT_EQ(b.get_name(), "Task-2");
  b.set_name("");
  EXPECT_EQ(b.get_name(), "");
  loop.run_until_complete(b);
  EXPECT_EQ(a.result(), 42);
}

TEST(Task, ExceptionPropagatesToTheAwaiter) {
  auto failing = []() -> Coro<int> {
    co_await sleep(0);
    throw ValueError("nope");
  };
  auto outer = [&]() -> Coro<std::string> {
    Task<int> t = create_task(failing());
    try {
      co_await t;
    } catch (const ValueError& e) {
      co_return e.what();
    }
    co_return "no exception";
  };
  EXPECT_EQ(run(outer()), "nope");
}

TEST(Task, CancelDeliversCancelledErrorAtSleep) {
  auto body = [](std::vector<std::string>& log) -> Coro<void> {
    std::exception_ptr cancelled;
    try {
      co_await sleep(10);
    } catch (const CancelledError& e) {
      log.push_back(std::string("cancelled:") + e.what());
      cancelled = std::current_exception();
    }
    co_await sleep(0.001);  // cleanup may still await (outside the handler, as C++ requires)
    log.push_back("cleaned");
    std::rethrow_exception(cancelled);
  };
  std::vector<std::string> log;
  auto main = [&]() -> Coro<void> {
    Task<void> t = create_task(body(log));
    co_await sleep(0.001);
    EXPECT_TRUE(t.cancel("bye"));
    EXPECT_EQ(t.cancelling(), 1);
    try {
      co_await t;
    } catch (const CancelledError& e) {
      log.push_back(std::string("outer:") + e.what());
    }
    EXPECT_TRUE(t.cancelled());
    EXPECT_FALSE(t.cancel());
  };
  run(main());
  EXPECT_EQ(log, (std::vector<std::string>{"cancelled:bye", "cleaned", "outer:bye"}));
}

TEST(Task, CancelBeforeFirstStepNeverRunsTheBody) {
  bool ran = false;
  auto body = [](bool& flag) -> Coro<void> {
    flag = true;
    co_return;
  };
  auto main = [&]() -> Coro<void> {
    Task<void> t = create_task(body(ran));
    t.cancel();
    try {
      co_await t;
    } catch (const CancelledError&) {
    }
    EXPECT_TRUE(t.cancelled());
  };
  run(main());
  EXPECT_FALSE(ran);
}

TEST(Task, CancelAtAFutureCancelsTheFuture) {
  auto main = []() -> Coro<void> {
    Future<int> f = get_running_loop().create_future<int>();
    auto waiter = [](Future<int> fut) -> Coro<int> { co_return co_await fut; };
    Task<int> t = create_task(waiter(f));
    co_await sleep(0);
    t.cancel();
    co_await sleep(0);
    EXPECT_TRUE(f.cancelled());  // asyncio cancels the awaited future too
    EXPECT_THROW(co_await t, CancelledError);
  };
  run(main());
}

TEST(Task, CancelAtAwaitedTaskCancelsTheInnerTask) {
  auto main = []() -> Coro<void> {
    Task<void> inner = create_task([]() -> Coro<void> { co_await sleep(100); }());
    auto outer_body = [](Task<void> t) -> Coro<void> { co_await t; };
    Task<void> outer = create_task(outer_body(inner));
    co_await sleep(0.001);
    outer.cancel();
    EXPECT_THROW(co_await outer, CancelledError);
    EXPECT_TRUE(inner.cancelled());
  };
  run(main());
}

TEST(Task, CancelWhileReadyIsDeliveredAtResume) {
  // The task's sleep(0) has already been woken when cancel() arrives: asyncio delivers the
  // cancellation when the task resumes.
  auto main = []() -> Coro<void> {
    std::vector<std::string> log;
    auto body = [](std::vector<std::string>& log) -> Coro<void> {
      co_await sleep(0);
      log.push_back("started");
      try {
        co_await sleep(0);
        log.push_back("not cancelled");
      } catch (const CancelledError&) {
        log.push_back("cancelled at resume");
      }
    };
    Task<void> t = create_task(body(log));
    co_await sleep(0);
    co_await sleep(0);  // t is now suspended in its second sleep(0), already requeued
    t.cancel();
    co_await t;
    EXPECT_EQ(log, (std::vector<std::string>{"started", "cancelled at resume"}));
  };
  run(main());
}

TEST(Task, SwallowedCancellationAndUncancel) {
  auto stubborn = []() -> Coro<int> {
    try {
      co_await sleep(10);
    } catch (const CancelledError&) {
      AnyTask self = current_task();
      EXPECT_EQ(self.cancelling(), 1);
      EXPECT_EQ(self.uncancel(), 0);
    }
    co_return 7;
  };
  auto main = [&]() -> Coro<void> {
    Task<int> t = create_task(stubborn());
    co_await sleep(0.001);
    t.cancel();
    EXPECT_EQ(co_await t, 7);
    EXPECT_FALSE(t.cancelled());
  };
  run(main());
}

TEST(Task, SelfCancelIsDeliveredAtTheNextSuspension) {
  auto body = []() -> Coro<std::string> {
    current_task().cancel("self");
    std::string where = "none";
    try {
      co_await sleep(5);
      where = "not delivered";
    } catch (const CancelledError& e) {
      where = e.message();
    }
    co_return where;
  };
  EXPECT_EQ(run(body()), "self");
}

TEST(Task, CurrentTaskAndAllTasks) {
  auto main = []() -> Coro<void> {
    AnyTask me = current_task();
    EXPECT_TRUE(me);
    auto child = [](AnyTask parent) -> Coro<void> {
      EXPECT_FALSE(current_task() == parent);
      co_await sleep(0.01);
    };
    Task<void> c = create_task(child(me), "child");
    std::vector<AnyTask> tasks = all_tasks();
    EXPECT_EQ(tasks.size(), 2u);
    co_await c;
    EXPECT_EQ(all_tasks().size(), 1u);
  };
  run(main());
  // asyncio.current_task() needs a running loop; in a callback it is None.
  EXPECT_THROW(current_task(), RuntimeError);
  EventLoop loop;
  bool outside_a_task = false;
  loop.call_soon([&] {
    outside_a_task = !current_task();
    loop.stop();
  });
  loop.run_forever();
  EXPECT_TRUE(outside_a_task);
}

TEST(Task, TaskCannotAwaitItself) {
  auto main = []() -> Coro<void> {
    AnyTask self = current_task();
    EXPECT_THROW(co_await self, RuntimeError);
  };
  run(main());
}

TEST(Task, LostExceptionIsReportedWhenTheTaskIsDestroyed) {
  std::vector<std::string> messages;
  {
    EventLoop loop;
    loop.set_exception_handler([&](EventLoop&, const ExceptionContext& context) {
      messages.push_back(context.message + " (" + context.task_name + ")");
    });
    auto failing = []() -> Coro<void> {
      throw ValueError("x");
      co_return;
    };
    loop.create_task(failing(), "orphan");
    loop.call_later(0.001, [&] { loop.stop(); });
    loop.run_forever();
  }
  EXPECT_EQ(messages, (std::vector<std::string>{"Task exception was never retrieved (orphan)"}));
}

TEST(Task, PendingTasksAreDestroyedWithTheLoopWithoutLeaks) {
  std::vector<std::string> messages;
  auto guard = std::make_shared<int>(0);
  {
    EventLoop loop;
    loop.set_exception_handler(
        [&](EventLoop&, const ExceptionContext& context) { messages.push_back(context.message); });
    auto sleeper = [](std::shared_ptr<int> keep) -> Coro<void> {
      co_await sleep(100);
      (void)keep;
    };
    loop.create_task(sleeper(guard));
    loop.call_later(0.001, [&] { loop.stop(); });
    loop.run_forever();
    EXPECT_EQ(guard.use_count(), 2);
  }
  EXPECT_EQ(guard.use_count(), 1);  // the frame was destroyed, its locals released
  EXPECT_EQ(messages, (std::vector<std::string>{"Task was destroyed but it is pending!"}));
}

TEST(Task, ResultMovesOutOfAnUnsharedTask) {
  auto make = []() -> Coro<std::unique_ptr<int>> { co_return std::make_unique<int>(9); };
  auto main = [&]() -> Coro<int> {
    std::unique_ptr<int> p = co_await create_task(make());
    co_return *p;
  };
  EXPECT_EQ(run(main()), 9);
}

// A task that catches the first cancellation and goes on: a later cancel() of the task that
// awaits it reaches it again (asyncio keeps _fut_waiter for this), directly and through
// wait_for, and the awaiting task ends with the inner task's CancelledError.
Coro<void> stubborn(int& cancels, std::vector<std::string>& messages) {
  for (;;) {
    try {
      co_await sleep(10);
      co_return;
    } catch (const CancelledError& e) {
      messages.push_back(e.message());
      if (++cancels >= 2) throw;
    }
  }
}

TEST(Task, ASecondCancelReachesAnAwaitedTaskThatCaughtTheFirst) {
  auto main = []() -> Coro<void> {
    int cancels = 0;
    std::vector<std::string> messages;
    Task<void> inner = create_task(stubborn(cancels, messages));
    auto outer_body = [](Task<void> t) -> Coro<void> { co_await t; };
    Task<void> outer = create_task(outer_body(inner));
    co_await sleep(0.001);
    EXPECT_TRUE(outer.cancel("x1"));
    co_await sleep(0.001);
    EXPECT_EQ(cancels, 1);
    EXPECT_FALSE(outer.done());
    EXPECT_TRUE(outer.cancel("x2"));
    co_await sleep(0.001);
    EXPECT_EQ(messages, (std::vector<std::string>{"x1", "x2"}));
    EXPECT_TRUE(inner.cancelled());
    EXPECT_TRUE(outer.done());
    try {
      co_await outer;
      ADD_FAILURE() << "outer was not cancelled";
    } catch (const CancelledError& e) {
      EXPECT_EQ(e.message(), "x2");
    }
  };
  run(main());
}

TEST(Task, ACancelAfterWaitForTimedOutOnAStubbornTaskReachesIt) {
  auto main = []() -> Coro<void> {
    int cancels = 0;
    std::vector<std::string> messages;
    Task<void> inner = create_task(stubborn(cancels, messages));
    auto outer_body = [](Task<void> t) -> Coro<void> { co_await wait_for(t, 0.01); };
    Task<void> outer = create_task(outer_body(inner));
    co_await sleep(0.05);
    EXPECT_EQ(cancels, 1);  // the timeout's cancellation, swallowed
    EXPECT_FALSE(outer.done());
    outer.cancel();
    co_await sleep(0.001);
    EXPECT_EQ(cancels, 2);
    EXPECT_TRUE(outer.done());
    EXPECT_THROW(co_await outer, CancelledError);
  };
  run(main());
}

// Two cancels while the task waits on a future: the future was cancelled by the first, and
// its CancelledError (with the first message) is what the task sees, as in asyncio.
TEST(Task, TwoCancelsAtAFutureDeliverTheFirstMessageOnce) {
  auto main = []() -> Coro<void> {
    Future<int> f = get_running_loop().create_future<int>();
    auto waiter = [](Future<int> fut) -> Coro<std::string> {
      std::string message = "no cancellation";
      try {
        co_await fut;
      } catch (const CancelledError& e) {
        message = e.message();
      }
      co_await sleep(0);  // no cancellation left pending after the one delivered
      co_return message;
    };
    Task<std::string> t = create_task(waiter(f));
    co_await sleep(0);
    t.cancel("first");
    t.cancel("second");
    EXPECT_EQ(t.cancelling(), 2);
    EXPECT_EQ(co_await t, "first");
  };
  run(main());
}

// The same at a sleep (in asyncio a future too): the first message, delivered once.
TEST(Task, TwoCancelsAtASleepDeliverTheFirstMessageOnce) {
  auto main = []() -> Coro<void> {
    auto sleeper = []() -> Coro<std::string> {
      std::string message = "no cancellation";
      try {
        co_await sleep(10);
      } catch (const CancelledError& e) {
        message = e.message();
      }
      co_await sleep(0);
      co_return message;
    };
    Task<std::string> t = create_task(sleeper());
    co_await sleep(0);
    t.cancel("first");
    t.cancel("second");
    EXPECT_EQ(co_await t, "first");
  };
  run(main());
}

// The awaited future failed and the task was cancelled in the same iteration: the task sees
// CancelledError, and the future's exception counts as retrieved (no "never retrieved").
TEST(Task, CancelledWhileItsFailedFutureWakesItRetrievesTheError) {
  std::vector<std::string> messages;
  {
    EventLoop loop;
    loop.set_exception_handler(
        [&](EventLoop&, const ExceptionContext& context) { messages.push_back(context.message); });
    auto main = []() -> Coro<void> {
      Future<int> f = get_running_loop().create_future<int>();
      auto waiter = [](Future<int> fut) -> Coro<void> { co_await fut; };
      Task<void> t = create_task(waiter(f));
      co_await sleep(0);
      f.set_exception(ValueError("boom"));
      t.cancel();
      EXPECT_THROW(co_await t, CancelledError);
    };
    loop.run_until_complete(main());
  }
  EXPECT_EQ(messages, std::vector<std::string>{});
}

TEST(Task, SetResultAndSetExceptionOnATaskRaiseRuntimeError) {
  auto main = []() -> Coro<void> {
    Task<int> t = create_task([]() -> Coro<int> {
      co_await sleep(0.001);
      co_return 3;
    }());
    EXPECT_THROW(t.set_result(1), RuntimeError);
    EXPECT_THROW(t.set_exception(ValueError("x")), RuntimeError);
    Future<int> sliced = t;  // the same task seen as a Future
    EXPECT_THROW(sliced.set_result(1), RuntimeError);
    EXPECT_FALSE(t.done());
    EXPECT_EQ(co_await t, 3);
  };
  run(main());
}

}  // namespace
}  // namespace corio
