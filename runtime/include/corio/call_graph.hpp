// capture_call_graph / print_call_graph: what a task is doing right now, as Python 3.14's
// asyncio shows it: the chain of coroutines the task is suspended in (outermost first), and
// the tasks that are waiting for it. Meant for diagnosing a stuck program.
// It must never resume, cancel or otherwise change the tasks it looks at.
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "corio/task.hpp"

namespace corio {

struct FrameCallGraphEntry {
  std::string function;  // the coroutine's signature, as the compiler spells it
  std::string file;
  std::uint32_t line = 0;  // where the coroutine is defined
};

struct FutureCallGraph {
  std::string task_name;  // empty for a plain future
  bool done = false;
  std::vector<FrameCallGraphEntry> call_stack;  // outermost coroutine first
  std::vector<FutureCallGraph> awaited_by;      // tasks waiting for this one
};

// The graph of `task` (default: the current task). Cycles cannot occur; depth is bounded.
FutureCallGraph capture_call_graph(const AnyTask& task);
FutureCallGraph capture_call_graph();

// The graph as text, in the shape of Python 3.14's asyncio.format_call_graph.
std::string format_call_graph(const AnyTask& task);
std::string format_call_graph();
void print_call_graph(const AnyTask& task, std::FILE* out = stdout);
void print_call_graph(std::FILE* out = stdout);

}  // namespace corio
