// The examples' twin of `random.seed(444)` + `random.randint(a, b)`: a fixed-seed Mersenne
// Twister and rejection sampling, so output is the same on every platform and standard library
// (std::uniform_int_distribution is not specified bit for bit). Numbers differ from Python's.
// It must never be used for anything but reproducible example output.
#pragma once

#include <cstdint>
#include <random>

namespace examples {

inline std::mt19937& rng() {
  static std::mt19937 generator(444);
  return generator;
}

// Uniform in [a, b].
inline int randint(int a, int b) {
  const std::uint32_t span = static_cast<std::uint32_t>(b - a) + 1;
  const std::uint32_t limit =
      static_cast<std::uint32_t>((std::uint64_t{1} << 32) / span * span - 1);
  std::uint32_t x;
  do {
    x = rng()();
  } while (x > limit);
  return a + static_cast<int>(x % span);
}

}  // namespace examples
