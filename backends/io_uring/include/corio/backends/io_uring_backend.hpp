// The io_uring backend: a completion backend. Every OpCode is submitted to the kernel as its
// own io_uring request (accept, connect, recv, send, recvmsg, sendmsg, read, write, poll_add);
// start() only fills a submission entry, and wait() submits the batch and waits for
// completions with ONE io_uring_enter per loop iteration in steady state. Accepts are served
// by one multishot accept per listener (probed), so a burst of connections is accepted in
// one go, as a readiness loop accepting until EAGAIN would. Stream reads (recv_stream) are
// served by one multishot recv per socket into a ring of provided buffers (probed): the
// kernel keeps receiving as data arrives, and each read takes what is there, copied once
// from the provided buffer into the reader's buffer. cancel() and close() enter the kernel at
// once, so cancelled operations are finished when they return, as on epoll.
//
// Cross-thread wake-up: an eventfd. The loop thread keeps an IORING_OP_READ armed on it, and
// wake() (any thread) writes to the eventfd: a plain syscall that never touches the ring, so
// the ring can be IORING_SETUP_SINGLE_ISSUER (only the loop thread ever submits). MSG_RING
// would need a second ring per waking thread; the eventfd needs nothing.
//
// It must never call into the runtime (it only moves Operations and calls on_complete), never
// let the kernel write into memory the owner may have freed (every buffer, msghdr and
// address is used only until that op's own completion arrives), and never leak liburing's
// header into the runtime (the ring is kept opaque).
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "corio/core/backend.hpp"
#include "corio/core/operation.hpp"

// liburing's types, defined in <liburing.h> and used only in the .cpp.
struct io_uring;
struct io_uring_sqe;
struct io_uring_buf_ring;

// -DCORIO_IO_URING_SQPOLL=ON makes SQPOLL the default (see Options::sqpoll).
#ifndef CORIO_IO_URING_SQPOLL_DEFAULT
#define CORIO_IO_URING_SQPOLL_DEFAULT 0
#endif

namespace corio::backends {

class IoUringBackend {
 public:
  static constexpr std::string_view kName = "io_uring";
  static constexpr bool kNativeFileIo = true;

  // How the kernel runs completion work, best first. Construction takes the best one the
  // kernel accepts, starting from Options::best_mode.
  enum class TaskRunMode : std::uint8_t {
    defer_taskrun,  // SINGLE_ISSUER|DEFER_TASKRUN (Linux 6.1): completions run only inside wait()
    coop_taskrun,   // COOP_TASKRUN (Linux 5.19): no interrupting IPIs
    plain,          // anything since Linux 5.6
  };

  struct Options {
    unsigned entries = 256;  // submission queue size; the completion queue is twice that
    TaskRunMode best_mode = TaskRunMode::defer_taskrun;  // lower it to exercise the fallbacks
    bool cancel_by_fd = true;  // use IORING_ASYNC_CANCEL_FD|ALL in close() when the kernel has it
    bool multishot_accept = true;  // serve accepts from a multishot accept when the kernel has it
    // Serve recv_stream ops from one multishot recv per socket into a provided buffer ring
    // when the kernel has it (6.0); off, or on older kernels: a plain recv per read.
    bool multishot_recv = true;
    unsigned recv_buffers = 256;           // provided buffers, shared by the loop's sockets (2^n)
    unsigned recv_buffer_size = 16384;     // bytes each; one completion fills at most one
    std::size_t recv_ahead_limit = 65536;  // bytes a socket may hold for its next read before
                                           // its multishot stops (the kernel's buffer then
                                           // applies backpressure to the peer)
    // Stream sockets (those read with recv_stream) get a registered-file slot, and their
    // requests use IOSQE_FIXED_FILE. Off by default: it costs two io_uring_register calls
    // per connection and measured no gain here (bench/echo/README.md).
    bool fixed_files = false;
    unsigned fixed_file_slots = 4096;  // descriptors below this can be registered (slot == fd)
    // IORING_SETUP_SQPOLL: a kernel thread polls the submission queue, so submitting needs
    // no syscall; it spins for sqpoll_idle_ms after the last submission and so burns a
    // core while the loop is busy (a loss on a 2-core machine). Off unless built with
    // -DCORIO_IO_URING_SQPOLL=ON or asked for in a loop's options (EventLoop::Options::backend).
    bool sqpoll = CORIO_IO_URING_SQPOLL_DEFAULT != 0;
    unsigned sqpoll_idle_ms = 100;
    // Sends marked lazy_completion (a stream transport's) go with MSG_DONTWAIT, so each
    // completes inside the io_uring_enter that submits it, and that call waits for one
    // completion beyond them: a reply no longer costs an io_uring_enter of its own, and a
    // ping-pong stream takes one per message instead of two. A lazy send that does not move
    // every byte (short, -EAGAIN, an error) posts a second completion, so the wait ends at
    // once for its owner; -EAGAIN then waits on a poll like any other send. Needs
    // IOSQE_CQE_SKIP_SUCCESS and a kernel that keeps a failed short send's count (Linux
    // 6.1); off with SQPOLL. A socket that refuses the lazy flags (kTLS refuses MSG_WAITALL)
    // gets the send again plainly and sends plainly from then on.
    bool lazy_completions = true;
    // Batched waits (off: 0): while at least batch_min_ops operations are in flight, a
    // wait asks the kernel for as many completions as there are operations and gives it up
    // to batch_wait_us microseconds to gather them (IORING_FEAT_MIN_TIMEOUT, Linux 6.12);
    // once that time is up it returns with whatever came, and with nothing come it waits
    // on as usual. A server with many busy connections then enters the kernel once per
    // batch rather than once per message, and pays for it in latency: a completion may wait
    // up to batch_wait_us for company, a call_soon_threadsafe too. Fewer operations in
    // flight than batch_min_ops (a lone connection, a client), a timer due sooner than
    // batch_wait_us, or an older kernel: the wait is the usual one.
    unsigned batch_wait_us = 0;
    unsigned batch_min_ops = 16;
  };

  // Counters for tests and measurements.
  struct Stats {
    std::uint64_t enters = 0;            // calls that enter the kernel (submit and/or wait)
    std::uint64_t rebuilds = 0;          // rings rebuilt because the loop moved to another thread
    std::uint64_t sq_full = 0;           // submissions forced early by a full submission queue
    std::uint64_t cq_overflows = 0;      // completions fetched from the kernel's overflow list
    std::uint64_t accepts_inline = 0;    // accepts answered from connections already accepted
    std::uint64_t recv_arms = 0;         // multishot recv requests submitted
    std::uint64_t recv_inline = 0;       // stream reads answered from bytes already received
    std::uint64_t recv_nobufs = 0;       // multishot recvs ended by an empty buffer ring
    std::uint64_t recv_stops = 0;        // multishot recvs stopped for recv_ahead_limit
    std::uint64_t recv_ended = 0;        // multishot recvs the kernel ended with data (no F_MORE)
    std::uint64_t files_registered = 0;  // fixed-file slots filled
    std::uint64_t lazy_waits = 0;        // waits that did not count lazy completions
    std::uint64_t lazy_refused = 0;      // lazy sends a socket refused (kTLS), sent again plainly
    std::uint64_t batch_waits = 0;       // waits that gave completions batch_wait_us to gather
  };

  // Throws RuntimeError naming -DCORIO_BACKEND=epoll when io_uring is unavailable (disabled
  // by sysctl or seccomp, kernel too old).
  // The default options, adjusted by the environment variable CORIO_IO_URING, a comma list
  // of name=value for multishot_recv, fixed_files, sqpoll, sqpoll_idle_ms, recv_buffers,
  // recv_buffer_size, lazy_completions, batch_wait_us, batch_min_ops (e.g.
  // "multishot_recv=0,fixed_files=1"), so benchmarks and test runs can switch them in
  // programs whose loops are built for them. Unknown names are ignored.
  static Options default_options();
  IoUringBackend();  // with default_options()
  explicit IoUringBackend(Options options);
  ~IoUringBackend();
  IoUringBackend(const IoUringBackend&) = delete;
  IoUringBackend& operator=(const IoUringBackend&) = delete;

  // false (submitted), except when the answer needs no kernel call: an invalid handle, or
  // an accept while the listener's multishot accept holds connections nobody took yet.
  bool start(core::Operation& op);
  // Sends an IORING_OP_ASYNC_CANCEL and enters the kernel at once, so that on_complete has
  // run (-ECANCELED, state cancelled; or the real result if the operation won the race)
  // when cancel() returns, for every request the kernel can drop immediately: anything
  // waiting on readiness. A request the kernel is busy executing (a file read in progress)
  // reports from a later wait(). One syscall per cancel buys epoll's synchronous behaviour.
  void cancel(core::Operation& op);
  std::size_t wait(core::Nanos timeout);
  void wake() noexcept;
  std::size_t in_flight() const { return in_flight_; }
  // Cancels every operation on handle (synchronously, as cancel() does) and closes it at
  // once: a request still running holds its own reference to the file.
  void close(core::NativeHandle handle);

  TaskRunMode mode() const noexcept { return mode_; }
  bool cancels_by_fd() const noexcept { return cancel_fd_; }
  bool multishot_accept() const noexcept { return multishot_accept_; }
  bool multishot_recv() const noexcept { return multishot_recv_; }
  bool fixed_files() const noexcept { return fixed_files_; }
  bool sqpoll() const noexcept { return sqpoll_; }
  // lazy_completion sends are reported with the next completion (see Options).
  bool lazy_completions() const noexcept { return lazy_sends_; }
  // Waits gather completions for Options::batch_wait_us (asked for, and the kernel has it).
  bool batch_waits() const noexcept { return batch_wait_; }
  // Bytes taken from the kernel for fd's next stream reads (tests and measurements).
  std::size_t recv_ahead(core::NativeHandle handle) const noexcept;
  const Stats& stats() const noexcept { return stats_; }

 private:
  struct Completion {
    std::uint64_t user_data;
    std::int32_t res;
    std::uint32_t flags;
  };
  // A listening socket served by a multishot accept: the kernel accepts every connection as
  // it arrives, and accept operations take them in order (or wait in `waiters`).
  struct Listener {
    int fd = -1;
    std::uint32_t generation = 0;  // in the request's user_data: old requests are recognised
    bool armed = false;            // the multishot request is in the kernel
    bool stopping = false;         // a cancel of the multishot request was sent
    int error = 0;                 // an error the multishot ended with, for the next accept
    std::deque<int> accepted;      // accepted descriptors nobody took yet (owned here)
    std::deque<core::Operation*> waiters;
  };
  // Reads waiting on a stream socket, first come first served, linked through
  // Operation::next/prev instead of the per-fd list (close() reaches them through their
  // stream), so serving one touches no memory but the stream and the operation.
  struct WaitList {
    core::Operation* first = nullptr;
    core::Operation* last = nullptr;
    bool empty() const noexcept { return first == nullptr; }
    core::Operation* front() const noexcept { return first; }
    void push_back(core::Operation* op) noexcept {
      op->next = nullptr;
      op->prev = last;
      (last != nullptr ? last->next : first) = op;
      last = op;
    }
    void erase(core::Operation* op) noexcept {
      (op->prev != nullptr ? op->prev->next : first) = op->next;
      (op->next != nullptr ? op->next->prev : last) = op->prev;
      op->next = op->prev = nullptr;
    }
    void pop_front() noexcept { erase(first); }
  };
  // A stream socket read through recv_stream ops while multishot recv is on. Bytes the
  // multishot request delivers go straight into the first waiting op's buffer, or into
  // `ahead` (in order) when no op waits; reads take from `ahead` first.
  struct RecvStream {
    int fd = -1;
    std::uint32_t generation = 0;  // in the request's user_data, as for listeners
    bool armed = false;            // the multishot request is in the kernel
    bool stopping = false;         // a cancel of it was sent (recv_ahead_limit)
    bool eof = false;              // the peer shut down: every later read returns 0
    bool fixed = false;            // fd has a registered-file slot (slot == fd)
    int error = 0;                 // the error the multishot ended with, for the next read
    std::string ahead;             // received bytes from ahead_head on, not read yet
    std::size_t ahead_head = 0;
    WaitList waiters;
    std::size_t ahead_size() const noexcept { return ahead.size() - ahead_head; }
  };

  void open_ring();
  void close_ring() noexcept;
  void ensure_owner();
  void rebind();
  void enable();
  void arm_wake();
  void ring_ready();
  ::io_uring_sqe* get_sqe();
  void prepare(core::Operation& op, ::io_uring_sqe* sqe, bool lazy = false);
  void resubmit(core::Operation& op);
  void flush_sq();
  void enter(core::Nanos timeout);
  bool is_lazy_send(const core::Operation& op) const noexcept;
  void refuse_lazy_sends(int fd);
  unsigned lazy_still_queued() const noexcept;
  int submit_and_wait_past_lazy(unsigned lazy, core::Nanos timeout);
  unsigned batch_to_wait_for(unsigned lazy, core::Nanos timeout) const noexcept;
  int submit_and_wait_batch(unsigned wait_nr, core::Nanos timeout);
  void harvest();
  std::size_t dispatch();
  bool complete(core::Operation& op, std::int32_t res);
  void finish(core::Operation& op, std::int64_t result);
  void finish_unlinked(core::Operation& op, std::int64_t result);
  void link(core::Operation& op);
  void unlink(core::Operation& op);
  void settle(core::Operation* only, int fd);
  void await_final(std::uint64_t token);
  bool start_accept(core::Operation& op);
  void arm_accept(Listener& listener);
  void on_accept(std::uint64_t user_data, std::int32_t res, std::uint32_t flags,
                 std::size_t& completed);
  void hand_over(core::Operation& op, int fd);
  void forget_listener(int fd) noexcept;
  bool start_recv(core::Operation& op);
  RecvStream& stream_for(int fd);
  RecvStream* find_stream(int fd) const noexcept;
  bool setup_buf_ring();
  void free_buf_ring() noexcept;
  void return_buffer(unsigned bid) noexcept;
  void arm_recv(RecvStream& stream);
  void maybe_arm_recv(RecvStream& stream);
  void on_recv(std::uint64_t token, std::int32_t res, std::uint32_t flags, std::size_t& completed);
  std::int64_t take_ahead(RecvStream& stream, core::Operation& op) noexcept;
  void serve_waiters(RecvStream& stream, std::size_t& completed);
  bool forget_stream(int fd) noexcept;
  bool uses_fixed(int fd) const noexcept;
  void drain_for_exit() noexcept;

  ::io_uring* ring_ = nullptr;
  Options options_;
  TaskRunMode mode_ = TaskRunMode::plain;
  bool single_issuer_ = false;  // only owner_ may enter the ring
  bool enabled_ = false;        // single-issuer rings start disabled and bind on first use
  bool cancel_fd_ = false;
  bool multishot_accept_ = false;
  bool wake_armed_ = false;
  bool multishot_recv_ = false;
  bool fixed_files_ = false;
  bool files_table_ = false;  // the sparse registered-file table exists on this ring
  bool sqpoll_ = false;
  bool lazy_sends_ = false;  // see is_lazy_send
  bool batch_wait_ = false;  // see Options::batch_wait_us
  bool shutting_down_ = false;

  int owner_tid_ = 0;  // the kernel thread id bound to a single-issuer ring
  int wake_fd_ = -1;
  std::uint64_t wake_buf_ = 0;  // the armed eventfd read lands here
  std::size_t in_flight_ = 0;
  // Per-fd doubly linked lists (through Operation::next/prev) of operations in flight, so
  // close() can mark them cancel_requested and never re-arm them on a closed descriptor.
  std::vector<core::Operation*> fd_heads_;
  std::unordered_map<int, std::unique_ptr<Listener>> listeners_;
  std::uint32_t listener_generation_ = 0;
  // Stream sockets by fd, and the provided buffer ring their multishot recvs fill (set up
  // at the first stream read; rebuilt with the ring). The buffers' memory outlives rings.
  std::vector<std::unique_ptr<RecvStream>> streams_;
  std::uint32_t stream_generation_ = 0;
  ::io_uring_buf_ring* buf_ring_ = nullptr;
  unsigned char* recv_memory_ = nullptr;
  std::vector<int> starved_;  // fds whose multishot ran out of buffers in this dispatch
  // Lazy sends queued since the last submission (see is_lazy_send).
  std::vector<core::Operation*> lazy_queued_;
  // By fd: sockets that refused a lazy send's flags; they send plainly until close().
  std::vector<bool> plain_sends_only_;
  // Completions copied out of the ring and not yet dispatched.
  std::vector<Completion> pending_;
  Stats stats_;
};

static_assert(core::Backend<IoUringBackend>);

}  // namespace corio::backends
