// The IOCP backend: Windows' completion backend. One I/O completion port per loop; every
// OpCode is an overlapped Winsock or file call (AcceptEx, ConnectEx, WSARecv/WSASend,
// WSARecvFrom/WSASendTo, ReadFile/WriteFile) whose OVERLAPPED lives in the Operation's
// backend_scratch, so the pointer GetQueuedCompletionStatusEx returns IS the Operation.
// wait_readable / wait_writable are readiness polls (IOCTL_AFD_POLL, what select() itself
// is built on), so they work on listening and datagram sockets and never consume data.
// Handles are associated with the port on first use, with FILE_SKIP_COMPLETION_PORT_ON_SUCCESS
// when the provider allows it: then a call that succeeds at once completes inline (start()
// true). Every start() re-asks CreateIoCompletionPort (it fails cheaply when the handle is
// already ours), because Windows reuses a handle number at once and a handle closed behind
// the backend's back must not leave its successor unassociated.
// Cross-thread wake-up: PostQueuedCompletionStatus with a null OVERLAPPED.
//
// It must never call into the runtime (it only moves Operations and calls on_complete), never
// let the kernel write into memory the owner may have freed (an op and its buffers are used
// until that op's own completion packet arrives, cancelled or not), and never leak
// <windows.h> into the runtime (the port and the entry array are kept opaque).
#pragma once

#include <absl/container/flat_hash_map.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "corio/core/backend.hpp"
#include "corio/core/operation.hpp"

namespace corio::backends {

class IocpBackend {
 public:
  static constexpr std::string_view kName = "iocp";
  static constexpr bool kNativeFileIo = true;

  struct Options {};  // nothing to choose
  static Options default_options() { return {}; }

  // Throws OSError when the completion port cannot be created.
  IocpBackend();
  explicit IocpBackend(Options) : IocpBackend() {}
  ~IocpBackend();
  IocpBackend(const IocpBackend&) = delete;
  IocpBackend& operator=(const IocpBackend&) = delete;

  // true: the call completed (or failed) at once and no completion packet will follow.
  bool start(core::Operation& op);
  // CancelIoEx on the op's OVERLAPPED; on_complete arrives from a later wait(), with
  // -ECANCELED (state cancelled) or, if the operation won the race, its real result.
  void cancel(core::Operation& op);
  std::size_t wait(core::Nanos timeout);
  void wake() noexcept;
  std::size_t in_flight() const { return in_flight_; }
  // Cancels everything on handle and closes it (closesocket or CloseHandle) at once; each
  // in-flight op still gets on_complete, with -ECANCELED, when its aborted packet arrives.
  void close(core::NativeHandle handle);

 private:
  // What the backend learned about a handle when it first saw it.
  enum class Kind : std::uint8_t {
    stream_socket,
    datagram_socket,
    other_socket,
    pipe,
    disk_file,
    other
  };
  struct HandleInfo {
    Kind kind = Kind::other;
    bool skip_on_success = false;  // FILE_SKIP_COMPLETION_PORT_ON_SUCCESS is set
    int family = 0;
    int type = 0;
    int protocol = 0;
  };

  // The handle's info, associating it with the port on first sight; nullptr and `error`
  // set (an errno) when it cannot be used.
  const HandleInfo* associate(core::NativeHandle handle, int& error);
  // Issues op's call. Returns 0 (completed at once), -EINPROGRESS (a packet will come), or
  // a negative errno (failed at once; nothing will come).
  std::int64_t issue(core::Operation& op, const HandleInfo& info, std::uint32_t& bytes);
  // Turns an outcome (errno, 0 = success) into op.result, doing the op's epilogue
  // (accept/connect context updates, closing an unused accept socket).
  void conclude(core::Operation& op, int error, std::uint32_t bytes);
  void finish(core::Operation& op, int error, std::uint32_t bytes);

  void* port_ = nullptr;     // HANDLE
  void* entries_ = nullptr;  // OVERLAPPED_ENTRY[kMaxEntries]
  std::size_t in_flight_ = 0;
  std::atomic<bool> wake_pending_{false};
  absl::flat_hash_map<core::NativeHandle, HandleInfo> handles_;
};

static_assert(core::Backend<IocpBackend>);

}  // namespace corio::backends
