// On Windows subprocesses are not implemented yet: every entry point must say so with
// NotImplementedError (never a link error, never a half-started process).
#include <gtest/gtest.h>
#include <corio/corio.hpp>

namespace corio {
namespace {

TEST(SubprocessWindows, RaisesNotImplementedError) {
#ifdef _WIN32
  auto main = []() -> Coro<void> {
    EXPECT_THROW(co_await create_subprocess_exec("cmd.exe", "/c", "exit 0"), NotImplementedError);
    EXPECT_THROW(co_await create_subprocess_shell("exit 0"), NotImplementedError);
  };
  run(main());
#else
  GTEST_SKIP() << "subprocesses are implemented on this platform (see subprocess_test)";
#endif
}

}  // namespace
}  // namespace corio
