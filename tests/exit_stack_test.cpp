// Context managers, async_with/with, asynccontextmanager, ExitStack and AsyncExitStack:
// contextlib's unwinding rules (LIFO, suppression, replacement with context, every exit runs),
// cancellation at each await of an exit, and ownership of managers moved into a stack.
#include <gtest/gtest.h>
#include <corio/async_context.hpp>
#include <corio/corio.hpp>
#include <corio/exit_stack.hpp>

#include <cerrno>
#include <memory>
#include <string>
#include <vector>

namespace corio {
namespace {

using Events = std::vector<std::string>;

Runner::Options virtual_time() {
  return {.debug = false, .virtual_time = true};
}

// asyncio.run with virtual time: sleeps cost nothing and loop.time() is exact.
template <class T>
T vrun(Coro<T> coro) {
  return run(std::move(coro), virtual_time());
}

// An async context manager written as a class: opening and closing each take 0.1 s.
class Connection {
 public:
  Connection(std::string name, Events& events, bool refuse = false)
      : name_(std::move(name)), events_(&events), refuse_(refuse) {}
  Connection(Connection&&) = default;

  Coro<Connection*> aenter() {
    co_await sleep(0.1);
    if (refuse_) throw ConnectionRefusedError(ECONNREFUSED, "cannot open " + name_);
    events_->push_back("open " + name_);
    co_return this;
  }
  Coro<bool> aexit(std::exception_ptr error) {
    co_await sleep(0.1);
    events_->push_back("close " + name_ + (error ? " (error)" : ""));
    co_return false;
  }
  const std::string& name() const { return name_; }

 private:
  std::string name_;
  Events* events_;
  bool refuse_;
};

// The same manager written as a generator (@asynccontextmanager).
AsyncGenerator<std::string> get_connection(std::string name, Events& events) {
  co_await sleep(0.1);
  if (name == "refused") throw ConnectionRefusedError(ECONNREFUSED, "cannot open " + name);
  events.push_back("open " + name);
  std::exception_ptr error;
  try {
    co_yield name;
  } catch (...) {
    error = std::current_exception();
  }
  co_await sleep(0.1);
  events.push_back("close " + name);
  if (error) std::rethrow_exception(error);
}

// --- async_with ---

TEST(AsyncWith, EntersRunsTheBodyAndExits) {
  Runner runner(virtual_time());
  Events events;
  std::string result = *runner.run([&]() -> Coro<std::optional<std::string>> {
    Connection conn("db", events);
    co_return co_await async_with(conn, [&](Connection*& c) -> Coro<std::string> {
      events.push_back("use " + c->name());
      co_await sleep(1);
      co_return c->name() + " used";
    });
  }());
  EXPECT_EQ(result, "db used");
  EXPECT_EQ(events, (Events{"open db", "use db", "close db"}));
  EXPECT_DOUBLE_EQ(runner.get_loop().time(), 1.2);
}

// A manager that records what aexit saw and suppresses when told to.
struct Recorder {
  std::vector<std::exception_ptr>* seen;
  bool suppress = false;
  std::suspend_never aenter() { return {}; }
  Coro<bool> aexit(std::exception_ptr error) {
    seen->push_back(error);
    co_await sleep(0);
    co_return suppress;
  }
};

TEST(AsyncWith, BodyExceptionReachesAexitAndPropagatesUnlessSuppressed) {
  std::vector<std::exception_ptr> seen;
  vrun([&]() -> Coro<void> {
    Recorder keep{&seen, false};
    EXPECT_THROW(co_await async_with(keep,
                                     [](Recorder&) -> Coro<void> {
                                       throw ValueError("body");
                                       co_return;
                                     }),
                 ValueError);
    Recorder swallow{&seen, true};
    std::optional<int> r = co_await async_with(swallow, [](Recorder&) -> Coro<int> {
      throw ValueError("body");
      co_return 1;
    });
    EXPECT_FALSE(r.has_value());
  }());
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_THROW(std::rethrow_exception(seen[0]), ValueError);
  EXPECT_THROW(std::rethrow_exception(seen[1]), ValueError);
}

TEST(AsyncWith, AenterFailureSkipsBodyAndAexit) {
  Runner runner(virtual_time());
  Events events;
  bool body_ran = false;
  EXPECT_THROW(runner.run([&]() -> Coro<void> {
    co_await async_with(Connection("db", events, true), [&](Connection*&) -> Coro<void> {
      body_ran = true;
      co_return;
    });
  }()),
               ConnectionRefusedError);
  EXPECT_FALSE(body_ran);
  EXPECT_TRUE(events.empty());
}

struct FailingExit {
  std::suspend_never aenter() { return {}; }
  Coro<bool> aexit(std::exception_ptr) {
    co_await sleep(0);
    throw TypeError("exit failed");
  }
};

TEST(AsyncWith, ExceptionFromAexitReplacesTheBodysAndKeepsItAsContext) {
  std::exception_ptr caught;
  vrun([&]() -> Coro<void> {
    try {
      co_await async_with(FailingExit{}, [](FailingExit&) -> Coro<void> {
        throw ValueError("body");
        co_return;
      });
    } catch (const TypeError&) {
      caught = std::current_exception();
    }
  }());
  ASSERT_TRUE(caught);
  std::exception_ptr context = exception_context(caught);
  ASSERT_TRUE(context);
  EXPECT_THROW(std::rethrow_exception(context), ValueError);
}

TEST(AsyncWith, CancellationInTheBodyReachesAexit) {
  Runner runner(virtual_time());
  Events events;
  runner.run([&]() -> Coro<void> {
    Connection conn("db", events);
    auto work = [&]() -> Coro<void> {
      co_await async_with(conn, [&](Connection*&) -> Coro<void> { co_await sleep(10); });
    };
    Task<void> task = create_task(work());
    co_await sleep(1);
    task.cancel();
    EXPECT_THROW(co_await task, CancelledError);
    EXPECT_TRUE(task.cancelled());
  }());
  EXPECT_EQ(events, (Events{"open db", "close db (error)"}));
  EXPECT_DOUBLE_EQ(runner.get_loop().time(), 1.1);  // aexit's own sleep still ran
}

TEST(With, SynchronousManager) {
  struct File {
    Events* events;
    std::string enter() {
      events->push_back("enter");
      return "handle";
    }
    bool exit(std::exception_ptr error) {
      events->push_back(error ? "exit with error" : "exit");
      return error != nullptr;  // suppresses
    }
  };
  Events events;
  File file{&events};
  EXPECT_EQ(with(file, [&](std::string& h) { return h + "!"; }), "handle!");
  EXPECT_EQ(with(file, [&](std::string&) -> int { throw ValueError("x"); }), std::nullopt);
  EXPECT_EQ(events, (Events{"enter", "exit", "enter", "exit with error"}));
}

// --- asynccontextmanager ---

TEST(AsyncContextManager, GeneratorYieldsTheValueAndCleansUpAfterTheBody) {
  Runner runner(virtual_time());
  Events events;
  runner.run([&]() -> Coro<void> {
    co_await async_with(asynccontextmanager(get_connection("db", events)),
                        [&](std::string& name) -> Coro<void> {
                          events.push_back("use " + name);
                          co_await sleep(1);
                        });
  }());
  EXPECT_EQ(events, (Events{"open db", "use db", "close db"}));
  EXPECT_DOUBLE_EQ(runner.get_loop().time(), 1.2);
}

TEST(AsyncContextManager, FactoryFormTakesTheGeneratorsArguments) {
  Events events;
  auto connection = asynccontextmanager(get_connection);
  vrun([&]() -> Coro<void> {
    co_await async_with(connection("a", events),
                        [&](std::string& name) { events.push_back("use " + name); });
  }());
  EXPECT_EQ(events, (Events{"open a", "use a", "close a"}));
}

TEST(AsyncContextManager, BodyExceptionIsThrownAtTheYield) {
  Events events;
  std::exception_ptr body_error;
  std::exception_ptr caught;
  vrun([&]() -> Coro<void> {
    try {
      co_await async_with(asynccontextmanager(get_connection("db", events)),
                          [&](std::string&) -> Coro<void> {
                            try {
                              throw ValueError("in body");
                            } catch (...) {
                              body_error = std::current_exception();
                              throw;
                            }
                            co_return;
                          });
    } catch (const ValueError&) {
      caught = std::current_exception();
    }
  }());
  EXPECT_EQ(events, (Events{"open db", "close db"}));
  EXPECT_TRUE(caught);
  EXPECT_EQ(caught, body_error);  // the very same exception object, not a copy
}

TEST(AsyncContextManager, GeneratorThatSwallowsTheExceptionSuppressesIt) {
  auto forgiving = []() -> AsyncGenerator<int> {
    try {
      co_yield 1;
    } catch (const ValueError&) {
    }
  };
  bool after = false;
  vrun([&]() -> Coro<void> {
    std::optional<int> r =
        co_await async_with(asynccontextmanager(forgiving()), [](int&) -> Coro<int> {
          throw ValueError("x");
          co_return 0;
        });
    EXPECT_FALSE(r.has_value());
    after = true;
  }());
  EXPECT_TRUE(after);
}

TEST(AsyncContextManager, GeneratorRaisingADifferentExceptionReplacesIt) {
  auto translating2 = []() -> AsyncGenerator<int> {
    bool failed = false;
    try {
      co_yield 1;
    } catch (const ValueError&) {
      failed = true;
    }
    if (failed) throw TypeError("translated");
  };
  std::exception_ptr caught;
  vrun([&]() -> Coro<void> {
    try {
      co_await async_with(asynccontextmanager(translating2()), [](int&) -> Coro<void> {
        throw ValueError("original");
        co_return;
      });
    } catch (const TypeError&) {
      caught = std::current_exception();
    }
  }());
  ASSERT_TRUE(caught);
  ASSERT_TRUE(exception_context(caught));
  EXPECT_THROW(std::rethrow_exception(exception_context(caught)), ValueError);
}

TEST(AsyncContextManager, GeneratorMustYieldExactlyOnce) {
  auto never = []() -> AsyncGenerator<int> { co_return; };
  auto twice = [](bool* closed) -> AsyncGenerator<int> {
    try {
      co_yield 1;
      co_yield 2;
    } catch (const GeneratorExit&) {
      *closed = true;
      throw;
    }
  };
  bool closed = false;
  vrun([&]() -> Coro<void> {
    bool ran = false;
    try {
      co_await async_with(asynccontextmanager(never()), [&](int&) { ran = true; });
      ADD_FAILURE();
    } catch (const RuntimeError& e) {
      EXPECT_STREQ(e.what(), "generator didn't yield");
    }
    EXPECT_FALSE(ran);
    try {
      co_await async_with(asynccontextmanager(twice(&closed)), [&](int&) {});
      ADD_FAILURE();
    } catch (const RuntimeError& e) {
      EXPECT_STREQ(e.what(), "generator didn't stop");
    }
  }());
  EXPECT_TRUE(closed);  // aclose()d before the RuntimeError
}

// --- AsyncExitStack ---

TEST(AsyncExitStack, FiveConnectionsAreClosedLastInFirstOut) {
  Runner runner(virtual_time());
  Events events;
  runner.run([&]() -> Coro<void> {
    co_await async_with(AsyncExitStack(), [&](AsyncExitStack& stack) -> Coro<void> {
      std::vector<std::string> names;
      for (int i = 0; i < 5; ++i) {
        names.push_back(co_await stack.enter_async_context(
            asynccontextmanager(get_connection("db" + std::to_string(i), events))));
      }
      events.push_back("using " + std::to_string(names.size()));
      EXPECT_EQ(stack.size(), 5u);
    });
  }());
  EXPECT_EQ(events, (Events{"open db0", "open db1", "open db2", "open db3", "open db4", "using 5",
                            "close db4", "close db3", "close db2", "close db1", "close db0"}));
  EXPECT_DOUBLE_EQ(runner.get_loop().time(), 1.0);  // 5 opens + 5 closes, one after the other
}

TEST(AsyncExitStack, ALaterEnterThatThrowsUnwindsTheEarlierOnes) {
  Runner runner(virtual_time());
  Events events;
  bool reached_end_of_body = false;
  EXPECT_THROW(runner.run([&]() -> Coro<void> {
    co_await async_with(AsyncExitStack(), [&](AsyncExitStack& stack) -> Coro<void> {
      for (const char* name : {"db0", "db1", "db2", "refused", "db4"}) {
        co_await stack.enter_async_context(
            Connection(name, events, std::string(name) == "refused"));
      }
      reached_end_of_body = true;
    });
  }()),
               ConnectionRefusedError);
  EXPECT_FALSE(reached_end_of_body);
  EXPECT_EQ(events, (Events{"open db0", "open db1", "open db2", "close db2 (error)",
                            "close db1 (error)", "close db0 (error)"}));
}

TEST(AsyncExitStack, MixesSyncAndAsyncCallbacksInReverseOrder) {
  Events events;
  vrun([&]() -> Coro<void> {
    AsyncExitStack stack;
    stack.callback([&](const std::string& what) { events.push_back(what); },
                   std::string("sync callback"));
    stack.push_async_callback(
        [&](std::string what, int n) -> Coro<void> {
          co_await sleep(0);
          events.push_back(what + " " + std::to_string(n));
        },
        std::string("async callback"), 7);
    stack.push([&](std::exception_ptr) { events.push_back("sync exit"); });
    stack.push_async_exit([&](std::exception_ptr) -> Coro<void> {
      co_await sleep(0);
      events.push_back("async exit");
    });
    EXPECT_EQ(stack.size(), 4u);
    co_await stack.aclose();
    EXPECT_TRUE(stack.empty());
    co_await stack.aclose();  // nothing left: no-op
  }());
  EXPECT_EQ(events, (Events{"async exit", "sync exit", "async callback 7", "sync callback"}));
}

TEST(AsyncExitStack, SuppressionClearsTheExceptionForEarlierCallbacks) {
  std::vector<std::exception_ptr> seen;
  bool result = false;
  vrun([&]() -> Coro<void> {
    AsyncExitStack stack;
    stack.push_async_exit([&](std::exception_ptr e) -> Coro<bool> {
      seen.push_back(e);  // registered first: runs last, after the suppression
      co_return false;
    });
    stack.push_async_exit([&](std::exception_ptr e) -> Coro<bool> {
      seen.push_back(e);
      co_return true;
    });
    result = co_await stack.aexit(std::make_exception_ptr(ValueError("x")));
  }());
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_TRUE(seen[0]);
  EXPECT_FALSE(seen[1]);
  EXPECT_TRUE(result);
}

TEST(AsyncExitStack, ACallbackThatThrowsReplacesTheExceptionAndTheRestStillRun) {
  std::vector<std::exception_ptr> seen;
  std::exception_ptr final_error;
  std::exception_ptr original = std::make_exception_ptr(ValueError("original"));
  vrun([&]() -> Coro<void> {
    AsyncExitStack stack;
    stack.push_async_exit([&](std::exception_ptr e) -> Coro<bool> {
      seen.push_back(e);
      co_return false;
    });
    stack.push([&](std::exception_ptr e) -> bool {
      seen.push_back(e);
      throw TypeError("from sync exit");
    });
    stack.push_async_exit([&](std::exception_ptr e) -> Coro<bool> {
      seen.push_back(e);
      co_await sleep(0);
      throw KeyboardInterrupt();
    });
    try {
      co_await stack.aexit(original);
      ADD_FAILURE();
    } catch (const TypeError&) {
      final_error = std::current_exception();
    }
  }());
  ASSERT_EQ(seen.size(), 3u);
  EXPECT_EQ(seen[0], original);
  EXPECT_THROW(std::rethrow_exception(seen[1]), KeyboardInterrupt);
  EXPECT_THROW(std::rethrow_exception(seen[2]), TypeError);
  // The chain: TypeError -> KeyboardInterrupt -> ValueError.
  std::exception_ptr context = exception_context(final_error);
  ASSERT_TRUE(context);
  EXPECT_THROW(std::rethrow_exception(context), KeyboardInterrupt);
  EXPECT_EQ(exception_context(context), original);
}

TEST(AsyncExitStack, SyncExitsRunInsideAHandlerSoThrowWithNestedNests) {
  std::exception_ptr caught;
  try {
    ExitStack stack;
    stack.push(
        [](std::exception_ptr) -> bool { std::throw_with_nested(RuntimeError("exit failed")); });
    stack.exit(std::make_exception_ptr(ValueError("original")));
  } catch (const RuntimeError& e) {
    caught = std::current_exception();
    EXPECT_THROW(std::rethrow_if_nested(e), ValueError);
  }
  EXPECT_TRUE(caught);
}

TEST(AsyncExitStack, PopAllTransfersTheCallbacks) {
  Events events;
  vrun([&]() -> Coro<void> {
    AsyncExitStack outer;
    {
      AsyncExitStack stack;
      stack.push_async_callback([&]() -> Coro<void> {
        events.push_back("cleanup");
        co_return;
      });
      outer = stack.pop_all();
      EXPECT_TRUE(stack.empty());
      co_await stack.aclose();  // runs nothing
    }
    EXPECT_TRUE(events.empty());
    EXPECT_EQ(outer.size(), 1u);
    co_await outer.aclose();
  }());
  EXPECT_EQ(events, (Events{"cleanup"}));
}

TEST(AsyncExitStack, EnterAsyncContextFailureRegistersNothing) {
  Runner runner(virtual_time());
  Events events;
  runner.run([&]() -> Coro<void> {
    AsyncExitStack stack;
    EXPECT_THROW(co_await stack.enter_async_context(Connection("x", events, true)),
                 ConnectionRefusedError);
    EXPECT_TRUE(stack.empty());
  }());
}

TEST(AsyncExitStack, ManagersMovedInAreOwnedAndBorrowedOnesAreNot) {
  struct Counted {
    // Not an aggregate: GCC 12 miscounts copies of a braced aggregate temporary that lives
    // across a co_await (the shared_ptr would be released twice).
    explicit Counted(std::shared_ptr<int> a) : alive(std::move(a)) {}
    std::shared_ptr<int> alive;
    std::suspend_never aenter() { return {}; }
    Coro<void> aexit(std::exception_ptr) { co_return; }  // void result: never suppresses
  };
  auto token = std::make_shared<int>(0);
  vrun([&]() -> Coro<void> {
    AsyncExitStack stack;
    Counted borrowed(token);
    co_await stack.enter_async_context(borrowed);
    co_await stack.enter_async_context(Counted(token));
    stack.push_async_exit(Counted(token));  // exit only
    EXPECT_EQ(token.use_count(), 4);        // test + borrowed + two owned copies
    co_await stack.aclose();
    EXPECT_EQ(token.use_count(), 2);
  }());
}

TEST(AsyncExitStack, CancellationDuringAnExitIsRaisedAndTheRemainingExitsRun) {
  Runner runner(virtual_time());
  Events events;
  std::vector<std::exception_ptr> seen;
  runner.run([&]() -> Coro<void> {
    auto work = [&]() -> Coro<void> {
      AsyncExitStack stack;
      stack.push_async_exit([&](std::exception_ptr e) -> Coro<bool> {
        seen.push_back(e);
        co_await sleep(1);  // runs after the cancellation, whose exception it is given
        events.push_back("first registered, ran to the end");
        co_return false;
      });
      stack.push_async_exit([&](std::exception_ptr) -> Coro<bool> {
        try {
          co_await sleep(10);
        } catch (const CancelledError&) {
          events.push_back("exit cancelled");
          throw;
        }
        co_return false;
      });
      co_await stack.aclose();
    };
    Task<void> task = create_task(work());
    co_await sleep(2);
    task.cancel();
    EXPECT_THROW(co_await task, CancelledError);
  }());
  EXPECT_EQ(events, (Events{"exit cancelled", "first registered, ran to the end"}));
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_THROW(std::rethrow_exception(seen[0]), CancelledError);
  EXPECT_DOUBLE_EQ(runner.get_loop().time(), 3.0);
}

TEST(AsyncExitStack, CancellationDuringAnEnterUnwindsWhatWasEntered) {
  Runner runner(virtual_time());
  Events events;
  runner.run([&]() -> Coro<void> {
    auto work = [&]() -> Coro<void> {
      co_await async_with(AsyncExitStack(), [&](AsyncExitStack& stack) -> Coro<void> {
        co_await stack.enter_async_context(Connection("db0", events));
        co_await stack.enter_async_context(Connection("db1", events));  // cancelled in its aenter
        events.push_back("not reached");
      });
    };
    Task<void> task = create_task(work());
    co_await sleep(0.15);
    task.cancel();
    EXPECT_THROW(co_await task, CancelledError);
  }());
  EXPECT_EQ(events, (Events{"open db0", "close db0 (error)"}));
  EXPECT_DOUBLE_EQ(runner.get_loop().time(), 0.25);
}

TEST(AsyncExitStack, DestroyedWithCallbacksLeftWarns) {
  testing::internal::CaptureStderr();
  {
    AsyncExitStack stack;
    stack.push([](std::exception_ptr) {});
  }
  EXPECT_NE(
      testing::internal::GetCapturedStderr().find("AsyncExitStack destroyed with 1 exit callback"),
      std::string::npos);
}

// --- ExitStack ---

TEST(ExitStack, ClosesInReverseAndOnDestruction) {
  struct Lock {
    Events* events;
    std::string name;
    Lock& enter() {
      events->push_back("acquire " + name);
      return *this;
    }
    void exit(std::exception_ptr) { events->push_back("release " + name); }
  };
  Events events;
  Lock a{&events, "a"};
  {
    ExitStack stack;
    Lock& entered = stack.enter_context(a);
    EXPECT_EQ(&entered, &a);  // a reference from enter() stays a reference
    stack.enter_context(Lock{&events, "b"});
    stack.callback([&](int n) { events.push_back("callback " + std::to_string(n)); }, 3);
  }
  EXPECT_EQ(events, (Events{"acquire a", "acquire b", "callback 3", "release b", "release a"}));
}

TEST(ExitStack, WithSuppressesWhenAnExitSaysSo) {
  Events events;
  std::optional<int> r = with(ExitStack(), [&](ExitStack& stack) -> int {
    stack.push([&](std::exception_ptr e) {
      events.push_back(e ? "suppressing" : "nothing to suppress");
      return true;
    });
    stack.callback([&] { events.push_back("callback"); });
    throw ValueError("x");
  });
  EXPECT_FALSE(r.has_value());
  EXPECT_EQ(events, (Events{"callback", "suppressing"}));
  // Nothing received: exit() reports no suppression even though a callback returned true.
  ExitStack stack;
  stack.push([](std::exception_ptr) { return true; });
  EXPECT_FALSE(stack.exit(nullptr));
}

TEST(ExitStack, EveryExitRunsAndTheLastRaisedExceptionWins) {
  Events events;
  try {
    ExitStack stack;
    stack.callback([&] { events.push_back("first"); });
    stack.callback([&] { throw ValueError("second"); });
    stack.callback([&] { throw TypeError("third"); });
    stack.close();
    ADD_FAILURE();
  } catch (const ValueError& e) {
    EXPECT_STREQ(e.what(), "second");
    std::exception_ptr context = exception_context(std::current_exception());
    ASSERT_TRUE(context);
    EXPECT_THROW(std::rethrow_exception(context), TypeError);
  }
  EXPECT_EQ(events, (Events{"first"}));
}

TEST(ExitStack, PopAllKeepsTheCallbacksAliveBeyondTheScope) {
  Events events;
  ExitStack kept = [&] {
    ExitStack stack;
    stack.callback([&] { events.push_back("released"); });
    return stack.pop_all();  // success: hand the clean-up over
  }();
  EXPECT_TRUE(events.empty());
  kept.close();
  EXPECT_EQ(events, (Events{"released"}));
}

}  // namespace
}  // namespace corio
