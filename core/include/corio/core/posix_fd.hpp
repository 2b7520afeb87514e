// Creating descriptors the way corio needs them on every POSIX system: non-blocking where
// asked, close-on-exec always, and (on a system whose send() lacks MSG_NOSIGNAL, which none
// corio targets today) SIGPIPE-free sockets. Linux and the BSDs set the flags in the
// creating call (SOCK_NONBLOCK, pipe2, accept4); macOS cannot, so there the flags follow the
// call at once, and corio's own spawns wait for that (creation_lock); a fork elsewhere in the
// program can still catch a descriptor in between. CORIO_PORTABLE_POSIX (set by the Linux
// kqueue build) takes that fallback on Linux too, so the whole test suite runs it here.
// Nothing here may leave a descriptor open when it fails, or block.
#pragma once

#ifndef _WIN32

#include <sys/socket.h>

#include <shared_mutex>

#if defined(SOCK_NONBLOCK) && !defined(CORIO_PORTABLE_POSIX)
#define CORIO_POSIX_FLAGS_AT_CREATION 1
#else
#define CORIO_POSIX_FLAGS_AT_CREATION 0
#endif

namespace corio::core::posix {

// All return the new descriptor(s), or -1 with errno set and nothing left open.
int make_socket(int domain, int type, int protocol);  // always non-blocking
int make_socket_pair(int domain, int type, bool nonblocking, int fds[2]);
int make_pipe(bool nonblocking, int fds[2]);
int accept_socket(int listener, sockaddr* address, socklen_t* length);  // non-blocking

// Makes a descriptor someone else opened fit for the loop: non-blocking, close-on-exec, and
// SIGPIPE-free if it is a socket on a system without MSG_NOSIGNAL. -1 with errno on failure.
int adopt(int fd);

#if !CORIO_POSIX_FLAGS_AT_CREATION
// Held shared from a descriptor's creation until its flags are set, and exclusively around a
// spawn, so no child corio starts inherits a descriptor that was about to be close-on-exec.
std::shared_mutex& creation_lock();
#endif

}  // namespace corio::core::posix

#endif  // _WIN32
