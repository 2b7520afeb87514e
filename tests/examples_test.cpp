// Runs the example programs as a user would and checks their output and their concurrency.
// Programs that sleep for seconds run on virtual time (CORIO_VIRTUAL_TIME=1), so "took 1.00
// seconds, not 3.00" is an exact check of overlap rather than a timing assertion.
#include <gtest/gtest.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "example_runner.hpp"

namespace {

using corio::testing::run_example;

TEST(Examples, CountasyncOverlapsItsSleeps) {
  const auto out = run_example("countasync", "", /*virtual_time=*/true);
  ASSERT_EQ(out.status, 0) << out.text;
  EXPECT_EQ(out.text.substr(0, 24), "One\nOne\nOne\nTwo\nTwo\nTwo\n");
  EXPECT_NE(out.text.find("executed in 1.00 seconds."), std::string::npos) << out.text;
}

TEST(Examples, CountasyncOverlapsOnTheRealClockToo) {
  const auto out = run_example("countasync", "", /*virtual_time=*/false);
  ASSERT_EQ(out.status, 0) << out.text;
  // Three 1 s sleeps one after another would take 3 s; overlapped they take about 1 s.
  const auto at = out.text.find("executed in ");
  ASSERT_NE(at, std::string::npos);
  const double seconds = std::stod(out.text.substr(at + 12));
  EXPECT_GE(seconds, 1.0);
  EXPECT_LT(seconds, 2.5);
}

TEST(Examples, SayAfterSequentialTakesTheSum) {
  const auto out = run_example("say_after", "sequential", true);
  ASSERT_EQ(out.status, 0) << out.text;
  EXPECT_NE(out.text.find("hello\nworld\nfinished at"), std::string::npos) << out.text;
  EXPECT_NE(out.text.find("elapsed 3.00 seconds"), std::string::npos) << out.text;
}

TEST(Examples, SayAfterWithTasksTakesTheMax) {
  const auto out = run_example("say_after", "tasks", true);
  ASSERT_EQ(out.status, 0) << out.text;
  EXPECT_NE(out.text.find("hello\nworld\nfinished at"), std::string::npos) << out.text;
  EXPECT_NE(out.text.find("elapsed 2.00 seconds"), std::string::npos) << out.text;
}

TEST(Examples, FactorialInterleavesAndReturnsInOrder) {
  const auto out = run_example("factorial", "", true);
  ASSERT_EQ(out.status, 0) << out.text;
  const std::string expected_start =
      "Task A: Compute factorial(2), currently i=2...\n"
      "Task B: Compute factorial(3), currently i=2...\n"
      "Task C: Compute factorial(4), currently i=2...\n"
      "Task A: factorial(2) = 2\n"
      "Task B: Compute factorial(3), currently i=3...\n"
      "Task C: Compute factorial(4), currently i=3...\n"
      "Task B: factorial(3) = 6\n"
      "Task C: Compute factorial(4), currently i=4...\n"
      "Task C: factorial(4) = 24\n"
      "[2, 6, 24]\n";
  EXPECT_EQ(out.text.substr(0, expected_start.size()), expected_start) << out.text;
  EXPECT_NE(out.text.find("elapsed 3.00 seconds"), std::string::npos) << out.text;
}

TEST(Examples, NestedNeverAwaitedDoesNotRunAndWarns) {
  const auto out = run_example("nested", "", false);
  ASSERT_EQ(out.status, 0) << out.text;
  EXPECT_NE(out.text.find("RuntimeWarning: coroutine 'nested' was never awaited"),
            std::string::npos)
      << out.text;
  EXPECT_NE(out.text.find("42\n"), std::string::npos) << out.text;
}

TEST(Examples, FetchConcurrentlyFromRealLoopbackServers) {
  const auto out = run_example("fetch_concurrently", "", /*virtual_time=*/false);
  ASSERT_EQ(out.status, 0) << out.text;
  EXPECT_NE(out.text.find("['Data from url1', 'Data from url2', 'Data from url3']"),
            std::string::npos)
      << out.text;
  // Each server answers after 1 s: fetched one after another this would take 3 s.
  const auto at = out.text.find("elapsed ");
  ASSERT_NE(at, std::string::npos) << out.text;
  const double seconds = std::stod(out.text.substr(at + 8));
  EXPECT_GE(seconds, 1.0);
  EXPECT_LT(seconds, 2.5);
}

TEST(Examples, FileCopyCopiesEveryByte) {
  const auto out = run_example("file_copy", "", /*virtual_time=*/false);
  ASSERT_EQ(out.status, 0) << out.text;
  EXPECT_NE(out.text.find("copied 4194304 bytes in 16 chunks"), std::string::npos) << out.text;
  EXPECT_NE(out.text.find(": identical"), std::string::npos) << out.text;
}

TEST(Examples, FileCopyReportsAMissingSource) {
  const auto out = run_example("file_copy", "no-such-file.corio copy.corio", false);
  EXPECT_EQ(out.status, 1) << out.text;
  EXPECT_NE(out.text.find("file_copy: open 'no-such-file.corio'"), std::string::npos) << out.text;
}

// On Windows the stages are the example itself standing in for printf, sort and uniq.
TEST(Examples, SubprocessPipelineCountsWords) {
  const auto out = run_example("subprocess_pipeline", "", false);
  ASSERT_EQ(out.status, 0) << out.text;
  EXPECT_NE(out.text.find("      3 apple\n      2 banana\n      1 cherry\n"), std::string::npos)
      << out.text;
  EXPECT_NE(out.text.find("uniq exited with 0"), std::string::npos) << out.text;
}

}  // namespace
