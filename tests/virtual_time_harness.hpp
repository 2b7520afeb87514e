// Test harness shared by suites whose bugs would show as hangs (queues, locks): runs a body as
// a task under virtual time and fails the test, instead of hanging it, when the body is still
// blocked after `limit` virtual seconds. Include it in one test file per binary only.
#pragma once

#include <gtest/gtest.h>
#include <corio/corio.hpp>

#include <utility>

namespace corio::testing_support {

inline constexpr Runner::Options kVirtual{.debug = false, .virtual_time = true};

inline void run_test(Coro<void> body, double limit = 10000) {
  run(
      [](Coro<void> body, double limit) -> Coro<void> {
        auto task = create_task(std::move(body));
        for (double waited = 0; !task.done() && waited < limit; waited += 1) co_await sleep(1);
        if (!task.done()) {
          ADD_FAILURE() << "the test body is still blocked after " << limit << " virtual seconds";
          co_return;  // the Runner cancels it
        }
        co_await task;
      }(std::move(body), limit),
      kVirtual);
}

}  // namespace corio::testing_support
