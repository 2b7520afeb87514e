// Runner: loop ownership and the orderly shutdown asyncio.run performs.
#include "corio/runner.hpp"

#include <cstdlib>
#include <cstring>

namespace corio {

namespace {
bool flag_from_environment(const char* name) {
  const char* value = std::getenv(name);
  return value != nullptr && *value != '\0' && std::strcmp(value, "0") != 0;
}

// Waits for every task, whatever it ends with; the caller inspects them afterwards.
Coro<void> wait_all(std::vector<AnyTask> tasks) {
  for (AnyTask& task : tasks) {
    try {
      co_await task;
    } catch (...) {
    }
  }
}
}  // namespace

Runner::Runner(Options options) {
  EventLoop::Options loop_options;
  loop_options.debug = options.debug || flag_from_environment("CORIO_DEBUG");
  loop_options.virtual_time = options.virtual_time || flag_from_environment("CORIO_VIRTUAL_TIME");
  loop_options.backend = options.backend;
  loop_ = std::make_unique<EventLoop>(loop_options);
}

Runner::~Runner() {
  close();
}

EventLoop& Runner::get_loop() {
  if (closed_) throw RuntimeError("Runner is closed");
  return *loop_;
}

void Runner::prepare_run() {
  if (closed_) throw RuntimeError("Runner is closed");
  if (try_get_running_loop() != nullptr) {
    throw RuntimeError("Runner.run() cannot be called from a running event loop");
  }
}

void Runner::close() {
  if (closed_) return;
  closed_ = true;
  if (!loop_->is_closed()) {
    std::vector<AnyTask> pending = all_tasks(*loop_);
    if (!pending.empty()) {
      for (AnyTask& task : pending) task.cancel();
      loop_->run_until_complete(wait_all(pending));
      for (AnyTask& task : pending) {
        if (task.cancelled()) continue;
        if (std::exception_ptr error = task.exception()) {
          loop_->call_exception_handler(
              {"unhandled exception during corio::run() shutdown", error, task.get_name()});
        }
      }
    }
    // asyncio.run's shutdown_asyncgens and shutdown_default_executor: steps registered by
    // the runtime pieces that need the loop running to clean up. Steps may add steps.
    for (auto steps = loop_->take_shutdown_steps(); !steps.empty();
         steps = loop_->take_shutdown_steps()) {
      for (EventLoop::ShutdownStep& step : steps) {
        try {
          loop_->run_until_complete(step());
        } catch (...) {
          loop_->call_exception_handler(
              {"error in a shutdown step of corio::run()", std::current_exception(), {}});
        }
      }
    }
    loop_->close();
  }
  loop_.reset();
}

}  // namespace corio
