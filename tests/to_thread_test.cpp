// Threads: to_thread, run_in_executor, ThreadPoolExecutor, the default executor's life cycle,
// and run_coroutine_threadsafe/ConcurrentFuture from foreign threads. Also run under TSan.
#include <absl/synchronization/notification.h>
#include <gtest/gtest.h>
#include <corio/async_generator.hpp>
#include <corio/corio.hpp>
#include <corio/executor.hpp>
#include <corio/threadsafe.hpp>
#include <corio/to_thread.hpp>

#include <atomic>
#include <chrono>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

namespace corio {
namespace {

using namespace std::chrono_literals;

Runner::Options virtual_time() {
  return {.debug = false, .virtual_time = true};
}

// An error type with a payload, to check exceptions cross threads as the very same object.
struct DiskError : std::runtime_error {
  DiskError(std::string path, int code)
      : std::runtime_error("disk error on " + path), path(std::move(path)), code(code) {}
  std::string path;
  int code;
};

// --- to_thread ---

TEST(ToThread, RunsOnAnotherThreadAndReturnsTheResult) {
  const std::thread::id loop_thread = std::this_thread::get_id();
  std::thread::id job_thread;
  int result = run([&]() -> Coro<int> {
    co_return co_await to_thread(
        [&](int a, int b) {
          job_thread = std::this_thread::get_id();
          return a * b;
        },
        6, 7);
  }());
  EXPECT_EQ(result, 42);
  EXPECT_NE(job_thread, loop_thread);
}

TEST(ToThread, GatheredWithSleepTakesAboutOneSecondNotTwo) {
  auto blocking_io = [] {
    std::this_thread::sleep_for(1s);  // time.sleep(1): blocks its thread, not the loop
    return std::string("io done");
  };
  auto sleeper = []() -> Coro<std::string> {
    co_await sleep(1);
    co_return "sleep done";
  };
  const auto started = std::chrono::steady_clock::now();
  auto [io, slept] = run([&]() -> Coro<std::tuple<std::string, std::string>> {
    co_return co_await gather(to_thread(blocking_io), sleeper());
  }());
  const double took =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  EXPECT_EQ(io, "io done");
  EXPECT_EQ(slept, "sleep done");
  EXPECT_GT(took, 0.9);
  EXPECT_LT(took, 1.8);
}

TEST(ToThread, ExceptionsCrossThreadsIntact) {
  std::exception_ptr thrown_on_worker;
  run([&]() -> Coro<void> {
    try {
      co_await to_thread([&] {
        try {
          throw DiskError("/var/data", 28);
        } catch (...) {
          thrown_on_worker = std::current_exception();
          throw;
        }
      });
      ADD_FAILURE();
    } catch (const DiskError& e) {
      EXPECT_EQ(e.path, "/var/data");
      EXPECT_EQ(e.code, 28);
      EXPECT_EQ(std::current_exception(), thrown_on_worker);  // the same object
    }
  }());
}

TEST(ToThread, MoveOnlyArgumentsAndResults) {
  auto doubled = run([]() -> Coro<std::unique_ptr<int>> {
    co_return co_await to_thread(
        [](std::unique_ptr<int> p) { return std::make_unique<int>(*p * 2); },
        std::make_unique<int>(21));
  }());
  ASSERT_TRUE(doubled);
  EXPECT_EQ(*doubled, 42);
}

TEST(ToThread, NothingIsSubmittedUntilAwaited) {
  std::atomic<bool> ran{false};
  run([&]() -> Coro<void> {
    Coro<void> pending = to_thread([&] { ran = true; });
    std::this_thread::sleep_for(50ms);
    EXPECT_FALSE(ran);
    co_await std::move(pending);
    EXPECT_TRUE(ran);
  }());
}

TEST(ToThread, CancellingTheAwaiterReturnsAtOnceAndTheJobFinishesOnItsThread) {
  absl::Notification release;
  std::atomic<bool> finished{false};
  Runner runner;
  runner.run([&]() -> Coro<void> {
    auto work = [&]() -> Coro<int> {
      co_return co_await to_thread([&] {
        release.WaitForNotification();
        finished = true;
        return 1;
      });
    };
    Task<int> task = create_task(work());
    co_await sleep(0.05);  // the job is running on its thread now
    task.cancel();
    EXPECT_THROW(co_await task, CancelledError);
    EXPECT_FALSE(finished);  // asyncio semantics: the thread is not interrupted
    release.Notify();
  }());
  runner.close();  // waits for the default executor's running job
  EXPECT_TRUE(finished);
}

TEST(ToThread, VirtualTimeDoesNotJumpWhileThreadWorkIsPending) {
  Runner runner(virtual_time());
  double job_done_at = -1;
  double sleeper_done_at = -1;
  runner.run([&]() -> Coro<void> {
    auto job = [&]() -> Coro<void> {
      co_await to_thread([] { std::this_thread::sleep_for(100ms); });
      job_done_at = get_running_loop().time();
    };
    auto sleeper = [&]() -> Coro<void> {
      co_await sleep(5);
      sleeper_done_at = get_running_loop().time();
    };
    co_await gather(job(), sleeper());
  }());
  EXPECT_DOUBLE_EQ(job_done_at, 0.0);  // the 5 s timer was not allowed to fire first
  EXPECT_DOUBLE_EQ(sleeper_done_at, 5.0);
}

TEST(ToThread, GeneratorsAreClosedBeforeTheDefaultExecutorShutsDown) {
  // asyncio.run's order: shutdown_asyncgens, then shutdown_default_executor, so a generator's
  // clean-up may still use to_thread.
  std::atomic<bool> cleaned_up{false};
  auto gen_fn = [&]() -> AsyncGenerator<int> {
    try {
      co_yield 1;
    } catch (const GeneratorExit&) {
    }
    co_await to_thread([&] { cleaned_up = true; });
  };
  AsyncGenerator<int> gen = gen_fn();
  {
    Runner runner;
    runner.run([&]() -> Coro<void> {
      co_await to_thread([] {});  // the default executor exists: its shutdown step is queued
      co_await gen.next();
    }());
  }
  EXPECT_TRUE(cleaned_up);
  EXPECT_TRUE(gen.finished());
}

// --- run_in_executor and ThreadPoolExecutor ---

TEST(RunInExecutor, ReturnsAFutureAndUsesAtMostMaxWorkersThreads) {
  ThreadPoolExecutor pool(2);
  EXPECT_EQ(pool.thread_count(), 0u);  // started lazily
  std::mutex mutex;
  std::set<std::thread::id> threads;
  auto results = run([&]() -> Coro<std::vector<int>> {
    EventLoop& loop = get_running_loop();
    std::vector<Future<int>> futures;
    for (int i = 0; i < 6; ++i) {
      futures.push_back(run_in_executor(loop, &pool, [&, i] {
        std::this_thread::sleep_for(20ms);
        std::lock_guard lock(mutex);
        threads.insert(std::this_thread::get_id());
        return i * i;
      }));
    }
    co_return co_await gather(futures);
  }());
  EXPECT_EQ(results, (std::vector<int>{0, 1, 4, 9, 16, 25}));
  EXPECT_EQ(pool.thread_count(), 2u);
  EXPECT_LE(threads.size(), 2u);
}

TEST(RunInExecutor, DefaultExecutorSizeFollowsPython) {
  const std::size_t cores = std::max(1u, std::thread::hardware_concurrency());
  EXPECT_EQ(ThreadPoolExecutor::default_max_workers(), std::min<std::size_t>(32, cores + 4));
  EXPECT_EQ(ThreadPoolExecutor().max_workers(), ThreadPoolExecutor::default_max_workers());
}

TEST(RunInExecutor, ACancelledJobThatHasNotStartedNeverRuns) {
  ThreadPoolExecutor pool(1);
  absl::Notification release;
  std::atomic<bool> second_ran{false};
  run([&]() -> Coro<void> {
    EventLoop& loop = get_running_loop();
    Future<void> first = run_in_executor(loop, &pool, [&] { release.WaitForNotification(); });
    Future<void> second = run_in_executor(loop, &pool, [&] { second_ran = true; });
    EXPECT_TRUE(second.cancel());
    release.Notify();
    co_await first;
    EXPECT_THROW(co_await second, CancelledError);
  }());
  pool.shutdown(true);
  EXPECT_FALSE(second_ran);
}

TEST(RunInExecutor, ShutdownWithCancelFuturesCancelsQueuedJobs) {
  ThreadPoolExecutor pool(1);
  absl::Notification release;
  std::atomic<bool> queued_ran{false};
  run([&]() -> Coro<void> {
    EventLoop& loop = get_running_loop();
    Future<int> running = run_in_executor(loop, &pool, [&] {
      release.WaitForNotification();
      return 1;
    });
    Future<int> queued = run_in_executor(loop, &pool, [&] {
      queued_ran = true;
      return 2;
    });
    co_await sleep(0.02);
    pool.shutdown(/*wait=*/false, /*cancel_futures=*/true);
    EXPECT_THROW(run_in_executor(loop, &pool, [] { return 3; }), RuntimeError);
    release.Notify();
    EXPECT_EQ(co_await running, 1);
    EXPECT_THROW(co_await queued, CancelledError);
  }());
  EXPECT_FALSE(queued_ran);
}

TEST(RunInExecutor, RunnerShutsDownTheDefaultExecutorAfterwards) {
  Runner runner;
  EventLoop& loop = runner.get_loop();
  runner.run([]() -> Coro<void> { co_await to_thread([] {}); }());
  runner.run([&]() -> Coro<void> {
    co_await shutdown_default_executor(loop);
    EXPECT_THROW(run_in_executor(loop, nullptr, [] {}), RuntimeError);
    ThreadPoolExecutor own(1);  // an explicit executor still works
    co_await run_in_executor(loop, &own, [] {});
  }());
}

TEST(RunInExecutor, LoopClosedWithoutRunnerWhileAJobRunsDoesNotLeakOrCrash) {
  std::atomic<bool> finished{false};
  {
    EventLoop loop;
    Future<int> future;
    loop.run_until_complete([&]() -> Coro<void> {
      future = run_in_executor(loop, nullptr, [&] {
        std::this_thread::sleep_for(50ms);
        finished = true;
        return 1;
      });
      co_return;
    }());
    loop.close();  // waits for the default executor; the result has nowhere to go
    EXPECT_TRUE(finished);
    EXPECT_FALSE(future.done());
  }
}

// --- run_coroutine_threadsafe ---

// A loop running forever on a thread of its own, as in asyncio's threadsafe examples.
class LoopThread {
 public:
  LoopThread()
      : thread_([this] {
          loop_.call_soon([this] { started_.Notify(); });
          loop_.run_forever();
        }) {
    started_.WaitForNotification();
  }
  ~LoopThread() {
    loop_.call_soon_threadsafe([this] { loop_.stop(); });
    thread_.join();
    loop_.close();
  }
  EventLoop& loop() { return loop_; }

 private:
  EventLoop loop_;
  absl::Notification started_;
  std::thread thread_;
};

Coro<int> add_later(int a, int b) {
  co_await sleep(0.01);
  co_return a + b;
}

TEST(RunCoroutineThreadsafe, ForeignThreadBlocksOnTheResult) {
  LoopThread loop_thread;
  std::vector<int> results(4);
  std::vector<std::thread> clients;
  for (int i = 0; i < 4; ++i) {
    clients.emplace_back([&, i] {
      ConcurrentFuture<int> future =
          run_coroutine_threadsafe(add_later(i, 100), loop_thread.loop());
      results[i] = future.result(5.0);
      EXPECT_TRUE(future.done());
      EXPECT_FALSE(future.cancel());  // finished: too late
    });
  }
  for (std::thread& t : clients) t.join();
  EXPECT_EQ(results, (std::vector<int>{100, 101, 102, 103}));
}

Coro<void> fails() {
  co_await sleep(0);
  throw DiskError("/dev/sda", 5);
}

TEST(RunCoroutineThreadsafe, ExceptionReachesTheForeignThread) {
  LoopThread loop_thread;
  ConcurrentFuture<void> future = run_coroutine_threadsafe(fails(), loop_thread.loop());
  try {
    future.result();
    ADD_FAILURE();
  } catch (const DiskError& e) {
    EXPECT_EQ(e.code, 5);
  }
  ASSERT_TRUE(future.exception());
}

TEST(RunCoroutineThreadsafe, TimeoutThenCancelCancelsTheTaskOnTheLoop) {
  LoopThread loop_thread;
  absl::Notification saw_cancel;
  auto forever = [&]() -> Coro<int> {
    try {
      co_await sleep(3600);
    } catch (const CancelledError&) {
      saw_cancel.Notify();
      throw;
    }
    co_return 0;
  };
  ConcurrentFuture<int> future = run_coroutine_threadsafe(forever(), loop_thread.loop());
  EXPECT_THROW(future.result(0.05), TimeoutError);
  EXPECT_FALSE(future.done());
  std::atomic<int> callbacks{0};
  future.add_done_callback([&](ConcurrentFuture<int> f) {
    EXPECT_TRUE(f.cancelled());
    ++callbacks;
  });
  EXPECT_TRUE(future.cancel());
  EXPECT_TRUE(future.cancelled());
  EXPECT_EQ(callbacks, 1);
  EXPECT_THROW(future.result(), CancelledError);
  EXPECT_TRUE(saw_cancel.WaitForNotificationWithTimeout(absl::Seconds(5)));
}

TEST(RunCoroutineThreadsafe, CancelBeforeTheTaskStartsMeansTheBodyNeverRuns) {
  EventLoop loop;  // not running yet: the scheduling callback waits in the queue
  bool ran = false;
  auto body = [&]() -> Coro<void> {
    ran = true;
    co_return;
  };
  ConcurrentFuture<void> future = run_coroutine_threadsafe(body(), loop);
  EXPECT_TRUE(future.cancel());
  loop.run_until_complete([]() -> Coro<void> { co_await sleep(0.01); }());
  EXPECT_FALSE(ran);
  loop.close();
}

TEST(RunCoroutineThreadsafe, ALoopThatClosesBeforeSchedulingFailsTheFuture) {
  auto loop = std::make_unique<EventLoop>();
  ConcurrentFuture<int> future = run_coroutine_threadsafe(add_later(1, 2), *loop);
  testing::internal::CaptureStderr();  // the coroutines never run: "never awaited"
  loop->close();
  EXPECT_THROW(future.result(1.0), RuntimeError);
  EXPECT_THROW(run_coroutine_threadsafe(add_later(1, 2), *loop), RuntimeError);
  EXPECT_NE(testing::internal::GetCapturedStderr().find("never awaited"), std::string::npos);
}

TEST(RunCoroutineThreadsafe, RunnerCloseCancelsPendingWork) {
  ConcurrentFuture<int> future;
  {
    Runner runner;
    EventLoop& loop = runner.get_loop();
    std::thread client([&] { future = run_coroutine_threadsafe(add_later(1, 2), loop); });
    client.join();
    // The task is created when the loop next runs; the main coroutine ends right away.
    runner.run([]() -> Coro<void> { co_await sleep(0); }());
  }
  EXPECT_TRUE(future.done());
  EXPECT_THROW(future.result(), CancelledError);
}

}  // namespace
}  // namespace corio
