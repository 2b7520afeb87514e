// corio::File (see file.hpp): the two ways a file operation is carried out, and the File
// methods built on them.
//  * NativeIo: a backend Operation (io_uring, IOCP) allocated on the heap, so that a frame
//    torn down while the kernel still holds the buffer leaves the operation to be freed by
//    its completion instead of by the frame.
//  * PoolIo: a blocking call run on the loop's default executor (epoll's reads and writes;
//    open, size and sync everywhere). A job that has not started is dropped on cancel; one
//    that is running is waited for, so the worker never writes into a frame that is gone.
// Cancellation never resumes a coroutine while its operation is in progress, and never lets
// a File's handle be closed under an operation that uses it (FileState counts them).
#include "corio/file.hpp"

#include <absl/functional/any_invocable.h>

#include <atomic>
#include <cerrno>
#include <coroutine>
#include <limits>
#include <type_traits>
#include <utility>

#include "corio/core/errors.hpp"
#include "corio/detail/net_io.hpp"
#include "corio/detail/suspension.hpp"
#include "corio/event_loop.hpp"
#include "corio/executor.hpp"
#include "corio/future.hpp"
#include "file_os.hpp"

namespace corio {

namespace detail {

// Reads and writes go to a completion backend; a readiness backend (epoll, kqueue) cannot
// wait on a regular file, so they go to the thread pool there.
inline constexpr bool kNativeFileIo = SelectedBackend::kNativeFileIo;

// What a File and its operations share. Loop thread only: workers see the raw handle,
// which stays valid because nothing closes it while in_flight > 0.
struct FileState {
  core::NativeHandle handle = core::kInvalidHandle;
  std::string mode;
  bool readable = false;
  bool writable = false;
  bool append = false;
  bool closing = false;  // close() called or the File destroyed: no new operations
  std::uint64_t position = 0;
  int in_flight = 0;
  IoWaitList idle;  // close() waits here for in_flight to reach 0

  FileState() = default;
  FileState(const FileState&) = delete;
  FileState& operator=(const FileState&) = delete;
  ~FileState() { close_handle(); }

  bool open() const noexcept { return handle != core::kInvalidHandle && !closing; }
  void close_handle() noexcept {
    if (handle != core::kInvalidHandle) file_os::close(std::exchange(handle, core::kInvalidHandle));
  }
  void op_started() noexcept { ++in_flight; }
  // May run inside the backend's dispatch: closes with the plain OS call (the backend has
  // nothing in flight on the handle any more) and only posts wake-ups.
  void op_finished() noexcept {
    if (--in_flight > 0) return;
    if (closing) close_handle();
    idle.wake_all();
  }
};

namespace {

enum class Need { read, write, any };

void check_usable(const FileState* st, Need need, const char* what) {
  if (st == nullptr || !st->open()) throw ValueError("I/O operation on closed file");
  if (need == Need::read && !st->readable)
    throw_os_error(EBADF, std::string(what) + ": file not open for reading");
  if (need == Need::write && !st->writable)
    throw_os_error(EBADF, std::string(what) + ": file not open for writing");
}

void check_offset(std::uint64_t offset) {
  // Above INT64_MAX an offset would read as negative to the OS (and ~0 means "current
  // position" to the backends).
  if (offset > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()))
    throw ValueError("file offset out of range");
}

// --- NativeIo --------------------------------------------------------------------------

class NativeIo;

struct NativeOp : core::Operation {
  NativeIo* owner = nullptr;  // null once the awaiting frame is gone
  bool cancelling_inline = false;
  std::shared_ptr<FileState> file;
  std::string owned;  // the buffer of read_at, which the caller does not provide
};

class NativeIo {
 public:
  // own_buffer: read into a buffer of `length` bytes the op owns (take it with take_owned).
  NativeIo(std::shared_ptr<FileState> file, core::OpCode code, void* buffer, std::size_t length,
           std::uint64_t offset, bool own_buffer)
      : file_(std::move(file)),
        code_(code),
        buffer_(buffer),
        length_(length),
        offset_(offset),
        own_buffer_(own_buffer) {}
  NativeIo(const NativeIo&) = delete;
  NativeIo& operator=(const NativeIo&) = delete;
  ~NativeIo() {
    if (op_ == nullptr) return;
    if (!op_->in_flight()) {
      delete op_;
      return;
    }
    // The frame goes away with the op in flight (a task destroyed at teardown): ask the
    // backend to stop, and leave the op (and its buffer) to its completion if it is slow.
    op_->owner = nullptr;
    op_->cancelling_inline = true;
    loop_->backend().cancel(*op_);
    op_->cancelling_inline = false;
    if (!op_->in_flight()) delete op_;
  }

  bool await_ready() {
    loop_ = &get_running_loop();
    op_ = new NativeOp;
    op_->code = code_;
    op_->handle = file_->handle;
    op_->offset = offset_;
    op_->length = length_;
    if (own_buffer_) {
      op_->owned.resize(length_);
      op_->buffer = op_->owned.data();
    } else {
      op_->buffer = buffer_;
    }
    op_->on_complete = &on_complete;
    op_->file = file_;
    file_->op_started();
    if (loop_->backend().start(*op_)) {
      file_->op_finished();
      return true;
    }
    return false;
  }
  void await_suspend(std::coroutine_handle<> handle) {
    suspension_.begin(handle);
    suspended_ = true;
    op_->owner = this;
    // May call cancel_leaf at once when a cancellation is already pending on the task.
    suspension_.arm({&cancel_leaf, this});
  }
  // Bytes moved or -errno. CancelledError when the task was cancelled meanwhile, even if the
  // op completed (its outcome is dropped; a completed write did happen).
  std::int64_t await_resume() {
    if (suspended_) {
      suspended_ = false;
      suspension_.end(leaf_cancelled_, /*deliver_pending=*/true);
    }
    return op_->result;
  }
  std::string take_owned() { return std::move(op_->owned); }

 private:
  static void on_complete(core::Operation* base) {
    auto* op = static_cast<NativeOp*>(base);
    op->file->op_finished();
    if (op->owner != nullptr) {
      op->owner->suspension_.wake();
    } else if (!op->cancelling_inline) {
      delete op;  // abandoned: this completion was the last user of its buffer
    }
  }
  static bool cancel_leaf(void* arg) {
    auto* self = static_cast<NativeIo*>(arg);
    if (!self->op_->in_flight()) return false;  // completed; its wake-up is queued
    self->loop_->backend().cancel(*self->op_);
    // Cancelled at once (nothing had started): on_complete has woken us. Otherwise the
    // kernel is busy with it: keep the cancellation pending on the task and wait for the
    // completion, which wakes us to raise it.
    if (self->op_->state == core::OpState::cancelled) {
      self->leaf_cancelled_ = true;
      return true;
    }
    return false;
  }

  std::shared_ptr<FileState> file_;
  core::OpCode code_;
  void* buffer_;
  std::size_t length_;
  std::uint64_t offset_;
  bool own_buffer_;
  EventLoop* loop_ = nullptr;
  NativeOp* op_ = nullptr;
  Suspension suspension_;
  bool suspended_ = false;
  bool leaf_cancelled_ = false;
};

// --- PoolIo ----------------------------------------------------------------------------

// Shared by the awaiting frame and the worker; the worker touches nothing else.
struct PoolJob {
  enum Phase : int { queued, running, done, skipped };
  std::atomic<int> phase{queued};
  absl::AnyInvocable<std::int64_t(PoolJob&)> work;
  std::int64_t result = 0;  // written by the worker before phase = done
  std::string owned;        // read_at's buffer: outlives a frame torn down mid-read
};

class PoolIo {
 public:
  using Work = absl::AnyInvocable<std::int64_t(PoolJob&)>;
  // file may be null (open). own_bytes: size of the job's own buffer (job.owned).
  PoolIo(std::shared_ptr<FileState> file, Work work, std::size_t own_bytes = 0)
      : file_(std::move(file)), job_(std::make_shared<PoolJob>()) {
    job_->work = std::move(work);
    if (own_bytes > 0) job_->owned.resize(own_bytes);
  }
  // A read/write at an offset, as NativeIo takes it.
  PoolIo(std::shared_ptr<FileState> file, core::OpCode code, void* buffer, std::size_t length,
         std::uint64_t offset, bool own_buffer)
      : PoolIo(std::move(file), Work(), own_buffer ? length : 0) {
    const core::NativeHandle handle = file_->handle;
    if (code == core::OpCode::read_at) {
      job_->work = [handle, buffer, length, offset, own_buffer](PoolJob& job) {
        return file_os::pread(handle, own_buffer ? job.owned.data() : buffer, length, offset);
      };
    } else {
      job_->work = [handle, buffer, length, offset](PoolJob&) {
        return file_os::pwrite(handle, buffer, length, offset);
      };
    }
  }
  PoolIo(const PoolIo&) = delete;
  PoolIo& operator=(const PoolIo&) = delete;
  ~PoolIo() {
    if (registered_) future_.base()->remove_waiter(suspension_.wake_item());
  }

  // Called with the result of a job that finished although the await raised CancelledError
  // (open uses it to close the handle nobody will own).
  void (*on_dropped)(std::int64_t result) = nullptr;

  bool await_ready() {
    EventLoop& loop = get_running_loop();
    std::shared_ptr<PoolJob> job = job_;
    auto run = [job]() noexcept {
      int expected = PoolJob::queued;
      if (!job->phase.compare_exchange_strong(expected, PoolJob::running,
                                              std::memory_order_acq_rel))
        return;  // cancelled before it started
      job->result = job->work(*job);
      job->work = nullptr;  // its captures die on the worker, where they were used
      job->phase.store(PoolJob::done, std::memory_order_release);
    };
    future_ = run_in_executor(loop, nullptr, std::move(run));
    if (file_) {
      // Counted until the job is over (or dropped), whatever happens to this frame.
      file_->op_started();
      future_.add_done_callback([file = file_](Future<void>) { file->op_finished(); });
    }
    return false;
  }
  void await_suspend(std::coroutine_handle<> handle) {
    suspension_.begin(handle);
    future_.base()->add_waiter(suspension_.wake_item());
    registered_ = true;
    suspension_.arm({&cancel_leaf, this});
  }
  std::int64_t await_resume() {
    registered_ = false;
    try {
      suspension_.end(leaf_cancelled_, /*deliver_pending=*/true);
    } catch (...) {
      if (on_dropped != nullptr && job_->phase.load(std::memory_order_acquire) == PoolJob::done)
        on_dropped(job_->result);
      throw;
    }
    return job_->result;
  }
  std::string take_owned() { return std::move(job_->owned); }

 private:
  static bool cancel_leaf(void* arg) {
    auto* self = static_cast<PoolIo*>(arg);
    int expected = PoolJob::queued;
    if (self->job_->phase.compare_exchange_strong(expected, PoolJob::skipped,
                                                  std::memory_order_acq_rel)) {
      // Not started: it never will. Cancelling the future drops it from the pool's queue
      // and wakes us.
      self->leaf_cancelled_ = true;
      self->future_.cancel();
      return true;
    }
    // Running (or just done): wait for it; the pending cancellation is raised on wake-up.
    return false;
  }

  std::shared_ptr<FileState> file_;
  std::shared_ptr<PoolJob> job_;
  Future<void> future_;
  Suspension suspension_;
  bool registered_ = false;
  bool leaf_cancelled_ = false;
};

using FileIo = std::conditional_t<kNativeFileIo, NativeIo, PoolIo>;

// --- the operations ----------------------------------------------------------------------

file_os::OpenFlags parse_mode(const std::string& mode) {
  file_os::OpenFlags flags;
  int kinds = 0;
  bool plus = false;
  for (char c : mode) {
    switch (c) {
      case 'r':
        ++kinds;
        flags.read = true;
        break;
      case 'w':
        ++kinds;
        flags.write = flags.create = flags.truncate = true;
        break;
      case 'a':
        ++kinds;
        flags.write = flags.create = flags.append = true;
        break;
      case 'x':
        ++kinds;
        flags.write = flags.create = flags.exclusive = true;
        break;
      case '+':
        if (plus) throw ValueError("invalid mode: '" + mode + "'");
        plus = true;
        break;
      case 'b':
        break;
      case 't':
        throw ValueError("corio::File is binary only: invalid mode '" + mode + "'");
      default:
        throw ValueError("invalid mode: '" + mode + "'");
    }
  }
  if (kinds != 1)
    throw ValueError("must have exactly one of create/read/write/append mode: '" + mode + "'");
  if (plus) flags.read = flags.write = true;
  return flags;
}

void close_dropped_handle(std::int64_t result) {
  if (result >= 0) file_os::close(static_cast<core::NativeHandle>(result));
}

Coro<std::int64_t> pool_call(std::shared_ptr<FileState> st, PoolIo::Work work) {
  PoolIo io(std::move(st), std::move(work));
  co_return co_await io;
}

Coro<std::size_t> read_into_at_impl(std::shared_ptr<FileState> st, std::uint64_t offset,
                                    std::span<char> buffer) {
  check_usable(st.get(), Need::read, "read");
  check_offset(offset);
  FileIo io(st, core::OpCode::read_at, buffer.data(), buffer.size(), offset, false);
  const std::int64_t r = co_await io;
  if (r < 0) throw_os_error(static_cast<int>(-r), "read");
  co_return static_cast<std::size_t>(r);
}

Coro<std::string> read_at_impl(std::shared_ptr<FileState> st, std::uint64_t offset, std::size_t n) {
  check_usable(st.get(), Need::read, "read");
  check_offset(offset);
  if (n == 0) co_return std::string();
  FileIo io(st, core::OpCode::read_at, nullptr, n, offset, true);
  const std::int64_t r = co_await io;
  if (r < 0) throw_os_error(static_cast<int>(-r), "read");
  std::string out = io.take_owned();
  out.resize(static_cast<std::size_t>(r));
  co_return out;
}

Coro<std::size_t> write_at_impl(std::shared_ptr<FileState> st, std::uint64_t offset,
                                std::string_view data) {
  check_usable(st.get(), Need::write, "write");
  check_offset(offset);
  if (data.empty()) co_return 0;
  FileIo io(st, core::OpCode::write_at, const_cast<char*>(data.data()), data.size(), offset, false);
  const std::int64_t r = co_await io;
  if (r < 0) throw_os_error(static_cast<int>(-r), "write");
  co_return static_cast<std::size_t>(r);
}

// Writes everything at `offset`; `advance` (the sequential position) moves past each piece
// as it lands, so a cancellation part-way leaves it after what was really written.
Coro<void> write_all_impl(std::shared_ptr<FileState> st, std::uint64_t offset,
                          std::string_view data, bool advance) {
  while (!data.empty()) {
    const std::size_t n = co_await write_at_impl(st, offset, data);
    if (n == 0) throw_os_error(EIO, "write: no progress");
    offset += n;
    data.remove_prefix(n);
    if (advance) st->position += n;
  }
}

Coro<std::string> read_impl(std::shared_ptr<FileState> st, std::int64_t n) {
  check_usable(st.get(), Need::read, "read");
  // The position moves only once the whole read succeeded: a cancelled read loses nothing.
  const std::uint64_t start = st->position;
  std::string out;
  if (n >= 0) {
    // A regular file reads short only at its end or above the kernel's ~2 GiB cap.
    while (out.size() < static_cast<std::size_t>(n)) {
      std::string piece =
          co_await read_at_impl(st, start + out.size(), static_cast<std::size_t>(n) - out.size());
      if (piece.empty()) break;
      if (out.empty()) {
        out = std::move(piece);
      } else {
        out += piece;
      }
    }
  } else {
    std::size_t chunk = 64 * 1024;
    for (;;) {
      const std::size_t have = out.size();
      out.resize(have + chunk);
      std::span<char> room(out.data() + have, chunk);
      const std::size_t got = co_await read_into_at_impl(st, start + have, room);
      out.resize(have + got);
      if (got == 0) break;
      if (chunk < 8 * 1024 * 1024) chunk *= 2;
    }
  }
  st->position = start + out.size();
  co_return out;
}

Coro<std::size_t> write_impl(std::shared_ptr<FileState> st, std::string_view data) {
  check_usable(st.get(), Need::write, "write");
  // In append mode the OS puts every write at the end whatever the offset.
  co_await write_all_impl(st, st->position, data, /*advance=*/true);
  co_return data.size();
}

Coro<std::uint64_t> size_impl(std::shared_ptr<FileState> st) {
  check_usable(st.get(), Need::any, "size");
  const core::NativeHandle handle = st->handle;
  const std::int64_t r =
      co_await pool_call(st, [handle](PoolJob&) { return file_os::size(handle); });
  if (r < 0) throw_os_error(static_cast<int>(-r), "size");
  co_return static_cast<std::uint64_t>(r);
}

Coro<void> sync_impl(std::shared_ptr<FileState> st, bool data_only) {
  check_usable(st.get(), Need::any, "sync");
  const core::NativeHandle handle = st->handle;
  const std::int64_t r = co_await pool_call(
      st, [handle, data_only](PoolJob&) { return file_os::sync(handle, data_only); });
  if (r < 0) throw_os_error(static_cast<int>(-r), "sync");
}

Coro<void> close_impl(std::shared_ptr<FileState> st) {
  if (!st || st->handle == core::kInvalidHandle) co_return;
  st->closing = true;
  // The last operation to finish closes the handle (op_finished), so a close cancelled
  // here still ends with the handle closed.
  while (st->in_flight > 0) {
    IoWaitOn idle(st->idle);
    co_await idle;
  }
  st->close_handle();
}

}  // namespace

}  // namespace detail

File& File::operator=(File&& other) noexcept {
  if (this != &other) {
    if (state_) state_->closing = true;
    if (state_ && state_->in_flight == 0) state_->close_handle();
    state_ = std::move(other.state_);
  }
  return *this;
}

File::~File() {
  if (!state_) return;
  state_->closing = true;
  if (state_->in_flight == 0) state_->close_handle();
  // Otherwise the last operation in flight closes it.
}

Coro<File> File::open(std::string path, std::string mode) {
  const detail::file_os::OpenFlags flags = detail::parse_mode(mode);
  std::string context = "open '" + path + "'";
  detail::PoolIo io(nullptr, [path = std::move(path), flags](detail::PoolJob&) {
    return detail::file_os::open(path, flags);
  });
  io.on_dropped = &detail::close_dropped_handle;
  const std::int64_t r = co_await io;
  if (r < 0) throw_os_error(static_cast<int>(-r), context);
  auto state = std::make_shared<detail::FileState>();
  state->handle = static_cast<core::NativeHandle>(r);
  state->mode = std::move(mode);
  state->readable = flags.read;
  state->writable = flags.write;
  state->append = flags.append;
  File file(std::move(state));
  if (flags.append) file.state_->position = co_await file.size();
  co_return file;
}

bool File::is_open() const noexcept {
  return state_ && state_->open();
}

core::NativeHandle File::fileno() const noexcept {
  return is_open() ? state_->handle : core::kInvalidHandle;
}

const std::string& File::mode() const noexcept {
  static const std::string none;
  return state_ ? state_->mode : none;
}

bool File::readable() const noexcept {
  return is_open() && state_->readable;
}

bool File::writable() const noexcept {
  return is_open() && state_->writable;
}

Coro<std::string> File::read_at(std::uint64_t offset, std::size_t n) {
  return detail::read_at_impl(state_, offset, n);
}

Coro<std::size_t> File::read_into_at(std::uint64_t offset, std::span<char> buffer) {
  return detail::read_into_at_impl(state_, offset, buffer);
}

Coro<std::size_t> File::write_at(std::uint64_t offset, std::string_view data) {
  return detail::write_at_impl(state_, offset, data);
}

Coro<void> File::write_all_at(std::uint64_t offset, std::string_view data) {
  return detail::write_all_impl(state_, offset, data, /*advance=*/false);
}

Coro<std::string> File::read(std::int64_t n) {
  return detail::read_impl(state_, n);
}

Coro<std::size_t> File::write(std::string_view data) {
  return detail::write_impl(state_, data);
}

std::uint64_t File::tell() const noexcept {
  return state_ ? state_->position : 0;
}

void File::seek(std::uint64_t position) noexcept {
  if (state_) state_->position = position;
}

Coro<std::uint64_t> File::size() {
  return detail::size_impl(state_);
}

Coro<void> File::sync(bool data_only) {
  return detail::sync_impl(state_, data_only);
}

Coro<void> File::close() {
  return detail::close_impl(state_);
}

}  // namespace corio
