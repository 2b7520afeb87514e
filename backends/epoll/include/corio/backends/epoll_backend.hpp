// The epoll backend: a readiness backend presented as operations (the shared rules are in
// corio/backends/posix/readiness_backend.hpp). Edge-triggered, each fd registered once for
// both directions (on its first wait), except a descriptor a wait op registers first (an
// add_reader/add_writer watcher's): level-triggered, in the directions waited in. An eventfd for
// cross-thread wake-up, and epoll_pwait2 for nanosecond timeouts. It must never call into the
// runtime: it only moves Operations and calls on_complete.
#pragma once

#include <string_view>

#include "corio/backends/posix/readiness_backend.hpp"
#include "corio/core/backend.hpp"

namespace corio::backends {

class EpollBackend : public posix::ReadinessBackend<EpollBackend> {
 public:
  static constexpr std::string_view kName = "epoll";
  static constexpr bool kLevelWatch = true;

  struct Options {};  // nothing to choose
  static Options default_options() { return {}; }

  EpollBackend();
  explicit EpollBackend(Options) : EpollBackend() {}
  ~EpollBackend();
  EpollBackend(const EpollBackend&) = delete;
  EpollBackend& operator=(const EpollBackend&) = delete;

  std::size_t wait(core::Nanos timeout);
  void wake() noexcept;

 private:
  friend class posix::ReadinessBackend<EpollBackend>;
  void watch(int fd, posix::HandleState& state, bool reader);
  void unwatch(int fd, posix::HandleState& state, bool closing);
  void watch_level(int fd, posix::HandleState& state, bool reader, bool on);

  int epoll_fd_ = -1;
  int wake_fd_ = -1;
  bool have_pwait2_ = true;
  void* events_ = nullptr;  // epoll_event[kMaxEvents]; kept opaque to keep this header clean
};

static_assert(core::Backend<EpollBackend>);

}  // namespace corio::backends
