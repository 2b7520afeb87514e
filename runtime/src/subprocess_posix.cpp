// Subprocesses on POSIX.
//  * Spawning: posix_spawn (glibc's is clone+exec and reports exec errors, so a missing
//    program raises FileNotFoundError here, as Python does). The child gets an empty signal
//    mask, every signal at its default action, and no descriptor beyond 0-2; ours are all
//    close-on-exec from birth.
//  * stdout/stderr: pipes, read with read_at ops (offset ~0 means read()).
//  * stdin: a Unix socket pair, written with send ops. A write to a pipe whose reader has gone
//    raises SIGPIPE in the writing thread, which would kill a C++ program (Python ignores
//    SIGPIPE at start-up; a library must not). send() takes MSG_NOSIGNAL, which every
//    backend passes, so a child that exits without reading is only a BrokenPipeError. libuv
//    does the same. The one visible difference: the child cannot open /dev/stdin.
//  * Reaping: a pidfd watched with a wait_readable op (Linux 5.3+), else one thread per child
//    blocked in waitpid (asyncio's ThreadedChildWatcher: SIGCHLD is process-wide and one loop
//    at a time may own a signal, so a SIGCHLD watcher would break with loops on two
//    threads). A child whose loop closes first is handed to a waiting thread: never a zombie.
// Nothing here may block the loop (waitpid is only called with WNOHANG on the loop thread),
// and no operation's buffer may move while the operation is in flight.
#ifndef _WIN32

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <thread>
#include <tuple>
#include <unordered_map>

#include "corio/core/errors.hpp"
#include "corio/detail/suspension.hpp"
#include "corio/event_loop.hpp"
#include "corio/gather.hpp"
#include "corio/subprocess.hpp"

extern char** environ;

namespace corio {
namespace detail {
namespace {

constexpr std::size_t kReadChunk = 64 * 1024;
constexpr std::size_t kHighWater = 64 * 1024;  // asyncio's transport defaults
constexpr std::size_t kLowWater = kHighWater / 4;

std::atomic<bool> g_pidfd_enabled{true};

std::exception_ptr os_error(int error, const char* context) {
  try {
    throw_os_error(error, context);
  } catch (...) {
    return std::current_exception();
  }
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
// Everything that holds a descriptor of a loop registers here, so that closing the loop gives
// the descriptors back while the backend still exists, and later destructors leave it alone.

class LoopResources;

class LoopResource : public std::enable_shared_from_this<LoopResource> {
 public:
  virtual ~LoopResource() = default;
  // The loop is closing: close every descriptor through its backend and forget the loop.
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
      // Whoever else holds it may let go inside loop_closing (a completion releasing its
      // self-reference): keep it alive for the call.
      std::shared_ptr<LoopResource> keep = r->weak_from_this().lock();
      r->loop_closing();
    }
  }

  // For waiting threads: posts `callback` to the loop unless it has closed.
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

}  // namespace

// ---------------------------------------------------------------------------------------
// The read end of a stdout/stderr pipe and the bytes read from it but not consumed yet.

class PipeReaderState final : public LoopResource {
 public:
  PipeReaderState(EventLoop& loop, std::shared_ptr<LoopResources> resources, int fd,
                  std::size_t limit)
      : LoopResource(loop, std::move(resources)), fd_(fd), limit_(limit) {
    op_.owner = this;
  }
  ~PipeReaderState() override {
    detach_from_loop();
    close_fd();
  }

  void loop_closing() override {
    eof_ = true;
    close_fd();  // cancels a read in flight; its completion only records
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
      // A readiness backend has read nothing yet; a completion backend may still deliver
      // bytes, which then wait in the buffer for the next read.
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
    if (eof_ || error_ || fd_ < 0 || loop_ == nullptr) return true;
    if (op_.in_flight()) return false;  // a cancelled read is still finishing
    if (!chunk_) chunk_ = std::make_unique<char[]>(kReadChunk);
    op_.code = core::OpCode::read_at;
    op_.offset = ~std::uint64_t{0};
    op_.handle = fd_;
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
      eof_ = true;
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

  void close_fd() noexcept {
    if (fd_ < 0) return;
    const int fd = std::exchange(fd_, -1);
    if (loop_ != nullptr) {
      loop_->backend().close(fd);
    } else {
      ::close(fd);
    }
  }

  int fd_;
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
  PipeSink(EventLoop& loop, std::shared_ptr<LoopResources> resources, int fd)
      : LoopResource(loop, std::move(resources)), fd_(fd) {
    op_.owner = this;
  }
  ~PipeSink() override {
    detach_from_loop();
    close_fd();
  }

  void loop_closing() override {
    EventLoop* loop = std::exchange(loop_, nullptr);
    if (fd_ >= 0) loop->backend().close(std::exchange(fd_, -1));  // cancels a send in flight
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

  // Sends until the queue is empty or the socket is full (then a send stays in flight).
  void flush() {
    while (!closed_) {
      if (sent_ == sending_.size()) {
        sending_.clear();
        sent_ = 0;
        if (pending_.empty()) break;
        std::swap(sending_, pending_);
      }
      op_.code = core::OpCode::send;
      op_.handle = fd_;
      op_.buffer = sending_.data() + sent_;
      op_.length = sending_.size() - sent_;
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
    if (result == -EAGAIN || result == -EINTR) return true;
    if (result == -ECANCELED) return false;
    // The child closed its end (EPIPE): the pipe is lost, queued bytes are dropped.
    sending_.clear();
    pending_.clear();
    sent_ = 0;
    finish_close(os_error(static_cast<int>(-result), "write to subprocess stdin"));
    return false;
  }

  // Inside the backend's dispatch: schedule the rest for the loop.
  static void on_complete(core::Operation* operation) {
    PipeSink* sink = static_cast<Op*>(operation)->owner;
    std::shared_ptr<PipeSink> self = std::move(sink->keepalive_);
    if (sink->loop_ == nullptr) {  // the loop is closing and closed the socket under us
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
    close_fd();
    paused_ = false;
    drain_waiters_.wake_all();
    closed_waiters_.wake_all();
  }

  void close_fd() noexcept {
    if (fd_ < 0) return;
    const int fd = std::exchange(fd_, -1);
    if (loop_ != nullptr) {
      loop_->backend().close(fd);
    } else {
      ::close(fd);
    }
  }

  int fd_;
  // Bytes being sent (`sending_` from `sent_` on: the op points into it) and bytes queued
  // behind them; they swap when `sending_` is done, so nothing moves under the op.
  std::string sending_;
  std::string pending_;
  std::size_t sent_ = 0;
  Op op_;
  bool busy_ = false;  // a send is in flight or its continuation is queued
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
// The child: its pid, how it is watched, and its exit status.

namespace {
int decode_status(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return -WTERMSIG(status);
  return status;
}

// Reaps `pid` from a thread of its own, whatever becomes of the loop.
void reap_in_thread(pid_t pid, absl::AnyInvocable<void(int)> done) {
  std::thread([pid, done = std::move(done)]() mutable {
    int status = 0;
    pid_t r;
    do {
      r = ::waitpid(pid, &status, 0);
    } while (r < 0 && errno == EINTR);
    done(r < 0 ? 255 : decode_status(status));
  }).detach();
}
}  // namespace

class ProcessState final : public LoopResource {
 public:
  ProcessState(EventLoop& loop, std::shared_ptr<LoopResources> resources, pid_t pid, int pidfd)
      : LoopResource(loop, std::move(resources)), pid_(pid), pidfd_(pidfd) {
    op_.owner = this;
  }
  ~ProcessState() override {
    detach_from_loop();
    close_pidfd();
  }

  void loop_closing() override {
    EventLoop* loop = std::exchange(loop_, nullptr);
    if (pidfd_ >= 0) loop->backend().close(std::exchange(pidfd_, -1));
    if (!returncode_ && !thread_watched_) reap_in_thread(pid_, [](int) {});
  }

  pid_t pid() const noexcept { return pid_; }
  const std::optional<int>& returncode() const noexcept { return returncode_; }
  WaitList& exit_waiters() noexcept { return exit_waiters_; }

  void start_watch() {
    if (pidfd_ >= 0) {
      arm_pidfd();
      return;
    }
    // No pidfd: a thread waits. The loop counts it as outside work so virtual time waits too.
    thread_watched_ = true;
    loop_->add_external_work();
    std::weak_ptr<LoopResource> weak = weak_from_this();
    std::shared_ptr<LoopResources> resources = resources_;
    reap_in_thread(pid_, [weak, resources](int code) {
      resources->post_from_thread([weak, code](EventLoop& loop) {
        loop.remove_external_work();
        if (auto self = weak.lock()) static_cast<ProcessState&>(*self).set_exit(code);
      });
    });
  }

  void send_signal(int sig) {
    if (returncode_) throw ProcessLookupError(ESRCH, "the process has already exited");
    long r = -1;
    if (pidfd_ >= 0) {
      r = ::syscall(SYS_pidfd_send_signal, pidfd_, sig, nullptr, 0);
      if (r < 0 && errno == ENOSYS) r = ::kill(pid_, sig);
    } else {
      r = ::kill(pid_, sig);
    }
    // ESRCH before we reaped it: it is exiting right now, which is what was asked for.
    if (r < 0 && errno != ESRCH) throw_os_error(errno, "send_signal");
  }

 private:
  struct Op : core::Operation {
    ProcessState* owner = nullptr;
  };

  void arm_pidfd() {
    op_.code = core::OpCode::wait_readable;
    op_.handle = pidfd_;
    op_.on_complete = &on_complete;
    op_.state = core::OpState::idle;
    op_.result = 0;
    if (loop_->backend().start(op_)) {
      loop_->call_soon([self = shared_from_this()] { static_cast<ProcessState&>(*self).reap(); });
      return;
    }
    keepalive_ = std::static_pointer_cast<ProcessState>(shared_from_this());
  }

  // Inside the backend's dispatch: schedule the reaping.
  static void on_complete(core::Operation* operation) {
    ProcessState* process = static_cast<Op*>(operation)->owner;
    std::shared_ptr<ProcessState> self = std::move(process->keepalive_);
    if (process->loop_ == nullptr || operation->result == -ECANCELED) return;
    process->loop_->call_soon([self = std::move(self)] { self->reap(); });
  }

  void reap() {
    if (returncode_ || loop_ == nullptr) return;
    int status = 0;
    pid_t r;
    do {
      r = ::waitpid(pid_, &status, WNOHANG);
    } while (r < 0 && errno == EINTR);
    if (r == 0) {  // readable but not exited (cannot happen on Linux): keep waiting
      arm_pidfd();
      return;
    }
    if (r < 0) {
      // Someone else reaped it (a waitpid(-1) elsewhere in the program): asyncio's answer.
      std::fprintf(stderr, "corio: unknown child process pid %d, will report returncode 255\n",
                   static_cast<int>(pid_));
      set_exit(255);
      return;
    }
    set_exit(decode_status(status));
  }

  void set_exit(int code) {
    if (returncode_) return;
    returncode_ = code;
    close_pidfd();
    exit_waiters_.wake_all();
  }

  void close_pidfd() noexcept {
    if (pidfd_ < 0) return;
    const int fd = std::exchange(pidfd_, -1);
    if (loop_ != nullptr) {
      loop_->backend().close(fd);
    } else {
      ::close(fd);
    }
  }

  pid_t pid_;
  int pidfd_;
  std::optional<int> returncode_;
  bool thread_watched_ = false;
  Op op_;
  WaitList exit_waiters_;
  std::shared_ptr<ProcessState> keepalive_;  // set while the pidfd wait is in flight
};

void set_pidfd_child_watcher_enabled(bool enabled) noexcept {
  g_pidfd_enabled.store(enabled);
}

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
  send_signal(SIGTERM);
}
void Process::kill() {
  send_signal(SIGKILL);
}

// ---------------------------------------------------------------------------------------
// Spawning.

namespace {

// A descriptor closed when it goes out of scope unless released.
class OwnedFd {
 public:
  OwnedFd() = default;
  explicit OwnedFd(int fd) noexcept : fd_(fd) {}
  OwnedFd(OwnedFd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  OwnedFd& operator=(OwnedFd&& other) noexcept {
    reset(std::exchange(other.fd_, -1));
    return *this;
  }
  ~OwnedFd() { reset(); }
  int get() const noexcept { return fd_; }
  int release() noexcept { return std::exchange(fd_, -1); }
  void reset(int fd = -1) noexcept {
    if (fd_ >= 0) ::close(fd_);
    fd_ = fd;
  }

 private:
  int fd_ = -1;
};

// Moves `fd` above 2, so installing the child's 0-2 never overwrites a descriptor that a
// later step still reads from.
OwnedFd above_stdio(int fd) {
  if (fd >= 3) return OwnedFd(fd);
  const int moved = ::fcntl(fd, F_DUPFD_CLOEXEC, 3);
  const int error = errno;
  ::close(fd);
  if (moved < 0) throw_os_error(error, "fcntl(F_DUPFD_CLOEXEC)");
  return OwnedFd(moved);
}

void set_nonblocking(int fd) {
  const int flags = ::fcntl(fd, F_GETFL);
  if (flags < 0 || ::fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0)
    throw_os_error(errno, "fcntl(O_NONBLOCK)");
}

void check(int error, const char* what) {
  if (error != 0) throw_os_error(error, what);
}

struct FileActions {
  posix_spawn_file_actions_t actions;
  FileActions() { check(posix_spawn_file_actions_init(&actions), "posix_spawn_file_actions_init"); }
  ~FileActions() { posix_spawn_file_actions_destroy(&actions); }
};

struct SpawnAttributes {
  posix_spawnattr_t attributes;
  SpawnAttributes() { check(posix_spawnattr_init(&attributes), "posix_spawnattr_init"); }
  ~SpawnAttributes() { posix_spawnattr_destroy(&attributes); }
};

// The parent's side of the child's three standard streams (-1 where there is no pipe).
struct ParentEnds {
  OwnedFd in, out, err;
};

// Arranges descriptor `target` (0, 1, 2) of the child. `keep` holds what must stay open until
// posix_spawn returns.
void plan_stream(int target, const subprocess::Redirect& how, posix_spawn_file_actions_t* actions,
                 OwnedFd& parent_end, std::vector<OwnedFd>& keep) {
  using Kind = subprocess::Redirect::Kind;
  switch (how.kind) {
    case Kind::inherit:
      return;
    case Kind::devnull:
      check(posix_spawn_file_actions_addopen(actions, target, "/dev/null",
                                             target == 0 ? O_RDONLY : O_WRONLY, 0),
            "posix_spawn_file_actions_addopen");
      return;
    case Kind::stdout_:
      if (target != 2) throw ValueError("STDOUT can only be used for stderr");
      check(posix_spawn_file_actions_adddup2(actions, 1, 2), "posix_spawn_file_actions_adddup2");
      return;
    case Kind::handle: {
      if (how.handle < 0) throw ValueError("invalid handle for a standard stream");
      const int copy = ::fcntl(static_cast<int>(how.handle), F_DUPFD_CLOEXEC, 3);
      if (copy < 0) throw_os_error(errno, "fcntl(F_DUPFD_CLOEXEC)");
      keep.emplace_back(copy);
      check(posix_spawn_file_actions_adddup2(actions, copy, target),
            "posix_spawn_file_actions_adddup2");
      return;
    }
    case Kind::pipe: {
      int fds[2];
      OwnedFd child;
      if (target == 0) {
        // stdin: a socket pair (see the top of this file), one-way like a pipe.
        if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) < 0)
          throw_os_error(errno, "socketpair");
        parent_end = above_stdio(fds[0]);
        child = above_stdio(fds[1]);
        ::shutdown(parent_end.get(), SHUT_RD);
        ::shutdown(child.get(), SHUT_WR);
      } else {
        if (::pipe2(fds, O_CLOEXEC) < 0) throw_os_error(errno, "pipe2");
        parent_end = above_stdio(fds[0]);
        child = above_stdio(fds[1]);
      }
      set_nonblocking(parent_end.get());  // the child's end stays blocking, as programs expect
      check(posix_spawn_file_actions_adddup2(actions, child.get(), target),
            "posix_spawn_file_actions_adddup2");
      keep.push_back(std::move(child));
      return;
    }
  }
}

Process spawn(const std::vector<std::string>& argv, const SubprocessOptions& options) {
  EventLoop& loop = get_running_loop();
  loop.check_open();
  std::shared_ptr<detail::LoopResources> resources = detail::resources_for(loop);

  FileActions file_actions;
  SpawnAttributes spawn_attributes;
  posix_spawn_file_actions_t* actions = &file_actions.actions;
  posix_spawnattr_t* attributes = &spawn_attributes.attributes;

  ParentEnds parent;
  std::vector<OwnedFd> keep;
  plan_stream(0, options.std_in, actions, parent.in, keep);
  plan_stream(1, options.std_out, actions, parent.out, keep);
  plan_stream(2, options.std_err, actions, parent.err, keep);
  if (options.cwd) {
    check(posix_spawn_file_actions_addchdir_np(actions, options.cwd->c_str()),
          "posix_spawn_file_actions_addchdir_np");
  }
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 34))
  // Python's close_fds=True: a descriptor someone opened without O_CLOEXEC stays ours.
  check(posix_spawn_file_actions_addclosefrom_np(actions, 3),
        "posix_spawn_file_actions_addclosefrom_np");
#endif

  // The child starts clean: nothing blocked, every signal at its default action (our
  // handlers would not survive exec anyway, but ignored signals would).
  sigset_t none;
  sigemptyset(&none);
  sigset_t all;
  sigfillset(&all);
  sigdelset(&all, SIGKILL);
  sigdelset(&all, SIGSTOP);
  check(posix_spawnattr_setsigmask(attributes, &none), "posix_spawnattr_setsigmask");
  check(posix_spawnattr_setsigdefault(attributes, &all), "posix_spawnattr_setsigdefault");
  short flags = POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF;
  if (options.start_new_session) flags |= POSIX_SPAWN_SETSID;
  check(posix_spawnattr_setflags(attributes, flags), "posix_spawnattr_setflags");

  std::vector<char*> arguments;
  arguments.reserve(argv.size() + 1);
  for (const std::string& a : argv) arguments.push_back(const_cast<char*>(a.c_str()));
  arguments.push_back(nullptr);
  std::vector<char*> environment;
  char** envp = environ;
  if (options.env) {
    environment.reserve(options.env->size() + 1);
    for (const std::string& e : *options.env) environment.push_back(const_cast<char*>(e.c_str()));
    environment.push_back(nullptr);
    envp = environment.data();
  }

  pid_t pid = -1;
  const int error =
      ::posix_spawnp(&pid, argv[0].c_str(), actions, attributes, arguments.data(), envp);
  if (error != 0) throw_os_error(error, argv[0]);
  keep.clear();  // the child has its copies; ours must go so it sees EOF / EPIPE

  int pidfd = -1;
  if (detail::g_pidfd_enabled.load()) {
    pidfd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
    if (pidfd >= 0) {
      const int fd_flags = ::fcntl(pidfd, F_GETFD);
      if (fd_flags >= 0) ::fcntl(pidfd, F_SETFD, fd_flags | FD_CLOEXEC);
    } else if (errno == ENOSYS) {
      detail::g_pidfd_enabled.store(false);  // an old kernel: don't ask again
    }
  }
  auto process = std::make_shared<detail::ProcessState>(loop, resources, pid, pidfd);
  process->start_watch();

  std::shared_ptr<detail::PipeWriterState> in;
  std::shared_ptr<detail::PipeReaderState> out;
  std::shared_ptr<detail::PipeReaderState> err;
  if (parent.in.get() >= 0) {
    in = std::make_shared<detail::PipeWriterState>(
        std::make_shared<detail::PipeSink>(loop, resources, parent.in.release()));
  }
  if (parent.out.get() >= 0) {
    out = std::make_shared<detail::PipeReaderState>(loop, resources, parent.out.release(),
                                                    options.limit);
  }
  if (parent.err.get() >= 0) {
    err = std::make_shared<detail::PipeReaderState>(loop, resources, parent.err.release(),
                                                    options.limit);
  }
  return Process(std::move(process), std::move(in), std::move(out), std::move(err));
}

}  // namespace

Coro<Process> create_subprocess_exec(std::string program, std::vector<std::string> args,
                                     SubprocessOptions options) {
  std::vector<std::string> argv;
  argv.reserve(args.size() + 1);
  argv.push_back(std::move(program));
  for (std::string& a : args) argv.push_back(std::move(a));
  co_return spawn(argv, options);
}

Coro<Process> create_subprocess_shell(std::string cmd, SubprocessOptions options) {
  co_return spawn({"/bin/sh", "-c", std::move(cmd)}, options);
}

}  // namespace corio

#endif  // _WIN32
