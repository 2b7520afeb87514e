// Private to corio's file sources (never installed): the blocking OS calls behind corio::File,
// spelled once for POSIX (file_posix.cpp) and once for Windows (file_win32.cpp). They run on
// a worker thread or at open/close, report errors as -errno and never throw, and must never
// touch a loop.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "corio/core/operation.hpp"

namespace corio::detail::file_os {

struct OpenFlags {
  bool read = false;
  bool write = false;
  bool create = false;
  bool truncate = false;
  bool exclusive = false;
  bool append = false;
};

// The handle, or -errno. A directory is refused with -EISDIR, as Python's open() does.
// On Windows the handle is opened for overlapped I/O (the IOCP backend needs it).
std::int64_t open(const std::string& path, const OpenFlags& flags) noexcept;
// pread/pwrite: bytes moved or -errno (POSIX only; -ENOSYS on Windows, where the backend
// does file I/O natively).
std::int64_t pread(core::NativeHandle handle, void* buffer, std::size_t length,
                   std::uint64_t offset) noexcept;
std::int64_t pwrite(core::NativeHandle handle, const void* buffer, std::size_t length,
                    std::uint64_t offset) noexcept;
// The size in bytes, or -errno.
std::int64_t size(core::NativeHandle handle) noexcept;
// 0 or -errno.
std::int64_t sync(core::NativeHandle handle, bool data_only) noexcept;
void close(core::NativeHandle handle) noexcept;

}  // namespace corio::detail::file_os
