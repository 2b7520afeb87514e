// run_in_executor: a blocking call (a stand-in for requests.get) handed to the loop's default
// thread pool with run_in_executor(loop, nullptr, fn), as seed 004's "alternative_example".
// While the call blocks its worker thread for 2 s, the loop keeps running a heartbeat
// coroutine, and the whole program takes about 2 s, not 4.
#include <corio/corio.hpp>
#include <corio/executor.hpp>  // not in corio.hpp yet

#include <chrono>
#include <cstdio>
#include <string>
#include <thread>

namespace {

// A synchronous HTTP client: blocks its thread for the length of the request.
std::string blocking_get(const std::string& url) {
  std::this_thread::sleep_for(std::chrono::seconds(2));  // the server's /delay/2
  return "{\"url\": \"" + url + "\", \"delay\": 2}";
}

corio::Coro<std::string> alternative_example() {
  corio::EventLoop& loop = corio::get_running_loop();
  // Run the synchronous call in the thread pool.
  std::string response = co_await corio::run_in_executor(
      loop, nullptr, [] { return blocking_get("https://httpbin.org/delay/2"); });
  std::printf("response: %s\n", response.c_str());
  co_return response;
}

// Proves the loop is not blocked: it keeps ticking while the request is in flight.
corio::Coro<void> heartbeat() {
  for (int n = 1; n <= 4; ++n) {
    co_await corio::sleep(0.5);
    std::printf("tick %d: the loop is still responsive\n", n);
  }
}

corio::Coro<void> amain() {
  co_await corio::gather(alternative_example(), heartbeat());
}

}  // namespace

int main() {
  corio::Runner runner;
  const double start = runner.get_loop().time();
  runner.run(amain());
  std::printf("elapsed %0.2f seconds\n", runner.get_loop().time() - start);
}
