// Smoke test while the loop is being built; replaced by the full suites.
#include <corio/corio.hpp>
#include <gtest/gtest.h>

namespace corio {
namespace {

Coro<int> add(int a, int b) {
  co_await sleep(0.001);
  co_return a + b;
}

TEST(Loop, RunsACoroutine) { EXPECT_EQ(run(add(2, 3)), 5); }

}  // namespace
}  // namespace corio
