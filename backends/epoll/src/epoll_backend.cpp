// epoll backend: operations are attempted at once; on EAGAIN they join their fd's FIFO and
// are retried, in order, when an edge for that direction arrives.
#include "corio/backends/epoll_backend.hpp"

#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstring>
#include <ctime>

#include "corio/core/errors.hpp"

namespace corio::backends {

using core::IoBuffer;
using core::OpCode;
using core::Operation;
using core::OpState;

static_assert(sizeof(IoBuffer) == sizeof(iovec) &&
              offsetof(IoBuffer, data) == offsetof(iovec, iov_base) &&
              offsetof(IoBuffer, size) == offsetof(iovec, iov_len));

namespace {

constexpr int kMaxEvents = 256;
constexpr std::uint64_t kWakeToken = ~std::uint64_t{0};

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

bool is_stream_recv(OpCode code) {
  return code == OpCode::recv || code == OpCode::recv_stream;
}

// A zero-timeout poll: is the handle readable/writable right now? (Hang-ups and errors
// count: an operation would not block.)
bool still_ready(int fd, bool reader) {
  pollfd p{fd, static_cast<short>(reader ? POLLIN : POLLOUT), 0};
  return ::poll(&p, 1, 0) > 0;
}

std::int64_t syscall_result(long r) {
  return r >= 0 ? r : -static_cast<std::int64_t>(errno);
}

msghdr make_msghdr(Operation& op) {
  msghdr msg{};
  msg.msg_iov = reinterpret_cast<iovec*>(op.buffers);
  msg.msg_iovlen = op.buffer_count;
  if (op.address != nullptr) {
    msg.msg_name = op.address->storage;
    msg.msg_namelen =
        op.code == OpCode::recv_msg ? sizeof(op.address->storage) : op.address->length;
  }
  return msg;
}

// One attempt at the operation's syscall. Returns -EAGAIN when it must wait.
std::int64_t attempt(Operation& op) {
  const int fd = static_cast<int>(op.handle);
  for (;;) {
    long r;
    switch (op.code) {
      case OpCode::wait_readable:
      case OpCode::wait_writable:
        return -EAGAIN;  // answered from readiness flags, never by a syscall
      case OpCode::accept: {
        socklen_t len = sizeof(op.address->storage);
        sockaddr* addr = op.address ? reinterpret_cast<sockaddr*>(op.address->storage) : nullptr;
        r = ::accept4(fd, addr, addr ? &len : nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (r >= 0 && op.address) op.address->length = len;
        break;
      }
      case OpCode::connect: {
        // First attempt issues connect(); a retry after writability reads SO_ERROR.
        if (op.state == OpState::idle) {
          r = ::connect(fd, reinterpret_cast<const sockaddr*>(op.address->storage),
                        op.address->length);
          if (r < 0 && errno == EINPROGRESS) return -EAGAIN;
        } else {
          int err = 0;
          socklen_t len = sizeof(err);
          if (::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0) return -errno;
          return err == 0 ? 0 : -static_cast<std::int64_t>(err);
        }
        break;
      }
      case OpCode::recv:
        r = ::recv(fd, op.buffer, op.length, op.flags);
        break;
      case OpCode::recv_stream:
        r = ::recv(fd, op.buffer, op.length, 0);
        break;
      case OpCode::send:
        r = ::send(fd, op.buffer, op.length, op.flags | MSG_NOSIGNAL);
        break;
      case OpCode::recv_from: {
        socklen_t len = sizeof(op.address->storage);
        r = ::recvfrom(fd, op.buffer, op.length, op.flags,
                       reinterpret_cast<sockaddr*>(op.address->storage), &len);
        if (r >= 0) op.address->length = len;
        break;
      }
      case OpCode::send_to:
        r = ::sendto(fd, op.buffer, op.length, op.flags | MSG_NOSIGNAL,
                     reinterpret_cast<const sockaddr*>(op.address->storage), op.address->length);
        break;
      case OpCode::recv_msg: {
        msghdr msg = make_msghdr(op);
        r = ::recvmsg(fd, &msg, op.flags);
        if (r >= 0 && op.address) op.address->length = msg.msg_namelen;
        break;
      }
      case OpCode::send_msg: {
        msghdr msg = make_msghdr(op);
        r = ::sendmsg(fd, &msg, op.flags | MSG_NOSIGNAL);
        break;
      }
      case OpCode::read_at:
        // Regular files are always "ready" to epoll; pipes and ttys use offset ~0 for read().
        r = op.offset == ~std::uint64_t{0}
                ? ::read(fd, op.buffer, op.length)
                : ::pread(fd, op.buffer, op.length, static_cast<off_t>(op.offset));
        break;
      case OpCode::write_at:
        r = op.offset == ~std::uint64_t{0}
                ? ::write(fd, op.buffer, op.length)
                : ::pwrite(fd, op.buffer, op.length, static_cast<off_t>(op.offset));
        break;
      default:
        return -EINVAL;
    }
    if (r < 0 && errno == EINTR) continue;
    if (r < 0 && errno == EWOULDBLOCK) return -EAGAIN;
    return syscall_result(r);
  }
}

}  // namespace

EpollBackend::EpollBackend() {
  epoll_fd_ = ::epoll_create1(EPOLL_CLOEXEC);
  if (epoll_fd_ < 0) throw_os_error(errno, "epoll_create1");
  wake_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (wake_fd_ < 0) {
    const int e = errno;
    ::close(epoll_fd_);
    throw_os_error(e, "eventfd");
  }
  epoll_event ev{};
  ev.events = EPOLLIN | EPOLLET;
  ev.data.u64 = kWakeToken;
  if (::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, wake_fd_, &ev) < 0) {
    const int e = errno;
    ::close(wake_fd_);
    ::close(epoll_fd_);
    throw_os_error(e, "epoll_ctl(eventfd)");
  }
  events_ = new epoll_event[kMaxEvents];
}

EpollBackend::~EpollBackend() {
  delete[] static_cast<epoll_event*>(events_);
  ::close(wake_fd_);
  ::close(epoll_fd_);
}

EpollBackend::FdState& EpollBackend::state_for(int fd) {
  if (static_cast<std::size_t>(fd) >= fds_.size())
    fds_.resize(static_cast<std::size_t>(fd) * 2 + 16);
  return fds_[static_cast<std::size_t>(fd)];
}

void EpollBackend::enqueue(OpQueue& queue, Operation& op) {
  op.next = nullptr;
  op.prev = queue.tail;
  if (queue.tail) {
    queue.tail->next = &op;
  } else {
    queue.head = &op;
  }
  queue.tail = &op;
  op.state = OpState::submitted;
  ++in_flight_;
}

void EpollBackend::unlink(OpQueue& queue, Operation& op) {
  (op.prev ? op.prev->next : queue.head) = op.next;
  (op.next ? op.next->prev : queue.tail) = op.prev;
  op.next = op.prev = nullptr;
  --in_flight_;
}

void EpollBackend::ensure_registered(int fd, FdState& state) {
  if (state.registered) return;
  epoll_event ev{};
  ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
  ev.data.u64 = static_cast<std::uint64_t>(fd);
  if (::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &ev) < 0) {
    if (errno != EEXIST) throw_os_error(errno, "epoll_ctl(ADD)");
  }
  state.registered = true;
}

// Remembers that a recv on a stream socket came back short: the kernel copies all it has
// (tcp and unix stream sockets, non-blocking, no signal can cut it short), so the queue was
// empty at that moment and any byte arriving later raises an edge. Datagram sockets return
// one datagram per call, so a short read says nothing about what is queued: never for them.
void EpollBackend::forget(int fd) {
  if (static_cast<std::size_t>(fd) < fds_.size()) fds_[static_cast<std::size_t>(fd)] = FdState{};
}

void EpollBackend::note_recv(int fd, FdState& state, const Operation& op, std::int64_t result) {
  const bool stream_op = op.code == OpCode::recv_stream;
  if (!(stream_op || (op.code == OpCode::recv && op.flags == 0)) || result <= 0 || state.hung_up ||
      static_cast<std::size_t>(result) >= op.length)
    return;
  if (stream_op) {
    state.kind = FdState::Kind::stream_socket;  // its owner says so
  } else if (state.kind == FdState::Kind::unknown) {
    int type = 0;
    socklen_t len = sizeof type;
    const bool stream =
        ::getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) == 0 && type == SOCK_STREAM;
    state.kind = stream ? FdState::Kind::stream_socket : FdState::Kind::other;
  }
  if (state.kind != FdState::Kind::stream_socket) return;
  // An edge only reaches us once the fd is registered; registering now makes epoll report
  // data that arrived since the read.
  try {
    ensure_registered(fd, state);
  } catch (const OSError&) {
    return;
  }
  state.drained = true;
}

void EpollBackend::finish(Operation& op, std::int64_t result) {
  // An accepted descriptor is new: whatever we knew about an older file with that number
  // (closed behind our back) no longer applies.
  if (op.code == OpCode::accept && result >= 0) forget(static_cast<int>(result));
  op.result = result;
  op.state = (result == -ECANCELED && op.state == OpState::cancel_requested) ? OpState::cancelled
                                                                             : OpState::completed;
  op.on_complete(&op);
}

bool EpollBackend::start(Operation& op) {
  const int fd = static_cast<int>(op.handle);
  if (fd < 0) {
    op.result = -EBADF;
    op.state = OpState::completed;
    return true;
  }
  FdState& state = state_for(fd);
  const bool reader = is_reader(op.code);
  OpQueue& queue = reader ? state.readers : state.writers;
  bool& ready = reader ? state.readable : state.writable;
  if (queue.empty()) {
    if (op.code == OpCode::wait_readable || op.code == OpCode::wait_writable) {
      // The flag only says an edge arrived; the owner may have drained the handle with its
      // own syscalls since (add_reader users do), so check before answering "ready".
      if (ready) ready = still_ready(fd, reader);
      if (ready) {
        op.result = 0;
        op.state = OpState::completed;
        return true;
      }
    } else if (!(state.drained && is_stream_recv(op.code))) {
      const std::int64_t r = attempt(op);
      if (r != -EAGAIN) {
        if (is_stream_recv(op.code)) note_recv(fd, state, op, r);
        if (op.code == OpCode::accept && r >= 0) forget(static_cast<int>(r));
        op.result = r;
        op.state = OpState::completed;
        return true;
      }
      ready = false;
    }
  }
  try {
    ensure_registered(fd, state);
  } catch (const OSError& e) {
    // Not pollable (a regular file, say): answer now rather than wait forever.
    op.result = -e.error_number();
    op.state = OpState::completed;
    return true;
  }
  enqueue(queue, op);
  return false;
}

void EpollBackend::cancel(Operation& op) {
  if (op.state != OpState::submitted) return;
  FdState& state = state_for(static_cast<int>(op.handle));
  unlink(is_reader(op.code) ? state.readers : state.writers, op);
  op.state = OpState::cancel_requested;
  finish(op, -ECANCELED);
}

void EpollBackend::drain(int fd, OpQueue& queue, bool& ready) {
  ready = true;
  while (Operation* op = queue.head) {
    std::int64_t r = 0;
    if (op->code != OpCode::wait_readable && op->code != OpCode::wait_writable) {
      r = attempt(*op);
      if (r == -EAGAIN) {
        ready = false;
        return;
      }
      if (is_stream_recv(op->code)) note_recv(fd, state_for(fd), *op, r);
    }
    unlink(queue, *op);
    finish(*op, r);
  }
}

std::size_t EpollBackend::wait(core::Nanos timeout) {
  auto* events = static_cast<epoll_event*>(events_);
  int n;
  if (timeout == 0) {
    n = ::epoll_wait(epoll_fd_, events, kMaxEvents, 0);
  } else if (timeout >= core::kNoDeadline) {
    n = ::epoll_wait(epoll_fd_, events, kMaxEvents, -1);
  } else {
    n = -1;
    if (have_pwait2_) {
      timespec ts{static_cast<time_t>(timeout / core::kNanosPerSecond),
                  static_cast<long>(timeout % core::kNanosPerSecond)};
      n = static_cast<int>(
          ::syscall(SYS_epoll_pwait2, epoll_fd_, events, kMaxEvents, &ts, nullptr, 0));
      if (n < 0 && errno == ENOSYS) have_pwait2_ = false;
    }
    if (!have_pwait2_) {
      // Round up to whole milliseconds: waking late is allowed, waking early is not useful.
      const core::Nanos ms = (timeout + 999'999) / 1'000'000;
      n = ::epoll_wait(epoll_fd_, events, kMaxEvents,
                       ms > INT_MAX ? INT_MAX : static_cast<int>(ms));
    }
  }
  if (n < 0) {
    if (errno == EINTR) return 0;
    throw_os_error(errno, "epoll_wait");
  }
  const std::size_t before = in_flight_;
  for (int i = 0; i < n; ++i) {
    const std::uint64_t token = events[i].data.u64;
    if (token == kWakeToken) {
      std::uint64_t drained;
      [[maybe_unused]] ssize_t r = ::read(wake_fd_, &drained, sizeof drained);
      continue;
    }
    const int fd = static_cast<int>(token);
    FdState& state = state_for(fd);
    const std::uint32_t e = events[i].events;
    if (e & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) state.hung_up = true;
    if (e & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
      state.drained = false;
      drain(fd, state.readers, state.readable);
    }
    if (e & (EPOLLOUT | EPOLLHUP | EPOLLERR)) drain(fd, state.writers, state.writable);
  }
  return before - in_flight_;
}

void EpollBackend::wake() noexcept {
  const std::uint64_t one = 1;
  [[maybe_unused]] ssize_t r = ::write(wake_fd_, &one, sizeof one);
}

void EpollBackend::close(core::NativeHandle handle) {
  const int fd = static_cast<int>(handle);
  if (fd < 0) return;
  if (static_cast<std::size_t>(fd) < fds_.size()) {
    FdState& state = fds_[static_cast<std::size_t>(fd)];
    for (OpQueue* queue : {&state.readers, &state.writers}) {
      while (Operation* op = queue->head) {
        unlink(*queue, *op);
        op->state = OpState::cancel_requested;
        finish(*op, -ECANCELED);
      }
    }
    if (state.registered) ::epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, fd, nullptr);
    state = FdState{};
  }
  ::close(fd);
}

}  // namespace corio::backends
