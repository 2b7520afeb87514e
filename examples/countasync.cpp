// countasync: three count() coroutines gathered; "One One One Two Two Two" in about 1 s,
// because the three sleeps overlap (the twin of the tutorial's countasync.py).
#include <corio/corio.hpp>

#include <cstdio>

corio::Coro<void> count() {
  std::printf("One\n");
  co_await corio::sleep(1);
  std::printf("Two\n");
}

corio::Coro<void> amain() {
  co_await corio::gather(count(), count(), count());
}

int main(int, char** argv) {
  corio::Runner runner;
  const double start = runner.get_loop().time();
  runner.run(amain());
  const double elapsed = runner.get_loop().time() - start;
  std::printf("%s executed in %0.2f seconds.\n", argv[0], elapsed);
}
