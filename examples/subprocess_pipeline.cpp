// subprocess_pipeline: a shell pipeline `producer | sort | uniq -c` where every "|" is this
// program, moving lines between child processes through their pipe streams (asyncio's
// create_subprocess_exec with stdin/stdout=PIPE, readline, write + drain, close).
// The three pumps run at once, so no child ever waits on a full pipe for long.
// Usage: subprocess_pipeline [word...]   (default: a fixed list of fruit)
//
// The Python program it mirrors:
//   async def pump(src, dst):
//       while line := await src.readline():
//           dst.write(line); await dst.drain()
//       dst.close()
//   async def main(words):
//       producer = await create_subprocess_exec("printf", "%s\n", *words, stdout=PIPE)
//       sorter = await create_subprocess_exec("sort", stdin=PIPE, stdout=PIPE)
//       counter = await create_subprocess_exec("uniq", "-c", stdin=PIPE, stdout=PIPE)
//       _, _, counts = await gather(pump(producer.stdout, sorter.stdin),
//                                   pump(sorter.stdout, counter.stdin), counter.stdout.read())
//       print(counts, end="")
//       for p in (producer, sorter, counter): print(p.args[0], await p.wait())
#include <corio/corio.hpp>

#include <array>
#include <cstdio>
#include <string>
#include <utility>
#include <vector>

#ifndef _WIN32

using corio::Coro;
using corio::PipeReader;
using corio::PipeWriter;
using corio::Process;
using corio::SubprocessOptions;
using corio::subprocess::PIPE;

// Copies lines from one child's stdout to the next child's stdin, then closes that stdin so
// the next child sees EOF.
Coro<void> pump(PipeReader from, PipeWriter to) {
  for (;;) {
    std::string line = co_await from.readline();
    if (line.empty()) break;
    to.write(line);
    co_await to.drain();
  }
  to.close();
  co_await to.wait_closed();
}

Coro<int> pipeline(std::vector<std::string> words) {
  std::vector<std::string> producer_args{"%s\n"};
  producer_args.insert(producer_args.end(), words.begin(), words.end());
  Process producer = co_await corio::create_subprocess_exec("printf", std::move(producer_args),
                                                            SubprocessOptions{.std_out = PIPE});
  Process sorter = co_await corio::create_subprocess_exec(
      "sort", {}, SubprocessOptions{.std_in = PIPE, .std_out = PIPE});
  Process counter = co_await corio::create_subprocess_exec(
      "uniq", "-c", SubprocessOptions{.std_in = PIPE, .std_out = PIPE});

  auto results =
      co_await corio::gather(pump(*producer.std_out(), *sorter.std_in()),
                             pump(*sorter.std_out(), *counter.std_in()), counter.std_out()->read());
  std::fputs(std::get<2>(results).c_str(), stdout);

  int failures = 0;
  const std::array<std::pair<const char*, Process*>, 3> children{
      {{"printf", &producer}, {"sort", &sorter}, {"uniq", &counter}}};
  for (const auto& [name, process] : children) {
    const int code = co_await process->wait();
    std::printf("%s exited with %d\n", name, code);
    failures += code != 0;
  }
  co_return failures;
}

int main(int argc, char** argv) {
  std::vector<std::string> words(argv + 1, argv + argc);
  if (words.empty()) words = {"apple", "banana", "apple", "cherry", "banana", "apple", "date"};
  return corio::run(pipeline(std::move(words)));
}

#else

int main() {
  std::puts("subprocess_pipeline needs a POSIX system (printf, sort, uniq)");
  return 0;
}

#endif
