// sleep(): sleep(0) yields exactly one iteration, delays never end early, negative delays
// are 0, and concurrent sleeps overlap.
#include <gtest/gtest.h>

#include <cmath>
#include <corio/corio.hpp>

#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

namespace corio {
namespace {

TEST(Sleep, ZeroYieldsOneIteration) {
  std::vector<std::string> log;
  auto a = [](std::vector<std::string>& log) -> Coro<void> {
    log.push_back("a1");
    co_await sleep(0);
    log.push_back("a2");
  };
  auto b = [](std::vector<std::string>& log) -> Coro<void> {
    log.push_back("b1");
    co_await sleep(0);
    log.push_back("b2");
  };
  auto main = [&]() -> Coro<void> {
    Task<void> ta = create_task(a(log));
    Task<void> tb = create_task(b(log));
    co_await ta;
    co_await tb;
  };
  run(main());
  EXPECT_EQ(log, (std::vector<std::string>{"a1", "b1", "a2", "b2"}));
}

TEST(Sleep, NeverEndsEarly) {
  auto main = []() -> Coro<void> {
    EventLoop& loop = get_running_loop();
    for (double d : {0.001, 0.005, 0.02}) {
      const double start = loop.time();
      co_await sleep(d);
      EXPECT_GE(loop.time() - start, d);
    }
    const auto start = std::chrono::steady_clock::now();
    co_await sleep(std::chrono::milliseconds(3));
    EXPECT_GE(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(3));
  };
  run(main());
}

TEST(Sleep, NegativeIsZero) {
  auto main = []() -> Coro<double> {
    EventLoop& loop = get_running_loop();
    const double start = loop.time();
    co_await sleep(-10);
    co_return loop.time() - start;
  };
  EXPECT_LT(run(main()), 1.0);
}

TEST(Sleep, NanRaisesValueError) {
  // asyncio 3.13 (gh-105331).
  auto main = []() -> Coro<void> {
    EXPECT_THROW(co_await sleep(std::nan("")), ValueError);
    co_return;
  };
  run(main());
}

TEST(Sleep, GivesItsResultAfterTheDelay) {
  Runner runner({.virtual_time = true});
  auto main = []() -> Coro<void> {
    EventLoop& loop = get_running_loop();
    const double start = loop.time();
    const std::string text = co_await sleep(2.0, std::string(100, 'x'));
    EXPECT_EQ(text, std::string(100, 'x'));
    EXPECT_DOUBLE_EQ(loop.time() - start, 2.0);
    EXPECT_EQ(co_await sleep(std::chrono::seconds(1), 7), 7);
    EXPECT_DOUBLE_EQ(loop.time() - start, 3.0);
    const std::unique_ptr<int> moved = co_await sleep(0.5, std::make_unique<int>(1));
    EXPECT_EQ(*moved, 1);
    // Two at once, through gather: the longer delay.
    auto [a, b] = co_await gather(sleep(1.0, std::string("a")), sleep(0.5, 2));
    EXPECT_EQ(a, "a");
    EXPECT_EQ(b, 2);
    EXPECT_DOUBLE_EQ(loop.time() - start, 4.5);
  };
  runner.run(main());
}

TEST(Sleep, CancelledWithAResultRaisesCancelledError) {
  auto main = []() -> Coro<void> {
    auto sleeper = []() -> Coro<std::string> { co_return co_await sleep(3600, std::string("r")); };
    Task<std::string> task = create_task(sleeper());
    co_await sleep(0);
    task.cancel();
    EXPECT_THROW(co_await task, CancelledError);
  };
  run(main());
}

Coro<void> sleep_task(double d) {
  co_await sleep(d);
}

TEST(Sleep, ConcurrentSleepsOverlapOnVirtualTime) {
  Runner runner({.virtual_time = true});
  auto main = []() -> Coro<double> {
    EventLoop& loop = get_running_loop();
    const double start = loop.time();
    co_await gather(sleep_task(1), sleep_task(2), sleep_task(3));
    co_return loop.time() - start;
  };
  EXPECT_DOUBLE_EQ(runner.run(main()), 3.0);
}

// A sleep due before a callback, both expired by the same wait: the callback still runs
// first, because asyncio's sleep resumes the task from a future that its timer handle
// completes, one ready-queue pass after the handle runs.
TEST(Sleep, ResumesAfterTheCallbacksDueWithItsTimer) {
  auto main = []() -> Coro<void> {
    std::vector<std::string> order;
    auto sleeper = [](std::vector<std::string>& log) -> Coro<void> {
      co_await sleep(0.001);
      log.push_back("task");
    };
    Task<void> task = create_task(sleeper(order));
    co_await sleep(0);  // the task's timer is armed first, due first
    get_running_loop().call_later(0.002, [&order] { order.push_back("callback"); });
    std::this_thread::sleep_for(std::chrono::milliseconds(20));  // both due at the next wait
    co_await task;
    EXPECT_EQ(order, (std::vector<std::string>{"callback", "task"}));
  };
  run(main());
}

}  // namespace
}  // namespace corio
