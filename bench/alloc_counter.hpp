// Counts heap allocations made by this process (operator new is replaced in
// alloc_counter.cpp), so benchmarks can report allocations per operation.
// It must never be linked into the library or the tests: it replaces a global operator.
#pragma once

#include <atomic>
#include <cstdint>

namespace corio::bench {

std::uint64_t allocation_count() noexcept;

// Allocations made between construction and now.
class AllocationScope {
 public:
  AllocationScope() noexcept : start_(allocation_count()) {}
  std::uint64_t count() const noexcept { return allocation_count() - start_; }

 private:
  std::uint64_t start_;
};

}  // namespace corio::bench
