// io_uring backend: operations become io_uring requests whose user_data is the Operation's
// address; completions are copied out of the ring, then dispatched.
// Per-operation state (the msghdr of a recvmsg/sendmsg, the accept address length, the phase)
// lives in Operation::backend_scratch, so nothing is allocated per operation, and it stays
// alive exactly as long as the kernel may read or write it: until that op's completion.
// It must never free, reuse or re-arm an operation after handing it to on_complete.
#include "corio/backends/io_uring_backend.hpp"

#include <fcntl.h>
#include <liburing.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "corio/core/errors.hpp"

namespace corio::backends {

using core::IoBuffer;
using core::OpCode;
using core::Operation;
using core::OpState;

static_assert(sizeof(IoBuffer) == sizeof(iovec) &&
              offsetof(IoBuffer, data) == offsetof(iovec, iov_base) &&
              offsetof(IoBuffer, size) == offsetof(iovec, iov_len));
// recv_from/send_to hand the kernel the operation's own {buffer, length} pair as their one
// iovec, so the pair must be laid out like one.
static_assert(offsetof(Operation, length) == offsetof(Operation, buffer) + sizeof(void*) &&
              sizeof(Operation::buffer) == sizeof(iovec::iov_base) &&
              sizeof(Operation::length) == sizeof(iovec::iov_len));

namespace {

// user_data values. Operations are 8-byte aligned, so their addresses have clear low bits;
// anything with low bits set is ours (or liburing's internal timeout, ~0) and is not an op.
constexpr std::uint64_t kWakeToken = 1;
constexpr std::uint64_t kIgnoreToken = 2;  // cancel requests: their result is not interesting
constexpr std::uint64_t kAcceptTag = 3;    // a listener's multishot accept: generation, fd, tag
constexpr std::uint64_t kTagMask = 7;

// Connections a multishot accept may take ahead of the accept operations asking for them;
// beyond this the request is stopped and the kernel's backlog holds the rest.
constexpr std::size_t kMaxAcceptedAhead = 4096;

std::uint64_t accept_token(int fd, std::uint32_t generation) {
  return (std::uint64_t{generation} << 32) | (static_cast<std::uint64_t>(fd) << 3) | kAcceptTag;
}
int token_fd(std::uint64_t token) {
  return static_cast<int>((token >> 3) & 0x1fffffff);
}
std::uint32_t token_generation(std::uint64_t token) {
  return static_cast<std::uint32_t>(token >> 32);
}

// Larger reads and writes come back short, as read(2) does for MAX_RW_COUNT.
constexpr std::size_t kMaxIo = 0x7ffff000;

constexpr core::Nanos kMs = 1'000'000;
// How long cancel()/close() wait for a request the kernel is busy executing.
constexpr core::Nanos kSettleGrace = 50 * kMs;

// Where an operation is in its small state machine. A request normally completes in one go;
// if the kernel answers -EAGAIN (a non-blocking file on kernels that do not poll-arm it) the
// operation polls first and then retries, like a readiness backend would.
enum class Phase : std::uint8_t {
  request,
  poll_then_retry,
  poll_then_connect_check,
  accept_waiter,  // no request of its own: waits for its listener's multishot accept
};

struct Scratch {
  union {
    msghdr msg;         // recv_from, send_to, recv_msg, send_msg
    socklen_t addrlen;  // accept
  };
  Phase phase;
};
static_assert(sizeof(Scratch) <= sizeof(Operation::backend_scratch) && alignof(Scratch) <= 8);

Scratch& scratch(Operation& op) {
  return *reinterpret_cast<Scratch*>(op.backend_scratch);
}

bool is_reader(OpCode code) {
  switch (code) {
    case OpCode::wait_readable:
    case OpCode::accept:
    case OpCode::recv:
    case OpCode::recv_from:
    case OpCode::recv_msg:
    case OpCode::read_at:
      return true;
    default:
      return false;
  }
}

unsigned clamp_length(std::size_t length) {
  return static_cast<unsigned>(length < kMaxIo ? length : kMaxIo);
}

// What the kernel must support. All of these exist since Linux 5.6.
struct RequiredOp {
  int opcode;
  const char* name;
};
constexpr RequiredOp kRequiredOps[] = {
    {IORING_OP_POLL_ADD, "POLL_ADD"}, {IORING_OP_ASYNC_CANCEL, "ASYNC_CANCEL"},
    {IORING_OP_ACCEPT, "ACCEPT"},     {IORING_OP_CONNECT, "CONNECT"},
    {IORING_OP_RECV, "RECV"},         {IORING_OP_SEND, "SEND"},
    {IORING_OP_RECVMSG, "RECVMSG"},   {IORING_OP_SENDMSG, "SENDMSG"},
    {IORING_OP_READ, "READ"},         {IORING_OP_WRITE, "WRITE"},
};

// What the kernel can do, probed once per process on a small throwaway ring: the kernel does
// not change under us, and every EventLoop constructs a backend.
struct KernelCaps {
  int setup_error = 0;  // errno from io_uring_setup, 0 when it worked
  std::string missing;  // opcodes the kernel lacks, space separated
  bool cancel_fd = false;
  bool multishot_accept = false;
};

// IORING_ACCEPT_MULTISHOT (Linux 5.19): an older kernel rejects the flag with -EINVAL at once.
// Probed on an autobound abstract unix socket, so no address or file is needed.
bool probe_multishot_accept(io_uring& ring) {
  const int listener = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (listener < 0) return false;
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  bool supported = false;
  if (::bind(listener, reinterpret_cast<sockaddr*>(&address), sizeof(sa_family_t)) == 0 &&
      ::listen(listener, 1) == 0) {
    io_uring_sqe* sqe = io_uring_get_sqe(&ring);
    io_uring_prep_multishot_accept(sqe, listener, nullptr, nullptr, SOCK_CLOEXEC);
    io_uring_sqe_set_data64(sqe, 1);
    io_uring_cqe* cqe = nullptr;
    // Nobody connects: a supported request stays armed and posts nothing.
    supported = io_uring_submit(&ring) == 1 && io_uring_peek_cqe(&ring, &cqe) != 0;
    if (!supported && cqe != nullptr) io_uring_cqe_seen(&ring, cqe);
  }
  ::close(listener);  // the ring's teardown cancels the request
  return supported;
}

const KernelCaps& kernel_caps() {
  static const KernelCaps caps = [] {
    KernelCaps c;
    io_uring ring;
    const int r = io_uring_queue_init(4, &ring, 0);
    if (r < 0) {
      c.setup_error = -r;
      return c;
    }
    if (io_uring_probe* probe = io_uring_get_probe_ring(&ring)) {
      for (const RequiredOp& op : kRequiredOps) {
        if (!io_uring_opcode_supported(probe, op.opcode)) c.missing += std::string(" ") + op.name;
      }
      io_uring_free_probe(probe);
    } else {
      c.missing = " PROBE";
    }
    if (c.missing.empty()) {
      // IORING_ASYNC_CANCEL_FD|ALL (Linux 5.19): older kernels reject unknown cancel flags with
      // -EINVAL. The ring's own descriptor has nothing in flight, so 0 cancelled is the answer.
      io_uring_sqe* sqe = io_uring_get_sqe(&ring);
      io_uring_prep_cancel_fd(sqe, ring.ring_fd, IORING_ASYNC_CANCEL_ALL);
      io_uring_cqe* cqe = nullptr;
      if (io_uring_submit_and_wait(&ring, 1) >= 0 && io_uring_peek_cqe(&ring, &cqe) == 0) {
        c.cancel_fd = cqe->res >= 0 || cqe->res == -ENOENT;
        io_uring_cqe_seen(&ring, cqe);
      }
      c.multishot_accept = probe_multishot_accept(ring);
    }
    io_uring_queue_exit(&ring);
    return c;
  }();
  return caps;
}

// The kernel's id for the calling thread, which is what a single-issuer ring is bound to.
// Not std::thread::id: pthread ids are recycled at once when a thread exits, kernel ids only
// when the pid space wraps.
int current_tid() {
  thread_local const int tid = static_cast<int>(::gettid());
  return tid;
}

[[noreturn]] void throw_unavailable(const std::string& why) {
  throw RuntimeError("io_uring is unavailable (" + why +
                     "): this corio was built with -DCORIO_BACKEND=io_uring; rebuild with "
                     "-DCORIO_BACKEND=epoll, or allow io_uring (Linux 5.6+, sysctl "
                     "kernel.io_uring_disabled=0, no seccomp filter blocking io_uring_setup)");
}

// Setup flags for each mode. SUBMIT_ALL keeps submitting after a request fails to prepare;
// R_DISABLED lets a single-issuer ring bind to the thread that first runs the loop rather
// than the one that constructed it.
unsigned setup_flags(IoUringBackend::TaskRunMode mode) {
  switch (mode) {
    case IoUringBackend::TaskRunMode::defer_taskrun:
      return IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_TASKRUN_FLAG |
             IORING_SETUP_SUBMIT_ALL | IORING_SETUP_R_DISABLED | IORING_SETUP_CLAMP;
    case IoUringBackend::TaskRunMode::coop_taskrun:
      return IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG | IORING_SETUP_SUBMIT_ALL |
             IORING_SETUP_CLAMP;
    case IoUringBackend::TaskRunMode::plain:
      break;
  }
  return IORING_SETUP_CLAMP;
}

}  // namespace

IoUringBackend::IoUringBackend() : IoUringBackend(Options{}) {}

IoUringBackend::IoUringBackend(Options options) : options_(options) {
  const KernelCaps& caps = kernel_caps();
  if (caps.setup_error != 0)
    throw_unavailable(std::string("io_uring_setup: ") + std::strerror(caps.setup_error));
  if (!caps.missing.empty()) throw_unavailable("the kernel lacks IORING_OP" + caps.missing);
  cancel_fd_ = caps.cancel_fd && options_.cancel_by_fd;
  multishot_accept_ = caps.multishot_accept && options_.multishot_accept;
  if (options_.entries == 0) options_.entries = 1;
  // Blocking on purpose: io_uring poll-arms a read on it (eventfd supports NOWAIT), whereas a
  // non-blocking eventfd may be answered -EAGAIN by older kernels instead of waiting.
  wake_fd_ = ::eventfd(0, EFD_CLOEXEC);
  if (wake_fd_ < 0) throw_os_error(errno, "eventfd");
  pending_.reserve(2 * options_.entries + 16);
  try {
    open_ring();
  } catch (...) {
    ::close(wake_fd_);
    throw;
  }
}

IoUringBackend::~IoUringBackend() {
  drain_for_exit();
  close_ring();
  for (auto& [fd, listener] : listeners_) {
    for (int conn : listener->accepted) ::close(conn);
  }
  ::close(wake_fd_);
}

void IoUringBackend::open_ring() {
  ring_ = new io_uring;
  int r = -EINVAL;
  // Try the best mode first; a kernel that does not know a flag answers -EINVAL.
  for (int m = static_cast<int>(options_.best_mode); m <= static_cast<int>(TaskRunMode::plain);
       ++m) {
    const auto mode = static_cast<TaskRunMode>(m);
    for (unsigned flags :
         {setup_flags(mode), setup_flags(mode) & ~(IORING_SETUP_SUBMIT_ALL | IORING_SETUP_CLAMP)}) {
      io_uring_params params{};
      params.flags = flags;
      r = io_uring_queue_init_params(options_.entries, ring_, &params);
      if (r == 0) {
        mode_ = mode;
        single_issuer_ = (flags & IORING_SETUP_SINGLE_ISSUER) != 0;
        enabled_ = (flags & IORING_SETUP_R_DISABLED) == 0;
        owner_tid_ = 0;
        arm_wake();  // fills an entry; a disabled ring submits it once enabled
        return;
      }
      if (r != -EINVAL) break;
    }
    if (r != -EINVAL) break;
  }
  delete ring_;
  ring_ = nullptr;
  throw_unavailable(std::string("io_uring_setup: ") + std::strerror(-r));
}

void IoUringBackend::close_ring() noexcept {
  if (ring_ == nullptr) return;
  io_uring_queue_exit(ring_);
  delete ring_;
  ring_ = nullptr;
  wake_armed_ = false;
}

// A single-issuer ring may only be entered by one thread: the first to run the loop. A loop
// that later runs on another thread with nothing in flight gets a fresh ring; one with
// operations in flight cannot move, as those requests belong to the first thread.
void IoUringBackend::ensure_owner() {
  if (!single_issuer_) return;
  if (enabled_ && owner_tid_ == current_tid()) [[likely]]
    return;
  if (!enabled_) {
    enable();
    return;
  }
  rebind();
}

void IoUringBackend::enable() {
  const int r = io_uring_register(ring_->ring_fd, IORING_REGISTER_ENABLE_RINGS, nullptr, 0);
  if (r < 0) throw_os_error(-r, "io_uring_register(ENABLE_RINGS)");
  enabled_ = true;
  owner_tid_ = current_tid();
}

void IoUringBackend::rebind() {
  if (in_flight_ > 0) {
    throw RuntimeError(
        "corio io_uring: the event loop's ring belongs to the thread that first ran it "
        "(IORING_SETUP_SINGLE_ISSUER) and it has operations in flight; run a loop on one "
        "thread at a time");
  }
  // Connections the old ring accepted stay queued; its multishot requests die with it.
  try {
    harvest();
  } catch (...) {
  }
  std::size_t ignored = 0;
  for (const Completion& c : pending_) {
    if ((c.user_data & kTagMask) == kAcceptTag) on_accept(c.user_data, c.res, c.flags, ignored);
  }
  pending_.clear();
  for (auto& [fd, listener] : listeners_) listener->armed = listener->stopping = false;
  close_ring();
  open_ring();
  ++stats_.rebuilds;
  if (!enabled_) enable();
  // The old ring may have consumed a wake-up it never reported: report one now instead.
  wake();
}

void IoUringBackend::arm_wake() {
  io_uring_sqe* sqe = get_sqe();
  io_uring_prep_read(sqe, wake_fd_, &wake_buf_, sizeof wake_buf_, 0);
  io_uring_sqe_set_data64(sqe, kWakeToken);
  wake_armed_ = true;
}

io_uring_sqe* IoUringBackend::get_sqe() {
  io_uring_sqe* sqe = io_uring_get_sqe(ring_);
  while (sqe == nullptr) {
    // The submission queue is full: hand it to the kernel now and take a fresh entry.
    ++stats_.sq_full;
    flush_sq();
    sqe = io_uring_get_sqe(ring_);
  }
  return sqe;
}

void IoUringBackend::flush_sq() {
  ensure_owner();
  for (int attempt = 0;; ++attempt) {
    ++stats_.enters;
    const int r = io_uring_submit(ring_);
    if (r >= 0) return;
    if (r == -EINTR) continue;
    if ((r == -EBUSY || r == -EAGAIN) && attempt < 1000) {
      // The completion queue is backed up: copy completions out (dispatched by the next
      // wait(), never from inside start()/cancel()) so the kernel has room again.
      harvest();
      continue;
    }
    throw_os_error(-r, "io_uring_submit");
  }
}

void IoUringBackend::link(Operation& op) {
  const auto fd = static_cast<std::size_t>(op.handle);
  if (fd >= fd_heads_.size()) fd_heads_.resize(fd * 2 + 16, nullptr);
  Operation*& head = fd_heads_[fd];
  op.prev = nullptr;
  op.next = head;
  if (head != nullptr) head->prev = &op;
  head = &op;
}

void IoUringBackend::unlink(Operation& op) {
  (op.prev != nullptr ? op.prev->next : fd_heads_[static_cast<std::size_t>(op.handle)]) = op.next;
  if (op.next != nullptr) op.next->prev = op.prev;
  op.next = op.prev = nullptr;
}

void IoUringBackend::prepare(Operation& op, io_uring_sqe* sqe) {
  const int fd = static_cast<int>(op.handle);
  Scratch& s = scratch(op);
  if (s.phase != Phase::request) {
    io_uring_prep_poll_add(sqe, fd, is_reader(op.code) ? POLLIN : POLLOUT);
    io_uring_sqe_set_data(sqe, &op);
    return;
  }
  sockaddr* address =
      op.address != nullptr ? reinterpret_cast<sockaddr*>(op.address->storage) : nullptr;
  switch (op.code) {
    case OpCode::wait_readable:
      io_uring_prep_poll_add(sqe, fd, POLLIN);
      break;
    case OpCode::wait_writable:
      io_uring_prep_poll_add(sqe, fd, POLLOUT);
      break;
    case OpCode::accept:
      s.addrlen = sizeof(op.address->storage);
      io_uring_prep_accept(sqe, fd, address, address != nullptr ? &s.addrlen : nullptr,
                           SOCK_NONBLOCK | SOCK_CLOEXEC);
      break;
    case OpCode::connect:
      io_uring_prep_connect(sqe, fd, address, op.address->length);
      break;
    case OpCode::recv:
      io_uring_prep_recv(sqe, fd, op.buffer, clamp_length(op.length), op.flags);
      break;
    case OpCode::send:
      io_uring_prep_send(sqe, fd, op.buffer, clamp_length(op.length), op.flags | MSG_NOSIGNAL);
      break;
    case OpCode::recv_from:
    case OpCode::send_to:
    case OpCode::recv_msg:
    case OpCode::send_msg: {
      const bool single = op.code == OpCode::recv_from || op.code == OpCode::send_to;
      const bool receiving = op.code == OpCode::recv_from || op.code == OpCode::recv_msg;
      s.msg = msghdr{};
      s.msg.msg_iov =
          single ? reinterpret_cast<iovec*>(&op.buffer) : reinterpret_cast<iovec*>(op.buffers);
      s.msg.msg_iovlen = single ? 1 : op.buffer_count;
      if (address != nullptr) {
        s.msg.msg_name = address;
        s.msg.msg_namelen = receiving ? sizeof(op.address->storage) : op.address->length;
      }
      if (receiving) {
        io_uring_prep_recvmsg(sqe, fd, &s.msg, static_cast<unsigned>(op.flags));
      } else {
        io_uring_prep_sendmsg(sqe, fd, &s.msg, static_cast<unsigned>(op.flags | MSG_NOSIGNAL));
      }
      break;
    }
    case OpCode::read_at:
      // offset ~0 is io_uring's "current file position" (pipes, ttys): read(2), not pread(2).
      io_uring_prep_read(sqe, fd, op.buffer, clamp_length(op.length), op.offset);
      break;
    case OpCode::write_at:
      io_uring_prep_write(sqe, fd, op.buffer, clamp_length(op.length), op.offset);
      break;
  }
  io_uring_sqe_set_data(sqe, &op);
}

bool IoUringBackend::start(Operation& op) {
  if (op.handle < 0 || (op.code == OpCode::connect && op.address == nullptr)) {
    op.result = op.handle < 0 ? -EBADF : -EINVAL;
    op.state = OpState::completed;
    return true;
  }
  if (op.code == OpCode::accept && multishot_accept_) return start_accept(op);
  ensure_owner();  // a loop that moved threads gets its new ring before it queues anything
  scratch(op).phase = Phase::request;
  prepare(op, get_sqe());
  op.state = OpState::submitted;
  link(op);
  ++in_flight_;
  return false;
}

void IoUringBackend::resubmit(Operation& op) {
  prepare(op, get_sqe());
}

void IoUringBackend::cancel(Operation& op) {
  if (!op.in_flight()) return;
  if (scratch(op).phase == Phase::accept_waiter) {
    // Nothing of its own in the kernel: leave the queue and finish now.
    auto it = listeners_.find(static_cast<int>(op.handle));
    if (it != listeners_.end()) std::erase(it->second->waiters, &op);
    op.state = OpState::cancel_requested;
    finish(op, -ECANCELED);
    return;
  }
  if (op.state == OpState::submitted) {
    op.state = OpState::cancel_requested;
    io_uring_sqe* sqe = get_sqe();
    io_uring_prep_cancel64(sqe, reinterpret_cast<std::uintptr_t>(&op), 0);
    io_uring_sqe_set_data64(sqe, kIgnoreToken);
  }
  settle(&op, -1);
}

void IoUringBackend::close(core::NativeHandle handle) {
  const int fd = static_cast<int>(handle);
  if (fd < 0) return;
  forget_listener(fd);
  Operation* head = static_cast<std::size_t>(fd) < fd_heads_.size()
                        ? fd_heads_[static_cast<std::size_t>(fd)]
                        : nullptr;
  if (head != nullptr) {
    for (Operation* op = head; op != nullptr; op = op->next) {
      if (op->state != OpState::submitted) continue;
      op->state = OpState::cancel_requested;
      if (!cancel_fd_) {
        io_uring_sqe* sqe = get_sqe();
        io_uring_prep_cancel64(sqe, reinterpret_cast<std::uintptr_t>(op), 0);
        io_uring_sqe_set_data64(sqe, kIgnoreToken);
      }
    }
    if (cancel_fd_) {
      io_uring_sqe* sqe = get_sqe();
      io_uring_prep_cancel_fd(sqe, fd, IORING_ASYNC_CANCEL_ALL);
      io_uring_sqe_set_data64(sqe, kIgnoreToken);
    }
    // The kernel resolves descriptors when it takes the entries, so this submits while the
    // number still names this file: the operations still queued for it, then the cancels.
    settle(nullptr, fd);
  }
  ::close(fd);
}

// Finishes the operations being cancelled (`only`, or every one on `fd`) before returning
// whenever the kernel lets go of them at once, as it does for every request parked on
// readiness (sockets, pipes, polls): one kernel entry submits the cancels and runs the
// completion work. So on_complete runs inside cancel()/close(), as on a readiness backend,
// and an owner tearing down a suspended frame does not leave the kernel holding its buffers.
// A request the kernel is executing (a file read in progress) gets a short grace period,
// then reports from wait() like any completion. Other completions stay queued for wait().
void IoUringBackend::settle(Operation* only, int fd) {
  const core::Nanos deadline = core::monotonic_now() + kSettleGrace;
  for (core::Nanos slice = 0;; slice = kMs) {
    enter(slice);
    harvest();
    for (Completion& c : pending_) {
      if ((c.user_data & kTagMask) != 0) continue;
      auto* op = reinterpret_cast<Operation*>(c.user_data);
      const bool target =
          only != nullptr ? op == only : op->handle == fd && op->state == OpState::cancel_requested;
      if (!target) continue;
      c.user_data = kIgnoreToken;  // consumed here, not by the next dispatch
      complete(*op, c.res);
    }
    const bool done =
        only != nullptr ? !only->in_flight() : fd_heads_[static_cast<std::size_t>(fd)] == nullptr;
    if (done || core::monotonic_now() >= deadline) return;
  }
}

void IoUringBackend::wake() noexcept {
  const std::uint64_t one = 1;
  [[maybe_unused]] ssize_t r = ::write(wake_fd_, &one, sizeof one);
}

void IoUringBackend::enter(core::Nanos timeout) {
  for (int attempt = 0;; ++attempt) {
    int r;
    if (timeout <= 0) {
      // Polling: enter only when there is something to submit or completion work to run
      // (IORING_SQ_TASKRUN) or to flush (IORING_SQ_CQ_OVERFLOW).
      const unsigned flags = IO_URING_READ_ONCE(*ring_->sq.kflags);
      if (io_uring_sq_ready(ring_) == 0 &&
          (flags & (IORING_SQ_TASKRUN | IORING_SQ_CQ_OVERFLOW)) == 0)
        return;
      r = io_uring_submit_and_get_events(ring_);
    } else if (timeout >= core::kNoDeadline) {
      r = io_uring_submit_and_wait(ring_, 1);
    } else {
      __kernel_timespec ts{};
      ts.tv_sec = timeout / core::kNanosPerSecond;
      ts.tv_nsec = timeout % core::kNanosPerSecond;
      io_uring_cqe* cqe = nullptr;
      r = io_uring_submit_and_wait_timeout(ring_, &cqe, 1, &ts, nullptr);
    }
    ++stats_.enters;
    if (r >= 0 || r == -ETIME || r == -EINTR) return;
    if ((r == -EBUSY || r == -EAGAIN) && attempt < 1000) {
      harvest();  // make room in the completion queue, then submit again without waiting
      timeout = 0;
      continue;
    }
    if (r == -EEXIST && single_issuer_) {
      // The kernel says another task owns the ring although the thread id matched (a
      // recycled id): treat it as a move to a new thread.
      owner_tid_ = 0;
      rebind();
      continue;
    }
    throw_os_error(-r, "io_uring_enter");
  }
}

void IoUringBackend::harvest() {
  for (;;) {
    unsigned head;
    unsigned seen = 0;
    io_uring_cqe* cqe;
    io_uring_for_each_cqe(ring_, head, cqe) {
      pending_.push_back({cqe->user_data, cqe->res, cqe->flags});
      ++seen;
    }
    io_uring_cq_advance(ring_, seen);
    if (!io_uring_cq_has_overflow(ring_)) return;
    // Completions the kernel could not fit are waiting in its overflow list: now that the
    // queue is empty, ask for them.
    ++stats_.enters;
    ++stats_.cq_overflows;
    const int r = io_uring_get_events(ring_);
    if (r < 0 && r != -EINTR && r != -EBUSY && r != -EAGAIN)
      throw_os_error(-r, "io_uring_enter(GETEVENTS)");
  }
}

std::size_t IoUringBackend::wait(core::Nanos timeout) {
  ensure_owner();
  if (!pending_.empty() || io_uring_cq_ready(ring_) > 0) timeout = 0;
  enter(timeout);
  harvest();
  return dispatch();
}

std::size_t IoUringBackend::dispatch() {
  std::size_t completed = 0;
  // Indexes, not iterators: a resubmission may find the queue full and harvest more.
  for (std::size_t i = 0; i < pending_.size(); ++i) {
    const Completion c = pending_[i];
    if (c.user_data == kWakeToken) {
      wake_armed_ = false;
      if (!shutting_down_) arm_wake();
      continue;
    }
    if ((c.user_data & kTagMask) == kAcceptTag) {
      on_accept(c.user_data, c.res, c.flags, completed);
      continue;
    }
    if ((c.user_data & kTagMask) != 0) continue;  // a cancel request's own result
    if (complete(*reinterpret_cast<Operation*>(c.user_data), c.res)) ++completed;
  }
  pending_.clear();
  return completed;
}

// --- accepts served by a multishot accept ----------------------------------------------
// The first accept on a listener arms one IORING_ACCEPT_MULTISHOT request; the kernel then
// accepts every connection as it arrives (many per loop iteration, like a readiness loop
// that accepts until EAGAIN), and accept operations take them in order: inline when one is
// already there, otherwise as waiters. The peer address comes from getpeername(), since a
// multishot request has one address buffer for all its connections.

bool IoUringBackend::start_accept(Operation& op) {
  const int fd = static_cast<int>(op.handle);
  std::unique_ptr<Listener>& slot = listeners_[fd];
  if (slot == nullptr) {
    slot = std::make_unique<Listener>();
    slot->fd = fd;
    slot->generation = ++listener_generation_;
  }
  Listener& listener = *slot;
  if (!listener.accepted.empty() || listener.error != 0) {
    if (!listener.accepted.empty()) {
      const int conn = listener.accepted.front();
      listener.accepted.pop_front();
      ++stats_.accepts_inline;
      hand_over(op, conn);
      op.result = conn;
    } else {
      op.result = -listener.error;
      listener.error = 0;
    }
    op.state = OpState::completed;
    return true;
  }
  ensure_owner();
  scratch(op).phase = Phase::accept_waiter;
  op.state = OpState::submitted;
  link(op);
  ++in_flight_;
  listener.waiters.push_back(&op);
  if (!listener.armed) arm_accept(listener);
  return false;
}

void IoUringBackend::arm_accept(Listener& listener) {
  io_uring_sqe* sqe = get_sqe();
  io_uring_prep_multishot_accept(sqe, listener.fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
  io_uring_sqe_set_data64(sqe, accept_token(listener.fd, listener.generation));
  listener.armed = true;
  listener.stopping = false;
}

void IoUringBackend::hand_over(Operation& op, int conn) {
  if (op.address == nullptr) return;
  socklen_t len = sizeof op.address->storage;
  if (::getpeername(conn, reinterpret_cast<sockaddr*>(op.address->storage), &len) == 0) {
    op.address->length = len;
  } else {
    op.address->length = 0;  // the peer is already gone; the connection is still delivered
  }
}

void IoUringBackend::on_accept(std::uint64_t token, std::int32_t res, std::uint32_t flags,
                               std::size_t& completed) {
  auto it = listeners_.find(token_fd(token));
  if (it == listeners_.end() || it->second->generation != token_generation(token)) {
    if (res >= 0) ::close(res);  // accepted for a listener that has been closed since
    return;
  }
  Listener& listener = *it->second;
  if ((flags & IORING_CQE_F_MORE) == 0) listener.armed = listener.stopping = false;
  if (res >= 0) {
    if (!listener.waiters.empty()) {
      Operation& op = *listener.waiters.front();
      listener.waiters.pop_front();
      hand_over(op, res);
      finish(op, res);
      ++completed;
    } else {
      listener.accepted.push_back(res);
      if (listener.accepted.size() >= kMaxAcceptedAhead && listener.armed && !listener.stopping) {
        io_uring_sqe* sqe = get_sqe();
        io_uring_prep_cancel64(sqe, token, 0);
        io_uring_sqe_set_data64(sqe, kIgnoreToken);
        listener.stopping = true;
      }
    }
  } else if (res != -ECANCELED) {
    // The request ended on an error (EMFILE, a socket that is not listening, ...): the next
    // accept reports it, as a single accept would have.
    if (!listener.waiters.empty()) {
      Operation& op = *listener.waiters.front();
      listener.waiters.pop_front();
      finish(op, res);
      ++completed;
    } else {
      listener.error = -res;
    }
  }
  if (!listener.armed && !listener.waiters.empty() && !shutting_down_) arm_accept(listener);
}

// close() of a listener: its waiters are cancelled, connections nobody took are closed, and
// the multishot request is cancelled at once, so the socket really stops listening.
void IoUringBackend::forget_listener(int fd) noexcept {
  auto it = listeners_.find(fd);
  if (it == listeners_.end()) return;
  std::unique_ptr<Listener> listener = std::move(it->second);
  listeners_.erase(it);
  for (Operation* op : listener->waiters) {
    op->state = OpState::cancel_requested;
    finish(*op, -ECANCELED);
  }
  for (int conn : listener->accepted) ::close(conn);
  if (!listener->armed) return;
  try {
    io_uring_sqe* sqe = get_sqe();
    io_uring_prep_cancel64(sqe, accept_token(fd, listener->generation), 0);
    io_uring_sqe_set_data64(sqe, kIgnoreToken);
    enter(0);  // late connections arrive as stale completions and are closed
    harvest();
  } catch (...) {
    // The ring is unusable; closing the descriptor below still ends the listener's life.
  }
}

// One completion for op. Returns true when op is finished (on_complete called).
bool IoUringBackend::complete(Operation& op, std::int32_t res) {
  Scratch& s = scratch(op);
  const bool cancelling = op.state == OpState::cancel_requested;
  switch (s.phase) {
    case Phase::request: {
      if (op.code == OpCode::wait_readable || op.code == OpCode::wait_writable) {
        finish(op, res >= 0 ? 0 : res);  // the poll mask is not part of the contract
        return true;
      }
      const bool in_progress =
          op.code == OpCode::connect && (res == -EINPROGRESS || res == -EALREADY);
      if (res == -EAGAIN || res == -EINTR || in_progress) {
        // Nothing moved. A cancelled operation stops here; otherwise wait for readiness.
        if (cancelling) {
          finish(op, -ECANCELED);
          return true;
        }
        s.phase = in_progress ? Phase::poll_then_connect_check : Phase::poll_then_retry;
        resubmit(op);
        return false;
      }
      if (res >= 0 && op.address != nullptr) {
        if (op.code == OpCode::accept) op.address->length = s.addrlen;
        if (op.code == OpCode::recv_from || op.code == OpCode::recv_msg)
          op.address->length = s.msg.msg_namelen;
      }
      finish(op, res);
      return true;
    }
    case Phase::poll_then_retry:
    case Phase::poll_then_connect_check: {
      if (res < 0 || cancelling) {
        finish(op, res < 0 ? res : -ECANCELED);
        return true;
      }
      if (s.phase == Phase::poll_then_connect_check) {
        int error = 0;
        socklen_t len = sizeof error;
        if (::getsockopt(static_cast<int>(op.handle), SOL_SOCKET, SO_ERROR, &error, &len) < 0)
          error = errno;
        finish(op, -static_cast<std::int64_t>(error));
        return true;
      }
      s.phase = Phase::request;
      resubmit(op);
      return false;
    }
    case Phase::accept_waiter:
      break;  // has no request of its own, so no completion either
  }
  return false;
}

void IoUringBackend::finish(Operation& op, std::int64_t result) {
  unlink(op);
  --in_flight_;
  op.result = result;
  // The result decides a cancel/complete race: only -ECANCELED means nothing happened.
  op.state = result == -ECANCELED ? OpState::cancelled : OpState::completed;
  op.on_complete(&op);
}

// Before the ring goes away, make sure the kernel is done with every buffer it was given:
// cancel everything and wait for the completions, without touching the operations (their
// owners may already be gone) and without calling on_complete.
void IoUringBackend::drain_for_exit() noexcept {
  shutting_down_ = true;
  if (ring_ == nullptr) return;
  if (single_issuer_ && (!enabled_ || owner_tid_ != current_tid())) return;
  try {
    std::size_t ops = in_flight_;
    std::size_t multishots = 0;
    for (auto& [fd, listener] : listeners_) multishots += listener->armed ? 1 : 0;
    auto account = [&] {
      for (const Completion& c : pending_) {
        if (c.user_data == kWakeToken) wake_armed_ = false;
        if ((c.user_data & kTagMask) == 0 && ops > 0) --ops;
        if ((c.user_data & kTagMask) == kAcceptTag) {
          if (c.res >= 0) ::close(c.res);
          if ((c.flags & IORING_CQE_F_MORE) == 0 && multishots > 0) --multishots;
        }
      }
      pending_.clear();
    };
    account();
    if (ops == 0 && multishots == 0 && !wake_armed_) return;
    io_uring_sqe* sqe = get_sqe();
    if (cancel_fd_) {
      io_uring_prep_cancel64(sqe, 0, IORING_ASYNC_CANCEL_ANY | IORING_ASYNC_CANCEL_ALL);
    } else {
      io_uring_prep_cancel64(sqe, kWakeToken, 0);  // ops cannot be named without touching them
      ops = 0;
      multishots = 0;
    }
    io_uring_sqe_set_data64(sqe, kIgnoreToken);
    for (int round = 0; round < 200 && (ops > 0 || multishots > 0 || wake_armed_); ++round) {
      enter(10'000'000);
      harvest();
      account();
    }
  } catch (...) {
    // Destruction cannot report errors; the kernel cancels what is left when the ring closes.
  }
}

}  // namespace corio::backends
