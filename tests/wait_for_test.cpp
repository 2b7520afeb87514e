// wait_for(): the seed's `wait_for(eternity(), 1.0)`, results before the deadline, waiting
// for the work to finish cancelling, values returned by work that swallowed the
// cancellation, cancellation of the caller reaching the work, and the timeout <= 0 branch.
#include <gtest/gtest.h>
#include <corio/corio.hpp>
#include <corio/wait_for.hpp>

#include <memory>
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

Coro<void> eternity() {
  co_await sleep(3600);
  std::puts("yay!");
}

Coro<int> value_after(double delay, int value) {
  co_await sleep(delay);
  co_return value;
}

TEST(WaitFor, SeedProgramPrintsTimeoutAfterOneSecond) {
  auto main = []() -> Coro<std::string> {
    try {
      co_await wait_for(eternity(), 1.0);
    } catch (const TimeoutError&) {
      co_return "timeout! at " + std::to_string(now());
    }
    co_return "no timeout";
  };
  EXPECT_EQ(run(main(), virtual_time()), "timeout! at 1.000000");
}

TEST(WaitFor, ReturnsTheResultBeforeTheDeadline) {
  Runner runner(virtual_time());
  auto main = []() -> Coro<int> { co_return co_await wait_for(value_after(0.5, 3), 1.0); };
  EXPECT_EQ(runner.run(main()), 3);
  EXPECT_DOUBLE_EQ(runner.get_loop().time(), 0.5);
}

TEST(WaitFor, NoTimeoutWaitsForever) {
  auto main = []() -> Coro<double> {
    EXPECT_EQ(co_await wait_for(value_after(500, 1), no_deadline), 1);
    co_return now();
  };
  EXPECT_DOUBLE_EQ(run(main(), virtual_time()), 500.0);
}

TEST(WaitFor, ACoroutineRunsInlineInTheCallingTask) {
  auto main = []() -> Coro<bool> {
    AnyTask caller = current_task();
    auto probe = [&]() -> Coro<bool> {
      co_await sleep(0);
      co_return current_task() == caller;
    };
    co_return co_await wait_for(probe(), 1.0);
  };
  EXPECT_TRUE(run(main(), virtual_time()));
}

TEST(WaitFor, CancelsATaskOnTimeoutAndWaitsForItsCleanup) {
  auto main = []() -> Coro<void> {
    std::vector<std::string> log;
    auto slow = [&]() -> Coro<int> {
      std::exception_ptr cancelled;
      try {
        co_await sleep(10);
      } catch (const CancelledError&) {
        cancelled = std::current_exception();
      }
      log.push_back("cancelled at " + std::to_string(now()));
      co_await sleep(0.5);  // cleanup takes time; wait_for waits for it
      log.push_back("cleaned up at " + std::to_string(now()));
      if (cancelled) std::rethrow_exception(cancelled);
      co_return 1;
    };
    Task<int> t = create_task(slow());
    try {
      co_await wait_for(t, 1.0);
      ADD_FAILURE() << "no TimeoutError";
    } catch (const TimeoutError&) {
      log.push_back("timeout at " + std::to_string(now()));
    }
    EXPECT_TRUE(t.cancelled());
    EXPECT_EQ(log, (std::vector<std::string>{"cancelled at 1.000000", "cleaned up at 1.500000",
                                             "timeout at 1.500000"}));
  };
  run(main(), virtual_time());
}

TEST(WaitFor, WorkThatSwallowsTheCancellationReturnsItsValue) {
  auto main = []() -> Coro<int> {
    auto stubborn = []() -> Coro<int> {
      try {
        co_await sleep(10);
      } catch (const CancelledError&) {
        co_return -1;
      }
      co_return 1;
    };
    co_return co_await wait_for(stubborn(), 1.0);
  };
  EXPECT_EQ(run(main(), virtual_time()), -1);
}

TEST(WaitFor, ExceptionsFromTheWorkPropagate) {
  auto main = []() -> Coro<void> {
    auto failing = []() -> Coro<int> {
      co_await sleep(0.1);
      throw ValueError("bad");
    };
    EXPECT_THROW(co_await wait_for(failing(), 1.0), ValueError);
  };
  run(main(), virtual_time());
}

TEST(WaitFor, CancellingTheCallerCancelsTheWork) {
  auto main = []() -> Coro<void> {
    Task<int> work = create_task(value_after(10, 1));
    auto waiter = [&]() -> Coro<int> { co_return co_await wait_for(work, 5.0); };
    Task<int> w = create_task(waiter());
    co_await sleep(1);
    w.cancel();
    try {
      co_await w;
      ADD_FAILURE() << "not cancelled";
    } catch (const CancelledError&) {
    } catch (const TimeoutError&) {
      ADD_FAILURE() << "cancellation turned into TimeoutError";
    }
    EXPECT_TRUE(w.cancelled());
    EXPECT_TRUE(work.cancelled());
    EXPECT_DOUBLE_EQ(now(), 1.0);
  };
  run(main(), virtual_time());
}

TEST(WaitFor, OnAFuture) {
  auto main = []() -> Coro<void> {
    EventLoop& loop = get_running_loop();
    Future<std::string> ready = loop.create_future<std::string>();
    loop.call_later(0.5, [ready]() mutable { ready.set_result("hi"); });
    EXPECT_EQ(co_await wait_for(ready, 1.0), "hi");

    Future<int> never = loop.create_future<int>();
    EXPECT_THROW(co_await wait_for(never, 1.0), TimeoutError);
    EXPECT_TRUE(never.cancelled());
    EXPECT_DOUBLE_EQ(now(), 1.5);
  };
  run(main(), virtual_time());
}

TEST(WaitFor, NonMovableLeafAwaitable) {
  auto main = []() -> Coro<double> {
    EXPECT_THROW(co_await wait_for(sleep(5), 1.0), TimeoutError);
    co_await wait_for(sleep(0.5), 1.0);
    co_return now();
  };
  EXPECT_DOUBLE_EQ(run(main(), virtual_time()), 1.5);
}

TEST(WaitFor, ZeroTimeoutNeverRunsACoroutine) {
  auto main = []() -> Coro<void> {
    bool ran = false;
    auto body = [&]() -> Coro<int> {
      ran = true;
      co_return 1;
    };
    EXPECT_THROW(co_await wait_for(body(), 0), TimeoutError);
    EXPECT_FALSE(ran);
    EXPECT_THROW(co_await wait_for(sleep(1), -1.0), TimeoutError);
    EXPECT_DOUBLE_EQ(now(), 0.0);
  };
  run(main(), virtual_time());
}

TEST(WaitFor, ZeroTimeoutReturnsADoneResultAndCancelsTheRest) {
  auto main = []() -> Coro<void> {
    EventLoop& loop = get_running_loop();
    Future<int> done = loop.create_future<int>();
    done.set_result(9);
    EXPECT_EQ(co_await wait_for(done, 0), 9);

    Task<int> running = create_task(value_after(1, 2));
    co_await sleep(0);  // started, now suspended in its sleep
    EXPECT_THROW(co_await wait_for(running, 0), TimeoutError);
    EXPECT_TRUE(running.cancelled());

    auto stubborn = []() -> Coro<int> {
      bool cancelled = false;
      try {
        co_await sleep(1);
      } catch (const CancelledError&) {
        cancelled = true;
      }
      co_await sleep(0.25);
      co_return cancelled ? 5 : 0;
    };
    Task<int> s = create_task(stubborn());
    co_await sleep(0);
    EXPECT_EQ(co_await wait_for(s, 0), 5);  // waited for it to finish cancelling
    EXPECT_DOUBLE_EQ(now(), 0.25);
  };
  run(main(), virtual_time());
}

TEST(WaitFor, CancellingTheCallerDuringTheZeroTimeoutWait) {
  auto main = []() -> Coro<void> {
    auto stubborn = []() -> Coro<int> {
      bool cancelled = false;
      try {
        co_await sleep(10);
      } catch (const CancelledError&) {
        cancelled = true;
      }
      co_await sleep(5);  // slow to stop
      co_return cancelled ? 1 : 0;
    };
    Task<int> work = create_task(stubborn());
    co_await sleep(0);
    auto caller = [&]() -> Coro<int> { co_return co_await wait_for(work, 0); };
    Task<int> c = create_task(caller());
    co_await sleep(1);
    c.cancel();
    EXPECT_THROW(co_await c, CancelledError);
    EXPECT_DOUBLE_EQ(now(), 1.0);     // the caller stopped waiting at once
    EXPECT_EQ(work.cancelling(), 1);  // cancelled once, by wait_for, not again
    EXPECT_EQ(co_await work, 1);
    EXPECT_DOUBLE_EQ(now(), 5.0);
  };
  run(main(), virtual_time());
}

TEST(WaitFor, ConsumerExitsOnTimeoutLikeTheSeedQueueProgram) {
  // while True: item = await wait_for(q.get(), 5)  -> exits 5 s after the last item.
  auto main = []() -> Coro<std::vector<int>> {
    EventLoop& loop = get_running_loop();
    std::vector<Future<int>> items;
    for (int i = 0; i < 3; ++i) {
      items.push_back(loop.create_future<int>());
      loop.call_later(i + 1.0, [f = items.back(), i]() mutable { f.set_result(i); });
    }
    items.push_back(loop.create_future<int>());  // never produced
    std::vector<int> got;
    try {
      for (Future<int>& f : items) got.push_back(co_await wait_for(f, 5));
    } catch (const TimeoutError&) {
      EXPECT_DOUBLE_EQ(now(), 8.0);
    }
    co_return got;
  };
  EXPECT_EQ(run(main(), virtual_time()), (std::vector<int>{0, 1, 2}));
}

TEST(WaitFor, MoveOnlyResults) {
  auto main = []() -> Coro<int> {
    auto make = []() -> Coro<std::unique_ptr<int>> {
      co_await sleep(0.1);
      co_return std::make_unique<int>(4);
    };
    std::unique_ptr<int> p = co_await wait_for(make(), 1.0);
    co_return *p;
  };
  EXPECT_EQ(run(main(), virtual_time()), 4);
}

}  // namespace
}  // namespace corio
