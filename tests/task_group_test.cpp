// TaskGroup and ExceptionGroup: the seed's say_after program (2 s, not 3), waiting for every
// child, the first failure cancelling siblings and body, errors raised together, outside
// cancellation staying CancelledError, create_task refused while shutting down, the parent's
// cancel count restored, KeyboardInterrupt raised alone, interplay with timeout(), and the
// ExceptionGroup inspection API (contains/subgroup/split over nested groups).
#include <gtest/gtest.h>
#include <corio/corio.hpp>
#include <corio/exception_group.hpp>
#include <corio/task_group.hpp>
#include <corio/timeouts.hpp>

#include <memory>
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

std::string at(const std::string& what) {
  return what + "@" + std::to_string(get_running_loop().time()).substr(0, 4);
}

Coro<void> say_after(double delay, std::string what, std::vector<std::string>& log) {
  co_await sleep(delay);
  log.push_back(at(what));
}

Coro<int> fail_after(double delay, std::string what) {
  co_await sleep(delay);
  throw ValueError(what);
}

// Sleeps; records how it ended.
Coro<int> sleeper(double delay, std::string name, std::vector<std::string>& log) {
  try {
    co_await sleep(delay);
  } catch (const CancelledError&) {
    log.push_back(at(name + " cancelled"));
    throw;
  }
  log.push_back(at(name + " done"));
  co_return 1;
}

TEST(TaskGroup, SeedSayAfterFinishesInTwoSeconds) {
  auto main = []() -> Coro<std::vector<std::string>> {
    std::vector<std::string> log;
    co_await TaskGroup::run([&](TaskGroup& tg) -> Coro<void> {
      tg.create_task(say_after(1, "hello", log));
      tg.create_task(say_after(2, "world", log));
      log.push_back(at("started"));
      co_return;
    });  // the implicit await at the end of `async with`
    log.push_back(at("finished"));
    co_return log;
  };
  EXPECT_EQ(run(main(), virtual_time()), (std::vector<std::string>{"started@0.00", "hello@1.00",
                                                                   "world@2.00", "finished@2.00"}));
}

TEST(TaskGroup, ReturnsTheBodyValueAndChildResults) {
  auto main = []() -> Coro<int> {
    Task<int> a;
    Task<int> b;
    std::vector<std::string> log;
    int body = co_await TaskGroup::run([&](TaskGroup& tg) -> Coro<int> {
      a = tg.create_task(sleeper(1, "a", log));
      b = tg.create_task(sleeper(3, "b", log));
      EXPECT_EQ(tg.size(), 2u);
      co_return 100;
    });
    EXPECT_TRUE(a.done() && b.done());
    EXPECT_DOUBLE_EQ(now(), 3.0);
    co_return body + a.result() + b.result();
  };
  EXPECT_EQ(run(main(), virtual_time()), 102);
}

TEST(TaskGroup, EmptyGroupDoesNotSuspend) {
  auto main = []() -> Coro<int> {
    auto steps = std::make_shared<int>(0);
    get_running_loop().call_soon([steps] { ++*steps; });
    co_await TaskGroup::run([](TaskGroup&) -> Coro<void> { co_return; });
    co_return *steps;
  };
  EXPECT_EQ(run(main(), virtual_time()), 0);
}

TEST(TaskGroup, FirstFailureCancelsSiblingsAndBody) {
  auto main = []() -> Coro<void> {
    std::vector<std::string> log;
    try {
      co_await TaskGroup::run([&](TaskGroup& tg) -> Coro<void> {
        tg.create_task(sleeper(10, "sibling", log));
        tg.create_task(fail_after(1, "child failed"));
        try {
          co_await sleep(10);
        } catch (const CancelledError&) {
          log.push_back(at("body cancelled"));
          throw;
        }
      });
      ADD_FAILURE() << "no ExceptionGroup";
    } catch (const ExceptionGroup& eg) {
      EXPECT_EQ(eg.message(), "unhandled errors in a TaskGroup");
      EXPECT_EQ(eg.exceptions().size(), 1u);
      EXPECT_TRUE(eg.contains<ValueError>());
      EXPECT_FALSE(eg.contains<CancelledError>());
    }
    EXPECT_EQ(log, (std::vector<std::string>{"sibling cancelled@1.00", "body cancelled@1.00"}));
    EXPECT_EQ(current_task().cancelling(), 0);  // the group took back its own cancel
    co_await sleep(1);                          // and left no cancellation pending
  };
  run(main(), virtual_time());
}

TEST(TaskGroup, FailureWhileWaitingAtExit) {
  auto main = []() -> Coro<void> {
    std::vector<std::string> log;
    try {
      co_await TaskGroup::run([&](TaskGroup& tg) -> Coro<void> {
        tg.create_task(sleeper(10, "sibling", log));
        tg.create_task(fail_after(1, "late"));
        co_return;  // the body is done; the failure comes during the exit wait
      });
    } catch (const ExceptionGroup& eg) {
      log.push_back(at("group of " + std::to_string(eg.exceptions().size())));
    }
    EXPECT_EQ(current_task().cancelling(), 0);
    co_await sleep(1);
    log.push_back(at("still running"));
    EXPECT_EQ(log, (std::vector<std::string>{"sibling cancelled@1.00", "group of 1@1.00",
                                             "still running@2.00"}));
  };
  run(main(), virtual_time());
}

TEST(TaskGroup, SimultaneousFailuresAreCollected) {
  auto main = []() -> Coro<std::size_t> {
    try {
      co_await TaskGroup::run([&](TaskGroup& tg) -> Coro<void> {
        tg.create_task(fail_after(1, "a"));
        tg.create_task(fail_after(1, "b"));
        co_return;
      });
    } catch (const ExceptionGroup& eg) {
      co_return eg.exceptions().size();
    }
    co_return 0;
  };
  EXPECT_EQ(run(main(), virtual_time()), 2u);
}

TEST(TaskGroup, ChildFailingWhileBeingCancelledAddsToTheGroup) {
  auto main = []() -> Coro<std::vector<std::string>> {
    auto bad_cleanup = []() -> Coro<void> {
      try {
        co_await sleep(10);
      } catch (const CancelledError&) {
        throw RuntimeError("cleanup failed");
      }
    };
    std::vector<std::string> errors;
    try {
      co_await TaskGroup::run([&](TaskGroup& tg) -> Coro<void> {
        tg.create_task(bad_cleanup());
        tg.create_task(fail_after(1, "first"));
        co_return;
      });
    } catch (const ExceptionGroup& eg) {
      for (const auto& e : eg.exceptions()) {
        try {
          std::rethrow_exception(e);
        } catch (const std::exception& ex) {
          errors.push_back(ex.what());
        }
      }
    }
    co_return errors;
  };
  EXPECT_EQ(run(main(), virtual_time()), (std::vector<std::string>{"first", "cleanup failed"}));
}

TEST(TaskGroup, BodyErrorCancelsChildrenAndJoinsTheGroup) {
  auto main = []() -> Coro<void> {
    std::vector<std::string> log;
    try {
      co_await TaskGroup::run([&](TaskGroup& tg) -> Coro<void> {
        tg.create_task(sleeper(10, "child", log));
        co_await sleep(1);
        throw TypeError("body failed");
      });
    } catch (const ExceptionGroup& eg) {
      EXPECT_TRUE(eg.contains<TypeError>());
      EXPECT_EQ(eg.exceptions().size(), 1u);
    }
    EXPECT_EQ(log, (std::vector<std::string>{"child cancelled@1.00"}));
  };
  run(main(), virtual_time());
}

TEST(TaskGroup, OutsideCancellationCancelsChildrenAndStaysCancelledError) {
  auto main = []() -> Coro<void> {
    std::vector<std::string> log;
    auto parent = [&]() -> Coro<void> {
      co_await TaskGroup::run([&](TaskGroup& tg) -> Coro<void> {
        tg.create_task(sleeper(10, "a", log));
        tg.create_task(sleeper(20, "b", log));
        co_await sleep(30);
      });
      log.push_back("not reached");
    };
    Task<void> p = create_task(parent());
    co_await sleep(2);
    p.cancel();
    try {
      co_await p;
    } catch (const CancelledError&) {
      log.push_back(at("parent cancelled"));
    } catch (const ExceptionGroup&) {
      log.push_back("group");
    }
    EXPECT_EQ(p.cancelling(), 1);
    EXPECT_EQ(log, (std::vector<std::string>{"a cancelled@2.00", "b cancelled@2.00",
                                             "parent cancelled@2.00"}));
  };
  run(main(), virtual_time());
}

TEST(TaskGroup, OutsideCancellationDuringTheExitWait) {
  auto main = []() -> Coro<void> {
    std::vector<std::string> log;
    auto parent = [&]() -> Coro<void> {
      co_await TaskGroup::run([&](TaskGroup& tg) -> Coro<void> {
        tg.create_task(sleeper(10, "child", log));
        co_return;
      });
    };
    Task<void> p = create_task(parent());
    co_await sleep(3);
    p.cancel();
    EXPECT_THROW(co_await p, CancelledError);
    EXPECT_EQ(log, (std::vector<std::string>{"child cancelled@3.00"}));
  };
  run(main(), virtual_time());
}

TEST(TaskGroup, OutsideCancellationWithChildErrorsRaisesTheGroupButKeepsTheCancel) {
  // CPython 3.13: the group wins, but the outside cancellation is not lost.
  auto main = []() -> Coro<void> {
    std::vector<std::string> log;
    auto bad_cleanup = []() -> Coro<void> {
      try {
        co_await sleep(10);
      } catch (const CancelledError&) {
        throw RuntimeError("cleanup failed");
      }
    };
    auto parent = [&]() -> Coro<void> {
      try {
        co_await TaskGroup::run([&](TaskGroup& tg) -> Coro<void> {
          tg.create_task(bad_cleanup());
          co_await sleep(10);
        });
      } catch (const ExceptionGroup&) {
        log.push_back("group");
      }
      co_await sleep(1);  // the cancellation is delivered here
      log.push_back("not reached");
    };
    Task<void> p = create_task(parent());
    co_await sleep(1);
    p.cancel();
    EXPECT_THROW(co_await p, CancelledError);
    EXPECT_EQ(log, (std::vector<std::string>{"group"}));
  };
  run(main(), virtual_time());
}

TEST(TaskGroup, CreateTaskRefusedWhileShuttingDown) {
  auto main = []() -> Coro<void> {
    bool ran = false;
    auto never = [&]() -> Coro<void> {
      ran = true;
      co_return;
    };
    std::string refusal;
    try {
      co_await TaskGroup::run([&](TaskGroup& tg) -> Coro<void> {
        tg.create_task(fail_after(1, "x"));
        try {
          co_await sleep(10);
        } catch (const CancelledError&) {
          try {
            tg.create_task(never());
          } catch (const RuntimeError& e) {
            refusal = e.what();
          }
          throw;
        }
      });
    } catch (const ExceptionGroup&) {
    }
    co_await sleep(0);
    EXPECT_EQ(refusal, "TaskGroup is shutting down");
    EXPECT_FALSE(ran);
  };
  run(main(), virtual_time());
}

TEST(TaskGroup, ChildrenCanAddChildrenWhileTheGroupWaits) {
  auto main = []() -> Coro<std::vector<std::string>> {
    std::vector<std::string> log;
    // A coroutine lambda's captures live in the closure, which must outlive the child: it is
    // declared here, not inside the body that returns before the child runs.
    auto spawner = [&](TaskGroup& tg) -> Coro<void> {
      co_await sleep(1);
      tg.create_task(say_after(2, "grandchild", log));
      log.push_back(at("spawned"));
    };
    co_await TaskGroup::run([&](TaskGroup& tg) -> Coro<void> {
      tg.create_task(spawner(tg));
      co_return;
    });
    log.push_back(at("exit"));
    co_return log;
  };
  EXPECT_EQ(run(main(), virtual_time()),
            (std::vector<std::string>{"spawned@1.00", "grandchild@3.00", "exit@3.00"}));
}

TEST(TaskGroup, CancelledChildIsNotAnError) {
  auto main = []() -> Coro<std::vector<std::string>> {
    std::vector<std::string> log;
    co_await TaskGroup::run([&](TaskGroup& tg) -> Coro<void> {
      Task<int> t = tg.create_task(sleeper(10, "victim", log));
      tg.create_task(say_after(2, "other", log));
      co_await sleep(1);
      t.cancel();
    });
    co_return log;
  };
  EXPECT_EQ(run(main(), virtual_time()),
            (std::vector<std::string>{"victim cancelled@1.00", "other@2.00"}));
}

TEST(TaskGroup, KeyboardInterruptIsRaisedAlone) {
  auto main = []() -> Coro<std::string> {
    auto interrupt = []() -> Coro<void> {
      co_await sleep(1);
      throw KeyboardInterrupt();
    };
    try {
      co_await TaskGroup::run([&](TaskGroup& tg) -> Coro<void> {
        tg.create_task(interrupt());
        tg.create_task(fail_after(1, "plain error"));
        co_await sleep(5);
      });
    } catch (const KeyboardInterrupt&) {
      co_return "KeyboardInterrupt";
    } catch (const ExceptionGroup&) {
      co_return "group";
    }
    co_return "nothing";
  };
  EXPECT_EQ(run(main(), virtual_time()), "KeyboardInterrupt");
}

TEST(TaskGroup, InsideATimeoutScope) {
  auto main = []() -> Coro<void> {
    std::vector<std::string> log;
    try {
      co_await timeout(1.5, [&]() -> Coro<void> {
        co_await TaskGroup::run([&](TaskGroup& tg) -> Coro<void> {
          tg.create_task(sleeper(1, "fast", log));
          tg.create_task(sleeper(10, "slow", log));
          co_return;
        });
      });
      ADD_FAILURE() << "no TimeoutError";
    } catch (const TimeoutError&) {
      log.push_back(at("timeout"));
    }
    EXPECT_EQ(current_task().cancelling(), 0);
    EXPECT_EQ(log,
              (std::vector<std::string>{"fast done@1.00", "slow cancelled@1.50", "timeout@1.50"}));
  };
  run(main(), virtual_time());
}

TEST(TaskGroup, TimeoutInsideAChildIsJustAChildError) {
  auto main = []() -> Coro<bool> {
    auto child = []() -> Coro<void> {
      co_await timeout(1, []() -> Coro<void> { co_await sleep(5); });
    };
    try {
      co_await TaskGroup::run([&](TaskGroup& tg) -> Coro<void> {
        tg.create_task(child());
        co_return;
      });
    } catch (const ExceptionGroup& eg) {
      co_return eg.contains<TimeoutError>();
    }
    co_return false;
  };
  EXPECT_TRUE(run(main(), virtual_time()));
}

TEST(TaskGroup, NestedGroups) {
  auto main = []() -> Coro<void> {
    std::vector<std::string> log;
    try {
      co_await TaskGroup::run([&](TaskGroup& outer) -> Coro<void> {
        outer.create_task(sleeper(10, "outer child", log));
        co_await TaskGroup::run([&](TaskGroup& inner) -> Coro<void> {
          inner.create_task(fail_after(1, "deep"));
          inner.create_task(sleeper(10, "inner child", log));
          co_return;
        });
      });
    } catch (const ExceptionGroup& eg) {
      // The inner group is one error of the outer group.
      EXPECT_EQ(eg.exceptions().size(), 1u);
      EXPECT_TRUE(ExceptionGroup::from(eg.exceptions()[0]).has_value());
      EXPECT_TRUE(eg.contains<ValueError>());
      EXPECT_EQ(eg.leaves().size(), 1u);
    }
    EXPECT_EQ(log, (std::vector<std::string>{"inner child cancelled@1.00",
                                             "outer child cancelled@1.00"}));
    EXPECT_EQ(current_task().cancelling(), 0);
  };
  run(main(), virtual_time());
}

TEST(TaskGroup, ManyChildren) {
  auto main = []() -> Coro<long> {
    long sum = 0;
    auto add = [&](int i) -> Coro<void> {
      co_await sleep(i % 7);
      sum += i;
    };
    co_await TaskGroup::run([&](TaskGroup& tg) -> Coro<void> {
      for (int i = 0; i < 1000; ++i) tg.create_task(add(i));
      co_return;
    });
    co_return sum;
  };
  EXPECT_EQ(run(main(), virtual_time()), 999L * 1000 / 2);
}

TEST(TaskGroup, RepeatedCancellationWhileChildrenCleanUp) {
  auto main = []() -> Coro<void> {
    std::vector<std::string> log;
    auto slow_cleanup = [&]() -> Coro<void> {
      bool cancelled = false;
      try {
        co_await sleep(100);
      } catch (const CancelledError&) {
        cancelled = true;
      }
      if (cancelled) {
        co_await sleep(2);  // takes a while to stop
        log.push_back(at("child stopped"));
      }
    };
    auto parent = [&]() -> Coro<void> {
      co_await TaskGroup::run([&](TaskGroup& tg) -> Coro<void> {
        tg.create_task(slow_cleanup());
        co_await sleep(100);
      });
    };
    Task<void> p = create_task(parent());
    co_await sleep(1);
    p.cancel();
    co_await sleep(1);
    p.cancel();  // again, while the group waits for the child at exit
    EXPECT_THROW(co_await p, CancelledError);
    log.push_back(at("parent done"));
    EXPECT_EQ(p.cancelling(), 2);
    EXPECT_EQ(log, (std::vector<std::string>{"child stopped@3.00", "parent done@3.00"}));
  };
  run(main(), virtual_time());
}

TEST(TaskGroup, LoopTornDownWithChildrenPending) {
  // No Runner: the loop is destroyed with the parent suspended in the group's exit wait and
  // the child still sleeping. The group must unhook cleanly (ASan/LSan check this).
  auto loop = std::make_unique<EventLoop>(EventLoop::Options{.virtual_time = true});
  loop->set_exception_handler([](EventLoop&, const ExceptionContext&) {});
  auto forever = []() -> Coro<void> { co_await sleep(1e6); };
  auto parent = [&]() -> Coro<void> {
    co_await TaskGroup::run([&](TaskGroup& tg) -> Coro<void> {
      tg.create_task(forever());
      co_return;
    });
  };
  Task<void> p = loop->create_task(parent());
  loop->run_until_complete(loop->create_task([]() -> Coro<void> { co_await sleep(1); }()));
  EXPECT_FALSE(p.done());
  loop.reset();
}

TEST(TaskGroup, NeedsATask) {
  auto main = []() -> Coro<void> {
    co_await TaskGroup::run([](TaskGroup&) -> Coro<void> { co_return; });
  };
  EventLoop loop;
  Coro<void> coro = main();
  auto handle = coro.release();
  std::string message;
  // Resumed as a bare coroutine, not a task: the group has no parent.
  loop.call_soon([&] {
    handle.resume();
    if (handle.promise().exception) {
      try {
        std::rethrow_exception(handle.promise().exception);
      } catch (const RuntimeError& e) {
        message = e.what();
      }
    }
    loop.stop();
  });
  loop.run_forever();
  handle.destroy();
  EXPECT_EQ(message, "TaskGroup cannot determine the parent task");
}

// --- ExceptionGroup ---

std::exception_ptr error_of(auto e) {
  return std::make_exception_ptr(e);
}

TEST(ExceptionGroup, RefusesEmptyAndNull) {
  EXPECT_THROW(ExceptionGroup("m", {}), ValueError);
  EXPECT_THROW(ExceptionGroup("m", {std::exception_ptr()}), TypeError);
  ExceptionGroup one("one", {error_of(ValueError("v"))});
  EXPECT_STREQ(one.what(), "one (1 sub-exception)");
}

TEST(ExceptionGroup, SplitAndSubgroupKeepNesting) {
  ExceptionGroup inner("inner", {error_of(ValueError("v2")), error_of(TypeError("t2"))});
  ExceptionGroup eg("outer", {error_of(ValueError("v1")), error_of(RuntimeError("r1")),
                              std::make_exception_ptr(inner)});
  EXPECT_STREQ(eg.what(), "outer (3 sub-exceptions)");
  EXPECT_TRUE(eg.contains<TypeError>());
  EXPECT_FALSE(eg.contains<KeyboardInterrupt>());
  EXPECT_EQ(eg.leaves().size(), 4u);

  auto [values, rest] = eg.split<ValueError>();
  ASSERT_TRUE(values.has_value());
  ASSERT_TRUE(rest.has_value());
  EXPECT_EQ(values->message(), "outer");
  ASSERT_EQ(values->exceptions().size(), 2u);  // v1, and inner narrowed to v2
  auto narrowed = ExceptionGroup::from(values->exceptions()[1]);
  ASSERT_TRUE(narrowed.has_value());
  EXPECT_EQ(narrowed->message(), "inner");
  EXPECT_EQ(narrowed->exceptions().size(), 1u);
  EXPECT_EQ(rest->leaves().size(), 2u);  // r1, t2
  EXPECT_FALSE(rest->contains<ValueError>());

  EXPECT_FALSE(eg.subgroup<KeyboardInterrupt>().has_value());
  auto all = eg.subgroup<std::exception>();  // the group itself matches
  ASSERT_TRUE(all.has_value());
  EXPECT_EQ(all->exceptions().size(), 3u);
  auto by_message = eg.subgroup_if([](const std::exception_ptr& e) {
    try {
      std::rethrow_exception(e);
    } catch (const std::logic_error& l) {
      return std::string(l.what()) == "t2";
    } catch (...) {
      return false;
    }
  });
  ASSERT_TRUE(by_message.has_value());
  EXPECT_EQ(by_message->leaves().size(), 1u);
}

}  // namespace
}  // namespace corio
