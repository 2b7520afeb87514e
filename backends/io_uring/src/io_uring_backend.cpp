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
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <utility>

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
constexpr std::uint64_t kRecvTag = 4;      // a stream socket's multishot recv: generation, fd, tag
constexpr std::uint64_t kTagMask = 7;

// Batched waits (Options::batch_wait_us) need the kernel's min-wait (Linux 6.12), newer than
// the liburing headers some distributions ship.
#ifndef IORING_FEAT_MIN_TIMEOUT
#define IORING_FEAT_MIN_TIMEOUT (1U << 15)
#endif

// A lazy send's flags (see is_lazy_send): never parked on a poll, and short counts fail.
constexpr int kLazySendFlags = MSG_DONTWAIT | MSG_WAITALL;

// Connections a multishot accept may take ahead of the accept operations asking for them;
// beyond this the request is stopped and the kernel's backlog holds the rest.
constexpr std::size_t kMaxAcceptedAhead = 4096;

std::uint64_t make_token(int fd, std::uint32_t generation, std::uint64_t tag) {
  return (std::uint64_t{generation} << 32) | (static_cast<std::uint64_t>(fd) << 3) | tag;
}
std::uint64_t accept_token(int fd, std::uint32_t generation) {
  return make_token(fd, generation, kAcceptTag);
}
std::uint64_t recv_token(int fd, std::uint32_t generation) {
  return make_token(fd, generation, kRecvTag);
}
// The provided buffer group stream reads use (one per ring).
constexpr int kRecvGroup = 0;
int token_fd(std::uint64_t token) {
  return static_cast<int>((token >> 3) & 0x1fffffff);
}
std::uint32_t token_generation(std::uint64_t token) {
  return static_cast<std::uint32_t>(token >> 32);
}

// A wait's timeout as the kernel takes it.
__kernel_timespec kernel_timespec(core::Nanos timeout) {
  __kernel_timespec ts{};
  ts.tv_sec = timeout / core::kNanosPerSecond;
  ts.tv_nsec = timeout % core::kNanosPerSecond;
  return ts;
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
  recv_waiter,    // no request of its own: waits for its socket's multishot recv
};

struct Scratch {
  union {
    msghdr msg;         // recv_from, send_to, recv_msg, send_msg
    socklen_t addrlen;  // accept
  };
  Phase phase;
  bool lazy;  // the request went with kLazySendFlags and its marker
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
    case OpCode::recv_stream:
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
  bool multishot_recv = false;
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

// A provided buffer ring, mapped here (liburing 2.3 has no io_uring_setup_buf_ring) and
// registered as group `group`. nullptr when the kernel refuses it (before 5.19).
io_uring_buf_ring* register_buf_ring(io_uring& ring, unsigned entries, int group) {
  const std::size_t size = entries * sizeof(io_uring_buf);
  void* memory = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (memory == MAP_FAILED) return nullptr;
  auto* br = static_cast<io_uring_buf_ring*>(memory);
  io_uring_buf_ring_init(br);
  io_uring_buf_reg reg{};
  reg.ring_addr = reinterpret_cast<std::uintptr_t>(memory);
  reg.ring_entries = entries;
  reg.bgid = static_cast<std::uint16_t>(group);
  if (io_uring_register_buf_ring(&ring, &reg, 0) < 0) {
    ::munmap(memory, size);
    return nullptr;
  }
  return br;
}

void unregister_buf_ring(io_uring& ring, io_uring_buf_ring* br, unsigned entries, int group) {
  io_uring_unregister_buf_ring(&ring, group);
  ::munmap(br, entries * sizeof(io_uring_buf));
}

void prep_recv_multishot(io_uring_sqe* sqe, int fd) {
  io_uring_prep_recv_multishot(sqe, fd, nullptr, 0, 0);
  sqe->flags |= IOSQE_BUFFER_SELECT;
  sqe->buf_group = kRecvGroup;
}

// IORING_RECV_MULTISHOT with a provided buffer ring (Linux 6.0): an older kernel refuses the
// ring or answers the request with -EINVAL at once; a supported one stays armed on a socket
// with nothing to read. The request is cancelled before its buffer ring goes away.
bool probe_multishot_recv(io_uring& ring) {
  io_uring_buf_ring* br = register_buf_ring(ring, 1, kRecvGroup);
  if (br == nullptr) return false;
  static unsigned char buffer[64];
  io_uring_buf_ring_add(br, buffer, sizeof buffer, 0, io_uring_buf_ring_mask(1), 0);
  io_uring_buf_ring_advance(br, 1);
  int pair[2];
  bool supported = false;
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, pair) == 0) {
    io_uring_sqe* sqe = io_uring_get_sqe(&ring);
    prep_recv_multishot(sqe, pair[0]);
    io_uring_sqe_set_data64(sqe, 1);
    io_uring_cqe* cqe = nullptr;
    supported = io_uring_submit(&ring) == 1 && io_uring_peek_cqe(&ring, &cqe) != 0;
    if (supported) {
      sqe = io_uring_get_sqe(&ring);
      io_uring_prep_cancel64(sqe, 1, 0);
      io_uring_sqe_set_data64(sqe, 2);
      io_uring_submit(&ring);
      // Both completions (the request's -ECANCELED and the cancel's own) before the ring of
      // buffers is unregistered.
      for (int seen = 0; seen < 2;) {
        __kernel_timespec ts{1, 0};
        if (io_uring_wait_cqe_timeout(&ring, &cqe, &ts) != 0) break;
        io_uring_cqe_seen(&ring, cqe);
        ++seen;
      }
    } else if (cqe != nullptr) {
      io_uring_cqe_seen(&ring, cqe);
    }
    ::close(pair[0]);
    ::close(pair[1]);
  }
  unregister_buf_ring(ring, br, 1, kRecvGroup);
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
      c.multishot_recv = probe_multishot_recv(ring);
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

// The running kernel's release is at least major.minor.
bool kernel_at_least(int major, int minor) {
  static const std::pair<int, int> release = [] {
    utsname name{};
    int ma = 0, mi = 0;
    if (::uname(&name) == 0) std::sscanf(name.release, "%d.%d", &ma, &mi);
    return std::pair<int, int>(ma, mi);
  }();
  return release >= std::pair<int, int>(major, minor);
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

IoUringBackend::Options IoUringBackend::default_options() {
  Options options;
  const char* env = std::getenv("CORIO_IO_URING");
  if (env == nullptr) return options;
  const std::string_view all(env);
  for (std::size_t start = 0; start <= all.size();) {
    std::size_t end = all.find(',', start);
    if (end == std::string_view::npos) end = all.size();
    const std::string_view item = all.substr(start, end - start);
    start = end + 1;
    const std::size_t eq = item.find('=');
    if (eq == std::string_view::npos) continue;
    const std::string_view name = item.substr(0, eq);
    const unsigned long value = std::strtoul(std::string(item.substr(eq + 1)).c_str(), nullptr, 10);
    if (name == "multishot_recv") options.multishot_recv = value != 0;
    if (name == "fixed_files") options.fixed_files = value != 0;
    if (name == "sqpoll") options.sqpoll = value != 0;
    if (name == "sqpoll_idle_ms") options.sqpoll_idle_ms = static_cast<unsigned>(value);
    if (name == "recv_buffers") options.recv_buffers = static_cast<unsigned>(value);
    if (name == "recv_buffer_size") options.recv_buffer_size = static_cast<unsigned>(value);
    if (name == "lazy_completions") options.lazy_completions = value != 0;
    if (name == "batch_wait_us") options.batch_wait_us = static_cast<unsigned>(value);
    if (name == "batch_min_ops") options.batch_min_ops = static_cast<unsigned>(value);
  }
  return options;
}

IoUringBackend::IoUringBackend() : IoUringBackend(default_options()) {}

IoUringBackend::IoUringBackend(Options options) : options_(options) {
  const KernelCaps& caps = kernel_caps();
  if (caps.setup_error != 0)
    throw_unavailable(std::string("io_uring_setup: ") + std::strerror(caps.setup_error));
  if (!caps.missing.empty()) throw_unavailable("the kernel lacks IORING_OP" + caps.missing);
  cancel_fd_ = caps.cancel_fd && options_.cancel_by_fd;
  multishot_accept_ = caps.multishot_accept && options_.multishot_accept;
  multishot_recv_ = caps.multishot_recv && options_.multishot_recv;
  if (options_.entries == 0) options_.entries = 1;
  // The buffer ring's size must be a power of two (at most 32768); a buffer at least 64 bytes.
  unsigned buffers = 1;
  while (buffers < options_.recv_buffers && buffers < 32768) buffers <<= 1;
  options_.recv_buffers = buffers;
  options_.recv_buffer_size = std::max(options_.recv_buffer_size, 64u);
  // A batch of one is a plain wait.
  options_.batch_min_ops = std::max(options_.batch_min_ops, 2u);
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
  if (recv_memory_ != nullptr)
    ::munmap(recv_memory_, std::size_t{options_.recv_buffers} * options_.recv_buffer_size);
  ::close(wake_fd_);
}

void IoUringBackend::open_ring() {
  ring_ = new io_uring;
  int r = -EINVAL;
  if (options_.sqpoll) {
    // SQPOLL excludes DEFER_TASKRUN; the poller thread is the one issuer. A kernel or a
    // sandbox that refuses it gets the usual modes below.
    for (unsigned flags : {IORING_SETUP_SQPOLL | IORING_SETUP_SUBMIT_ALL | IORING_SETUP_CLAMP,
                           unsigned{IORING_SETUP_SQPOLL}}) {
      io_uring_params params{};
      params.flags = flags;
      params.sq_thread_idle = options_.sqpoll_idle_ms;
      r = io_uring_queue_init_params(options_.entries, ring_, &params);
      if (r == 0) {
        mode_ = TaskRunMode::plain;
        sqpoll_ = true;
        single_issuer_ = false;
        enabled_ = true;
        owner_tid_ = 0;
        ring_ready();
        return;
      }
    }
  }
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
        ring_ready();
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

// What every new ring needs: the armed wake-up read and, if asked, the fixed-file table.
void IoUringBackend::ring_ready() {
  arm_wake();  // fills an entry; a disabled ring submits it once enabled
  lazy_queued_.clear();
  // The marker needs IOSQE_CQE_SKIP_SUCCESS (Linux 5.17). With SQPOLL the poller thread, not
  // the submitting call, issues the sends, so their completions may come after the wait began.
  // Linux 5.19 and 6.0 (before a stable fix) fail a short MSG_WAITALL|MSG_DONTWAIT send with
  // -EAGAIN and lose the count of bytes it did send, which would then go twice: 6.1 or later.
  lazy_sends_ = options_.lazy_completions && !sqpoll_ &&
                (ring_->features & IORING_FEAT_CQE_SKIP) != 0 && kernel_at_least(6, 1);
  // The poller thread of SQPOLL submits on its own; a batched wait would publish entries
  // behind its back.
  batch_wait_ =
      options_.batch_wait_us > 0 && !sqpoll_ && (ring_->features & IORING_FEAT_MIN_TIMEOUT) != 0;
  files_table_ = false;
  if (options_.fixed_files && options_.fixed_file_slots > 0) {
    // Sparse registration (Linux 5.19); refused: no fixed files.
    files_table_ = io_uring_register_files_sparse(ring_, options_.fixed_file_slots) == 0;
  }
  fixed_files_ = files_table_;
}

void IoUringBackend::close_ring() noexcept {
  if (ring_ == nullptr) return;
  free_buf_ring();
  // Multishot recvs and fixed slots die with the ring; the bytes already taken stay.
  for (auto& stream : streams_) {
    if (stream == nullptr) continue;
    stream->armed = stream->stopping = false;
    stream->fixed = false;
  }
  files_table_ = false;
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
    // Bytes received for streams are kept for their next reads (nobody waits: nothing is in
    // flight), and their buffers go back before the ring does.
    if ((c.user_data & kTagMask) == kRecvTag) on_recv(c.user_data, c.res, c.flags, ignored);
  }
  starved_.clear();
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
    if (r >= 0) {
      lazy_queued_.clear();
      return;
    }
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

void IoUringBackend::prepare(Operation& op, io_uring_sqe* sqe, bool lazy) {
  const int fd = static_cast<int>(op.handle);
  Scratch& s = scratch(op);
  if (s.phase != Phase::request) {
    io_uring_prep_poll_add(sqe, fd, is_reader(op.code) ? POLLIN : POLLOUT);
    io_uring_sqe_set_data(sqe, &op);
    if (uses_fixed(fd)) sqe->flags |= IOSQE_FIXED_FILE;
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
    case OpCode::recv_stream:
      io_uring_prep_recv(sqe, fd, op.buffer, clamp_length(op.length), 0);
      break;
    case OpCode::send:
      io_uring_prep_send(sqe, fd, op.buffer, clamp_length(op.length),
                         op.flags | MSG_NOSIGNAL | (lazy ? kLazySendFlags : 0));
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
  if (uses_fixed(fd)) sqe->flags |= IOSQE_FIXED_FILE;  // slot == fd
  s.lazy = lazy;
  if (lazy) {
    // The marker: linked behind the send, it runs (silently) only when the send took every
    // byte; otherwise it is cancelled and its completion is the extra one that ends the wait.
    sqe->flags |= IOSQE_IO_LINK;
    io_uring_sqe* marker = io_uring_get_sqe(ring_);  // start() made room for both
    io_uring_prep_nop(marker);
    marker->flags |= IOSQE_CQE_SKIP_SUCCESS;
    io_uring_sqe_set_data64(marker, kIgnoreToken);
  }
}

bool IoUringBackend::start(Operation& op) {
  if (op.handle < 0 || (op.code == OpCode::connect && op.address == nullptr)) {
    op.result = op.handle < 0 ? -EBADF : -EINVAL;
    op.state = OpState::completed;
    return true;
  }
  if (op.code == OpCode::accept && multishot_accept_) return start_accept(op);
  if (op.code == OpCode::recv_stream) {
    const RecvStream* stream = find_stream(static_cast<int>(op.handle));
    if (multishot_recv_ || (stream != nullptr && stream->ahead_size() > 0)) return start_recv(op);
    if (fixed_files_) stream_for(static_cast<int>(op.handle));  // registers the socket
  }
  ensure_owner();  // a loop that moved threads gets its new ring before it queues anything
  scratch(op).phase = Phase::request;
  bool lazy = is_lazy_send(op);
  // A lazy send and its marker go to the kernel in one submission: a link cut by a full
  // submission queue would leave the send without its marker.
  if (lazy && io_uring_sq_space_left(ring_) < 2) {
    flush_sq();
    lazy = io_uring_sq_space_left(ring_) >= 2;  // a one-entry ring never holds both
  }
  prepare(op, get_sqe(), lazy);
  if (lazy) lazy_queued_.push_back(&op);
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
  if (scratch(op).phase == Phase::recv_waiter) {
    // Likewise: the multishot recv goes on, and what it receives stays for the next read.
    if (RecvStream* stream = find_stream(static_cast<int>(op.handle))) stream->waiters.erase(&op);
    op.state = OpState::cancel_requested;
    finish_unlinked(op, -ECANCELED);
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
  const bool fixed = forget_stream(fd);
  if (static_cast<std::size_t>(fd) < plain_sends_only_.size())
    plain_sends_only_[static_cast<std::size_t>(fd)] = false;  // the number may be reused
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
  if (fixed) {
    // Emptied last: requests still queued for the slot (an SQPOLL thread may not have taken
    // them yet) were settled above while it still named this socket.
    int none = -1;
    ++stats_.enters;
    io_uring_register_files_update(ring_, static_cast<unsigned>(fd), &none, 1);
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

// Submits a cancel just queued for the multishot request `token` and waits, briefly, for the
// request's final completion (it may already be among the harvested ones), so the request
// has let go of its file when the caller closes the descriptor: the peer sees the close at
// once. Usually one kernel entry; with SQPOLL the poller thread needs a moment.
void IoUringBackend::await_final(std::uint64_t token) {
  const core::Nanos deadline = core::monotonic_now() + kSettleGrace;
  std::size_t checked = 0;
  for (core::Nanos slice = 0;; slice = kMs) {
    enter(slice);
    harvest();
    for (; checked < pending_.size(); ++checked) {
      const Completion& c = pending_[checked];
      if (c.user_data == token && (c.flags & IORING_CQE_F_MORE) == 0) return;
    }
    if (core::monotonic_now() >= deadline) return;
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
      if (sqpoll_) {
        // The poller thread takes new entries and posts completions by itself: publish the
        // entries (liburing enters only to wake a poller gone idle) and flush an overflow.
        // An idle poller with nothing new to take is left asleep.
        if (io_uring_sq_ready(ring_) == 0 && (flags & IORING_SQ_CQ_OVERFLOW) == 0) return;
        if ((flags & (IORING_SQ_NEED_WAKEUP | IORING_SQ_CQ_OVERFLOW)) == 0) {
          r = io_uring_submit(ring_);
          if (r >= 0 || r == -EINTR) return;
        } else {
          r = io_uring_submit_and_get_events(ring_);
        }
      } else {
        if (io_uring_sq_ready(ring_) == 0 &&
            (flags & (IORING_SQ_TASKRUN | IORING_SQ_CQ_OVERFLOW)) == 0)
          return;
        r = io_uring_submit_and_get_events(ring_);
      }
    } else if (const unsigned lazy = lazy_still_queued(), batch = batch_to_wait_for(lazy, timeout);
               batch > 0) {
      r = submit_and_wait_batch(lazy + batch, timeout);
    } else if (lazy > 0) {
      r = submit_and_wait_past_lazy(lazy, timeout);
    } else if (timeout >= core::kNoDeadline) {
      r = io_uring_submit_and_wait(ring_, 1);
    } else {
      __kernel_timespec ts = kernel_timespec(timeout);
      io_uring_cqe* cqe = nullptr;
      r = io_uring_submit_and_wait_timeout(ring_, &cqe, 1, &ts, nullptr);
    }
    ++stats_.enters;
    if (r >= 0 || r == -ETIME || r == -EINTR) {
      lazy_queued_.clear();  // every queued entry went in with this call
      return;
    }
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

// A send whose completion nobody waits for, made so that it always completes inside the
// io_uring_enter that submits it: MSG_DONTWAIT makes the kernel answer -EAGAIN (or a short
// count) instead of parking it on a poll, so its completion is posted before that call waits,
// and that wait asks for one completion more per lazy send. Only a send that took every byte
// may be left for later, though: its owner has nothing more to do for it. One that came back
// short, -EAGAIN or with an error needs its owner now (to send the rest, wait for room or
// report the error), so it must end the wait. MSG_WAITALL makes a short count a failure, and a
// failure cancels the marker linked behind the send (see prepare): that -ECANCELED completion
// is the extra one. A full send runs the marker, whose completion is skipped.
bool IoUringBackend::is_lazy_send(const Operation& op) const noexcept {
  // A send longer than kMaxIo is cut short by clamp_length, and MSG_WAITALL would call the
  // cut send complete while bytes remain: such a send is never lazy.
  if (!op.lazy_completion || !lazy_sends_ || op.code != OpCode::send || op.length > kMaxIo)
    return false;
  const auto fd = static_cast<std::size_t>(op.handle);
  return fd >= plain_sends_only_.size() || !plain_sends_only_[fd];
}

// Some sockets refuse MSG_WAITALL on a send with -EOPNOTSUPP although a plain send works:
// kTLS (tls_sw_sendmsg), and MPTCP on some kernels. Such a refusal moved nothing, so the
// send goes again without the lazy flags, and that socket stops sending lazily.
void IoUringBackend::refuse_lazy_sends(int fd) {
  ++stats_.lazy_refused;
  const auto index = static_cast<std::size_t>(fd);
  if (index >= plain_sends_only_.size()) plain_sends_only_.resize(index + 1);
  plain_sends_only_[index] = true;
}

// The lazy sends queued since the last submission whose owner still does not wait for them
// (an owner clears lazy_completion when it starts to, say when a transport closes).
unsigned IoUringBackend::lazy_still_queued() const noexcept {
  unsigned count = 0;
  for (const Operation* op : lazy_queued_) count += op->lazy_completion ? 1 : 0;
  return count;
}

// Submits the queue and waits for `lazy` completions more than a plain wait would: the lazy
// sends' own, which the submission itself posts (see is_lazy_send), do not end the wait; the
// next completion anyone waits for does, or the timeout. If the kernel takes fewer entries
// than offered it returns without waiting, so a wait never counts on a send that did not go.
int IoUringBackend::submit_and_wait_past_lazy(unsigned lazy, core::Nanos timeout) {
  ++stats_.lazy_waits;
  if (timeout >= core::kNoDeadline) return io_uring_submit_and_wait(ring_, 1 + lazy);
  __kernel_timespec ts = kernel_timespec(timeout);
  io_uring_cqe* cqe = nullptr;
  return io_uring_submit_and_wait_timeout(ring_, &cqe, 1 + lazy, &ts, nullptr);
}

// How many completions (beyond the lazy sends') a wait may gather for batch_wait_us: one per
// operation in flight, so that the wait ends early only if every one of them completes.
// 0: a plain wait (see Options::batch_wait_us for when).
unsigned IoUringBackend::batch_to_wait_for(unsigned lazy, core::Nanos timeout) const noexcept {
  if (!batch_wait_) return 0;
  // The kernel waits out the batch time even past the timeout: a sooner timer waits plainly.
  if (timeout < core::Nanos{options_.batch_wait_us} * 1000) return 0;
  const std::size_t waiting = in_flight_ > lazy ? in_flight_ - lazy : 0;
  if (waiting < options_.batch_min_ops) return 0;
  // The completion queue can hold no more than its size at once.
  const std::size_t room = ring_->cq.ring_entries > lazy ? ring_->cq.ring_entries - lazy : 1;
  return static_cast<unsigned>(std::min(waiting, room));
}

// Submits the queue and waits for wait_nr completions or batch_wait_us, whichever ends first,
// then (if nothing came by then) for one completion or the timeout. liburing's wrapper for
// this is newer than the one Debian ships, so this publishes the queued entries itself, as
// io_uring_submit does, and enters with the extended argument whose min_wait_usec (formerly
// `pad`) holds the batch time.
int IoUringBackend::submit_and_wait_batch(unsigned wait_nr, core::Nanos timeout) {
  ++stats_.batch_waits;
  io_uring_sq& sq = ring_->sq;
  const unsigned tail = sq.sqe_tail;
  if (sq.sqe_head != tail) {
    sq.sqe_head = tail;
    io_uring_smp_store_release(sq.ktail, tail);
  }
  const unsigned to_submit = tail - io_uring_smp_load_acquire(sq.khead);
  __kernel_timespec ts = kernel_timespec(timeout);
  io_uring_getevents_arg arg{};
  arg.sigmask_sz = _NSIG / 8;
  arg.pad = options_.batch_wait_us;
  if (timeout < core::kNoDeadline) arg.ts = reinterpret_cast<std::uint64_t>(&ts);
  return io_uring_enter2(ring_->ring_fd, to_submit, wait_nr,
                         IORING_ENTER_GETEVENTS | IORING_ENTER_EXT_ARG,
                         reinterpret_cast<sigset_t*>(&arg), sizeof arg);
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
    if ((c.user_data & kTagMask) == kRecvTag) {
      on_recv(c.user_data, c.res, c.flags, completed);
      continue;
    }
    if ((c.user_data & kTagMask) != 0) continue;  // a cancel request's own result
    if (complete(*reinterpret_cast<Operation*>(c.user_data), c.res)) ++completed;
  }
  pending_.clear();
  // Multishot recvs that found the buffer ring empty: every buffer seen above has been
  // returned by now, so the ones with a reader waiting start again (the others at their
  // next read). The kernel kept their bytes in the socket.
  for (std::size_t i = 0; i < starved_.size(); ++i) {
    RecvStream* stream = find_stream(starved_[i]);
    if (stream != nullptr && !stream->waiters.empty()) maybe_arm_recv(*stream);
  }
  starved_.clear();
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
    await_final(accept_token(fd, listener->generation));  // late connections: closed later
  } catch (...) {
    // The ring is unusable; closing the descriptor below still ends the listener's life.
  }
}

// --- stream reads served by a multishot recv ---------------------------------------------
// The first recv_stream on a socket arms one IORING_RECV_MULTISHOT request that takes its
// buffers from the loop's provided buffer ring. Each completion is copied at once into the
// first waiting read's buffer (the one copy a plain recv would have made, moved from the
// kernel to here) or appended to the socket's `ahead` bytes, and its buffer goes straight
// back to the ring, so buffers are only ever held between two harvests. Reads take `ahead`
// first, inline. Nothing taken from the kernel is dropped before close(): a cancelled read
// leaves the bytes for the next one. When `ahead` passes recv_ahead_limit the request is
// cancelled and the socket's own buffer holds the rest until the reader catches up.

IoUringBackend::RecvStream* IoUringBackend::find_stream(int fd) const noexcept {
  const auto index = static_cast<std::size_t>(fd);
  return fd >= 0 && index < streams_.size() ? streams_[index].get() : nullptr;
}

IoUringBackend::RecvStream& IoUringBackend::stream_for(int fd) {
  const auto index = static_cast<std::size_t>(fd);
  if (index >= streams_.size()) streams_.resize(index * 2 + 16);
  std::unique_ptr<RecvStream>& slot = streams_[index];
  if (slot == nullptr) {
    slot = std::make_unique<RecvStream>();
    slot->fd = fd;
    slot->generation = ++stream_generation_;
  }
  RecvStream& stream = *slot;
  if (fixed_files_ && !stream.fixed && index < options_.fixed_file_slots) {
    // A stream socket lives as long as its connection and is closed through close(): worth
    // a slot. Refused (slot busy, table gone): it keeps using its descriptor.
    ensure_owner();
    ++stats_.enters;
    if (io_uring_register_files_update(ring_, static_cast<unsigned>(fd), &fd, 1) == 1) {
      stream.fixed = true;
      ++stats_.files_registered;
    }
  }
  return stream;
}

bool IoUringBackend::uses_fixed(int fd) const noexcept {
  if (!fixed_files_) return false;
  const RecvStream* stream = find_stream(fd);
  return stream != nullptr && stream->fixed;
}

std::size_t IoUringBackend::recv_ahead(core::NativeHandle handle) const noexcept {
  const RecvStream* stream = find_stream(static_cast<int>(handle));
  return stream != nullptr ? stream->ahead_size() : 0;
}

bool IoUringBackend::setup_buf_ring() {
  if (buf_ring_ != nullptr) return true;
  const std::size_t bytes = std::size_t{options_.recv_buffers} * options_.recv_buffer_size;
  if (recv_memory_ == nullptr) {
    // Pages are touched only as the kernel fills them.
    void* memory =
        ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (memory == MAP_FAILED) return false;
    recv_memory_ = static_cast<unsigned char*>(memory);
  }
  ensure_owner();
  buf_ring_ = register_buf_ring(*ring_, options_.recv_buffers, kRecvGroup);
  if (buf_ring_ == nullptr) return false;
  const int mask = io_uring_buf_ring_mask(options_.recv_buffers);
  for (unsigned bid = 0; bid < options_.recv_buffers; ++bid) {
    io_uring_buf_ring_add(buf_ring_, recv_memory_ + std::size_t{bid} * options_.recv_buffer_size,
                          options_.recv_buffer_size, static_cast<unsigned short>(bid), mask,
                          static_cast<int>(bid));
  }
  io_uring_buf_ring_advance(buf_ring_, static_cast<int>(options_.recv_buffers));
  return true;
}

void IoUringBackend::free_buf_ring() noexcept {
  if (buf_ring_ == nullptr) return;
  unregister_buf_ring(*ring_, buf_ring_, options_.recv_buffers, kRecvGroup);
  buf_ring_ = nullptr;
}

void IoUringBackend::return_buffer(unsigned bid) noexcept {
  if (buf_ring_ == nullptr || bid >= options_.recv_buffers) return;  // that ring is gone
  io_uring_buf_ring_add(buf_ring_, recv_memory_ + std::size_t{bid} * options_.recv_buffer_size,
                        options_.recv_buffer_size, static_cast<unsigned short>(bid),
                        io_uring_buf_ring_mask(options_.recv_buffers), 0);
  io_uring_buf_ring_advance(buf_ring_, 1);
}

void IoUringBackend::arm_recv(RecvStream& stream) {
  io_uring_sqe* sqe = get_sqe();
  prep_recv_multishot(sqe, stream.fd);
  if (stream.fixed) sqe->flags |= IOSQE_FIXED_FILE;
  io_uring_sqe_set_data64(sqe, recv_token(stream.fd, stream.generation));
  stream.armed = true;
  stream.stopping = false;
  ++stats_.recv_arms;
}

// Arms the socket's multishot recv unless it is running, has nothing more to give (EOF, an
// error not yet reported) or already holds enough bytes ahead.
void IoUringBackend::maybe_arm_recv(RecvStream& stream) {
  if (stream.armed || stream.eof || stream.error != 0 || shutting_down_) return;
  if (stream.ahead_size() >= options_.recv_ahead_limit) return;
  arm_recv(stream);
}

std::int64_t IoUringBackend::take_ahead(RecvStream& stream, Operation& op) noexcept {
  const std::size_t n = std::min({stream.ahead_size(), op.length, std::size_t{kMaxIo}});
  std::memcpy(op.buffer, stream.ahead.data() + stream.ahead_head, n);
  stream.ahead_head += n;
  if (stream.ahead_head == stream.ahead.size()) {
    stream.ahead.clear();
    stream.ahead_head = 0;
  }
  return static_cast<std::int64_t>(n);
}

bool IoUringBackend::start_recv(Operation& op) {
  const int fd = static_cast<int>(op.handle);
  RecvStream& stream = stream_for(fd);
  if (stream.waiters.empty()) {
    bool answered = true;
    std::int64_t result = 0;
    if (stream.ahead_size() > 0 || op.length == 0) {
      result = take_ahead(stream, op);
      ++stats_.recv_inline;
    } else if (stream.error != 0) {
      result = -std::exchange(stream.error, 0);
    } else if (!stream.eof) {
      answered = false;
    }
    if (answered) {
      op.result = result;
      op.state = OpState::completed;
      if (multishot_recv_ && setup_buf_ring()) maybe_arm_recv(stream);  // read ahead again
      return true;
    }
  }
  if (!multishot_recv_ || !setup_buf_ring()) {
    // No buffer ring after all (memory, or a rebuilt ring refused it): plain recvs from now
    // on, once the bytes already read ahead are gone (there are none left here).
    multishot_recv_ = false;
    return start(op);
  }
  ensure_owner();
  scratch(op).phase = Phase::recv_waiter;
  op.state = OpState::submitted;
  ++in_flight_;
  stream.waiters.push_back(&op);
  maybe_arm_recv(stream);
  return false;
}

void IoUringBackend::serve_waiters(RecvStream& stream, std::size_t& completed) {
  while (!stream.waiters.empty()) {
    Operation& op = *stream.waiters.front();
    std::int64_t result;
    if (stream.ahead_size() > 0) {
      result = take_ahead(stream, op);
    } else if (stream.error != 0) {
      result = -std::exchange(stream.error, 0);
    } else if (stream.eof) {
      result = 0;
    } else {
      return;
    }
    stream.waiters.pop_front();
    finish_unlinked(op, result);
    ++completed;
  }
}

void IoUringBackend::on_recv(std::uint64_t token, std::int32_t res, std::uint32_t flags,
                             std::size_t& completed) {
  const bool has_buffer = (flags & IORING_CQE_F_BUFFER) != 0;
  const unsigned bid = flags >> IORING_CQE_BUFFER_SHIFT;
  RecvStream* stream = find_stream(token_fd(token));
  if (stream == nullptr || stream->generation != token_generation(token)) {
    if (has_buffer) return_buffer(bid);  // received for a socket closed since
    return;
  }
  RecvStream& s = *stream;
  const bool more = (flags & IORING_CQE_F_MORE) != 0;
  if (!more) s.armed = s.stopping = false;
  if (res > 0 && has_buffer) {
    const unsigned char* data = recv_memory_ + std::size_t{bid} * options_.recv_buffer_size;
    auto len = static_cast<std::size_t>(res);
    Operation* reader = nullptr;
    std::size_t given = 0;
    if (s.ahead_size() == 0 && !s.waiters.empty()) {
      reader = s.waiters.front();
      s.waiters.pop_front();
      given = std::min(len, reader->length);
      std::memcpy(reader->buffer, data, given);
    }
    if (given < len) {
      if (s.ahead_head > 0 && s.ahead_head >= s.ahead.size() / 2) {
        s.ahead.erase(0, s.ahead_head);  // keep the string from growing at the front
        s.ahead_head = 0;
      }
      s.ahead.append(reinterpret_cast<const char*>(data) + given, len - given);
    }
    return_buffer(bid);
    if (!more) ++stats_.recv_ended;
    if (s.ahead_size() > options_.recv_ahead_limit && s.armed && !s.stopping) {
      io_uring_sqe* sqe = get_sqe();
      io_uring_prep_cancel64(sqe, token, 0);
      io_uring_sqe_set_data64(sqe, kIgnoreToken);
      s.stopping = true;
      ++stats_.recv_stops;
    }
    if (reader != nullptr) {
      finish_unlinked(*reader, static_cast<std::int64_t>(given));
      ++completed;
    }
  } else {
    if (has_buffer) return_buffer(bid);
    if (res == 0) {
      s.eof = true;
    } else if (res == -ENOBUFS) {
      ++stats_.recv_nobufs;
      starved_.push_back(s.fd);  // re-armed at the end of this dispatch
    } else if (res < 0 && res != -ECANCELED) {
      s.error = -res;
    }
  }
  serve_waiters(s, completed);
  if (res != -ENOBUFS && !s.waiters.empty()) maybe_arm_recv(s);
}

// close() of a stream socket: waiting reads are cancelled, bytes nobody read are dropped with
// the socket and the multishot request is cancelled. Returns whether it had a fixed slot,
// which close() empties once the socket's other requests are settled.
bool IoUringBackend::forget_stream(int fd) noexcept {
  const auto index = static_cast<std::size_t>(fd);
  if (index >= streams_.size() || streams_[index] == nullptr) return false;
  std::unique_ptr<RecvStream> stream = std::move(streams_[index]);
  while (Operation* op = stream->waiters.front()) {
    stream->waiters.pop_front();
    op->state = OpState::cancel_requested;
    finish_unlinked(*op, -ECANCELED);
  }
  try {
    if (stream->armed) {
      io_uring_sqe* sqe = get_sqe();
      io_uring_prep_cancel64(sqe, recv_token(fd, stream->generation), 0);
      io_uring_sqe_set_data64(sqe, kIgnoreToken);
      // Now, so the request lets go of the socket when it closes (the peer sees the close
      // at once); late completions are recognised by generation and their buffers returned.
      await_final(recv_token(fd, stream->generation));
    }
  } catch (...) {
    // The ring is unusable; the stale completions, if any, are recognised by generation.
  }
  return stream->fixed;
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
      if (res == -EOPNOTSUPP && s.lazy && !cancelling) {
        refuse_lazy_sends(static_cast<int>(op.handle));
        resubmit(op);
        return false;
      }
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
    case Phase::recv_waiter:
      break;  // has no request of its own, so no completion either
  }
  return false;
}

void IoUringBackend::finish(Operation& op, std::int64_t result) {
  unlink(op);
  finish_unlinked(op, result);
}

// For operations on no per-fd list (stream read waiters).
void IoUringBackend::finish_unlinked(Operation& op, std::int64_t result) {
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
  lazy_queued_.clear();  // their owners may be gone; a lazy wait must not read them
  if (ring_ == nullptr) return;
  if (single_issuer_ && (!enabled_ || owner_tid_ != current_tid())) return;
  try {
    std::size_t ops = in_flight_;
    std::size_t multishots = 0;
    for (auto& [fd, listener] : listeners_) multishots += listener->armed ? 1 : 0;
    for (auto& stream : streams_) multishots += stream != nullptr && stream->armed ? 1 : 0;
    auto account = [&] {
      for (const Completion& c : pending_) {
        if (c.user_data == kWakeToken) wake_armed_ = false;
        if ((c.user_data & kTagMask) == 0 && ops > 0) --ops;
        if ((c.user_data & kTagMask) == kAcceptTag) {
          if (c.res >= 0) ::close(c.res);
          if ((c.flags & IORING_CQE_F_MORE) == 0 && multishots > 0) --multishots;
        }
        if ((c.user_data & kTagMask) == kRecvTag && (c.flags & IORING_CQE_F_MORE) == 0 &&
            multishots > 0)
          --multishots;
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
