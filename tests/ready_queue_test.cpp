// The ready queue is a FIFO over a ring that grows, and can move a run of items to the back.
#include "corio/core/ready_queue.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <vector>

namespace corio::core {
namespace {

ReadyItem item(std::uintptr_t n) {
  return {nullptr, reinterpret_cast<void*>(n)};
}

std::vector<std::uintptr_t> drain(ReadyQueue& queue) {
  std::vector<std::uintptr_t> out;
  while (!queue.empty()) out.push_back(reinterpret_cast<std::uintptr_t>(queue.pop().arg));
  return out;
}

TEST(ReadyQueue, KeepsFifoOrderAcrossGrowthAndWrapAround) {
  ReadyQueue queue;
  std::uintptr_t next_in = 0, next_out = 0;
  for (int round = 0; round < 5; ++round) {  // the head walks round the ring as it grows
    for (int i = 0; i < 300; ++i) queue.push(item(next_in++));
    for (int i = 0; i < 250; ++i) {
      ASSERT_EQ(reinterpret_cast<std::uintptr_t>(queue.pop().arg), next_out++);
    }
  }
  EXPECT_EQ(queue.size(), next_in - next_out);
}

TEST(ReadyQueue, MoveToBackKeepsTheOrderWithinEachPart) {
  ReadyQueue queue;
  for (int i = 0; i < 250; ++i) {  // the head near the end of the ring: the items wrap round
    queue.push(item(0));
    queue.pop();
  }
  for (std::uintptr_t n : {1, 2, 10, 11, 12, 20, 21}) queue.push(item(n));
  queue.move_to_back(2, 3);  // 10 11 12 go behind 20 21
  EXPECT_EQ(drain(queue), (std::vector<std::uintptr_t>{1, 2, 20, 21, 10, 11, 12}));
}

TEST(ReadyQueue, MoveToBackOfNothingOrOfTheTailChangesNothing) {
  ReadyQueue queue;
  for (std::uintptr_t n : {1, 2, 3}) queue.push(item(n));
  queue.move_to_back(1, 0);
  queue.move_to_back(1, 2);  // already at the back
  queue.move_to_back(3, 1);  // past the end
  EXPECT_EQ(drain(queue), (std::vector<std::uintptr_t>{1, 2, 3}));
}

}  // namespace
}  // namespace corio::core
