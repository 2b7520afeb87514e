// The contract every I/O backend fulfils, checked at compile time. The runtime is compiled
// against exactly one backend type (chosen by CORIO_BACKEND), so nothing here is virtual.
//
// The shape is operations, not readiness: the runtime hands the backend an Operation and
// gets a completion back. A readiness backend tries the syscall first and waits only on
// EAGAIN; a completion backend submits. Timers live in the loop's TimerHeap; the backend
// only honours the wait timeout it is given, to the nanosecond where the OS allows.
// This file must never depend on a platform header.
#pragma once

#include <concepts>
#include <cstddef>
#include <string_view>

#include "corio/core/clock.hpp"
#include "corio/core/operation.hpp"

namespace corio::core {

template <class B>
concept Backend = std::constructible_from<B, typename B::Options> &&
    requires(B& backend, const B& const_backend, Operation& op, NativeHandle handle,
             Nanos timeout) {
  // A short name for messages ("epoll", "io_uring", ...).
  { B::kName } -> std::convertible_to<std::string_view>;
  // Whether read_at/write_at on a regular file run without blocking the loop (a completion
  // backend). A readiness backend cannot wait on a file, which is always "ready" while the
  // read itself blocks, so the runtime sends file I/O to its thread pool instead.
  { B::kNativeFileIo } -> std::convertible_to<bool>;
  // The backend's own settings (an empty struct where it has none), so a loop can be built
  // with them (EventLoop::Options::backend); default_options() are the defaults as the
  // environment adjusts them.
  { B::default_options() } -> std::same_as<typename B::Options>;
  // Starts op. true: it completed inline (result set, on_complete will not be called).
  // false: it is in flight and on_complete will be called exactly once later.
  { backend.start(op) } -> std::same_as<bool>;
  // Asks for an in-flight op to stop. Safe on an op that already completed (no effect).
  { backend.cancel(op) } -> std::same_as<void>;
  // Waits for completions for at most `timeout` ns (0: poll, kNoDeadline: forever) and
  // dispatches them. Returns how many operations completed.
  { backend.wait(timeout) } -> std::same_as<std::size_t>;
  // Interrupts a wait() in progress or the next one. Safe from any thread, any time.
  { backend.wake() }
  noexcept->std::same_as<void>;
  // Operations started and not yet completed.
  { const_backend.in_flight() } -> std::same_as<std::size_t>;
  // Cancels every operation on `handle`, forgets it, and closes it.
  { backend.close(handle) } -> std::same_as<void>;
};

}  // namespace corio::core
