// The kqueue backend (FreeBSD, macOS, the other BSDs): a readiness backend presented as
// operations, on the rules it shares with epoll (corio/backends/posix/readiness_backend.hpp).
// Each direction of a descriptor is registered once, edge-triggered (EV_CLEAR), when its first
// operation must wait; a descriptor a wait op registers first (an add_reader/add_writer
// watcher's) is level-triggered, in the directions waited in. Registrations queue up and reach the
// kernel with the next wait, in the same kevent() call. EVFILT_USER wakes the loop from other
// threads. On Linux it runs on the emulation in backends/kqueue/emulation, which exists only to
// test it. It must never call into the runtime: it only moves Operations and calls on_complete.
#pragma once

#include <memory>
#include <string_view>

#include "corio/backends/posix/readiness_backend.hpp"
#include "corio/core/backend.hpp"

namespace corio::backends {

class KqueueBackend : public posix::ReadinessBackend<KqueueBackend> {
 public:
  static constexpr std::string_view kName = "kqueue";
  static constexpr bool kLevelWatch = true;

  struct Options {};  // nothing to choose
  static Options default_options() { return {}; }

  KqueueBackend();
  explicit KqueueBackend(Options) : KqueueBackend() {}
  ~KqueueBackend();
  KqueueBackend(const KqueueBackend&) = delete;
  KqueueBackend& operator=(const KqueueBackend&) = delete;

  std::size_t wait(core::Nanos timeout);
  void wake() noexcept;

 private:
  friend class posix::ReadinessBackend<KqueueBackend>;
  void watch(int fd, posix::HandleState& state, bool reader);
  void unwatch(int fd, posix::HandleState& state, bool closing);
  void watch_level(int fd, posix::HandleState& state, bool reader, bool on);
  void drop_filter(int fd, bool reader);

  struct KernelLists;  // the change and event arrays; kept out of this header with <sys/event.h>
  int kq_ = -1;
  std::unique_ptr<KernelLists> lists_;
};

static_assert(core::Backend<KqueueBackend>);

}  // namespace corio::backends
