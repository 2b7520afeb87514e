// The timer heap orders by deadline, then by arming order, and erases from anywhere.
#include "corio/core/timer_heap.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <vector>

namespace corio::core {
namespace {

TEST(TimerHeap, PopsInDeadlineOrderAndTiesInArmingOrder) {
  std::vector<TimerNode> nodes(6);
  const Nanos deadlines[] = {50, 10, 30, 10, 50, 20};
  TimerHeap heap;
  for (int i = 0; i < 6; ++i) {
    nodes[i].deadline = deadlines[i];
    heap.push(&nodes[i]);
  }
  std::vector<TimerNode*> order;
  while (TimerNode* n = heap.pop()) order.push_back(n);
  const std::vector<TimerNode*> expected = {&nodes[1], &nodes[3], &nodes[5],
                                            &nodes[2], &nodes[0], &nodes[4]};
  EXPECT_EQ(order, expected);
  for (auto& n : nodes) EXPECT_FALSE(n.armed());
}

TEST(TimerHeap, EraseFromAnywhereKeepsOrder) {
  std::mt19937 rng(7);
  std::vector<TimerNode> nodes(500);
  TimerHeap heap;
  for (auto& n : nodes) {
    n.deadline = static_cast<Nanos>(rng() % 1000);
    heap.push(&n);
  }
  std::vector<bool> erased(nodes.size());
  for (std::size_t i = 0; i < nodes.size(); i += 3) {
    heap.erase(&nodes[i]);
    erased[i] = true;
    EXPECT_FALSE(nodes[i].armed());
  }
  heap.erase(&nodes[0]);  // erasing twice is harmless
  std::size_t expected_size = 0;
  for (bool e : erased) expected_size += e ? 0 : 1;
  EXPECT_EQ(heap.size(), expected_size);
  Nanos last = -1;
  std::uint64_t last_seq = 0;
  while (TimerNode* n = heap.pop()) {
    const auto index = static_cast<std::size_t>(n - nodes.data());
    EXPECT_FALSE(erased[index]);
    EXPECT_TRUE(n->deadline > last || (n->deadline == last && n->sequence > last_seq));
    last = n->deadline;
    last_seq = n->sequence;
  }
}

TEST(TimerHeap, RearmingMovesTheNode) {
  TimerNode a, b;
  a.deadline = 5;
  b.deadline = 10;
  TimerHeap heap;
  heap.push(&a);
  heap.push(&b);
  a.deadline = 20;
  heap.push(&a);  // re-arm with a later deadline
  EXPECT_EQ(heap.size(), 2u);
  EXPECT_EQ(heap.pop(), &b);
  EXPECT_EQ(heap.pop(), &a);
}

}  // namespace
}  // namespace corio::core
