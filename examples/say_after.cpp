// say_after: awaiting coroutines one after the other takes 1 + 2 = 3 s; wrapping them in
// tasks first lets them run concurrently, 2 s (the asyncio docs' "Coroutines" examples); a
// TaskGroup does the same and waits for its children when its scope ends, also 2 s.
// Usage: say_after [sequential|tasks|taskgroup]
#include <corio/corio.hpp>

#include <cstdio>
#include <ctime>
#include <string>

corio::Coro<void> say_after(double delay, std::string what) {
  co_await corio::sleep(delay);
  std::printf("%s\n", what.c_str());
}

static std::string clock_now() {
  char text[16];
  const std::time_t now = std::time(nullptr);
  std::strftime(text, sizeof text, "%X", std::localtime(&now));
  return text;
}

corio::Coro<void> sequential() {
  std::printf("started at %s\n", clock_now().c_str());
  co_await say_after(1, "hello");
  co_await say_after(2, "world");
  std::printf("finished at %s\n", clock_now().c_str());
}

corio::Coro<void> with_tasks() {
  corio::Task<void> task1 = corio::create_task(say_after(1, "hello"));
  corio::Task<void> task2 = corio::create_task(say_after(2, "world"));
  std::printf("started at %s\n", clock_now().c_str());
  // Wait until both tasks are completed (should take around 2 seconds.)
  co_await task1;
  co_await task2;
  std::printf("finished at %s\n", clock_now().c_str());
}

corio::Coro<void> with_taskgroup() {
  // async with asyncio.TaskGroup() as tg: the body runs inline; the scope ends once every
  // child is done.
  co_await corio::TaskGroup::run([](corio::TaskGroup& tg) -> corio::Coro<void> {
    tg.create_task(say_after(1, "hello"));
    tg.create_task(say_after(2, "world"));
    std::printf("started at %s\n", clock_now().c_str());
    co_return;
  });
  // The await is implicit when the scope exits.
  std::printf("finished at %s\n", clock_now().c_str());
}

int main(int argc, char** argv) {
  const std::string mode = argc > 1 ? argv[1] : "sequential";
  corio::Runner runner;
  const double start = runner.get_loop().time();
  if (mode == "tasks") {
    runner.run(with_tasks());
  } else if (mode == "taskgroup") {
    runner.run(with_taskgroup());
  } else if (mode == "sequential") {
    runner.run(sequential());
  } else {
    std::fprintf(stderr, "usage: %s [sequential|tasks|taskgroup]\n", argv[0]);
    return 2;
  }
  std::printf("elapsed %0.2f seconds\n", runner.get_loop().time() - start);
}
