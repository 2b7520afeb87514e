// kqueue backend: how descriptors are watched (per direction, edge-triggered or, for those
// only watchers use, level-triggered; registered through the next wait's change list) and
// how the loop waits. Attempting and retrying
// operations is ReadinessBackend's.
#include "corio/backends/kqueue_backend.hpp"

#include <sys/types.h>
// sys/types.h first: the BSD header uses its types without including it.
#include <sys/event.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <ctime>
#include <vector>

#include "corio/core/errors.hpp"

namespace corio::backends {

namespace {

constexpr std::size_t kMaxEvents = 256;
constexpr uintptr_t kWakeIdent = 0;  // EVFILT_USER has its own ident space: no fd clashes
constexpr std::uint8_t kWatchRead = 1;
constexpr std::uint8_t kWatchWrite = 2;
// macOS rejects a timeout of 10^8 s or more (EINVAL, before it applies any change); a timer
// that far off is waited for in slices, since the loop works its timeout out again anyway.
constexpr time_t kLongestWaitSeconds = 10'000'000;

std::uint8_t watch_bit(bool reader) {
  return reader ? kWatchRead : kWatchWrite;
}

// The udata of a deletion: the file may be gone by the time the kernel applies it (closed by
// its owner after release(), its number perhaps reused), so its error is no news (though it still
// ends that wait early: kevent() returns at once with an error entry).
char deletion_marker;
void* const kDeletion = &deletion_marker;

}  // namespace

struct KqueueBackend::KernelLists {
  // Registrations not yet handed to the kernel. It only grows past its first size when more
  // than kMaxEvents descriptors start waiting between two waits.
  std::vector<struct kevent> changes;
  // Room for every change's possible error as well as the events: kevent() reports a failed
  // change in the event list when there is room, and fails the whole call when there is not.
  std::vector<struct kevent> events;
};

KqueueBackend::KqueueBackend() : lists_(std::make_unique<KernelLists>()) {
  kq_ = ::kqueue();
  if (kq_ < 0) throw_os_error(errno, "kqueue");
  struct kevent wake_event;
  EV_SET(&wake_event, kWakeIdent, EVFILT_USER, EV_ADD | EV_CLEAR, 0, 0, nullptr);
  if (::kevent(kq_, &wake_event, 1, nullptr, 0, nullptr) < 0) {
    const int e = errno;
    ::close(kq_);
    throw_os_error(e, "kevent(EVFILT_USER)");
  }
  lists_->changes.reserve(kMaxEvents);
  lists_->events.resize(kMaxEvents);
}

KqueueBackend::~KqueueBackend() {
  ::close(kq_);
}

// Registering costs no syscall here: the change rides on the next wait. If the kernel then
// refuses it, wait() fails the operations waiting in that direction with its error.
void KqueueBackend::watch(int fd, posix::HandleState& state, bool reader) {
  const std::uint8_t bit = watch_bit(reader);
  if (state.watched & bit) return;
  struct kevent change;
  EV_SET(&change, static_cast<uintptr_t>(fd), reader ? EVFILT_READ : EVFILT_WRITE,
         EV_ADD | EV_CLEAR, 0, 0, nullptr);
  lists_->changes.push_back(change);
  count_registration_change();
  state.watched |= bit;
}

// Level-triggered (no EV_CLEAR): a filter is added when something starts waiting in its
// direction and deleted when a report finds nothing waiting there.
void KqueueBackend::watch_level(int fd, posix::HandleState& state, bool reader, bool on) {
  const std::uint8_t bit = watch_bit(reader);
  if (!on && (state.watched & bit) == 0) {
    // Reported in a direction we believe unwatched (a failed kevent() call left us unsure
    // what it registered): delete the filter anyway, or it would be reported at every wait.
    drop_filter(fd, reader);
    return;
  }
  if (on == ((state.watched & bit) != 0)) return;
  if (on) {
    struct kevent change;
    EV_SET(&change, static_cast<uintptr_t>(fd), reader ? EVFILT_READ : EVFILT_WRITE, EV_ADD, 0, 0,
           nullptr);
    lists_->changes.push_back(change);
    count_registration_change();
    state.watched |= bit;
  } else {
    drop_filter(fd, reader);
    state.watched &= static_cast<std::uint8_t>(~bit);
  }
}

void KqueueBackend::drop_filter(int fd, bool reader) {
  struct kevent change;
  EV_SET(&change, static_cast<uintptr_t>(fd), reader ? EVFILT_READ : EVFILT_WRITE, EV_DELETE, 0, 0,
         kDeletion);
  lists_->changes.push_back(change);
  count_registration_change();
}

// close() removes a descriptor's registrations in the kernel; only those still queued here
// must go, or the next wait would register whatever file reuses the number. A descriptor let
// go but left open keeps its filters unless they are deleted, and a later registration of
// the other kind (EV_CLEAR or not) would find them and keep their mode.
void KqueueBackend::unwatch(int fd, posix::HandleState& state, bool closing) {
  if (!closing) {
    // Deletions queue behind whatever is queued for fd (an addition, an earlier deletion
    // from narrowing a level descriptor), so the kernel ends with nothing registered.
    for (const bool reader : {true, false}) {
      if (state.watched & watch_bit(reader)) drop_filter(fd, reader);
    }
    return;
  }
  // Everything queued goes, deletions too: a change the kernel refuses makes kevent() return
  // at once with the error instead of waiting, so a stale one would cost a wasted wait.
  std::erase_if(lists_->changes, [fd](const struct kevent& change) {
    return change.ident == static_cast<uintptr_t>(fd);
  });
}

std::size_t KqueueBackend::wait(core::Nanos timeout) {
  const std::size_t rechecked = recheck_waits();
  if (rechecked > 0) timeout = 0;  // they are this wait's news: collect the rest, don't sleep
  std::vector<struct kevent>& changes = lists_->changes;
  std::vector<struct kevent>& events = lists_->events;
  if (events.size() < changes.size()) events.resize(changes.size());
  timespec ts{};
  const timespec* wait_for = &ts;
  if (timeout >= core::kNoDeadline) {
    wait_for = nullptr;
  } else if (timeout > 0) {
    ts.tv_sec = static_cast<time_t>(timeout / core::kNanosPerSecond);
    ts.tv_nsec = static_cast<long>(timeout % core::kNanosPerSecond);
    if (ts.tv_sec >= kLongestWaitSeconds) ts = {kLongestWaitSeconds, 0};
  }
  const int n = ::kevent(kq_, changes.data(), static_cast<int>(changes.size()), events.data(),
                         static_cast<int>(events.size()), wait_for);
  // The changes were applied before the kernel waited, even when the wait was interrupted.
  // Those made while dispatching below go to the next wait.
  const int error = errno;
  if (n < 0 && error != EINTR) {
    // Nothing says which changes the kernel took: forget them all, so the next operation to
    // wait in each of those directions registers again rather than waiting unregistered.
    for (const struct kevent& change : changes) {
      posix::HandleState& state = state_for(static_cast<int>(change.ident));
      state.watched &= static_cast<std::uint8_t>(~watch_bit(change.filter == EVFILT_READ));
    }
    changes.clear();
    throw_os_error(error, "kevent");
  }
  changes.clear();
  if (n < 0) return rechecked;  // EINTR
  const std::size_t before = in_flight();
  for (int i = 0; i < n; ++i) {
    const struct kevent& event = events[static_cast<std::size_t>(i)];
    if (event.filter == EVFILT_USER) continue;  // a wake-up: its only job was to end the wait
    const int fd = static_cast<int>(event.ident);
    const bool reader = event.filter == EVFILT_READ;
    if (event.flags & EV_ERROR) {
      if (event.data == 0 || event.udata == kDeletion) continue;
      // Not registered after all: the next operation to wait this way registers again.
      posix::HandleState& state = state_for(fd);
      state.watched &= static_cast<std::uint8_t>(~watch_bit(reader));
      if (!reader && event.data == EPIPE) {
        // FreeBSD refuses a write filter on a pipe whose reader is gone. epoll calls that
        // writable (a write would not block: it fails), and so does asyncio's add_writer:
        // the operations retry, and a write gets its EPIPE from the write itself.
        on_edge(fd, /*reader=*/false, /*hung_up=*/true);
      } else {
        fail_waiting(fd, reader, static_cast<int>(event.data));
      }
      continue;
    }
    on_edge(fd, reader, (event.flags & EV_EOF) != 0);
  }
  return rechecked + before - in_flight();
}

void KqueueBackend::wake() noexcept {
  struct kevent trigger;
  EV_SET(&trigger, kWakeIdent, EVFILT_USER, 0, NOTE_TRIGGER, 0, nullptr);
  ::kevent(kq_, &trigger, 1, nullptr, 0, nullptr);
}

}  // namespace corio::backends
