// Walks a task's coroutine chain through the parent/child links every Coro promise keeps,
// and its waiters through the futures' waiter lists.
#include "corio/call_graph.hpp"

namespace corio {

namespace {

constexpr int kMaxAwaitedByDepth = 64;

FutureCallGraph capture(const detail::TaskBase* task, int depth) {
  FutureCallGraph graph;
  graph.task_name = task->name();
  graph.done = task->done();
  for (const detail::PromiseBase* p = task->root_promise(); p != nullptr; p = p->child) {
    graph.call_stack.push_back({p->function, p->file, static_cast<std::uint32_t>(p->line)});
  }
  if (depth < kMaxAwaitedByDepth) {
    for (const core::ReadyItem& waiter : task->waiters()) {
      if (waiter.run == &detail::TaskBase::step) {
        graph.awaited_by.push_back(
            capture(static_cast<const detail::TaskBase*>(waiter.arg), depth + 1));
      }
    }
  }
  return graph;
}

void format(const FutureCallGraph& graph, const std::string& indent, std::string& out) {
  out += indent + "* Task(name='" + graph.task_name + "')" + (graph.done ? " done" : "") + "\n";
  if (!graph.call_stack.empty()) {
    out += indent + "+ Call stack:\n";
    for (auto it = graph.call_stack.rbegin(); it != graph.call_stack.rend(); ++it) {
      out += indent + "|   File '" + it->file + "', line " + std::to_string(it->line) +
             ", in async " + it->function + "\n";
    }
  }
  if (!graph.awaited_by.empty()) {
    out += indent + "+ Awaited by:\n";
    for (const FutureCallGraph& waiter : graph.awaited_by) format(waiter, indent + "   ", out);
  }
}

}  // namespace

FutureCallGraph capture_call_graph(const AnyTask& task) {
  if (!task) throw ValueError("capture_call_graph() needs a task");
  return capture(task.get(), 0);
}

FutureCallGraph capture_call_graph() {
  AnyTask task = current_task();
  if (!task) throw RuntimeError("capture_call_graph() called outside a task");
  return capture_call_graph(task);
}

std::string format_call_graph(const AnyTask& task) {
  std::string out;
  format(capture_call_graph(task), "", out);
  return out;
}

std::string format_call_graph() {
  std::string out;
  format(capture_call_graph(), "", out);
  return out;
}

void print_call_graph(const AnyTask& task, std::FILE* out) {
  std::fputs(format_call_graph(task).c_str(), out);
}

void print_call_graph(std::FILE* out) {
  std::fputs(format_call_graph().c_str(), out);
}

}  // namespace corio
