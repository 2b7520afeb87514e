// Future<T>: states, results, exceptions, callbacks and awaiting, as asyncio.Future.
#include <gtest/gtest.h>
#include <corio/corio.hpp>

#include <string>
#include <vector>

namespace corio {
namespace {

TEST(Future, ResultAndStates) {
  EventLoop loop;
  Future<int> f = loop.create_future<int>();
  EXPECT_FALSE(f.done());
  EXPECT_THROW(f.result(), InvalidStateError);
  EXPECT_THROW(f.exception(), InvalidStateError);
  f.set_result(42);
  EXPECT_TRUE(f.done());
  EXPECT_FALSE(f.cancelled());
  EXPECT_EQ(f.result(), 42);
  EXPECT_EQ(f.exception(), nullptr);
  EXPECT_THROW(f.set_result(1), InvalidStateError);
  EXPECT_THROW(f.set_exception(ValueError("x")), InvalidStateError);
  EXPECT_FALSE(f.cancel());
}

TEST(Future, ExceptionIsRethrownByResult) {
  EventLoop loop;
  Future<std::string> f = loop.create_future<std::string>();
  f.set_exception(ValueError("bad"));
  EXPECT_THROW(f.result(), ValueError);
  EXPECT_NE(f.exception(), nullptr);
}

TEST(Future, CancelWithMessage) {
  EventLoop loop;
  Future<> f = loop.create_future();
  EXPECT_TRUE(f.cancel("stop it"));
  EXPECT_TRUE(f.cancelled());
  EXPECT_TRUE(f.done());
  EXPECT_FALSE(f.cancel());
  try {
    f.result();
    FAIL() << "result() of a cancelled future must throw";
  } catch (const CancelledError& e) {
    EXPECT_EQ(e.message(), "stop it");
  }
  EXPECT_THROW(f.exception(), CancelledError);
}

TEST(Future, DoneCallbacksAreScheduledNotCalledInline) {
  EventLoop loop;
  Future<int> f = loop.create_future<int>();
  std::vector<int> seen;
  f.add_done_callback([&](Future<int> done) { seen.push_back(done.result()); });
  const auto id = f.add_done_callback([&](Future<int>) { seen.push_back(-1); });
  EXPECT_EQ(f.remove_done_callback(id), 1u);
  f.set_result(7);
  EXPECT_TRUE(seen.empty());  // asyncio schedules callbacks with call_soon
  loop.call_soon([&] { loop.stop(); });
  loop.run_forever();
  EXPECT_EQ(seen, (std::vector<int>{7}));
  // A callback added to a done future is scheduled too.
  f.add_done_callback([&](Future<int> done) { seen.push_back(done.result() + 1); });
  loop.call_soon([&] { loop.stop(); });
  loop.run_forever();
  EXPECT_EQ(seen, (std::vector<int>{7, 8}));
}

TEST(Future, AwaitingBridgesCallbackCode) {
  EventLoop loop;
  Future<int> f = loop.create_future<int>();
  loop.call_later(0.001, [f]() mutable { f.set_result(5); });
  auto waiter = [](Future<int> fut) -> Coro<int> { co_return co_await fut * 2; };
  EXPECT_EQ(loop.run_until_complete(waiter(f)), 10);
  EXPECT_EQ(f.result(), 5);  // awaiting copies while others hold the future
}

TEST(Future, ManyTasksAwaitOneFuture) {
  EventLoop loop;
  Future<int> f = loop.create_future<int>();
  auto waiter = [](Future<int> fut) -> Coro<int> { co_return co_await fut; };
  auto t1 = loop.create_task(waiter(f));
  auto t2 = loop.create_task(waiter(f));
  loop.call_soon([f]() mutable { f.set_result(3); });
  loop.run_until_complete(t2);
  loop.run_until_complete(t1);
  EXPECT_EQ(t1.result() + t2.result(), 6);
}

TEST(Future, AwaitingAFutureOfAnotherLoopIsAnError) {
  EventLoop other;
  Future<int> foreign = other.create_future<int>();
  auto waiter = [](Future<int> fut) -> Coro<int> { co_return co_await fut; };
  EventLoop loop;
  EXPECT_THROW(loop.run_until_complete(waiter(foreign)), RuntimeError);
  EXPECT_THROW(loop.run_until_complete(foreign), ValueError);
}

TEST(Future, UnretrievedExceptionIsReported) {
  EventLoop loop;
  std::vector<std::string> messages;
  loop.set_exception_handler(
      [&](EventLoop&, const ExceptionContext& context) { messages.push_back(context.message); });
  {
    Future<int> f = loop.create_future<int>();
    f.set_exception(ValueError("lost"));
  }
  {
    Future<int> g = loop.create_future<int>();
    g.set_exception(ValueError("seen"));
    EXPECT_THROW(g.result(), ValueError);
  }
  EXPECT_EQ(messages, (std::vector<std::string>{"Future exception was never retrieved"}));
}

TEST(Future, FutureMayOutliveItsLoop) {
  Future<int> survivor;
  {
    EventLoop loop;
    survivor = loop.create_future<int>();
  }
  EXPECT_FALSE(survivor.done());
  EXPECT_THROW(survivor.get_loop(), RuntimeError);
}

}  // namespace
}  // namespace corio

namespace corio {
namespace {
TEST(Future, CallbacksAndAwaitingTasksRunInRegistrationOrder) {
  EventLoop loop;
  Future<int> f = loop.create_future<int>();
  std::vector<std::string> order;
  f.add_done_callback([&](Future<int>) { order.push_back("callback 1"); });
  auto waiter = [](Future<int> fut, std::vector<std::string>& log) -> Coro<void> {
    co_await fut;
    log.push_back("task");
  };
  Task<void> t = loop.create_task(waiter(f, order));
  loop.call_soon([&] {
    f.add_done_callback([&](Future<int>) { order.push_back("callback 2"); });
    f.set_result(1);
  });
  loop.run_until_complete(t);
  EXPECT_EQ(order, (std::vector<std::string>{"callback 1", "task", "callback 2"}));
}
}  // namespace
}  // namespace corio
