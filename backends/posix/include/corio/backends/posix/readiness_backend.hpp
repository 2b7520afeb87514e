// What the POSIX readiness backends (epoll, kqueue) share, so each of them is only its way of
// watching descriptors and waiting. An operation is attempted at once; on EAGAIN it joins its
// descriptor's FIFO for that direction, and the FIFO is retried, in order, when the backend
// reports an edge for that direction. Per-descriptor state lives in a vector indexed by fd, so
// finding it costs no hashing.
//
// A backend derives from ReadinessBackend<Itself> (no virtual call: the base reaches it
// through a static cast) and supplies
//   void watch(int fd, HandleState& state, bool reader);   // throws corio::OSError if fd
//                                                         // cannot be watched at all
//   void unwatch(int fd, HandleState& state, bool closing); // fd is about to be closed
//                                                         // (closing) or let go (release)
//   static constexpr bool kLevelWatch;                    // offers watch_level:
//   void watch_level(int fd, HandleState& state, bool reader, bool on);
//       // level-triggered interest in one direction turned on or off (off in both: not
//       // registered at all); throws corio::OSError only when turning one on
// and calls recheck_waits() as its wait() begins (forcing a zero timeout when that completed
// anything) and on_edge() for what its wait reported.
//
// A descriptor is watched one of two ways, chosen when it is first registered and kept until
// it is closed, let go, or its number comes back from accept() (HandleState::trigger).
// Edge-triggered (watch) when an operation with a syscall registers it: the retry happens on the
// edge, and a short stream read proves the queue empty. Level-triggered (watch_level, on backends
// that offer it) when a wait op registers it, as add_reader / add_writer watchers, WaitReady and
// the subprocess pidfd do: the owner does its own syscalls and a watcher re-arms after every
// callback. Under an edge, each re-arm would need recheck_waits() to ask the kernel whether the
// owner drained the descriptor; under a level the next wait answers that, so re-arming costs no
// syscall. A level descriptor is watched in a direction from when something waits in it until a
// report finds nothing waiting there, or the kernel would report it again at every wait. A level
// descriptor later used by recv or send stays level (correct, at the cost of a change of
// registration when a report finds nothing waiting). This code must never call into the
// runtime: it only moves Operations and calls on_complete.
#pragma once

#include <poll.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "corio/core/errors.hpp"
#include "corio/core/operation.hpp"

namespace corio::backends::posix {

// One attempt at op's syscall on a non-blocking descriptor; -EAGAIN when it would block.
std::int64_t attempt(core::Operation& op);
// Fills each entry's revents with what is true of its descriptor right now, with poll()
// calls that never block, at most `slice` entries each. poll() refuses more entries than
// RLIMIT_NOFILE (a descriptor can be here once per direction), so a refusal halves `slice`
// for this call and the next. Hang-ups and errors show: an operation would not block on them.
void poll_now(pollfd* fds, std::size_t count, std::size_t& slice);
bool is_stream_socket(int fd);
void close_descriptor(int fd);

constexpr bool is_reader(core::OpCode code) {
  using core::OpCode;
  switch (code) {
    case OpCode::wait_readable:
    case OpCode::accept:
    case OpCode::recv:
    case OpCode::recv_stream:
    case OpCode::recv_from:
    case OpCode::recv_msg:
    case OpCode::read_at:
      return true;
    default:
      return false;
  }
}

constexpr bool is_stream_recv(core::OpCode code) {
  return code == core::OpCode::recv || code == core::OpCode::recv_stream;
}

constexpr bool is_wait(core::OpCode code) {
  return code == core::OpCode::wait_readable || code == core::OpCode::wait_writable;
}

struct OpQueue {
  core::Operation* head = nullptr;
  core::Operation* tail = nullptr;
  bool empty() const { return head == nullptr; }
};

struct HandleState {
  OpQueue readers;
  OpQueue writers;
  // Which directions the backend has asked the kernel to report (its own bit meanings).
  std::uint8_t watched = 0;
  // Set by an edge, cleared by EAGAIN; on a level descriptor nothing reads them.
  bool readable = false;
  bool writable = false;
  // A short recv on a stream socket emptied its receive queue (as libuv also assumes), so
  // the next recv waits for an edge instead of paying for a recv that says EAGAIN. Cleared
  // by the next readable edge. Never set once the peer hung up: an end of file still to be
  // read is no data, so a short read does not show it, and it raises no new edge.
  bool drained = false;
  bool hung_up = false;  // the kernel reported a hang-up or an error
  // Directions (kRecheckReader, kRecheckWriter) where a wait op is queued behind a readiness
  // flag that may be stale, to be checked before the next wait (recheck_waits).
  std::uint8_t recheck = 0;
  // How the descriptor is registered (see the top of this file); kept across a dropped or
  // refused registration, so the next wait registers it the same way again.
  enum class Trigger : std::uint8_t { none, edge, level } trigger = Trigger::none;
  enum class Kind : std::uint8_t { unknown, stream_socket, other } kind = Kind::unknown;
};

inline constexpr std::uint8_t kRecheckReader = 1;
inline constexpr std::uint8_t kRecheckWriter = 2;

template <class Backend>
class ReadinessBackend {
 public:
  static constexpr bool kNativeFileIo = false;  // a file is always "ready"; its read blocks

  bool start(core::Operation& op);
  void cancel(core::Operation& op);
  std::size_t in_flight() const { return in_flight_; }
  // For tests and benchmarks: how many times the backend changed what the kernel watches
  // (epoll_ctl calls, kevent changes), and how many poll() batches recheck_waits() made.
  std::uint64_t registration_changes() const { return registration_changes_; }
  std::uint64_t recheck_polls() const { return recheck_polls_; }
  void close(core::NativeHandle handle);
  // Nothing waits on `handle` any more and its owner, not corio, will close it (asyncio's
  // transports over a foreign loop do): drop its kernel registration and what is known of
  // it, so a file that later gets the same number starts clean. Does nothing while an
  // operation waits on it.
  void release(core::NativeHandle handle);

 protected:
  ReadinessBackend() = default;
  ~ReadinessBackend() = default;

  HandleState& state_for(int fd);
  void count_registration_change() { ++registration_changes_; }
  // The kernel reported fd readable (or at end of file: hung_up) or writable: retry the
  // operations waiting in that direction.
  void on_edge(int fd, bool reader, bool hung_up);
  // The kernel refused to watch fd in this direction: the operations waiting for it end
  // with that error instead of waiting forever.
  void fail_waiting(int fd, bool reader, int error);
  // Answers the wait ops queued behind a readiness flag since the last wait, all with one
  // poll(): those whose descriptor is ready complete, the rest wait for the next edge.
  // Returns how many operations completed.
  std::size_t recheck_waits();

 private:
  Backend& backend() { return static_cast<Backend&>(*this); }
  void enqueue(OpQueue& queue, core::Operation& op);
  void unlink(OpQueue& queue, core::Operation& op);
  void forget(int fd);
  // Watches fd in the direction `op` waits in, edge- or level-triggered as fd was first
  // registered (a wait op on a descriptor never registered makes it level-triggered).
  void watch_for(int fd, HandleState& state, const core::Operation& op, bool reader);
  // Whether a wait op on this descriptor relies on the level (nothing to recheck).
  static constexpr bool level_wait(const HandleState& state) {
    if constexpr (Backend::kLevelWatch) return state.trigger != HandleState::Trigger::edge;
    return false;
  }
  void note_recv(int fd, HandleState& state, const core::Operation& op, std::int64_t result);
  void drain(int fd, OpQueue& queue, bool& ready);
  void finish(core::Operation& op, std::int64_t result);

  std::size_t in_flight_ = 0;
  std::vector<HandleState> fds_;
  // Descriptors to recheck before the next wait (one entry per direction) and the batch being
  // answered now: two vectors, so an op started from a completion joins the next batch
  // without disturbing this one, and neither allocates once grown.
  std::vector<pollfd> rechecks_;
  std::vector<pollfd> rechecking_;
  std::size_t poll_slice_ = 1024;
  std::uint64_t registration_changes_ = 0;
  std::uint64_t recheck_polls_ = 0;
};

template <class Backend>
HandleState& ReadinessBackend<Backend>::state_for(int fd) {
  if (static_cast<std::size_t>(fd) >= fds_.size())
    fds_.resize(static_cast<std::size_t>(fd) * 2 + 16);
  return fds_[static_cast<std::size_t>(fd)];
}

template <class Backend>
void ReadinessBackend<Backend>::enqueue(OpQueue& queue, core::Operation& op) {
  op.next = nullptr;
  op.prev = queue.tail;
  (queue.tail ? queue.tail->next : queue.head) = &op;
  queue.tail = &op;
  op.state = core::OpState::submitted;
  ++in_flight_;
}

template <class Backend>
void ReadinessBackend<Backend>::unlink(OpQueue& queue, core::Operation& op) {
  (op.prev ? op.prev->next : queue.head) = op.next;
  (op.next ? op.next->prev : queue.tail) = op.prev;
  op.next = op.prev = nullptr;
  --in_flight_;
}

// An accepted descriptor is new: whatever we knew about an older file with that number
// (closed behind our back) no longer applies. Operations still waiting on that old file end
// with EBADF: dropped while still linked, they would never complete, and cancelling one
// would unlink it from the new file's queue.
template <class Backend>
void ReadinessBackend<Backend>::forget(int fd) {
  if (static_cast<std::size_t>(fd) >= fds_.size()) return;
  fail_waiting(fd, /*reader=*/true, EBADF);
  fail_waiting(fd, /*reader=*/false, EBADF);
  // The old file is gone: nothing still queued for the kernel under its number may reach
  // the new one.
  backend().unwatch(fd, fds_[static_cast<std::size_t>(fd)], /*closing=*/true);
  fds_[static_cast<std::size_t>(fd)] = {};
}

// Remembers that a recv on a stream socket came back short: the kernel copies all it has
// (tcp and unix stream sockets, non-blocking, no signal can cut it short), so the queue was
// empty at that moment and any byte arriving later raises an edge. Datagram sockets return
// one datagram per call, so a short read says nothing about what is queued: never for them.
template <class Backend>
void ReadinessBackend<Backend>::note_recv(int fd, HandleState& state, const core::Operation& op,
                                          std::int64_t result) {
  const bool stream_op = op.code == core::OpCode::recv_stream;
  if (!(stream_op || (op.code == core::OpCode::recv && op.flags == 0)) || result <= 0 ||
      state.hung_up || static_cast<std::size_t>(result) >= op.length)
    return;
  if (stream_op) {
    state.kind = HandleState::Kind::stream_socket;  // its owner says so
  } else if (state.kind == HandleState::Kind::unknown) {
    state.kind = is_stream_socket(fd) ? HandleState::Kind::stream_socket : HandleState::Kind::other;
  }
  if (state.kind != HandleState::Kind::stream_socket) return;
  // An edge only reaches us once the fd is watched; watching it now makes the kernel report
  // data that arrived since the read. A level descriptor needs nothing now: it is watched
  // when the next recv queues, and the kernel then reports data already there.
  if (state.trigger != HandleState::Trigger::level) {
    try {
      backend().watch(fd, state, /*reader=*/true);
    } catch (const corio::OSError&) {
      return;
    }
    state.trigger = HandleState::Trigger::edge;
  }
  state.drained = true;
}

template <class Backend>
void ReadinessBackend<Backend>::finish(core::Operation& op, std::int64_t result) {
  if (op.code == core::OpCode::accept && result >= 0) forget(static_cast<int>(result));
  op.result = result;
  op.state = (result == -ECANCELED && op.state == core::OpState::cancel_requested)
                 ? core::OpState::cancelled
                 : core::OpState::completed;
  op.on_complete(&op);
}

template <class Backend>
bool ReadinessBackend<Backend>::start(core::Operation& op) {
  const int fd = static_cast<int>(op.handle);
  if (fd < 0) {
    op.result = -EBADF;
    op.state = core::OpState::completed;
    return true;
  }
  HandleState& state = state_for(fd);
  const bool reader = is_reader(op.code);
  OpQueue& queue = reader ? state.readers : state.writers;
  bool& ready = reader ? state.readable : state.writable;
  if (queue.empty()) {
    if (is_wait(op.code) && level_wait(state)) {
      // Level-triggered: the next wait reports the descriptor if it is ready now.
    } else if (is_wait(op.code)) {
      // The flag only says an edge arrived; the owner may have drained the handle with its
      // own syscalls since (add_reader users do, and re-arm after every callback). Asking
      // the kernel here would cost a poll() per watcher per callback: the op waits instead,
      // and recheck_waits() asks for all of them at once before the next wait.
      const std::uint8_t bit = reader ? kRecheckReader : kRecheckWriter;
      if (ready && (state.recheck & bit) == 0) {
        state.recheck |= bit;
        rechecks_.push_back({fd, static_cast<short>(reader ? POLLIN : POLLOUT), 0});
      }
    } else if (!(state.drained && is_stream_recv(op.code))) {
      const std::int64_t r = attempt(op);
      if (r != -EAGAIN) {
        if (is_stream_recv(op.code)) note_recv(fd, state, op, r);
        if (op.code == core::OpCode::accept && r >= 0) forget(static_cast<int>(r));
        op.result = r;
        op.state = core::OpState::completed;
        return true;
      }
      ready = false;
    }
  }
  try {
    watch_for(fd, state, op, reader);
  } catch (const corio::OSError& e) {
    // Not pollable (a regular file, say): answer now rather than wait forever.
    op.result = -e.error_number();
    op.state = core::OpState::completed;
    return true;
  }
  enqueue(queue, op);
  return false;
}

template <class Backend>
void ReadinessBackend<Backend>::watch_for(int fd, HandleState& state, const core::Operation& op,
                                          bool reader) {
  using Trigger = HandleState::Trigger;
  if constexpr (Backend::kLevelWatch) {
    if (state.trigger == Trigger::level || (state.trigger == Trigger::none && is_wait(op.code))) {
      backend().watch_level(fd, state, reader, /*on=*/true);
      state.trigger = Trigger::level;
      return;
    }
  }
  backend().watch(fd, state, reader);
  state.trigger = Trigger::edge;
}

template <class Backend>
void ReadinessBackend<Backend>::cancel(core::Operation& op) {
  if (op.state != core::OpState::submitted) return;
  HandleState& state = state_for(static_cast<int>(op.handle));
  unlink(is_reader(op.code) ? state.readers : state.writers, op);
  op.state = core::OpState::cancel_requested;
  finish(op, -ECANCELED);
}

template <class Backend>
void ReadinessBackend<Backend>::drain(int fd, OpQueue& queue, bool& ready) {
  ready = true;
  while (core::Operation* op = queue.head) {
    std::int64_t r = 0;
    if (!is_wait(op->code)) {
      r = attempt(*op);
      if (r == -EAGAIN) {
        ready = false;
        return;
      }
      if (is_stream_recv(op->code)) note_recv(fd, state_for(fd), *op, r);
    }
    unlink(queue, *op);
    finish(*op, r);
  }
}

template <class Backend>
void ReadinessBackend<Backend>::on_edge(int fd, bool reader, bool hung_up) {
  HandleState& state = state_for(fd);
  if (hung_up) state.hung_up = true;
  if constexpr (Backend::kLevelWatch) {
    if (state.trigger == HandleState::Trigger::level &&
        (reader ? state.readers : state.writers).empty()) {
      // Nothing waits this way any more (a watcher removed, or not re-armed): stop the
      // reports. Only this direction: the other may have a watcher that is about to re-arm.
      if (reader) state.drained = false;
      backend().watch_level(fd, state, reader, /*on=*/false);
      return;
    }
  }
  if (reader) {
    state.drained = false;
    drain(fd, state.readers, state.readable);
  } else {
    drain(fd, state.writers, state.writable);
  }
}

template <class Backend>
void ReadinessBackend<Backend>::fail_waiting(int fd, bool reader, int error) {
  HandleState& state = state_for(fd);
  OpQueue& queue = reader ? state.readers : state.writers;
  while (core::Operation* op = queue.head) {
    unlink(queue, *op);
    finish(*op, -static_cast<std::int64_t>(error));
  }
}

template <class Backend>
std::size_t ReadinessBackend<Backend>::recheck_waits() {
  if (rechecks_.empty() && rechecking_.empty()) return 0;
  if (rechecking_.empty()) {
    rechecking_.swap(rechecks_);
  } else {
    // A completion threw out of the last batch: what it had not reached is still here, its
    // bits still set, and is answered now with the rest (entries already answered have
    // their bits cleared and are skipped).
    rechecking_.insert(rechecking_.end(), rechecks_.begin(), rechecks_.end());
    rechecks_.clear();
  }
  poll_now(rechecking_.data(), rechecking_.size(), poll_slice_);
  ++recheck_polls_;
  const std::size_t before = in_flight_;
  for (const pollfd& entry : rechecking_) {
    HandleState& state = state_for(entry.fd);
    const bool reader = entry.events == POLLIN;
    const std::uint8_t bit = reader ? kRecheckReader : kRecheckWriter;
    // Cleared: the descriptor was closed or forgotten since, or an earlier entry for the same
    // file and direction has been answered.
    if ((state.recheck & bit) == 0) continue;
    state.recheck &= static_cast<std::uint8_t>(~bit);
    bool& ready = reader ? state.readable : state.writable;
    if (entry.revents == 0) {
      ready = false;  // drained by its owner: the next edge will say when
      continue;
    }
    if (reader) state.drained = false;
    drain(entry.fd, reader ? state.readers : state.writers, ready);
  }
  rechecking_.clear();
  return before - in_flight_;
}

template <class Backend>
void ReadinessBackend<Backend>::release(core::NativeHandle handle) {
  const int fd = static_cast<int>(handle);
  if (fd < 0 || static_cast<std::size_t>(fd) >= fds_.size()) return;
  HandleState& state = fds_[static_cast<std::size_t>(fd)];
  if (!state.readers.empty() || !state.writers.empty()) return;
  backend().unwatch(fd, state, /*closing=*/false);
  state = {};
}

template <class Backend>
void ReadinessBackend<Backend>::close(core::NativeHandle handle) {
  const int fd = static_cast<int>(handle);
  if (fd < 0) return;
  if (static_cast<std::size_t>(fd) < fds_.size()) {
    HandleState& state = fds_[static_cast<std::size_t>(fd)];
    for (OpQueue* queue : {&state.readers, &state.writers}) {
      while (core::Operation* op = queue->head) {
        unlink(*queue, *op);
        op->state = core::OpState::cancel_requested;
        finish(*op, -ECANCELED);
      }
    }
    backend().unwatch(fd, state, /*closing=*/true);
    state = {};
  }
  close_descriptor(fd);
}

}  // namespace corio::backends::posix
