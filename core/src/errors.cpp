// Maps errno values to the OSError subclass Python raises for them.
#include "corio/core/errors.hpp"

#include <cerrno>
#include <cstring>

namespace corio {

void throw_os_error(int e, const std::string& context) {
  // std::system_error appends ": <strerror>" itself; adding it here printed it twice.
  const std::string what = context.empty() ? "[Errno " + std::to_string(e) + "]" : context;
  switch (e) {
    case EPIPE:
#ifdef ESHUTDOWN
    case ESHUTDOWN:
#endif
      throw BrokenPipeError(e, what);
    case ECONNABORTED:
      throw ConnectionAbortedError(e, what);
    case ECONNREFUSED:
      throw ConnectionRefusedError(e, what);
    case ECONNRESET:
      throw ConnectionResetError(e, what);
    case ETIMEDOUT:
      throw TimeoutError(e, what);
    case ENOENT:
      throw FileNotFoundError(e, what);
    case EEXIST:
      throw FileExistsError(e, what);
    case EACCES:
    case EPERM:
      throw PermissionError(e, what);
    case EINTR:
      throw InterruptedError(e, what);
    case EAGAIN:
#if EWOULDBLOCK != EAGAIN
    case EWOULDBLOCK:
#endif
    case EINPROGRESS:
    case EALREADY:
      throw BlockingIOError(e, what);
    case ESRCH:
      throw ProcessLookupError(e, what);
    case ECHILD:
      throw ChildProcessError(e, what);
    case EISDIR:
      throw IsADirectoryError(e, what);
    case ENOTDIR:
      throw NotADirectoryError(e, what);
    default:
      throw OSError(e, what);
  }
}

}  // namespace corio
