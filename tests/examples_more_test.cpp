// Runs the remaining example programs (rand, chained, asyncq, say_after taskgroup, wait_for,
// timeouts, exit stacks, threads, async generators, queues, gather simulations, the low-level
// loop) as a user would, and checks their output lines, their order and their elapsed time.
// Programs run on virtual time (CORIO_VIRTUAL_TIME=1), so an elapsed time is exact; only the
// thread examples also get one generous real-clock overlap check, since overlap with a real
// thread is their point. Random programs are checked against rules derived from their own
// output (each run is reproducible, but the tests do not hard-code the drawn numbers).
// It must never assert a wall-clock time beyond those two generous overlap bounds.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "example_runner.hpp"

namespace {

using corio::testing::ExampleOutput;
using corio::testing::run_example;

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    lines.push_back(line);
  }
  return lines;
}

// Index of the first line equal to `line`, or -1.
long find_line(const std::vector<std::string>& lines, const std::string& line) {
  const auto it = std::find(lines.begin(), lines.end(), line);
  return it == lines.end() ? -1 : static_cast<long>(it - lines.begin());
}

// The number in "<prefix><number>..." on the first line starting with prefix; NAN if none.
double number_after(const std::string& text, const std::string& prefix) {
  const auto at = text.find(prefix);
  if (at == std::string::npos) return NAN;
  return std::stod(text.substr(at + prefix.size()));
}

// ---------------------------------------------------------------------------------------------
// rand

TEST(ExamplesMore, RandRetriesConcurrentlyAndUnpacksResults) {
  const ExampleOutput out = run_example("rand", "", true);
  ASSERT_EQ(out.status, 0) << out.text;
  const auto lines = lines_of(out.text);
  const char* const colour[] = {"\033[36m", "\033[91m", "\033[35m"};
  const std::regex initiated("Initiated makerandom\\(([0-2])\\)\\.");
  const std::regex too_low("makerandom\\(([0-2])\\) == (\\d+) too low; retrying\\.");
  const std::regex finished("---> Finished: makerandom\\(([0-2])\\) == (\\d+)\033\\[0m");
  int retries[3] = {0, 0, 0};
  int result[3] = {-1, -1, -1};
  long initiated_at[3] = {-1, -1, -1};
  long finished_at[3] = {-1, -1, -1};
  std::size_t k = 0;
  for (; k < lines.size() && !lines[k].empty(); ++k) {
    std::smatch m;
    const std::string& line = lines[k];
    ASSERT_GE(line.size(), 5u) << line;
    const std::string body = line.substr(5);  // every line starts with its task's colour
    if (std::regex_match(body, m, initiated)) {
      const int idx = std::stoi(m[1]);
      EXPECT_EQ(line.substr(0, 5), colour[idx]);
      EXPECT_EQ(initiated_at[idx], -1);
      initiated_at[idx] = static_cast<long>(k);
    } else if (std::regex_match(body, m, too_low)) {
      const int idx = std::stoi(m[1]);
      EXPECT_EQ(line.substr(0, 5), colour[idx]);
      EXPECT_LE(std::stoi(m[2]), 10 - idx - 1) << "a draw above the threshold is not too low";
      EXPECT_NE(initiated_at[idx], -1);
      EXPECT_EQ(finished_at[idx], -1);
      ++retries[idx];
    } else if (std::regex_match(body, m, finished)) {
      const int idx = std::stoi(m[1]);
      EXPECT_EQ(line.substr(0, 5), colour[idx]);
      result[idx] = std::stoi(m[2]);
      EXPECT_GT(result[idx], 10 - idx - 1);
      EXPECT_LE(result[idx], 10);
      finished_at[idx] = static_cast<long>(k);
    } else {
      ADD_FAILURE() << "unexpected line: " << line;
    }
  }
  for (int idx = 0; idx < 3; ++idx) {
    EXPECT_NE(initiated_at[idx], -1) << idx;
    EXPECT_NE(finished_at[idx], -1) << idx;
  }
  // The three start at once: a task that has to retry (it sleeps) lets the next one start
  // before it finishes.
  for (int idx = 0; idx < 2; ++idx) {
    if (retries[idx] > 0) {
      EXPECT_LT(initiated_at[idx + 1], finished_at[idx]) << idx;
    }
  }
  ASSERT_GT(retries[0] + retries[1] + retries[2], 0) << "the seed must make some task retry";
  ASSERT_LT(k + 2, lines.size());
  EXPECT_EQ(lines[k], "");
  EXPECT_EQ(lines[k + 1], "r1: " + std::to_string(result[0]) + ", r2: " +
                              std::to_string(result[1]) + ", r3: " + std::to_string(result[2]));
  // Task idx sleeps idx + 1 seconds per retry; overlapped, the run takes the longest of them.
  int longest = 0;
  for (int idx = 0; idx < 3; ++idx) longest = std::max(longest, retries[idx] * (idx + 1));
  EXPECT_DOUBLE_EQ(number_after(out.text, "elapsed "), longest) << out.text;
}

// ---------------------------------------------------------------------------------------------
// chained

struct ChainCheck {
  std::vector<int> ns;
  double slowest = 0;
};

// Checks each chain's five lines and their durations; returns what it learned.
ChainCheck check_chains(const std::vector<std::string>& lines,
                        const std::vector<int>& expected_ns) {
  ChainCheck check;
  const std::regex part1("part1\\((\\d+)\\) sleeping for (\\d+) seconds\\.");
  std::map<int, int> first_sleep;
  for (const std::string& line : lines) {
    std::smatch m;
    if (std::regex_match(line, m, part1)) {
      check.ns.push_back(std::stoi(m[1]));
      first_sleep[std::stoi(m[1])] = std::stoi(m[2]);
    }
  }
  EXPECT_EQ(check.ns, expected_ns);
  // gather starts every chain before any sleeps: the part1 lines come first, in order.
  for (std::size_t i = 0; i < expected_ns.size() && i < lines.size(); ++i) {
    EXPECT_EQ(lines[i].rfind("part1(" + std::to_string(expected_ns[i]) + ")", 0), 0u) << lines[i];
  }
  for (int n : expected_ns) {
    const std::string N = std::to_string(n);
    const std::string r1 = "result" + N + "-1";
    const std::string r2 = "result" + N + "-2 derived from " + r1;
    const long returned1 = find_line(lines, "Returning part1(" + N + ") == " + r1 + ".");
    long part2_at = -1;
    int second_sleep = -1;
    const std::regex part2("part2\\(" + N + ", '" + r1 + "'\\) sleeping for (\\d+) seconds\\.");
    for (std::size_t k = 0; k < lines.size(); ++k) {
      std::smatch m;
      if (std::regex_match(lines[k], m, part2)) {
        part2_at = static_cast<long>(k);
        second_sleep = std::stoi(m[1]);
      }
    }
    const long returned2 =
        find_line(lines, "Returning part2(" + N + ", '" + r1 + "') == " + r2 + ".");
    const int took = first_sleep[n] + second_sleep;
    char buffer[160];
    std::snprintf(buffer, sizeof buffer, "-->Chained result%d => %s (took %d.00 seconds).", n,
                  r2.c_str(), took);
    const long chained = find_line(lines, buffer);
    EXPECT_NE(returned1, -1) << n;
    EXPECT_LT(returned1, part2_at) << n;
    EXPECT_LT(part2_at, returned2) << n;
    EXPECT_EQ(chained, returned2 + 1) << buffer;
    check.slowest = std::max(check.slowest, static_cast<double>(took));
  }
  return check;
}

TEST(ExamplesMore, ChainedDefaultsToOneTwoThreeAndTakesTheSlowestChain) {
  const ExampleOutput out = run_example("chained", "", true);
  ASSERT_EQ(out.status, 0) << out.text;
  const auto lines = lines_of(out.text);
  ASSERT_EQ(lines.size(), 16u) << out.text;
  const ChainCheck check = check_chains(lines, {1, 2, 3});
  char last[64];
  std::snprintf(last, sizeof last, "Program finished in %0.2f seconds.", check.slowest);
  EXPECT_EQ(lines.back(), last) << out.text;
}

TEST(ExamplesMore, ChainedTakesItsChainsFromArgv) {
  const ExampleOutput out = run_example("chained", "4 7", true);
  ASSERT_EQ(out.status, 0) << out.text;
  const auto lines = lines_of(out.text);
  ASSERT_EQ(lines.size(), 11u) << out.text;
  const ChainCheck check = check_chains(lines, {4, 7});
  char last[64];
  std::snprintf(last, sizeof last, "Program finished in %0.2f seconds.", check.slowest);
  EXPECT_EQ(lines.back(), last) << out.text;
}

TEST(ExamplesMore, ChainedRejectsANonInteger) {
  const ExampleOutput out = run_example("chained", "x", true);
  EXPECT_NE(out.status, 0);
  EXPECT_NE(out.text.find("ValueError: invalid literal for int() with base 10: 'x'"),
            std::string::npos)
      << out.text;
}

// ---------------------------------------------------------------------------------------------
// asyncq

struct QueueRun {
  std::set<int> producers;
  std::set<int> consumers;
  std::size_t items = 0;
};

// Replays the program's timeline from its own output. Producers never wait (the queue is
// unbounded), so an item is put at its producer's total sleep so far; it is taken "in X
// seconds" later. Each consumer takes an item only after its own sleep, and q.join() returns
// (the program ends) when the last item is taken and marked done.
QueueRun check_asyncq(const std::string& text) {
  QueueRun run;
  const auto lines = lines_of(text);
  const std::regex producer_sleeps("Producer (\\d+) sleeping for (\\d+) seconds\\.");
  const std::regex added("Producer (\\d+) added <([0-9a-f]{10})> to queue\\.");
  const std::regex consumer_sleeps("Consumer (\\d+) sleeping for (\\d+) seconds\\.");
  const std::regex got(
      "Consumer (\\d+) got element <([0-9a-f]{10})> in (\\d+\\.\\d{5}) seconds\\.");
  const std::regex completed("Program completed in (\\d+\\.\\d{5}) seconds\\.");
  std::map<int, double> producer_clock, consumer_clock;
  std::map<std::string, double> put_at;
  std::set<std::string> taken;
  double last_taken = 0;
  bool finished = false;
  for (const std::string& line : lines) {
    std::smatch m;
    EXPECT_FALSE(finished) << "a line after the completion line: " << line;
    if (std::regex_match(line, m, producer_sleeps)) {
      run.producers.insert(std::stoi(m[1]));
      producer_clock[std::stoi(m[1])] += std::stoi(m[2]);
    } else if (std::regex_match(line, m, added)) {
      const int p = std::stoi(m[1]);
      run.producers.insert(p);
      EXPECT_TRUE(put_at.emplace(m[2], producer_clock[p]).second) << "item put twice: " << line;
    } else if (std::regex_match(line, m, consumer_sleeps)) {
      run.consumers.insert(std::stoi(m[1]));
      consumer_clock[std::stoi(m[1])] += std::stoi(m[2]);
    } else if (std::regex_match(line, m, got)) {
      const int c = std::stoi(m[1]);
      const auto put = put_at.find(m[2]);
      if (put == put_at.end()) {
        ADD_FAILURE() << "an item taken before it was put: " << line;
        continue;
      }
      EXPECT_TRUE(taken.insert(m[2]).second) << "item taken twice: " << line;
      const double now = put->second + std::stod(m[3]);
      EXPECT_GE(now + 1e-9, consumer_clock[c])
          << "a consumer took an item while sleeping: " << line;
      consumer_clock[c] = now;
      last_taken = std::max(last_taken, now);
    } else if (std::regex_match(line, m, completed)) {
      EXPECT_NEAR(std::stod(m[1]), last_taken, 1e-6)
          << "join() must return when the last item is done";
      finished = true;
    } else {
      ADD_FAILURE() << "unexpected line: " << line;
    }
  }
  EXPECT_TRUE(finished) << text;
  EXPECT_EQ(taken.size(), put_at.size()) << "every item put is taken";
  run.items = put_at.size();
  return run;
}

std::string without_items(const std::string& text) {
  return std::regex_replace(text, std::regex("<[0-9a-f]{10}>"), "<item>");
}

TEST(ExamplesMore, AsyncqTwoProducersFiveConsumers) {
  const ExampleOutput out = run_example("asyncq", "-p 2 -c 5", true);
  ASSERT_EQ(out.status, 0) << out.text;
  const QueueRun run = check_asyncq(out.text);
  EXPECT_EQ(run.producers, (std::set<int>{0, 1})) << out.text;
  EXPECT_EQ(run.consumers, (std::set<int>{0, 1, 2, 3, 4})) << out.text;
  EXPECT_GT(run.items, 0u);
  // The tasks start in creation order: producers, then consumers, each with a sleep line.
  const auto lines = lines_of(out.text);
  ASSERT_GT(lines.size(), 7u);
  EXPECT_EQ(lines[0].rfind("Producer 0 sleeping", 0), 0u) << lines[0];
  EXPECT_EQ(lines[1].rfind("Producer 1 sleeping", 0), 0u) << lines[1];
  for (int c = 0; c < 5; ++c) {
    EXPECT_EQ(lines[2 + c].rfind("Consumer " + std::to_string(c) + " sleeping", 0), 0u)
        << lines[2 + c];
  }
}

TEST(ExamplesMore, AsyncqDefaultsToFiveProducersTenConsumers) {
  const ExampleOutput out = run_example("asyncq", "", true);
  ASSERT_EQ(out.status, 0) << out.text;
  const QueueRun run = check_asyncq(out.text);
  EXPECT_LE(run.producers.size(), 5u);
  EXPECT_GE(run.producers.size(), 2u);
  EXPECT_LE(*run.producers.rbegin(), 4);
  EXPECT_EQ(run.consumers.size(), 10u);
  EXPECT_EQ(*run.consumers.rbegin(), 9);
}

TEST(ExamplesMore, AsyncqAcceptsShortAndLongFlagSpellings) {
  const ExampleOutput reference = run_example("asyncq", "-p 2 -c 5", true);
  ASSERT_EQ(reference.status, 0) << reference.text;
  for (const char* args :
       {"--nprod 2 --ncon 5", "--nprod=2 -c5", "-p2 --ncon=5", "-nprod=2 -ncon 5"}) {
    const ExampleOutput out = run_example("asyncq", args, true);
    ASSERT_EQ(out.status, 0) << args << "\n" << out.text;
    EXPECT_EQ(without_items(out.text), without_items(reference.text)) << args;
  }
  const ExampleOutput other = run_example("asyncq", "-p 3 -c 1", true);
  ASSERT_EQ(other.status, 0) << other.text;
  EXPECT_NE(without_items(other.text), without_items(reference.text));
  const QueueRun run = check_asyncq(other.text);
  EXPECT_EQ(run.consumers, (std::set<int>{0}));
}

TEST(ExamplesMore, AsyncqWithoutProducersEndsAtOnceAndConsumersNeverRun) {
  // gather() of nothing and join() of an untouched queue do not suspend, so the consumers are
  // cancelled before their first step, as in asyncio: they print nothing.
  const ExampleOutput out = run_example("asyncq", "-p 0 -c 3", true);
  ASSERT_EQ(out.status, 0) << out.text;
  EXPECT_EQ(out.text, "Program completed in 0.00000 seconds.\n");
}

TEST(ExamplesMore, AsyncqRejectsBadArguments) {
  EXPECT_EQ(run_example("asyncq", "extra", true).status, 2);
  EXPECT_NE(run_example("asyncq", "--bogus", true).status, 0);
  EXPECT_NE(run_example("asyncq", "-p", true).status, 0);
}

// ---------------------------------------------------------------------------------------------
// say_after with a TaskGroup

TEST(ExamplesMore, SayAfterTaskGroupWaitsForChildrenAtScopeExit) {
  const ExampleOutput out = run_example("say_after", "taskgroup", true);
  ASSERT_EQ(out.status, 0) << out.text;
  const auto lines = lines_of(out.text);
  ASSERT_EQ(lines.size(), 5u) << out.text;
  // The body runs first (the children start when it suspends at the scope's end).
  EXPECT_EQ(lines[0].rfind("started at ", 0), 0u);
  EXPECT_EQ(lines[1], "hello");
  EXPECT_EQ(lines[2], "world");
  EXPECT_EQ(lines[3].rfind("finished at ", 0), 0u);
  EXPECT_EQ(lines[4], "elapsed 2.00 seconds");
}

// ---------------------------------------------------------------------------------------------
// wait_for and timeouts

TEST(ExamplesMore, WaitForEternityTimesOutAfterOneSecond) {
  const ExampleOutput out = run_example("wait_for_eternity", "", true);
  ASSERT_EQ(out.status, 0) << out.text;
  // No "yay!": eternity() was cancelled, not left running until the runner closed.
  EXPECT_EQ(out.text, "timeout!\nelapsed 1.00 seconds\n");
}

TEST(ExamplesMore, TimeoutScopesExpire) {
  const ExampleOutput out = run_example("timeout_reschedule", "", true);
  ASSERT_EQ(out.status, 0) << out.text;
  EXPECT_EQ(out.text,
            "The long operation timed out, but we've handled it.\n"
            "This statement will run regardless.\n"
            "timeout(10) scope left after 10.00 seconds\n"
            "cm.when() = None\n"
            "cm.when() = loop.time() + 10.00\n"
            "Looks like we haven't finished on time.\n"
            "timeout(None) scope left after 10.00 seconds\n"
            "elapsed 20.00 seconds\n");
}

TEST(ExamplesMore, TimeoutScopesThatFinishInTimeDoNotExpire) {
  const ExampleOutput out = run_example("timeout_reschedule", "5", true);
  ASSERT_EQ(out.status, 0) << out.text;
  EXPECT_EQ(out.text,
            "long_running_task finished after 5.00 seconds\n"
            "This statement will run regardless.\n"
            "timeout(10) scope left after 5.00 seconds\n"
            "cm.when() = None\n"
            "cm.when() = loop.time() + 10.00\n"
            "long_running_task finished after 5.00 seconds\n"
            "We finished on time.\n"
            "timeout(None) scope left after 5.00 seconds\n"
            "elapsed 10.00 seconds\n");
}

// ---------------------------------------------------------------------------------------------
// AsyncExitStack

TEST(ExamplesMore, ExitStackClosesConnectionsLastInFirstOut) {
  const ExampleOutput out = run_example("exit_stack_connections", "", true);
  ASSERT_EQ(out.status, 0) << out.text;
  EXPECT_EQ(out.text,
            "opening connection 1\nconnection 1 open\n"
            "opening connection 2\nconnection 2 open\n"
            "opening connection 3\nconnection 3 open\n"
            "opening connection 4\nconnection 4 open\n"
            "opening connection 5\nconnection 5 open\n"
            "using 5 connections\n"
            "closing connection 5\nclosing connection 4\nclosing connection 3\n"
            "closing connection 2\nclosing connection 1\n"
            "exit callback: no error\n"
            "all connections closed\n"
            // 5 opens and 5 closes of 0.1 s each, and 1 s of use.
            "elapsed 2.00 seconds\n");
}

TEST(ExamplesMore, ExitStackClosesWhatWasOpenedWhenALaterConnectFails) {
  const ExampleOutput out = run_example("exit_stack_connections", "fail", true);
  ASSERT_EQ(out.status, 0) << out.text;
  const std::string expected_start =
      "opening connection 1\nconnection 1 open\n"
      "opening connection 2\nconnection 2 open\n"
      "opening connection 3\nconnection 3 open\n"
      "opening connection 4\n"
      "closing connection 3\nclosing connection 2\nclosing connection 1\n"
      "exit callback: an error is propagating\n"
      "ConnectionRefusedError: connection 4";
  EXPECT_EQ(out.text.substr(0, expected_start.size()), expected_start) << out.text;
  EXPECT_EQ(out.text.find("using "), std::string::npos) << out.text;
  EXPECT_EQ(out.text.find("all connections closed"), std::string::npos) << out.text;
  // 4 connects and 3 closes of 0.1 s each.
  EXPECT_NE(out.text.find("\nelapsed 0.70 seconds\n"), std::string::npos) << out.text;
}

// ---------------------------------------------------------------------------------------------
// to_thread and run_in_executor

TEST(ExamplesMore, ToThreadOverlapsWithSleep) {
  const ExampleOutput out = run_example("to_thread", "", true);
  ASSERT_EQ(out.status, 0) << out.text;
  const auto lines = lines_of(out.text);
  ASSERT_EQ(lines.size(), 5u) << out.text;
  EXPECT_EQ(lines[0].rfind("started main at ", 0), 0u);
  EXPECT_EQ(lines[1].rfind("start blocking_io at ", 0), 0u);
  EXPECT_EQ(lines[2].rfind("blocking_io complete at ", 0), 0u);
  EXPECT_EQ(lines[3].rfind("finished main at ", 0), 0u);
  EXPECT_EQ(lines[4], "elapsed 1.00 seconds");
}

TEST(ExamplesMore, ToThreadOverlapsOnTheRealClock) {
  const ExampleOutput out = run_example("to_thread", "", false);
  ASSERT_EQ(out.status, 0) << out.text;
  // One after the other they would take 2 s.
  const double seconds = number_after(out.text, "elapsed ");
  EXPECT_GE(seconds, 1.0) << out.text;
  EXPECT_LT(seconds, 1.9) << out.text;
}

TEST(ExamplesMore, RunInExecutorKeepsTheLoopRunning) {
  const ExampleOutput out = run_example("run_in_executor", "", true);
  ASSERT_EQ(out.status, 0) << out.text;
  const auto lines = lines_of(out.text);
  ASSERT_EQ(lines.size(), 6u) << out.text;
  long previous = -1;
  for (int n = 1; n <= 4; ++n) {
    const long at =
        find_line(lines, "tick " + std::to_string(n) + ": the loop is still responsive");
    EXPECT_GT(at, previous) << n;
    previous = at;
  }
  EXPECT_NE(find_line(lines, "response: {\"url\": \"https://httpbin.org/delay/2\", \"delay\": 2}"),
            -1);
  EXPECT_EQ(lines.back(), "elapsed 2.00 seconds");
}

TEST(ExamplesMore, RunInExecutorOverlapsOnTheRealClock) {
  const ExampleOutput out = run_example("run_in_executor", "", false);
  ASSERT_EQ(out.status, 0) << out.text;
  const auto lines = lines_of(out.text);
  const long response =
      find_line(lines, "response: {\"url\": \"https://httpbin.org/delay/2\", \"delay\": 2}");
  ASSERT_NE(response, -1) << out.text;
  // The first ticks (0.5 s, 1 s) come while the 2 s call still blocks its thread.
  EXPECT_LT(find_line(lines, "tick 1: the loop is still responsive"), response) << out.text;
  EXPECT_LT(find_line(lines, "tick 2: the loop is still responsive"), response) << out.text;
  // Blocking the loop instead would take 2 s + 2 s.
  const double seconds = number_after(out.text, "elapsed ");
  EXPECT_GE(seconds, 2.0) << out.text;
  EXPECT_LT(seconds, 3.5) << out.text;
}

// ---------------------------------------------------------------------------------------------
// async generators

TEST(ExamplesMore, AsyncGeneratorsStreamAndFold) {
  const ExampleOutput out = run_example("async_generator_stream", "", true);
  ASSERT_EQ(out.status, 0) << out.text;
  EXPECT_EQ(out.text,
            "0\n1\n2\n3\n4\n"
            "async for took 2.50 seconds\n"
            "Operation completed within timeout\n"
            "timeout scope took 3.00 seconds\n"
            "📨 收到: 处理完成: 问题1\n"
            "📨 收到: 处理完成: 问题2\n"
            "📨 收到: 处理完成: 问题3\n"
            "stream took 1.50 seconds\n"
            "aadd(stream_responses) = 处理完成: 问题1处理完成: 问题2处理完成: 问题3\n"
            "aadd(async_generator) = 10\n"
            "aadd(empty stream) = None\n"
            "aadd took 4.00 seconds\n"
            "elapsed 11.00 seconds\n");
}

// ---------------------------------------------------------------------------------------------
// bounded queue

struct BoundedRun {
  std::vector<std::string> produced;
  std::map<std::string, std::string> processed_by;  // task -> consumer
  long last_done = -1;
  long first_start = -1;
  long last_produced = -1;
  std::size_t max_length = 0;
};

BoundedRun check_bounded_queue(const std::vector<std::string>& lines) {
  BoundedRun run;
  const std::regex produced("🏭 (生产者[12]) 生产了: (生产者[12]-任务\\d)( \\(队列 (\\d)/5\\))?");
  const std::regex started("🔧 (消费者[12]) 开始处理: (\\S+)");
  const std::regex done("✅ (消费者[12]) 完成了: (\\S+)");
  std::map<std::string, std::string> working;  // consumer -> task in hand
  for (std::size_t k = 0; k < lines.size(); ++k) {
    std::smatch m;
    const std::string& line = lines[k];
    if (std::regex_match(line, m, produced)) {
      EXPECT_EQ(m[2].str().rfind(m[1].str() + "-", 0), 0u) << line;
      run.produced.push_back(m[2]);
      run.last_produced = static_cast<long>(k);
      if (m[4].matched) run.max_length = std::max<std::size_t>(run.max_length, std::stoul(m[4]));
    } else if (std::regex_match(line, m, started)) {
      EXPECT_EQ(working.count(m[1]), 0u)
          << "a consumer took a second task before finishing: " << line;
      EXPECT_NE(std::find(run.produced.begin(), run.produced.end(), m[2].str()), run.produced.end())
          << "taken before it was produced: " << line;
      EXPECT_TRUE(run.processed_by.emplace(m[2], m[1]).second) << "taken twice: " << line;
      working[m[1]] = m[2];
      if (run.first_start == -1) run.first_start = static_cast<long>(k);
    } else if (std::regex_match(line, m, done)) {
      EXPECT_EQ(working[m[1]], m[2].str()) << line;
      working.erase(m[1]);
      run.last_done = static_cast<long>(k);
    }
  }
  EXPECT_TRUE(working.empty());
  return run;
}

TEST(ExamplesMore, BoundedQueueProcessesEverythingThenCancelsConsumers) {
  const ExampleOutput out = run_example("bounded_queue", "", true);
  ASSERT_EQ(out.status, 0) << out.text;
  const auto lines = lines_of(out.text);
  const BoundedRun run = check_bounded_queue(lines);
  EXPECT_EQ(run.produced.size(), 6u) << out.text;
  EXPECT_EQ(run.processed_by.size(), 6u) << out.text;
  // Cancelled, not timed out: the consumers say nothing more.
  EXPECT_EQ(out.text.find("超时退出"), std::string::npos) << out.text;
  ASSERT_GE(lines.size(), 2u);
  EXPECT_EQ(find_line(lines, "🎉 所有任务完成!"), run.last_done + 1) << out.text;
  // Two consumers, 2 s per task, items arriving by t = 2: three rounds.
  EXPECT_EQ(lines.back(), "elapsed 6.00 seconds") << out.text;
}

TEST(ExamplesMore, BoundedQueueConsumersLeaveOnWaitForTimeout) {
  const ExampleOutput out = run_example("bounded_queue", "timeout", true);
  ASSERT_EQ(out.status, 0) << out.text;
  const auto lines = lines_of(out.text);
  const BoundedRun run = check_bounded_queue(lines);
  EXPECT_EQ(run.processed_by.size(), 6u) << out.text;
  const long t1 = find_line(lines, "⏰ 消费者1 超时退出");
  const long t2 = find_line(lines, "⏰ 消费者2 超时退出");
  EXPECT_GT(t1, run.last_done) << out.text;
  EXPECT_GT(t2, run.last_done) << out.text;
  EXPECT_EQ(find_line(lines, "🎉 所有任务完成!"), std::max(t1, t2) + 1) << out.text;
  // The queue ran dry at 6 s; the wait_for(get(), 5) gave up 5 s later.
  EXPECT_EQ(lines.back(), "elapsed 11.00 seconds") << out.text;
}

TEST(ExamplesMore, BoundedQueueMakesProducersWaitWhenFull) {
  const ExampleOutput out = run_example("bounded_queue", "burst", true);
  ASSERT_EQ(out.status, 0) << out.text;
  const auto lines = lines_of(out.text);
  const BoundedRun run = check_bounded_queue(lines);
  EXPECT_EQ(run.produced.size(), 12u) << out.text;
  EXPECT_EQ(run.processed_by.size(), 12u) << out.text;
  EXPECT_EQ(run.max_length, 5u) << "the queue fills up to maxsize and never beyond";
  // The producers could not put everything at once: some puts came after consuming started.
  EXPECT_GT(run.last_produced, run.first_start) << out.text;
  // Twelve tasks, two consumers, 2 s each.
  EXPECT_EQ(lines.back(), "elapsed 12.00 seconds") << out.text;
}

// ---------------------------------------------------------------------------------------------
// gather simulations

TEST(ExamplesMore, LlmGatherTakesTheMaxNotTheSum) {
  const ExampleOutput out = run_example("llm_gather", "", true);
  ASSERT_EQ(out.status, 0) << out.text;
  EXPECT_EQ(out.text,
            "=== 串行执行 ===\n"
            "🤖 开始处理: 什么是 AI？\n"
            "✅ 处理完成: 什么是 AI？\n"
            "🗄️ 开始查询: 用户信息\n"
            "✅ 查询完成: 用户信息\n"
            "🌐 开始请求: 请求1\n"
            "✅ 请求完成: 请求1\n"
            "⏱️ 串行执行耗时: 6.00 秒\n"
            "['回答: 什么是 AI？ 的响应', '查询结果: 用户信息', '外部响应: 请求1']\n"
            "\n"
            "=== 并发执行 ===\n"
            "🤖 开始处理: 什么是 AI？\n"
            "🗄️ 开始查询: 用户信息\n"
            "🌐 开始请求: 请求1\n"
            "✅ 查询完成: 用户信息\n"
            "✅ 处理完成: 什么是 AI？\n"
            "✅ 请求完成: 请求1\n"
            "⏱️ 并发执行耗时: 3.00 秒\n"
            "['回答: 什么是 AI？ 的响应', '查询结果: 用户信息', '外部响应: 请求1']\n"
            "\n"
            "=== LangGraph 并发节点 ===\n"
            "🚀 开始并发处理...\n"
            "⏱️ 总耗时: 2.00 秒\n"
            "📝 最终结果: 综合回答:\n"
            "    - LLM 观点: LLM 回答: 关于 '什么是机器学习？' 的回答\n"
            "    - 搜索补充: 搜索结果: 找到关于 '什么是机器学习？' 的相关信息\n"
            "elapsed 11.00 seconds\n");
}

TEST(ExamplesMore, FetchUserDataGathersThreeSourcesInTwoSeconds) {
  const ExampleOutput out = run_example("fetch_user_data", "", true);
  ASSERT_EQ(out.status, 0) << out.text;
  EXPECT_EQ(
      out.text,
      "获取数据耗时: 2.00 秒\n"
      "数据: {'user_id': 'user123', 'basic_info': {'name': 'Alice', 'age': 25}, 'preferences': "
      "{'theme': 'dark', 'language': 'zh'}, 'history': {'last_login': '2024-01-01', 'login_count': "
      "42}}\n");
}

// ---------------------------------------------------------------------------------------------
// the low-level loop

TEST(ExamplesMore, LowLevelLoopFutureBridgeRunnerAndShield) {
  const ExampleOutput out = run_example("low_level_loop", "", true);
  ASSERT_EQ(out.status, 0) << out.text;
  EXPECT_EQ(out.text,
            "--- EventLoop: run_until_complete / close ---\n"
            "Hello\n"
            "World\n"
            "run_until_complete took 1.00 seconds\n"
            "loop closed: true\n"
            "--- create_future: a callback API bridged to co_await ---\n"
            "legacy_fetch('config') sent\n"
            "done callback: result is 'value of config'\n"
            "awaited: value of config\n"
            "future bridge took 0.50 seconds\n"
            "--- run_forever until stop() ---\n"
            "callback at +0.25: stopping the loop\n"
            "run_forever returned after 0.25 seconds\n"
            "--- Runner: several run() calls in one loop ---\n"
            "hello\n"
            "hello\n"
            "same loop for both runs: yes\n"
            "two runs took 2.00 seconds\n"
            "--- shield ---\n"
            "important work: started\n"
            "caller cancelled; the shielded work keeps running\n"
            "caller is cancelled: true (at +1.00)\n"
            "important work: finished\n"
            "shielded result: saved (at +2.00)\n");
}

}  // namespace
