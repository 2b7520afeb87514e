// timeout()/timeout_at()/Timeout: exact expiry in virtual time, reschedule (also from no
// deadline), expired(), nesting, and the rule that only this scope's own cancellation becomes
// TimeoutError (outer cancellations stay CancelledError), plus an allocation count for a
// scope that does not expire.
#include <gtest/gtest.h>
#include <corio/corio.hpp>
#include <corio/timeouts.hpp>

#include <atomic>
#include <cstdlib>
#include <new>
#include <string>
#include <vector>

// Counts allocations of this test binary, for the "enter/exit allocates nothing" test.
namespace {
std::atomic<long> g_allocations{0};
}  // namespace

void* operator new(std::size_t size) {
  g_allocations.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(size == 0 ? 1 : size)) return p;
  throw std::bad_alloc();
}
void* operator new(std::size_t size, const std::nothrow_t&) noexcept {
  g_allocations.fetch_add(1, std::memory_order_relaxed);
  return std::malloc(size == 0 ? 1 : size);
}
void* operator new[](std::size_t size) {
  return operator new(size);
}
void operator delete(void* p) noexcept {
  std::free(p);
}
void operator delete(void* p, std::size_t) noexcept {
  std::free(p);
}
void operator delete(void* p, const std::nothrow_t&) noexcept {
  std::free(p);
}
void operator delete[](void* p) noexcept {
  std::free(p);
}
void operator delete[](void* p, std::size_t) noexcept {
  std::free(p);
}

namespace corio {
namespace {

Runner::Options virtual_time() {
  return {.virtual_time = true};
}
double now() {
  return get_running_loop().time();
}

bool has_nested_cancelled_error(const TimeoutError& e) {
  const auto* nested = dynamic_cast<const std::nested_exception*>(&e);
  if (nested == nullptr || !nested->nested_ptr()) return false;
  try {
    nested->rethrow_nested();
  } catch (const CancelledError&) {
    return true;
  } catch (...) {
  }
  return false;
}

TEST(Timeout, ExpiresAtExactlyTheDeadline) {
  auto main = []() -> Coro<double> {
    bool body_saw_cancel = false;
    try {
      co_await timeout(1.0, [&](Timeout& cm) -> Coro<void> {
        EXPECT_DOUBLE_EQ(*cm.when(), 1.0);
        try {
          co_await sleep(10);
        } catch (const CancelledError&) {
          body_saw_cancel = true;
          throw;
        }
      });
      ADD_FAILURE() << "no TimeoutError";
    } catch (const TimeoutError& e) {
      EXPECT_TRUE(has_nested_cancelled_error(e));
    }
    EXPECT_TRUE(body_saw_cancel);
    EXPECT_EQ(current_task().cancelling(), 0);
    co_return now();
  };
  EXPECT_DOUBLE_EQ(run(main(), virtual_time()), 1.0);
}

TEST(Timeout, ReturnsTheBodyResultAndDisarmsTheTimer) {
  Runner runner(virtual_time());
  auto main = []() -> Coro<int> {
    co_return co_await timeout(5.0, [&]() -> Coro<int> {
      co_await sleep(1);
      co_return 42;
    });
  };
  EXPECT_EQ(runner.run(main()), 42);
  // A timer left armed would have let virtual time run on to 5 s.
  EXPECT_DOUBLE_EQ(runner.get_loop().time(), 1.0);
  auto later = []() -> Coro<double> {
    co_await sleep(10);  // the old deadline passes during this sleep: nothing fires
    co_return now();
  };
  EXPECT_DOUBLE_EQ(runner.run(later()), 11.0);
}

TEST(Timeout, NoDeadlineThenReschedule) {
  // async with asyncio.timeout(None) as cm: ... cm.reschedule(loop.time() + 1) ...
  auto main = []() -> Coro<void> {
    Timeout cm = timeout(no_deadline);
    EXPECT_FALSE(cm.when().has_value());
    try {
      co_await cm.run([&]() -> Coro<void> {
        co_await sleep(0.5);
        cm.reschedule(now() + 1.0);
        co_await sleep(10);
      });
      ADD_FAILURE() << "no TimeoutError";
    } catch (const TimeoutError&) {
      EXPECT_DOUBLE_EQ(now(), 1.5);
    }
    EXPECT_TRUE(cm.expired());
    EXPECT_DOUBLE_EQ(*cm.when(), 1.5);
  };
  run(main(), virtual_time());
}

TEST(Timeout, NoDeadlineNeverExpires) {
  auto main = []() -> Coro<double> {
    Timeout cm = timeout(no_deadline);
    co_await cm.run([]() -> Coro<void> { co_await sleep(1000); });
    EXPECT_FALSE(cm.expired());
    co_return now();
  };
  EXPECT_DOUBLE_EQ(run(main(), virtual_time()), 1000.0);
}

TEST(Timeout, RescheduleToNoDeadlineRemovesTheDeadline) {
  auto main = []() -> Coro<double> {
    co_await timeout(1.0, [](Timeout& cm) -> Coro<void> {
      cm.reschedule(no_deadline);
      co_await sleep(5);
    });
    co_return now();
  };
  EXPECT_DOUBLE_EQ(run(main(), virtual_time()), 5.0);
}

TEST(Timeout, RescheduleLaterAndEarlier) {
  auto main = []() -> Coro<std::vector<double>> {
    std::vector<double> expiries;
    for (double target : {3.0, 0.25}) {
      const double start = now();
      try {
        co_await timeout(1.0, [&](Timeout& cm) -> Coro<void> {
          cm.reschedule(start + target);
          co_await sleep(10);
        });
      } catch (const TimeoutError&) {
        expiries.push_back(now() - start);
      }
    }
    co_return expiries;
  };
  EXPECT_EQ(run(main(), virtual_time()), (std::vector<double>{3.0, 0.25}));
}

TEST(Timeout, PastDeadlineFiresOnTheNextIteration) {
  auto main = []() -> Coro<double> {
    co_await sleep(2);
    try {
      co_await timeout_at(1.0, []() -> Coro<void> { co_await sleep(10); });
    } catch (const TimeoutError&) {
      co_return now();
    }
    co_return -1;
  };
  EXPECT_DOUBLE_EQ(run(main(), virtual_time()), 2.0);
}

TEST(Timeout, ZeroDelayWithoutASuspensionPointDoesNotExpire) {
  auto main = []() -> Coro<std::string> {
    Timeout cm = timeout(0);
    std::string r = co_await cm.run([]() -> Coro<std::string> { co_return "done"; });
    EXPECT_FALSE(cm.expired());
    try {
      co_await timeout(0, []() -> Coro<void> { co_await sleep(0); });
    } catch (const TimeoutError&) {
      r += "+timeout";
    }
    co_return r;
  };
  EXPECT_EQ(run(main(), virtual_time()), "done+timeout");
}

TEST(Timeout, DueScopeLeftBeforeItsExpiryRunsIsNotExpired) {
  // The program ends right after: the queued expiry must be dropped, not leaked (LSan).
  auto main = []() -> Coro<bool> {
    Timeout cm = timeout_at(0.0);
    co_await cm.run([]() -> Coro<void> { co_return; });
    co_return cm.expired();
  };
  EXPECT_FALSE(run(main(), virtual_time()));
}

TEST(Timeout, TimeoutAtUsesAbsoluteLoopTime) {
  auto main = []() -> Coro<double> {
    co_await sleep(1);
    try {
      co_await timeout_at(now() + 2, []() -> Coro<void> { co_await sleep(10); });
    } catch (const TimeoutError&) {
    }
    co_return now();
  };
  EXPECT_DOUBLE_EQ(run(main(), virtual_time()), 3.0);
}

TEST(Timeout, OuterCancellationStaysCancelledError) {
  auto main = []() -> Coro<void> {
    Timeout* scope = nullptr;
    auto victim = [&]() -> Coro<void> {
      co_await timeout(10, [&](Timeout& cm) -> Coro<void> {
        scope = &cm;
        co_await sleep(100);
      });
    };
    Task<void> t = create_task(victim());
    co_await sleep(1);
    EXPECT_NE(scope, nullptr);
    t.cancel();
    try {
      co_await t;
      ADD_FAILURE() << "not cancelled";
    } catch (const CancelledError&) {
    }
    EXPECT_TRUE(t.cancelled());
    EXPECT_DOUBLE_EQ(now(), 1.0);
  };
  run(main(), virtual_time());
}

TEST(Timeout, CancelRequestedAtTheSameTimeAsExpiryWins) {
  // The expiry and an outside cancel land in the same iteration: two cancel requests, the
  // scope takes back only its own, so the task ends cancelled rather than timed out.
  auto main = []() -> Coro<void> {
    bool expired = false;
    auto victim = [&]() -> Coro<void> {
      Timeout cm = timeout(1.0);
      try {
        co_await cm.run([]() -> Coro<void> { co_await sleep(100); });
      } catch (...) {
        expired = cm.expired();
        throw;
      }
    };
    Task<void> t = create_task(victim());
    co_await sleep(0);  // the scope is entered and its timer armed first
    get_running_loop().call_at(1.0, [t]() mutable { t.cancel(); });
    try {
      co_await t;
    } catch (const CancelledError&) {
    } catch (const TimeoutError&) {
      ADD_FAILURE() << "outer cancellation turned into TimeoutError";
    }
    EXPECT_TRUE(t.cancelled());
    EXPECT_TRUE(expired);
  };
  run(main(), virtual_time());
}

TEST(Timeout, PendingOuterCancelIsNotConvertedEvenIfTheBodySwallowedIt) {
  auto main = []() -> Coro<void> {
    auto victim = []() -> Coro<std::string> {
      try {
        co_await timeout(2.0, []() -> Coro<void> {
          try {
            co_await sleep(100);  // cancelled from outside at t=1
          } catch (const CancelledError&) {
          }
          co_await sleep(100);  // then cancelled by the expiry at t=2
        });
      } catch (const TimeoutError&) {
        co_return "timeout";
      } catch (const CancelledError&) {
        co_return "cancelled:" + std::to_string(current_task().cancelling());
      }
      co_return "nothing";
    };
    Task<std::string> t = create_task(victim());
    co_await sleep(1);
    t.cancel();
    EXPECT_EQ(co_await t, "cancelled:1");
    EXPECT_DOUBLE_EQ(now(), 2.0);
  };
  run(main(), virtual_time());
}

TEST(Timeout, InnerExpiryDoesNotFireTheOuter) {
  auto main = []() -> Coro<std::vector<std::string>> {
    std::vector<std::string> log;
    Timeout outer = timeout(2.0);
    co_await outer.run([&]() -> Coro<void> {
      Timeout inner = timeout(1.0);
      try {
        co_await inner.run([]() -> Coro<void> { co_await sleep(10); });
      } catch (const TimeoutError&) {
        log.push_back("inner timeout at " + std::to_string(now()));
      }
      EXPECT_TRUE(inner.expired());
      co_await sleep(0.5);
      log.push_back("outer body done at " + std::to_string(now()));
    });
    EXPECT_FALSE(outer.expired());
    co_return log;
  };
  EXPECT_EQ(run(main(), virtual_time()),
            (std::vector<std::string>{"inner timeout at 1.000000", "outer body done at 1.500000"}));
}

TEST(Timeout, OuterExpiryPassesThroughTheInnerScope) {
  auto main = []() -> Coro<void> {
    Timeout outer = timeout(1.0);
    Timeout inner = timeout(5.0);
    bool inner_raised_cancelled = false;
    try {
      co_await outer.run([&]() -> Coro<void> {
        try {
          co_await inner.run([]() -> Coro<void> { co_await sleep(10); });
        } catch (const CancelledError&) {
          inner_raised_cancelled = true;
          throw;
        }
      });
      ADD_FAILURE() << "no TimeoutError";
    } catch (const TimeoutError&) {
    }
    EXPECT_TRUE(inner_raised_cancelled);
    EXPECT_TRUE(outer.expired());
    EXPECT_FALSE(inner.expired());
    EXPECT_DOUBLE_EQ(now(), 1.0);
  };
  run(main(), virtual_time());
}

TEST(Timeout, NestedScopesExpiringTogetherTheOutermostRaises) {
  auto main = []() -> Coro<void> {
    Timeout outer = timeout(1.0);
    Timeout inner = timeout(1.0);
    std::string inner_raised;
    try {
      co_await outer.run([&]() -> Coro<void> {
        try {
          co_await inner.run([]() -> Coro<void> { co_await sleep(10); });
        } catch (const CancelledError&) {
          inner_raised = "CancelledError";
          throw;
        } catch (const TimeoutError&) {
          inner_raised = "TimeoutError";
          throw;
        }
      });
      ADD_FAILURE() << "no TimeoutError";
    } catch (const TimeoutError&) {
    }
    EXPECT_EQ(inner_raised, "CancelledError");
    EXPECT_TRUE(outer.expired());
    EXPECT_TRUE(inner.expired());
    EXPECT_EQ(current_task().cancelling(), 0);
  };
  run(main(), virtual_time());
}

TEST(Timeout, OtherExceptionsPassThroughUnchanged) {
  auto main = []() -> Coro<void> {
    Timeout cm = timeout(1.0);
    try {
      co_await cm.run([]() -> Coro<void> {
        co_await sleep(0.5);
        throw ValueError("boom");
      });
    } catch (const ValueError& e) {
      EXPECT_STREQ(e.what(), "boom");
    }
    EXPECT_FALSE(cm.expired());
    co_await sleep(2);  // the disarmed deadline must not cancel us now
  };
  run(main(), virtual_time());
}

TEST(Timeout, TimeoutErrorFromTheBodyIsNotTheScopes) {
  auto main = []() -> Coro<void> {
    Timeout cm = timeout(10);
    try {
      co_await cm.run([]() -> Coro<void> {
        co_await sleep(0);
        throw make_timeout_error();
      });
    } catch (const TimeoutError& e) {
      EXPECT_FALSE(has_nested_cancelled_error(e));
    }
    EXPECT_FALSE(cm.expired());
  };
  run(main(), virtual_time());
}

TEST(Timeout, BodyThatSwallowsTheExpiryReturnsNormally) {
  auto main = []() -> Coro<int> {
    Timeout cm = timeout(1.0);
    int r = co_await cm.run([]() -> Coro<int> {
      try {
        co_await sleep(10);
      } catch (const CancelledError&) {
      }
      co_return 7;
    });
    EXPECT_TRUE(cm.expired());
    EXPECT_EQ(current_task().cancelling(), 0);
    co_await sleep(1);  // no stray cancellation left behind
    co_return r;
  };
  EXPECT_EQ(run(main(), virtual_time()), 7);
}

TEST(Timeout, ErrorRaisedWhileHandlingTheExpiryWins) {
  auto main = []() -> Coro<void> {
    Timeout cm = timeout(1.0);
    try {
      co_await cm.run([]() -> Coro<void> {
        try {
          co_await sleep(10);
        } catch (const CancelledError&) {
          throw ValueError("cleanup failed");
        }
      });
    } catch (const ValueError&) {
    }
    EXPECT_TRUE(cm.expired());
    EXPECT_EQ(current_task().cancelling(), 0);
  };
  run(main(), virtual_time());
}

TEST(Timeout, ManualEnterExit) {
  auto main = []() -> Coro<void> {
    Timeout cm = timeout(1.0);
    cm.enter();
    std::exception_ptr error;
    try {
      co_await sleep(5);
    } catch (...) {
      error = std::current_exception();
    }
    EXPECT_THROW(cm.exit(error), TimeoutError);
    EXPECT_DOUBLE_EQ(now(), 1.0);
  };
  run(main(), virtual_time());
}

TEST(Timeout, StateErrors) {
  auto main = []() -> Coro<void> {
    Timeout cm = timeout(1.0);
    EXPECT_THROW(cm.reschedule(2.0), RuntimeError);  // not entered
    co_await cm.run([]() -> Coro<void> { co_return; });
    EXPECT_THROW(cm.enter(), RuntimeError);          // entered twice
    EXPECT_THROW(cm.reschedule(2.0), RuntimeError);  // finished
    Timeout expired = timeout(0.5);
    co_await expired.run([&]() -> Coro<void> {
      try {
        co_await sleep(1);
      } catch (const CancelledError&) {
      }
      EXPECT_THROW(expired.reschedule(5.0), RuntimeError);  // expiring
    });
    EXPECT_TRUE(expired.expired());
  };
  run(main(), virtual_time());
}

TEST(Timeout, NeedsATask) {
  EventLoop loop;
  std::string message;
  Timeout cm(1.0);
  loop.call_soon([&] {
    try {
      cm.enter();
    } catch (const RuntimeError& e) {
      message = e.what();
    }
    loop.stop();
  });
  loop.run_forever();
  EXPECT_EQ(message, "Timeout should be used inside a task");
}

TEST(Timeout, CancellingDuringANoDeadlineScopeIsPlainCancellation) {
  auto main = []() -> Coro<void> {
    auto victim = []() -> Coro<void> {
      co_await timeout(no_deadline, []() -> Coro<void> { co_await sleep(100); });
    };
    Task<void> t = create_task(victim());
    co_await sleep(3);
    t.cancel("stop");
    try {
      co_await t;
    } catch (const CancelledError& e) {
      EXPECT_EQ(e.message(), "stop");
    }
    EXPECT_TRUE(t.cancelled());
  };
  run(main(), virtual_time());
}

TEST(Timeout, EnterAndExitWithoutExpiryAllocateNothing) {
  auto main = []() -> Coro<long> {
    co_await sleep(0);
    long allocations = 0;
    for (int i = 0; i < 101; ++i) {
      if (i == 1) allocations = 0;  // the first round may grow the loop's timer heap
      const long before = g_allocations.load();
      Timeout cm = timeout(10);
      cm.enter();
      co_await sleep(0);
      cm.exit(nullptr);
      allocations += g_allocations.load() - before;
    }
    co_return allocations;
  };
  EXPECT_EQ(run(main(), virtual_time()), 0);
}

}  // namespace
}  // namespace corio
