// Eager tasks (asyncio.eager_task_factory, and 3.14's create_task(eager_start=...)): the
// coroutine runs inside create_task up to its first suspension, as the current task; one
// that never suspends is done when create_task returns and is never scheduled. Without a
// running loop, and for the runtime's own tasks, tasks are scheduled as usual.
#include <gtest/gtest.h>
#include <corio/corio.hpp>

#include <string>
#include <vector>

namespace corio {
namespace {

using Log = std::vector<std::string>;

Coro<int> logged_steps(Log& log, std::string who, int value) {
  log.push_back(who + " starts as " + current_task().get_name());
  co_await sleep(0);
  log.push_back(who + " resumes");
  co_return value;
}

Coro<int> immediate(Log& log, int value) {
  log.push_back("immediate runs");
  co_return value;
}

TEST(EagerTask, RunsUpToItsFirstSuspensionInsideCreateTask) {
  EventLoop loop;
  Log log;
  loop.run_until_complete([](Log& log) -> Coro<void> {
    const std::string me = current_task().get_name();
    Task<int> task = create_task(logged_steps(log, "child", 7),
                                 TaskOptions{.name = "child-task", .eager_start = true});
    log.push_back("create_task returned");
    EXPECT_EQ(current_task().get_name(), me) << "the creator is the current task again";
    EXPECT_FALSE(task.done());
    EXPECT_EQ(co_await task, 7);
  }(log));
  EXPECT_EQ(log, (Log{"child starts as child-task", "create_task returned", "child resumes"}));
}

TEST(EagerTask, ATaskThatNeverSuspendsIsDoneAtOnceAndNeverScheduled) {
  EventLoop loop;
  Log log;
  loop.run_until_complete([](Log& log) -> Coro<void> {
    get_running_loop().call_soon([&log] { log.push_back("callback queued before"); });
    Task<int> task = create_task(immediate(log, 5), TaskOptions{.eager_start = true});
    EXPECT_TRUE(task.done());
    EXPECT_EQ(task.result(), 5);
    EXPECT_TRUE(all_tasks().size() == 1) << "only the creator is pending";
    log.push_back("after create_task");
    co_await sleep(0);
  }(log));
  EXPECT_EQ(log, (Log{"immediate runs", "after create_task", "callback queued before"}));
}

TEST(EagerTask, TheLoopsTaskFactoryMakesEveryCreateTaskEager) {
  EventLoop loop;
  EXPECT_EQ(loop.get_task_factory(), TaskFactory::standard);
  loop.set_task_factory(eager_task_factory);
  EXPECT_EQ(loop.get_task_factory(), TaskFactory::eager);
  Log log;
  loop.run_until_complete([](Log& log) -> Coro<void> {
    Task<int> eager = create_task(logged_steps(log, "a", 1));
    log.push_back("a created");
    // eager_start=false overrides the factory.
    Task<int> lazy = create_task(logged_steps(log, "b", 2), TaskOptions{.eager_start = false});
    log.push_back("b created");
    EXPECT_EQ(co_await eager + co_await lazy, 3);
  }(log));
  EXPECT_EQ(log, (Log{"a starts as Task-2", "a created", "b created", "a resumes",
                      "b starts as Task-3", "b resumes"}));
  loop.set_task_factory(nullptr);
  EXPECT_EQ(loop.get_task_factory(), TaskFactory::standard);
}

TEST(EagerTask, WithoutARunningLoopTheTaskIsScheduled) {
  EventLoop loop;
  loop.set_task_factory(eager_task_factory);
  Log log;
  Task<int> task = loop.create_task(immediate(log, 3), TaskOptions{.eager_start = true});
  EXPECT_TRUE(log.empty()) << "a loop that is not running cannot start a task";
  EXPECT_FALSE(task.done());
  EXPECT_EQ(loop.run_until_complete(task), 3);
  EXPECT_EQ(log, (Log{"immediate runs"}));
}

TEST(EagerTask, AnErrorInTheFirstStepIsTheTasksError) {
  EventLoop loop;
  loop.run_until_complete([]() -> Coro<void> {
    auto failing = []() -> Coro<int> {
      throw ValueError("bad input");
      co_return 0;
    };
    Task<int> task = create_task(failing(), TaskOptions{.eager_start = true});
    EXPECT_TRUE(task.done());
    EXPECT_THROW(co_await task, ValueError);
  }());
}

TEST(EagerTask, CancellingASuspendedEagerTaskWorksAsForAnyTask) {
  EventLoop loop;
  loop.run_until_complete([]() -> Coro<void> {
    Log log;
    auto sleeper = [](Log& log) -> Coro<void> {
      try {
        co_await sleep(3600);
      } catch (const CancelledError& e) {
        log.push_back(std::string("cancelled: ") + e.what());
        throw;
      }
    };
    Task<void> task = create_task(sleeper(log), TaskOptions{.eager_start = true});
    EXPECT_TRUE(task.cancel("stop"));
    EXPECT_THROW(co_await task, CancelledError);
    EXPECT_TRUE(task.cancelled());
    EXPECT_EQ(log, (Log{"cancelled: stop"}));
  }());
}

TEST(EagerTask, NestedEagerTasksEachSeeThemselvesAsCurrent) {
  EventLoop loop;
  loop.set_task_factory(eager_task_factory);
  Log log;
  loop.run_until_complete([](Log& log) -> Coro<void> {
    auto inner = [](Log& log) -> Coro<void> {
      log.push_back("inner in " + current_task().get_name());
      co_return;
    };
    auto outer = [inner](Log& log) -> Coro<void> {
      log.push_back("outer in " + current_task().get_name());
      Task<void> child = create_task(inner(log), "inner");
      log.push_back("outer again in " + current_task().get_name());
      co_await child;
    };
    co_await create_task(outer(log), "outer");
    log.push_back("main in " + current_task().get_name());
  }(log));
  EXPECT_EQ(log,
            (Log{"outer in outer", "inner in inner", "outer again in outer", "main in Task-1"}));
}

TEST(EagerTask, GatherWithTheEagerFactoryStartsEachChildInTurnAndKeepsTheOrder) {
  EventLoop loop;
  loop.set_task_factory(eager_task_factory);
  Log log;
  const auto results = loop.run_until_complete([](Log& log) -> Coro<std::vector<int>> {
    std::vector<Coro<int>> coros;
    coros.push_back(logged_steps(log, "x", 1));
    coros.push_back(immediate(log, 2));
    coros.push_back(logged_steps(log, "y", 3));
    co_return co_await gather(std::move(coros));
  }(log));
  EXPECT_EQ(results, (std::vector<int>{1, 2, 3}));
  EXPECT_EQ(log, (Log{"x starts as Task-2", "immediate runs", "y starts as Task-4", "x resumes",
                      "y resumes"}));
}

TEST(EagerTask, ATaskGroupChildDoneInItsFirstStepIsCountedByItsCallback) {
  EventLoop loop;
  loop.set_task_factory(eager_task_factory);
  Log log;
  loop.run_until_complete([](Log& log) -> Coro<void> {
    co_await TaskGroup::run([&log](TaskGroup& tg) -> Coro<void> {
      Task<int> done = tg.create_task(immediate(log, 1));
      EXPECT_TRUE(done.done());
      Task<int> pending = tg.create_task(logged_steps(log, "child", 2));
      EXPECT_FALSE(pending.done());
      EXPECT_EQ(tg.size(), 2u);  // the done child's callback has not run yet
      co_await sleep(0);
      EXPECT_EQ(tg.size(), 1u);
    });
    log.push_back("group done");
  }(log));
  EXPECT_EQ(log, (Log{"immediate runs", "child starts as Task-3", "child resumes", "group done"}));
}

// CPython gh-128550: an eager child that starts a child failing in its first step, then waits.
// The failure must cancel it too, though it was still inside create_task when its own child
// failed; counted at once, the error would abort the group before it was a member.
TEST(EagerTask, AnEagerChildWhoseOwnChildFailsAtOnceIsCancelledWithTheGroup) {
  Runner runner({.virtual_time = true});
  runner.get_loop().set_task_factory(eager_task_factory);
  Log log;
  runner.run([](Log& log) -> Coro<void> {
    auto failing = []() -> Coro<void> {
      throw ValueError("at once");
      co_return;
    };
    try {
      co_await TaskGroup::run([&](TaskGroup& tg) -> Coro<void> {
        auto spawner = [&failing](TaskGroup& tg, Log& log) -> Coro<void> {
          tg.create_task(failing());
          try {
            co_await sleep(3600);
            log.push_back("spawner slept an hour");
          } catch (const CancelledError&) {
            log.push_back("spawner cancelled");
            throw;
          }
        };
        tg.create_task(spawner(tg, log));
        co_return;
      });
      ADD_FAILURE() << "the group did not raise";
    } catch (const ExceptionGroup& group) {
      EXPECT_EQ(group.exceptions().size(), 1u);
    }
    EXPECT_LT(get_running_loop().time(), 1.0);
  }(log));
  EXPECT_EQ(log, (Log{"spawner cancelled"}));
}

TEST(EagerTask, ATaskGroupChildFailingInItsFirstStepAbortsTheGroup) {
  EventLoop loop;
  Log log;
  loop.run_until_complete([](Log& log) -> Coro<void> {
    auto sibling = [](Log& log) -> Coro<void> {
      try {
        co_await sleep(3600);
      } catch (const CancelledError&) {
        log.push_back("sibling cancelled");
        throw;
      }
    };
    auto failing = []() -> Coro<void> {
      throw ValueError("first step");
      co_return;
    };
    try {
      co_await TaskGroup::run([&](TaskGroup& tg) -> Coro<void> {
        tg.create_task(sibling(log), TaskOptions{.eager_start = true});
        tg.create_task(failing(), TaskOptions{.eager_start = true});
        log.push_back("body goes on");
        co_await sleep(3600);  // cancelled: the group is aborting
        log.push_back("body not cancelled");
      });
      ADD_FAILURE() << "the group did not raise";
    } catch (const ExceptionGroup& group) {
      EXPECT_EQ(group.exceptions().size(), 1u);
    }
  }(log));
  EXPECT_EQ(log, (Log{"body goes on", "sibling cancelled"}));
}

TEST(EagerTask, ManyTasksDoneInTheirFirstStepNeverLetTheLoopTurn) {
  EventLoop loop;
  bool loop_turned = false;  // outlives the coroutine: the callback runs after it
  const int total = loop.run_until_complete([](bool& loop_turned) -> Coro<int> {
    get_running_loop().call_soon([&loop_turned] { loop_turned = true; });
    auto one = []() -> Coro<int> { co_return 1; };
    int sum = 0;
    for (int i = 0; i < 1000; ++i) {
      sum += co_await create_task(one(), TaskOptions{.eager_start = true});
    }
    EXPECT_FALSE(loop_turned) << "an eager task that never suspends is never scheduled";
    co_return sum;
  }(loop_turned));
  EXPECT_EQ(total, 1000);
}

TEST(EagerTask, StartedFromAPlainCallbackTheCallbackHasNoTaskAfterwards) {
  EventLoop loop;
  loop.set_task_factory(eager_task_factory);
  Log log;
  loop.call_soon([&loop, &log] {
    Task<int> task = loop.create_task(logged_steps(log, "from callback", 1), "cb-task");
    log.push_back(current_task() ? "callback in a task" : "callback in no task");
  });
  loop.run_until_complete([]() -> Coro<void> { co_await sleep(0.01); }());
  EXPECT_EQ(log, (Log{"from callback starts as cb-task", "callback in no task",
                      "from callback resumes"}));
}

Coro<int> creates_eagerly(Log& log) {
  Task<int> child = create_task(logged_steps(log, "grandchild", 5), "grandchild");
  log.push_back("helper continues in " + current_task().get_name());
  co_await sleep(0);
  co_return co_await child + 1;
}

TEST(EagerTask, ACreatorDeepInAnAwaitChainResumesWhereItWas) {
  EventLoop loop;
  loop.set_task_factory(eager_task_factory);
  Log log;
  const int result = loop.run_until_complete([](Log& log) -> Coro<int> {
    const int r = co_await creates_eagerly(log);  // a plain awaited coroutine, not a task
    log.push_back("main continues");
    co_return r;
  }(log));
  EXPECT_EQ(result, 6);
  EXPECT_EQ(log, (Log{"grandchild starts as grandchild", "helper continues in Task-1",
                      "grandchild resumes", "main continues"}));
}

TEST(EagerTask, AChildThatCancelsItsCreatorCancelsItAtItsNextSuspension) {
  EventLoop loop;
  Log log;
  Task<void> creator = loop.create_task([](Log& log) -> Coro<void> {
    AnyTask me = current_task();
    auto rebel = [](AnyTask creator) -> Coro<void> {
      creator.cancel("from the child");
      co_return;
    };
    Task<void> child = create_task(rebel(me), TaskOptions{.eager_start = true});
    log.push_back("creator still runs");
    try {
      co_await sleep(1);
      log.push_back("creator slept");
    } catch (const CancelledError& e) {
      log.push_back(std::string("creator cancelled: ") + e.what());
      throw;
    }
  }(log));
  EXPECT_THROW(loop.run_until_complete(creator), CancelledError);
  EXPECT_EQ(log, (Log{"creator still runs", "creator cancelled: from the child"}));
}

Coro<int> eager_chain(int depth) {
  if (depth == 0) co_return 0;
  co_return 1 + co_await create_task(eager_chain(depth - 1));
}

TEST(EagerTask, DeeplyNestedEagerStartsFallBackToSchedulingInsteadOfOverflowing) {
  EventLoop loop;
  loop.set_task_factory(eager_task_factory);
  EXPECT_EQ(loop.run_until_complete(eager_chain(100000)), 100000);
}

TEST(EagerTask, RunUntilCompleteOnTheRunningLoopRaisesBeforeRunningAnything) {
  EventLoop loop;
  loop.set_task_factory(eager_task_factory);
  Log log;
  loop.run_until_complete([](EventLoop& loop, Log& log) -> Coro<void> {
    EXPECT_THROW(loop.run_until_complete(immediate(log, 1)), RuntimeError);
    co_return;
  }(loop, log));
  EXPECT_TRUE(log.empty()) << "the coroutine ran before the error";
}

}  // namespace
}  // namespace corio
