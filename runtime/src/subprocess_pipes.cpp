// The child's stdout/stderr reader and stdin writer (PipeReader / PipeWriter), on every
// platform: buffering, asyncio's read methods and the drain water marks over the backend's
// read_at / write ops. What a platform's pipe does differently comes through the pipe_os
// hooks (subprocess_common.hpp). It must never call the OS directly, and no operation's
// buffer may move while the operation is in flight.
#include <algorithm>
#include <array>
#include <cerrno>
#include <string_view>
#include <utility>
#include <vector>

#include "corio/core/errors.hpp"
#include "separator_search.hpp"
#include "subprocess_common.hpp"

namespace corio {
namespace detail {

// ---------------------------------------------------------------------------------------
// The reader.

PipeReaderState::PipeReaderState(EventLoop& loop, std::shared_ptr<LoopResources> resources,
                                 core::NativeHandle pipe, std::size_t limit)
    : LoopResource(loop, std::move(resources)), pipe_(pipe), limit_(limit) {
  op_.owner = this;
}

PipeReaderState::~PipeReaderState() {
  detach_from_loop();
  close_loop_handle(loop_, pipe_);
}

void PipeReaderState::loop_closing() {
  eof_ = true;
  // Cancels a read in flight. Its completion only records; on a completion backend the op
  // and its buffer outlive whatever the kernel still writes (the keep-alive stays).
  close_loop_handle(loop_, pipe_);
  loop_ = nullptr;
}

std::string PipeReaderState::take(std::size_t n) {
  n = std::min(n, available());
  std::string out;
  if (pos_ == 0 && n == buffer_.size()) {
    out = std::move(buffer_);
    buffer_.clear();
  } else {
    out.assign(buffer_, pos_, n);
    pos_ += n;
  }
  if (pos_ == buffer_.size()) {
    buffer_.clear();
    pos_ = 0;
  }
  return out;
}

bool PipeReaderState::Fill::await_ready() {
  if (reader_.waiter_ != nullptr) {
    throw RuntimeError(
        "read() called while another coroutine is already waiting for incoming data");
  }
  return reader_.start_read();
}

void PipeReaderState::Fill::await_suspend(std::coroutine_handle<> handle) {
  suspension_.begin(handle);
  reader_.waiter_ = this;
  suspension_.arm({&cancel_leaf, this});
}

bool PipeReaderState::Fill::cancel_leaf(void* self) {
  auto* fill = static_cast<Fill*>(self);
  PipeReaderState& reader = fill->reader_;
  if (reader.waiter_ != fill) return false;  // the read completed: wake-up queued
  reader.waiter_ = nullptr;
  fill->cancelled_ = true;
  fill->suspension_.wake();
  // A readiness backend has read nothing yet; a completion backend may lose the race, and
  // bytes that arrive anyway wait in the buffer for the next read: a cancelled read loses
  // nothing.
  if (reader.op_.in_flight() && reader.loop_ != nullptr) reader.loop_->backend().cancel(reader.op_);
  return true;
}

bool PipeReaderState::start_read() {
  if (eof_ || error_ || pipe_ == core::kInvalidHandle || loop_ == nullptr) return true;
  if (op_.in_flight()) return false;  // a cancelled read is still finishing
  if (!chunk_) chunk_ = std::make_unique<char[]>(kPipeReadChunk);
  op_.code = core::OpCode::read_at;
  op_.offset = ~std::uint64_t{0};  // a pipe has no offset
  op_.handle = pipe_;
  op_.buffer = chunk_.get();
  op_.length = kPipeReadChunk;
  op_.on_complete = &on_complete;
  op_.state = core::OpState::idle;
  op_.result = 0;
  if (loop_->backend().start(op_)) {
    record(op_.result);
    return true;
  }
  keepalive_ = std::static_pointer_cast<PipeReaderState>(shared_from_this());
  return false;
}

void PipeReaderState::record(std::int64_t result) {
  if (result > 0) {
    if (pos_ > 0 && pos_ >= buffer_.size() / 2) {
      buffer_.erase(0, pos_);
      pos_ = 0;
    }
    buffer_.append(chunk_.get(), static_cast<std::size_t>(result));
  } else if (result == 0) {
    if (pipe_os::empty_read_is_eof(pipe_)) eof_ = true;
  } else if (result != -ECANCELED && result != -EAGAIN && result != -EINTR) {
    error_ = os_error(static_cast<int>(-result), "read from subprocess pipe");
  }
}

void PipeReaderState::on_complete(core::Operation* operation) {
  PipeReaderState* reader = static_cast<Op*>(operation)->owner;
  std::shared_ptr<PipeReaderState> self = std::move(reader->keepalive_);  // released on return
  reader->record(operation->result);
  if (Fill* waiter = std::exchange(reader->waiter_, nullptr)) waiter->suspension_.wake();
}

// ---------------------------------------------------------------------------------------
// The writer.

PipeSink::~PipeSink() {
  detach_from_loop();
  close_loop_handle(loop_, pipe_);
}

void PipeSink::loop_closing() {
  // Forget the loop first: a readiness backend completes the cancelled write inside close(),
  // and on_complete must not schedule on a closing loop.
  EventLoop* loop = std::exchange(loop_, nullptr);
  close_loop_handle(loop, pipe_);  // cancels a write in flight
  closed_ = closing_ = true;
}

void PipeSink::write(std::string_view data) {
  // asyncio's pipe transport ignores writes once it is closing or the pipe is lost.
  if (data.empty() || closing_ || closed_ || loop_ == nullptr) return;
  if (!busy_ && buffer_size() == 0) {
    sending_.assign(data);
    sent_ = 0;
    flush();
  } else {
    pending_.append(data);
  }
  if (!paused_ && buffer_size() > kPipeHighWater) paused_ = true;
}

void PipeSink::close() {
  if (closing_ || closed_) return;
  closing_ = true;
  if (!busy_ && buffer_size() == 0) finish_close(nullptr);
}

void PipeSink::flush() {
  while (!closed_) {
    if (sent_ == sending_.size()) {
      sending_.clear();
      sent_ = 0;
      if (pending_.empty()) break;
      std::swap(sending_, pending_);
    }
    pipe_os::prepare_write(op_, pipe_, sending_.data() + sent_, sending_.size() - sent_);
    op_.flags = 0;
    op_.on_complete = &on_complete;
    op_.state = core::OpState::idle;
    op_.result = 0;
    if (!loop_->backend().start(op_)) {
      busy_ = true;
      keepalive_ = std::static_pointer_cast<PipeSink>(shared_from_this());
      return;
    }
    if (!advance(op_.result)) return;
  }
  if (closing_ && !closed_) finish_close(nullptr);
}

bool PipeSink::advance(std::int64_t result) {
  if (result >= 0) {
    sent_ += static_cast<std::size_t>(result);
    if (paused_ && buffer_size() <= kPipeLowWater) {
      paused_ = false;
      drain_waiters_.wake_all();
    }
    return true;
  }
  if (result == -ECANCELED) return false;
  const int error = pipe_os::write_error(result);
  if (error == 0) return true;
  // The child closed its end: the pipe is lost, queued bytes are dropped.
  sending_.clear();
  pending_.clear();
  sent_ = 0;
  finish_close(os_error(error, "write to subprocess stdin"));
  return false;
}

void PipeSink::on_complete(core::Operation* operation) {
  PipeSink* sink = static_cast<Op*>(operation)->owner;
  std::shared_ptr<PipeSink> self = std::move(sink->keepalive_);
  if (sink->loop_ == nullptr) {  // the loop is closing and closed the pipe under us
    sink->busy_ = false;
    return;
  }
  sink->loop_->call_soon([self = std::move(self)] {
    self->busy_ = false;
    if (self->loop_ != nullptr && self->advance(self->op_.result)) self->flush();
  });
}

void PipeSink::finish_close(std::exception_ptr error) {
  if (closed_) return;
  closed_ = closing_ = true;
  error_ = std::move(error);
  close_loop_handle(loop_, pipe_);
  paused_ = false;
  drain_waiters_.wake_all();
  closed_waiters_.wake_all();
}

// ---------------------------------------------------------------------------------------
// The coroutines behind the public methods. Each holds its state by shared_ptr, so a
// handle dropped while they run does not pull the state from under them.

Coro<std::string> read_pipe(std::shared_ptr<PipeReaderState> r, std::ptrdiff_t n) {
  r->check_error();
  if (n == 0) co_return std::string();
  if (n < 0) {
    while (!r->eof()) {
      co_await PipeReaderState::Fill(*r);
      r->check_error();
    }
    co_return r->take(r->available());
  }
  while (r->available() == 0 && !r->eof()) {
    co_await PipeReaderState::Fill(*r);
    r->check_error();
  }
  co_return r->take(static_cast<std::size_t>(n));
}

Coro<void> drain_pipe(std::shared_ptr<PipeSink> sink) {
  // As asyncio's FlowControlMixin: once the pipe is gone, drain() says so.
  if (sink->closed()) throw ConnectionResetError(ECONNRESET, "Connection lost");
  while (sink->paused()) {
    co_await WaitLeaf(sink->drain_waiters());
    if (sink->closed()) {
      // A drain that was waiting gets what ended the pipe (BrokenPipeError when the child
      // closed its end), nothing if we closed it: asyncio's connection_lost(exc) hands its
      // waiters exactly that.
      if (sink->error()) std::rethrow_exception(sink->error());
      co_return;
    }
  }
}

namespace {

Coro<std::string> readexactly_impl(std::shared_ptr<PipeReaderState> r, std::size_t n) {
  r->check_error();
  while (r->available() < n) {
    if (r->eof()) {
      std::string partial = r->take(r->available());
      throw IncompleteReadError(std::move(partial), n);
    }
    co_await PipeReaderState::Fill(*r);
    r->check_error();
  }
  co_return r->take(n);
}

// The offset just past the separator that ends first (`separators` sorted shortest first,
// none empty), reading more as needed. Raises as asyncio's readuntil. `separators` is taken
// by reference: the caller keeps it in its own frame and awaits this at once.
template <class Separators>
Coro<std::size_t> find_separator(std::shared_ptr<PipeReaderState> r, const Separators& separators) {
  std::size_t offset = 0;  // bytes before it cannot start a match
  for (;;) {
    r->check_error();
    SeparatorMatch match;
    const Scan scan = scan_separators(r->view(), r->limit(), separators, offset, match);
    if (scan == Scan::found) co_return match.end;
    if (scan != Scan::need_more) throw limit_overrun(scan, match.start);
    if (r->eof()) {
      std::string partial = r->take(r->available());
      throw IncompleteReadError(std::move(partial), 0);
    }
    co_await PipeReaderState::Fill(*r);
  }
}

constexpr std::array<std::string_view, 1> kLineEnd = {"\n"};  // readline's one separator

Coro<std::string> readuntil_impl(std::shared_ptr<PipeReaderState> r,
                                 std::vector<std::string> separators) {
  separators = sorted_separators(std::move(separators));
  const std::size_t end = co_await find_separator(r, separators);
  co_return r->take(end);
}

Coro<std::string> readline_impl(std::shared_ptr<PipeReaderState> r) {
  std::size_t end = 0;
  std::string partial;
  bool incomplete = false;
  std::optional<std::string> overrun;
  try {
    end = co_await find_separator(r, kLineEnd);
  } catch (IncompleteReadError& e) {
    partial = e.partial();
    incomplete = true;
  } catch (const LimitOverrunError& e) {
    // asyncio drops the over-long line (through its newline when it is buffered).
    const std::string_view data = r->view();
    if (data.substr(e.consumed()).starts_with("\n")) {
      r->discard(e.consumed() + 1);
    } else {
      r->discard(data.size());
    }
    overrun = e.what();
  }
  if (overrun) throw ValueError(*overrun);
  if (incomplete) co_return partial;
  co_return r->take(end);
}

Coro<void> wait_closed_impl(std::shared_ptr<PipeSink> sink) {
  while (!sink->closed()) co_await WaitLeaf(sink->closed_waiters());
  if (std::exception_ptr error = sink->error()) std::rethrow_exception(error);
}

}  // namespace
}  // namespace detail

// ---------------------------------------------------------------------------------------
// Public methods.

Coro<std::string> PipeReader::read(std::ptrdiff_t n) {
  return detail::read_pipe(state_, n);
}
Coro<std::string> PipeReader::readline() {
  return detail::readline_impl(state_);
}
Coro<std::string> PipeReader::readexactly(std::size_t n) {
  return detail::readexactly_impl(state_, n);
}
Coro<std::string> PipeReader::readuntil(std::string separator) {
  return detail::readuntil_impl(state_, {std::move(separator)});
}
Coro<std::string> PipeReader::readuntil(std::initializer_list<std::string_view> separators) {
  return detail::readuntil_impl(state_, {separators.begin(), separators.end()});
}
Coro<std::string> PipeReader::readuntil_several(std::vector<std::string> separators) {
  return detail::readuntil_impl(state_, std::move(separators));
}
bool PipeReader::at_eof() const noexcept {
  return state_->eof() && state_->available() == 0;
}

void PipeWriter::write(std::string_view data) {
  state_->sink->write(data);
}
void PipeWriter::writelines(std::initializer_list<std::string_view> lines) {
  for (std::string_view line : lines) state_->sink->write(line);
}
Coro<void> PipeWriter::drain() {
  return detail::drain_pipe(state_->sink);
}
void PipeWriter::close() {
  state_->sink->close();
}
bool PipeWriter::is_closing() const noexcept {
  return state_->sink->is_closing();
}
Coro<void> PipeWriter::wait_closed() {
  return detail::wait_closed_impl(state_->sink);
}
std::size_t PipeWriter::get_write_buffer_size() const noexcept {
  return state_->sink->buffer_size();
}

}  // namespace corio
