// timeout_reschedule: asyncio.timeout scopes (the asyncio docs' Timeout examples).
//  1. `async with asyncio.timeout(10)` around a long task: TimeoutError is caught after 10 s,
//     and the statement after the scope runs regardless.
//  2. `async with asyncio.timeout(None) as cm`: no deadline at first, then
//     cm.reschedule(loop.time() + 10) once it is known; afterwards cm.expired() says whether
//     the scope timed out.
// Usage: timeout_reschedule [task_seconds]   (default 3600: both scopes expire; 5: neither)
#include <corio/corio.hpp>

#include <cstdio>
#include <cstdlib>
#include <optional>

namespace {

double task_seconds = 3600;

corio::Coro<void> long_running_task() {
  co_await corio::sleep(task_seconds);
  std::printf("long_running_task finished after %0.2f seconds\n", task_seconds);
}

const char* when_text(const std::optional<double>& when, double origin, char* buffer,
                      std::size_t size) {
  if (!when) return "None";
  std::snprintf(buffer, size, "loop.time() + %0.2f", *when - origin);
  return buffer;
}

corio::Coro<void> scoped_deadline() {
  corio::EventLoop& loop = corio::get_running_loop();
  const double start = loop.time();
  try {
    co_await corio::timeout(10, [&]() -> corio::Coro<void> { co_await long_running_task(); });
  } catch (const corio::TimeoutError&) {
    std::printf("The long operation timed out, but we've handled it.\n");
  }
  std::printf("This statement will run regardless.\n");
  std::printf("timeout(10) scope left after %0.2f seconds\n", loop.time() - start);
}

corio::Coro<void> rescheduled_deadline() {
  corio::EventLoop& loop = corio::get_running_loop();
  const double start = loop.time();
  char buffer[64];
  // We do not know the timeout when starting, so we pass None.
  corio::Timeout cm = corio::timeout(corio::no_deadline);
  try {
    co_await cm.run([&](corio::Timeout& scope) -> corio::Coro<void> {
      std::printf("cm.when() = %s\n", when_text(scope.when(), start, buffer, sizeof buffer));
      // We know the timeout now, so we reschedule it.
      const double new_deadline = loop.time() + 10;
      scope.reschedule(new_deadline);
      std::printf("cm.when() = %s\n", when_text(scope.when(), start, buffer, sizeof buffer));
      co_await long_running_task();
    });
  } catch (const corio::TimeoutError&) {
  }
  if (cm.expired()) {
    std::printf("Looks like we haven't finished on time.\n");
  } else {
    std::printf("We finished on time.\n");
  }
  std::printf("timeout(None) scope left after %0.2f seconds\n", loop.time() - start);
}

corio::Coro<void> amain() {
  co_await scoped_deadline();
  co_await rescheduled_deadline();
}

}  // namespace

int main(int argc, char** argv) {
  if (argc > 1) task_seconds = std::atof(argv[1]);
  corio::Runner runner;
  const double start = runner.get_loop().time();
  runner.run(amain());
  std::printf("elapsed %0.2f seconds\n", runner.get_loop().time() - start);
}
