// Streams (asyncio's high-level network API): StreamReader, StreamWriter, open_connection,
// open_unix_connection. Servers (start_server, start_unix_server) are in server.hpp.
//
// Readers and writers are reference handles, like Python objects: copies share one stream.
// The reader pulls: when a read needs bytes it receives straight into its own buffer in
// 64 KiB chunks (no allocation per message once the buffer has grown), so the TCP window is
// the flow control. The writer pushes: write() never blocks, it queues bytes and sends in
// the background; drain() waits while more than the high-water mark is queued, until the
// queue falls to the low-water mark. Data is std::string / std::string_view throughout.
// Cancelling any read keeps the bytes already received in the buffer for the next read;
// cancelling drain() leaves the queued bytes to be sent.
// When the last StreamWriter handle goes away the connection is closed (after flushing),
// as asyncio's StreamWriter.__del__ does. Nothing here ever blocks the thread, and no byte
// received is ever dropped by a cancellation.
#pragma once

#include <any>
#include <coroutine>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <initializer_list>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "corio/coro.hpp"
#include "corio/detail/net_io.hpp"
#include "corio/sock_ops.hpp"
#include "corio/socket.hpp"

namespace corio {

// asyncio's _DEFAULT_LIMIT (2 ** 16).
inline constexpr std::size_t kDefaultStreamLimit = 64 * 1024;

namespace detail {
class ReaderState;
class StreamTransport;
class WriterState;
}  // namespace detail

class StreamReader {
 public:
  // A reader fed by hand (feed_data / feed_eof), as StreamReader(limit=...) in asyncio.
  explicit StreamReader(std::size_t limit = kDefaultStreamLimit);
  explicit StreamReader(std::shared_ptr<detail::ReaderState> state) noexcept
      : state_(std::move(state)) {}

  // Up to n bytes (n < 0: until EOF). Empty at EOF.
  Coro<std::string> read(std::ptrdiff_t n = -1);
  // One line including "\n"; at EOF the partial line (or empty). A line longer than the
  // limit raises ValueError and is discarded, as asyncio does (use readuntil to keep it).
  Coro<std::string> readline();
  // Exactly n bytes; IncompleteReadError (with the partial bytes) if EOF comes first.
  Coro<std::string> readexactly(std::ptrdiff_t n);
  // Up to and including `separator`. LimitOverrunError if the limit is exceeded first: the
  // data stays in the buffer. IncompleteReadError at EOF (expected() is 0: undefined).
  Coro<std::string> readuntil(std::string separator = "\n");

  bool at_eof() const noexcept;
  void feed_data(std::string_view data);
  void feed_eof();
  std::exception_ptr exception() const noexcept;
  void set_exception(std::exception_ptr error);
  std::size_t limit() const noexcept;

  // corio extension: the bytes received and not read yet (valid until the next read).
  std::string_view buffered() const noexcept;

  const std::shared_ptr<detail::ReaderState>& state() const noexcept { return state_; }

 private:
  std::shared_ptr<detail::ReaderState> state_;
};

// co_await writer.drain()
class DrainAwaiter {
 public:
  explicit DrainAwaiter(std::shared_ptr<detail::WriterState> writer) noexcept
      : writer_(std::move(writer)) {}
  DrainAwaiter(DrainAwaiter&& other) noexcept : writer_(std::move(other.writer_)) {}
  bool await_ready();
  void await_suspend(std::coroutine_handle<> handle);
  void await_resume();
  Coro<void> coro() && { return detail::awaiter_coro(std::move(*this)); }

 private:
  std::shared_ptr<detail::WriterState> writer_;
  detail::IoWaiter waiter_;
  bool suspended_ = false;
};

// co_await writer.wait_closed()
class WaitClosedAwaiter {
 public:
  explicit WaitClosedAwaiter(std::shared_ptr<detail::WriterState> writer) noexcept
      : writer_(std::move(writer)) {}
  WaitClosedAwaiter(WaitClosedAwaiter&& other) noexcept : writer_(std::move(other.writer_)) {}
  bool await_ready();
  void await_suspend(std::coroutine_handle<> handle);
  void await_resume();
  Coro<void> coro() && { return detail::awaiter_coro(std::move(*this)); }

 private:
  std::shared_ptr<detail::WriterState> writer_;
  detail::IoWaiter waiter_;
  bool suspended_ = false;
};

class StreamWriter {
 public:
  StreamWriter() noexcept = default;
  explicit StreamWriter(std::shared_ptr<detail::WriterState> state) noexcept
      : state_(std::move(state)) {}

  // Queues bytes and starts sending; never blocks. Ignored once the connection is lost;
  // RuntimeError after write_eof().
  void write(std::string_view data);
  void writelines(std::initializer_list<std::string_view> lines);
  template <class Range>
  void writelines(const Range& lines) {
    for (const auto& line : lines) write(std::string_view(line));
  }
  bool can_write_eof() const noexcept;
  // Half-close: FIN after the queued bytes; reading stays possible.
  void write_eof();
  // Closes after the queued bytes are sent. wait_closed() waits for it.
  void close();
  // corio extension (asyncio: writer.transport.abort()): close now, dropping queued bytes.
  void abort();
  bool is_closing() const noexcept;
  // Waits while the write buffer is above the high-water mark. Raises the connection's
  // error (ConnectionResetError, BrokenPipeError...) once it is lost.
  DrainAwaiter drain() const noexcept { return DrainAwaiter(state_); }
  // Waits until the socket is closed; raises the error the connection was lost with.
  WaitClosedAwaiter wait_closed() const noexcept { return WaitClosedAwaiter(state_); }

  // "peername", "sockname" (SocketAddress), "socket" (NativeHandle); else default_value.
  std::any get_extra_info(std::string_view name, std::any default_value = {}) const;
  std::optional<SocketAddress> peername() const;
  std::optional<SocketAddress> sockname() const;
  NativeHandle fileno() const noexcept;

  std::size_t get_write_buffer_size() const noexcept;
  // transport.set_write_buffer_limits(high, low): defaults 64 KiB and high / 4.
  void set_write_buffer_limits(std::optional<std::size_t> high = std::nullopt,
                               std::optional<std::size_t> low = std::nullopt);
  // (low, high), as transport.get_write_buffer_limits().
  std::pair<std::size_t, std::size_t> get_write_buffer_limits() const noexcept;

  explicit operator bool() const noexcept { return static_cast<bool>(state_); }
  const std::shared_ptr<detail::WriterState>& state() const noexcept { return state_; }

 private:
  std::shared_ptr<detail::WriterState> state_;
};

// (reader, writer): what open_connection returns; use a structured binding.
using StreamPair = std::pair<StreamReader, StreamWriter>;

// Streams over an already connected socket (TCP or Unix).
StreamPair open_stream(Socket sock, std::size_t limit = kDefaultStreamLimit);

// asyncio.open_connection(host, port, limit=...): resolves `host` (numeric hosts skip the
// resolver) and tries each address in order, or races them with happy eyeballs.
Coro<StreamPair> open_connection(std::string host, std::uint16_t port,
                                 std::size_t limit = kDefaultStreamLimit);
Coro<StreamPair> open_connection(std::string host, std::uint16_t port, ConnectOptions options);
// asyncio.open_connection(sock=...)
Coro<StreamPair> open_connection(Socket sock, std::size_t limit = kDefaultStreamLimit);
// asyncio.open_unix_connection(path, limit=...)
Coro<StreamPair> open_unix_connection(std::string path, std::size_t limit = kDefaultStreamLimit);

}  // namespace corio
