// What subprocesses are on every platform (see subprocess_common.hpp): the wait lists, the
// per-loop resource registry, and Process's methods (wait, communicate, signals through the
// platform's ProcessState). It must never call the OS: the platform files do.
#include "subprocess_common.hpp"

#include <cerrno>
#include <tuple>
#include <utility>

#include "corio/core/errors.hpp"
#include "corio/detail/loop_local.hpp"
#include "corio/gather.hpp"

namespace corio {
namespace detail {

std::exception_ptr os_error(int error, const char* context) {
  try {
    throw_os_error(error, context);
  } catch (...) {
    return std::current_exception();
  }
}

void close_loop_handle(EventLoop* loop, core::NativeHandle& handle) noexcept {
  if (handle == core::kInvalidHandle) return;
  const core::NativeHandle h = std::exchange(handle, core::kInvalidHandle);
  if (loop != nullptr) {
    loop->backend().close(h);
  } else {
    pipe_os::close(h);
  }
}

// ---------------------------------------------------------------------------------------
// Wait lists.

void WaitList::wake_all() {
  while (WaitLeaf* leaf = head_) {
    unlink(leaf);
    leaf->suspension_.wake();
  }
}

void WaitList::push(WaitLeaf* leaf) noexcept {
  leaf->prev_ = tail_;
  leaf->next_ = nullptr;
  (tail_ ? tail_->next_ : head_) = leaf;
  tail_ = leaf;
  leaf->linked_ = true;
}

void WaitList::unlink(WaitLeaf* leaf) noexcept {
  (leaf->prev_ ? leaf->prev_->next_ : head_) = leaf->next_;
  (leaf->next_ ? leaf->next_->prev_ : tail_) = leaf->prev_;
  leaf->prev_ = leaf->next_ = nullptr;
  leaf->linked_ = false;
}

WaitLeaf::~WaitLeaf() {
  if (linked_) list_->unlink(this);
}

void WaitLeaf::await_suspend(std::coroutine_handle<> handle) {
  suspension_.begin(handle);
  list_->push(this);
  suspension_.arm({&cancel_leaf, this});
}

bool WaitLeaf::cancel_leaf(void* self) {
  auto* leaf = static_cast<WaitLeaf*>(self);
  if (!leaf->linked_) return false;  // already woken: the wake-up is queued
  leaf->list_->unlink(leaf);
  leaf->cancelled_ = true;
  leaf->suspension_.wake();
  return true;
}

// ---------------------------------------------------------------------------------------
// Loop resources.

void LoopResources::link(LoopResource* r) noexcept {
  r->prev_ = nullptr;
  r->next_ = head_;
  if (head_) head_->prev_ = r;
  head_ = r;
  r->linked_ = true;
}

void LoopResources::unlink(LoopResource* r) noexcept {
  if (!r->linked_) return;
  (r->prev_ ? r->prev_->next_ : head_) = r->next_;
  if (r->next_) r->next_->prev_ = r->prev_;
  r->prev_ = r->next_ = nullptr;
  r->linked_ = false;
}

void LoopResources::on_loop_close() {
  {
    std::lock_guard lock(mutex_);
    loop_for_threads_ = nullptr;
  }
  while (LoopResource* r = head_) {
    unlink(r);
    // Whoever else holds it may let go inside loop_closing (a completion releasing its
    // self-reference): keep it alive for the call.
    std::shared_ptr<LoopResource> keep = r->weak_from_this().lock();
    r->loop_closing();
  }
}

void LoopResources::post_from_thread(absl::AnyInvocable<void(EventLoop&)> callback) {
  std::lock_guard lock(mutex_);
  if (loop_for_threads_ == nullptr) return;
  EventLoop* loop = loop_for_threads_;
  try {
    loop->call_soon_threadsafe(
        [loop, callback = std::move(callback)]() mutable { callback(*loop); });
  } catch (const RuntimeError&) {
    // Closed between the check and the call: nobody is left to tell.
  }
}

std::shared_ptr<LoopResources> resources_for(EventLoop& loop) {
  loop.check_open();
  return LoopLocal<LoopResources>::get(loop);
}

LoopResource::LoopResource(EventLoop& loop, std::shared_ptr<LoopResources> resources)
    : loop_(&loop), resources_(std::move(resources)) {
  resources_->link(this);
}

void LoopResource::detach_from_loop() noexcept {
  if (loop_ != nullptr) resources_->unlink(this);
}

// ---------------------------------------------------------------------------------------
// The child.

void ProcessState::set_returncode(int code) {
  if (returncode_) return;
  returncode_ = code;
  exit_waiters_.wake_all();
}

Process make_process(EventLoop& loop, const std::shared_ptr<LoopResources>& resources,
                     std::shared_ptr<ProcessState> process, core::NativeHandle in,
                     core::NativeHandle out, core::NativeHandle err, std::size_t limit) {
  std::shared_ptr<PipeWriterState> in_state;
  std::shared_ptr<PipeReaderState> out_state;
  std::shared_ptr<PipeReaderState> err_state;
  if (in != core::kInvalidHandle) {
    in_state = std::make_shared<PipeWriterState>(std::make_shared<PipeSink>(loop, resources, in));
  }
  if (out != core::kInvalidHandle) {
    out_state = std::make_shared<PipeReaderState>(loop, resources, out, limit);
  }
  if (err != core::kInvalidHandle) {
    err_state = std::make_shared<PipeReaderState>(loop, resources, err, limit);
  }
  return Process(std::move(process), std::move(in_state), std::move(out_state),
                 std::move(err_state));
}

}  // namespace detail

// ---------------------------------------------------------------------------------------
// The coroutines behind Process's methods. Each holds its state by shared_ptr, so a handle
// dropped while they run does not pull the state from under them.

namespace {

using detail::PipeReaderState;
using detail::PipeSink;
using detail::ProcessState;
using detail::WaitLeaf;

Coro<int> wait_impl(std::shared_ptr<ProcessState> process) {
  while (!process->returncode()) co_await WaitLeaf(process->exit_waiters());
  co_return *process->returncode();
}

// communicate()'s three legs. Each is a task of the gather, so they run at once.
Coro<void> feed_stdin(std::shared_ptr<PipeSink> sink, std::string input) {
  if (!sink) co_return;
  if (!input.empty()) {
    sink->write(input);
    try {
      co_await detail::drain_pipe(sink);
    } catch (const ConnectionError&) {
      // A child that exits or closes stdin without reading it all is not an error here
      // (asyncio ignores BrokenPipeError and ConnectionResetError the same way).
    }
  }
  sink->close();
}

Coro<std::string> read_to_end(std::shared_ptr<PipeReaderState> reader) {
  if (!reader) co_return std::string();
  co_return co_await detail::read_pipe(std::move(reader), -1);
}

Coro<std::pair<std::string, std::string>> communicate_impl(std::shared_ptr<ProcessState> process,
                                                           std::shared_ptr<PipeSink> in,
                                                           std::shared_ptr<PipeReaderState> out,
                                                           std::shared_ptr<PipeReaderState> err,
                                                           std::string input) {
  auto results = co_await gather(feed_stdin(std::move(in), std::move(input)),
                                 read_to_end(std::move(out)), read_to_end(std::move(err)));
  co_await wait_impl(std::move(process));
  co_return std::pair<std::string, std::string>(std::move(std::get<1>(results)),
                                                std::move(std::get<2>(results)));
}

}  // namespace

// ---------------------------------------------------------------------------------------
// Process.

Process::Process(std::shared_ptr<detail::ProcessState> state,
                 std::shared_ptr<detail::PipeWriterState> std_in,
                 std::shared_ptr<detail::PipeReaderState> std_out,
                 std::shared_ptr<detail::PipeReaderState> std_err)
    : state_(std::move(state)) {
  if (std_in) std_in_.emplace(std::move(std_in));
  if (std_out) std_out_.emplace(std::move(std_out));
  if (std_err) std_err_.emplace(std::move(std_err));
}
Process::Process(Process&&) noexcept = default;
Process& Process::operator=(Process&&) noexcept = default;
Process::~Process() = default;

int Process::pid() const noexcept {
  return state_->pid();
}
std::optional<int> Process::returncode() const noexcept {
  return state_->returncode();
}
Coro<int> Process::wait() {
  return wait_impl(state_);
}

Coro<std::pair<std::string, std::string>> Process::communicate(std::string input) {
  return communicate_impl(state_, std_in_ ? std_in_->state()->sink : nullptr,
                          std_out_ ? std_out_->state() : nullptr,
                          std_err_ ? std_err_->state() : nullptr, std::move(input));
}

void Process::send_signal(int sig) {
  state_->send_signal(sig);
}
void Process::terminate() {
  state_->terminate();
}
void Process::kill() {
  state_->kill();
}

}  // namespace corio
