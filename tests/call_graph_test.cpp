// capture_call_graph: the coroutine chain of a suspended task and the tasks awaiting it.
#include <gtest/gtest.h>
#include <corio/call_graph.hpp>
#include <corio/corio.hpp>

#include <string>

namespace corio {
namespace {

Coro<void> innermost_step() {
  co_await sleep(10);
}
Coro<void> middle_step() {
  co_await innermost_step();
}
Coro<void> worker() {
  co_await middle_step();
}

TEST(CallGraph, ShowsTheAwaitChainAndTheWaiters) {
  Runner runner({.virtual_time = true});
  auto main = []() -> Coro<void> {
    Task<void> w = create_task(worker(), "worker");
    auto waiter = [](Task<void> t) -> Coro<void> { co_await t; };
    Task<void> boss = create_task(waiter(w), "boss");
    co_await sleep(1);

    FutureCallGraph graph = capture_call_graph(w);
    EXPECT_EQ(graph.task_name, "worker");
    EXPECT_EQ(graph.call_stack.size(), 3u);
    if (graph.call_stack.size() == 3) {
      EXPECT_NE(graph.call_stack[0].function.find("worker"), std::string::npos);
      EXPECT_NE(graph.call_stack[1].function.find("middle_step"), std::string::npos);
      EXPECT_NE(graph.call_stack[2].function.find("innermost_step"), std::string::npos);
      EXPECT_NE(graph.call_stack[2].file.find("call_graph_test.cpp"), std::string::npos);
    }
    EXPECT_EQ(graph.awaited_by.size(), 1u);
    if (!graph.awaited_by.empty()) EXPECT_EQ(graph.awaited_by[0].task_name, "boss");

    const std::string text = format_call_graph(w);
    EXPECT_NE(text.find("* Task(name='worker')"), std::string::npos) << text;
    EXPECT_NE(text.find("+ Awaited by:"), std::string::npos) << text;
    // Innermost frame is printed first, as Python does.
    EXPECT_LT(text.find("innermost_step"), text.find("middle_step")) << text;

    w.cancel();
    EXPECT_THROW(co_await boss, CancelledError);
    EXPECT_TRUE(capture_call_graph(w).call_stack.empty());  // a finished task has no frames
  };
  runner.run(main());
}

TEST(CallGraph, CurrentTaskSeesItself) {
  auto main = []() -> Coro<std::size_t> { co_return capture_call_graph().call_stack.size(); };
  EXPECT_EQ(run(main()), 1u);
  EXPECT_THROW(capture_call_graph(), RuntimeError);
}

}  // namespace
}  // namespace corio
