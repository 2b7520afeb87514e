// One in-flight I/O operation, shaped for completion backends (io_uring, IOCP) as much as
// for readiness ones (epoll, kqueue).
//
// Lifecycle (the backend moves `state`; nobody else writes it):
//   idle --start()--> completed                      start() returned true: done inline,
//                                                    `result` is set, on_complete is NOT called
//   idle --start()--> submitted --kernel--> completed            on_complete called once
//   submitted --cancel()--> cancel_requested --> cancelled       result == -ECANCELED
//                                            \-> completed       completion won the race:
//                                                                the real result is kept
// The owner keeps the Operation and every buffer it points to alive, untouched, from start()
// until on_complete has run (or start() returned true). on_complete may be called from inside
// cancel() (readiness backends) or later from wait() (completion backends); it must do no
// more than record the outcome and schedule work: it runs inside the backend's dispatch.
// This file must never depend on a platform header.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

namespace corio::core {

// A socket, file or pipe as the OS names it: an fd on POSIX, a SOCKET or HANDLE on Windows.
using NativeHandle = std::intptr_t;
inline constexpr NativeHandle kInvalidHandle = -1;

// Big enough for any sockaddr (sockaddr_storage is 128 bytes everywhere we run).
struct SocketAddress {
  alignas(8) unsigned char storage[128] = {};
  std::uint32_t length = 0;

  bool operator==(const SocketAddress& other) const noexcept {
    return length == other.length && std::memcmp(storage, other.storage, length) == 0;
  }
};

// A scatter/gather element; layout-compatible with iovec (checked in the POSIX backends).
struct IoBuffer {
  void* data = nullptr;
  std::size_t size = 0;
};

enum class OpCode : std::uint8_t {
  wait_readable,  // completes with 0 when the handle is readable (add_reader twin)
  wait_writable,  // completes with 0 when the handle is writable (add_writer twin)
  accept,         // result: the accepted handle; `address` receives the peer
  connect,        // `address` is the peer; result 0
  recv,           // into buffer/length
  send,           // from buffer/length
  recv_from,      // `address` receives the sender
  send_to,        // `address` is the destination
  recv_msg,       // scatter into buffers/buffer_count
  send_msg,       // gather from buffers/buffer_count; `address` optional
  read_at,        // file read at `offset`
  write_at,       // file write at `offset`
  // recv on a connected stream socket whose owner reads it only through recv_stream ops (a
  // StreamReader's transport) until it closes it through the backend: the backend may take
  // bytes from the kernel ahead of the next op and hands them to it in order (io_uring's
  // multishot recv). flags are ignored. Elsewhere exactly recv.
  recv_stream,
};

enum class OpState : std::uint8_t { idle, submitted, cancel_requested, completed, cancelled };

struct Operation {
  // Backend-private scratch. First member so IOCP can overlay its OVERLAPPED and recover the
  // operation from the pointer GetQueuedCompletionStatusEx hands back. 64 bytes so io_uring
  // can keep the msghdr (56 bytes) of a recvmsg/sendmsg alive until its completion.
  alignas(8) unsigned char backend_scratch[64] = {};

  void (*on_complete)(Operation*) = nullptr;
  NativeHandle handle = kInvalidHandle;
  void* buffer = nullptr;
  std::size_t length = 0;
  IoBuffer* buffers = nullptr;
  std::size_t buffer_count = 0;
  std::uint64_t offset = 0;
  SocketAddress* address = nullptr;
  std::int64_t result = 0;  // >= 0: bytes moved or accepted handle; < 0: -errno
  int flags = 0;
  OpCode code = OpCode::wait_readable;
  OpState state = OpState::idle;
  // Nobody waits on this send's completion to make progress (a transport's, while its buffer
  // is below the high-water mark and nothing is queued behind it): if it moves every byte, a
  // completion backend need not end a wait for it alone and may report it with the next other
  // completion. A short count, -EAGAIN or an error still ends the wait at once, since the owner
  // must act on it. The owner clears the flag when it starts to wait (close, write_eof, pause,
  // more bytes queued behind this send); a backend reads it when it waits.
  bool lazy_completion = false;

  // Intrusive links for a readiness backend's per-handle FIFO of waiting operations.
  Operation* next = nullptr;
  Operation* prev = nullptr;

  bool in_flight() const noexcept {
    return state == OpState::submitted || state == OpState::cancel_requested;
  }
  int error() const noexcept { return result < 0 ? static_cast<int>(-result) : 0; }
};

}  // namespace corio::core
