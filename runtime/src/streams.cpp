// StreamReader / StreamWriter over a socket: the reader's pull-side recv into its buffer,
// the writer's background sender with water marks, and connection loss. It must never move
// or free a buffer an in-flight recv/send points into.
#include "corio/streams.hpp"

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <unordered_set>

#include "corio/detail/loop_local.hpp"
#include "corio/event_loop.hpp"
#include "net_internal.hpp"
#include "separator_search.hpp"
#include "stream_state.hpp"

namespace corio {

namespace detail {

constexpr std::size_t kRecvChunk = 64 * 1024;

namespace {

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
  if (!send_busy_) {
    flush();
  } else {
    want_send_completion();  // the send in flight must end its wait: these bytes follow it
  }
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
    // Below the high-water mark nobody waits for this send (drain() returns at once): its
    // completion need not wake the loop. want_send_completion() takes that back.
    op_.lazy_completion = !paused_ && buffer_size() <= high_water_ && !closing_ && !eof_requested_;
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
  if (!paused_ && buffer_size() > high_water_) {
    paused_ = true;
    want_send_completion();  // a drain() will wait for it
  }
}

void StreamTransport::want_send_completion() noexcept {
  op_.lazy_completion = false;
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
  want_send_completion();  // the shutdown follows it
  if (!send_busy_ && buffer_size() == 0) on_drained();
}

void StreamTransport::close() {
  if (closing_) return;
  closing_ = true;
  want_send_completion();  // the close follows it
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

// Applies a receive's outcome to the reader (never inside the backend's dispatch: a
// connection error closes the transport). Shared by the coroutine reads and StreamRead.
void absorb_receive(ReaderState& r, std::int64_t n) {
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
}

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
    op_.code = core::OpCode::recv_stream;  // the transport owns the socket: read-ahead is safe
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
    absorb_receive(r, finish_io());  // CancelledError leaves the buffer as it was
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

// asyncio's readuntil search: the end of the first separator to end, or nullopt to wait for
// more. Throws LimitOverrunError (leaving the buffer untouched) past the limit.
template <class Separators>
std::optional<std::size_t> find_separator(const ReaderState& r, const Separators& separators,
                                          std::size_t& offset) {
  SeparatorMatch match;
  const Scan scan = scan_separators(r.buffer.view(), r.limit, separators, offset, match);
  switch (scan) {
    case Scan::found:
      return match.end;
    case Scan::found_past_limit:
    case Scan::past_limit:
      throw limit_overrun(scan, match.start);
    case Scan::need_more:
      break;
  }
  return std::nullopt;
}

constexpr std::array<std::string_view, 1> kLineEnd = {"\n"};  // readline's one separator

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

Coro<std::string> do_readuntil(std::shared_ptr<ReaderState> r,
                               std::vector<std::string> separators) {
  check_exception(*r);
  std::size_t offset = 0;
  for (;;) {
    if (std::optional<std::size_t> end = find_separator(*r, separators, offset)) {
      co_return r->buffer.take(*end);
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
      found = find_separator(*r, kLineEnd, offset);
    } catch (const LimitOverrunError& e) {
      // asyncio's readline: drop the over-long line (through its newline if it is there).
      if (r->buffer.view().substr(e.consumed()).starts_with(kNewline)) {
        r->buffer.consume(e.consumed() + kNewline.size());
      } else {
        r->buffer.clear();
      }
      throw ValueError(e.what());
    }
    if (found) co_return r->buffer.take(*found);
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

// --- StreamRead -----------------------------------------------------------------------
// The same steps as the do_* coroutines above (which remain a hand-fed reader's slow path),
// as a state machine: try_complete() answers from the buffer, start_receive() receives more.
// A receive that finishes in the backend's dispatch (after_recv) only commits the bytes and
// decides: either the answer is complete (settle() takes it, so no later reader can take
// those bytes first) and the coroutine is woken, or the next receive is started from the
// ready queue (continue_receive). Errors and EOF are applied in await_resume, outside any
// dispatch. Bytes received are always committed to the buffer before anything can throw.

namespace {
const char* read_name(StreamRead::Kind kind) noexcept {
  switch (kind) {
    case StreamRead::Kind::read:
      return "read";
    case StreamRead::Kind::readexactly:
      return "readexactly";
    case StreamRead::Kind::readuntil:
      return "readuntil";
    case StreamRead::Kind::readline:
      return "readline";
  }
  return "read";
}
}  // namespace

// readline's "\n", readuntil's one separator, or its several (validated by await_ready).
template <class F>
decltype(auto) StreamRead::with_separators(F&& f) const {
  if (kind_ == Kind::readline) return f(detail::kLineEnd);
  if (several_) return f(separators_);
  return f(std::array<std::string_view, 1>{separator_});
}

// true: result_ holds the answer (taken from the buffer); false: more bytes are needed.
// Raises as the asyncio method does.
bool StreamRead::try_complete() {
  detail::ReaderState& r = *state_;
  switch (kind_) {
    case Kind::read: {
      detail::check_exception(r);
      if (n_ == 0) break;
      if (n_ < 0) {
        if (!r.eof) return false;
        result_ = r.buffer.take(r.buffer.size());
        break;
      }
      if (r.buffer.empty() && !r.eof) return false;
      const std::size_t count = std::min(static_cast<std::size_t>(n_), r.buffer.size());
      if (into_.data() != nullptr) {
        // readinto: the count is kept in n_, which nothing else reads once done_ is set.
        std::memcpy(into_.data(), r.buffer.data(), count);
        r.buffer.consume(count);
        n_ = static_cast<std::ptrdiff_t>(count);
      } else {
        result_ = r.buffer.take(count);
      }
      break;
    }
    case Kind::readexactly: {
      if (n_ < 0) throw ValueError("readexactly size can not be less than zero");
      detail::check_exception(r);
      const auto wanted = static_cast<std::size_t>(n_);
      if (r.buffer.size() < wanted) {
        if (r.eof) throw IncompleteReadError(r.buffer.take(r.buffer.size()), wanted);
        return false;
      }
      result_ = r.buffer.take(wanted);
      break;
    }
    case Kind::readuntil: {
      if (!several_ && separator_.empty()) {
        throw ValueError("Separator should be at least one-byte string");
      }
      detail::check_exception(r);
      const std::optional<std::size_t> end = with_separators(
          [&](const auto& separators) { return detail::find_separator(r, separators, offset_); });
      if (end) {
        result_ = r.buffer.take(*end);
        break;
      }
      if (r.eof) throw IncompleteReadError(r.buffer.take(r.buffer.size()), 0);
      return false;
    }
    case Kind::readline: {
      detail::check_exception(r);
      constexpr std::string_view kNewline = "\n";
      std::optional<std::size_t> found;
      try {
        found = detail::find_separator(r, detail::kLineEnd, offset_);
      } catch (const LimitOverrunError& e) {
        // asyncio's readline: drop the over-long line (through its newline if it is there).
        if (r.buffer.view().substr(e.consumed()).starts_with(kNewline)) {
          r.buffer.consume(e.consumed() + kNewline.size());
        } else {
          r.buffer.clear();
        }
        throw ValueError(e.what());
      }
      if (found) {
        result_ = r.buffer.take(*found);
      } else if (r.eof) {
        result_ = r.buffer.take(r.buffer.size());
      } else {
        return false;
      }
      break;
    }
  }
  done_ = true;
  return true;
}

// Whether try_complete() would ask for more bytes (rather than answer or raise).
bool StreamRead::needs_more() const noexcept {
  const detail::ReaderState& r = *state_;
  if (r.exception || r.eof) return false;
  switch (kind_) {
    case Kind::read:
      return n_ != 0 && (n_ < 0 || r.buffer.empty());
    case Kind::readexactly:
      return n_ >= 0 && r.buffer.size() < static_cast<std::size_t>(n_);
    case Kind::readuntil:
      if (!several_ && separator_.empty()) return false;
      [[fallthrough]];
    case Kind::readline:
      return with_separators([&](const auto& separators) {
        std::size_t offset = offset_;
        detail::SeparatorMatch match;
        return detail::scan_separators(r.buffer.view(), r.limit, separators, offset, match) ==
               detail::Scan::need_more;
      });
  }
  return false;
}

// try_complete() outside the coroutine: an exception is kept for await_resume.
bool StreamRead::settle() noexcept {
  if (needs_more()) return false;
  try {
    try_complete();
  } catch (...) {
    error_ = std::current_exception();
  }
  done_ = true;
  return true;
}

// Receives once into the reader's buffer. true: finished at once (bytes, EOF or the error
// are in the reader); false: in flight, after_recv continues.
bool StreamRead::start_receive() {
  detail::ReaderState& r = *state_;
  detail::StreamTransport& t = *r.transport;
  absorbed_ = false;
  if (t.is_closed()) {
    // The connection is gone: its loss was recorded (EOF or error) by connection_lost.
    if (!r.eof && !r.exception) r.eof = true;
    absorbed_ = true;
    return true;
  }
  op_.code = core::OpCode::recv_stream;
  op_.handle = t.handle();
  op_.buffer = r.buffer.prepare(detail::kRecvChunk);
  op_.length = r.buffer.writable();
  op_.flags = 0;
  after_ = &after_recv;
  if (!start_io()) {
    r.receiving = true;  // the buffer must not move now
    return false;
  }
  // Completed at once. Not finish_io(): from continue_receive the coroutine is still
  // suspended, and only await_resume may end that.
  const std::int64_t n = op_.result;
  absorb(op_.state == core::OpState::cancelled || n == -ECANCELED ? -EBADF : n);
  absorbed_ = true;
  return true;
}

void StreamRead::absorb(std::int64_t n) {
  detail::absorb_receive(*state_, n);
}

bool StreamRead::await_ready() {
  // As a coroutine object, a read is awaited once.
  if (awaited_) throw RuntimeError("cannot reuse already awaited coroutine");
  awaited_ = true;
  if (several_) separators_ = detail::sorted_separators(std::move(separators_));
  if (try_complete()) return true;
  detail::ReaderState& r = *state_;
  if (!r.transport) {
    // Fed by hand: wait in a coroutine for feed_data / feed_eof / set_exception.
    switch (kind_) {
      case Kind::read:
        slow_ = detail::do_read(state_, n_);
        break;
      case Kind::readexactly:
        slow_ = detail::do_readexactly(state_, n_);
        break;
      case Kind::readuntil:
        slow_ = detail::do_readuntil(
            state_, several_ ? std::move(separators_) : std::vector{std::move(separator_)});
        break;
      case Kind::readline:
        slow_ = detail::do_readline(state_);
        break;
    }
    return false;
  }
  if (r.waiting) {
    throw RuntimeError(std::string(read_name(kind_)) +
                       "() called while another coroutine is already waiting for incoming data");
  }
  while (start_receive()) {
    if (try_complete()) return true;
  }
  return false;
}

void StreamRead::suspend(std::coroutine_handle<> handle) {
  state_->waiting = true;
  suspend_io(handle);  // may cancel the receive at once (a cancellation was pending)
}

void StreamRead::after_recv(IoAwaiter* base) {
  // Inside the backend's dispatch: commit and decide, start nothing.
  auto* self = static_cast<StreamRead*>(base);
  const std::int64_t n = self->op_.result;
  if (self->op_.state == core::OpState::completed && n > 0) {
    detail::ReaderState& r = *self->state_;
    r.receiving = false;
    r.buffer.commit(static_cast<std::size_t>(n));
    self->absorbed_ = true;
    if (!self->settle()) {
      if (!self->cancel_requested_) {
        self->post_continuation(&continue_receive);
        return;
      }
      self->cancelled_ = true;  // stopped by the cancellation; the bytes stay buffered
    }
  }
  self->suspension_.wake();
}

void StreamRead::continue_receive(void* arg) {
  auto* self = static_cast<StreamRead*>(static_cast<IoAwaiter*>(arg));
  if (!self->take_continuation()) return;  // cancelled meanwhile: the bytes stay buffered
  try {
    for (;;) {
      if (!self->start_receive()) return;  // in flight: after_recv goes on
      if (self->settle()) break;
    }
  } catch (...) {
    self->error_ = std::current_exception();
  }
  self->suspension_.wake();
}

std::string StreamRead::await_resume() {
  if (slow_) return slow_.operator co_await().await_resume();
  if (!suspended_) return std::move(result_);  // answered in await_ready
  detail::ReaderState& r = *state_;
  r.waiting = false;
  r.receiving = false;
  const bool absorbed = absorbed_;
  const std::int64_t n = finish_io();  // CancelledError: what was received stays buffered
  if (error_) std::rethrow_exception(error_);
  if (done_) return std::move(result_);
  if (!absorbed) absorb(n);
  if (!try_complete()) throw RuntimeError("StreamReader: woken before the read could complete");
  return std::move(result_);
}

StreamReadInto::StreamReadInto(std::shared_ptr<detail::ReaderState> state,
                               std::span<char> into) noexcept
    : read_(std::move(state), StreamRead::Kind::read, static_cast<std::ptrdiff_t>(into.size()),
            {}) {
  read_.into_ = into;
}

std::size_t StreamReadInto::await_resume() {
  // A hand-fed reader's slow path answers with a string: copied here.
  const std::string bytes = read_.await_resume();
  if (!bytes.empty()) {
    std::memcpy(read_.into_.data(), bytes.data(), bytes.size());
    return bytes.size();
  }
  // Answered by try_complete: the count it copied is in n_ (0 for an empty span or EOF).
  return read_.done_ ? static_cast<std::size_t>(read_.n_) : 0;
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
