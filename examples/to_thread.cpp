// to_thread: a blocking call run with to_thread, gathered with sleep(1): both take one
// second and they overlap, so main finishes after about one second, not two (the asyncio
// docs' to_thread example).
#include <corio/corio.hpp>
#include <corio/to_thread.hpp>  // not in corio.hpp yet

#include <chrono>
#include <cstdio>
#include <ctime>
#include <string>
#include <thread>

namespace {

std::string clock_now() {
  char text[16];
  const std::time_t now = std::time(nullptr);
  std::tm local{};
#ifdef _WIN32
  localtime_s(&local, &now);
#else
  localtime_r(&now, &local);  // called from a worker thread too: not std::localtime
#endif
  std::strftime(text, sizeof text, "%X", &local);
  return text;
}

void blocking_io() {
  std::printf("start blocking_io at %s\n", clock_now().c_str());
  // std::this_thread::sleep_for stands for any blocking IO-bound operation, such as file
  // operations.
  std::this_thread::sleep_for(std::chrono::seconds(1));
  std::printf("blocking_io complete at %s\n", clock_now().c_str());
}

// asyncio.sleep(1) is a coroutine; corio::sleep(1) is a leaf awaitable, which gather() does not
// take (it takes coroutines, tasks and futures), so it is wrapped in one.
corio::Coro<void> asyncio_sleep(double seconds) {
  co_await corio::sleep(seconds);
}

corio::Coro<void> amain() {
  std::printf("started main at %s\n", clock_now().c_str());
  co_await corio::gather(corio::to_thread(blocking_io), asyncio_sleep(1));
  std::printf("finished main at %s\n", clock_now().c_str());
}

}  // namespace

int main() {
  corio::Runner runner;
  const double start = runner.get_loop().time();
  runner.run(amain());
  std::printf("elapsed %0.2f seconds\n", runner.get_loop().time() - start);
}
