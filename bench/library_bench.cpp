// Micro-benchmarks of the asyncio library layer (issue 3), each with allocations per op.
// Targets: queue put/get ping-pong between two tasks <= 40 ns per item, uncontended Lock
// acquire/release <= 20 ns, TaskGroup spawn+join <= 150 ns per task, timeout scope
// enter/exit without expiry <= 60 ns. Stream reads answered from the buffer (issue 4) allocate
// nothing but a returned string too long for the small-string buffer.
#include <benchmark/benchmark.h>
#include <corio/corio.hpp>
#include <corio/locks.hpp>
#include <corio/queues.hpp>
#include <corio/streams.hpp>

#include <string>

#include "alloc_counter.hpp"

namespace {

using corio::Coro;

Coro<int> trivial() {
  co_return 1;
}

void report_allocations(benchmark::State& state, const corio::bench::AllocationScope& scope) {
  state.counters["allocs/op"] =
      benchmark::Counter(static_cast<double>(scope.count()), benchmark::Counter::kAvgIterations);
}

// One producer and one consumer task hand items back and forth through two queues; each
// iteration moves two items (one each way) and both tasks suspend in get() every time.
void BM_QueuePingPong(benchmark::State& state) {
  corio::Runner runner;
  auto body = [](benchmark::State& s) -> Coro<void> {
    corio::Queue<int> to_consumer, to_producer;
    auto consumer = [](corio::Queue<int>& in, corio::Queue<int>& out) -> Coro<void> {
      for (;;) {
        const int v = co_await in.get();
        if (v < 0) co_return;
        out.put_nowait(v);
      }
    };
    corio::Task<void> c = corio::create_task(consumer(to_consumer, to_producer));
    corio::bench::AllocationScope scope;
    int i = 0;
    for (auto _ : s) {
      to_consumer.put_nowait(i++);
      benchmark::DoNotOptimize(co_await to_producer.get());
    }
    report_allocations(s, scope);
    // Two hand-overs per iteration: producer -> consumer and back.
    s.counters["ns/item"] =
        benchmark::Counter(static_cast<double>(s.iterations() * 2),
                           benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
    to_consumer.put_nowait(-1);
    co_await c;
  };
  runner.run(body(state));
}
BENCHMARK(BM_QueuePingPong);

// put_nowait + get on a queue that has items: no suspension (the per-item floor).
void BM_QueuePutGetNoWait(benchmark::State& state) {
  corio::Runner runner;
  auto body = [](benchmark::State& s) -> Coro<void> {
    corio::Queue<int> q;
    corio::bench::AllocationScope scope;
    for (auto _ : s) {
      q.put_nowait(1);
      benchmark::DoNotOptimize(co_await q.get());
    }
    report_allocations(s, scope);
  };
  runner.run(body(state));
}
BENCHMARK(BM_QueuePutGetNoWait);

void BM_LockUncontended(benchmark::State& state) {
  corio::Runner runner;
  auto body = [](benchmark::State& s) -> Coro<void> {
    corio::Lock lock;
    corio::bench::AllocationScope scope;
    for (auto _ : s) {
      co_await lock.acquire();
      lock.release();
    }
    report_allocations(s, scope);
  };
  runner.run(body(state));
}
BENCHMARK(BM_LockUncontended);

// Timeout scope entered and left without expiring: arms/disarms the node in the Timeout.
void BM_TimeoutScopeNoExpiry(benchmark::State& state) {
  corio::Runner runner;
  auto body = [](benchmark::State& s) -> Coro<void> {
    corio::bench::AllocationScope scope;
    for (auto _ : s) {
      corio::Timeout cm = corio::timeout(10.0);
      cm.enter();
      cm.exit(nullptr);
    }
    report_allocations(s, scope);
    co_return;
  };
  runner.run(body(state));
}
BENCHMARK(BM_TimeoutScopeNoExpiry);

// TaskGroup spawning N trivial children and joining them; time per child.
void BM_TaskGroupSpawnJoin(benchmark::State& state) {
  corio::Runner runner;
  auto body = [](benchmark::State& s) -> Coro<void> {
    const std::int64_t n = s.range(0);
    corio::bench::AllocationScope scope;
    for (auto _ : s) {
      co_await corio::TaskGroup::run([n](corio::TaskGroup& tg) -> Coro<void> {
        for (std::int64_t i = 0; i < n; ++i) tg.create_task(trivial());
        co_return;
      });
    }
    s.counters["ns/task"] =
        benchmark::Counter(static_cast<double>(s.iterations() * n),
                           benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
    report_allocations(s, scope);
  };
  runner.run(body(state));
}
BENCHMARK(BM_TaskGroupSpawnJoin)->Arg(100)->Arg(10000);

// readuntil("\r\n\r\n") of pipelined HTTP requests already in a hand-fed reader's buffer:
// the fast path (no suspension). The request head (~40 bytes) is the one allocation.
void BM_StreamReaduntilBuffered(benchmark::State& state) {
  corio::Runner runner;
  auto body = [](benchmark::State& s) -> Coro<void> {
    const std::string request = "GET /plaintext HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
    std::string batch;
    for (int i = 0; i < 16; ++i) batch += request;
    corio::StreamReader reader;
    corio::bench::AllocationScope scope;
    int left = 0;
    for (auto _ : s) {
      if (left == 0) {
        reader.feed_data(batch);
        left = 16;
      }
      --left;
      benchmark::DoNotOptimize(co_await reader.readuntil("\r\n\r\n"));
    }
    report_allocations(s, scope);
  };
  runner.run(body(state));
}
BENCHMARK(BM_StreamReaduntilBuffered);

// readline() of short lines (they fit std::string's small buffer): no allocation at all.
void BM_StreamReadlineBufferedShort(benchmark::State& state) {
  corio::Runner runner;
  auto body = [](benchmark::State& s) -> Coro<void> {
    std::string batch;
    for (int i = 0; i < 64; ++i) batch += "line " + std::to_string(i % 10) + "\n";
    corio::StreamReader reader;
    corio::bench::AllocationScope scope;
    int left = 0;
    for (auto _ : s) {
      if (left == 0) {
        reader.feed_data(batch);
        left = 64;
      }
      --left;
      benchmark::DoNotOptimize(co_await reader.readline());
    }
    report_allocations(s, scope);
  };
  runner.run(body(state));
}
BENCHMARK(BM_StreamReadlineBufferedShort);

// The socket path: 16 pipelined requests are written to one end of a socketpair, then read
// with readuntil from a StreamReader on the other end; the first read receives them all
// (a receive that completes at once), the 15 others come from the buffer. Per request.
void BM_StreamReaduntilSocket(benchmark::State& state) {
  corio::Runner runner;
  auto body = [](benchmark::State& s) -> Coro<void> {
    const std::string request = "GET /plaintext HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
    std::string batch;
    for (int i = 0; i < 16; ++i) batch += request;
    auto [a, b] = corio::Socket::pair();
    auto [reader, writer] = corio::open_stream(std::move(a));
    corio::bench::AllocationScope scope;
    int left = 0;
    for (auto _ : s) {
      if (left == 0) {
        co_await corio::sock_sendall(b, batch);
        left = 16;
      }
      --left;
      benchmark::DoNotOptimize(co_await reader.readuntil("\r\n\r\n"));
    }
    report_allocations(s, scope);
  };
  runner.run(body(state));
}
BENCHMARK(BM_StreamReaduntilSocket);

// readinto of 64-byte messages from a StreamReader on a socketpair, each sent by the peer
// just before: a receive per message into the reader's buffer, copied into the caller's
// span. The allocation-free twin of read(n), whose std::string result allocates per message.
template <bool kInto>
void BM_StreamReadSocket64(benchmark::State& state) {
  corio::Runner runner;
  auto body = [](benchmark::State& s) -> Coro<void> {
    const std::string message(64, 'm');
    auto [a, b] = corio::Socket::pair();
    auto [reader, writer] = corio::open_stream(std::move(a));
    char buffer[16 * 1024];
    corio::bench::AllocationScope scope;
    for (auto _ : s) {
      co_await corio::sock_sendall(b, message);
      if constexpr (kInto) {
        benchmark::DoNotOptimize(co_await reader.readinto(buffer));
      } else {
        benchmark::DoNotOptimize(co_await reader.read(sizeof buffer));
      }
    }
    report_allocations(s, scope);
  };
  runner.run(body(state));
}
BENCHMARK(BM_StreamReadSocket64<true>)->Name("BM_StreamReadintoSocket64");
BENCHMARK(BM_StreamReadSocket64<false>)->Name("BM_StreamReadSocket64");

}  // namespace

BENCHMARK_MAIN();
