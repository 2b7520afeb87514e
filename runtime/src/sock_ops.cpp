// The sock_* awaiters and add_reader/add_writer on top of repeated wait operations.
// A callback never runs inside the backend's dispatch, and a watch is never freed while its
// wait operation is in flight.
#include "corio/sock_ops.hpp"

#include <absl/synchronization/mutex.h>

#include <cerrno>
#include <memory>
#include <unordered_map>
#include <unordered_set>

#include "corio/event_loop.hpp"
#include "net_internal.hpp"

namespace corio {

using core::OpCode;

namespace {

[[noreturn]] void raise_result(std::int64_t result, const char* what) {
  throw_os_error(static_cast<int>(-result), what);
}

}  // namespace

// --- sock_accept -------------------------------------------------------------------

bool SockAccept::await_ready() {
  loop_ = &get_running_loop();
  listener_->attach_loop(*loop_);
  op_.code = OpCode::accept;
  op_.handle = listener_->fileno();
  op_.address = &peer_;
  return start_io();
}

Accepted SockAccept::await_resume() {
  const std::int64_t r = finish_io();
  if (r < 0) raise_result(r, "accept");
  Socket conn(static_cast<NativeHandle>(r));
  conn.attach_loop(*loop_);
  return {std::move(conn), peer_};
}

// --- sock_connect ------------------------------------------------------------------

bool SockConnect::await_ready() {
  loop_ = &get_running_loop();
  sock_->attach_loop(*loop_);
  op_.code = OpCode::connect;
  op_.handle = sock_->fileno();
  op_.address = &address_;
  return start_io();
}

void SockConnect::await_resume() {
  const std::int64_t r = finish_io();
  if (r < 0) {
    throw_os_error(static_cast<int>(-r), "connect(" + format_address(address_) + ")");
  }
}

// --- sock_recv / sock_recv_into ----------------------------------------------------

// Asking for 0 bytes answers b"" at once, as Python's socket.recv(0) does without calling
// the kernel: recv(fd, buf, 0) would wait for data, and on a datagram socket discard one.
bool SockRecv::await_ready() {
  loop_ = &get_running_loop();
  sock_->attach_loop(*loop_);
  if (nbytes_ == 0 && sock_->is_open()) return true;
  buffer_.resize(nbytes_);
  op_.code = OpCode::recv;
  op_.handle = sock_->fileno();
  op_.buffer = buffer_.data();
  op_.length = buffer_.size();
  return start_io();
}

std::string SockRecv::await_resume() {
  const std::int64_t r = finish_io();
  if (r < 0) raise_result(r, "recv");
  buffer_.resize(static_cast<std::size_t>(r));
  return std::move(buffer_);
}

bool SockRecvInto::await_ready() {
  loop_ = &get_running_loop();
  sock_->attach_loop(*loop_);
  if (buffer_.empty() && sock_->is_open()) return true;  // 0, as sock_recv(0)
  op_.code = OpCode::recv;
  op_.handle = sock_->fileno();
  op_.buffer = buffer_.data();
  op_.length = buffer_.size();
  return start_io();
}

std::size_t SockRecvInto::await_resume() {
  const std::int64_t r = finish_io();
  if (r < 0) raise_result(r, "recv_into");
  return static_cast<std::size_t>(r);
}

// --- sock_recvfrom / sock_recvfrom_into --------------------------------------------

bool SockRecvFrom::await_ready() {
  loop_ = &get_running_loop();
  sock_->attach_loop(*loop_);
  buffer_.resize(bufsize_);
  op_.code = OpCode::recv_from;
  op_.handle = sock_->fileno();
  op_.buffer = buffer_.data();
  op_.length = buffer_.size();
  op_.address = &from_;
  return start_io();
}

ReceivedFrom SockRecvFrom::await_resume() {
  const std::int64_t r = finish_io();
  if (r < 0) raise_result(r, "recvfrom");
  buffer_.resize(static_cast<std::size_t>(r));
  return {std::move(buffer_), from_};
}

bool SockRecvFromInto::await_ready() {
  loop_ = &get_running_loop();
  sock_->attach_loop(*loop_);
  op_.code = OpCode::recv_from;
  op_.handle = sock_->fileno();
  op_.buffer = buffer_.data();
  op_.length = buffer_.size();
  op_.address = &from_;
  return start_io();
}

ReceivedIntoFrom SockRecvFromInto::await_resume() {
  const std::int64_t r = finish_io();
  if (r < 0) raise_result(r, "recvfrom_into");
  return {static_cast<std::size_t>(r), from_};
}

// --- sock_send / sock_sendall / sock_sendto ----------------------------------------

bool SockSend::await_ready() {
  loop_ = &get_running_loop();
  sock_->attach_loop(*loop_);
  op_.code = OpCode::send;
  op_.handle = sock_->fileno();
  op_.buffer = const_cast<char*>(data_.data());
  op_.length = data_.size();
  return start_io();
}

std::size_t SockSend::await_resume() {
  const std::int64_t r = finish_io();
  if (r < 0) raise_result(r, "send");
  return static_cast<std::size_t>(r);
}

bool SockSendAll::await_ready() {
  loop_ = &get_running_loop();
  sock_->attach_loop(*loop_);
  after_ = &after_send;
  return pump();
}

bool SockSendAll::pump() {
  while (sent_ < data_.size()) {
    op_.code = OpCode::send;
    op_.handle = sock_->fileno();
    op_.buffer = const_cast<char*>(data_.data() + sent_);
    op_.length = data_.size() - sent_;
    if (!start_io()) return false;  // in flight: after_send continues
    if (op_.result < 0) {
      error_ = static_cast<int>(-op_.result);
      return true;
    }
    sent_ += static_cast<std::size_t>(op_.result);
  }
  return true;
}

void SockSendAll::after_send(IoAwaiter* base) {
  auto* self = static_cast<SockSendAll*>(base);
  const bool progressed = self->op_.state == core::OpState::completed && self->op_.result > 0;
  if (progressed) self->sent_ += static_cast<std::size_t>(self->op_.result);
  if (progressed && self->sent_ < self->data_.size() && !self->cancel_requested_) {
    // Start the next send from the ready queue, not from inside the backend's dispatch.
    self->post_continuation(&resume_pump);
    return;
  }
  if (self->op_.state == core::OpState::completed && self->op_.result < 0) {
    self->error_ = static_cast<int>(-self->op_.result);
  }
  if (progressed && self->sent_ < self->data_.size()) self->cancelled_ = true;  // stopped by cancel
  self->suspension_.wake();
}

void SockSendAll::resume_pump(void* arg) {
  auto* self = static_cast<SockSendAll*>(static_cast<IoAwaiter*>(arg));
  if (!self->take_continuation()) return;
  if (self->pump()) self->suspension_.wake();
}

void SockSendAll::await_resume() {
  const bool was_suspended = suspended_;
  const std::int64_t r = finish_io();
  if (error_ != 0) throw_os_error(error_, "sendall");
  if (was_suspended && r < 0 && sent_ < data_.size()) raise_result(r, "sendall");
}

bool SockSendTo::await_ready() {
  loop_ = &get_running_loop();
  sock_->attach_loop(*loop_);
  op_.code = OpCode::send_to;
  op_.handle = sock_->fileno();
  op_.buffer = const_cast<char*>(data_.data());
  op_.length = data_.size();
  op_.address = &address_;
  return start_io();
}

std::size_t SockSendTo::await_resume() {
  const std::int64_t r = finish_io();
  if (r < 0) throw_os_error(static_cast<int>(-r), "sendto(" + format_address(address_) + ")");
  return static_cast<std::size_t>(r);
}

// --- wait_readable / wait_writable -------------------------------------------------

bool WaitReady::await_ready() {
  op_.code = writable_ ? OpCode::wait_writable : OpCode::wait_readable;
  op_.handle = handle_;
  return start_io();
}

void WaitReady::await_resume() {
  const std::int64_t r = finish_io();
  if (r < 0) raise_result(r, writable_ ? "wait_writable" : "wait_readable");
}

WaitReady wait_readable(Socket& sock) {
  sock.attach_loop(get_running_loop());
  return WaitReady(sock.fileno(), false);
}

WaitReady wait_writable(Socket& sock) {
  sock.attach_loop(get_running_loop());
  return WaitReady(sock.fileno(), true);
}

// --- add_reader / add_writer -------------------------------------------------------
// Each registration is a heap object holding a wait Operation. The op completes inside the
// backend's dispatch; the callback runs later from the ready queue, and only then is the
// wait started again, so a callback that leaves the handle ready is called again after the
// next poll of the backend (level-triggered: every iteration that polls, which is every
// iteration with nothing else ready or with poll_every_iteration), and one that drains it is
// not called again until new data.

namespace {

struct FdWatch {
  enum class Stage : std::uint8_t { waiting, queued, running };
  struct Op : core::Operation {
    FdWatch* owner = nullptr;
  };

  Op op;
  Callback callback;
  EventLoop* loop = nullptr;
  struct LoopWatches* registry = nullptr;
  Stage stage = Stage::waiting;
  bool writer = false;
  bool removed = false;
};

struct LoopWatches {
  std::unordered_map<NativeHandle, FdWatch*> readers;
  std::unordered_map<NativeHandle, FdWatch*> writers;
  std::unordered_set<FdWatch*> live;
};

struct WatchRegistry {
  absl::Mutex mutex;
  std::unordered_map<EventLoop*, LoopWatches*> loops ABSL_GUARDED_BY(mutex);
};

WatchRegistry& watch_registry() {
  static WatchRegistry* instance = new WatchRegistry;
  return *instance;
}

void ignore_completion(core::Operation*) {}

LoopWatches* find_watches(EventLoop& loop) {
  WatchRegistry& r = watch_registry();
  absl::MutexLock lock(&r.mutex);
  auto it = r.loops.find(&loop);
  return it == r.loops.end() ? nullptr : it->second;
}

LoopWatches& watches_for(EventLoop& loop) {
  if (LoopWatches* found = find_watches(loop)) return *found;
  loop.check_open();
  auto* created = new LoopWatches;
  {
    WatchRegistry& r = watch_registry();
    absl::MutexLock lock(&r.mutex);
    r.loops.emplace(&loop, created);
  }
  loop.at_close([&loop, created] {
    {
      WatchRegistry& r = watch_registry();
      absl::MutexLock lock(&r.mutex);
      r.loops.erase(&loop);
    }
    // The loop will never run again: queued callbacks are dropped with their watches.
    for (FdWatch* w : created->live) {
      if (w->op.in_flight()) {
        w->op.on_complete = &ignore_completion;
        loop.backend().cancel(w->op);
      }
      delete w;
    }
    delete created;
  });
  return *created;
}

void destroy(FdWatch* w) {
  w->registry->live.erase(w);
  delete w;
}

void run_watch(void* arg);

void start_wait(FdWatch* w) {
  w->stage = FdWatch::Stage::waiting;
  w->op.state = core::OpState::idle;
  if (w->loop->backend().start(w->op)) {
    w->stage = FdWatch::Stage::queued;
    w->loop->post({&run_watch, w});
  }
}

void watch_completed(core::Operation* op) {
  FdWatch* w = static_cast<FdWatch::Op*>(op)->owner;
  w->stage = FdWatch::Stage::queued;
  w->loop->post({&run_watch, w});
}

void run_watch(void* arg) {
  auto* w = static_cast<FdWatch*>(arg);
  if (w->removed) {
    destroy(w);
    return;
  }
  const bool failed = w->op.result < 0;
  w->stage = FdWatch::Stage::running;
  try {
    w->callback();
  } catch (...) {
    w->loop->call_exception_handler({"Exception in callback", std::current_exception(), {}});
  }
  if (w->removed) {
    destroy(w);
    return;
  }
  if (failed) {
    // The handle cannot be waited on (closed, not pollable): asyncio would have raised
    // from add_reader; drop the registration rather than spin.
    auto& map = w->writer ? w->registry->writers : w->registry->readers;
    auto it = map.find(w->op.handle);
    if (it != map.end() && it->second == w) map.erase(it);
    destroy(w);
    return;
  }
  start_wait(w);
}

void add_watch(EventLoop& loop, NativeHandle handle, Callback callback, bool writer) {
  LoopWatches& registry = watches_for(loop);
  auto& map = writer ? registry.writers : registry.readers;
  if (auto it = map.find(handle); it != map.end()) {
    FdWatch* old = it->second;
    map.erase(it);
    old->removed = true;
    if (old->stage == FdWatch::Stage::waiting) loop.backend().cancel(old->op);
  }
  auto* w = new FdWatch;
  w->op.owner = w;
  w->op.on_complete = &watch_completed;
  w->op.code = writer ? OpCode::wait_writable : OpCode::wait_readable;
  w->op.handle = handle;
  w->callback = std::move(callback);
  w->loop = &loop;
  w->registry = &registry;
  w->writer = writer;
  registry.live.insert(w);
  map.emplace(handle, w);
  start_wait(w);
}

// Readiness backends keep a kernel registration per descriptor (completion backends keep
// none between operations): only they have release().
template <class Backend>
void release_if_idle(Backend& backend, NativeHandle handle) {
  if constexpr (requires { backend.release(handle); }) backend.release(handle);
}

bool remove_watch(EventLoop& loop, NativeHandle handle, bool writer) {
  LoopWatches* registry = find_watches(loop);
  if (registry == nullptr) return false;
  auto& map = writer ? registry->writers : registry->readers;
  auto it = map.find(handle);
  if (it == map.end()) return false;
  FdWatch* w = it->second;
  map.erase(it);
  w->removed = true;
  // A waiting op is cancelled; its completion queues run_watch, which frees it. A queued or
  // running watch is freed by run_watch.
  if (w->stage == FdWatch::Stage::waiting) loop.backend().cancel(w->op);
  // With no watcher left, a readiness backend lets go of the descriptor: whoever owns it may
  // close it next, without telling corio, and the number come back as another file.
  if (!registry->readers.contains(handle) && !registry->writers.contains(handle))
    release_if_idle(loop.backend(), handle);
  return true;
}

}  // namespace

void add_reader(EventLoop& loop, NativeHandle handle, Callback callback) {
  add_watch(loop, handle, std::move(callback), false);
}
bool remove_reader(EventLoop& loop, NativeHandle handle) {
  return remove_watch(loop, handle, false);
}
void add_writer(EventLoop& loop, NativeHandle handle, Callback callback) {
  add_watch(loop, handle, std::move(callback), true);
}
bool remove_writer(EventLoop& loop, NativeHandle handle) {
  return remove_watch(loop, handle, true);
}
void add_reader(NativeHandle handle, Callback callback) {
  add_reader(get_running_loop(), handle, std::move(callback));
}
bool remove_reader(NativeHandle handle) {
  return remove_reader(get_running_loop(), handle);
}
void add_writer(NativeHandle handle, Callback callback) {
  add_writer(get_running_loop(), handle, std::move(callback));
}
bool remove_writer(NativeHandle handle) {
  return remove_writer(get_running_loop(), handle);
}

}  // namespace corio
