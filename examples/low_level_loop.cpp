// low_level_loop: the low-level API under asyncio.run (seeds 000 and 002).
//  1. An EventLoop made directly: run_until_complete(hello_world()), then close().
//  2. loop.create_future(): a callback-style API (its "reply" comes from call_later) bridged to
//     co_await; add_done_callback sees the result too.
//  3. run_forever() until a callback calls stop().
//  4. Runner: several run() calls on one loop.
//  5. shield(): the task awaiting the shielded work is cancelled; the work runs on.
// The directly made loops honour CORIO_VIRTUAL_TIME=1 as Runner does.
#include <corio/corio.hpp>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>

namespace {

bool virtual_time_requested() {
  const char* value = std::getenv("CORIO_VIRTUAL_TIME");
  return value != nullptr && *value != '\0' && std::strcmp(value, "0") != 0;
}

corio::EventLoop::Options loop_options() {
  corio::EventLoop::Options options;
  options.virtual_time = virtual_time_requested();
  return options;
}

corio::Coro<void> hello_world() {
  std::printf("Hello\n");
  co_await corio::sleep(1);  // a non-blocking wait
  std::printf("World\n");
}

void run_until_complete_then_close() {
  std::printf("--- EventLoop: run_until_complete / close ---\n");
  corio::EventLoop loop(loop_options());
  const double start = loop.time();
  loop.run_until_complete(hello_world());
  std::printf("run_until_complete took %0.2f seconds\n", loop.time() - start);
  loop.close();
  std::printf("loop closed: %s\n", loop.is_closed() ? "true" : "false");
}

// A callback-based API, as an old library would offer: the reply arrives 0.5 s later.
void legacy_fetch(corio::EventLoop& loop, std::string key,
                  std::function<void(std::string)> on_reply) {
  std::printf("legacy_fetch('%s') sent\n", key.c_str());
  loop.call_later(0.5, [key, on_reply = std::move(on_reply)] { on_reply("value of " + key); });
}

// The bridge: a Future the callback completes, and the coroutine awaits.
corio::Coro<std::string> fetch(std::string key) {
  corio::EventLoop& loop = corio::get_running_loop();
  corio::Future<std::string> future = loop.create_future<std::string>();
  legacy_fetch(loop, key, [future](std::string value) mutable {
    if (!future.done()) future.set_result(std::move(value));  // the awaiting task may be gone
  });
  future.add_done_callback([](corio::Future<std::string> done) {
    std::printf("done callback: result is '%s'\n", done.result().c_str());
  });
  co_return co_await future;
}

void future_bridge() {
  std::printf("--- create_future: a callback API bridged to co_await ---\n");
  corio::EventLoop loop(loop_options());
  const double start = loop.time();
  const std::string value = loop.run_until_complete(fetch("config"));
  std::printf("awaited: %s\n", value.c_str());
  std::printf("future bridge took %0.2f seconds\n", loop.time() - start);
  loop.close();
}

void run_forever_until_stop() {
  std::printf("--- run_forever until stop() ---\n");
  corio::EventLoop loop(loop_options());
  const double start = loop.time();
  loop.call_later(0.25, [&loop, start] {
    std::printf("callback at +%0.2f: stopping the loop\n", loop.time() - start);
    loop.stop();
  });
  loop.run_forever();
  std::printf("run_forever returned after %0.2f seconds\n", loop.time() - start);
  loop.close();
}

corio::EventLoop* seen_loop = nullptr;

corio::Coro<bool> runner_main() {
  co_await corio::sleep(1);
  std::printf("hello\n");
  corio::EventLoop* loop = &corio::get_running_loop();
  const bool same = seen_loop == nullptr || seen_loop == loop;
  seen_loop = loop;
  co_return same;
}

void runner_runs() {
  std::printf("--- Runner: several run() calls in one loop ---\n");
  corio::Runner runner;
  const double start = runner.get_loop().time();
  bool same = runner.run(runner_main());
  same = runner.run(runner_main()) && same;
  std::printf("same loop for both runs: %s\n", same ? "yes" : "no");
  std::printf("two runs took %0.2f seconds\n", runner.get_loop().time() - start);
}

corio::Coro<std::string> important_work() {
  std::printf("important work: started\n");
  co_await corio::sleep(2);
  std::printf("important work: finished\n");
  co_return "saved";
}

corio::Coro<void> shield_example() {
  corio::EventLoop& loop = corio::get_running_loop();
  const double start = loop.time();
  corio::Task<std::string> work = corio::create_task(important_work());
  corio::Task<void> caller =
      corio::create_task([](corio::Task<std::string> inner) -> corio::Coro<void> {
        try {
          co_await corio::shield(inner);
        } catch (const corio::CancelledError&) {
          std::printf("caller cancelled; the shielded work keeps running\n");
          throw;
        }
      }(work));
  co_await corio::sleep(1);
  caller.cancel();
  try {
    co_await caller;
  } catch (const corio::CancelledError&) {
    std::printf("caller is cancelled: %s (at +%0.2f)\n", caller.cancelled() ? "true" : "false",
                loop.time() - start);
  }
  const std::string result = co_await work;
  std::printf("shielded result: %s (at +%0.2f)\n", result.c_str(), loop.time() - start);
}

void shield_demo() {
  std::printf("--- shield ---\n");
  corio::run(shield_example());
}

}  // namespace

int main() {
  run_until_complete_then_close();
  future_bridge();
  run_forever_until_stop();
  runner_runs();
  shield_demo();
}
