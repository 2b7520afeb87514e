// Coro<T>: laziness, exception propagation, symmetric transfer on deep chains, the
// never-awaited warning, and misuse errors.
#include <gtest/gtest.h>
#include <corio/corio.hpp>

#include <string>

namespace corio {
namespace {

Coro<int> leaf(int x) {
  co_return x + 1;
}

Coro<int> chain(int depth) {
  if (depth == 0) co_return 0;
  co_return 1 + co_await chain(depth - 1);
}

TEST(Coro, NothingRunsUntilAwaited) {
  bool ran = false;
  auto body = [](bool& flag) -> Coro<void> {
    flag = true;
    co_return;
  };
  {
    testing::internal::CaptureStderr();
    Coro<void> c = body(ran);
    EXPECT_FALSE(ran);
  }
  const std::string warning = testing::internal::GetCapturedStderr();
  EXPECT_FALSE(ran);
  EXPECT_NE(warning.find("was never awaited"), std::string::npos) << warning;
}

TEST(Coro, NeverAwaitedWarningNamesTheCoroutine) {
  testing::internal::CaptureStderr();
  { Coro<int> c = leaf(1); }
  const std::string warning = testing::internal::GetCapturedStderr();
  EXPECT_NE(warning.find("leaf"), std::string::npos) << warning;
}

TEST(Coro, AwaitedCoroutinesDoNotWarn) {
  testing::internal::CaptureStderr();
  EXPECT_EQ(run(leaf(1)), 2);
  EXPECT_EQ(testing::internal::GetCapturedStderr(), "");
}

TEST(Coro, ExceptionsPropagateThroughTheChain) {
  auto thrower = []() -> Coro<int> {
    co_await sleep(0);
    throw ValueError("deep");
  };
  auto middle = [&]() -> Coro<int> { co_return co_await thrower() + 1; };
  auto top = [&]() -> Coro<std::string> {
    try {
      co_await middle();
    } catch (const ValueError& e) {
      co_return e.what();
    }
    co_return "";
  };
  EXPECT_EQ(run(top()), "deep");
}

TEST(Coro, MillionDeepAwaitChainDoesNotGrowTheStack) {
  // Each level is a frame awaiting the next; without symmetric transfer this overflows.
  EXPECT_EQ(run(chain(1'000'000)), 1'000'000);
}

TEST(Coro, AwaitingTwiceIsAnError) {
  auto main = []() -> Coro<void> {
    Coro<int> c = leaf(1);
    EXPECT_EQ(co_await c, 2);
    EXPECT_THROW(co_await c, RuntimeError);
  };
  run(main());
}

TEST(Coro, MoveOnlyResults) {
  auto make = []() -> Coro<std::unique_ptr<std::string>> {
    co_return std::make_unique<std::string>("owned");
  };
  auto main = [&]() -> Coro<std::string> { co_return *co_await make(); };
  EXPECT_EQ(run(main()), "owned");
}

}  // namespace
}  // namespace corio
