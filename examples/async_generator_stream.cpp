// async_generator_stream: async generators and `async for` (seeds 000 and 004).
//  1. async_generator() yields 0..4, sleeping 0.5 s before each value; `async for` prints them.
//  2. `async with asyncio.timeout(5)` around a 3 s sleep: completes within the timeout.
//  3. stream_responses(prompts) yields one processed prompt every 0.5 s (an LLM stream).
//  4. aadd(): LangChain's fold of any async iterable with `+`: the concatenated stream, and
//     the sum of async_generator()'s values.
#include <corio/async_generator.hpp>  // not in corio.hpp yet
#include <corio/corio.hpp>

#include <cstdio>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace {

corio::AsyncGenerator<int> async_generator() {
  for (int i = 0; i < 5; ++i) {
    co_await corio::sleep(0.5);
    co_yield i;
  }
}

corio::AsyncGenerator<std::string> stream_responses(std::vector<std::string> prompts) {
  for (const std::string& prompt : prompts) {
    co_await corio::sleep(0.5);  // the processing delay
    co_yield "处理完成: " + prompt;
  }
}

// async def aadd(addables: AsyncIterable[Addable]) -> Optional[Addable]: adds a sequence of
// addable objects together, asynchronously; nullopt (None) for an empty sequence.
template <class Iterable>
requires corio::AsyncIterable<Iterable> corio::Coro<std::optional<corio::AsyncIterValue<Iterable>>>
aadd(Iterable addables) {
  std::optional<corio::AsyncIterValue<Iterable>> final;
  co_await corio::async_for(std::move(addables), [&](auto& chunk) {
    if (final) {
      *final = *final + chunk;
    } else {
      final = chunk;
    }
  });
  co_return final;
}

corio::Coro<void> amain() {
  corio::EventLoop& loop = corio::get_running_loop();
  double mark = loop.time();

  // async for number in async_generator(): print(number)
  co_await corio::async_for(async_generator(), [](int& number) { std::printf("%d\n", number); });
  std::printf("async for took %0.2f seconds\n", loop.time() - mark);

  mark = loop.time();
  co_await corio::timeout(5, []() -> corio::Coro<void> {
    co_await corio::sleep(3);
    std::printf("Operation completed within timeout\n");
  });
  std::printf("timeout scope took %0.2f seconds\n", loop.time() - mark);

  mark = loop.time();
  const std::vector<std::string> prompts = {"问题1", "问题2", "问题3"};
  co_await corio::async_for(stream_responses(prompts), [](std::string& response) {
    std::printf("📨 收到: %s\n", response.c_str());
  });
  std::printf("stream took %0.2f seconds\n", loop.time() - mark);

  mark = loop.time();
  std::optional<std::string> joined = co_await aadd(stream_responses(prompts));
  std::printf("aadd(stream_responses) = %s\n", joined ? joined->c_str() : "None");
  std::optional<int> sum = co_await aadd(async_generator());
  std::printf("aadd(async_generator) = %d\n", sum.value_or(-1));
  std::optional<std::string> none = co_await aadd(stream_responses({}));
  std::printf("aadd(empty stream) = %s\n", none ? none->c_str() : "None");
  std::printf("aadd took %0.2f seconds\n", loop.time() - mark);
}

}  // namespace

int main() {
  corio::Runner runner;
  const double start = runner.get_loop().time();
  runner.run(amain());
  std::printf("elapsed %0.2f seconds\n", runner.get_loop().time() - start);
}
