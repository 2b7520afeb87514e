// asyncq: producers and consumers over one corio::Queue (the twin of the tutorial's asyncq.py).
// Each producer puts a random number of items, sleeping a random time before each; consumers
// take items forever. main waits for the producers, then q.join() (every item got and
// task_done()), then cancels the consumers.
//
// Usage: asyncq [-p N | --nprod N | --nprod=N] [-c N | --ncon N | --ncon=N]   (defaults 5, 10)
// The flags are Abseil flags (--nprod/--ncon). Abseil only knows long names, so argparse's
// short spellings are rewritten before parsing: "-p N" / "-pN" become --nprod, "-c N" / "-cN"
// become --ncon (nothing after a "--" is touched). Sleep lengths come from std::mt19937 seeded
// 444 and our own randint (reproducible); item names from std::random_device, as os.urandom.
#include <absl/flags/flag.h>
#include <absl/flags/parse.h>
#include <absl/flags/usage.h>
#include <corio/corio.hpp>

#include <cstdint>
#include <cstdio>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "seeded_random.hpp"

ABSL_FLAG(int, nprod, 5, "number of producers (short form: -p)");
ABSL_FLAG(int, ncon, 10, "number of consumers (short form: -c)");

namespace {

using examples::randint;

using Item = std::pair<std::string, double>;  // (name, time it was put)

corio::Coro<std::string> makeitem(int size = 5) {
  static std::random_device urandom;
  static const char digits[] = "0123456789abcdef";
  std::string hex;
  for (int k = 0; k < size; ++k) {
    const unsigned byte = urandom() & 0xffu;
    hex += digits[byte >> 4];
    hex += digits[byte & 0xfu];
  }
  co_return hex;
}

corio::Coro<void> randsleep(const std::string& caller = {}) {
  const int i = randint(0, 10);
  if (!caller.empty()) std::printf("%s sleeping for %d seconds.\n", caller.c_str(), i);
  co_await corio::sleep(i);
}

corio::Coro<void> produce(int name, corio::Queue<Item>& q) {
  const int n = randint(0, 10);
  for (int k = 0; k < n; ++k) {  // Synchronous loop for each single producer
    co_await randsleep("Producer " + std::to_string(name));
    std::string i = co_await makeitem();
    const double t = corio::get_running_loop().time();
    co_await q.put({i, t});
    std::printf("Producer %d added <%s> to queue.\n", name, i.c_str());
  }
}

corio::Coro<void> consume(int name, corio::Queue<Item>& q) {
  while (true) {
    co_await randsleep("Consumer " + std::to_string(name));
    auto [i, t] = co_await q.get();
    const double now = corio::get_running_loop().time();
    std::printf("Consumer %d got element <%s> in %0.5f seconds.\n", name, i.c_str(), now - t);
    q.task_done();
  }
}

corio::Coro<void> amain(int nprod, int ncon) {
  corio::Queue<Item> q;
  std::vector<corio::Task<void>> producers;
  for (int n = 0; n < nprod; ++n) producers.push_back(corio::create_task(produce(n, q)));
  std::vector<corio::Task<void>> consumers;
  for (int n = 0; n < ncon; ++n) consumers.push_back(corio::create_task(consume(n, q)));
  co_await corio::gather(std::move(producers));
  co_await q.join();  // Implicitly awaits consumers, too
  for (auto& c : consumers) c.cancel();
  // C++ only: the consumers refer to q, which dies with this frame, so let them finish
  // cancelling first (asyncio.run waits for them after main returns anyway; Python's garbage
  // collector keeps q alive meanwhile).
  co_await corio::gather(corio::return_exceptions, std::move(consumers));
}

// argparse's "-p N" / "-pN" / "-c N" / "-cN" as Abseil's --nprod / --ncon.
std::vector<std::string> translate_short_flags(int argc, char** argv) {
  std::vector<std::string> args;
  bool options_ended = false;
  for (int k = 0; k < argc; ++k) {
    std::string arg = argv[k];
    if (k > 0 && !options_ended) {
      if (arg == "--") {
        options_ended = true;
      } else if (arg.size() >= 2 && arg[0] == '-' && (arg[1] == 'p' || arg[1] == 'c')) {
        const std::string name = arg[1] == 'p' ? "--nprod" : "--ncon";
        if (arg.size() == 2) {
          arg = name;
        } else if (arg.find_first_not_of("0123456789", 2) == std::string::npos) {
          arg = name + "=" + arg.substr(2);
        }
      }
    }
    args.push_back(std::move(arg));
  }
  return args;
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage("producers and consumers over a corio::Queue: asyncq [-p N] [-c N]");
  std::vector<std::string> translated = translate_short_flags(argc, argv);
  std::vector<char*> pointers;
  for (std::string& arg : translated) pointers.push_back(arg.data());
  pointers.push_back(nullptr);
  const std::vector<char*> positional =
      absl::ParseCommandLine(static_cast<int>(translated.size()), pointers.data());
  if (positional.size() > 1) {
    std::fprintf(stderr, "%s: error: unrecognized arguments: %s\n", argv[0], positional[1]);
    return 2;
  }
  const int nprod = absl::GetFlag(FLAGS_nprod);
  const int ncon = absl::GetFlag(FLAGS_ncon);
  if (nprod < 0 || ncon < 0) {
    std::fprintf(stderr, "%s: error: --nprod and --ncon must not be negative\n", argv[0]);
    return 2;
  }

  corio::Runner runner;
  const double start = runner.get_loop().time();
  runner.run(amain(nprod, ncon));
  const double elapsed = runner.get_loop().time() - start;
  std::printf("Program completed in %0.5f seconds.\n", elapsed);
}
