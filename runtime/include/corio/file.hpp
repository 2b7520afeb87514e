// corio::File: asynchronous file I/O (what aiofiles gives asyncio programs), with reads and
// writes at an offset and a sequential position on top.
//  * io_uring and IOCP: every read/write is submitted natively through the loop's backend
//    (IORING_OP_READ/WRITE; ReadFile/WriteFile with OVERLAPPED offsets on a handle opened
//    FILE_FLAG_OVERLAPPED and associated with the loop's port on first use).
//  * epoll: a regular file is always "ready", so pread/pwrite run on the loop's default
//    executor (the thread pool of run_in_executor).
//  * Everywhere: open, size and sync (fsync/fdatasync, FlushFileBuffers) run on the default
//    executor, since the OS has no asynchronous form the backends offer.
// Cancelling an await never lets the kernel or a worker write into memory that is gone: an
// operation already in progress is waited for, then CancelledError is raised (a write that
// finished meanwhile did happen; the sequential position moves past it). An operation that
// had not started is dropped and raises CancelledError at once.
// close() stops new operations, waits for those in flight, then closes the handle. Destroying
// an open File closes the handle as soon as no operation uses it (never under one).
// Buffers passed in (spans, string_views) must stay alive until the co_await completes.
// Sequential read()/write() calls on one File are meant to be awaited one at a time (they
// share the position). On Windows the handle is tied to the first loop that does I/O on it.
// This header must never expose a platform type.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "corio/core/operation.hpp"
#include "corio/coro.hpp"

namespace corio {

namespace detail {
struct FileState;
}  // namespace detail

class File {
 public:
  File() noexcept = default;
  File(File&& other) noexcept = default;
  File& operator=(File&& other) noexcept;
  File(const File&) = delete;
  File& operator=(const File&) = delete;
  ~File();

  // Python's open(path, mode) for bytes: "r", "w", "a", "x", each optionally with "+" and
  // "b" ("rb", "r+b", "wb+", ...). "w" truncates, "a" writes at the end whatever the offset,
  // "x" fails with FileExistsError if the file exists. Text mode ("t") is a ValueError.
  // Errors are the OSError family with the errno kept: FileNotFoundError, PermissionError,
  // FileExistsError, IsADirectoryError.
  static Coro<File> open(std::string path, std::string mode = "r");

  bool is_open() const noexcept;
  explicit operator bool() const noexcept { return is_open(); }
  // The OS handle (an fd on POSIX, a HANDLE on Windows); kInvalidHandle when closed.
  core::NativeHandle fileno() const noexcept;
  const std::string& mode() const noexcept;
  bool readable() const noexcept;
  bool writable() const noexcept;

  // One read of up to n bytes at `offset` (os.pread): shorter only at the end of the file
  // (or for reads above ~2 GiB); empty at or past the end.
  Coro<std::string> read_at(std::uint64_t offset, std::size_t n);
  // The same into the caller's buffer; returns the bytes read.
  Coro<std::size_t> read_into_at(std::uint64_t offset, std::span<char> buffer);
  // One write at `offset` (os.pwrite); returns the bytes written, possibly fewer.
  Coro<std::size_t> write_at(std::uint64_t offset, std::string_view data);
  // Writes all of `data` at `offset`, looping on short writes.
  Coro<void> write_all_at(std::uint64_t offset, std::string_view data);

  // Sequential I/O at the File's position (starts at 0; at the end in "a" mode).
  // read(n): up to n bytes (fewer only at the end); read() / read(-1): everything to the end.
  Coro<std::string> read(std::int64_t n = -1);
  // Writes all of data and moves the position past it; returns data.size().
  Coro<std::size_t> write(std::string_view data);
  std::uint64_t tell() const noexcept;
  void seek(std::uint64_t position) noexcept;

  // The file's current size in bytes.
  Coro<std::uint64_t> size();
  // Flushes the file to the device: fsync, or fdatasync with data_only.
  Coro<void> sync(bool data_only = false);
  // Stops new operations, waits for the ones in flight, closes the handle. Idempotent.
  // Cancelled while waiting, the handle is still closed once the last operation ends.
  Coro<void> close();

 private:
  explicit File(std::shared_ptr<detail::FileState> state) noexcept : state_(std::move(state)) {}
  std::shared_ptr<detail::FileState> state_;
};

// open(path, mode): File::open.
inline Coro<File> open_file(std::string path, std::string mode = "r") {
  return File::open(std::move(path), std::move(mode));
}

}  // namespace corio
