// exception_context(): the table standing in for Python's __context__ when an exit callback
// replaces the exception that was propagating. Bounded, process-wide, diagnostic only: it
// must never grow without limit nor be consulted for control flow by the runtime itself.
#include <deque>
#include <mutex>
#include <utility>

#include "corio/async_context.hpp"

namespace corio {

namespace {

constexpr std::size_t kRemembered = 64;

struct ContextTable {
  std::mutex mutex;
  // (exception, the exception it replaced), oldest first. Guarded by mutex.
  std::deque<std::pair<std::exception_ptr, std::exception_ptr>> entries;

  // With mutex held.
  std::exception_ptr find(const std::exception_ptr& error) {
    for (auto it = entries.rbegin(); it != entries.rend(); ++it) {
      if (it->first == error) return it->second;
    }
    return nullptr;
  }
};

ContextTable& table() {
  static ContextTable* t =
      new ContextTable;  // never destroyed: exits may run at static destruction
  return *t;
}

}  // namespace

std::exception_ptr exception_context(const std::exception_ptr& error) {
  if (!error) return nullptr;
  ContextTable& t = table();
  std::lock_guard lock(t.mutex);
  return t.find(error);
}

namespace detail {

void set_exception_context(const std::exception_ptr& error, const std::exception_ptr& context) {
  if (!error || !context || error == context) return;
  ContextTable& t = table();
  std::lock_guard lock(t.mutex);
  // As contextlib's _fix_exception_context: attach `context` at the end of the chain that
  // `error` already has, unless it is in the chain already (no cycles).
  std::exception_ptr last = error;
  for (std::size_t depth = 0; depth < kRemembered; ++depth) {
    std::exception_ptr next = t.find(last);
    if (!next) break;
    if (next == context) return;
    last = std::move(next);
  }
  if (last == context) return;
  t.entries.emplace_back(last, context);
  if (t.entries.size() > kRemembered) t.entries.pop_front();
}

}  // namespace detail

}  // namespace corio
