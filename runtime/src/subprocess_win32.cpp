// Subprocesses on Windows (the twin of subprocess_posix.cpp, same public API, same semantics).
//  * Spawning: CreateProcessW with a UTF-16 command line built from argv by the MSVC quoting
//    rules (what Python's subprocess.list2cmdline does), so the child's CRT splits it back
//    into the same argv. create_subprocess_shell runs `%ComSpec% /c "cmd"` as Python does.
//    STARTUPINFOEX with PROC_THREAD_ATTRIBUTE_HANDLE_LIST: the child inherits exactly its
//    three standard handles, never a pipe end another thread is creating for another child
//    at the same moment (a leaked write end would keep that child's reader from seeing EOF).
//    corio's own spawns are also serialised by a mutex, which covers wine, whose
//    CreateProcess ignores the handle list.
//  * Pipes: anonymous pipes cannot do overlapped I/O, so each PIPE is a uniquely named pipe.
//    Our end is overlapped and driven by the loop's backend (read_at / write_at are
//    ReadFile / WriteFile on the completion port); the child's end is inheritable and
//    synchronous, as programs expect of their standard handles.
//  * Waiting: RegisterWaitForSingleObject on the process handle. The thread pool's wait
//    thread posts the exit to the loop with call_soon_threadsafe. Chosen over a thread per
//    child because one pool thread watches up to 63 handles, and over job-object completion
//    messages because those would put packets that are not Operations on the backend's port.
//    A wait is always unregistered with UnregisterWaitEx(INVALID_HANDLE_VALUE), which
//    returns only once the callback is not running, so its context can then be freed.
//    Windows has no zombies: a Process dropped early just closes its handle, and the child
//    runs on unwatched.
//  * Signals: Windows has none to send. terminate() and kill() are TerminateProcess with exit
//    code 1 (Python's Popen.terminate), so returncode is 1, not -SIGTERM. send_signal(SIGTERM)
//    terminates; SIGINT/SIGBREAK (Python's CTRL_C_EVENT/CTRL_BREAK_EVENT) raise
//    NotImplementedError: console control events reach whole process groups sharing our
//    console, not one child, and cannot be tested under wine; other numbers raise ValueError.
// Nothing here may block the loop (the only blocking call, UnregisterWaitEx, waits at most
// for a callback that only posts), no operation's buffer may move while it is in flight,
// and no handle may outlive its owner.
#ifdef _WIN32

// clang-format off
#include <windows.h>
// clang-format on

#include <algorithm>
#include <atomic>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <random>
#include <string>
#include <tuple>
#include <unordered_map>

#include "corio/core/errors.hpp"
#include "corio/core/win32_error.hpp"
#include "corio/detail/suspension.hpp"
#include "corio/event_loop.hpp"
#include "corio/gather.hpp"
#include "corio/subprocess.hpp"

namespace corio {
namespace detail {
namespace {

constexpr std::size_t kReadChunk = 64 * 1024;
constexpr std::size_t kWriteChunk = 64 * 1024;  // one WriteFile at most: bounds what the
                                                // kernel pins, and lets drain() see progress
constexpr std::size_t kHighWater = 64 * 1024;   // asyncio's transport defaults
constexpr std::size_t kLowWater = kHighWater / 4;
constexpr DWORD kPipeBuffer = 64 * 1024;
constexpr int kTerminatedExitCode = 1;  // what Python's Popen.terminate() gives TerminateProcess

HANDLE handle_of(core::NativeHandle h) noexcept {
  return reinterpret_cast<HANDLE>(h);
}
core::NativeHandle native_of(HANDLE h) noexcept {
  return reinterpret_cast<core::NativeHandle>(h);
}

std::exception_ptr os_error(int error, const char* context) {
  try {
    throw_os_error(error, context);
  } catch (...) {
    return std::current_exception();
  }
}

// Reads GetLastError() before anything (building a std::string) can change it.
[[noreturn]] void throw_last_error(const char* context) {
  const DWORD error = ::GetLastError();
  throw_os_error(core::win32::errno_from_error(error), context);
}

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

  void wake_all() {
    while (WaitLeaf* leaf = head_) {
      unlink(leaf);
      leaf->suspension_.wake();
    }
  }

 private:
  friend class WaitLeaf;
  void push(WaitLeaf* leaf) noexcept {
    leaf->prev_ = tail_;
    leaf->next_ = nullptr;
    (tail_ ? tail_->next_ : head_) = leaf;
    tail_ = leaf;
    leaf->linked_ = true;
  }
  void unlink(WaitLeaf* leaf) noexcept {
    (leaf->prev_ ? leaf->prev_->next_ : head_) = leaf->next_;
    (leaf->next_ ? leaf->next_->prev_ : tail_) = leaf->prev_;
    leaf->prev_ = leaf->next_ = nullptr;
    leaf->linked_ = false;
  }

  WaitLeaf* head_ = nullptr;
  WaitLeaf* tail_ = nullptr;
};

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

  void link(LoopResource* r) noexcept {
    r->prev_ = nullptr;
    r->next_ = head_;
    if (head_) head_->prev_ = r;
    head_ = r;
    r->linked_ = true;
  }
  void unlink(LoopResource* r) noexcept {
    if (!r->linked_) return;
    (r->prev_ ? r->prev_->next_ : head_) = r->next_;
    if (r->next_) r->next_->prev_ = r->prev_;
    r->prev_ = r->next_ = nullptr;
    r->linked_ = false;
  }

  void close() {
    {
      std::lock_guard lock(mutex_);
      loop_for_threads_ = nullptr;
    }
    while (LoopResource* r = head_) {
      unlink(r);
      // Whoever else holds it may let go inside loop_closing: keep it alive for the call.
      std::shared_ptr<LoopResource> keep = r->weak_from_this().lock();
      r->loop_closing();
    }
  }

  // For other threads (the wait callback): posts `callback` to the loop unless it has closed.
  void post_from_thread(absl::AnyInvocable<void(EventLoop&)> callback) {
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

 private:
  std::mutex mutex_;
  EventLoop* loop_for_threads_;
  LoopResource* head_ = nullptr;  // loop thread only
};

struct ResourceRegistry {
  std::mutex mutex;
  std::unordered_map<const EventLoop*, std::shared_ptr<LoopResources>> map;
};
ResourceRegistry& resource_registry() {
  static ResourceRegistry* r = new ResourceRegistry;  // never destroyed: loops may close at exit
  return *r;
}

std::shared_ptr<LoopResources> resources_for(EventLoop& loop) {
  ResourceRegistry& r = resource_registry();
  {
    std::lock_guard lock(r.mutex);
    if (auto it = r.map.find(&loop); it != r.map.end()) return it->second;
  }
  loop.check_open();
  auto resources = std::make_shared<LoopResources>(loop);
  {
    std::lock_guard lock(r.mutex);
    r.map.emplace(&loop, resources);
  }
  loop.at_close([&loop] {
    std::shared_ptr<LoopResources> closing;
    {
      ResourceRegistry& reg = resource_registry();
      std::lock_guard lock(reg.mutex);
      auto it = reg.map.find(&loop);
      if (it == reg.map.end()) return;
      closing = std::move(it->second);
      reg.map.erase(it);
    }
    closing->close();
  });
  return resources;
}

LoopResource::LoopResource(EventLoop& loop, std::shared_ptr<LoopResources> resources)
    : loop_(&loop), resources_(std::move(resources)) {
  resources_->link(this);
}

void LoopResource::detach_from_loop() noexcept {
  if (loop_ != nullptr) resources_->unlink(this);
}

// Closes our end of a pipe: through the backend while the loop lives (it cancels what is in
// flight and forgets the handle), directly after.
void close_pipe_handle(EventLoop* loop, HANDLE& handle) noexcept {
  if (handle == INVALID_HANDLE_VALUE) return;
  const HANDLE h = std::exchange(handle, INVALID_HANDLE_VALUE);
  if (loop != nullptr) {
    loop->backend().close(native_of(h));
  } else {
    ::CloseHandle(h);
  }
}

}  // namespace

// ---------------------------------------------------------------------------------------
// Our end of a stdout/stderr pipe and the bytes read from it but not consumed yet.

class PipeReaderState final : public LoopResource {
 public:
  PipeReaderState(EventLoop& loop, std::shared_ptr<LoopResources> resources, HANDLE pipe,
                  std::size_t limit)
      : LoopResource(loop, std::move(resources)), pipe_(pipe), limit_(limit) {
    op_.owner = this;
  }
  ~PipeReaderState() override {
    detach_from_loop();
    close_pipe_handle(loop_, pipe_);
  }

  void loop_closing() override {
    eof_ = true;
    // Cancels a read in flight. Its packet is never dispatched now, so the keep-alive stays:
    // the op and its buffer must outlive whatever the kernel still writes (see the backend).
    close_pipe_handle(loop_, pipe_);
    loop_ = nullptr;
  }

  std::size_t available() const noexcept { return buffer_.size() - pos_; }
  std::string_view view() const noexcept { return {buffer_.data() + pos_, available()}; }
  bool eof() const noexcept { return eof_; }
  std::size_t limit() const noexcept { return limit_; }
  void check_error() const {
    if (error_) std::rethrow_exception(error_);
  }

  std::string take(std::size_t n) {
    n = std::min(n, available());
    std::string out;
    if (pos_ == 0 && n == buffer_.size()) {
      out = std::move(buffer_);
      buffer_.clear();
    } else {
      out.assign(buffer_, pos_, n);
      pos_ += n;
    }
    if (pos_ == buffer_.size()) {
      buffer_.clear();
      pos_ = 0;
    }
    return out;
  }
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

    bool await_ready() {
      if (reader_.waiter_ != nullptr) {
        throw RuntimeError(
            "read() called while another coroutine is already waiting for incoming data");
      }
      return reader_.start_read();
    }
    void await_suspend(std::coroutine_handle<> handle) {
      suspension_.begin(handle);
      reader_.waiter_ = this;
      suspension_.arm({&cancel_leaf, this});
    }
    void await_resume() {
      if (suspension_.begun()) suspension_.end(cancelled_);
    }

   private:
    friend class PipeReaderState;
    static bool cancel_leaf(void* self) {
      auto* fill = static_cast<Fill*>(self);
      PipeReaderState& reader = fill->reader_;
      if (reader.waiter_ != fill) return false;  // the read completed: wake-up queued
      reader.waiter_ = nullptr;
      fill->cancelled_ = true;
      fill->suspension_.wake();
      // CancelIoEx may lose the race: bytes that arrive anyway wait in the buffer for the
      // next read, so a cancelled read loses nothing.
      if (reader.op_.in_flight() && reader.loop_ != nullptr)
        reader.loop_->backend().cancel(reader.op_);
      return true;
    }

    PipeReaderState& reader_;
    Suspension suspension_;
    bool cancelled_ = false;
  };

 private:
  struct Op : core::Operation {
    PipeReaderState* owner = nullptr;
  };

  // Starts one read. true: nothing to wait for (it completed inline, or the pipe is done).
  bool start_read() {
    if (eof_ || error_ || pipe_ == INVALID_HANDLE_VALUE || loop_ == nullptr) return true;
    if (op_.in_flight()) return false;  // a cancelled read is still finishing
    if (!chunk_) chunk_ = std::make_unique<char[]>(kReadChunk);
    op_.code = core::OpCode::read_at;
    op_.offset = ~std::uint64_t{0};  // a pipe has no offset
    op_.handle = native_of(pipe_);
    op_.buffer = chunk_.get();
    op_.length = kReadChunk;
    op_.on_complete = &on_complete;
    op_.state = core::OpState::idle;
    op_.result = 0;
    if (loop_->backend().start(op_)) {
      record(op_.result);
      return true;
    }
    keepalive_ = std::static_pointer_cast<PipeReaderState>(shared_from_this());
    return false;
  }

  void record(std::int64_t result) {
    if (result > 0) {
      if (pos_ > 0 && pos_ >= buffer_.size() / 2) {
        buffer_.erase(0, pos_);
        pos_ = 0;
      }
      buffer_.append(chunk_.get(), static_cast<std::size_t>(result));
    } else if (result == 0) {
      // The backend reads a broken pipe (the child's end closed) as 0 bytes. So does a
      // zero-length WriteFile by the child on a byte-mode pipe, which is no EOF: the pipe
      // still answers a peek then.
      DWORD waiting = 0;
      if (pipe_ == INVALID_HANDLE_VALUE ||
          !::PeekNamedPipe(pipe_, nullptr, 0, nullptr, &waiting, nullptr)) {
        eof_ = true;
      }
    } else if (result != -ECANCELED && result != -EAGAIN && result != -EINTR) {
      error_ = os_error(static_cast<int>(-result), "read from subprocess pipe");
    }
  }

  // Inside the backend's dispatch: record and schedule only.
  static void on_complete(core::Operation* operation) {
    PipeReaderState* reader = static_cast<Op*>(operation)->owner;
    std::shared_ptr<PipeReaderState> self = std::move(reader->keepalive_);  // released on return
    reader->record(operation->result);
    if (Fill* waiter = std::exchange(reader->waiter_, nullptr)) waiter->suspension_.wake();
  }

  HANDLE pipe_;
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

// ---------------------------------------------------------------------------------------
// Our end of the child's stdin: a write queue drained in the background.

namespace {

class PipeSink final : public LoopResource {
 public:
  PipeSink(EventLoop& loop, std::shared_ptr<LoopResources> resources, HANDLE pipe)
      : LoopResource(loop, std::move(resources)), pipe_(pipe) {
    op_.owner = this;
  }
  ~PipeSink() override {
    detach_from_loop();
    close_pipe_handle(loop_, pipe_);
  }

  void loop_closing() override {
    close_pipe_handle(loop_, pipe_);  // cancels a write in flight (its keep-alive stays)
    loop_ = nullptr;
    closed_ = closing_ = true;
  }

  std::size_t buffer_size() const noexcept { return sending_.size() - sent_ + pending_.size(); }
  bool is_closing() const noexcept { return closing_ || closed_; }
  bool closed() const noexcept { return closed_; }
  bool paused() const noexcept { return paused_; }
  std::exception_ptr error() const noexcept { return error_; }
  WaitList& drain_waiters() noexcept { return drain_waiters_; }
  WaitList& closed_waiters() noexcept { return closed_waiters_; }

  void write(std::string_view data) {
    // asyncio's pipe transport ignores writes once it is closing or the pipe is lost.
    if (data.empty() || closing_ || closed_ || loop_ == nullptr) return;
    if (!busy_ && buffer_size() == 0) {
      sending_.assign(data);
      sent_ = 0;
      flush();
    } else {
      pending_.append(data);
    }
    if (!paused_ && buffer_size() > kHighWater) paused_ = true;
  }

  void close() {
    if (closing_ || closed_) return;
    closing_ = true;
    if (!busy_ && buffer_size() == 0) finish_close(nullptr);
  }

 private:
  struct Op : core::Operation {
    PipeSink* owner = nullptr;
  };

  // Writes until the queue is empty or the pipe is full (then a write stays in flight).
  void flush() {
    while (!closed_) {
      if (sent_ == sending_.size()) {
        sending_.clear();
        sent_ = 0;
        if (pending_.empty()) break;
        std::swap(sending_, pending_);
      }
      op_.code = core::OpCode::write_at;
      op_.offset = ~std::uint64_t{0};
      op_.handle = native_of(pipe_);
      op_.buffer = sending_.data() + sent_;
      op_.length = std::min(sending_.size() - sent_, kWriteChunk);
      op_.flags = 0;
      op_.on_complete = &on_complete;
      op_.state = core::OpState::idle;
      op_.result = 0;
      if (!loop_->backend().start(op_)) {
        busy_ = true;
        keepalive_ = std::static_pointer_cast<PipeSink>(shared_from_this());
        return;
      }
      if (!advance(op_.result)) return;
    }
    if (closing_ && !closed_) finish_close(nullptr);
  }

  bool advance(std::int64_t result) {
    if (result >= 0) {
      sent_ += static_cast<std::size_t>(result);
      if (paused_ && buffer_size() <= kLowWater) {
        paused_ = false;
        drain_waiters_.wake_all();
      }
      return true;
    }
    if (result == -ECANCELED) return false;
    // The child closed its end: ERROR_BROKEN_PIPE / STATUS_PIPE_BROKEN (EPIPE), or, for a
    // write issued after that, ERROR_NO_DATA ("the pipe is being closed"), which the error
    // table reads as EAGAIN. Our pipe blocks, so EAGAIN means nothing else here. The pipe is
    // lost and queued bytes are dropped.
    const int error = result == -EAGAIN ? EPIPE : static_cast<int>(-result);
    sending_.clear();
    pending_.clear();
    sent_ = 0;
    finish_close(os_error(error, "write to subprocess stdin"));
    return false;
  }

  // Inside the backend's dispatch: schedule the rest for the loop.
  static void on_complete(core::Operation* operation) {
    PipeSink* sink = static_cast<Op*>(operation)->owner;
    std::shared_ptr<PipeSink> self = std::move(sink->keepalive_);
    if (sink->loop_ == nullptr) {  // the loop is closing and closed the pipe under us
      sink->busy_ = false;
      return;
    }
    sink->loop_->call_soon([self = std::move(self)] {
      self->busy_ = false;
      if (self->loop_ != nullptr && self->advance(self->op_.result)) self->flush();
    });
  }

  void finish_close(std::exception_ptr error) {
    if (closed_) return;
    closed_ = closing_ = true;
    error_ = std::move(error);
    close_pipe_handle(loop_, pipe_);
    paused_ = false;
    drain_waiters_.wake_all();
    closed_waiters_.wake_all();
  }

  HANDLE pipe_;
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

}  // namespace

// What PipeWriter handles share: the last one to go closes stdin (after the queued bytes).
class PipeWriterState {
 public:
  explicit PipeWriterState(std::shared_ptr<PipeSink> sink) noexcept : sink(std::move(sink)) {}
  ~PipeWriterState() { sink->close(); }
  std::shared_ptr<PipeSink> sink;
};

// ---------------------------------------------------------------------------------------
// The child: its process handle, the registered wait on it, and its exit status.

namespace {

// The context of one registered wait. The pool thread reads it; it is freed only after
// UnregisterWaitEx(INVALID_HANDLE_VALUE) says the callback is not running and never will.
struct ExitWatch {
  std::weak_ptr<LoopResource> process;
  std::shared_ptr<LoopResources> resources;
  std::atomic<bool> fired{false};
  HANDLE wait = nullptr;
};

}  // namespace

class ProcessState final : public LoopResource {
 public:
  ProcessState(EventLoop& loop, std::shared_ptr<LoopResources> resources, HANDLE process, DWORD pid)
      : LoopResource(loop, std::move(resources)), process_(process), pid_(pid) {}
  ~ProcessState() override {
    detach_from_loop();
    stop_watch();
    ::CloseHandle(process_);
  }

  void loop_closing() override {
    stop_watch();
    loop_ = nullptr;  // the handle stays ours until the Process goes: pid() and kill() work
  }

  DWORD pid() const noexcept { return pid_; }
  const std::optional<int>& returncode() const noexcept { return returncode_; }
  WaitList& exit_waiters() noexcept { return exit_waiters_; }

  void start_watch() {
    auto watch = std::make_unique<ExitWatch>();
    watch->process = weak_from_this();
    watch->resources = resources_;
    // The exit comes from outside the loop: virtual time must wait for it.
    loop_->add_external_work();
    if (!::RegisterWaitForSingleObject(&watch->wait, process_, &on_signalled, watch.get(), INFINITE,
                                       WT_EXECUTEONLYONCE)) {
      const DWORD error = ::GetLastError();
      loop_->remove_external_work();
      throw_os_error(core::win32::errno_from_error(error), "RegisterWaitForSingleObject");
    }
    watch_ = std::move(watch);
  }

  void send_signal(int sig) {
    if (sig == SIGTERM) {
      terminate();
      return;
    }
    if (returncode_) throw ProcessLookupError(ESRCH, "the process has already exited");
    if (sig == SIGINT || sig == SIGBREAK) {
      throw NotImplementedError(
          "send_signal: console control events (SIGINT, SIGBREAK) are not supported on "
          "Windows; use terminate() or kill()");
    }
    throw ValueError("Unsupported signal: " + std::to_string(sig));
  }

  void terminate() {
    if (returncode_) throw ProcessLookupError(ESRCH, "the process has already exited");
    if (::TerminateProcess(process_, kTerminatedExitCode)) return;
    const DWORD error = ::GetLastError();
    // Access is denied to a process that has already exited (and is not waited for yet):
    // it is gone, which is what was asked for (Python's Popen.terminate does the same).
    DWORD code = 0;
    if (error == ERROR_ACCESS_DENIED && ::GetExitCodeProcess(process_, &code) &&
        code != STILL_ACTIVE) {
      return;
    }
    throw_os_error(core::win32::errno_from_error(error), "TerminateProcess");
  }

 private:
  // On the thread pool's wait thread: post, nothing else.
  static void CALLBACK on_signalled(void* context, BOOLEAN /*timed_out*/) {
    auto* watch = static_cast<ExitWatch*>(context);
    watch->fired.store(true, std::memory_order_release);
    std::weak_ptr<LoopResource> weak = watch->process;
    watch->resources->post_from_thread([weak = std::move(weak)](EventLoop& loop) {
      loop.remove_external_work();
      if (auto self = weak.lock()) static_cast<ProcessState&>(*self).exited();
    });
  }

  void exited() {
    if (returncode_) return;
    stop_watch();
    DWORD code = 0;
    if (!::GetExitCodeProcess(process_, &code)) code = 255;
    returncode_ = static_cast<int>(code);
    exit_waiters_.wake_all();
  }

  // Unregisters the wait (blocking until its callback, if running, has returned). Loop thread
  // only, or after the loop has closed.
  void stop_watch() noexcept {
    if (!watch_) return;
    std::unique_ptr<ExitWatch> watch = std::move(watch_);
    ::UnregisterWaitEx(watch->wait, INVALID_HANDLE_VALUE);
    // Not fired: nothing was posted, so the external work is ours to give back.
    if (!watch->fired.load(std::memory_order_acquire) && loop_ != nullptr)
      loop_->remove_external_work();
  }

  HANDLE process_;
  DWORD pid_;
  std::optional<int> returncode_;
  std::unique_ptr<ExitWatch> watch_;
  WaitList exit_waiters_;
};

void set_pidfd_child_watcher_enabled(bool) noexcept {}  // no pidfd on Windows

}  // namespace detail

// ---------------------------------------------------------------------------------------
// The coroutines behind the public methods. Each holds its state by shared_ptr, so a
// handle dropped while they run does not pull the state from under them.

namespace {

using detail::PipeReaderState;
using detail::PipeSink;
using detail::ProcessState;
using detail::WaitLeaf;

Coro<std::string> read_impl(std::shared_ptr<PipeReaderState> r, std::ptrdiff_t n) {
  r->check_error();
  if (n == 0) co_return std::string();
  if (n < 0) {
    while (!r->eof()) {
      co_await PipeReaderState::Fill(*r);
      r->check_error();
    }
    co_return r->take(r->available());
  }
  while (r->available() == 0 && !r->eof()) {
    co_await PipeReaderState::Fill(*r);
    r->check_error();
  }
  co_return r->take(static_cast<std::size_t>(n));
}

Coro<std::string> readexactly_impl(std::shared_ptr<PipeReaderState> r, std::size_t n) {
  r->check_error();
  while (r->available() < n) {
    if (r->eof()) {
      std::string partial = r->take(r->available());
      throw IncompleteReadError(std::move(partial), n);
    }
    co_await PipeReaderState::Fill(*r);
    r->check_error();
  }
  co_return r->take(n);
}

// The offset just past `separator`, reading more as needed. Raises as asyncio's readuntil.
Coro<std::size_t> find_separator(std::shared_ptr<PipeReaderState> r, std::string separator) {
  if (separator.empty()) throw ValueError("Separator should be at least one-byte string");
  std::size_t searched = 0;  // bytes already known not to start a match
  for (;;) {
    r->check_error();
    const std::string_view data = r->view();
    if (data.size() >= separator.size()) {
      const std::size_t found = data.find(separator, searched);
      if (found != std::string_view::npos) {
        if (found > r->limit()) {
          throw LimitOverrunError("Separator is found, but chunk is longer than limit", found);
        }
        co_return found + separator.size();
      }
      searched = data.size() - separator.size() + 1;
      if (searched > r->limit()) {
        throw LimitOverrunError("Separator is not found, and chunk exceed the limit", searched);
      }
    }
    if (r->eof()) {
      std::string partial = r->take(r->available());
      throw IncompleteReadError(std::move(partial), 0);
    }
    co_await PipeReaderState::Fill(*r);
  }
}

Coro<std::string> readuntil_impl(std::shared_ptr<PipeReaderState> r, std::string separator) {
  const std::size_t end = co_await find_separator(r, std::move(separator));
  co_return r->take(end);
}

Coro<std::string> readline_impl(std::shared_ptr<PipeReaderState> r) {
  std::size_t end = 0;
  std::string partial;
  bool incomplete = false;
  std::optional<std::string> overrun;
  try {
    end = co_await find_separator(r, "\n");
  } catch (IncompleteReadError& e) {
    partial = e.partial();
    incomplete = true;
  } catch (const LimitOverrunError& e) {
    // asyncio drops the over-long line (through its newline when it is buffered).
    const std::string_view data = r->view();
    if (data.substr(e.consumed()).starts_with("\n")) {
      r->discard(e.consumed() + 1);
    } else {
      r->discard(data.size());
    }
    overrun = e.what();
  }
  if (overrun) throw ValueError(*overrun);
  if (incomplete) co_return partial;
  co_return r->take(end);
}

Coro<void> drain_impl(std::shared_ptr<PipeSink> sink) {
  for (;;) {
    // As asyncio's FlowControlMixin: once the pipe is gone, drain() says so.
    if (sink->closed()) throw ConnectionResetError(ECONNRESET, "Connection lost");
    if (!sink->paused()) co_return;
    co_await WaitLeaf(sink->drain_waiters());
  }
}

Coro<void> wait_closed_impl(std::shared_ptr<PipeSink> sink) {
  while (!sink->closed()) co_await WaitLeaf(sink->closed_waiters());
  if (std::exception_ptr error = sink->error()) std::rethrow_exception(error);
}

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
      co_await drain_impl(sink);
    } catch (const ConnectionError&) {
      // A child that exits or closes stdin without reading it all is not an error here
      // (asyncio ignores BrokenPipeError and ConnectionResetError the same way).
    }
  }
  sink->close();
}

Coro<std::string> read_to_end(std::shared_ptr<PipeReaderState> reader) {
  if (!reader) co_return std::string();
  co_return co_await read_impl(std::move(reader), -1);
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
// Public methods.

Coro<std::string> PipeReader::read(std::ptrdiff_t n) {
  return read_impl(state_, n);
}
Coro<std::string> PipeReader::readline() {
  return readline_impl(state_);
}
Coro<std::string> PipeReader::readexactly(std::size_t n) {
  return readexactly_impl(state_, n);
}
Coro<std::string> PipeReader::readuntil(std::string separator) {
  return readuntil_impl(state_, std::move(separator));
}
bool PipeReader::at_eof() const noexcept {
  return state_->eof() && state_->available() == 0;
}

void PipeWriter::write(std::string_view data) {
  state_->sink->write(data);
}
void PipeWriter::writelines(std::initializer_list<std::string_view> lines) {
  for (std::string_view line : lines) state_->sink->write(line);
}
Coro<void> PipeWriter::drain() {
  return drain_impl(state_->sink);
}
void PipeWriter::close() {
  state_->sink->close();
}
bool PipeWriter::is_closing() const noexcept {
  return state_->sink->is_closing();
}
Coro<void> PipeWriter::wait_closed() {
  return wait_closed_impl(state_->sink);
}
std::size_t PipeWriter::get_write_buffer_size() const noexcept {
  return state_->sink->buffer_size();
}

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
  return static_cast<int>(state_->pid());
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
  state_->terminate();  // Windows has one way to end a process (asyncio: kill = terminate)
}

// ---------------------------------------------------------------------------------------
// Spawning.

namespace {

using detail::handle_of;
using detail::kPipeBuffer;
using detail::throw_last_error;

// A handle closed when it goes out of scope unless released.
class OwnedHandle {
 public:
  OwnedHandle() = default;
  explicit OwnedHandle(HANDLE h) noexcept : h_(h) {}
  OwnedHandle(OwnedHandle&& other) noexcept : h_(std::exchange(other.h_, nullptr)) {}
  OwnedHandle& operator=(OwnedHandle&& other) noexcept {
    reset(std::exchange(other.h_, nullptr));
    return *this;
  }
  ~OwnedHandle() { reset(); }
  HANDLE get() const noexcept { return h_; }
  HANDLE release() noexcept { return std::exchange(h_, nullptr); }
  void reset(HANDLE h = nullptr) noexcept {
    if (h_ != nullptr && h_ != INVALID_HANDLE_VALUE) ::CloseHandle(h_);
    h_ = h;
  }

 private:
  HANDLE h_ = nullptr;
};

// UTF-8 → UTF-16. ValueError for invalid UTF-8 or an embedded NUL (as Python's
// "embedded null character"), which would silently cut a Windows string short.
std::wstring widen(std::string_view s, const char* what) {
  if (s.find('\0') != std::string_view::npos)
    throw ValueError(std::string("embedded null character in ") + what);
  if (s.empty()) return {};
  const int n = ::MultiByteToWideChar(CP_UTF8, MB_ERR_INVALID_CHARS, s.data(),
                                      static_cast<int>(s.size()), nullptr, 0);
  if (n <= 0) throw ValueError(std::string("invalid UTF-8 in ") + what);
  std::wstring out(static_cast<std::size_t>(n), L'\0');
  ::MultiByteToWideChar(CP_UTF8, MB_ERR_INVALID_CHARS, s.data(), static_cast<int>(s.size()),
                        out.data(), n);
  return out;
}

// Appends one argument quoted so that the MSVC runtime's parser (CommandLineToArgvW and
// every C/C++ program's main) gives it back unchanged: quotes only when it is empty or holds
// a space or tab; backslashes are literal unless they precede a quote, where each is doubled
// and the quote escaped.
void append_quoted(std::wstring& line, std::wstring_view arg) {
  if (!line.empty()) line += L' ';
  const bool quote = arg.empty() || arg.find_first_of(L" \t") != std::wstring_view::npos;
  if (quote) line += L'"';
  std::size_t backslashes = 0;
  for (const wchar_t c : arg) {
    if (c == L'\\') {
      ++backslashes;
      continue;
    }
    if (c == L'"') {
      line.append(backslashes * 2 + 1, L'\\');
    } else {
      line.append(backslashes, L'\\');
    }
    backslashes = 0;
    line += c;
  }
  line.append(backslashes, L'\\');
  if (quote) {
    line.append(backslashes, L'\\');  // so the closing quote is not escaped
    line += L'"';
  }
}

// Environment variable `name` of this process, UTF-16; empty when unset.
std::wstring getenv_wide(const wchar_t* name) {
  const DWORD n = ::GetEnvironmentVariableW(name, nullptr, 0);
  if (n == 0) return {};
  std::wstring value(n, L'\0');
  const DWORD got = ::GetEnvironmentVariableW(name, value.data(), n);
  value.resize(got < n ? got : 0);
  return value;
}

// The child's environment block: "NAME=value\0...\0\0", sorted by name without regard to
// case, as CreateProcess documents it wants (CPython sorts it too).
std::wstring environment_block(const std::vector<std::string>& env) {
  std::vector<std::wstring> entries;
  entries.reserve(env.size());
  for (const std::string& e : env) entries.push_back(widen(e, "env"));
  // A name may start with '=' (the per-drive current directories): its '=' is part of it.
  auto name_of = [](const std::wstring& e) {
    const std::size_t eq = e.find(L'=', 1);
    return std::wstring_view(e).substr(0, eq == std::wstring::npos ? e.size() : eq);
  };
  std::stable_sort(
      entries.begin(), entries.end(), [&](const std::wstring& a, const std::wstring& b) {
        const std::wstring_view na = name_of(a), nb = name_of(b);
        return ::CompareStringOrdinal(na.data(), static_cast<int>(na.size()), nb.data(),
                                      static_cast<int>(nb.size()), TRUE) == CSTR_LESS_THAN;
      });
  std::wstring block;
  for (const std::wstring& e : entries) {
    block += e;
    block += L'\0';
  }
  if (entries.empty()) block += L'\0';
  block += L'\0';
  return block;
}

// One pipe for a standard stream: our end overlapped (for the completion port) and not
// inheritable, the child's end synchronous and inheritable.
void make_pipe(bool child_reads, OwnedHandle& ours, OwnedHandle& childs) {
  static std::atomic<unsigned long long> counter{0};
  static const unsigned long salt = [] {
    std::random_device device;
    return static_cast<unsigned long>(device());
  }();
  for (int attempt = 0;; ++attempt) {
    const std::wstring name = L"\\\\.\\pipe\\corio-" + std::to_wstring(::GetCurrentProcessId()) +
                              L"-" + std::to_wstring(salt) + L"-" +
                              std::to_wstring(counter.fetch_add(1, std::memory_order_relaxed));
    const DWORD open_mode = (child_reads ? PIPE_ACCESS_OUTBOUND : PIPE_ACCESS_INBOUND) |
                            FILE_FLAG_OVERLAPPED | FILE_FLAG_FIRST_PIPE_INSTANCE;
    const HANDLE server = ::CreateNamedPipeW(
        name.c_str(), open_mode,
        PIPE_TYPE_BYTE | PIPE_READMODE_BYTE | PIPE_WAIT | PIPE_REJECT_REMOTE_CLIENTS, 1,
        kPipeBuffer, kPipeBuffer, 0, nullptr);
    if (server == INVALID_HANDLE_VALUE) {
      const DWORD error = ::GetLastError();
      // The name is taken (by a stranger squatting on it): take the next one.
      if ((error == ERROR_ACCESS_DENIED || error == ERROR_PIPE_BUSY) && attempt < 16) continue;
      throw_os_error(core::win32::errno_from_error(error), "CreateNamedPipeW");
    }
    ours.reset(server);
    SECURITY_ATTRIBUTES inherit{sizeof inherit, nullptr, TRUE};
    const HANDLE client = ::CreateFileW(
        name.c_str(), child_reads ? GENERIC_READ : (GENERIC_WRITE | FILE_READ_ATTRIBUTES), 0,
        &inherit, OPEN_EXISTING, FILE_ATTRIBUTE_NORMAL, nullptr);
    if (client == INVALID_HANDLE_VALUE) throw_last_error("CreateFileW(pipe)");
    childs.reset(client);
    return;
  }
}

// An inheritable copy of `h` for the child (null when `h` is not a usable handle).
OwnedHandle inheritable_copy(HANDLE h) {
  if (h == nullptr || h == INVALID_HANDLE_VALUE) return {};
  HANDLE copy = nullptr;
  if (!::DuplicateHandle(::GetCurrentProcess(), h, ::GetCurrentProcess(), &copy, 0, TRUE,
                         DUPLICATE_SAME_ACCESS)) {
    throw_last_error("DuplicateHandle");
  }
  return OwnedHandle(copy);
}

// Arranges standard stream `which` (0, 1, 2) of the child: `childs` gets the handle it will
// inherit, `ours` our end of a pipe. `child_stdout` is the child's stdout, for STDOUT.
void plan_stream(int which, const subprocess::Redirect& how, OwnedHandle& childs, OwnedHandle& ours,
                 HANDLE child_stdout) {
  using Kind = subprocess::Redirect::Kind;
  switch (how.kind) {
    case Kind::inherit: {
      static constexpr DWORD kStd[] = {STD_INPUT_HANDLE, STD_OUTPUT_HANDLE, STD_ERROR_HANDLE};
      // No standard handle (a GUI program): the child gets none either. A handle that cannot
      // be duplicated (not a real handle) is left out the same way rather than failing.
      try {
        childs = inheritable_copy(::GetStdHandle(kStd[which]));
      } catch (const OSError&) {
        childs.reset();
      }
      return;
    }
    case Kind::devnull: {
      SECURITY_ATTRIBUTES inherit{sizeof inherit, nullptr, TRUE};
      const HANDLE h = ::CreateFileW(L"NUL", which == 0 ? GENERIC_READ : GENERIC_WRITE,
                                     FILE_SHARE_READ | FILE_SHARE_WRITE, &inherit, OPEN_EXISTING,
                                     FILE_ATTRIBUTE_NORMAL, nullptr);
      if (h == INVALID_HANDLE_VALUE) throw_last_error("CreateFileW(NUL)");
      childs.reset(h);
      return;
    }
    case Kind::stdout_:
      // ValueError for stdin/stdout is raised before anything is created.
      childs = inheritable_copy(child_stdout);
      return;
    case Kind::handle:
      if (how.handle == core::kInvalidHandle || how.handle == 0)
        throw ValueError("invalid handle for a standard stream");
      childs = inheritable_copy(handle_of(how.handle));
      return;
    case Kind::pipe:
      make_pipe(which == 0, ours, childs);
      return;
  }
}

// Serialises corio's spawns: every inheritable handle exists only inside it. The handle list
// already keeps other children from inheriting them on Windows; this also covers wine, which
// ignores the list and hands every inheritable handle to every child.
std::mutex& spawn_mutex() {
  static std::mutex* m = new std::mutex;  // never destroyed: spawns may run at exit
  return *m;
}

// Frees an attribute list however creation ends.
struct AttributeList {
  std::unique_ptr<char[]> storage;
  LPPROC_THREAD_ATTRIBUTE_LIST list = nullptr;
  ~AttributeList() {
    if (list != nullptr) ::DeleteProcThreadAttributeList(list);
  }
};

Process spawn(const std::wstring* application, std::wstring command_line,
              const std::string& program, const SubprocessOptions& options) {
  EventLoop& loop = get_running_loop();
  loop.check_open();
  if (options.std_in.kind == subprocess::Redirect::Kind::stdout_ ||
      options.std_out.kind == subprocess::Redirect::Kind::stdout_) {
    throw ValueError("STDOUT can only be used for stderr");
  }
  std::shared_ptr<detail::LoopResources> resources = detail::resources_for(loop);

  std::wstring cwd;
  if (options.cwd) cwd = widen(*options.cwd, "cwd");
  std::wstring env;
  if (options.env) env = environment_block(*options.env);

  OwnedHandle ours[3];
  PROCESS_INFORMATION info{};
  {
    std::lock_guard lock(spawn_mutex());
    OwnedHandle childs[3];
    plan_stream(0, options.std_in, childs[0], ours[0], nullptr);
    plan_stream(1, options.std_out, childs[1], ours[1], nullptr);
    plan_stream(2, options.std_err, childs[2], ours[2], childs[1].get());

    STARTUPINFOEXW startup{};
    startup.StartupInfo.cb = sizeof startup;
    startup.StartupInfo.dwFlags = STARTF_USESTDHANDLES;
    startup.StartupInfo.hStdInput = childs[0].get();
    startup.StartupInfo.hStdOutput = childs[1].get();
    startup.StartupInfo.hStdError = childs[2].get();

    // Exactly these handles are inherited (each once: the list must not repeat one).
    HANDLE inherit[3];
    DWORD count = 0;
    for (const OwnedHandle& h : childs) {
      if (h.get() != nullptr && std::find(inherit, inherit + count, h.get()) == inherit + count)
        inherit[count++] = h.get();
    }
    AttributeList attributes;
    DWORD flags = CREATE_UNICODE_ENVIRONMENT;
    if (options.start_new_session) flags |= CREATE_NEW_PROCESS_GROUP;
    if (count > 0) {
      SIZE_T size = 0;
      ::InitializeProcThreadAttributeList(nullptr, 1, 0, &size);
      attributes.storage = std::make_unique<char[]>(size);
      auto* list = reinterpret_cast<LPPROC_THREAD_ATTRIBUTE_LIST>(attributes.storage.get());
      if (!::InitializeProcThreadAttributeList(list, 1, 0, &size))
        throw_last_error("InitializeProcThreadAttributeList");
      attributes.list = list;
      if (!::UpdateProcThreadAttribute(list, 0, PROC_THREAD_ATTRIBUTE_HANDLE_LIST, inherit,
                                       count * sizeof(HANDLE), nullptr, nullptr)) {
        throw_last_error("UpdateProcThreadAttribute");
      }
      startup.lpAttributeList = list;
      flags |= EXTENDED_STARTUPINFO_PRESENT;
    }

    if (!::CreateProcessW(application != nullptr ? application->c_str() : nullptr,
                          command_line.data(), nullptr, nullptr, count > 0 ? TRUE : FALSE, flags,
                          options.env ? env.data() : nullptr, options.cwd ? cwd.c_str() : nullptr,
                          &startup.StartupInfo, &info)) {
      throw_last_error(program.c_str());
    }
    // Leaving the scope closes the child's ends: the child has its copies, and ours must go
    // so that it sees EOF and we see a broken pipe when it exits.
  }
  ::CloseHandle(info.hThread);

  auto process =
      std::make_shared<detail::ProcessState>(loop, resources, info.hProcess, info.dwProcessId);
  process->start_watch();

  std::shared_ptr<detail::PipeWriterState> in;
  std::shared_ptr<detail::PipeReaderState> out;
  std::shared_ptr<detail::PipeReaderState> err;
  if (ours[0].get() != nullptr) {
    in = std::make_shared<detail::PipeWriterState>(
        std::make_shared<detail::PipeSink>(loop, resources, ours[0].release()));
  }
  if (ours[1].get() != nullptr) {
    out = std::make_shared<detail::PipeReaderState>(loop, resources, ours[1].release(),
                                                    options.limit);
  }
  if (ours[2].get() != nullptr) {
    err = std::make_shared<detail::PipeReaderState>(loop, resources, ours[2].release(),
                                                    options.limit);
  }
  return Process(std::move(process), std::move(in), std::move(out), std::move(err));
}

}  // namespace

Coro<Process> create_subprocess_exec(std::string program, std::vector<std::string> args,
                                     SubprocessOptions options) {
  // CreateProcessW finds the program as Windows does (the application's directory, the
  // current one, the system directories, then PATH; ".exe" added when it has no extension).
  std::wstring line;
  append_quoted(line, widen(program, "program"));
  for (const std::string& a : args) append_quoted(line, widen(a, "argument"));
  co_return spawn(nullptr, std::move(line), program, options);
}

Coro<Process> create_subprocess_shell(std::string cmd, SubprocessOptions options) {
  // As Python: %ComSpec% (else %SystemRoot%\System32\cmd.exe) /c "cmd", the command given
  // to cmd.exe as is, inside one pair of quotes that cmd.exe strips.
  std::wstring comspec = getenv_wide(L"ComSpec");
  if (comspec.empty()) {
    const std::wstring root = getenv_wide(L"SystemRoot");
    comspec = (root.empty() ? std::wstring(L"C:\\Windows") : root) + L"\\System32\\cmd.exe";
  }
  std::wstring line;
  append_quoted(line, comspec);
  line += L" /c \"";
  line += widen(cmd, "cmd");
  line += L'"';
  co_return spawn(&comspec, std::move(line), "cmd.exe", options);
}

}  // namespace corio

#endif  // _WIN32
