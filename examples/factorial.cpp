// factorial: three factorial computations gathered; their lines interleave because each
// sleeps between steps, and the results come back in argument order: [2, 6, 24].
#include <corio/corio.hpp>

#include <cstdio>
#include <string>

corio::Coro<long> factorial(std::string name, int number) {
  long f = 1;
  for (int i = 2; i <= number; ++i) {
    std::printf("Task %s: Compute factorial(%d), currently i=%d...\n", name.c_str(), number, i);
    co_await corio::sleep(1);
    f *= i;
  }
  std::printf("Task %s: factorial(%d) = %ld\n", name.c_str(), number, f);
  co_return f;
}

corio::Coro<void> amain() {
  // Schedule three calls *concurrently*:
  auto [a, b, c] = co_await corio::gather(factorial("A", 2), factorial("B", 3), factorial("C", 4));
  std::printf("[%ld, %ld, %ld]\n", a, b, c);
}

int main() {
  corio::Runner runner;
  const double start = runner.get_loop().time();
  runner.run(amain());
  std::printf("elapsed %0.2f seconds\n", runner.get_loop().time() - start);
}
