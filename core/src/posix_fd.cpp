// posix_fd.hpp: the one place that knows which systems set descriptor flags at creation.
// Must never leave a descriptor open on a failure it reports.
#ifndef _WIN32

#include "corio/core/posix_fd.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>

// Every system that sets flags at creation also has MSG_NOSIGNAL, so those paths below need
// no SO_NOSIGPIPE and make one syscall.
#if CORIO_POSIX_FLAGS_AT_CREATION && !defined(MSG_NOSIGNAL)
#error "flags at creation without MSG_NOSIGNAL: sockets would need SO_NOSIGPIPE"
#endif

namespace corio::core::posix {

namespace {

int set_flags(int fd, bool nonblocking) {
  const int fd_flags = ::fcntl(fd, F_GETFD);
  if (fd_flags < 0 || ::fcntl(fd, F_SETFD, fd_flags | FD_CLOEXEC) < 0) return -1;
  if (nonblocking) {
    const int fl = ::fcntl(fd, F_GETFL);
    if (fl < 0 || ::fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) return -1;
  }
  return 0;
}

int no_sigpipe([[maybe_unused]] int fd) {
#if !defined(MSG_NOSIGNAL) && defined(SO_NOSIGPIPE)
  const int on = 1;
  // ENOTSOCK: a pipe or file, whose writes send() never makes.
  if (::setsockopt(fd, SOL_SOCKET, SO_NOSIGPIPE, &on, sizeof on) < 0 && errno != ENOTSOCK)
    return -1;
#endif
  return 0;
}

#if !CORIO_POSIX_FLAGS_AT_CREATION
// Finishes a descriptor made without its flags; closes it if that fails.
int finish(int fd, bool nonblocking, bool socket) {
  if (fd < 0) return -1;
  if (set_flags(fd, nonblocking) < 0 || (socket && no_sigpipe(fd) < 0)) {
    const int error = errno;
    ::close(fd);
    errno = error;
    return -1;
  }
  return fd;
}

int finish_pair(int r, int fds[2], bool nonblocking, bool socket) {
  if (r < 0) return -1;
  if (finish(fds[0], nonblocking, socket) < 0) {
    const int error = errno;
    ::close(fds[1]);
    errno = error;
    return -1;
  }
  if (finish(fds[1], nonblocking, socket) < 0) {
    const int error = errno;
    ::close(fds[0]);
    errno = error;
    return -1;
  }
  return 0;
}
#endif

}  // namespace

#if !CORIO_POSIX_FLAGS_AT_CREATION
std::shared_mutex& creation_lock() {
  static std::shared_mutex lock;
  return lock;
}
#endif

int make_socket(int domain, int type, int protocol) {
#if CORIO_POSIX_FLAGS_AT_CREATION
  return ::socket(domain, type | SOCK_NONBLOCK | SOCK_CLOEXEC, protocol);
#else
  std::shared_lock creating(creation_lock());
  return finish(::socket(domain, type, protocol), true, true);
#endif
}

int make_socket_pair(int domain, int type, bool nonblocking, int fds[2]) {
#if CORIO_POSIX_FLAGS_AT_CREATION
  return ::socketpair(domain, type | SOCK_CLOEXEC | (nonblocking ? SOCK_NONBLOCK : 0), 0, fds);
#else
  std::shared_lock creating(creation_lock());
  return finish_pair(::socketpair(domain, type, 0, fds), fds, nonblocking, true);
#endif
}

int make_pipe(bool nonblocking, int fds[2]) {
#if CORIO_POSIX_FLAGS_AT_CREATION
  return ::pipe2(fds, O_CLOEXEC | (nonblocking ? O_NONBLOCK : 0));
#else
  std::shared_lock creating(creation_lock());
  return finish_pair(::pipe(fds), fds, nonblocking, false);
#endif
}

int accept_socket(int listener, sockaddr* address, socklen_t* length) {
#if CORIO_POSIX_FLAGS_AT_CREATION
  return ::accept4(listener, address, length, SOCK_NONBLOCK | SOCK_CLOEXEC);
#else
  std::shared_lock creating(creation_lock());
  return finish(::accept(listener, address, length), true, true);
#endif
}

int adopt(int fd) {
  if (set_flags(fd, true) < 0 || no_sigpipe(fd) < 0) return -1;
  return 0;
}

}  // namespace corio::core::posix

#endif  // _WIN32
