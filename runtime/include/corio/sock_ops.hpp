// Low-level socket operations: the twins of the loop's sock_* coroutines (sock_accept,
// sock_connect, sock_recv, sock_recv_into, sock_recvfrom, sock_recvfrom_into, sock_sendall,
// sock_sendto) and of add_reader/add_writer (wait_readable/wait_writable, and the callback
// form add_reader(fd, cb)/remove_reader(fd) built on repeated waits).
// Each op is an awaiter holding one backend Operation in the awaiting frame: no allocation
// per op. Errors raise asyncio's OSError subclasses with the errno kept; a pending op whose
// socket is closed by someone else raises OSError(EBADF). Cancelling never loses data: a
// cancelled op either did nothing or its data is returned and CancelledError comes at the
// next suspension point. Buffers passed in (spans, string_views) must stay alive until the
// co_await completes. Use .coro() to turn an op into a Coro (for create_task, gather...).
// An awaiter must never resume its coroutine while its operation is still in flight.
#pragma once

#include <coroutine>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>

#include "corio/coro.hpp"
#include "corio/detail/net_io.hpp"
#include "corio/handle.hpp"
#include "corio/socket.hpp"

namespace corio {

// (accepted socket, peer address)
using Accepted = std::pair<Socket, SocketAddress>;

class SockAccept : private detail::IoAwaiter {
 public:
  explicit SockAccept(Socket& listener) noexcept : listener_(&listener) {}
  SockAccept(SockAccept&&) noexcept = default;
  bool await_ready();
  void await_suspend(std::coroutine_handle<> h) { suspend_io(h); }
  Accepted await_resume();
  Coro<Accepted> coro() && { return detail::awaiter_coro(std::move(*this)); }

 private:
  Socket* listener_;
  SocketAddress peer_;
};

class SockConnect : private detail::IoAwaiter {
 public:
  SockConnect(Socket& sock, const SocketAddress& address) noexcept
      : sock_(&sock), address_(address) {}
  SockConnect(SockConnect&&) noexcept = default;
  bool await_ready();
  void await_suspend(std::coroutine_handle<> h) { suspend_io(h); }
  void await_resume();
  Coro<void> coro() && { return detail::awaiter_coro(std::move(*this)); }

 private:
  Socket* sock_;
  SocketAddress address_;
};

class SockRecv : private detail::IoAwaiter {
 public:
  SockRecv(Socket& sock, std::size_t nbytes) noexcept : sock_(&sock), nbytes_(nbytes) {}
  SockRecv(SockRecv&&) noexcept = default;
  bool await_ready();
  void await_suspend(std::coroutine_handle<> h) { suspend_io(h); }
  std::string await_resume();
  Coro<std::string> coro() && { return detail::awaiter_coro(std::move(*this)); }

 private:
  Socket* sock_;
  std::size_t nbytes_;
  std::string buffer_;
};

class SockRecvInto : private detail::IoAwaiter {
 public:
  SockRecvInto(Socket& sock, std::span<char> buffer) noexcept : sock_(&sock), buffer_(buffer) {}
  SockRecvInto(SockRecvInto&&) noexcept = default;
  bool await_ready();
  void await_suspend(std::coroutine_handle<> h) { suspend_io(h); }
  std::size_t await_resume();
  Coro<std::size_t> coro() && { return detail::awaiter_coro(std::move(*this)); }

 private:
  Socket* sock_;
  std::span<char> buffer_;
};

// (datagram, sender)
using ReceivedFrom = std::pair<std::string, SocketAddress>;
// (bytes received, sender)
using ReceivedIntoFrom = std::pair<std::size_t, SocketAddress>;

class SockRecvFrom : private detail::IoAwaiter {
 public:
  SockRecvFrom(Socket& sock, std::size_t bufsize) noexcept : sock_(&sock), bufsize_(bufsize) {}
  SockRecvFrom(SockRecvFrom&&) noexcept = default;
  bool await_ready();
  void await_suspend(std::coroutine_handle<> h) { suspend_io(h); }
  ReceivedFrom await_resume();
  Coro<ReceivedFrom> coro() && { return detail::awaiter_coro(std::move(*this)); }

 private:
  Socket* sock_;
  std::size_t bufsize_;
  std::string buffer_;
  SocketAddress from_;
};

class SockRecvFromInto : private detail::IoAwaiter {
 public:
  SockRecvFromInto(Socket& sock, std::span<char> buffer) noexcept : sock_(&sock), buffer_(buffer) {}
  SockRecvFromInto(SockRecvFromInto&&) noexcept = default;
  bool await_ready();
  void await_suspend(std::coroutine_handle<> h) { suspend_io(h); }
  ReceivedIntoFrom await_resume();
  Coro<ReceivedIntoFrom> coro() && { return detail::awaiter_coro(std::move(*this)); }

 private:
  Socket* sock_;
  std::span<char> buffer_;
  SocketAddress from_;
};

// One send; returns the bytes the kernel took (a building block; prefer sock_sendall).
class SockSend : private detail::IoAwaiter {
 public:
  SockSend(Socket& sock, std::string_view data) noexcept : sock_(&sock), data_(data) {}
  SockSend(SockSend&&) noexcept = default;
  bool await_ready();
  void await_suspend(std::coroutine_handle<> h) { suspend_io(h); }
  std::size_t await_resume();
  Coro<std::size_t> coro() && { return detail::awaiter_coro(std::move(*this)); }

 private:
  Socket* sock_;
  std::string_view data_;
};

// Sends everything, one op after another. Cancelled part-way, some prefix has been sent
// (as in asyncio); how much is not reported.
class SockSendAll : private detail::IoAwaiter {
 public:
  SockSendAll(Socket& sock, std::string_view data) noexcept : sock_(&sock), data_(data) {}
  SockSendAll(SockSendAll&&) noexcept = default;
  bool await_ready();
  void await_suspend(std::coroutine_handle<> h) { suspend_io(h); }
  void await_resume();
  Coro<void> coro() && { return detail::awaiter_coro(std::move(*this)); }

 private:
  // Sends until done, an error, or the op must wait. true: finished (or failed).
  bool pump();
  static void after_send(IoAwaiter* self);
  static void resume_pump(void* self);

  Socket* sock_;
  std::string_view data_;
  std::size_t sent_ = 0;
  int error_ = 0;
};

class SockSendTo : private detail::IoAwaiter {
 public:
  SockSendTo(Socket& sock, std::string_view data, const SocketAddress& address) noexcept
      : sock_(&sock), data_(data), address_(address) {}
  SockSendTo(SockSendTo&&) noexcept = default;
  bool await_ready();
  void await_suspend(std::coroutine_handle<> h) { suspend_io(h); }
  std::size_t await_resume();
  Coro<std::size_t> coro() && { return detail::awaiter_coro(std::move(*this)); }

 private:
  Socket* sock_;
  std::string_view data_;
  SocketAddress address_;
};

// Waits until a handle is readable / writable (any pollable handle, not only sockets).
class WaitReady : private detail::IoAwaiter {
 public:
  WaitReady(NativeHandle handle, bool writable) noexcept : handle_(handle), writable_(writable) {}
  WaitReady(WaitReady&&) noexcept = default;
  bool await_ready();
  void await_suspend(std::coroutine_handle<> h) { suspend_io(h); }
  void await_resume();
  Coro<void> coro() && { return detail::awaiter_coro(std::move(*this)); }

 private:
  NativeHandle handle_;
  bool writable_;
};

// loop.sock_accept(sock) -> (conn, address)
inline SockAccept sock_accept(Socket& listener) noexcept {
  return SockAccept(listener);
}
// loop.sock_connect(sock, address)
inline SockConnect sock_connect(Socket& sock, const SocketAddress& address) noexcept {
  return SockConnect(sock, address);
}
// loop.sock_recv(sock, nbytes): up to nbytes; empty at EOF.
inline SockRecv sock_recv(Socket& sock, std::size_t nbytes) noexcept {
  return SockRecv(sock, nbytes);
}
// loop.sock_recv_into(sock, buf) -> bytes received
inline SockRecvInto sock_recv_into(Socket& sock, std::span<char> buffer) noexcept {
  return SockRecvInto(sock, buffer);
}
inline SockRecvFrom sock_recvfrom(Socket& sock, std::size_t bufsize) noexcept {
  return SockRecvFrom(sock, bufsize);
}
inline SockRecvFromInto sock_recvfrom_into(Socket& sock, std::span<char> buffer) noexcept {
  return SockRecvFromInto(sock, buffer);
}
inline SockSend sock_send(Socket& sock, std::string_view data) noexcept {
  return SockSend(sock, data);
}
inline SockSendAll sock_sendall(Socket& sock, std::string_view data) noexcept {
  return SockSendAll(sock, data);
}
inline SockSendTo sock_sendto(Socket& sock, std::string_view data,
                              const SocketAddress& address) noexcept {
  return SockSendTo(sock, data, address);
}
inline WaitReady wait_readable(NativeHandle handle) noexcept {
  return WaitReady(handle, false);
}
inline WaitReady wait_writable(NativeHandle handle) noexcept {
  return WaitReady(handle, true);
}
WaitReady wait_readable(Socket& sock);
WaitReady wait_writable(Socket& sock);

// How create_connection / open_connection reach a host.
struct ConnectOptions {
  AddressFamily family = AddressFamily::unspecified;  // restrict the resolved addresses
  std::optional<SocketAddress> local_addr;            // bind before connecting
  // Happy eyeballs (RFC 8305): start the next address after this many seconds without
  // waiting for the previous attempt to fail. nullopt: one address at a time, in order.
  std::optional<double> happy_eyeballs_delay;
  // Reorder addresses by family, taking this many of the first family before the next
  // (0: keep the resolver's order; defaults to 1 when happy eyeballs is on).
  int interleave = 0;
  std::size_t limit = 64 * 1024;  // streams only: the StreamReader limit
};

// socket.create_connection((host, port)) as a coroutine: resolves `host` off the loop
// (numeric hosts skip the resolver) and connects to the addresses in order, or races them
// (happy eyeballs). When every address fails: the error itself if there was one (or all
// were alike), else OSError("Multiple exceptions: ...").
Coro<Socket> create_connection(std::string host, std::uint16_t port, ConnectOptions options = {});

// loop.add_reader(fd, callback) / remove_reader(fd) and the writer twins. The callback runs
// on the loop, once per loop iteration while the handle stays readable (level-triggered, as
// asyncio's selector loop); adding again for the same handle replaces the callback.
// remove_* returns whether a callback was registered. Registrations end when the loop closes.
void add_reader(EventLoop& loop, NativeHandle handle, Callback callback);
bool remove_reader(EventLoop& loop, NativeHandle handle);
void add_writer(EventLoop& loop, NativeHandle handle, Callback callback);
bool remove_writer(EventLoop& loop, NativeHandle handle);
// The same on the running loop.
void add_reader(NativeHandle handle, Callback callback);
bool remove_reader(NativeHandle handle);
void add_writer(NativeHandle handle, Callback callback);
bool remove_writer(NativeHandle handle);

}  // namespace corio
