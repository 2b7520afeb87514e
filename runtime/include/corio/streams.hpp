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
// The reads return a StreamRead awaiter rather than a coroutine: one that the buffer already
// answers completes without suspending or allocating, and one that must wait receives from
// inside the awaiter (its operation lives in the awaiting frame), so a read allocates
// nothing but the std::string it returns (readinto, into the caller's buffer, not even that).
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
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "corio/coro.hpp"
#include "corio/detail/net_io.hpp"
#include "corio/detail/separator_list.hpp"
#include "corio/sock_ops.hpp"
#include "corio/socket.hpp"
#include "corio/task.hpp"

namespace corio {

// asyncio's _DEFAULT_LIMIT (2 ** 16).
inline constexpr std::size_t kDefaultStreamLimit = 64 * 1024;

namespace detail {
class ReaderState;
class StreamTransport;
class WriterState;
}  // namespace detail

class StreamReadInto;

// What StreamReader::read / readline / readexactly / readuntil return: co_await it for the
// bytes (as awaiting the coroutine asyncio's methods return). It completes at once, without
// suspending, when the buffer already holds the answer. Otherwise a reader on a socket
// receives into its buffer from this awaiter, which wakes the coroutine only once the
// answer is complete; a hand-fed reader waits in a coroutine. It works wherever an awaitable
// is taken (gather, wait_for, shield...); create_task(read) is overloaded below, and it
// converts to Coro<std::string> (coro()) for anything that needs a coroutine.
// It must be awaited at most once, and never moved once awaited.
class [[nodiscard]] StreamRead : private detail::IoAwaiter {
 public:
  enum class Kind : std::uint8_t { read, readexactly, readuntil, readline };

  StreamRead(std::shared_ptr<detail::ReaderState> state, Kind kind, std::ptrdiff_t n,
             std::string separator) noexcept
      : state_(std::move(state)), separator_(std::move(separator)), n_(n), kind_(kind) {}
  // readuntil with several separators (asyncio 3.13's tuple).
  StreamRead(std::shared_ptr<detail::ReaderState> state,
             std::vector<std::string> separators) noexcept
      : state_(std::move(state)),
        separators_(std::move(separators)),
        n_(0),
        kind_(Kind::readuntil),
        several_(true) {}
  // Only before it is awaited (to wrap it in a coroutine).
  StreamRead(StreamRead&& other) noexcept
      : IoAwaiter(std::move(other)),
        state_(std::move(other.state_)),
        separator_(std::move(other.separator_)),
        separators_(std::move(other.separators_)),
        into_(other.into_),
        n_(other.n_),
        kind_(other.kind_),
        several_(other.several_) {}
  StreamRead& operator=(StreamRead&&) = delete;

  bool await_ready();
  template <class P>
  std::coroutine_handle<> await_suspend(std::coroutine_handle<P> handle) {
    if (slow_) return slow_.operator co_await().await_suspend(handle);
    suspend(handle);
    return std::noop_coroutine();
  }
  std::string await_resume();

  Coro<std::string> coro() && { return detail::awaiter_coro(std::move(*this)); }
  operator Coro<std::string>() && { return std::move(*this).coro(); }

 private:
  friend class StreamReadInto;
  bool try_complete();
  bool needs_more() const noexcept;
  bool settle() noexcept;
  template <class F>
  decltype(auto) with_separators(F&& f) const;  // f(what readuntil/readline search for)
  bool start_receive();
  void absorb(std::int64_t n);
  void suspend(std::coroutine_handle<> handle);
  static void after_recv(IoAwaiter* base);
  static void continue_receive(void* arg);

  std::shared_ptr<detail::ReaderState> state_;
  std::string separator_;
  std::vector<std::string> separators_;  // several_: sorted shortest first once awaited
  std::string result_;
  std::exception_ptr error_;  // raised by a step that ran outside the coroutine
  Coro<std::string> slow_;    // a hand-fed reader's wait
  std::span<char> into_;      // readinto: the answer is copied here, not into result_
  std::ptrdiff_t n_;
  std::size_t offset_ = 0;  // where the separator search resumes
  Kind kind_;
  bool done_ = false;      // result_ holds the answer
  bool absorbed_ = false;  // op_'s outcome is in the reader already
  bool awaited_ = false;
  bool several_ = false;  // readuntil searches separators_, not separator_
};

// What StreamReader::readinto returns: co_await it for the count of bytes copied into the
// caller's span (0 at EOF). The same awaiter as read(n), so the same guarantees: bytes
// received stay in the reader when it is cancelled, and nothing is allocated (the reader's
// buffer is reused; the bytes are copied once into the span). The span must stay valid until
// the read completes. Awaited at most once, never moved once awaited.
class [[nodiscard]] StreamReadInto {
 public:
  StreamReadInto(std::shared_ptr<detail::ReaderState> state, std::span<char> into) noexcept;

  bool await_ready() { return read_.await_ready(); }
  template <class P>
  std::coroutine_handle<> await_suspend(std::coroutine_handle<P> handle) {
    return read_.await_suspend(handle);
  }
  std::size_t await_resume();

  Coro<std::size_t> coro() && { return detail::awaiter_coro(std::move(*this)); }
  operator Coro<std::size_t>() && { return std::move(*this).coro(); }

 private:
  StreamRead read_;
};

class StreamReader {
 public:
  // A reader fed by hand (feed_data / feed_eof), as StreamReader(limit=...) in asyncio.
  explicit StreamReader(std::size_t limit = kDefaultStreamLimit);
  explicit StreamReader(std::shared_ptr<detail::ReaderState> state) noexcept
      : state_(std::move(state)) {}

  // Up to n bytes (n < 0: until EOF). Empty at EOF.
  StreamRead read(std::ptrdiff_t n = -1) {
    return StreamRead(state_, StreamRead::Kind::read, n, {});
  }
  // corio extension (asyncio's read(n) into a buffer, as sock_recv_into is sock_recv's twin):
  // up to into.size() bytes copied into `into`, the count returned; 0 at EOF (or for an
  // empty span). Reads without allocating, where read(n) returns a new std::string.
  StreamReadInto readinto(std::span<char> into) { return StreamReadInto(state_, into); }
  // One line including "\n"; at EOF the partial line (or empty). A line longer than the
  // limit raises ValueError and is discarded, as asyncio does (use readuntil to keep it).
  StreamRead readline() { return StreamRead(state_, StreamRead::Kind::readline, 0, {}); }
  // Exactly n bytes; IncompleteReadError (with the partial bytes) if EOF comes first.
  StreamRead readexactly(std::ptrdiff_t n) {
    return StreamRead(state_, StreamRead::Kind::readexactly, n, {});
  }
  // Up to and including `separator`. LimitOverrunError if the limit is exceeded first: the
  // data stays in the buffer. IncompleteReadError at EOF (expected() is 0: undefined).
  StreamRead readuntil(std::string separator = "\n") {
    return StreamRead(state_, StreamRead::Kind::readuntil, 0, std::move(separator));
  }
  // asyncio 3.13's tuple of separators: up to and including the separator that ends first
  // (a shorter one wins a tie). ValueError if the list is empty or holds an empty separator.
  // GCC 12 rejects a braced list inside a co_await expression (a compiler bug, "array used
  // as initializer"): there, name the list first (a std::array or vector of separators).
  StreamRead readuntil(std::initializer_list<std::string_view> separators) {
    return StreamRead(state_, std::vector<std::string>(separators.begin(), separators.end()));
  }
  template <detail::SeparatorList R>
  StreamRead readuntil(const R& separators) {
    return StreamRead(state_,
                      std::vector<std::string>(std::begin(separators), std::end(separators)));
  }

  // The reader pulls (it receives only while a read waits), so an EOF or a reset that
  // arrived while no read was pending shows in at_eof() / exception() after the next read,
  // not before as with asyncio's always-reading transport.
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

// asyncio.create_task(reader.readline()): a read runs as a task like any coroutine.
inline Task<std::string> create_task(StreamRead read, std::string name = {}) {
  return create_task(std::move(read).coro(), std::move(name));
}
inline Task<std::size_t> create_task(StreamReadInto read, std::string name = {}) {
  return create_task(std::move(read).coro(), std::move(name));
}
inline Task<std::string> create_task(StreamRead read, TaskOptions options) {
  return create_task(std::move(read).coro(), options);
}
inline Task<std::size_t> create_task(StreamReadInto read, TaskOptions options) {
  return create_task(std::move(read).coro(), options);
}

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
