// wait_for_eternity: wait_for(eternity(), 1.0) gives up after one second with TimeoutError
// and eternity() is cancelled, so "yay!" never prints (the asyncio docs' wait_for example).
#include <corio/corio.hpp>

#include <cstdio>

corio::Coro<void> eternity() {
  // Sleep for one hour
  co_await corio::sleep(3600);
  std::printf("yay!\n");
}

corio::Coro<void> amain() {
  // Wait for at most 1 second
  try {
    co_await corio::wait_for(eternity(), 1.0);
  } catch (const corio::TimeoutError&) {
    std::printf("timeout!\n");
  }
}

int main() {
  corio::Runner runner;
  const double start = runner.get_loop().time();
  runner.run(amain());
  std::printf("elapsed %0.2f seconds\n", runner.get_loop().time() - start);
}
