// corio::File's blocking OS calls on POSIX (see file_os.hpp). Each retries EINTR and returns
// -errno; none may throw or touch a loop (they run on worker threads).
#ifndef _WIN32

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

#include "file_os.hpp"

namespace corio::detail::file_os {

namespace {
std::int64_t result_of(long r) {
  return r >= 0 ? r : -static_cast<std::int64_t>(errno);
}
}  // namespace

std::int64_t open(const std::string& path, const OpenFlags& flags) noexcept {
  int oflags = O_CLOEXEC;
  if (flags.read && flags.write) {
    oflags |= O_RDWR;
  } else if (flags.write) {
    oflags |= O_WRONLY;
  } else {
    oflags |= O_RDONLY;
  }
  if (flags.create) oflags |= O_CREAT;
  if (flags.truncate) oflags |= O_TRUNC;
  if (flags.exclusive) oflags |= O_EXCL;
  if (flags.append) oflags |= O_APPEND;
  int fd;
  do {
    fd = ::open(path.c_str(), oflags, 0666);
  } while (fd < 0 && errno == EINTR);
  if (fd < 0) return -errno;
  // open(2) lets a directory be opened read-only; Python's open() refuses it.
  struct stat st {};
  if (::fstat(fd, &st) == 0 && S_ISDIR(st.st_mode)) {
    ::close(fd);
    return -EISDIR;
  }
  return fd;
}

std::int64_t pread(core::NativeHandle handle, void* buffer, std::size_t length,
                   std::uint64_t offset) noexcept {
  for (;;) {
    const ssize_t r = ::pread(static_cast<int>(handle), buffer, length, static_cast<off_t>(offset));
    if (r < 0 && errno == EINTR) continue;
    return result_of(r);
  }
}

std::int64_t pwrite(core::NativeHandle handle, const void* buffer, std::size_t length,
                    std::uint64_t offset) noexcept {
  for (;;) {
    const ssize_t r =
        ::pwrite(static_cast<int>(handle), buffer, length, static_cast<off_t>(offset));
    if (r < 0 && errno == EINTR) continue;
    return result_of(r);
  }
}

std::int64_t size(core::NativeHandle handle) noexcept {
  struct stat st {};
  if (::fstat(static_cast<int>(handle), &st) != 0) return -errno;
  return static_cast<std::int64_t>(st.st_size);
}

std::int64_t sync(core::NativeHandle handle, bool data_only) noexcept {
  for (;;) {
#ifdef __APPLE__
    (void)data_only;  // macOS declares no fdatasync; fsync is what it offers short of F_FULLFSYNC
    const int r = ::fsync(static_cast<int>(handle));
#else
    const int r =
        data_only ? ::fdatasync(static_cast<int>(handle)) : ::fsync(static_cast<int>(handle));
#endif
    if (r < 0 && errno == EINTR) continue;
    return result_of(r);
  }
}

void close(core::NativeHandle handle) noexcept {
  // Not retried on EINTR: Linux has released the descriptor either way.
  ::close(static_cast<int>(handle));
}

}  // namespace corio::detail::file_os

#endif  // _WIN32
