// Test helper: the handful of raw OS calls the backend tests make from the outside (read or
// write a peer, make a socket pair or a pipe, check a handle's flags), spelled once for POSIX
// and once for Windows, so one test source runs on every backend. Handles are ints, as the
// tests store them (SOCKET and HANDLE values fit on Windows).
// It must never depend on corio, and on Windows never let its own I/O reach a completion
// port (every overlapped call it makes sets the low bit of hEvent, which suppresses that).
#pragma once

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <utility>

#ifdef _WIN32
// clang-format off
#include <winsock2.h>
#include <ws2tcpip.h>
#include <windows.h>
// clang-format on
#include <sys/types.h>

#include <atomic>
#include <string>
#else
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>
#endif

namespace corio::testing::os {

#ifndef _WIN32

inline ssize_t read(int fd, void* buf, std::size_t n) {
  return ::read(fd, buf, n);
}
inline ssize_t write(int fd, const void* buf, std::size_t n) {
  return ::write(fd, buf, n);
}
inline int close(int fd) {
  return ::close(fd);
}
inline long long lseek(int fd, long long offset, int whence) {
  return ::lseek(fd, static_cast<off_t>(offset), whence);
}
// A socket of `type` (SOCK_STREAM, SOCK_DGRAM) in `family`, close-on-exec.
inline int socket(int family, int type, bool nonblocking) {
  return ::socket(family, type | SOCK_CLOEXEC | (nonblocking ? SOCK_NONBLOCK : 0), 0);
}
// Sends without blocking and without SIGPIPE; -1 with errno EAGAIN when the buffer is full.
inline ssize_t send_nowait(int fd, const void* buf, std::size_t n) {
  return ::send(fd, buf, n, MSG_DONTWAIT | MSG_NOSIGNAL);
}
inline int shutdown_write(int fd) {
  return ::shutdown(fd, SHUT_WR);
}
// A connected, non-blocking, close-on-exec stream socket pair.
inline int stream_pair(int sv[2]) {
  return ::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv);
}
// A non-blocking, close-on-exec pipe: p[0] reads, p[1] writes.
inline int pipe(int p[2]) {
  return ::pipe2(p, O_NONBLOCK | O_CLOEXEC);
}
// An open read/write file that no name refers to any more.
inline int temp_file() {
  char path[] = "/tmp/corio-test-XXXXXX";
  const int fd = ::mkstemp(path);
  if (fd >= 0) ::unlink(path);
  return fd;
}
inline bool is_nonblocking(int fd) {
  return (::fcntl(fd, F_GETFL) & O_NONBLOCK) != 0;
}
inline bool is_cloexec(int fd) {
  return (::fcntl(fd, F_GETFD) & FD_CLOEXEC) != 0;
}
inline bool is_closed(int fd) {
  return ::fcntl(fd, F_GETFD) == -1 && errno == EBADF;
}
inline int set_send_buffer(int fd, int bytes) {
  return ::setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &bytes, sizeof bytes);
}

#else  // _WIN32

namespace detail {

// Winsock must be started before the first socket call, whoever makes it first.
struct WinsockInit {
  WinsockInit() {
    WSADATA data;
    ::WSAStartup(MAKEWORD(2, 2), &data);
  }
};
inline const WinsockInit winsock_init;

inline HANDLE handle_of(int fd) {
  return reinterpret_cast<HANDLE>(static_cast<std::intptr_t>(fd));
}
inline SOCKET socket_of(int fd) {
  return static_cast<SOCKET>(static_cast<std::intptr_t>(fd));
}
inline int fd_of(HANDLE h) {
  return static_cast<int>(reinterpret_cast<std::intptr_t>(h));
}
inline int fd_of(SOCKET s) {
  return static_cast<int>(static_cast<std::intptr_t>(s));
}

inline bool is_socket(int fd) {
  int type = 0;
  int length = sizeof type;
  return ::getsockopt(socket_of(fd), SOL_SOCKET, SO_TYPE, reinterpret_cast<char*>(&type),
                      &length) == 0;
}

inline void no_inherit(HANDLE h) {
  ::SetHandleInformation(h, HANDLE_FLAG_INHERIT, 0);
}

// errno for the usual Winsock/Win32 failures of these helpers.
inline int to_errno(unsigned long e) {
  switch (e) {
    case WSAEWOULDBLOCK:
    case ERROR_NO_DATA:
      return EAGAIN;
    case WSAECONNRESET:
      return ECONNRESET;
    case WSAESHUTDOWN:
    case ERROR_BROKEN_PIPE:
      return EPIPE;
    case WSAENOTSOCK:
    case ERROR_INVALID_HANDLE:
      return EBADF;
    default:
      return EIO;
  }
}

// One overlapped ReadFile/WriteFile on an overlapped handle, waited for here. At `offset`
// for files; a pipe ignores it. A pipe write that cannot finish at once is cancelled and
// reported as EAGAIN (what a non-blocking POSIX pipe would say).
inline ssize_t overlapped_io(int fd, bool writing, void* buf, std::size_t n, long long offset,
                             bool give_up_when_pending) {
  OVERLAPPED ov{};
  ov.Offset = static_cast<DWORD>(offset);
  ov.OffsetHigh = static_cast<DWORD>(static_cast<unsigned long long>(offset) >> 32);
  HANDLE event = ::CreateEventW(nullptr, TRUE, FALSE, nullptr);
  // The low bit keeps this completion away from any port the handle is associated with.
  ov.hEvent = reinterpret_cast<HANDLE>(reinterpret_cast<std::uintptr_t>(event) | 1);
  const DWORD length = static_cast<DWORD>(n > 0x7FFFFFFF ? 0x7FFFFFFF : n);
  DWORD done = 0;
  BOOL ok = writing ? ::WriteFile(handle_of(fd), buf, length, &done, &ov)
                    : ::ReadFile(handle_of(fd), buf, length, &done, &ov);
  DWORD error = ok ? 0 : ::GetLastError();
  if (!ok && error == ERROR_IO_PENDING) {
    if (give_up_when_pending) {
      ::Sleep(2);  // give a slow pipe a moment before calling it full
      if (!HasOverlappedIoCompleted(&ov)) ::CancelIoEx(handle_of(fd), &ov);
    }
    ok = ::GetOverlappedResult(handle_of(fd), &ov, &done, TRUE);
    error = ok ? 0 : ::GetLastError();
  }
  ::CloseHandle(event);
  if (ok) {
    if (done == 0 && n > 0 && writing) {
      errno = EAGAIN;
      return -1;
    }
    return static_cast<ssize_t>(done);
  }
  if (error == ERROR_HANDLE_EOF || (!writing && error == ERROR_BROKEN_PIPE)) return 0;
  if (error == ERROR_OPERATION_ABORTED) {
    if (done > 0) return static_cast<ssize_t>(done);
    errno = EAGAIN;
    return -1;
  }
  errno = to_errno(error);
  return -1;
}

inline long long file_position(int fd) {
  LARGE_INTEGER zero{}, position{};
  if (!::SetFilePointerEx(handle_of(fd), zero, &position, FILE_CURRENT)) return -1;
  return position.QuadPart;
}

inline void advance(int fd, ssize_t by) {
  LARGE_INTEGER delta{};
  delta.QuadPart = by;
  ::SetFilePointerEx(handle_of(fd), delta, nullptr, FILE_CURRENT);
}

}  // namespace detail

inline ssize_t read(int fd, void* buf, std::size_t n) {
  using namespace detail;
  if (is_socket(fd)) {
    const int r = ::recv(socket_of(fd), static_cast<char*>(buf), static_cast<int>(n), 0);
    if (r == SOCKET_ERROR) {
      errno = to_errno(static_cast<unsigned long>(::WSAGetLastError()));
      return -1;
    }
    return r;
  }
  if (::GetFileType(handle_of(fd)) == FILE_TYPE_PIPE) {
    DWORD available = 0;
    if (!::PeekNamedPipe(handle_of(fd), nullptr, 0, nullptr, &available, nullptr)) {
      const DWORD e = ::GetLastError();
      if (e == ERROR_BROKEN_PIPE) return 0;
      errno = to_errno(e);
      return -1;
    }
    if (available == 0) {
      errno = EAGAIN;
      return -1;
    }
    return overlapped_io(fd, false, buf, n < available ? n : available, 0, false);
  }
  const ssize_t r = overlapped_io(fd, false, buf, n, file_position(fd), false);
  if (r > 0) advance(fd, r);
  return r;
}

inline ssize_t write(int fd, const void* buf, std::size_t n) {
  using namespace detail;
  if (is_socket(fd)) {
    const int r = ::send(socket_of(fd), static_cast<const char*>(buf), static_cast<int>(n), 0);
    if (r == SOCKET_ERROR) {
      errno = to_errno(static_cast<unsigned long>(::WSAGetLastError()));
      return -1;
    }
    return r;
  }
  void* data = const_cast<void*>(buf);
  if (::GetFileType(handle_of(fd)) == FILE_TYPE_PIPE) {
    // A pipe write that does not fit waits whole: retry smaller, as a POSIX pipe would take
    // what fits, until not even one byte does.
    for (std::size_t size = n;; size /= 2) {
      const ssize_t r = overlapped_io(fd, true, data, size, 0, true);
      if (r != -1 || errno != EAGAIN || size <= 1) return r;
    }
  }
  const ssize_t r = overlapped_io(fd, true, data, n, file_position(fd), false);
  if (r > 0) advance(fd, r);
  return r;
}

inline int close(int fd) {
  using namespace detail;
  if (is_socket(fd)) return ::closesocket(socket_of(fd)) == 0 ? 0 : -1;
  return ::CloseHandle(handle_of(fd)) ? 0 : -1;
}

inline long long lseek(int fd, long long offset, int whence) {
  LARGE_INTEGER delta{}, position{};
  delta.QuadPart = offset;
  // SEEK_SET/CUR/END have FILE_BEGIN/CURRENT/END's values.
  if (!::SetFilePointerEx(detail::handle_of(fd), delta, &position, static_cast<DWORD>(whence)))
    return -1;
  return position.QuadPart;
}

inline int socket(int family, int type, bool nonblocking) {
  using namespace detail;
  const SOCKET s =
      ::WSASocketW(family, type, 0, nullptr, 0, WSA_FLAG_OVERLAPPED | WSA_FLAG_NO_HANDLE_INHERIT);
  if (s == INVALID_SOCKET) return -1;
  u_long on = nonblocking ? 1 : 0;
  ::ioctlsocket(s, FIONBIO, &on);
  return fd_of(s);
}

inline ssize_t send_nowait(int fd, const void* buf, std::size_t n) {
  return write(fd, buf, n);  // the sockets made here are non-blocking; no SIGPIPE on Windows
}

inline int shutdown_write(int fd) {
  return ::shutdown(detail::socket_of(fd), SD_SEND);
}

inline int set_send_buffer(int fd, int bytes) {
  return ::setsockopt(detail::socket_of(fd), SOL_SOCKET, SO_SNDBUF,
                      reinterpret_cast<const char*>(&bytes), sizeof bytes);
}

// No socketpair() on Windows: a loopback TCP connection stands in for the AF_UNIX pair.
inline int stream_pair(int sv[2]) {
  using namespace detail;
  const int listener = socket(AF_INET, SOCK_STREAM, false);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  int length = sizeof address;
  int client = -1;
  SOCKET server = INVALID_SOCKET;
  if (::bind(socket_of(listener), reinterpret_cast<sockaddr*>(&address), sizeof address) == 0 &&
      ::getsockname(socket_of(listener), reinterpret_cast<sockaddr*>(&address), &length) == 0 &&
      ::listen(socket_of(listener), 1) == 0) {
    client = socket(AF_INET, SOCK_STREAM, false);
    if (::connect(socket_of(client), reinterpret_cast<sockaddr*>(&address), sizeof address) == 0) {
      server = ::accept(socket_of(listener), nullptr, nullptr);
    }
  }
  ::closesocket(socket_of(listener));
  if (server == INVALID_SOCKET) {
    if (client >= 0) ::closesocket(socket_of(client));
    return -1;
  }
  no_inherit(reinterpret_cast<HANDLE>(server));
  u_long on = 1;
  BOOL nodelay = TRUE;
  for (SOCKET s : {socket_of(client), server}) {
    ::ioctlsocket(s, FIONBIO, &on);
    ::setsockopt(s, IPPROTO_TCP, TCP_NODELAY, reinterpret_cast<const char*>(&nodelay),
                 sizeof nodelay);
  }
  sv[0] = client;
  sv[1] = fd_of(server);
  return 0;
}

// Anonymous pipes cannot do overlapped I/O: a uniquely named pipe stands in.
inline int pipe(int p[2]) {
  using namespace detail;
  static std::atomic<unsigned> counter{0};
  const std::wstring name = L"\\\\.\\pipe\\corio-test-" + std::to_wstring(::GetCurrentProcessId()) +
                            L"-" + std::to_wstring(counter.fetch_add(1));
  HANDLE reader = ::CreateNamedPipeW(
      name.c_str(), PIPE_ACCESS_INBOUND | FILE_FLAG_OVERLAPPED | FILE_FLAG_FIRST_PIPE_INSTANCE,
      PIPE_TYPE_BYTE | PIPE_READMODE_BYTE | PIPE_WAIT | PIPE_REJECT_REMOTE_CLIENTS, 1, 65536, 65536,
      0, nullptr);
  if (reader == INVALID_HANDLE_VALUE) return -1;
  HANDLE writer = ::CreateFileW(name.c_str(), GENERIC_WRITE | FILE_READ_ATTRIBUTES, 0, nullptr,
                                OPEN_EXISTING, FILE_FLAG_OVERLAPPED, nullptr);
  if (writer == INVALID_HANDLE_VALUE) {
    ::CloseHandle(reader);
    return -1;
  }
  p[0] = fd_of(reader);
  p[1] = fd_of(writer);
  return 0;
}

inline int temp_file() {
  using namespace detail;
  wchar_t directory[MAX_PATH + 1];
  wchar_t path[MAX_PATH + 1];
  if (::GetTempPathW(MAX_PATH + 1, directory) == 0 ||
      ::GetTempFileNameW(directory, L"cor", 0, path) == 0) {
    return -1;
  }
  HANDLE h = ::CreateFileW(
      path, GENERIC_READ | GENERIC_WRITE, FILE_SHARE_READ | FILE_SHARE_WRITE | FILE_SHARE_DELETE,
      nullptr, CREATE_ALWAYS,
      FILE_ATTRIBUTE_TEMPORARY | FILE_FLAG_DELETE_ON_CLOSE | FILE_FLAG_OVERLAPPED, nullptr);
  return h == INVALID_HANDLE_VALUE ? -1 : fd_of(h);
}

// Windows cannot report FIONBIO: a peek that must not block tells. Only for sockets with
// nothing to read yet (which is how the tests use it).
inline bool is_nonblocking(int fd) {
  using namespace detail;
  DWORD timeout = 200;
  ::setsockopt(socket_of(fd), SOL_SOCKET, SO_RCVTIMEO, reinterpret_cast<const char*>(&timeout),
               sizeof timeout);
  char c;
  const int r = ::recv(socket_of(fd), &c, 1, MSG_PEEK);
  const int e = r == SOCKET_ERROR ? ::WSAGetLastError() : 0;
  timeout = 0;
  ::setsockopt(socket_of(fd), SOL_SOCKET, SO_RCVTIMEO, reinterpret_cast<const char*>(&timeout),
               sizeof timeout);
  return e != WSAETIMEDOUT;
}

inline bool is_cloexec(int fd) {
  DWORD flags = 0;
  return ::GetHandleInformation(detail::handle_of(fd), &flags) &&
         (flags & HANDLE_FLAG_INHERIT) == 0;
}

inline bool is_closed(int fd) {
  DWORD flags = 0;
  return !detail::is_socket(fd) && !::GetHandleInformation(detail::handle_of(fd), &flags);
}

#endif  // _WIN32

}  // namespace corio::testing::os
