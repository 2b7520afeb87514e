// run() and Runner: results, several runs on one loop, shutdown that cancels and waits for
// leftover tasks, and the errors asyncio gives for misuse.
#include <gtest/gtest.h>
#include <corio/corio.hpp>

#include <string>
#include <vector>

namespace corio {
namespace {

TEST(Runner, SeveralRunsShareOneLoop) {
  Runner runner;
  EventLoop* first = nullptr;
  auto capture = [](EventLoop** out) -> Coro<int> {
    *out = &get_running_loop();
    co_return 1;
  };
  EXPECT_EQ(runner.run(capture(&first)), 1);
  EventLoop* second = nullptr;
  EXPECT_EQ(runner.run(capture(&second)), 1);
  EXPECT_EQ(first, second);
  EXPECT_EQ(first, &runner.get_loop());
}

TEST(Runner, CloseCancelsLeftoverTasksAndWaitsForTheirCleanup) {
  std::vector<std::string> log;
  {
    Runner runner;
    auto background = [](std::vector<std::string>& log) -> Coro<void> {
      std::exception_ptr cancelled;
      try {
        co_await sleep(100);
      } catch (const CancelledError&) {
        cancelled = std::current_exception();  // C++ cannot co_await inside a handler
      }
      log.push_back("cancelled");
      co_await sleep(0.001);
      log.push_back("cleanup done");
      std::rethrow_exception(cancelled);
    };
    auto main = [&]() -> Coro<void> {
      create_task(background(log));
      co_await sleep(0);
    };
    runner.run(main());
    EXPECT_TRUE(log.empty());
  }
  EXPECT_EQ(log, (std::vector<std::string>{"cancelled", "cleanup done"}));
}

TEST(Runner, ClosedRunnerRefusesToRun) {
  Runner runner;
  runner.close();
  auto nothing = []() -> Coro<void> { co_return; };
  Coro<void> c = nothing();
  EXPECT_THROW(runner.run(std::move(c)), RuntimeError);
  EXPECT_THROW(runner.get_loop(), RuntimeError);
}

TEST(Runner, RunInsideARunningLoopIsAnError) {
  auto inner = []() -> Coro<int> { co_return 1; };
  auto outer = [&]() -> Coro<std::string> {
    try {
      run(inner());
    } catch (const RuntimeError& e) {
      co_return e.what();
    }
    co_return "";
  };
  testing::internal::CaptureStderr();  // the refused coroutine is reported as never awaited
  EXPECT_NE(run(outer()).find("running event loop"), std::string::npos);
  testing::internal::GetCapturedStderr();
}

TEST(Runner, ExceptionFromMainPropagates) {
  auto main = []() -> Coro<void> {
    co_await sleep(0);
    throw ValueError("from main");
  };
  EXPECT_THROW(run(main()), ValueError);
}

TEST(Runner, DebugModeReportsSlowCallbacks) {
  auto blocking = []() -> Coro<void> {
    const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(150);
    while (std::chrono::steady_clock::now() < until) {
    }
    co_return;
  };
  testing::internal::CaptureStderr();
  run(blocking(), {.debug = true});
  const std::string out = testing::internal::GetCapturedStderr();
  EXPECT_NE(out.find("took"), std::string::npos) << out;
  EXPECT_NE(out.find("Task-1"), std::string::npos) << out;
}

}  // namespace
}  // namespace corio
