// shield(): results pass through, the caller can be cancelled (or time out) while the inner
// work runs on, the inner's own cancellation and errors reach the outer, done inners are
// returned as they are.
#include <gtest/gtest.h>
#include <corio/corio.hpp>
#include <corio/shield.hpp>
#include <corio/wait_for.hpp>

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

TEST(Shield, PassesTheResultThrough) {
  auto main = []() -> Coro<int> { co_return co_await shield(value_after(1, 8)); };
  EXPECT_EQ(run(main(), virtual_time()), 8);
}

TEST(Shield, CancellingTheCallerLeavesTheInnerRunning) {
  auto main = []() -> Coro<void> {
    bool finished = false;
    auto important = [&]() -> Coro<int> {
      co_await sleep(2);
      finished = true;
      co_return 11;
    };
    Task<int> inner = create_task(important());
    auto caller = [&]() -> Coro<int> { co_return co_await shield(inner); };
    Task<int> c = create_task(caller());
    co_await sleep(1);
    c.cancel();
    EXPECT_THROW(co_await c, CancelledError);
    EXPECT_FALSE(inner.done());
    EXPECT_EQ(co_await inner, 11);
    EXPECT_TRUE(finished);
    EXPECT_DOUBLE_EQ(now(), 2.0);
  };
  run(main(), virtual_time());
}

TEST(Shield, WrapsACoroutineInATaskThatOutlivesTheCaller) {
  auto main = []() -> Coro<void> {
    std::vector<std::string> log;
    auto work = [&]() -> Coro<void> {
      co_await sleep(2);
      log.push_back("work done at " + std::to_string(now()));
    };
    try {
      co_await wait_for(shield(work()), 1.0);
    } catch (const TimeoutError&) {
      log.push_back("timeout at " + std::to_string(now()));
    }
    co_await sleep(5);
    EXPECT_EQ(log, (std::vector<std::string>{"timeout at 1.000000", "work done at 2.000000"}));
  };
  run(main(), virtual_time());
}

TEST(Shield, CancellingTheOuterFutureDoesNotCancelTheInner) {
  auto main = []() -> Coro<void> {
    Task<int> inner = create_task(value_after(1, 3));
    Future<int> outer = shield(inner);
    EXPECT_TRUE(outer.cancel());
    EXPECT_EQ(co_await inner, 3);
    EXPECT_TRUE(outer.cancelled());
  };
  run(main(), virtual_time());
}

TEST(Shield, InnerCancellationAndErrorsReachTheOuter) {
  auto main = []() -> Coro<void> {
    Task<int> inner = create_task(value_after(5, 1));
    Future<int> outer = shield(inner);
    co_await sleep(1);
    inner.cancel();
    EXPECT_THROW(co_await outer, CancelledError);
    EXPECT_TRUE(outer.cancelled());

    auto failing = []() -> Coro<int> {
      co_await sleep(1);
      throw ValueError("inner failed");
    };
    EXPECT_THROW(co_await shield(failing()), ValueError);
  };
  run(main(), virtual_time());
}

TEST(Shield, ADoneInnerIsReturnedAsIs) {
  auto main = []() -> Coro<void> {
    Future<int> f = get_running_loop().create_future<int>();
    f.set_result(1);
    Future<int> s = shield(f);
    EXPECT_EQ(s.base(), f.base());
    EXPECT_EQ(co_await s, 1);
  };
  run(main(), virtual_time());
}

}  // namespace
}  // namespace corio
