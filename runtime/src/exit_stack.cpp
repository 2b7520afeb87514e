// ExitStack / AsyncExitStack unwinding: contextlib's __exit__/__aexit__ loop, in C++.
// Every registered exit runs even when an earlier one throws; it must never lose the last
// exception raised by a callback nor report a suppression that did not happen.
#include "corio/exit_stack.hpp"

#include <cstdio>

#include "corio/event_loop.hpp"

namespace corio {

namespace detail {

bool call_sync_exit(SyncExit& exit, const std::exception_ptr& pending) {
  if (!pending) return exit(nullptr);
  try {
    std::rethrow_exception(pending);
  } catch (...) {
    return exit(pending);
  }
}

bool unwind_sync(std::vector<SyncExit>& exits, std::exception_ptr error) {
  const bool received = error != nullptr;
  std::exception_ptr pending = std::move(error);
  bool suppressed = false;
  bool pending_raise = false;
  while (!exits.empty()) {
    SyncExit exit = std::move(exits.back());
    exits.pop_back();
    try {
      if (call_sync_exit(exit, pending)) {
        suppressed = true;
        pending_raise = false;
        pending = nullptr;
      }
    } catch (...) {
      std::exception_ptr raised = std::current_exception();
      set_exception_context(raised, pending);
      pending = std::move(raised);
      pending_raise = true;
    }
  }
  if (pending_raise) std::rethrow_exception(pending);
  return received && suppressed;
}

}  // namespace detail

void ExitStack::close_quietly() noexcept {
  if (exits_.empty()) return;
  try {
    close();
  } catch (...) {
    EventLoop::default_exception_handler(
        {"exception in an exit callback run by ExitStack's destructor",
         std::current_exception(),
         {}});
  }
}

void AsyncExitStack::warn_if_pending() noexcept {
  if (exits_.empty()) return;
  std::fprintf(
      stderr,
      "corio: AsyncExitStack destroyed with %zu exit callback(s) that never ran; close it with "
      "co_await aclose() or use async_with()\n",
      exits_.size());
  exits_.clear();
}

Coro<void> AsyncExitStack::aclose() {
  co_await aexit(nullptr);
}

Coro<bool> AsyncExitStack::aexit(std::exception_ptr error) {
  const bool received = error != nullptr;
  std::exception_ptr pending = std::move(error);
  bool suppressed = false;
  bool pending_raise = false;
  while (!exits_.empty()) {
    // Moved out first: the callable (and a coroutine lambda's captures) lives while awaited.
    detail::AnyExit exit = std::move(exits_.back());
    exits_.pop_back();
    std::exception_ptr raised;
    try {
      bool suppress = false;
      if (detail::SyncExit* sync = std::get_if<0>(&exit)) {
        suppress = detail::call_sync_exit(*sync, pending);
      } else {
        suppress = co_await std::get<1>(exit)(pending);
      }
      if (suppress) {
        suppressed = true;
        pending_raise = false;
        pending = nullptr;
      }
    } catch (...) {
      raised = std::current_exception();
    }
    if (raised) {
      detail::set_exception_context(raised, pending);
      pending = std::move(raised);
      pending_raise = true;
    }
  }
  if (pending_raise) std::rethrow_exception(pending);
  co_return received&& suppressed;
}

}  // namespace corio
