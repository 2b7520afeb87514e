// The syscalls behind ReadinessBackend: one non-blocking attempt per operation. Written to
// POSIX plus what Linux and the BSDs share; it must never block and never wait.
#include "corio/backends/posix/readiness_backend.hpp"

#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cstddef>

#include "corio/core/posix_fd.hpp"

namespace corio::backends::posix {

using core::IoBuffer;
using core::OpCode;
using core::Operation;
using core::OpState;

static_assert(sizeof(IoBuffer) == sizeof(iovec) &&
              offsetof(IoBuffer, data) == offsetof(iovec, iov_base) &&
              offsetof(IoBuffer, size) == offsetof(iovec, iov_len));

namespace {

// A peer that went away must surface as EPIPE, never as SIGPIPE. Where send() has no flag for
// that (macOS before MSG_NOSIGNAL), the socket must carry SO_NOSIGPIPE, which every socket corio
// creates, accepts or adopts gets (core/posix_fd.hpp).
#ifdef MSG_NOSIGNAL
constexpr int kNoSignal = MSG_NOSIGNAL;
#elif defined(SO_NOSIGPIPE)
constexpr int kNoSignal = 0;
#else
#error "neither MSG_NOSIGNAL nor SO_NOSIGPIPE: a closed peer would kill the process"
#endif

std::int64_t syscall_result(long r) {
  return r >= 0 ? r : -static_cast<std::int64_t>(errno);
}

msghdr make_msghdr(Operation& op) {
  msghdr msg{};
  msg.msg_iov = reinterpret_cast<iovec*>(op.buffers);
  msg.msg_iovlen = static_cast<decltype(msg.msg_iovlen)>(op.buffer_count);
  if (op.address != nullptr) {
    msg.msg_name = op.address->storage;
    msg.msg_namelen =
        op.code == OpCode::recv_msg ? sizeof(op.address->storage) : op.address->length;
  }
  return msg;
}

}  // namespace

std::int64_t attempt(Operation& op) {
  const int fd = static_cast<int>(op.handle);
  for (;;) {
    long r;
    switch (op.code) {
      case OpCode::wait_readable:
      case OpCode::wait_writable:
        return -EAGAIN;  // answered from readiness, never by a syscall
      case OpCode::accept: {
        socklen_t len = sizeof(op.address->storage);
        sockaddr* addr = op.address ? reinterpret_cast<sockaddr*>(op.address->storage) : nullptr;
        r = core::posix::accept_socket(fd, addr, addr ? &len : nullptr);
        if (r >= 0 && op.address) op.address->length = len;
        break;
      }
      case OpCode::connect: {
        // The first attempt issues connect(); a retry after writability reads SO_ERROR.
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
        r = ::send(fd, op.buffer, op.length, op.flags | kNoSignal);
        break;
      case OpCode::recv_from: {
        socklen_t len = sizeof(op.address->storage);
        r = ::recvfrom(fd, op.buffer, op.length, op.flags,
                       reinterpret_cast<sockaddr*>(op.address->storage), &len);
        if (r >= 0) op.address->length = len;
        break;
      }
      case OpCode::send_to:
        r = ::sendto(fd, op.buffer, op.length, op.flags | kNoSignal,
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
        r = ::sendmsg(fd, &msg, op.flags | kNoSignal);
        break;
      }
      case OpCode::read_at:
        // Regular files are always "ready"; pipes and ttys use offset ~0 for read().
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
    if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return -EAGAIN;
    return syscall_result(r);
  }
}

void poll_now(pollfd* fds, std::size_t count, std::size_t& slice) {
  for (std::size_t first = 0; first < count;) {
    const std::size_t n = count - first < slice ? count - first : slice;
    if (::poll(fds + first, static_cast<nfds_t>(n), 0) >= 0) {
      first += n;
    } else if (errno == EINTR) {
      continue;
    } else if (errno == EINVAL && n > 1) {
      slice = n / 2;  // more entries than RLIMIT_NOFILE allows: ask in smaller slices
    } else {
      // ENOMEM or EFAULT: call these ready, so their operations retry and meet whatever is
      // wrong themselves rather than wait for an edge that may never come.
      for (std::size_t i = first; i < first + n; ++i) fds[i].revents = fds[i].events;
      first += n;
    }
  }
}

bool is_stream_socket(int fd) {
  int type = 0;
  socklen_t len = sizeof type;
  return ::getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) == 0 && type == SOCK_STREAM;
}

void close_descriptor(int fd) {
  ::close(fd);
}

}  // namespace corio::backends::posix
