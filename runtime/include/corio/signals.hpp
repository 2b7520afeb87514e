// Signal handlers that run as ordinary loop callbacks (asyncio's loop.add_signal_handler /
// loop.remove_signal_handler), and the Ctrl-C handling Runner::run installs (asyncio.Runner).
//
// corio::add_signal_handler(loop, SIGTERM, callback) makes `callback` run on `loop`'s thread,
// as a callback scheduled with call_soon, each time the signal arrives. It works whatever
// thread the signal is delivered to: the process-level handler only writes the signal
// number into a pipe the loop watches (one read kept in flight, no polling).
// Differences from asyncio, all deliberate:
//  * any loop on any thread may own signals (asyncio: main thread only); a signal belongs to
//    one loop at a time, and the last add_signal_handler for it wins;
//  * remove_signal_handler restores the disposition that was in place before corio installed
//    its own (asyncio always restores SIG_DFL, or Python's default SIGINT handler).
// This header must never name a platform type; the POSIX implementation is signals_posix.cpp
// (a Windows twin, signals_win32.cpp, maps SIGINT/SIGBREAK to console control events).
#pragma once

#include <cstdint>
#include <memory>

#include "corio/event_loop.hpp"
#include "corio/handle.hpp"
#include "corio/task.hpp"

namespace corio {

// Runs `callback` on `loop` whenever `sig` arrives; replaces an earlier callback for `sig`.
// Call it on the loop's thread. ValueError: not a valid signal number. RuntimeError: the
// signal cannot be caught (SIGKILL, SIGSTOP) or the loop is closed.
void add_signal_handler(EventLoop& loop, int sig, Callback callback);

// Removes the callback for `sig` and restores the signal's previous disposition.
// Returns false when `loop` had no handler for `sig`. ValueError: not a valid signal number.
bool remove_signal_handler(EventLoop& loop, int sig);

namespace detail {

// Identifies the registration serving `sig` on `loop` now (0: none), so a scoped user can
// tell whether its handler is still the installed one before it removes it.
std::uint64_t signal_handler_token(EventLoop& loop, int sig);

// What Runner::run does with Ctrl-C, as asyncio.Runner: on the main thread, when SIGINT still
// has its default disposition, the first SIGINT cancels the main task and the run ends with
// KeyboardInterrupt; a second one stops the loop at once (run() then throws KeyboardInterrupt
// too). The handler is removed when the scope ends, if it is still the installed one.
class RunnerInterrupt {
 public:
  RunnerInterrupt(EventLoop& loop, AnyTask main_task);
  ~RunnerInterrupt();
  RunnerInterrupt(const RunnerInterrupt&) = delete;
  RunnerInterrupt& operator=(const RunnerInterrupt&) = delete;

  // How many SIGINTs arrived while the scope was active.
  int count() const noexcept;
  // Whether the scope installed a handler at all.
  bool installed() const noexcept { return token_ != 0; }

  struct State;

 private:
  EventLoop& loop_;
  std::shared_ptr<State> state_;
  std::uint64_t token_ = 0;
};

}  // namespace detail
}  // namespace corio
