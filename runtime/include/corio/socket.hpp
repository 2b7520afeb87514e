// Socket: an owned, non-blocking, close-on-exec OS socket (Python's socket.socket, as the
// loop's sock_* methods use it), plus the address helpers (IPv4, IPv6, Unix).
// A Socket remembers the loop whose backend has seen its handle, and closing goes through
// that backend (backend().close) so no stale registration outlives the descriptor.
// It must never expose a platform type: handles are core::NativeHandle, addresses are
// core::SocketAddress.
#pragma once

#include <cstdint>
#include <string>
#include <utility>

#include "corio/core/net_platform.hpp"
#include "corio/core/operation.hpp"

namespace corio {

class EventLoop;

using core::NativeHandle;
using core::SocketAddress;
using core::net::AddressFamily;
using core::net::ShutdownHow;
using core::net::SocketKind;
using core::net::SocketOption;

// Address helpers (numeric only; DNS lives in dns.hpp).
using core::net::address_family;
using core::net::address_host;
using core::net::address_port;
using core::net::any_address;
using core::net::format_address;
using core::net::ipv4_address;
using core::net::ipv6_address;
using core::net::loopback_address;
using core::net::parse_ip_address;
using core::net::unix_address;
using core::net::with_port;

class Socket {
 public:
  Socket() noexcept = default;
  // Takes ownership of a handle that is already non-blocking (see adopt() otherwise).
  explicit Socket(NativeHandle handle) noexcept : handle_(handle) {}
  Socket(Socket&& other) noexcept
      : handle_(std::exchange(other.handle_, core::kInvalidHandle)),
        loop_(std::exchange(other.loop_, nullptr)),
        loop_token_(std::exchange(other.loop_token_, 0)) {}
  Socket& operator=(Socket&& other) noexcept;
  Socket(const Socket&) = delete;
  Socket& operator=(const Socket&) = delete;
  ~Socket() { close(); }

  // socket.socket(family, type, proto), non-blocking and close-on-exec.
  static Socket create(AddressFamily family, SocketKind kind = SocketKind::stream,
                       int protocol = 0);
  // socket.socketpair(): a connected pair of Unix-domain sockets.
  static std::pair<Socket, Socket> pair(SocketKind kind = SocketKind::stream);
  // Takes ownership of a handle made elsewhere, switching it to non-blocking + close-on-exec.
  static Socket adopt(NativeHandle handle);

  NativeHandle fileno() const noexcept { return handle_; }
  bool is_open() const noexcept { return handle_ != core::kInvalidHandle; }
  explicit operator bool() const noexcept { return is_open(); }

  // Closes through the backend that knows the handle; pending operations on it end with
  // OSError(EBADF). Idempotent.
  void close() noexcept;
  // Gives up ownership without closing.
  NativeHandle detach() noexcept;

  void bind(const SocketAddress& address);
  void listen(int backlog = 100);
  void shutdown(ShutdownHow how);
  void setsockopt(SocketOption option, int value = 1);
  int getsockopt(SocketOption option) const;
  SocketAddress getsockname() const;
  SocketAddress getpeername() const;
  AddressFamily family() const;
  SocketKind kind() const;

  // Records the loop whose backend is about to see this handle (the sock_* ops call it).
  void attach_loop(EventLoop& loop);
  EventLoop* loop() const noexcept { return loop_; }

 private:
  void check_open(const char* what) const;

  NativeHandle handle_ = core::kInvalidHandle;
  EventLoop* loop_ = nullptr;
  std::uint64_t loop_token_ = 0;  // which incarnation of loop_ (see net_internal.hpp)
};

}  // namespace corio
