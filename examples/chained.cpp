// chained: part1(n) -> part2(n, part1's result) chained per n, the chains gathered, so the
// program takes as long as its slowest chain, not the sum (the twin of the tutorial's
// chained.py). Usage: chained [n ...]   (no arguments: 1 2 3)
// Sleeps are drawn with std::mt19937 seeded 444 and our own randint, reproducibly.
#include <corio/corio.hpp>

#include <cstdint>
#include <cstdio>
#include <exception>
#include <random>
#include <string>
#include <vector>

#include "seeded_random.hpp"

namespace {

using examples::randint;

corio::Coro<std::string> part1(int n) {
  const int i = randint(0, 10);
  std::printf("part1(%d) sleeping for %d seconds.\n", n, i);
  co_await corio::sleep(i);
  std::string result = "result" + std::to_string(n) + "-1";
  std::printf("Returning part1(%d) == %s.\n", n, result.c_str());
  co_return result;
}

corio::Coro<std::string> part2(int n, std::string arg) {
  const int i = randint(0, 10);
  // Python prints the tuple (n, arg): part2(1, 'result1-1').
  std::printf("part2(%d, '%s') sleeping for %d seconds.\n", n, arg.c_str(), i);
  co_await corio::sleep(i);
  std::string result = "result" + std::to_string(n) + "-2 derived from " + arg;
  std::printf("Returning part2(%d, '%s') == %s.\n", n, arg.c_str(), result.c_str());
  co_return result;
}

corio::Coro<void> chain(int n) {
  corio::EventLoop& loop = corio::get_running_loop();
  const double start = loop.time();
  std::string p1 = co_await part1(n);
  std::string p2 = co_await part2(n, p1);
  const double end = loop.time() - start;
  std::printf("-->Chained result%d => %s (took %0.2f seconds).\n", n, p2.c_str(), end);
}

corio::Coro<void> amain(std::vector<int> args) {
  std::vector<corio::Coro<void>> chains;
  for (int n : args) chains.push_back(chain(n));
  co_await corio::gather(std::move(chains));
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<int> args;
  if (argc == 1) {
    args = {1, 2, 3};
  } else {
    for (int k = 1; k < argc; ++k) {
      try {
        std::size_t used = 0;
        args.push_back(std::stoi(argv[k], &used));
        if (argv[k][used] != '\0') throw std::invalid_argument(argv[k]);
      } catch (const std::exception&) {
        std::fprintf(stderr, "ValueError: invalid literal for int() with base 10: '%s'\n", argv[k]);
        return 1;
      }
    }
  }
  corio::Runner runner;
  const double start = runner.get_loop().time();
  runner.run(amain(std::move(args)));
  const double end = runner.get_loop().time() - start;
  std::printf("Program finished in %0.2f seconds.\n", end);
}
