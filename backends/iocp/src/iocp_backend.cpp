// IOCP backend: every operation is one overlapped call whose OVERLAPPED sits at the very start
// of the Operation; completions come back in batches from GetQueuedCompletionStatusEx.
// Outcomes are read from OVERLAPPED::Internal (an NTSTATUS) rather than by asking the handle,
// because the handle may already be closed when an aborted operation's packet arrives.
#include "corio/backends/iocp_backend.hpp"

// clang-format off
#include <winsock2.h>
#include <ws2tcpip.h>
#include <mswsock.h>
#include <windows.h>
// clang-format on

#include <cerrno>
#include <cstddef>
#include <cstring>
#include <vector>

#include "corio/core/errors.hpp"
#include "corio/core/win32_error.hpp"

namespace corio::backends {

using core::NativeHandle;
using core::OpCode;
using core::Operation;
using core::OpState;

namespace {

// --- IOCTL_AFD_POLL: the readiness query beneath select(); not in the public SDK headers ---
constexpr DWORD kIoctlAfdPoll = 0x00012024;
constexpr ULONG kAfdPollReceive = 0x0001;
constexpr ULONG kAfdPollSend = 0x0004;
constexpr ULONG kAfdPollDisconnect = 0x0008;
constexpr ULONG kAfdPollAbort = 0x0010;
constexpr ULONG kAfdPollLocalClose = 0x0020;
constexpr ULONG kAfdPollAccept = 0x0080;
constexpr ULONG kAfdPollConnectFail = 0x0100;
// What epoll would call EPOLLIN / EPOLLOUT (errors and hang-ups wake both, as there).
constexpr ULONG kReadableEvents = kAfdPollReceive | kAfdPollDisconnect | kAfdPollAbort |
                                  kAfdPollLocalClose | kAfdPollAccept | kAfdPollConnectFail;
constexpr ULONG kWritableEvents =
    kAfdPollSend | kAfdPollAbort | kAfdPollLocalClose | kAfdPollConnectFail;

struct AfdPollHandleInfo {
  HANDLE handle;
  ULONG events;
  LONG status;
};
struct AfdPollInfo {
  LARGE_INTEGER timeout;
  ULONG handle_count;
  ULONG exclusive;
  AfdPollHandleInfo handles[1];
};

// The per-operation state the kernel may touch until the completion packet: the OVERLAPPED
// first (so OVERLAPPED* == Operation*), then what each call needs to outlive start().
struct Scratch {
  OVERLAPPED overlapped;
  union {
    struct {
      SOCKET socket;      // pre-created for AcceptEx; becomes the result
      char* heap_buffer;  // AcceptEx's address buffer when op.address cannot hold it
      DWORD address_length;
    } accept;
    struct {
      INT from_length;  // WSARecvFrom writes the sender's length here on completion
      DWORD flags;      // WSARecv's in/out flags
      bool advance;     // a file op at the current position: move the file pointer after
      bool datagram;    // a UDP socket: Winsock's "reset" is Linux's "refused" there
    } io;
    AfdPollInfo poll;  // input and output of IOCTL_AFD_POLL
  };
};

static_assert(sizeof(OVERLAPPED) == 32, "x64 OVERLAPPED");
static_assert(sizeof(Scratch) <= sizeof(Operation::backend_scratch));
static_assert(alignof(Scratch) <= 8);
static_assert(offsetof(Operation, backend_scratch) == 0,
              "the OVERLAPPED must sit at the start of the Operation");

Scratch& scratch(Operation& op) {
  return *reinterpret_cast<Scratch*>(op.backend_scratch);
}
Operation* operation_of(OVERLAPPED* overlapped) {
  return reinterpret_cast<Operation*>(overlapped);
}

constexpr ULONG_PTR kOperationKey = 0;
constexpr ULONG_PTR kWakeKey = 1;
constexpr ULONG kMaxEntries = 128;

// AcceptEx wants room for each address plus 16 bytes; two IPv6 addresses fit in
// SocketAddress::storage, so the common case needs no allocation.
constexpr DWORD kInetAcceptAddressLength = sizeof(sockaddr_in6) + 16;
constexpr DWORD kAnyAcceptAddressLength = sizeof(SOCKADDR_STORAGE) + 16;
static_assert(2 * kInetAcceptAddressLength <= sizeof(core::SocketAddress::storage));

// Winsock's extension functions, looked up once per process.
struct Extensions {
  LPFN_ACCEPTEX accept_ex = nullptr;
  LPFN_CONNECTEX connect_ex = nullptr;
  LPFN_GETACCEPTEXSOCKADDRS get_accept_ex_sockaddrs = nullptr;
};

template <class Fn>
bool load_extension(SOCKET s, GUID guid, Fn& out) {
  DWORD bytes = 0;
  return ::WSAIoctl(s, SIO_GET_EXTENSION_FUNCTION_POINTER, &guid, sizeof guid, &out, sizeof out,
                    &bytes, nullptr, nullptr) == 0;
}

const Extensions& extensions() {
  static const Extensions loaded = [] {
    Extensions e;
    const SOCKET s =
        ::WSASocketW(AF_INET, SOCK_STREAM, IPPROTO_TCP, nullptr, 0, WSA_FLAG_OVERLAPPED);
    if (s == INVALID_SOCKET) return e;
    load_extension(s, WSAID_ACCEPTEX, e.accept_ex);
    load_extension(s, WSAID_CONNECTEX, e.connect_ex);
    load_extension(s, WSAID_GETACCEPTEXSOCKADDRS, e.get_accept_ex_sockaddrs);
    ::closesocket(s);
    return e;
  }();
  return loaded;
}

SOCKET socket_of(NativeHandle handle) {
  return static_cast<SOCKET>(handle);
}
HANDLE handle_of(NativeHandle handle) {
  return reinterpret_cast<HANDLE>(handle);
}

// WSABUF is {ULONG len; char* buf}, not iovec-shaped: copy (Winsock captures the array
// before the call returns, so a temporary is enough). Lengths beyond 4 GiB are clamped:
// a short transfer is allowed by every caller.
ULONG clamp_length(std::size_t n) {
  return n > 0xFFFFFFFFu ? 0xFFFFFFFFu : static_cast<ULONG>(n);
}

class BufferArray {
 public:
  explicit BufferArray(const Operation& op) {
    WSABUF* out =
        op.buffer_count <= kInline ? inline_ : (heap_.resize(op.buffer_count), heap_.data());
    for (std::size_t i = 0; i < op.buffer_count; ++i) {
      out[i].buf = static_cast<char*>(op.buffers[i].data);
      out[i].len = clamp_length(op.buffers[i].size);
    }
    data_ = out;
    count_ = static_cast<DWORD>(op.buffer_count);
  }
  WSABUF* data() { return data_; }
  DWORD count() const { return count_; }

 private:
  static constexpr std::size_t kInline = 16;
  WSABUF inline_[kInline];
  std::vector<WSABUF> heap_;
  WSABUF* data_ = nullptr;
  DWORD count_ = 0;
};

// The result of a Winsock overlapped call: 0 done now, -EINPROGRESS pending, else -errno.
std::int64_t wsa_outcome(int rc) {
  if (rc == 0) return 0;
  const int e = ::WSAGetLastError();
  if (e == WSA_IO_PENDING) return -EINPROGRESS;
  return -core::win32::errno_from_error(static_cast<unsigned long>(e));
}

std::int64_t win_outcome(BOOL ok) {
  if (ok) return 0;
  const DWORD e = ::GetLastError();
  if (e == ERROR_IO_PENDING) return -EINPROGRESS;
  return -core::win32::errno_from_error(e);
}

bool is_inet(int family) {
  return family == AF_INET || family == AF_INET6;
}

std::uint32_t address_length_for(const core::SocketAddress& address, std::uint32_t fallback) {
  const auto* sa = reinterpret_cast<const sockaddr*>(address.storage);
  if (sa->sa_family == AF_INET) return sizeof(sockaddr_in);
  if (sa->sa_family == AF_INET6) return sizeof(sockaddr_in6);
  return fallback;
}

// How many bytes a receive can take: what a truncated datagram fills.
std::size_t capacity(const Operation& op) {
  if (op.code != OpCode::recv_msg) return clamp_length(op.length);
  std::size_t total = 0;
  for (std::size_t i = 0; i < op.buffer_count; ++i) total += clamp_length(op.buffers[i].size);
  return total > 0xFFFFFFFFu ? 0xFFFFFFFFu : total;
}

void release_accept(Scratch& s) {
  if (s.accept.socket != INVALID_SOCKET) ::closesocket(s.accept.socket);
  s.accept.socket = INVALID_SOCKET;
  delete[] s.accept.heap_buffer;
  s.accept.heap_buffer = nullptr;
}

}  // namespace

IocpBackend::IocpBackend() {
  WSADATA data;
  const int rc = ::WSAStartup(MAKEWORD(2, 2), &data);
  if (rc != 0)
    throw_os_error(core::win32::errno_from_error(static_cast<unsigned long>(rc)), "WSAStartup");
  port_ = ::CreateIoCompletionPort(INVALID_HANDLE_VALUE, nullptr, 0, 1);
  if (port_ == nullptr) {
    const DWORD e = ::GetLastError();
    ::WSACleanup();
    throw_os_error(core::win32::errno_from_error(e), "CreateIoCompletionPort");
  }
  entries_ = new OVERLAPPED_ENTRY[kMaxEntries];
}

IocpBackend::~IocpBackend() {
  delete[] static_cast<OVERLAPPED_ENTRY*>(entries_);
  ::CloseHandle(static_cast<HANDLE>(port_));
  ::WSACleanup();
}

const IocpBackend::HandleInfo* IocpBackend::associate(NativeHandle handle, int& error) {
  // Asked every time, not only for handles never seen: a handle closed behind the backend's
  // back (closesocket instead of close()) leaves its number to the next socket, which Windows
  // hands out again at once, and a stale "already associated" would make that socket's
  // operations complete nowhere. Association fails with ERROR_INVALID_PARAMETER exactly when
  // the handle already has a port: ours if we know it.
  if (::CreateIoCompletionPort(handle_of(handle), static_cast<HANDLE>(port_), kOperationKey, 0) ==
      nullptr) {
    const DWORD e = ::GetLastError();
    if (e == ERROR_INVALID_PARAMETER) {
      if (auto it = handles_.find(handle); it != handles_.end()) return &it->second;
    }
    error = e == ERROR_INVALID_PARAMETER ? EINVAL : core::win32::errno_from_error(e);
    return nullptr;
  }
  HandleInfo info;
  WSAPROTOCOL_INFOW protocol{};
  int length = sizeof protocol;
  bool ifs = true;
  if (::getsockopt(socket_of(handle), SOL_SOCKET, SO_PROTOCOL_INFOW,
                   reinterpret_cast<char*>(&protocol), &length) == 0) {
    info.kind = protocol.iSocketType == SOCK_STREAM  ? Kind::stream_socket
                : protocol.iSocketType == SOCK_DGRAM ? Kind::datagram_socket
                                                     : Kind::other_socket;
    info.family = protocol.iAddressFamily;
    info.type = protocol.iSocketType;
    info.protocol = protocol.iProtocol;
    // A layered (non-IFS) provider may post a packet even on inline success.
    ifs = (protocol.dwServiceFlags1 & XP1_IFS_HANDLES) != 0;
  } else {
    const DWORD type = ::GetFileType(handle_of(handle));
    info.kind = type == FILE_TYPE_PIPE   ? Kind::pipe
                : type == FILE_TYPE_DISK ? Kind::disk_file
                                         : Kind::other;
  }
  if (ifs) {
    info.skip_on_success = ::SetFileCompletionNotificationModes(
                               handle_of(handle), FILE_SKIP_COMPLETION_PORT_ON_SUCCESS |
                                                      FILE_SKIP_SET_EVENT_ON_HANDLE) != FALSE;
  }
  sockaddr_storage peer{};
  int peer_length = sizeof peer;
  if (info.kind == Kind::datagram_socket &&
      ::getpeername(socket_of(handle), reinterpret_cast<sockaddr*>(&peer), &peer_length) != 0) {
    // Without this an ICMP "port unreachable" for an earlier send_to makes the NEXT receive
    // on an unconnected socket fail with WSAECONNRESET; Linux reports nothing there. A
    // connected one keeps the report (Linux gives it ECONNREFUSED); connect turns it back on.
    BOOL report = FALSE;
    DWORD bytes = 0;
    ::WSAIoctl(socket_of(handle), SIO_UDP_CONNRESET, &report, sizeof report, nullptr, 0, &bytes,
               nullptr, nullptr);
  }
  return &handles_.insert_or_assign(handle, info).first->second;
}

std::int64_t IocpBackend::issue(Operation& op, const HandleInfo& info, std::uint32_t& bytes) {
  Scratch& s = scratch(op);
  std::memset(&s, 0, sizeof s);
  const SOCKET sock = socket_of(op.handle);
  DWORD moved = 0;
  std::int64_t r;
  const bool socket = info.kind == Kind::stream_socket || info.kind == Kind::datagram_socket ||
                      info.kind == Kind::other_socket;
  const int flags = op.flags & (MSG_OOB | MSG_PEEK | MSG_DONTROUTE | MSG_WAITALL);
  if (op.code != OpCode::accept && op.code != OpCode::wait_readable &&
      op.code != OpCode::wait_writable) {
    s.io.datagram = info.kind == Kind::datagram_socket;
  }
  switch (op.code) {
    case OpCode::wait_readable:
    case OpCode::wait_writable: {
      if (info.kind == Kind::pipe) {
        // A pipe has no readiness query, but a zero-byte read waits for data (or EOF) and
        // consumes nothing; there is no such trick for room to write, so that is "now".
        if (op.code == OpCode::wait_writable) return 0;
        r = win_outcome(::ReadFile(handle_of(op.handle), nullptr, 0, &moved, &s.overlapped));
        break;
      }
      if (!socket) return -EOPNOTSUPP;  // files and consoles have no readiness on Windows
      s.poll.timeout.QuadPart = INT64_MAX;
      s.poll.handle_count = 1;
      s.poll.exclusive = FALSE;
      s.poll.handles[0].handle = handle_of(op.handle);
      s.poll.handles[0].events =
          op.code == OpCode::wait_readable ? kReadableEvents : kWritableEvents;
      r = win_outcome(::DeviceIoControl(handle_of(op.handle), kIoctlAfdPoll, &s.poll, sizeof s.poll,
                                        &s.poll, sizeof s.poll, nullptr, &s.overlapped));
      break;
    }
    case OpCode::accept: {
      if (!socket) return -ENOTSOCK;
      const Extensions& ext = extensions();
      if (ext.accept_ex == nullptr) return -EOPNOTSUPP;
      s.accept.socket = ::WSASocketW(info.family, info.type, info.protocol, nullptr, 0,
                                     WSA_FLAG_OVERLAPPED | WSA_FLAG_NO_HANDLE_INHERIT);
      if (s.accept.socket == INVALID_SOCKET) {
        return -core::win32::errno_from_error(static_cast<unsigned long>(::WSAGetLastError()));
      }
      char* buffer;
      if (op.address != nullptr && is_inet(info.family)) {
        buffer = reinterpret_cast<char*>(op.address->storage);
        s.accept.address_length = kInetAcceptAddressLength;
      } else {
        s.accept.heap_buffer = new char[2 * kAnyAcceptAddressLength];
        buffer = s.accept.heap_buffer;
        s.accept.address_length = kAnyAcceptAddressLength;
      }
      r = ext.accept_ex(sock, s.accept.socket, buffer, 0, s.accept.address_length,
                        s.accept.address_length, &moved, &s.overlapped)
              ? 0
              : wsa_outcome(SOCKET_ERROR);
      if (r < 0 && r != -EINPROGRESS) release_accept(s);
      break;
    }
    case OpCode::connect: {
      if (!socket) return -ENOTSOCK;
      const auto* peer = reinterpret_cast<const sockaddr*>(op.address->storage);
      const int length = static_cast<int>(op.address->length);
      if (info.kind != Kind::stream_socket || !is_inet(peer->sa_family)) {
        // Datagram "connects" only set a default peer and never wait; ConnectEx is TCP-only.
        if (::connect(sock, peer, length) != 0) return wsa_outcome(SOCKET_ERROR);
        if (info.kind == Kind::datagram_socket) {
          BOOL report = TRUE;  // connected: ICMP errors are reported again, as on Linux
          DWORD ignored = 0;
          ::WSAIoctl(sock, SIO_UDP_CONNRESET, &report, sizeof report, nullptr, 0, &ignored, nullptr,
                     nullptr);
        }
        return 0;
      }
      const Extensions& ext = extensions();
      if (ext.connect_ex == nullptr) return -EOPNOTSUPP;
      // ConnectEx insists on a bound socket; WSAEINVAL means it already is.
      sockaddr_storage any{};
      any.ss_family = peer->sa_family;
      const int any_length =
          peer->sa_family == AF_INET ? sizeof(sockaddr_in) : sizeof(sockaddr_in6);
      if (::bind(sock, reinterpret_cast<const sockaddr*>(&any), any_length) != 0 &&
          ::WSAGetLastError() != WSAEINVAL) {
        return wsa_outcome(SOCKET_ERROR);
      }
      r = ext.connect_ex(sock, peer, length, nullptr, 0, nullptr, &s.overlapped)
              ? 0
              : wsa_outcome(SOCKET_ERROR);
      break;
    }
    case OpCode::recv:
    case OpCode::recv_stream: {  // no read-ahead here: exactly a recv, without flags
      if (!socket) return -ENOTSOCK;
      WSABUF buf{clamp_length(op.length), static_cast<char*>(op.buffer)};
      s.io.flags = static_cast<DWORD>(op.code == OpCode::recv ? flags : 0);
      r = wsa_outcome(::WSARecv(sock, &buf, 1, &moved, &s.io.flags, &s.overlapped, nullptr));
      break;
    }
    case OpCode::send: {
      if (!socket) return -ENOTSOCK;
      WSABUF buf{clamp_length(op.length), static_cast<char*>(op.buffer)};
      r = wsa_outcome(
          ::WSASend(sock, &buf, 1, &moved, static_cast<DWORD>(flags), &s.overlapped, nullptr));
      break;
    }
    case OpCode::recv_from: {
      if (!socket) return -ENOTSOCK;
      WSABUF buf{clamp_length(op.length), static_cast<char*>(op.buffer)};
      s.io.flags = static_cast<DWORD>(flags);
      s.io.from_length = sizeof op.address->storage;
      r = wsa_outcome(::WSARecvFrom(sock, &buf, 1, &moved, &s.io.flags,
                                    reinterpret_cast<sockaddr*>(op.address->storage),
                                    &s.io.from_length, &s.overlapped, nullptr));
      break;
    }
    case OpCode::send_to: {
      if (!socket) return -ENOTSOCK;
      WSABUF buf{clamp_length(op.length), static_cast<char*>(op.buffer)};
      r = wsa_outcome(::WSASendTo(sock, &buf, 1, &moved, static_cast<DWORD>(flags),
                                  reinterpret_cast<const sockaddr*>(op.address->storage),
                                  static_cast<int>(op.address->length), &s.overlapped, nullptr));
      break;
    }
    case OpCode::recv_msg: {
      if (!socket) return -ENOTSOCK;
      BufferArray bufs(op);
      s.io.flags = static_cast<DWORD>(flags);
      if (op.address != nullptr) {
        s.io.from_length = sizeof op.address->storage;
        r = wsa_outcome(::WSARecvFrom(sock, bufs.data(), bufs.count(), &moved, &s.io.flags,
                                      reinterpret_cast<sockaddr*>(op.address->storage),
                                      &s.io.from_length, &s.overlapped, nullptr));
      } else {
        r = wsa_outcome(::WSARecv(sock, bufs.data(), bufs.count(), &moved, &s.io.flags,
                                  &s.overlapped, nullptr));
      }
      break;
    }
    case OpCode::send_msg: {
      if (!socket) return -ENOTSOCK;
      BufferArray bufs(op);
      if (op.address != nullptr && op.address->length != 0) {
        r = wsa_outcome(::WSASendTo(sock, bufs.data(), bufs.count(), &moved,
                                    static_cast<DWORD>(flags),
                                    reinterpret_cast<const sockaddr*>(op.address->storage),
                                    static_cast<int>(op.address->length), &s.overlapped, nullptr));
      } else {
        r = wsa_outcome(::WSASend(sock, bufs.data(), bufs.count(), &moved,
                                  static_cast<DWORD>(flags), &s.overlapped, nullptr));
      }
      break;
    }
    case OpCode::read_at:
    case OpCode::write_at: {
      // offset ~0 means "wherever the stream is": pipes ignore the offset, and for a file
      // write 0xFFFFFFFF:0xFFFFFFFF means "append at the end".
      std::uint64_t offset = op.offset;
      if (offset == ~std::uint64_t{0}) {
        if (info.kind == Kind::disk_file) {
          // Overlapped handles keep no position of their own: use the file pointer, and
          // move it when the op completes, so reads and writes continue where they left.
          LARGE_INTEGER zero{}, position{};
          if (!::SetFilePointerEx(handle_of(op.handle), zero, &position, FILE_CURRENT)) {
            return -core::win32::errno_from_error(::GetLastError());
          }
          offset = static_cast<std::uint64_t>(position.QuadPart);
          s.io.advance = true;
        } else {
          offset = 0;  // pipes and devices ignore it
        }
      }
      s.overlapped.Offset = static_cast<DWORD>(offset);
      s.overlapped.OffsetHigh = static_cast<DWORD>(offset >> 32);
      const DWORD length = clamp_length(op.length);
      if (op.code == OpCode::read_at) {
        r = win_outcome(::ReadFile(handle_of(op.handle), op.buffer, length, &moved, &s.overlapped));
      } else {
        r = win_outcome(
            ::WriteFile(handle_of(op.handle), op.buffer, length, &moved, &s.overlapped));
      }
      break;
    }
    default:
      return -EINVAL;
  }
  bytes = moved;
  return r;
}

void IocpBackend::conclude(Operation& op, int error, std::uint32_t bytes) {
  Scratch& s = scratch(op);
  if (error == ECONNRESET && op.code != OpCode::accept && op.code != OpCode::wait_readable &&
      op.code != OpCode::wait_writable && s.io.datagram) {
    error = ECONNREFUSED;  // an ICMP port unreachable on a connected UDP socket
  }
  switch (op.code) {
    case OpCode::wait_readable:
    case OpCode::wait_writable:
      // A pipe's zero-byte read fails once the writer is gone: that is readable (EOF).
      if (error == EPIPE || error == ENODATA) error = 0;
      op.result = error == 0 ? 0 : -error;
      return;
    case OpCode::accept: {
      if (error == 0) {
        const SOCKET listener = socket_of(op.handle);
        if (::setsockopt(s.accept.socket, SOL_SOCKET, SO_UPDATE_ACCEPT_CONTEXT,
                         reinterpret_cast<const char*>(&listener), sizeof listener) != 0) {
          error = core::win32::errno_from_error(static_cast<unsigned long>(::WSAGetLastError()));
        }
      }
      if (error != 0) {
        release_accept(s);
        op.result = -error;
        return;
      }
      if (op.address != nullptr) {
        char* buffer = s.accept.heap_buffer != nullptr
                           ? s.accept.heap_buffer
                           : reinterpret_cast<char*>(op.address->storage);
        sockaddr* local = nullptr;
        sockaddr* remote = nullptr;
        INT local_length = 0;
        INT remote_length = 0;
        extensions().get_accept_ex_sockaddrs(buffer, 0, s.accept.address_length,
                                             s.accept.address_length, &local, &local_length,
                                             &remote, &remote_length);
        core::SocketAddress peer;
        if (remote != nullptr && remote_length > 0 &&
            static_cast<std::size_t>(remote_length) <= sizeof peer.storage) {
          std::memcpy(peer.storage, remote, static_cast<std::size_t>(remote_length));
          peer.length = static_cast<std::uint32_t>(remote_length);
        }
        *op.address = peer;  // `remote` may point into op.address itself: copied first
      }
      // Born non-blocking, like accept4(SOCK_NONBLOCK): plain send()/recv() never block.
      u_long on = 1;
      ::ioctlsocket(s.accept.socket, FIONBIO, &on);
      op.result = static_cast<std::int64_t>(s.accept.socket);
      s.accept.socket = INVALID_SOCKET;
      release_accept(s);
      return;
    }
    case OpCode::connect:
      if (error == 0 && ::setsockopt(socket_of(op.handle), SOL_SOCKET, SO_UPDATE_CONNECT_CONTEXT,
                                     nullptr, 0) != 0) {
        error = core::win32::errno_from_error(static_cast<unsigned long>(::WSAGetLastError()));
      }
      op.result = error == 0 ? 0 : -error;
      return;
    case OpCode::recv_from:
    case OpCode::recv_msg:
      if (error == EMSGSIZE) {
        // A truncated datagram: Linux returns what fit, and the buffers are full.
        error = 0;
        bytes = static_cast<std::uint32_t>(capacity(op));
      }
      if (error == 0 && op.address != nullptr) {
        op.address->length = address_length_for(
            *op.address, static_cast<std::uint32_t>(s.io.from_length > 0 ? s.io.from_length : 0));
      }
      break;
    case OpCode::recv:
    case OpCode::recv_stream:
      if (error == EMSGSIZE) {
        error = 0;
        bytes = static_cast<std::uint32_t>(capacity(op));
      }
      break;
    case OpCode::read_at:
      // End of file, or a pipe whose writer is gone: a 0-byte read, as read(2) reports it.
      if (error == ENODATA || error == EPIPE) {
        error = 0;
        bytes = 0;
      }
      [[fallthrough]];
    case OpCode::write_at:
      if (error == 0 && s.io.advance && bytes > 0) {
        LARGE_INTEGER delta{};
        delta.QuadPart = bytes;
        ::SetFilePointerEx(handle_of(op.handle), delta, nullptr, FILE_CURRENT);
      }
      break;
    default:
      break;
  }
  op.result = error == 0 ? static_cast<std::int64_t>(bytes) : -error;
}

bool IocpBackend::start(Operation& op) {
  if (op.handle == core::kInvalidHandle || op.handle == static_cast<NativeHandle>(INVALID_SOCKET)) {
    op.result = -EBADF;
    op.state = OpState::completed;
    return true;
  }
  int error = 0;
  const HandleInfo* info = associate(op.handle, error);
  if (info == nullptr) {
    op.result = -error;
    op.state = OpState::completed;
    return true;
  }
  std::uint32_t bytes = 0;
  const std::int64_t r = issue(op, *info, bytes);
  const bool packet_follows =
      r == -EINPROGRESS || (r == 0 && !info->skip_on_success &&
                            !(op.code == OpCode::connect && info->kind != Kind::stream_socket));
  if (packet_follows) {
    op.state = OpState::submitted;
    ++in_flight_;
    return false;
  }
  if (r == 0) {
    conclude(op, 0, bytes);
  } else {
    conclude(op, static_cast<int>(-r), 0);
  }
  op.state = OpState::completed;
  return true;
}

void IocpBackend::cancel(Operation& op) {
  if (op.state != OpState::submitted) return;
  op.state = OpState::cancel_requested;
  // ERROR_NOT_FOUND: it already completed and its packet is queued; the real result wins.
  ::CancelIoEx(handle_of(op.handle), &scratch(op).overlapped);
}

void IocpBackend::finish(Operation& op, int error, std::uint32_t bytes) {
  --in_flight_;
  conclude(op, error, bytes);
  // An aborted op is cancelled whether cancel() or close() aborted it.
  op.state = op.result == -ECANCELED ? OpState::cancelled : OpState::completed;
  op.on_complete(&op);
}

std::size_t IocpBackend::wait(core::Nanos timeout) {
  DWORD ms;
  if (timeout <= 0) {
    ms = 0;
  } else if (timeout >= core::kNoDeadline) {
    ms = INFINITE;
  } else {
    // Round up: a timer must never be reported early (the loop re-checks the clock anyway).
    const core::Nanos rounded = (timeout + 999'999) / 1'000'000;
    ms = rounded >= static_cast<core::Nanos>(INFINITE) ? INFINITE - 1 : static_cast<DWORD>(rounded);
  }
  auto* entries = static_cast<OVERLAPPED_ENTRY*>(entries_);
  ULONG n = 0;
  if (!::GetQueuedCompletionStatusEx(static_cast<HANDLE>(port_), entries, kMaxEntries, &n, ms,
                                     FALSE)) {
    const DWORD e = ::GetLastError();
    if (e == WAIT_TIMEOUT) return 0;
    throw_os_error(core::win32::errno_from_error(e), "GetQueuedCompletionStatusEx");
  }
  std::size_t completed = 0;
  for (ULONG i = 0; i < n; ++i) {
    OVERLAPPED* overlapped = entries[i].lpOverlapped;
    if (overlapped == nullptr) {
      // A wake() packet. acq_rel pairs with wake()'s exchange, so whatever the waking thread
      // published before a wake() that found the flag still set is visible after this.
      if (entries[i].lpCompletionKey == kWakeKey)
        wake_pending_.exchange(false, std::memory_order_acq_rel);
      continue;
    }
    Operation& op = *operation_of(overlapped);
    const int error =
        core::win32::errno_from_ntstatus(static_cast<std::int32_t>(overlapped->Internal));
    finish(op, error, entries[i].dwNumberOfBytesTransferred);
    ++completed;
  }
  return completed;
}

void IocpBackend::wake() noexcept {
  if (wake_pending_.exchange(true, std::memory_order_acq_rel)) return;
  ::PostQueuedCompletionStatus(static_cast<HANDLE>(port_), 0, kWakeKey, nullptr);
}

void IocpBackend::close(NativeHandle handle) {
  if (handle == core::kInvalidHandle) return;
  bool socket;
  if (auto it = handles_.find(handle); it != handles_.end()) {
    const Kind kind = it->second.kind;
    socket =
        kind == Kind::stream_socket || kind == Kind::datagram_socket || kind == Kind::other_socket;
    handles_.erase(it);
  } else {
    int type = 0;
    int length = sizeof type;
    socket = ::getsockopt(socket_of(handle), SOL_SOCKET, SO_TYPE, reinterpret_cast<char*>(&type),
                          &length) == 0;
  }
  // Abort everything first so each op's packet reads STATUS_CANCELLED; the ops stay owned
  // by their callers until those packets are dispatched.
  ::CancelIoEx(handle_of(handle), nullptr);
  if (socket) {
    ::closesocket(socket_of(handle));
  } else {
    ::CloseHandle(handle_of(handle));
  }
}

}  // namespace corio::backends
