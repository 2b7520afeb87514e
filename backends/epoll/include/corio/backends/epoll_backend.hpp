// The epoll backend: a readiness backend presented as operations.
// Edge-triggered, each fd registered once (on its first wait), the syscall tried before any
// wait (except a recv right after a short one on a stream socket, which would say EAGAIN), an
// eventfd for cross-thread wake-up, and epoll_pwait2 for nanosecond timeouts. Per-fd state lives in
// a vector indexed by fd, so finding it costs no hashing. It must never call into the runtime: it
// only moves Operations and calls on_complete.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

#include "corio/core/backend.hpp"
#include "corio/core/operation.hpp"

namespace corio::backends {

class EpollBackend {
 public:
  static constexpr std::string_view kName = "epoll";

  struct Options {};  // nothing to choose
  static Options default_options() { return {}; }

  EpollBackend();
  explicit EpollBackend(Options) : EpollBackend() {}
  ~EpollBackend();
  EpollBackend(const EpollBackend&) = delete;
  EpollBackend& operator=(const EpollBackend&) = delete;

  bool start(core::Operation& op);
  void cancel(core::Operation& op);
  std::size_t wait(core::Nanos timeout);
  void wake() noexcept;
  std::size_t in_flight() const { return in_flight_; }
  void close(core::NativeHandle handle);

 private:
  struct OpQueue {
    core::Operation* head = nullptr;
    core::Operation* tail = nullptr;
    bool empty() const { return head == nullptr; }
  };
  struct FdState {
    OpQueue readers;
    OpQueue writers;
    bool registered = false;
    bool readable = false;  // set by an event, cleared by EAGAIN
    bool writable = false;
    // A short recv on a stream socket emptied its receive queue (as libuv also assumes),
    // so the next recv waits for an edge instead of paying for a recv that says EAGAIN.
    // Cleared by the next readable edge. Never set once the peer hung up: an end of file
    // still to be read is no data, so a short read does not show it, and it raises no new
    // edge.
    bool drained = false;
    bool hung_up = false;  // an event reported RDHUP, HUP or ERR
    enum class Kind : std::uint8_t { unknown, stream_socket, other } kind = Kind::unknown;
  };

  FdState& state_for(int fd);
  void enqueue(OpQueue& queue, core::Operation& op);
  void unlink(OpQueue& queue, core::Operation& op);
  void ensure_registered(int fd, FdState& state);
  void forget(int fd);
  void note_recv(int fd, FdState& state, const core::Operation& op, std::int64_t result);
  void drain(int fd, OpQueue& queue, bool& ready);
  void finish(core::Operation& op, std::int64_t result);

  int epoll_fd_ = -1;
  int wake_fd_ = -1;
  bool have_pwait2_ = true;
  std::size_t in_flight_ = 0;
  std::vector<FdState> fds_;
  void* events_ = nullptr;  // epoll_event[kMaxEvents]; kept opaque to keep this header clean
};

static_assert(core::Backend<EpollBackend>);

}  // namespace corio::backends
