// gather(): concurrency, result shapes, first-exception rule, return_exceptions, and that
// cancelling the gather cancels its children.
#include <gtest/gtest.h>
#include <corio/corio.hpp>

#include <string>
#include <vector>

namespace corio {
namespace {

Coro<int> after(double delay, int value, std::vector<int>* order = nullptr) {
  co_await sleep(delay);
  if (order) order->push_back(value);
  co_return value;
}

Coro<std::string> text_after(double delay, std::string value) {
  co_await sleep(delay);
  co_return value;
}

Coro<void> sleep_then_nothing() {
  co_await sleep(0.5);
}

Coro<void> fail_after(double delay) {
  co_await sleep(delay);
  throw ValueError("failed");
}

TEST(Gather, HeterogeneousResultsInArgumentOrderConcurrently) {
  Runner runner({.virtual_time = true});
  auto main = []() -> Coro<double> {
    const double start = get_running_loop().time();
    auto [a, b, c] = co_await gather(after(3, 1), text_after(1, "two"), after(2, 3));
    EXPECT_EQ(a, 1);
    EXPECT_EQ(b, "two");
    EXPECT_EQ(c, 3);
    co_return get_running_loop().time() - start;
  };
  EXPECT_DOUBLE_EQ(runner.run(main()), 3.0);  // max, not sum
}

TEST(Gather, VoidChildrenAndTasksAndVectors) {
  Runner runner({.virtual_time = true});
  auto main = []() -> Coro<void> {
    Task<int> t = create_task(after(1, 5));
    auto [x, y] = co_await gather(t, sleep_then_nothing());
    EXPECT_EQ(x, 5);
    (void)y;  // std::monostate
    std::vector<Coro<int>> many;
    std::vector<int> order;
    for (int i = 0; i < 5; ++i) many.push_back(after(5 - i, i, &order));
    std::vector<int> results = co_await gather(std::move(many));
    EXPECT_EQ(results, (std::vector<int>{0, 1, 2, 3, 4}));
    EXPECT_EQ(order, (std::vector<int>{4, 3, 2, 1, 0}));
    EXPECT_TRUE((co_await gather(std::vector<Coro<int>>{})).empty());
  };
  runner.run(main());
}

TEST(Gather, FirstExceptionPropagatesAndOthersKeepRunning) {
  Runner runner({.virtual_time = true});
  auto main = []() -> Coro<void> {
    std::vector<int> order;
    Task<int> slow = create_task(after(5, 1, &order));
    try {
      co_await gather(slow, fail_after(1));
      ADD_FAILURE() << "gather should raise";
    } catch (const ValueError&) {
    }
    EXPECT_FALSE(slow.done());
    EXPECT_EQ(co_await slow, 1);  // it was not cancelled
  };
  runner.run(main());
}

TEST(Gather, ReturnExceptionsCollectsEverything) {
  Runner runner({.virtual_time = true});
  auto main = []() -> Coro<void> {
    auto [a, b] = co_await gather(return_exceptions, after(1, 1), fail_after(2));
    EXPECT_TRUE(a.has_value());
    EXPECT_EQ(a.value(), 1);
    EXPECT_FALSE(b.has_value());
    EXPECT_THROW(std::rethrow_exception(b.exception()), ValueError);
  };
  runner.run(main());
}

TEST(Gather, CancellingTheAwaiterCancelsTheChildren) {
  Runner runner({.virtual_time = true});
  auto main = []() -> Coro<void> {
    Task<int> a = create_task(after(10, 1));
    Task<int> b = create_task(after(20, 2));
    auto waiter = [](Task<int> x, Task<int> y) -> Coro<void> { co_await gather(x, y); };
    Task<void> w = create_task(waiter(a, b));
    co_await sleep(1);
    w.cancel();
    EXPECT_THROW(co_await w, CancelledError);
    EXPECT_TRUE(a.cancelled());
    EXPECT_TRUE(b.cancelled());
  };
  runner.run(main());
}

TEST(Gather, CancelledChildWithoutReturnExceptionsRaisesCancelledError) {
  Runner runner({.virtual_time = true});
  auto main = []() -> Coro<void> {
    Task<int> a = create_task(after(10, 1));
    auto g = gather(a, after(1, 2));
    co_await sleep(0);
    a.cancel();
    EXPECT_THROW(co_await g, CancelledError);
  };
  runner.run(main());
}

}  // namespace
}  // namespace corio

namespace corio {
namespace {
TEST(Gather, ChildrenStartInArgumentOrder) {
  std::vector<int> started;
  auto mark = [](std::vector<int>& log, int i) -> Coro<void> {
    log.push_back(i);
    co_return;
  };
  auto main = [&]() -> Coro<void> {
    co_await gather(mark(started, 1), mark(started, 2), mark(started, 3));
  };
  run(main());
  EXPECT_EQ(started, (std::vector<int>{1, 2, 3}));
}
}  // namespace
}  // namespace corio

namespace corio {
namespace {
TEST(Gather, AcceptsLeafAwaitablesLikeSleep) {
  Runner runner({.virtual_time = true});
  auto main = []() -> Coro<double> {
    const double start = get_running_loop().time();
    auto [a, b] = co_await gather(after(2, 7), sleep(3));
    EXPECT_EQ(a, 7);
    (void)b;
    co_return get_running_loop().time() - start;
  };
  EXPECT_DOUBLE_EQ(runner.run(main()), 3.0);
}
}  // namespace
}  // namespace corio
