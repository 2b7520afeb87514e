// AsyncGenerator and async_for: values across awaits, exhaustion, errors, athrow/aclose,
// cancellation inside the generator, finalization of dropped generators and at Runner close.
#include <gtest/gtest.h>
#include <corio/async_generator.hpp>
#include <corio/corio.hpp>

#include <memory>
#include <string>
#include <vector>

namespace corio {
namespace {

Runner::Options virtual_time() {
  return {.debug = false, .virtual_time = true};
}

AsyncGenerator<int> ticker(int count, double delay) {
  for (int i = 0; i < count; ++i) {
    co_await sleep(delay);
    co_yield i;
  }
}

TEST(AsyncGenerator, YieldsValuesAcrossAwaits) {
  Runner runner(virtual_time());
  std::vector<int> seen;
  std::vector<double> times;
  runner.run([&]() -> Coro<void> {
    AsyncGenerator<int> gen = ticker(3, 1.0);
    while (std::optional<int> v = co_await gen.next()) {
      seen.push_back(*v);
      times.push_back(get_running_loop().time());
    }
    EXPECT_TRUE(gen.finished());
  }());
  EXPECT_EQ(seen, (std::vector<int>{0, 1, 2}));
  EXPECT_EQ(times, (std::vector<double>{1.0, 2.0, 3.0}));
}

TEST(AsyncGenerator, LazyUntilFirstNext) {
  bool started = false;
  auto gen_fn = [&]() -> AsyncGenerator<int> {
    started = true;
    co_yield 1;
  };
  Runner runner(virtual_time());
  runner.run([&]() -> Coro<void> {
    AsyncGenerator<int> gen = gen_fn();
    co_await sleep(1);
    EXPECT_FALSE(started);
    EXPECT_EQ(co_await gen.next(), 1);
    EXPECT_TRUE(started);
  }());
}

TEST(AsyncGenerator, ExhaustedGeneratorKeepsReturningNullopt) {
  run([]() -> Coro<void> {
    AsyncGenerator<int> gen = ticker(1, 0);
    EXPECT_EQ(co_await gen.next(), 0);
    EXPECT_EQ(co_await gen.next(), std::nullopt);
    EXPECT_EQ(co_await gen.next(), std::nullopt);
    EXPECT_TRUE(gen.finished());
  }());
}

AsyncGenerator<int> fails_after(int n) {
  for (int i = 0; i < n; ++i) co_yield i;
  co_await sleep(0);
  throw ValueError("boom");
}

TEST(AsyncGenerator, ExceptionFromBodyReachesConsumerOnce) {
  run([]() -> Coro<void> {
    AsyncGenerator<int> gen = fails_after(1);
    EXPECT_EQ(co_await gen.next(), 0);
    bool raised = false;
    try {
      co_await gen.next();
    } catch (const ValueError& e) {
      raised = std::string(e.what()) == "boom";
    }
    EXPECT_TRUE(raised);
    EXPECT_TRUE(gen.finished());
    EXPECT_EQ(co_await gen.next(), std::nullopt);  // StopAsyncIteration afterwards
  }());
}

TEST(AsyncGenerator, MoveOnlyValues) {
  auto boxes = []() -> AsyncGenerator<std::unique_ptr<int>> {
    for (int i = 1; i <= 2; ++i) co_yield std::make_unique<int>(i * 10);
  };
  int sum = run([&]() -> Coro<int> {
    int total = 0;
    co_await async_for(boxes(), [&](std::unique_ptr<int>& box) { total += *box; });
    co_return total;
  }());
  EXPECT_EQ(sum, 30);
}

TEST(AsyncGenerator, ManyYieldsWithoutSuspendingDoNotGrowTheStack) {
  auto count = [](int n) -> AsyncGenerator<int> {
    for (int i = 0; i < n; ++i) co_yield i;
  };
  long long sum = run([&]() -> Coro<long long> {
    long long total = 0;
    AsyncGenerator<int> gen = count(200000);
    while (std::optional<int> v = co_await gen.next()) total += *v;
    co_return total;
  }());
  EXPECT_EQ(sum, 200000LL * 199999 / 2);
}

// --- async for and the aadd fold over any async iterable ---

template <AsyncIterable I>
Coro<int> aadd(I& iterable) {
  int sum = 0;
  co_await async_for(iterable, [&](int& v) -> Coro<void> {
    co_await sleep(0);
    sum += v;
  });
  co_return sum;
}

// A hand-written async iterator (Python: a class with __anext__), not a generator.
class Countdown {
 public:
  explicit Countdown(int from) : n_(from) {}
  Coro<std::optional<int>> next() {
    co_await sleep(0.5);
    if (n_ == 0) co_return std::nullopt;
    co_return n_--;
  }

 private:
  int n_;
};

TEST(AsyncFor, FoldsAGeneratorAndAHandWrittenIterator) {
  Runner runner(virtual_time());
  AsyncGenerator<int> gen = ticker(5, 1.0);
  EXPECT_EQ(runner.run(aadd(gen)), 0 + 1 + 2 + 3 + 4);
  EXPECT_DOUBLE_EQ(runner.get_loop().time(), 5.0);
  Countdown countdown(4);
  EXPECT_EQ(runner.run(aadd(countdown)), 4 + 3 + 2 + 1);
  EXPECT_DOUBLE_EQ(runner.get_loop().time(), 7.5);
}

TEST(AsyncFor, ReturningFalseBreaksAndTheDroppedGeneratorIsClosed) {
  Runner runner(virtual_time());
  std::vector<std::string> events;
  auto gen_fn = [&]() -> AsyncGenerator<int> {
    try {
      for (int i = 0;; ++i) co_yield i;
    } catch (const GeneratorExit&) {
      events.push_back("GeneratorExit");
    }
    co_await sleep(2);  // asynchronous cleanup after the exit
    events.push_back("cleaned up at " +
                     std::to_string(static_cast<int>(get_running_loop().time())));
  };
  runner.run([&]() -> Coro<void> {
    co_await async_for(gen_fn(), [&](int& v) {
      events.push_back(std::to_string(v));
      return v < 2;
    });
    events.push_back("after loop");
    co_await sleep(3);
    events.push_back("main done");
  }());
  EXPECT_EQ(events, (std::vector<std::string>{"0", "1", "2", "after loop", "GeneratorExit",
                                              "cleaned up at 2", "main done"}));
}

TEST(AsyncFor, BodyExceptionPropagates) {
  EXPECT_THROW(run([]() -> Coro<void> {
                 co_await async_for(ticker(5, 0), [](int& v) -> Coro<void> {
                   if (v == 2) throw ValueError("stop");
                   co_return;
                 });
               }()),
               ValueError);
}

// --- aclose and athrow ---

TEST(AsyncGenerator, AcloseRunsAsyncCleanupAtTheYield) {
  Runner runner(virtual_time());
  std::vector<std::string> events;
  auto gen_fn = [&]() -> AsyncGenerator<int> {
    struct Guard {
      std::vector<std::string>* events;
      ~Guard() { events->push_back("raii"); }
    } guard{&events};
    std::exception_ptr exit;
    try {
      co_yield 1;
      co_yield 2;
    } catch (...) {
      exit = std::current_exception();
    }
    co_await sleep(1);
    events.push_back("async cleanup");
    if (exit) std::rethrow_exception(exit);
  };
  runner.run([&]() -> Coro<void> {
    AsyncGenerator<int> gen = gen_fn();
    EXPECT_EQ(co_await gen.next(), 1);
    co_await gen.aclose();
    events.push_back("closed");
    EXPECT_TRUE(gen.finished());
    co_await gen.aclose();  // closing twice is a no-op
    EXPECT_EQ(co_await gen.next(), std::nullopt);
  }());
  EXPECT_EQ(events, (std::vector<std::string>{"async cleanup", "raii", "closed"}));
  EXPECT_DOUBLE_EQ(runner.get_loop().time(), 1.0);
}

TEST(AsyncGenerator, AcloseOfAGeneratorThatIgnoresGeneratorExitRaises) {
  auto stubborn = []() -> AsyncGenerator<int> {
    for (;;) {
      try {
        co_yield 1;
      } catch (const GeneratorExit&) {
      }
    }
  };
  run([&]() -> Coro<void> {
    AsyncGenerator<int> gen = stubborn();
    co_await gen.next();
    bool raised = false;
    try {
      co_await gen.aclose();
    } catch (const RuntimeError& e) {
      raised = std::string(e.what()) == "async generator ignored GeneratorExit";
    }
    EXPECT_TRUE(raised);
  }());  // the generator is then destroyed; its finalizer fails again and is reported
}

TEST(AsyncGenerator, AcloseOfANeverStartedGeneratorDoesNotRunIt) {
  bool ran = false;
  auto gen_fn = [&]() -> AsyncGenerator<int> {
    ran = true;
    co_yield 1;
  };
  run([&]() -> Coro<void> {
    AsyncGenerator<int> gen = gen_fn();
    co_await gen.aclose();
    EXPECT_TRUE(gen.finished());
    EXPECT_EQ(co_await gen.next(), std::nullopt);
  }());
  EXPECT_FALSE(ran);
}

TEST(AsyncGenerator, AthrowIsRaisedAtTheYield) {
  auto resilient = []() -> AsyncGenerator<std::string> {
    std::string error;
    while (error.empty()) {
      try {
        co_yield "value";
      } catch (const ValueError& e) {
        error = e.what();  // no co_yield inside a handler in C++: leave it first
      }
    }
    co_yield "recovered from " + error;
  };
  run([&]() -> Coro<void> {
    AsyncGenerator<std::string> gen = resilient();
    EXPECT_EQ(co_await gen.next(), "value");
    EXPECT_EQ(co_await gen.athrow(ValueError("bad")), "recovered from bad");
    EXPECT_EQ(co_await gen.next(), std::nullopt);
    // Exhausted: athrow just ends the iteration. Never started: raised right away.
    EXPECT_EQ(co_await gen.athrow(ValueError("late")), std::nullopt);
    AsyncGenerator<std::string> fresh = resilient();
    EXPECT_THROW(co_await fresh.athrow(ValueError("early")), ValueError);
    EXPECT_TRUE(fresh.finished());
    AsyncGenerator<int> plain = ticker(3, 0);
    co_await plain.next();
    EXPECT_THROW(co_await plain.athrow(TypeError("uncaught")), TypeError);
    EXPECT_TRUE(plain.finished());
  }());
}

// --- cancellation ---

TEST(AsyncGenerator, CancellingTheConsumerRaisesCancelledErrorInsideTheGenerator) {
  Runner runner(virtual_time());
  std::vector<std::string> events;
  auto gen_fn = [&]() -> AsyncGenerator<int> {
    co_yield 0;
    try {
      co_await sleep(10);
    } catch (const CancelledError& e) {
      events.push_back("generator saw CancelledError: " + e.message());
      throw;
    }
    co_yield 1;
  };
  runner.run([&]() -> Coro<void> {
    AsyncGenerator<int> gen = gen_fn();
    // A named lambda: a coroutine lambda's captures live in the closure, which must outlive it.
    auto consume = [&]() -> Coro<void> {
      while (co_await gen.next()) events.push_back("item");
    };
    Task<void> consumer = create_task(consume());
    co_await sleep(1);
    consumer.cancel("stop it");
    try {
      co_await consumer;
    } catch (const CancelledError&) {
      events.push_back("consumer cancelled");
    }
    EXPECT_TRUE(gen.finished());
    EXPECT_DOUBLE_EQ(get_running_loop().time(), 1.0);
  }());
  EXPECT_EQ(events, (std::vector<std::string>{"item", "generator saw CancelledError: stop it",
                                              "consumer cancelled"}));
}

TEST(AsyncGenerator, CancellationReachesAsyncCleanupDuringAclose) {
  Runner runner(virtual_time());
  std::vector<std::string> events;
  auto gen_fn = [&]() -> AsyncGenerator<int> {
    bool closing = false;
    try {
      co_yield 0;
    } catch (const GeneratorExit&) {
      closing = true;
    }
    if (closing) {
      try {
        co_await sleep(10);
      } catch (const CancelledError&) {
        events.push_back("cleanup cancelled");
        throw;
      }
    }
  };
  runner.run([&]() -> Coro<void> {
    AsyncGenerator<int> gen = gen_fn();
    co_await gen.next();
    auto close = [&]() -> Coro<void> { co_await gen.aclose(); };
    Task<void> closer = create_task(close());
    co_await sleep(1);
    closer.cancel();
    try {
      co_await closer;
    } catch (const CancelledError&) {
      events.push_back("closer cancelled");
    }
    EXPECT_TRUE(gen.finished());
  }());
  EXPECT_EQ(events, (std::vector<std::string>{"cleanup cancelled", "closer cancelled"}));
}

TEST(AsyncGenerator, CancellingBeforeTheFirstNextLeavesTheGeneratorUntouched) {
  bool started = false;
  auto gen_fn = [&]() -> AsyncGenerator<int> {
    started = true;
    co_yield 1;
  };
  run([&]() -> Coro<void> {
    AsyncGenerator<int> gen = gen_fn();
    auto consume = [&]() -> Coro<void> {
      co_await sleep(0);
      co_await gen.next();
    };
    Task<void> consumer = create_task(consume());
    consumer.cancel();
    EXPECT_THROW(co_await consumer, CancelledError);
  }());
  EXPECT_FALSE(started);
}

TEST(AsyncGenerator, ConcurrentNextIsRejected) {
  Runner runner(virtual_time());
  runner.run([]() -> Coro<void> {
    AsyncGenerator<int> gen = ticker(3, 1.0);
    auto take = [&]() -> Coro<std::optional<int>> { co_return co_await gen.next(); };
    Task<std::optional<int>> first = create_task(take());
    co_await sleep(0);  // `first` is now inside the generator's sleep
    EXPECT_TRUE(gen.running());
    bool raised = false;
    try {
      co_await gen.next();
    } catch (const RuntimeError& e) {
      raised = std::string(e.what()) == "anext(): asynchronous generator is already running";
    }
    EXPECT_TRUE(raised);
    EXPECT_THROW(co_await gen.aclose(), RuntimeError);
    EXPECT_EQ(co_await first, 0);
  }());
}

// --- finalization ---

TEST(AsyncGenerator, RunnerCloseFinalizesGeneratorsStillSuspended) {
  std::vector<std::string> events;
  auto gen_fn = [&]() -> AsyncGenerator<int> {
    try {
      for (int i = 0;; ++i) co_yield i;
    } catch (const GeneratorExit&) {
      events.push_back("GeneratorExit");
    }
    co_await sleep(5);
    events.push_back("cleanup done");
  };
  AsyncGenerator<int> gen = gen_fn();  // outlives the runner, as a module-level object would
  {
    Runner runner(virtual_time());
    runner.run([&]() -> Coro<void> {
      EXPECT_EQ(co_await gen.next(), 0);
      EXPECT_EQ(co_await gen.next(), 1);
    }());
    EXPECT_TRUE(events.empty());
    runner.close();
  }
  EXPECT_EQ(events, (std::vector<std::string>{"GeneratorExit", "cleanup done"}));
  EXPECT_TRUE(gen.finished());
}

TEST(AsyncGenerator, RunnerCloseWaitsForFinalizersOfDroppedGenerators) {
  std::vector<std::string> events;
  auto gen_fn = [&]() -> AsyncGenerator<int> {
    try {
      co_yield 0;
    } catch (const GeneratorExit&) {
    }
    co_await sleep(5);
    events.push_back("finalized");
  };
  Runner runner(virtual_time());
  runner.run([&]() -> Coro<void> {
    AsyncGenerator<int> gen = gen_fn();
    co_await gen.next();
  }());  // gen dropped at a co_yield: its close is scheduled, not yet run
  EXPECT_TRUE(events.empty());
  runner.close();
  EXPECT_EQ(events, (std::vector<std::string>{"finalized"}));
}

TEST(AsyncGenerator, FinalizerErrorsGoToTheExceptionHandler) {
  std::vector<std::string> messages;
  auto gen_fn = []() -> AsyncGenerator<int> {
    try {
      co_yield 0;
    } catch (const GeneratorExit&) {
      throw ValueError("cleanup failed");
    }
  };
  Runner runner(virtual_time());
  runner.get_loop().set_exception_handler(
      [&](EventLoop&, const ExceptionContext& context) { messages.push_back(context.message); });
  runner.run([&]() -> Coro<void> {
    AsyncGenerator<int> gen = gen_fn();
    co_await gen.next();
  }());
  runner.close();
  EXPECT_EQ(
      messages,
      (std::vector<std::string>{"an error occurred during closing of asynchronous generator"}));
}

TEST(AsyncGenerator, GeneratorsOfALoopClosedWithoutRunnerAreDestroyedWithoutLeaking) {
  int destroyed = 0;
  struct Counter {
    int* n;
    ~Counter() { ++*n; }
  };
  auto gen_fn = [&]() -> AsyncGenerator<int> {
    Counter counter{&destroyed};
    for (int i = 0;; ++i) co_yield i;
  };
  AsyncGenerator<int> kept = gen_fn();
  {
    EventLoop loop;
    loop.run_until_complete([&]() -> Coro<void> { co_await kept.next(); }());
    loop.close();
  }
  EXPECT_EQ(destroyed, 0);
  kept = AsyncGenerator<int>();  // loop gone: the frame is destroyed directly
  EXPECT_EQ(destroyed, 1);
}

TEST(AsyncGenerator, PendingConsumerDestroyedWithTheLoopDoesNotLeak) {
  int destroyed = 0;
  struct Counter {
    int* n;
    ~Counter() { ++*n; }
  };
  auto gen_fn = [&]() -> AsyncGenerator<int> {
    Counter counter{&destroyed};
    co_await sleep(100);  // the generator is running (inside a co_await) when the loop dies
    co_yield 1;
  };
  {
    EventLoop loop(EventLoop::Options{.virtual_time = true});
    loop.set_exception_handler([](EventLoop&, const ExceptionContext&) {});
    auto consumer = [&]() -> Coro<void> {
      AsyncGenerator<int> gen = gen_fn();
      co_await gen.next();
    };
    Task<void> task = loop.create_task(consumer());
    loop.run_until_complete([]() -> Coro<void> { co_await sleep(1); }());
    EXPECT_FALSE(task.done());
  }
  EXPECT_EQ(destroyed, 1);
}

TEST(AsyncGenerator, ShutdownAsyncgensCanBeCalledOnAManualLoop) {
  std::vector<std::string> events;
  auto gen_fn = [&]() -> AsyncGenerator<int> {
    try {
      co_yield 0;
    } catch (const GeneratorExit&) {
      events.push_back("closed");
      throw;
    }
  };
  EventLoop loop;
  AsyncGenerator<int> gen = gen_fn();
  loop.run_until_complete([&]() -> Coro<void> { co_await gen.next(); }());
  loop.run_until_complete(shutdown_asyncgens(loop));
  EXPECT_EQ(events, (std::vector<std::string>{"closed"}));
  loop.close();
}

// The streaming shape of the seeds: stream_responses yields chunks as they "arrive".
AsyncGenerator<std::string> stream_responses(std::vector<std::string> chunks) {
  for (std::string& chunk : chunks) {
    co_await sleep(0.5);
    co_yield std::move(chunk);
  }
}

TEST(AsyncGenerator, StreamResponses) {
  Runner runner(virtual_time());
  // Built outside the coroutine: GCC 12 rejects a braced list of literals inside one.
  std::vector<std::string> chunks{"Hello", ", ", "world"};
  std::string text = runner.run([&]() -> Coro<std::string> {
    std::string out;
    co_await async_for(stream_responses(std::move(chunks)), [&](std::string& chunk) -> Coro<void> {
      out += chunk;
      co_return;
    });
    co_return out;
  }());
  EXPECT_EQ(text, "Hello, world");
  EXPECT_DOUBLE_EQ(runner.get_loop().time(), 1.5);
}

}  // namespace
}  // namespace corio
