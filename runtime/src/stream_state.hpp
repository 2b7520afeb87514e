// Private state behind StreamReader / StreamWriter / Server (never installed): the reader's
// buffer, the transport (socket + write queue), and the hook servers use to count their
// connections. The transport must never free a buffer an in-flight op points into and never
// outlive its loop with a self-reference (see SendingTransports in streams.cpp).
#pragma once

#include <cstddef>
#include <exception>
#include <memory>
#include <optional>
#include <string>

#include "corio/detail/net_io.hpp"
#include "corio/socket.hpp"
#include "corio/streams.hpp"
#include "net_internal.hpp"

namespace corio {
class EventLoop;
namespace detail {

class StreamTransport;
class SendingTransports;

// What a server learns about its connections (asyncio's Server._attach/_detach).
class ConnectionTracker {
 public:
  virtual ~ConnectionTracker() = default;
  virtual void attach(StreamTransport& transport) = 0;
  virtual void detach(StreamTransport& transport) = 0;
};

class ReaderState {
 public:
  explicit ReaderState(std::size_t limit) : limit(limit) {}

  void feed_data(std::string_view data);
  void feed_eof();
  void set_exception(std::exception_ptr error);

  ByteBuffer buffer;
  std::size_t limit;
  bool eof = false;
  bool waiting = false;    // a coroutine waits for data (only one may)
  bool receiving = false;  // a recv into `buffer` is in flight: the buffer must not move
  std::exception_ptr exception;
  std::shared_ptr<StreamTransport> transport;  // null: fed by hand
  IoWaitList waiters;                          // hand-fed readers wait here
};

class StreamTransport : public std::enable_shared_from_this<StreamTransport> {
 public:
  StreamTransport(EventLoop& loop, Socket sock);
  ~StreamTransport();
  StreamTransport(const StreamTransport&) = delete;
  StreamTransport& operator=(const StreamTransport&) = delete;

  NativeHandle handle() const noexcept { return closed_ ? core::kInvalidHandle : sock_.fileno(); }
  bool is_closing() const noexcept { return closing_ || closed_; }
  bool is_closed() const noexcept { return closed_; }
  std::exception_ptr error() const noexcept { return error_; }
  bool paused() const noexcept { return paused_; }
  std::size_t buffer_size() const noexcept { return sending_.size() - sent_ + pending_.size(); }
  std::size_t high_water() const noexcept { return high_water_; }
  std::size_t low_water() const noexcept { return low_water_; }
  IoWaitList& drain_waiters() noexcept { return drain_waiters_; }
  IoWaitList& closed_waiters() noexcept { return closed_waiters_; }
  // Looked up once at creation, as asyncio's transport extra info, so they survive close.
  const std::optional<SocketAddress>& peername() const noexcept { return peer_; }
  const std::optional<SocketAddress>& sockname() const noexcept { return local_; }

  void set_reader(const std::shared_ptr<ReaderState>& reader) { reader_ = reader; }
  void set_tracker(std::shared_ptr<ConnectionTracker> tracker);

  void write(std::string_view data);
  void write_eof();
  void set_write_buffer_limits(std::optional<std::size_t> high, std::optional<std::size_t> low);
  // Graceful: the socket closes once the queued bytes are sent.
  void close();
  // Now, dropping queued bytes.
  void abort();
  // Closes the socket and tells everyone: reader (EOF or the error), drain and
  // wait_closed waiters, the server. `error` null means a clean close.
  void connection_lost(std::exception_ptr error);

 private:
  friend class SendingTransports;
  struct SendOp : core::Operation {
    StreamTransport* owner = nullptr;
  };

  void flush();
  void on_drained();
  void maybe_pause();
  // A send in flight was started lazily (nobody waited for it); now somebody will.
  void want_send_completion() noexcept;
  void maybe_resume();
  void abandon_send() noexcept;
  static void send_completed(core::Operation* op);
  static void send_continue(void* self);

  EventLoop& loop_;
  Socket sock_;
  // Bytes being sent (`sending_` from `sent_` on, which the op points into) and bytes queued
  // behind them; the two swap when `sending_` is done, so neither moves under an op.
  std::string sending_;
  std::string pending_;
  std::size_t sent_ = 0;
  SendOp op_;
  bool send_busy_ = false;                       // op in flight or its continuation queued
  std::shared_ptr<StreamTransport> keep_alive_;  // held while send_busy_
  std::shared_ptr<SendingTransports> sending_list_;
  StreamTransport* sending_prev_ = nullptr;
  StreamTransport* sending_next_ = nullptr;
  bool sending_linked_ = false;

  std::size_t high_water_;
  std::size_t low_water_;
  bool paused_ = false;
  bool closing_ = false;
  bool closed_ = false;
  bool eof_requested_ = false;
  bool eof_sent_ = false;
  std::exception_ptr error_;
  IoWaitList drain_waiters_;
  IoWaitList closed_waiters_;
  std::weak_ptr<ReaderState> reader_;
  std::shared_ptr<ConnectionTracker> tracker_;
  std::optional<SocketAddress> peer_;
  std::optional<SocketAddress> local_;
};

// What StreamWriter handles share; the last one closes the connection.
class WriterState {
 public:
  ~WriterState();
  std::shared_ptr<StreamTransport> transport;
  std::shared_ptr<ReaderState> reader;
};

// A reader/writer pair over a connected socket; `tracker` (a server) may be null.
StreamPair make_stream(EventLoop& loop, Socket sock, std::size_t limit,
                       std::shared_ptr<ConnectionTracker> tracker);

}  // namespace detail
}  // namespace corio
