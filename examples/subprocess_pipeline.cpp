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
//
// Windows has no printf, sort or uniq programs, so there the three stages are this program
// itself, started with --stage=printf|sort|uniq, doing what the POSIX tool does. The parent's
// side (the pipes, the pumps, gather) is the same everywhere.
#include <corio/corio.hpp>

#include <algorithm>
#include <array>
#include <cstdio>
#include <iostream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#ifdef _WIN32
#include <fcntl.h>
#include <io.h>
#include <windows.h>
#endif

using corio::Coro;
using corio::PipeReader;
using corio::PipeWriter;
using corio::Process;
using corio::SubprocessOptions;
using corio::subprocess::PIPE;

namespace {

// A stage of the pipeline: the program and its arguments.
struct Stage {
  std::string name;  // what the report calls it: the POSIX tool it is or stands in for
  std::string program;
  std::vector<std::string> args;
};

#ifdef _WIN32
std::string self_path() {
  char path[MAX_PATH];
  const DWORD n = GetModuleFileNameA(nullptr, path, MAX_PATH);
  return std::string(path, n);
}

Stage stage(std::string name, std::vector<std::string> args = {}) {
  args.insert(args.begin(), "--stage=" + name);
  return {name, self_path(), std::move(args)};
}

// The stand-ins, run in the child: plain blocking stdio, binary so lines stay "\n".
int run_stage(std::string_view name, const std::vector<std::string>& args) {
  _setmode(_fileno(stdin), _O_BINARY);
  _setmode(_fileno(stdout), _O_BINARY);
  if (name == "printf") {  // printf '%s\n' args...
    for (const std::string& word : args) std::cout << word << '\n';
    return 0;
  }
  std::vector<std::string> lines;
  for (std::string line; std::getline(std::cin, line);) lines.push_back(line);
  if (name == "sort") {
    std::sort(lines.begin(), lines.end());
    for (const std::string& line : lines) std::cout << line << '\n';
    return 0;
  }
  if (name == "uniq") {  // uniq -c: adjacent repeats counted, the count right-aligned in 7
    for (std::size_t i = 0; i < lines.size();) {
      std::size_t j = i;
      while (j < lines.size() && lines[j] == lines[i]) ++j;
      std::printf("%7zu %s\n", j - i, lines[i].c_str());
      i = j;
    }
    return 0;
  }
  std::fprintf(stderr, "unknown stage %.*s\n", static_cast<int>(name.size()), name.data());
  return 2;
}
#else
Stage stage(std::string name, std::vector<std::string> args = {}) {
  if (name == "printf") args.insert(args.begin(), "%s\n");
  if (name == "uniq") args.insert(args.begin(), "-c");
  return {name, name, std::move(args)};
}
#endif

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
  const std::array<Stage, 3> stages{stage("printf", std::move(words)), stage("sort"),
                                    stage("uniq")};
  // Options named before the awaits: GCC 12 mishandles temporaries with destructors there.
  const SubprocessOptions out_only{.std_out = PIPE};
  const SubprocessOptions in_and_out{.std_in = PIPE, .std_out = PIPE};
  Process producer =
      co_await corio::create_subprocess_exec(stages[0].program, stages[0].args, out_only);
  Process sorter =
      co_await corio::create_subprocess_exec(stages[1].program, stages[1].args, in_and_out);
  Process counter =
      co_await corio::create_subprocess_exec(stages[2].program, stages[2].args, in_and_out);

  auto results =
      co_await corio::gather(pump(*producer.std_out(), *sorter.std_in()),
                             pump(*sorter.std_out(), *counter.std_in()), counter.std_out()->read());
  std::fputs(std::get<2>(results).c_str(), stdout);

  int failures = 0;
  const std::array<Process*, 3> children{&producer, &sorter, &counter};
  for (std::size_t i = 0; i < children.size(); ++i) {
    const int code = co_await children[i]->wait();
    std::printf("%s exited with %d\n", stages[i].name.c_str(), code);
    failures += code != 0;
  }
  co_return failures;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> words(argv + 1, argv + argc);
#ifdef _WIN32
  if (!words.empty() && words[0].rfind("--stage=", 0) == 0) {
    const std::string name = words[0].substr(8);
    words.erase(words.begin());
    return run_stage(name, words);
  }
#endif
  if (words.empty()) words = {"apple", "banana", "apple", "cherry", "banana", "apple", "date"};
  return corio::run(pipeline(std::move(words)));
}
