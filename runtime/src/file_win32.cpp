// corio::File's blocking OS calls on Windows (see file_os.hpp). Files are opened for
// overlapped I/O so the IOCP backend can read and write them at an offset; errors come back
// as -errno. None may throw or touch a loop (they run on worker threads).
#ifdef _WIN32

// clang-format off
#include <winsock2.h>
#include <windows.h>
// clang-format on

#include <cerrno>
#include <string>

#include "corio/core/win32_error.hpp"
#include "file_os.hpp"

namespace corio::detail::file_os {

namespace {

HANDLE handle_of(core::NativeHandle handle) {
  return reinterpret_cast<HANDLE>(handle);
}

std::int64_t last_error() {
  return -static_cast<std::int64_t>(core::win32::errno_from_error(::GetLastError()));
}

// Paths are UTF-8, as everywhere in corio.
std::wstring widen(const std::string& text) {
  if (text.empty()) return {};
  const int n =
      ::MultiByteToWideChar(CP_UTF8, 0, text.data(), static_cast<int>(text.size()), nullptr, 0);
  std::wstring wide(static_cast<std::size_t>(n), L'\0');
  ::MultiByteToWideChar(CP_UTF8, 0, text.data(), static_cast<int>(text.size()), wide.data(), n);
  return wide;
}

}  // namespace

std::int64_t open(const std::string& path, const OpenFlags& flags) noexcept {
  try {
    const std::wstring wide = widen(path);
    DWORD access = 0;
    if (flags.read) access |= GENERIC_READ;
    if (flags.write) {
      // Append-only access makes every write land at the end of the file, whatever offset
      // the OVERLAPPED names: O_APPEND's semantics.
      access |= flags.append ? (FILE_APPEND_DATA | SYNCHRONIZE) : GENERIC_WRITE;
    }
    DWORD disposition;
    if (flags.exclusive) {
      disposition = CREATE_NEW;
    } else if (flags.create && flags.truncate) {
      disposition = CREATE_ALWAYS;
    } else if (flags.create) {
      disposition = OPEN_ALWAYS;
    } else if (flags.truncate) {
      disposition = TRUNCATE_EXISTING;
    } else {
      disposition = OPEN_EXISTING;
    }
    HANDLE h =
        ::CreateFileW(wide.c_str(), access, FILE_SHARE_READ | FILE_SHARE_WRITE | FILE_SHARE_DELETE,
                      nullptr, disposition, FILE_ATTRIBUTE_NORMAL | FILE_FLAG_OVERLAPPED, nullptr);
    if (h == INVALID_HANDLE_VALUE) {
      const DWORD e = ::GetLastError();
      if (e == ERROR_ACCESS_DENIED) {
        // Windows refuses to open a directory as a file with "access denied"; say what
        // Python on POSIX says.
        const DWORD attributes = ::GetFileAttributesW(wide.c_str());
        if (attributes != INVALID_FILE_ATTRIBUTES && (attributes & FILE_ATTRIBUTE_DIRECTORY))
          return -EISDIR;
      }
      return -static_cast<std::int64_t>(core::win32::errno_from_error(e));
    }
    BY_HANDLE_FILE_INFORMATION info{};
    if (::GetFileInformationByHandle(h, &info) &&
        (info.dwFileAttributes & FILE_ATTRIBUTE_DIRECTORY)) {
      ::CloseHandle(h);
      return -EISDIR;
    }
    return reinterpret_cast<core::NativeHandle>(h);
  } catch (...) {
    return -ENOMEM;
  }
}

std::int64_t pread(core::NativeHandle, void*, std::size_t, std::uint64_t) noexcept {
  return -ENOSYS;
}

std::int64_t pwrite(core::NativeHandle, const void*, std::size_t, std::uint64_t) noexcept {
  return -ENOSYS;
}

std::int64_t size(core::NativeHandle handle) noexcept {
  LARGE_INTEGER size{};
  if (!::GetFileSizeEx(handle_of(handle), &size)) return last_error();
  return static_cast<std::int64_t>(size.QuadPart);
}

std::int64_t sync(core::NativeHandle handle, bool) noexcept {
  // Windows has no data-only flush.
  if (!::FlushFileBuffers(handle_of(handle))) return last_error();
  return 0;
}

void close(core::NativeHandle handle) noexcept {
  ::CloseHandle(handle_of(handle));
}

}  // namespace corio::detail::file_os

#endif  // _WIN32
