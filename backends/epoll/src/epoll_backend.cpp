// epoll backend: how descriptors are watched (once, both directions, edge-triggered; or
// level-triggered in the directions something waits in) and how the loop waits. Attempting and
// retrying operations is ReadinessBackend's.
#include "corio/backends/epoll_backend.hpp"

#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <ctime>

#include "corio/core/errors.hpp"

namespace corio::backends {

namespace {

constexpr int kMaxEvents = 256;
constexpr std::uint64_t kWakeToken = ~std::uint64_t{0};
// HandleState::watched: edge-triggered in both directions, or level-triggered in these.
constexpr std::uint8_t kRegistered = 1;
constexpr std::uint8_t kLevelIn = 2;
constexpr std::uint8_t kLevelOut = 4;

}  // namespace

EpollBackend::EpollBackend() {
  epoll_fd_ = ::epoll_create1(EPOLL_CLOEXEC);
  if (epoll_fd_ < 0) throw_os_error(errno, "epoll_create1");
  wake_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (wake_fd_ < 0) {
    const int e = errno;
    ::close(epoll_fd_);
    throw_os_error(e, "eventfd");
  }
  epoll_event ev{};
  ev.events = EPOLLIN | EPOLLET;
  ev.data.u64 = kWakeToken;
  if (::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, wake_fd_, &ev) < 0) {
    const int e = errno;
    ::close(wake_fd_);
    ::close(epoll_fd_);
    throw_os_error(e, "epoll_ctl(eventfd)");
  }
  events_ = new epoll_event[kMaxEvents];
}

EpollBackend::~EpollBackend() {
  delete[] static_cast<epoll_event*>(events_);
  ::close(wake_fd_);
  ::close(epoll_fd_);
}

// Both directions at once: one epoll_ctl per descriptor for its whole life.
void EpollBackend::watch(int fd, posix::HandleState& state, bool /*reader*/) {
  if (state.watched == kRegistered) return;
  epoll_event ev{};
  ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
  ev.data.u64 = static_cast<std::uint64_t>(fd);
  count_registration_change();
  if (::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &ev) < 0) {
    if (errno != EEXIST) throw_os_error(errno, "epoll_ctl(ADD)");
  }
  state.watched = kRegistered;
}

// One epoll_ctl per change of the directions watched, and none while they stay the same: a
// watcher re-armed from its callback is back before the next wait and changes nothing.
void EpollBackend::watch_level(int fd, posix::HandleState& state, bool reader, bool on) {
  const std::uint8_t bit = reader ? kLevelIn : kLevelOut;
  const std::uint8_t want =
      on ? (state.watched | bit) : (state.watched & static_cast<std::uint8_t>(~bit));
  if (want == state.watched) return;
  count_registration_change();
  if (want == 0) {
    // Nothing waits: out of the set, or a hang-up (reported whatever the interest) would end
    // every wait.
    ::epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, fd, nullptr);
    state.watched = 0;
    return;
  }
  epoll_event ev{};
  ev.events =
      ((want & kLevelIn) ? EPOLLIN | EPOLLRDHUP : 0u) | ((want & kLevelOut) ? EPOLLOUT : 0u);
  ev.data.u64 = static_cast<std::uint64_t>(fd);
  int r = ::epoll_ctl(epoll_fd_, state.watched == 0 ? EPOLL_CTL_ADD : EPOLL_CTL_MOD, fd, &ev);
  if (r < 0 && (errno == EEXIST || errno == ENOENT)) {
    // The set and our record disagree (a file closed and reopened behind our back).
    r = ::epoll_ctl(epoll_fd_, errno == EEXIST ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, fd, &ev);
  }
  if (r < 0) {
    if (on) throw_os_error(errno, "epoll_ctl");
    // Turning a direction off for a file that is gone: nothing is left to report. Called
    // from wait(), this must not throw.
    state.watched = 0;
    return;
  }
  state.watched = want;
}

// A descriptor shared with another process (inherited by a child) stays in the epoll set
// after our close(), so it is taken out explicitly, closing or not.
void EpollBackend::unwatch(int fd, posix::HandleState& state, bool /*closing*/) {
  if (state.watched != 0) ::epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, fd, nullptr);
}

std::size_t EpollBackend::wait(core::Nanos timeout) {
  const std::size_t rechecked = recheck_waits();
  if (rechecked > 0) timeout = 0;  // they are this wait's news: collect the rest, don't sleep
  auto* events = static_cast<epoll_event*>(events_);
  int n;
  if (timeout == 0) {
    n = ::epoll_wait(epoll_fd_, events, kMaxEvents, 0);
  } else if (timeout >= core::kNoDeadline) {
    n = ::epoll_wait(epoll_fd_, events, kMaxEvents, -1);
  } else {
    n = -1;
    if (have_pwait2_) {
      timespec ts{static_cast<time_t>(timeout / core::kNanosPerSecond),
                  static_cast<long>(timeout % core::kNanosPerSecond)};
      n = static_cast<int>(
          ::syscall(SYS_epoll_pwait2, epoll_fd_, events, kMaxEvents, &ts, nullptr, 0));
      if (n < 0 && errno == ENOSYS) have_pwait2_ = false;
    }
    if (!have_pwait2_) {
      // Round up to whole milliseconds: waking late is allowed, waking early is not useful.
      const core::Nanos ms = (timeout + 999'999) / 1'000'000;
      n = ::epoll_wait(epoll_fd_, events, kMaxEvents,
                       ms > INT_MAX ? INT_MAX : static_cast<int>(ms));
    }
  }
  if (n < 0) {
    if (errno == EINTR) return rechecked;
    throw_os_error(errno, "epoll_wait");
  }
  const std::size_t before = in_flight();
  for (int i = 0; i < n; ++i) {
    const std::uint64_t token = events[i].data.u64;
    if (token == kWakeToken) {
      std::uint64_t drained;
      [[maybe_unused]] ssize_t r = ::read(wake_fd_, &drained, sizeof drained);
      continue;
    }
    const int fd = static_cast<int>(token);
    const std::uint32_t e = events[i].events;
    // Level-triggered and, as we believe, out of the set (an epoll_ctl that failed left us
    // unsure): taken out again after dispatch, or it would be reported at every wait.
    const posix::HandleState& reported = state_for(fd);
    const bool stale =
        reported.trigger == posix::HandleState::Trigger::level && reported.watched == 0;
    const bool hung_up = (e & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) != 0;
    if (e & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) on_edge(fd, /*reader=*/true, hung_up);
    if (e & (EPOLLOUT | EPOLLHUP | EPOLLERR)) on_edge(fd, /*reader=*/false, hung_up);
    if (stale) {
      // Looked up again: a completion may have started operations that grew the table.
      const posix::HandleState& after = state_for(fd);
      if (after.watched == 0 && after.readers.empty() && after.writers.empty()) {
        count_registration_change();
        ::epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, fd, nullptr);
      }
    }
  }
  return rechecked + before - in_flight();
}

void EpollBackend::wake() noexcept {
  const std::uint64_t one = 1;
  [[maybe_unused]] ssize_t r = ::write(wake_fd_, &one, sizeof one);
}

}  // namespace corio::backends
