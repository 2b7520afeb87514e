// Windows implementation of win32_error.hpp: the one table from Windows error codes to errno.
// It must never throw and never consult the C runtime's errno (msvcrt's is unrelated).
#ifdef _WIN32

#include "corio/core/win32_error.hpp"

// clang-format off
#include <winsock2.h>
#include <windows.h>
#include <winternl.h>
// clang-format on

#include <cerrno>

namespace corio::core::win32 {

int errno_from_error(unsigned long code) noexcept {
  switch (code) {
    case 0:
      return 0;
    case WSAEINTR:
      return EINTR;
    case WSAEBADF:
    case ERROR_INVALID_HANDLE:
      return EBADF;
    case WSAEACCES:
    case ERROR_ACCESS_DENIED:
    case ERROR_SHARING_VIOLATION:
    case ERROR_LOCK_VIOLATION:
      return EACCES;
    case WSAEFAULT:
    case ERROR_NOACCESS:
    case ERROR_INVALID_USER_BUFFER:
      return EFAULT;
    case WSAEINVAL:
    case ERROR_INVALID_PARAMETER:
    case ERROR_INVALID_FUNCTION:
      return EINVAL;
    case WSAEMFILE:
    case ERROR_TOO_MANY_OPEN_FILES:
      return EMFILE;
    case WSAEWOULDBLOCK:
    case ERROR_NO_DATA:  // a non-blocking pipe with nothing to read
      return EAGAIN;
    case WSAEINPROGRESS:
      return EINPROGRESS;
    case WSAEALREADY:
      return EALREADY;
    case WSAENOTSOCK:
      return ENOTSOCK;
    case WSAEDESTADDRREQ:
      return EDESTADDRREQ;
    case WSAEMSGSIZE:
    case ERROR_MORE_DATA:
      return EMSGSIZE;
    case WSAEPROTOTYPE:
      return EPROTOTYPE;
    case WSAENOPROTOOPT:
      return ENOPROTOOPT;
    case WSAEPROTONOSUPPORT:
    case WSAESOCKTNOSUPPORT:
      return EPROTONOSUPPORT;
    case WSAEOPNOTSUPP:
    case ERROR_NOT_SUPPORTED:
      return EOPNOTSUPP;
    case WSAEAFNOSUPPORT:
    case WSAEPFNOSUPPORT:
      return EAFNOSUPPORT;
    case WSAEADDRINUSE:
    case ERROR_ADDRESS_ALREADY_ASSOCIATED:
      return EADDRINUSE;
    case WSAEADDRNOTAVAIL:
      return EADDRNOTAVAIL;
    case WSAENETDOWN:
      return ENETDOWN;
    case WSAENETUNREACH:
    case ERROR_NETWORK_UNREACHABLE:
      return ENETUNREACH;
    case WSAENETRESET:
      return ENETRESET;
    case WSAECONNABORTED:
    case ERROR_CONNECTION_ABORTED:
    case ERROR_REQUEST_ABORTED:
      return ECONNABORTED;
    case WSAECONNRESET:
    case ERROR_NETNAME_DELETED:
      return ECONNRESET;
    case WSAENOBUFS:
      return ENOBUFS;
    case WSAEISCONN:
      return EISCONN;
    case WSAENOTCONN:
    case ERROR_CONNECTION_INVALID:
      return ENOTCONN;
    case WSAESHUTDOWN:
    case ERROR_BROKEN_PIPE:
    case ERROR_PIPE_NOT_CONNECTED:
      return EPIPE;
    case WSAETIMEDOUT:
    case ERROR_SEM_TIMEOUT:
    case WAIT_TIMEOUT:
      return ETIMEDOUT;
    case WSAECONNREFUSED:
    case ERROR_CONNECTION_REFUSED:
    case ERROR_PORT_UNREACHABLE:  // ICMP port unreachable: Linux reports ECONNREFUSED
      return ECONNREFUSED;
    case WSAEHOSTUNREACH:
    case WSAEHOSTDOWN:
    case ERROR_HOST_UNREACHABLE:
      return EHOSTUNREACH;
    case WSAELOOP:
      return ELOOP;
    case WSAENAMETOOLONG:
    case ERROR_FILENAME_EXCED_RANGE:
      return ENAMETOOLONG;
    case WSAENOTEMPTY:
    case ERROR_DIR_NOT_EMPTY:
      return ENOTEMPTY;
    case WSA_OPERATION_ABORTED:  // == ERROR_OPERATION_ABORTED
      return ECANCELED;
    case ERROR_FILE_NOT_FOUND:
    case ERROR_PATH_NOT_FOUND:
    case ERROR_INVALID_DRIVE:
    case ERROR_MOD_NOT_FOUND:
      return ENOENT;
    case ERROR_FILE_EXISTS:
    case ERROR_ALREADY_EXISTS:
      return EEXIST;
    case ERROR_DIRECTORY:
      return ENOTDIR;
    case ERROR_NOT_ENOUGH_MEMORY:
    case ERROR_OUTOFMEMORY:
      return ENOMEM;
    case ERROR_DISK_FULL:
    case ERROR_HANDLE_DISK_FULL:
      return ENOSPC;
    case ERROR_NEGATIVE_SEEK:
    case ERROR_SEEK:
      return ESPIPE;
    case ERROR_WRITE_PROTECT:
      return EROFS;
    case ERROR_INVALID_NAME:
    case ERROR_BAD_PATHNAME:
      return ENOENT;
    case ERROR_CALL_NOT_IMPLEMENTED:
      return ENOSYS;
    case ERROR_HANDLE_EOF:  // ReadFile at or past the end; callers turn it into a 0-byte read
      return ENODATA;
    default:
      return EIO;
  }
}

int errno_from_ntstatus(std::int32_t status) noexcept {
  if (status >= 0) return 0;
  switch (static_cast<std::uint32_t>(status)) {
    case 0xC0000120u:  // STATUS_CANCELLED
    case 0x8000000Au:  // STATUS_HANDLES_CLOSED (wine: the handle was closed under the I/O)
      return ECANCELED;
    case 0xC000020Du:  // STATUS_CONNECTION_RESET
    case 0xC000013Cu:  // STATUS_REMOTE_DISCONNECT
      return ECONNRESET;
    case 0xC0000236u:  // STATUS_CONNECTION_REFUSED
    case 0xC000023Fu:  // STATUS_PORT_UNREACHABLE
      return ECONNREFUSED;
    case 0xC0000241u:  // STATUS_CONNECTION_ABORTED
    case 0xC000013Bu:  // STATUS_LOCAL_DISCONNECT
      return ECONNABORTED;
    case 0xC000020Cu:  // STATUS_CONNECTION_DISCONNECTED (send after shutdown)
    case 0xC000014Bu:  // STATUS_PIPE_BROKEN
      return EPIPE;
    case 0xC0000140u:  // STATUS_INVALID_CONNECTION
      return ENOTCONN;
    case 0xC00000B5u:  // STATUS_IO_TIMEOUT
      return ETIMEDOUT;
    case 0xC000023Cu:  // STATUS_NETWORK_UNREACHABLE
      return ENETUNREACH;
    case 0xC000023Du:  // STATUS_HOST_UNREACHABLE
      return EHOSTUNREACH;
    case 0xC000020Au:  // STATUS_ADDRESS_ALREADY_EXISTS
      return EADDRINUSE;
    case 0xC0000207u:  // STATUS_INVALID_ADDRESS_COMPONENT
      return EADDRNOTAVAIL;
    case 0x80000005u:  // STATUS_BUFFER_OVERFLOW: a datagram larger than the buffer
      return EMSGSIZE;
    case 0xC0000011u:  // STATUS_END_OF_FILE
      return ENODATA;  // callers turn this into a 0-byte read
    default:
      return errno_from_error(::RtlNtStatusToDosError(static_cast<NTSTATUS>(status)));
  }
}

}  // namespace corio::core::win32

#endif  // _WIN32
