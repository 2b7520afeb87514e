// Private to corio's subprocess sources (never installed): what subprocesses are on every
// platform, written once. The loop-resource registry, the wait lists, the stdout/stderr
// reader and the stdin writer over the backend's read/write ops, and the base of a child's
// state. subprocess_posix.cpp and subprocess_win32.cpp add only what differs: spawning,
// reaping, the pipe handles (through the pipe_os hooks below) and the signal mapping.
// Nothing here may name a platform type or call the OS directly, no operation's buffer may
// move while the operation is in flight, and nothing here may block the loop.
#pragma once

#include <cstddef>
#include <cstdint>
#include <exception>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>

#include "corio/core/operation.hpp"
#include "corio/detail/suspension.hpp"
#include "corio/event_loop.hpp"
#include "corio/subprocess.hpp"

namespace corio::detail {

inline constexpr std::size_t kPipeReadChunk = 64 * 1024;
inline constexpr std::size_t kPipeHighWater = 64 * 1024;  // asyncio's transport defaults
inline constexpr std::size_t kPipeLowWater = kPipeHighWater / 4;

// The exception throw_os_error(error, context) would raise, to be stored and raised later.
std::exception_ptr os_error(int error, const char* context);

// ---------------------------------------------------------------------------------------
// The platform's pipe calls, defined once in subprocess_posix.cpp and once in
// subprocess_win32.cpp. None blocks or throws.
namespace pipe_os {

// Closes our end of a pipe directly (the loop, which would close it through the backend,
// is gone).
void close(core::NativeHandle handle) noexcept;
// A read from `handle` gave 0 bytes: is that EOF? (Always on POSIX; on Windows a zero-length
// write by the child also completes a read with 0 bytes.)
bool empty_read_is_eof(core::NativeHandle handle) noexcept;
// Fills in code, offset, handle, buffer and length of the op that writes up to `size` bytes
// of `data` to the child's stdin.
void prepare_write(core::Operation& op, core::NativeHandle handle, const char* data,
                   std::size_t size) noexcept;
// A write to stdin failed with `result` (-errno, not -ECANCELED): 0 when it is worth trying
// again, else the errno that loses the pipe.
int write_error(std::int64_t result) noexcept;

}  // namespace pipe_os

// Closes a handle of ours: through the backend while the loop lives (it cancels what is in
// flight and forgets the handle), directly after. Leaves kInvalidHandle behind.
void close_loop_handle(EventLoop* loop, core::NativeHandle& handle) noexcept;

// ---------------------------------------------------------------------------------------
// Waiting: coroutines parked on a list until a callback wakes them all.

class WaitList;

class WaitLeaf {
 public:
  explicit WaitLeaf(WaitList& list) noexcept : list_(&list) {}
  WaitLeaf(const WaitLeaf&) = delete;
  WaitLeaf& operator=(const WaitLeaf&) = delete;
  ~WaitLeaf();

  bool await_ready() const noexcept { return false; }
  void await_suspend(std::coroutine_handle<> handle);
  void await_resume() { suspension_.end(cancelled_); }

 private:
  friend class WaitList;
  static bool cancel_leaf(void* self);

  WaitList* list_;
  WaitLeaf* prev_ = nullptr;
  WaitLeaf* next_ = nullptr;
  bool linked_ = false;
  bool cancelled_ = false;
  Suspension suspension_;
};

class WaitList {
 public:
  WaitList() = default;
  WaitList(const WaitList&) = delete;
  WaitList& operator=(const WaitList&) = delete;
  ~WaitList() {
    while (head_ != nullptr) unlink(head_);
  }

  void wake_all();

 private:
  friend class WaitLeaf;
  void push(WaitLeaf* leaf) noexcept;
  void unlink(WaitLeaf* leaf) noexcept;

  WaitLeaf* head_ = nullptr;
  WaitLeaf* tail_ = nullptr;
};

// ---------------------------------------------------------------------------------------
// Everything that holds a handle of a loop registers here, so that closing the loop gives the
// handles back while the backend still exists, and later destructors leave it alone.

class LoopResources;

class LoopResource : public std::enable_shared_from_this<LoopResource> {
 public:
  virtual ~LoopResource() = default;
  // The loop is closing: close every handle through its backend and forget the loop.
  virtual void loop_closing() = 0;

 protected:
  LoopResource(EventLoop& loop, std::shared_ptr<LoopResources> resources);
  void detach_from_loop() noexcept;

  EventLoop* loop_;  // null once the loop has closed
  std::shared_ptr<LoopResources> resources_;

 private:
  friend class LoopResources;
  LoopResource* prev_ = nullptr;
  LoopResource* next_ = nullptr;
  bool linked_ = false;
};

class LoopResources {
 public:
  explicit LoopResources(EventLoop& loop) : loop_for_threads_(&loop) {}

  void link(LoopResource* r) noexcept;
  void unlink(LoopResource* r) noexcept;
  // The loop is closing (LoopLocal calls it): every resource still linked gives its handles
  // back.
  void on_loop_close();
  // For other threads (a waiting thread, a wait callback): posts `callback` to the loop
  // unless it has closed.
  void post_from_thread(absl::AnyInvocable<void(EventLoop&)> callback);

 private:
  std::mutex mutex_;
  EventLoop* loop_for_threads_;
  LoopResource* head_ = nullptr;  // loop thread only
};

// The registry of `loop` (a LoopLocal), made on first use. RuntimeError once the loop is closed.
std::shared_ptr<LoopResources> resources_for(EventLoop& loop);

// ---------------------------------------------------------------------------------------
// The child: its pid and exit status. Watching and signalling it is the platform's part.

class ProcessState : public LoopResource {
 public:
  int pid() const noexcept { return pid_; }
  const std::optional<int>& returncode() const noexcept { return returncode_; }
  WaitList& exit_waiters() noexcept { return exit_waiters_; }

  // Process::send_signal / terminate / kill.
  virtual void send_signal(int sig) = 0;
  virtual void terminate() = 0;
  virtual void kill() = 0;

 protected:
  ProcessState(EventLoop& loop, std::shared_ptr<LoopResources> resources, int pid)
      : LoopResource(loop, std::move(resources)), pid_(pid) {}
  // Records the exit status and wakes wait(). The first status wins.
  void set_returncode(int code);

 private:
  int pid_;
  std::optional<int> returncode_;
  WaitList exit_waiters_;
};

// The Process that spawning returns: `process` with pipe streams over our ends `in`, `out`,
// `err` (kInvalidHandle where the stream is not PIPE). Takes the handles.
Process make_process(EventLoop& loop, const std::shared_ptr<LoopResources>& resources,
                     std::shared_ptr<ProcessState> process, core::NativeHandle in,
                     core::NativeHandle out, core::NativeHandle err, std::size_t limit);

// ---------------------------------------------------------------------------------------
// Our end of a stdout/stderr pipe and the bytes read from it but not consumed yet.

class PipeReaderState final : public LoopResource {
 public:
  PipeReaderState(EventLoop& loop, std::shared_ptr<LoopResources> resources,
                  core::NativeHandle pipe, std::size_t limit);
  ~PipeReaderState() override;

  void loop_closing() override;

  std::size_t available() const noexcept { return buffer_.size() - pos_; }
  std::string_view view() const noexcept { return {buffer_.data() + pos_, available()}; }
  bool eof() const noexcept { return eof_; }
  std::size_t limit() const noexcept { return limit_; }
  void check_error() const {
    if (error_) std::rethrow_exception(error_);
  }

  std::string take(std::size_t n);
  void discard(std::size_t n) { take(n); }

  // co_await Fill(state): reads once more from the pipe (data, EOF or an error is recorded).
  class Fill {
   public:
    explicit Fill(PipeReaderState& reader) noexcept : reader_(reader) {}
    Fill(const Fill&) = delete;
    Fill& operator=(const Fill&) = delete;
    ~Fill() {
      if (reader_.waiter_ == this) reader_.waiter_ = nullptr;
    }

    bool await_ready();
    void await_suspend(std::coroutine_handle<> handle);
    void await_resume() {
      if (suspension_.begun()) suspension_.end(cancelled_);
    }

   private:
    friend class PipeReaderState;
    static bool cancel_leaf(void* self);

    PipeReaderState& reader_;
    Suspension suspension_;
    bool cancelled_ = false;
  };

 private:
  struct Op : core::Operation {
    PipeReaderState* owner = nullptr;
  };

  // Starts one read. true: nothing to wait for (it completed inline, or the pipe is done).
  bool start_read();
  void record(std::int64_t result);
  // Inside the backend's dispatch: record and schedule only.
  static void on_complete(core::Operation* operation);

  core::NativeHandle pipe_;
  std::size_t limit_;
  std::string buffer_;
  std::size_t pos_ = 0;  // consumed prefix of buffer_
  bool eof_ = false;
  std::exception_ptr error_;
  Op op_;
  std::unique_ptr<char[]> chunk_;
  Fill* waiter_ = nullptr;
  std::shared_ptr<PipeReaderState> keepalive_;  // set while the read is in flight
};

// Up to n bytes (n < 0: to EOF), as PipeReader::read.
Coro<std::string> read_pipe(std::shared_ptr<PipeReaderState> r, std::ptrdiff_t n);

// ---------------------------------------------------------------------------------------
// Our end of the child's stdin: a write queue drained in the background.

class PipeSink final : public LoopResource {
 public:
  PipeSink(EventLoop& loop, std::shared_ptr<LoopResources> resources, core::NativeHandle pipe)
      : LoopResource(loop, std::move(resources)), pipe_(pipe) {
    op_.owner = this;
  }
  ~PipeSink() override;

  void loop_closing() override;

  std::size_t buffer_size() const noexcept { return sending_.size() - sent_ + pending_.size(); }
  bool is_closing() const noexcept { return closing_ || closed_; }
  bool closed() const noexcept { return closed_; }
  bool paused() const noexcept { return paused_; }
  std::exception_ptr error() const noexcept { return error_; }
  WaitList& drain_waiters() noexcept { return drain_waiters_; }
  WaitList& closed_waiters() noexcept { return closed_waiters_; }

  void write(std::string_view data);
  void close();

 private:
  struct Op : core::Operation {
    PipeSink* owner = nullptr;
  };

  // Writes until the queue is empty or the pipe is full (then a write stays in flight).
  void flush();
  // Accounts for one write's result; false when flushing must stop.
  bool advance(std::int64_t result);
  // Inside the backend's dispatch: schedule the rest for the loop.
  static void on_complete(core::Operation* operation);
  void finish_close(std::exception_ptr error);

  core::NativeHandle pipe_;
  // Bytes being written (`sending_` from `sent_` on: the op points into it) and bytes queued
  // behind them; they swap when `sending_` is done, so nothing moves under the op.
  std::string sending_;
  std::string pending_;
  std::size_t sent_ = 0;
  Op op_;
  bool busy_ = false;  // a write is in flight or its continuation is queued
  bool paused_ = false;
  bool closing_ = false;
  bool closed_ = false;
  std::exception_ptr error_;
  WaitList drain_waiters_;
  WaitList closed_waiters_;
  std::shared_ptr<PipeSink> keepalive_;
};

// As PipeWriter::drain.
Coro<void> drain_pipe(std::shared_ptr<PipeSink> sink);

// What PipeWriter handles share: the last one to go closes stdin (after the queued bytes).
class PipeWriterState {
 public:
  explicit PipeWriterState(std::shared_ptr<PipeSink> sink) noexcept : sink(std::move(sink)) {}
  ~PipeWriterState() { sink->close(); }
  std::shared_ptr<PipeSink> sink;
};

}  // namespace corio::detail
