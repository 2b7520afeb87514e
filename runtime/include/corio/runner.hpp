// run() and Runner: the entry points of a corio program (asyncio.run / asyncio.Runner).
// A Runner owns one loop for several run() calls; closing it cancels what is left, waits for
// the cancelled tasks to finish their cleanup, runs the loop's shutdown steps (default
// executor, async generators) and closes the loop. It must never be used from inside a
// running loop.
#pragma once

#include <memory>
#include <optional>
#include <utility>

#include "corio/coro.hpp"
#include "corio/event_loop.hpp"
#include "corio/signals.hpp"
#include "corio/task.hpp"

namespace corio {

class Runner {
 public:
  struct Options {
    // Debug mode; also turned on by the environment variable CORIO_DEBUG=1.
    bool debug = false;
    // Virtual time (see EventLoop::Options); also turned on by CORIO_VIRTUAL_TIME=1, so
    // programs that sleep for seconds can be tested in milliseconds.
    bool virtual_time = false;
    // The backend's settings for the loop (see EventLoop::Options::backend).
    std::optional<SelectedBackend::Options> backend;
  };

  Runner() : Runner(Options{}) {}
  explicit Runner(Options options);
  ~Runner();
  Runner(const Runner&) = delete;
  Runner& operator=(const Runner&) = delete;

  // Runs `coro` as the main task until it completes; returns its result. As asyncio.Runner,
  // Ctrl-C (SIGINT, when the program left it at its default) cancels the main task, and the
  // run then ends with KeyboardInterrupt.
  template <class T>
  T run(Coro<T> coro) {
    prepare_run();
    Task<T> task = loop_->create_task(std::move(coro));
    detail::RunnerInterrupt interrupt(*loop_, task);
    try {
      return loop_->run_until_complete(task);
    } catch (const CancelledError&) {
      if (interrupt.count() > 0 && task.uncancel() == 0) throw KeyboardInterrupt();
      throw;
    } catch (const RuntimeError&) {
      if (interrupt.count() > 1) throw KeyboardInterrupt();  // a second Ctrl-C stopped the loop
      throw;
    }
  }

  void close();
  EventLoop& get_loop();

 private:
  void prepare_run();

  std::unique_ptr<EventLoop> loop_;
  bool closed_ = false;
};

// asyncio.run: a fresh loop, run `coro` to completion, clean up, close.
template <class T>
T run(Coro<T> coro, Runner::Options options = {}) {
  Runner runner(options);
  if constexpr (std::is_void_v<T>) {
    runner.run(std::move(coro));
  } else {
    return runner.run(std::move(coro));
  }
}

}  // namespace corio
