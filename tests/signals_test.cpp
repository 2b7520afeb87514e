// Signal handlers on the loop (add_signal_handler / remove_signal_handler) with real signals,
// and Runner's Ctrl-C handling (SIGINT cancels the main task, run() raises KeyboardInterrupt).
#ifndef _WIN32

#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>
#include <corio/corio.hpp>
#include <corio/signals.hpp>

#include <atomic>
#include <thread>
#include <vector>

namespace corio {
namespace {

// The disposition of `sig` as a plain handler pointer (SIG_DFL, SIG_IGN or a function).
void (*disposition(int sig))(int) {
  struct sigaction current = {};
  ::sigaction(sig, nullptr, &current);
  return current.sa_handler;
}

// Restores a signal's disposition when a test ends, whatever it did.
class DispositionGuard {
 public:
  explicit DispositionGuard(int sig) : sig_(sig) { ::sigaction(sig, nullptr, &saved_); }
  ~DispositionGuard() { ::sigaction(sig_, &saved_, nullptr); }

 private:
  int sig_;
  struct sigaction saved_ = {};
};

Coro<void> wait_until(const int& counter, int value) {
  for (int i = 0; i < 10000 && counter < value; ++i) co_await sleep(0.001);
}

TEST(Signals, HandlerRunsOnTheLoopThreadAsACallback) {
  DispositionGuard guard(SIGUSR1);
  EventLoop loop;
  int calls = 0;
  bool raise_returned = false;
  std::thread::id ran_on;
  add_signal_handler(loop, SIGUSR1, [&] {
    // Not inside the signal handler: raise() has returned and the loop thread runs us.
    EXPECT_TRUE(raise_returned);
    EXPECT_EQ(try_get_running_loop(), &loop);
    ran_on = std::this_thread::get_id();
    ++calls;
  });
  EXPECT_NE(disposition(SIGUSR1), SIG_DFL);
  auto main = [](int& calls, bool& raise_returned) -> Coro<void> {
    ::raise(SIGUSR1);
    raise_returned = true;
    co_await wait_until(calls, 1);
    ::raise(SIGUSR1);
    co_await wait_until(calls, 2);
  };
  loop.run_until_complete(main(calls, raise_returned));
  EXPECT_EQ(calls, 2);
  EXPECT_EQ(ran_on, std::this_thread::get_id());
  EXPECT_TRUE(remove_signal_handler(loop, SIGUSR1));
  loop.close();
}

TEST(Signals, SignalSentToAnotherThreadStillReachesTheLoop) {
  DispositionGuard guard(SIGUSR2);
  EventLoop loop;
  int calls = 0;
  std::thread::id ran_on;
  add_signal_handler(loop, SIGUSR2, [&] {
    ran_on = std::this_thread::get_id();
    ++calls;
  });
  auto main = [](int& calls) -> Coro<void> {
    std::atomic<bool> sent{false};
    // The loop thread blocks SIGUSR2, so the kernel must deliver it to the other thread.
    sigset_t block;
    sigemptyset(&block);
    sigaddset(&block, SIGUSR2);
    sigset_t old;
    pthread_sigmask(SIG_BLOCK, &block, &old);
    std::thread other([&sent, block] {
      pthread_sigmask(SIG_UNBLOCK, &block, nullptr);  // threads inherit the creator's mask
      ::kill(::getpid(), SIGUSR2);
      sent = true;
    });
    other.join();
    co_await wait_until(calls, 1);
    pthread_sigmask(SIG_SETMASK, &old, nullptr);
    EXPECT_TRUE(sent);
  };
  loop.run_until_complete(main(calls));
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(ran_on, std::this_thread::get_id());
  loop.close();
}

TEST(Signals, RemoveRestoresThePreviousDispositionAndStopsDelivery) {
  DispositionGuard guard(SIGUSR1);
  ::signal(SIGUSR1, SIG_IGN);
  EventLoop loop;
  int calls = 0;
  add_signal_handler(loop, SIGUSR1, [&] { ++calls; });
  EXPECT_NE(disposition(SIGUSR1), SIG_IGN);
  EXPECT_TRUE(remove_signal_handler(loop, SIGUSR1));
  EXPECT_FALSE(remove_signal_handler(loop, SIGUSR1));
  EXPECT_FALSE(remove_signal_handler(loop, SIGUSR2));
  EXPECT_EQ(disposition(SIGUSR1), SIG_IGN);
  auto main = []() -> Coro<void> {
    ::raise(SIGUSR1);  // ignored now
    co_await sleep(0.02);
  };
  loop.run_until_complete(main());
  EXPECT_EQ(calls, 0);
  loop.close();
}

TEST(Signals, RemovingBeforeTheCallbackRunsCancelsTheDelivery) {
  DispositionGuard guard(SIGUSR1);
  EventLoop loop;
  int calls = 0;
  add_signal_handler(loop, SIGUSR1, [&] { ++calls; });
  auto main = [](EventLoop& loop) -> Coro<void> {
    ::raise(SIGUSR1);  // the byte is in the pipe; the loop has not read it yet
    EXPECT_TRUE(remove_signal_handler(loop, SIGUSR1));
    co_await sleep(0.02);
  };
  loop.run_until_complete(main(loop));
  EXPECT_EQ(calls, 0);
  loop.close();
}

TEST(Signals, AddingAgainReplacesTheCallback) {
  DispositionGuard guard(SIGUSR1);
  EventLoop loop;
  std::vector<int> seen;
  add_signal_handler(loop, SIGUSR1, [&] { seen.push_back(1); });
  add_signal_handler(loop, SIGUSR1, [&] { seen.push_back(2); });
  auto main = [](std::vector<int>& seen) -> Coro<void> {
    ::raise(SIGUSR1);
    for (int i = 0; i < 10000 && seen.empty(); ++i) co_await sleep(0.001);
    co_await sleep(0.01);
  };
  loop.run_until_complete(main(seen));
  EXPECT_EQ(seen, std::vector<int>{2});
  loop.close();
}

TEST(Signals, ExceptionInCallbackGoesToTheHandlerAndLaterSignalsStillArrive) {
  DispositionGuard guard(SIGUSR1);
  EventLoop loop;
  int errors = 0;
  int calls = 0;
  loop.set_exception_handler([&](EventLoop&, const ExceptionContext&) { ++errors; });
  add_signal_handler(loop, SIGUSR1, [&] {
    ++calls;
    throw ValueError("boom");
  });
  auto main = [](int& calls) -> Coro<void> {
    ::raise(SIGUSR1);
    co_await wait_until(calls, 1);
    ::raise(SIGUSR1);
    co_await wait_until(calls, 2);
  };
  loop.run_until_complete(main(calls));
  EXPECT_EQ(calls, 2);
  EXPECT_EQ(errors, 2);
  loop.close();
}

TEST(Signals, InvalidAndUncatchableSignals) {
  EventLoop loop;
  EXPECT_THROW(add_signal_handler(loop, 0, [] {}), ValueError);
  EXPECT_THROW(add_signal_handler(loop, -1, [] {}), ValueError);
  EXPECT_THROW(add_signal_handler(loop, NSIG, [] {}), ValueError);
  EXPECT_THROW(add_signal_handler(loop, 1000, [] {}), ValueError);
  EXPECT_THROW(remove_signal_handler(loop, 0), ValueError);
  EXPECT_THROW(add_signal_handler(loop, SIGKILL, [] {}), RuntimeError);
  EXPECT_THROW(add_signal_handler(loop, SIGSTOP, [] {}), RuntimeError);
  EXPECT_EQ(disposition(SIGKILL), SIG_DFL);
  loop.close();
  EXPECT_THROW(add_signal_handler(loop, SIGUSR1, [] {}), RuntimeError);
}

TEST(Signals, ClosingTheLoopGivesTheSignalsBack) {
  DispositionGuard guard(SIGUSR1);
  ASSERT_EQ(disposition(SIGUSR1), SIG_DFL);
  {
    EventLoop loop;
    add_signal_handler(loop, SIGUSR1, [] {});
    EXPECT_NE(disposition(SIGUSR1), SIG_DFL);
    loop.close();
    EXPECT_EQ(disposition(SIGUSR1), SIG_DFL);
  }
  {
    EventLoop loop;  // never closed explicitly: the destructor closes it
    add_signal_handler(loop, SIGUSR1, [] {});
  }
  EXPECT_EQ(disposition(SIGUSR1), SIG_DFL);
}

TEST(Signals, TheLastLoopToAddASignalOwnsIt) {
  DispositionGuard guard(SIGUSR1);
  EventLoop first;
  EventLoop second;
  int first_calls = 0;
  int second_calls = 0;
  add_signal_handler(first, SIGUSR1, [&] { ++first_calls; });
  add_signal_handler(second, SIGUSR1, [&] { ++second_calls; });
  auto main = [](int& calls) -> Coro<void> {
    ::raise(SIGUSR1);
    co_await wait_until(calls, 1);
  };
  second.run_until_complete(main(second_calls));
  EXPECT_EQ(second_calls, 1);
  // The first loop lost the signal: removing its stale entry leaves the second one in place.
  EXPECT_TRUE(remove_signal_handler(first, SIGUSR1));
  EXPECT_NE(disposition(SIGUSR1), SIG_DFL);
  EXPECT_TRUE(remove_signal_handler(second, SIGUSR1));
  EXPECT_EQ(disposition(SIGUSR1), SIG_DFL);
  auto nap = []() -> Coro<void> { co_await sleep(0.01); };
  first.run_until_complete(nap());
  EXPECT_EQ(first_calls, 0);
  first.close();
  second.close();
}

TEST(Signals, AWatchedSignalDoesNotHoldVirtualTimeBack) {
  DispositionGuard guard(SIGUSR1);
  EventLoop loop(EventLoop::Options{.virtual_time = true});
  add_signal_handler(loop, SIGUSR1, [] {});
  const double start = loop.time();
  auto nap = []() -> Coro<void> { co_await sleep(3600); };
  loop.run_until_complete(nap());  // would take an hour of real time otherwise
  EXPECT_GE(loop.time() - start, 3600.0);
  EXPECT_LT(loop.time() - start, 3601.0);
  loop.close();
}

TEST(Signals, ADeliveryNobodyReadsDoesNotHoldVirtualTimeBack) {
  // A delivery counts as pending work until the loop reads it; one whose handler is removed
  // first must be discarded, not left counted.
  DispositionGuard guard(SIGUSR1);
  EventLoop loop(EventLoop::Options{.virtual_time = true});
  int calls = 0;
  add_signal_handler(loop, SIGUSR1, [&] { ++calls; });
  auto main = [](EventLoop& loop) -> Coro<void> {
    ::raise(SIGUSR1);
    EXPECT_TRUE(remove_signal_handler(loop, SIGUSR1));
    co_await sleep(3600);  // an hour of real time if the delivery stayed counted
  };
  const double start = loop.time();
  loop.run_until_complete(main(loop));
  EXPECT_EQ(calls, 0);
  EXPECT_LT(loop.time() - start, 3601.0);
  loop.close();
}

TEST(Signals, VirtualTimeDoesNotJumpPastARaisedSignal) {
  DispositionGuard guard(SIGUSR1);
  EventLoop loop(EventLoop::Options{.virtual_time = true});
  double seen_at = -1;
  add_signal_handler(loop, SIGUSR1, [&] { seen_at = loop.time(); });
  const double start = loop.time();
  loop.call_later(1, [] { ::raise(SIGUSR1); });
  auto nap = []() -> Coro<void> { co_await sleep(3600); };
  loop.run_until_complete(nap());
  EXPECT_GE(seen_at - start, 1.0);
  EXPECT_LT(seen_at - start, 2.0);  // not after the hour-long sleep's jump
  loop.close();
}

// --- Runner and Ctrl-C ---

Coro<int> interrupted_main(bool* saw_cancel) {
  EventLoop& loop = get_running_loop();
  loop.call_later(0.01, [] { ::raise(SIGINT); });
  try {
    co_await sleep(30);
  } catch (const CancelledError&) {
    *saw_cancel = true;
    throw;
  }
  co_return 1;
}

TEST(RunnerInterrupt, SigintCancelsTheMainTaskAndRaisesKeyboardInterrupt) {
  DispositionGuard guard(SIGINT);
  ASSERT_EQ(disposition(SIGINT), SIG_DFL);
  bool saw_cancel = false;
  Runner runner;
  EXPECT_THROW(runner.run(interrupted_main(&saw_cancel)), KeyboardInterrupt);
  EXPECT_TRUE(saw_cancel);
  EXPECT_EQ(disposition(SIGINT), SIG_DFL);  // restored after run()
  // The runner stays usable, as asyncio's.
  auto plain = []() -> Coro<int> { co_return 7; };
  EXPECT_EQ(runner.run(plain()), 7);
}

TEST(RunnerInterrupt, WorksUnderVirtualTime) {
  DispositionGuard guard(SIGINT);
  bool saw_cancel = false;
  Runner runner(Runner::Options{.virtual_time = true});
  EXPECT_THROW(runner.run(interrupted_main(&saw_cancel)), KeyboardInterrupt);
  EXPECT_TRUE(saw_cancel);
  EXPECT_LT(runner.get_loop().time(), 30.0);
}

Coro<int> stubborn_main(int* cancels) {
  EventLoop& loop = get_running_loop();
  loop.call_later(0.01, [] { ::raise(SIGINT); });
  for (;;) {
    try {
      co_await sleep(30);
    } catch (const CancelledError&) {
      // Swallows the first Ctrl-C and keeps going; the second must still end the run.
      if (++*cancels == 1) {
        current_task().uncancel();
        get_running_loop().call_later(0.01, [] { ::raise(SIGINT); });
      }
    }
    if (*cancels >= 2) co_return 0;  // Runner::close's cancellation ends it
  }
}

TEST(RunnerInterrupt, SecondSigintStopsARunThatIgnoredTheFirst) {
  DispositionGuard guard(SIGINT);
  int cancels = 0;
  {
    Runner runner;
    EXPECT_THROW(runner.run(stubborn_main(&cancels)), KeyboardInterrupt);
    EXPECT_EQ(cancels, 1);
    EXPECT_EQ(disposition(SIGINT), SIG_DFL);
  }
  EXPECT_EQ(cancels, 2);  // Runner::close cancelled the leftover main task
}

Coro<int> main_that_swallows_cancel() {
  get_running_loop().call_later(0.01, [] { ::raise(SIGINT); });
  try {
    co_await sleep(30);
  } catch (const CancelledError&) {
    current_task().uncancel();
  }
  co_return 5;  // asyncio: a main task that absorbs the interrupt returns normally
}

TEST(RunnerInterrupt, MainTaskThatAbsorbsTheInterruptReturnsNormally) {
  DispositionGuard guard(SIGINT);
  Runner runner;
  EXPECT_EQ(runner.run(main_that_swallows_cancel()), 5);
}

Coro<int> main_with_own_cancel() {
  current_task().cancel();
  co_await sleep(1);
  co_return 0;
}

TEST(RunnerInterrupt, PlainCancellationStaysCancelledError) {
  DispositionGuard guard(SIGINT);
  Runner runner;
  EXPECT_THROW(runner.run(main_with_own_cancel()), CancelledError);
}

TEST(RunnerInterrupt, ProgramWithItsOwnSigintHandlerIsLeftAlone) {
  DispositionGuard guard(SIGINT);
  ::signal(SIGINT, SIG_IGN);
  auto main = []() -> Coro<int> {
    ::raise(SIGINT);  // ignored: the Runner did not take SIGINT over
    co_await sleep(0.02);
    co_return 3;
  };
  Runner runner;
  EXPECT_EQ(runner.run(main()), 3);
  EXPECT_EQ(disposition(SIGINT), SIG_IGN);
}

TEST(RunnerInterrupt, OffTheMainThreadNothingIsInstalled) {
  DispositionGuard guard(SIGINT);
  void (*seen)(int) = nullptr;
  std::thread other([&seen] {
    auto main = [](void (**seen)(int)) -> Coro<void> {
      *seen = disposition(SIGINT);
      co_return;
    };
    run(main(&seen));
  });
  other.join();
  EXPECT_EQ(seen, SIG_DFL);
}

TEST(RunnerInterrupt, AUserHandlerAddedDuringTheRunIsKept) {
  DispositionGuard guard(SIGINT);
  int calls = 0;
  auto main = [](int& calls) -> Coro<void> {
    add_signal_handler(get_running_loop(), SIGINT, [&calls] { ++calls; });
    ::raise(SIGINT);
    co_await wait_until(calls, 1);
  };
  Runner runner;
  runner.run(main(calls));
  EXPECT_EQ(calls, 1);
  EXPECT_NE(disposition(SIGINT), SIG_DFL);  // Runner did not remove what it did not install
  EXPECT_TRUE(remove_signal_handler(runner.get_loop(), SIGINT));
  EXPECT_EQ(disposition(SIGINT), SIG_DFL);
}

}  // namespace
}  // namespace corio

#endif  // _WIN32
