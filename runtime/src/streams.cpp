// StreamReader / StreamWriter over a socket: the reader's pull-side recv into its buffer,
// the writer's background sender with water marks, and connection loss. It must never move
// or free a buffer an in-flight recv/send points into.
#include "corio/streams.hpp"

#include <algorithm>
#include <cerrno>
#include <unordered_set>

#include "corio/detail/loop_local.hpp"
#include "corio/event_loop.hpp"
#include "net_internal.hpp"
#include "stream_state.hpp"

namespace corio {

namespace detail {

namespace {

constexpr std::size_t kRecvChunk = 64 * 1024;
constexpr std::size_t kDefaultHighWater = 64 * 1024;

void ignore_completion(core::Operation*) {}

}  // namespace

// --- the per-loop list of transports with a send in flight ---------------------------
// A transport keeps itself alive while its send op is in flight (its buffer must outlive
// the op). If the loop closes first, that op never completes: this list lets the closing
// loop abandon those ops and drop the self-references, so nothing leaks.
class SendingTransports {
 public:
  explicit SendingTransports(EventLoop&) {}
  void on_loop_close() {
    closed_ = true;
    while (StreamTransport* t = head_) {
      unlink(*t);
      t->abandon_send();
    }
  }
  void link(StreamTransport& t) {
    if (closed_ || t.sending_linked_) return;
    t.sending_prev_ = nullptr;
    t.sending_next_ = head_;
    if (head_) head_->sending_prev_ = &t;
    head_ = &t;
    t.sending_linked_ = true;
  }
  void unlink(StreamTransport& t) noexcept {
    if (!t.sending_linked_) return;
    (t.sending_prev_ ? t.sending_prev_->sending_next_ : head_) = t.sending_next_;
    if (t.sending_next_) t.sending_next_->sending_prev_ = t.sending_prev_;
    t.sending_prev_ = t.sending_next_ = nullptr;
    t.sending_linked_ = false;
  }

 private:
  StreamTransport* head_ = nullptr;
  bool closed_ = false;
};

// --- ReaderState ----------------------------------------------------------------------

void ReaderState::feed_data(std::string_view data) {
  if (eof) throw RuntimeError("feed_data after feed_eof");
  if (receiving) throw RuntimeError("feed_data() while a receive into the buffer is in flight");
  if (data.empty()) return;
  buffer.append(data);
  waiters.wake_all();
}

void ReaderState::feed_eof() {
  eof = true;
  waiters.wake_all();
}

void ReaderState::set_exception(std::exception_ptr error) {
  exception = std::move(error);
  waiters.wake_all();
}

// --- StreamTransport ------------------------------------------------------------------

StreamTransport::StreamTransport(EventLoop& loop, Socket sock)
    : loop_(loop),
      sock_(std::move(sock)),
      high_water_(kDefaultHighWater),
      low_water_(kDefaultHighWater / 4) {
  sock_.attach_loop(loop);
  sending_list_ = LoopLocal<SendingTransports>::get(loop);
  try {
    const AddressFamily family = sock_.family();
    if ((family == AddressFamily::ipv4 || family == AddressFamily::ipv6) &&
        sock_.kind() == SocketKind::stream) {
      sock_.setsockopt(SocketOption::tcp_nodelay, 1);  // asyncio sets TCP_NODELAY too
    }
  } catch (const OSError&) {
  }
  try {
    local_ = sock_.getsockname();
    peer_ = sock_.getpeername();
  } catch (const OSError&) {
  }
  op_.owner = this;
}

StreamTransport::~StreamTransport() {
  if (sending_list_) sending_list_->unlink(*this);
  if (op_.in_flight()) abandon_send();
  if (tracker_) {
    std::shared_ptr<ConnectionTracker> tracker = std::move(tracker_);
    tracker->detach(*this);
  }
  sock_.close();
}

void StreamTransport::abandon_send() noexcept {
  op_.on_complete = &ignore_completion;
  if (op_.in_flight()) loop_.backend().cancel(op_);
  send_busy_ = false;
  std::shared_ptr<StreamTransport> hold = std::move(keep_alive_);
  // `hold` may be the last reference: this object may be destroyed on return.
}

void StreamTransport::set_tracker(std::shared_ptr<ConnectionTracker> tracker) {
  tracker_ = std::move(tracker);
}

void StreamTransport::write(std::string_view data) {
  if (eof_requested_) throw RuntimeError("Cannot call write() after write_eof()");
  if (data.empty()) return;
  if (closed_) return;  // connection lost: asyncio drops the bytes (and logs after a few)
  pending_.append(data);
  if (!send_busy_) flush();
  maybe_pause();
}

void StreamTransport::flush() {
  for (;;) {
    if (closed_) return;
    if (sent_ == sending_.size()) {
      sending_.clear();
      sent_ = 0;
      if (pending_.empty()) {
        on_drained();
        return;
      }
      std::swap(sending_, pending_);
    }
    op_.code = core::OpCode::send;
    op_.handle = sock_.fileno();
    op_.buffer = sending_.data() + sent_;
    op_.length = sending_.size() - sent_;
    op_.flags = 0;
    op_.state = core::OpState::idle;
    op_.on_complete = &send_completed;
    if (!loop_.backend().start(op_)) {
      send_busy_ = true;
      keep_alive_ = shared_from_this();
      if (sending_list_) sending_list_->link(*this);
      return;
    }
    if (op_.result < 0) {
      connection_lost(make_os_error(static_cast<int>(-op_.result), "send"));
      return;
    }
    sent_ += static_cast<std::size_t>(op_.result);
    maybe_resume();
  }
}

void StreamTransport::send_completed(core::Operation* op) {
  // Inside the backend's dispatch: only schedule the rest.
  StreamTransport* self = static_cast<SendOp*>(op)->owner;
  self->loop_.post({&send_continue, self});
}

void StreamTransport::send_continue(void* arg) {
  auto* self = static_cast<StreamTransport*>(arg);
  if (self->sending_list_) self->sending_list_->unlink(*self);
  std::shared_ptr<StreamTransport> hold = std::move(self->keep_alive_);
  self->send_busy_ = false;
  if (self->closed_) {
    self->sending_.clear();
    self->sent_ = 0;
    return;
  }
  const std::int64_t r = self->op_.result;
  if (self->op_.state == core::OpState::cancelled || r < 0) {
    const int error = r < 0 && r != -ECANCELED ? static_cast<int>(-r) : EBADF;
    self->connection_lost(make_os_error(error, "send"));
    return;
  }
  self->sent_ += static_cast<std::size_t>(r);
  self->maybe_resume();
  self->flush();
}

void StreamTransport::maybe_pause() {
  if (!paused_ && buffer_size() > high_water_) paused_ = true;
}

void StreamTransport::maybe_resume() {
  if (paused_ && buffer_size() <= low_water_) {
    paused_ = false;
    drain_waiters_.wake_all();
  }
}

void StreamTransport::on_drained() {
  maybe_resume();
  if (eof_requested_ && !eof_sent_) {
    eof_sent_ = true;
    try {
      sock_.shutdown(ShutdownHow::write);
    } catch (const OSError&) {
      // The peer is gone already; the next operation reports it.
    }
  }
  if (closing_) connection_lost(nullptr);
}

void StreamTransport::set_write_buffer_limits(std::optional<std::size_t> high,
                                              std::optional<std::size_t> low) {
  std::size_t h = high ? *high : (low ? *low * 4 : kDefaultHighWater);
  std::size_t l = low ? *low : h / 4;
  if (h < l)
    throw ValueError("high (" + std::to_string(h) + ") must be >= low (" + std::to_string(l) + ")");
  high_water_ = h;
  low_water_ = l;
  maybe_pause();
  maybe_resume();
}

void StreamTransport::write_eof() {
  if (closing_ || eof_requested_) return;
  eof_requested_ = true;
  if (!send_busy_ && buffer_size() == 0) on_drained();
}

void StreamTransport::close() {
  if (closing_) return;
  closing_ = true;
  if (!send_busy_ && buffer_size() == 0) connection_lost(nullptr);
}

void StreamTransport::abort() {
  connection_lost(nullptr);
}

void StreamTransport::connection_lost(std::exception_ptr error) {
  if (closed_) return;
  closed_ = true;
  closing_ = true;
  error_ = error;
  // Closing through the backend cancels the in-flight recv (the reader wakes) and send
  // (send_continue then only drops the buffer it pointed into).
  sock_.close();
  pending_.clear();
  if (!send_busy_) {
    sending_.clear();
    sent_ = 0;
  }
  paused_ = false;
  drain_waiters_.wake_all();
  closed_waiters_.wake_all();
  if (std::shared_ptr<ReaderState> reader = reader_.lock()) {
    if (error) {
      reader->set_exception(error);
    } else {
      reader->feed_eof();
    }
  }
  if (tracker_) {
    std::shared_ptr<ConnectionTracker> tracker = std::move(tracker_);
    tracker->detach(*this);
  }
}

WriterState::~WriterState() {
  if (transport && !transport->is_closing()) {
    try {
      transport->close();
    } catch (...) {
    }
  }
}

// --- reading --------------------------------------------------------------------------

namespace {

// Waits until the reader has more bytes, EOF or an error: by receiving into the buffer when
// a transport is attached, else until feed_data/feed_eof/set_exception.
class DataWait : private IoAwaiter {
 public:
  DataWait(ReaderState& reader, const char* who) noexcept : reader_(&reader), who_(who) {}

  bool await_ready() {
    ReaderState& r = *reader_;
    if (r.waiting) {
      throw RuntimeError(std::string(who_) +
                         "() called while another coroutine is already waiting for incoming data");
    }
    StreamTransport* t = r.transport.get();
    if (t == nullptr) return false;  // fed by hand: wait for feed_data
    if (t->is_closed()) {
      // The connection is gone: its loss was recorded (EOF or error) by connection_lost.
      if (!r.eof && !r.exception) r.eof = true;
      return true;
    }
    op_.code = core::OpCode::recv;
    op_.handle = t->handle();
    op_.buffer = r.buffer.prepare(kRecvChunk);
    op_.length = r.buffer.writable();
    op_.flags = 0;
    started_ = true;
    r.receiving = true;
    return start_io();
  }

  void await_suspend(std::coroutine_handle<> handle) {
    reader_->waiting = true;
    if (!started_) {
      waiter_.suspend_on(reader_->waiters, handle);
    } else {
      suspend_io(handle);
    }
  }

  void await_resume() {
    ReaderState& r = *reader_;
    r.waiting = false;
    if (!started_) {
      waiter_.resume();  // throws CancelledError when cancelled
      if (r.exception) std::rethrow_exception(r.exception);
      return;
    }
    if (!r.receiving) {  // ready without a receive (the connection was gone)
      if (r.exception) std::rethrow_exception(r.exception);
      return;
    }
    r.receiving = false;
    const std::int64_t n = finish_io();  // CancelledError leaves the buffer as it was
    if (n > 0) {
      r.buffer.commit(static_cast<std::size_t>(n));
    } else if (n == 0) {
      r.eof = true;  // the peer's FIN; writing stays possible (half-close)
    } else if (r.transport->is_closed()) {
      // Closed under us: connection_lost already recorded EOF or the error.
      if (!r.eof && !r.exception) r.eof = true;
    } else {
      std::exception_ptr error = make_os_error(static_cast<int>(-n), "recv");
      r.exception = error;
      r.transport->connection_lost(error);
    }
    if (r.exception) std::rethrow_exception(r.exception);
  }

 private:
  ReaderState* reader_;
  const char* who_;
  IoWaiter waiter_;
  bool started_ = false;
};

void check_exception(const ReaderState& r) {
  if (r.exception) std::rethrow_exception(r.exception);
}

// asyncio's readuntil search: the separator's position, or nullopt to wait for more.
// Throws LimitOverrunError (leaving the buffer untouched) past the limit.
std::optional<std::size_t> find_separator(const ReaderState& r, std::string_view separator,
                                          std::size_t& offset) {
  const std::string_view view = r.buffer.view();
  if (view.size() >= offset + separator.size()) {
    const std::size_t found = view.find(separator, offset);
    if (found != std::string_view::npos) {
      if (found > r.limit) {
        throw LimitOverrunError("Separator is found, but chunk is longer than limit", found);
      }
      return found;
    }
    offset = view.size() + 1 - separator.size();
    if (offset > r.limit) {
      throw LimitOverrunError("Separator is not found, and chunk exceed the limit", offset);
    }
  }
  return std::nullopt;
}

Coro<std::string> do_read(std::shared_ptr<ReaderState> r, std::ptrdiff_t n) {
  check_exception(*r);
  if (n == 0) co_return std::string();
  if (n < 0) {
    while (!r->eof) co_await DataWait(*r, "read");
    co_return r->buffer.take(r->buffer.size());
  }
  if (r->buffer.empty() && !r->eof) co_await DataWait(*r, "read");
  co_return r->buffer.take(std::min(static_cast<std::size_t>(n), r->buffer.size()));
}

Coro<std::string> do_readexactly(std::shared_ptr<ReaderState> r, std::ptrdiff_t n) {
  if (n < 0) throw ValueError("readexactly size can not be less than zero");
  check_exception(*r);
  const auto wanted = static_cast<std::size_t>(n);
  while (r->buffer.size() < wanted) {
    if (r->eof) throw IncompleteReadError(r->buffer.take(r->buffer.size()), wanted);
    co_await DataWait(*r, "readexactly");
  }
  co_return r->buffer.take(wanted);
}

Coro<std::string> do_readuntil(std::shared_ptr<ReaderState> r, std::string separator) {
  if (separator.empty()) throw ValueError("Separator should be at least one-byte string");
  check_exception(*r);
  std::size_t offset = 0;
  for (;;) {
    if (std::optional<std::size_t> found = find_separator(*r, separator, offset)) {
      co_return r->buffer.take(*found + separator.size());
    }
    if (r->eof) throw IncompleteReadError(r->buffer.take(r->buffer.size()), 0);
    co_await DataWait(*r, "readuntil");
  }
}

Coro<std::string> do_readline(std::shared_ptr<ReaderState> r) {
  check_exception(*r);
  constexpr std::string_view kNewline = "\n";
  std::size_t offset = 0;
  for (;;) {
    std::optional<std::size_t> found;
    try {
      found = find_separator(*r, kNewline, offset);
    } catch (const LimitOverrunError& e) {
      // asyncio's readline: drop the over-long line (through its newline if it is there).
      if (r->buffer.view().substr(e.consumed()).starts_with(kNewline)) {
        r->buffer.consume(e.consumed() + kNewline.size());
      } else {
        r->buffer.clear();
      }
      throw ValueError(e.what());
    }
    if (found) co_return r->buffer.take(*found + kNewline.size());
    if (r->eof) co_return r->buffer.take(r->buffer.size());
    co_await DataWait(*r, "readline");
  }
}

}  // namespace

}  // namespace detail

// --- StreamReader ---------------------------------------------------------------------

StreamReader::StreamReader(std::size_t limit)
    : state_(std::make_shared<detail::ReaderState>(limit)) {
  if (limit == 0) throw ValueError("Limit cannot be <= 0");
}

Coro<std::string> StreamReader::read(std::ptrdiff_t n) {
  return detail::do_read(state_, n);
}
Coro<std::string> StreamReader::readline() {
  return detail::do_readline(state_);
}
Coro<std::string> StreamReader::readexactly(std::ptrdiff_t n) {
  return detail::do_readexactly(state_, n);
}
Coro<std::string> StreamReader::readuntil(std::string separator) {
  return detail::do_readuntil(state_, std::move(separator));
}

bool StreamReader::at_eof() const noexcept {
  return state_->eof && state_->buffer.empty();
}
void StreamReader::feed_data(std::string_view data) {
  state_->feed_data(data);
}
void StreamReader::feed_eof() {
  state_->feed_eof();
}
std::exception_ptr StreamReader::exception() const noexcept {
  return state_->exception;
}
void StreamReader::set_exception(std::exception_ptr error) {
  state_->set_exception(std::move(error));
}
std::size_t StreamReader::limit() const noexcept {
  return state_->limit;
}
std::string_view StreamReader::buffered() const noexcept {
  return state_->buffer.view();
}

// --- StreamWriter ---------------------------------------------------------------------

namespace {
detail::StreamTransport& transport_of(const std::shared_ptr<detail::WriterState>& state) {
  if (!state) throw RuntimeError("empty StreamWriter");
  return *state->transport;
}
}  // namespace

void StreamWriter::write(std::string_view data) {
  transport_of(state_).write(data);
}

void StreamWriter::writelines(std::initializer_list<std::string_view> lines) {
  for (std::string_view line : lines) write(line);
}

bool StreamWriter::can_write_eof() const noexcept {
  return true;
}
void StreamWriter::write_eof() {
  transport_of(state_).write_eof();
}
void StreamWriter::close() {
  transport_of(state_).close();
}
void StreamWriter::abort() {
  transport_of(state_).abort();
}
bool StreamWriter::is_closing() const noexcept {
  return state_ && state_->transport->is_closing();
}

std::any StreamWriter::get_extra_info(std::string_view name, std::any default_value) const {
  if (name == "peername") {
    if (auto a = peername()) return *a;
  } else if (name == "sockname") {
    if (auto a = sockname()) return *a;
  } else if (name == "socket") {
    if (fileno() != core::kInvalidHandle) return fileno();
  }
  return default_value;
}

std::optional<SocketAddress> StreamWriter::peername() const {
  const detail::StreamTransport& t = transport_of(state_);
  return t.peername();
}

std::optional<SocketAddress> StreamWriter::sockname() const {
  const detail::StreamTransport& t = transport_of(state_);
  return t.sockname();
}

NativeHandle StreamWriter::fileno() const noexcept {
  return state_ ? state_->transport->handle() : core::kInvalidHandle;
}

std::size_t StreamWriter::get_write_buffer_size() const noexcept {
  return state_ ? state_->transport->buffer_size() : 0;
}

void StreamWriter::set_write_buffer_limits(std::optional<std::size_t> high,
                                           std::optional<std::size_t> low) {
  transport_of(state_).set_write_buffer_limits(high, low);
}

std::pair<std::size_t, std::size_t> StreamWriter::get_write_buffer_limits() const noexcept {
  if (!state_) return {0, 0};
  return {state_->transport->low_water(), state_->transport->high_water()};
}

// --- drain / wait_closed ----------------------------------------------------------------

bool DrainAwaiter::await_ready() {
  detail::StreamTransport& t = transport_of(writer_);
  if (writer_->reader && writer_->reader->exception) return true;
  if (t.is_closed()) return true;
  return !t.paused();
}

void DrainAwaiter::await_suspend(std::coroutine_handle<> handle) {
  suspended_ = true;
  waiter_.suspend_on(writer_->transport->drain_waiters(), handle);
}

void DrainAwaiter::await_resume() {
  detail::StreamTransport& t = *writer_->transport;
  if (suspended_) {
    suspended_ = false;
    waiter_.resume();  // CancelledError: the queued bytes stay queued
    if (t.is_closed() && t.error()) std::rethrow_exception(t.error());
    return;
  }
  if (writer_->reader && writer_->reader->exception)
    std::rethrow_exception(writer_->reader->exception);
  if (t.is_closed()) {
    if (t.error()) std::rethrow_exception(t.error());
    throw ConnectionResetError(ECONNRESET, "Connection lost");
  }
}

bool WaitClosedAwaiter::await_ready() {
  return transport_of(writer_).is_closed();
}

void WaitClosedAwaiter::await_suspend(std::coroutine_handle<> handle) {
  suspended_ = true;
  waiter_.suspend_on(writer_->transport->closed_waiters(), handle);
}

void WaitClosedAwaiter::await_resume() {
  if (suspended_) {
    suspended_ = false;
    waiter_.resume();
  }
  if (std::exception_ptr error = writer_->transport->error()) std::rethrow_exception(error);
}

// --- opening streams ------------------------------------------------------------------

StreamPair open_stream(Socket sock, std::size_t limit) {
  return detail::make_stream(get_running_loop(), std::move(sock), limit, nullptr);
}

namespace detail {

StreamPair make_stream(EventLoop& loop, Socket sock, std::size_t limit,
                       std::shared_ptr<ConnectionTracker> tracker) {
  if (limit == 0) throw ValueError("Limit cannot be <= 0");
  auto transport = std::make_shared<StreamTransport>(loop, std::move(sock));
  if (tracker) {
    tracker->attach(*transport);
    transport->set_tracker(std::move(tracker));
  }
  auto reader = std::make_shared<ReaderState>(limit);
  reader->transport = transport;
  transport->set_reader(reader);
  auto writer = std::make_shared<WriterState>();
  writer->transport = std::move(transport);
  writer->reader = reader;
  return {StreamReader(std::move(reader)), StreamWriter(std::move(writer))};
}

}  // namespace detail

Coro<StreamPair> open_connection(std::string host, std::uint16_t port, std::size_t limit) {
  ConnectOptions options;
  options.limit = limit;
  return open_connection(std::move(host), port, std::move(options));
}

Coro<StreamPair> open_connection(std::string host, std::uint16_t port, ConnectOptions options) {
  const std::size_t limit = options.limit;
  Socket sock = co_await create_connection(std::move(host), port, std::move(options));
  co_return open_stream(std::move(sock), limit);
}

Coro<StreamPair> open_connection(Socket sock, std::size_t limit) {
  co_return open_stream(std::move(sock), limit);
}

Coro<StreamPair> open_unix_connection(std::string path, std::size_t limit) {
  Socket sock = Socket::create(AddressFamily::unix_domain);
  co_await sock_connect(sock, unix_address(path));
  co_return open_stream(std::move(sock), limit);
}

}  // namespace corio
