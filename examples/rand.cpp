// rand: three makerandom() coroutines gathered. Each draws integers in [0, 10] until one beats
// its threshold, sleeping idx + 1 seconds between draws; the results come back unpacked in
// argument order (the twin of the tutorial's rand.py, ANSI colours included).
// The draws use std::mt19937 seeded 444 and our own randint, so a run is reproducible on every
// platform (the numbers differ from Python's, the shape does not).
#include <corio/corio.hpp>

#include <cstdint>
#include <cstdio>
#include <random>

#include "seeded_random.hpp"

namespace {

using examples::randint;

// ANSI colours: end of colour, cyan, red, magenta.
const char* const c[] = {"\033[0m", "\033[36m", "\033[91m", "\033[35m"};

corio::Coro<int> makerandom(int idx, int threshold = 6) {
  std::printf("%sInitiated makerandom(%d).\n", c[idx + 1], idx);
  int i = randint(0, 10);
  while (i <= threshold) {
    std::printf("%smakerandom(%d) == %d too low; retrying.\n", c[idx + 1], idx, i);
    co_await corio::sleep(idx + 1);
    i = randint(0, 10);
  }
  std::printf("%s---> Finished: makerandom(%d) == %d%s\n", c[idx + 1], idx, i, c[0]);
  co_return i;
}

corio::Coro<std::tuple<int, int, int>> amain() {
  // makerandom(i, 10 - i - 1) for i in range(3), run concurrently.
  co_return co_await corio::gather(makerandom(0, 9), makerandom(1, 8), makerandom(2, 7));
}

}  // namespace

int main() {
  corio::Runner runner;
  const double start = runner.get_loop().time();
  const auto [r1, r2, r3] = runner.run(amain());
  const double elapsed = runner.get_loop().time() - start;
  std::printf("\n");
  std::printf("r1: %d, r2: %d, r3: %d\n", r1, r2, r3);
  std::printf("elapsed %0.2f seconds\n", elapsed);
}
