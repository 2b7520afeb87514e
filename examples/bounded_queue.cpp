// bounded_queue: seed 004's producer/consumer over Queue(maxsize=5). Two producers put three
// items each, a second apart; two consumers take items with wait_for(queue.get(), 5), work
// 2 s on each, and leave when no item came for 5 s (TimeoutError). main waits for the
// producers, then queue.join(), then cancels the consumers: 6 s in all.
// Usage: bounded_queue [cancel|timeout|burst]
//   cancel  (default) the seed's program.
//   timeout main awaits the consumers instead of cancelling them: each leaves through its
//           wait_for TimeoutError 5 s after the queue ran dry (11 s in all).
//   burst   each producer puts six items without pausing, so the queue fills up to maxsize
//           and put() waits for room; each put line shows the queue's length (12 s in all).
#include <corio/corio.hpp>

#include <cstdio>
#include <string>
#include <vector>

namespace {

std::string mode = "cancel";

corio::Coro<void> producer(corio::Queue<std::string>& queue, std::string name) {
  const bool burst = mode == "burst";
  for (int i = 0; i < (burst ? 6 : 3); ++i) {
    std::string task = name + "-任务" + std::to_string(i + 1);
    co_await queue.put(task);
    if (burst) {
      std::printf("🏭 %s 生产了: %s (队列 %zu/%zu)\n", name.c_str(), task.c_str(), queue.qsize(),
                  queue.maxsize());
    } else {
      std::printf("🏭 %s 生产了: %s\n", name.c_str(), task.c_str());
      co_await corio::sleep(1);
    }
  }
}

corio::Coro<void> consumer(corio::Queue<std::string>& queue, std::string name) {
  while (true) {
    std::string task;
    try {
      task = co_await corio::wait_for(queue.get(), 5);
    } catch (const corio::TimeoutError&) {
      std::printf("⏰ %s 超时退出\n", name.c_str());
      break;
    }
    std::printf("🔧 %s 开始处理: %s\n", name.c_str(), task.c_str());
    co_await corio::sleep(2);  // the processing time
    std::printf("✅ %s 完成了: %s\n", name.c_str(), task.c_str());
    queue.task_done();
  }
}

corio::Coro<void> producer_consumer_example() {
  corio::Queue<std::string> queue(5);

  // Start the producers and the consumers.
  std::vector<corio::Task<void>> producers;
  producers.push_back(corio::create_task(producer(queue, "生产者1")));
  producers.push_back(corio::create_task(producer(queue, "生产者2")));
  std::vector<corio::Task<void>> consumers;
  consumers.push_back(corio::create_task(consumer(queue, "消费者1")));
  consumers.push_back(corio::create_task(consumer(queue, "消费者2")));

  // Wait for the producers.
  co_await corio::gather(std::move(producers));
  // Wait until every item in the queue has been processed.
  co_await queue.join();

  if (mode == "timeout") {
    co_await corio::gather(std::move(consumers));  // they leave on their own
  } else {
    for (auto& c : consumers) c.cancel();  // Cancel the consumers.
    // C++ only: they refer to the queue, which dies with this frame, so let them finish
    // cancelling first (Python's garbage collector keeps the queue alive meanwhile).
    co_await corio::gather(corio::return_exceptions, std::move(consumers));
  }
  std::printf("🎉 所有任务完成!\n");
}

}  // namespace

int main(int argc, char** argv) {
  if (argc > 1) mode = argv[1];
  if (mode != "cancel" && mode != "timeout" && mode != "burst") {
    std::fprintf(stderr, "usage: %s [cancel|timeout|burst]\n", argv[0]);
    return 2;
  }
  corio::Runner runner;
  const double start = runner.get_loop().time();
  runner.run(producer_consumer_example());
  std::printf("elapsed %0.2f seconds\n", runner.get_loop().time() - start);
}
