// The loop's notion of time: a monotonic nanosecond count.
// Never wall-clock time: deadlines must not move when the system clock is set.
#pragma once

#include <chrono>
#include <cmath>
#include <cstdint>
#include <limits>

namespace corio::core {

using Nanos = std::int64_t;

inline constexpr Nanos kNanosPerSecond = 1'000'000'000;
inline constexpr Nanos kNoDeadline = std::numeric_limits<Nanos>::max();

inline Nanos monotonic_now() noexcept {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

inline double to_seconds(Nanos n) noexcept {
  return static_cast<double>(n) / 1e9;
}

// Seconds to nanoseconds, saturating: an infinite or huge delay means "no deadline",
// and NaN is treated as 0 (fire as soon as possible) rather than as undefined behaviour.
inline Nanos from_seconds(double s) noexcept {
  if (std::isnan(s)) return 0;
  const double ns = std::ceil(s * 1e9);  // round up: a timer must never fire early
  if (ns >= 9.2e18) return kNoDeadline;
  if (ns <= -9.2e18) return -kNoDeadline;
  return static_cast<Nanos>(ns);
}

// Adds without overflowing into the past.
inline Nanos saturating_add(Nanos a, Nanos b) noexcept {
  Nanos r;
  if (__builtin_add_overflow(a, b, &r)) return b > 0 ? kNoDeadline : -kNoDeadline;
  return r;
}

}  // namespace corio::core
