// A user-space emulation of BSD kqueue(2) on Linux, built on epoll (API: include/sys/event.h).
// It exists so that corio's kqueue backend, unchanged, can run its test-suite on Linux. It
// must never approximate silently: what it cannot emulate faithfully it refuses with EINVAL,
// and it must never become a production event mechanism (the epoll backend is that).
//
// The process-wide table below plays the kernel's role. Where FreeBSD's kernel and its man
// page disagree, the kernel (sys/kern/kern_event.c) is followed: returned flags carry no
// EV_ADD, and EV_ADD on an existing disabled knote leaves it disabled (EV_ENABLE enables).
// Deliberate deviations from FreeBSD:
//  - Refused with EINVAL: filters other than READ/WRITE/USER, flag bits outside EV_ADD ..
//    EV_DISPATCH, EV_ADD|EV_DELETE in one change, fflags (NOTE_LOWAT...) on READ/WRITE,
//    knotes of one descriptor that disagree on EV_CLEAR (epoll's EPOLLET is per descriptor),
//    and an EV_ADD that would change an existing knote's EV_ONESHOT/EV_DISPATCH/EV_CLEAR
//    (FreeBSD silently keeps the old ones, so a backend relying on the change is wrong there).
//  - Any change to one knote of a descriptor re-arms the descriptor in epoll, so its other
//    knote, if EV_CLEAR, may be reported once more than on BSD.
//  - Files epoll refuses (regular files, directories) fail EV_ADD with EPERM; BSD reports
//    them always readable.
//  - EVFILT_WRITE data is 0 (BSD: free space in the send buffer). EVFILT_READ data is 1 on a
//    listening socket (BSD: the backlog length) and 0 where FIONREAD does not answer.
//  - fflags stay 0 when a socket has an error (BSD puts so_error there with EV_EOF): reading
//    SO_ERROR on Linux clears it, which would hide, for instance, a failed connect() from
//    the backend's own getsockopt(SO_ERROR).
//  - close() is invisible here. A closed descriptor's knotes linger until a change names it
//    again; then EV_ADD starts afresh, and EV_DELETE/EV_ENABLE/EV_DISABLE drop the leftovers
//    and fail with EBADF (descriptor closed) or ENOENT (number reused), as BSD would for a
//    knote that close() removed. A descriptor closed while its file stays open elsewhere
//    (dup, a forked child) stays in epoll, which cannot be told to drop it any more: its
//    events keep coming, with the old udata, until the file is closed everywhere; code that
//    cannot take such spurious events must EV_DELETE before close(). A closed kqueue's
//    bookkeeping, eventfd included, is released when kqueue() gets its number again; until
//    then kevent() on another descriptor that took the number is served as that old kqueue
//    (BSD: EBADF).
#include <sys/event.h>

#include <fcntl.h>
#include <linux/time_types.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <climits>
#include <csignal>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <ctime>
#include <functional>
#include <mutex>
#include <new>
#include <optional>
#include <unordered_map>
#include <vector>

namespace {

// `kevent` alone names the function.
using KEvent = struct kevent;

constexpr unsigned short kActionFlags = EV_ADD | EV_DELETE | EV_ENABLE | EV_DISABLE;
constexpr unsigned short kModeFlags = EV_ONESHOT | EV_CLEAR | EV_DISPATCH;
constexpr unsigned short kInputFlags = kActionFlags | kModeFlags | EV_RECEIPT;

constexpr std::uint32_t kReadInterest = EPOLLIN | EPOLLRDHUP;
constexpr std::uint32_t kWriteInterest = EPOLLOUT;
// What epoll reports that makes a read or a write not block.
constexpr std::uint32_t kReadReady = EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR;
constexpr std::uint32_t kWriteReady = EPOLLOUT | EPOLLHUP | EPOLLERR;

// epoll_event.data of the per-kqueue eventfd; descriptors use their (non-negative) number.
constexpr std::uint64_t kWakeToken = ~std::uint64_t{0};
// Per wait, on the stack, so that kevent() allocates nothing in steady state.
constexpr int kMaxEpollEvents = 64;
constexpr std::int64_t kNanosPerSecond = 1'000'000'000;

// The bookkeeping below stands in for kernel memory, so it comes from malloc, never from
// operator new: corio's tests count a program's allocations through operator new (the loop
// must allocate nothing per iteration), and a real kqueue allocates nothing there.
template <class T>
struct KernelAllocator {
  using value_type = T;
  KernelAllocator() = default;
  template <class U>
  KernelAllocator(const KernelAllocator<U>&) noexcept {}
  T* allocate(std::size_t n) {
    if (void* p = std::malloc(n * sizeof(T))) return static_cast<T*>(p);
    throw std::bad_alloc();
  }
  void deallocate(T* p, std::size_t) noexcept { std::free(p); }
  friend bool operator==(const KernelAllocator&, const KernelAllocator&) { return true; }
};

template <class K, class V>
using KernelMap = std::unordered_map<K, V, std::hash<K>, std::equal_to<K>,
                                     KernelAllocator<std::pair<const K, V>>>;
template <class T>
using KernelVector = std::vector<T, KernelAllocator<T>>;

struct Knote {
  std::uintptr_t ident = 0;
  short filter = 0;
  unsigned short flags = 0;  // what FreeBSD keeps: the creating change's flags minus actions
  void* udata = nullptr;
  bool enabled = true;
  bool queued = false;           // has its entry on Kqueue::ready
  std::uint32_t revents = 0;     // READ/WRITE: epoll events gathered since last delivery
  bool triggered = false;        // USER
  unsigned int user_fflags = 0;  // USER: the low 24 bits
  std::int64_t user_data = 0;    // USER: data of the latest change, returned as FreeBSD does
};

// Both knotes of a descriptor together, because epoll has one registration per descriptor.
struct FdWatch {
  std::optional<Knote> read;
  std::optional<Knote> write;

  std::optional<Knote>& slot(short filter) { return filter == EVFILT_READ ? read : write; }
  bool empty() const { return !read && !write; }
};

struct Key {
  std::uintptr_t ident;
  short filter;
};

struct Kqueue {
  explicit Kqueue(int fd) : epfd(fd) {}
  Kqueue(const Kqueue&) = delete;
  Kqueue& operator=(const Kqueue&) = delete;
  // The epoll descriptor is the caller's to close(); the eventfd is ours.
  ~Kqueue() {
    if (wake_fd >= 0) ::close(wake_fd);
  }

  int epfd;
  int wake_fd = -1;  // created with the first EVFILT_USER knote
  KernelMap<int, FdWatch> fds;
  KernelMap<std::uintptr_t, Knote> users;
  // FreeBSD's active queue: one entry per knote with an event to deliver, oldest first.
  // Undelivered events wait here when the eventlist is full, so none is lost.
  KernelVector<Key> ready;
};

struct Registry {
  std::mutex mutex;
  KernelMap<int, Kqueue> queues;  // keyed by the epoll descriptor kqueue() returned
};

// Never destroyed: a thread still inside kevent() during exit must not find it gone.
Registry& registry() {
  static Registry* const instance = new Registry;
  return *instance;
}

int fail(int error) {
  errno = error;
  return -1;
}

Kqueue* find_queue(int kq) {
  auto& queues = registry().queues;
  const auto it = queues.find(kq);
  return it == queues.end() ? nullptr : &it->second;
}

// ---- the ready list ----

void enqueue(Kqueue& q, Knote& kn) {
  if (kn.queued) return;
  kn.queued = true;
  q.ready.push_back({kn.ident, kn.filter});
}

// Removes a pending event, so that a knote deleted or disabled meanwhile is not reported.
void unqueue(Kqueue& q, Knote& kn) {
  kn.revents = 0;
  if (!kn.queued) return;
  kn.queued = false;
  const auto it = std::find_if(q.ready.begin(), q.ready.end(), [&](const Key& key) {
    return key.ident == kn.ident && key.filter == kn.filter;
  });
  if (it != q.ready.end()) q.ready.erase(it);
}

// ---- EVFILT_READ / EVFILT_WRITE ----

// EPOLLET is per descriptor, hence one EV_CLEAR setting per descriptor (see mixes_clear).
// With nothing enabled the descriptor stays registered, so that EPOLL_CTL_MOD still tells
// when it was closed, but edge-triggered, so that the EPOLLHUP/EPOLLERR epoll reports
// regardless of the mask cannot make a waiter spin.
std::uint32_t epoll_mask(const FdWatch& w) {
  std::uint32_t events = 0;
  bool all_clear = true;
  if (w.read) {
    if (w.read->enabled) events |= kReadInterest;
    all_clear = all_clear && (w.read->flags & EV_CLEAR) != 0;
  }
  if (w.write) {
    if (w.write->enabled) events |= kWriteInterest;
    all_clear = all_clear && (w.write->flags & EV_CLEAR) != 0;
  }
  if (all_clear || events == 0) events |= EPOLLET;
  return events;
}

bool mixes_clear(const FdWatch& w) {
  return w.read && w.write && ((w.read->flags ^ w.write->flags) & EV_CLEAR) != 0;
}

// Returns 0 or the errno. EPOLL_CTL_MOD also re-arms: current readiness is reported again.
int epoll_update(const Kqueue& q, int op, int fd, const FdWatch& w) {
  epoll_event ev{};
  ev.events = epoll_mask(w);
  ev.data.u64 = static_cast<std::uint64_t>(fd);
  return ::epoll_ctl(q.epfd, op, fd, op == EPOLL_CTL_DEL ? nullptr : &ev) == 0 ? 0 : errno;
}

Knote make_knote(const KEvent& change) {
  Knote kn;
  kn.ident = change.ident;
  kn.filter = change.filter;
  kn.flags = static_cast<unsigned short>(change.flags & ~kActionFlags);
  kn.udata = change.udata;
  kn.enabled = (change.flags & EV_DISABLE) == 0;
  return kn;
}

// As FreeBSD does on an existing knote: EV_ENABLE wins over EV_DISABLE, and every change,
// EV_ADD or not, brings a new udata. EV_ADD alone does not re-enable a disabled knote.
void modify_knote(Knote& kn, const KEvent& change) {
  if (change.flags & EV_ENABLE) {
    kn.enabled = true;
  } else if (change.flags & EV_DISABLE) {
    kn.enabled = false;
  }
  kn.udata = change.udata;
}

bool changes_mode(const Knote& kn, const KEvent& change, unsigned short mode_flags) {
  return (change.flags & EV_ADD) != 0 && ((kn.flags ^ change.flags) & mode_flags) != 0;
}

int add_fresh(Kqueue& q, int fd, const KEvent& change) {
  const auto it = q.fds.try_emplace(fd).first;
  it->second.slot(change.filter) = make_knote(change);
  if (const int error = epoll_update(q, EPOLL_CTL_ADD, fd, it->second); error != 0) {
    q.fds.erase(it);
    return error;
  }
  return 0;
}

void forget_fd(Kqueue& q, KernelMap<int, FdWatch>::iterator it) {
  if (it->second.read) unqueue(q, *it->second.read);
  if (it->second.write) unqueue(q, *it->second.write);
  q.fds.erase(it);
}

// Applies change to a copy of the descriptor's knotes, so that a refused change leaves
// nothing behind. Returns 0 or the errno.
int plan_fd_change(FdWatch& next, const KEvent& change) {
  std::optional<Knote>& kn = next.slot(change.filter);
  if (change.flags & EV_DELETE) {
    if (!kn) return ENOENT;
    kn.reset();
  } else if (!kn) {
    if ((change.flags & EV_ADD) == 0) return ENOENT;
    kn = make_knote(change);
  } else {
    if (changes_mode(*kn, change, kModeFlags)) return EINVAL;
    modify_knote(*kn, change);
  }
  return mixes_clear(next) ? EINVAL : 0;
}

// Whether epoll still holds fd's file, asked without disturbing a live registration:
// EPOLL_CTL_ADD fails with EEXIST exactly when it does.
bool epoll_knows(const Kqueue& q, int fd) {
  epoll_event ev{};
  ev.events = EPOLLET;
  ev.data.u64 = static_cast<std::uint64_t>(fd);
  if (::epoll_ctl(q.epfd, EPOLL_CTL_ADD, fd, &ev) == 0) {
    ::epoll_ctl(q.epfd, EPOLL_CTL_DEL, fd, nullptr);
    return false;
  }
  return errno == EEXIST;
}

int apply_fd_change(Kqueue& q, const KEvent& change) {
  if (change.ident > static_cast<std::uintptr_t>(INT_MAX)) return EBADF;
  if (change.fflags != 0 && (change.flags & EV_DELETE) == 0) return EINVAL;
  const int fd = static_cast<int>(change.ident);
  if (const auto it = q.fds.find(fd); it != q.fds.end()) {
    FdWatch next = it->second;
    int error = plan_fd_change(next, change);
    if (error == 0) {
      error = epoll_update(q, next.empty() ? EPOLL_CTL_DEL : EPOLL_CTL_MOD, fd, next);
      if (error == 0) {
        // A deleted or disabled knote has nothing pending any more.
        if (std::optional<Knote>& kn = next.slot(change.filter); !kn) {
          unqueue(q, *it->second.slot(change.filter));
        } else if (!kn->enabled) {
          unqueue(q, *kn);
        }
        if (next.empty()) {
          q.fds.erase(it);
        } else {
          it->second = std::move(next);
        }
        return 0;
      }
      if (error != ENOENT && error != EBADF) return error;
    } else if (epoll_knows(q, fd)) {
      return error;
    }
    // epoll has forgotten the descriptor: it was closed (its number maybe reused since), and
    // on BSD its knotes went away with it. Drop them and serve the change as on a new one;
    // the refusal above may have come from them.
    forget_fd(q, it);
  }
  if (change.flags & EV_ADD) return add_fresh(q, fd, change);
  return ::fcntl(fd, F_GETFD) < 0 ? EBADF : ENOENT;
}

// BSD reports the bytes ready to read. FIONREAD does not answer for a listening socket
// (BSD: the backlog length), where readiness means at least one connection waits, nor for
// eventfds and the like.
std::int64_t readable_bytes(int fd) {
  int bytes = 0;
  if (::ioctl(fd, FIONREAD, &bytes) == 0) return bytes;
  int listening = 0;
  socklen_t length = sizeof listening;
  if (::getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &length) == 0 && listening) {
    return 1;
  }
  return 0;
}

KEvent deliver_fd(Kqueue& q, const Key& key) {
  const auto it = q.fds.find(static_cast<int>(key.ident));
  FdWatch& w = it->second;
  Knote& kn = *w.slot(key.filter);
  KEvent ev{kn.ident, kn.filter, kn.flags, 0, 0, kn.udata};
  if (kn.filter == EVFILT_READ) {
    if (kn.revents & (EPOLLRDHUP | EPOLLHUP)) ev.flags |= EV_EOF;
    ev.data = readable_bytes(it->first);
  } else if (kn.revents & (EPOLLHUP | EPOLLERR)) {
    ev.flags |= EV_EOF;
  }
  kn.queued = false;
  kn.revents = 0;
  if ((kn.flags & (EV_ONESHOT | EV_DISPATCH)) == 0) return ev;

  if (kn.flags & EV_ONESHOT) {
    w.slot(key.filter).reset();
  } else {
    kn.enabled = false;
  }
  // A failure means the descriptor was closed meanwhile; the next change naming it finds out.
  if (w.empty()) {
    epoll_update(q, EPOLL_CTL_DEL, it->first, w);
    q.fds.erase(it);
  } else {
    epoll_update(q, EPOLL_CTL_MOD, it->first, w);
  }
  return ev;
}

// ---- EVFILT_USER ----

int ensure_wake_fd(Kqueue& q) {
  if (q.wake_fd >= 0) return 0;
  const int fd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (fd < 0) return errno;
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = kWakeToken;
  if (::epoll_ctl(q.epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
    const int error = errno;
    ::close(fd);
    return error;
  }
  q.wake_fd = fd;
  return 0;
}

// Wakes a kevent() blocked in epoll on this kqueue, in whichever thread. Failure (EAGAIN)
// means the counter is full, hence non-zero, which wakes it as well.
void wake(const Kqueue& q) {
  const std::uint64_t one = 1;
  [[maybe_unused]] const ssize_t r = ::write(q.wake_fd, &one, sizeof one);
}

void drain(const Kqueue& q) {
  std::uint64_t count = 0;
  [[maybe_unused]] const ssize_t r = ::read(q.wake_fd, &count, sizeof count);
}

// FreeBSD's EVFILT_USER touch: NOTE_TRIGGER activates, the control bits fold the low 24 bits
// into the knote's, and EV_CLEAR in a change resets the trigger.
void touch_user(Knote& kn, const KEvent& change) {
  if (change.fflags & NOTE_TRIGGER) kn.triggered = true;
  const unsigned int bits = change.fflags & NOTE_FFLAGSMASK;
  switch (change.fflags & NOTE_FFCTRLMASK) {
    case NOTE_FFAND:
      kn.user_fflags &= bits;
      break;
    case NOTE_FFOR:
      kn.user_fflags |= bits;
      break;
    case NOTE_FFCOPY:
      kn.user_fflags = bits;
      break;
    default:  // NOTE_FFNOP
      break;
  }
  if (change.flags & EV_CLEAR) kn.triggered = false;
}

int apply_user_change(Kqueue& q, const KEvent& change) {
  const auto it = q.users.find(change.ident);
  if (change.flags & EV_DELETE) {
    if (it == q.users.end()) return ENOENT;
    unqueue(q, it->second);
    q.users.erase(it);
    return 0;
  }
  Knote* kn = nullptr;
  if (it == q.users.end()) {
    if ((change.flags & EV_ADD) == 0) return ENOENT;
    if (const int error = ensure_wake_fd(q); error != 0) return error;
    kn = &q.users.try_emplace(change.ident, make_knote(change)).first->second;
    kn->user_fflags = change.fflags & NOTE_FFLAGSMASK;
    kn->triggered = (change.fflags & NOTE_TRIGGER) != 0;
  } else {
    kn = &it->second;
    // EV_CLEAR in a change is an action here (reset), not a change of mode.
    if (changes_mode(*kn, change, EV_ONESHOT | EV_DISPATCH)) return EINVAL;
    modify_knote(*kn, change);
    touch_user(*kn, change);
  }
  kn->user_data = change.data;
  if (!kn->enabled || !kn->triggered) {
    unqueue(q, *kn);
  } else if (!kn->queued) {
    enqueue(q, *kn);
    wake(q);
  }
  return 0;
}

KEvent deliver_user(Kqueue& q, const Key& key) {
  const auto it = q.users.find(key.ident);
  Knote& kn = it->second;
  const KEvent ev{kn.ident, kn.filter, kn.flags, kn.user_fflags, kn.user_data, kn.udata};
  kn.queued = false;
  if (kn.flags & EV_CLEAR) kn.triggered = false;
  if (kn.flags & EV_ONESHOT) {
    q.users.erase(it);
  } else if (kn.flags & EV_DISPATCH) {
    kn.enabled = false;
  } else if (kn.triggered) {
    enqueue(q, kn);  // without EV_CLEAR it stays active, like an unread socket
  }
  return ev;
}

// ---- kevent() ----

int apply_change(Kqueue& q, const KEvent& change) {
  if ((change.flags & ~kInputFlags) != 0) return EINVAL;
  if ((change.flags & EV_ADD) && (change.flags & EV_DELETE)) return EINVAL;
  switch (change.filter) {
    case EVFILT_READ:
    case EVFILT_WRITE:
      return apply_fd_change(q, change);
    case EVFILT_USER:
      return apply_user_change(q, change);
    default:  // EVFILT_TIMER, EVFILT_PROC, EVFILT_SIGNAL, EVFILT_VNODE, EVFILT_AIO: not emulated
      return EINVAL;
  }
}

// As FreeBSD: a change's error (or, with EV_RECEIPT, its success: data 0) becomes an EV_ERROR
// entry while there is room; without room an error ends the call, the earlier changes
// staying applied. Entry i is written only after change i was read, so the eventlist may be
// the changelist itself. Returns the number of entries, or -1.
int apply_changes(Kqueue& q, const KEvent* changes, int nchanges, KEvent* out, int capacity) {
  int placed = 0;
  for (int i = 0; i < nchanges; ++i) {
    const KEvent change = changes[i];
    const int error = apply_change(q, change);
    if (error == 0 && (change.flags & EV_RECEIPT) == 0) continue;
    if (placed < capacity) {
      KEvent& entry = out[placed++];
      entry = change;
      entry.flags = EV_ERROR;
      entry.data = error;
    } else if (error != 0) {
      return fail(error);
    }
  }
  return placed;
}

void absorb(Kqueue& q, const epoll_event& e) {
  if (e.data.u64 == kWakeToken) {
    // The trigger itself is on the ready list already (set under the same mutex).
    drain(q);
    return;
  }
  const auto it = q.fds.find(static_cast<int>(e.data.u64));
  if (it == q.fds.end()) return;  // its knotes were deleted while the event was in flight
  const auto mark = [&](std::optional<Knote>& kn, std::uint32_t ready_bits) {
    if (!kn || !kn->enabled || (e.events & ready_bits) == 0) return;
    kn->revents |= e.events;
    enqueue(q, *kn);
  };
  mark(it->second.read, kReadReady);
  mark(it->second.write, kWriteReady);
}

int deliver(Kqueue& q, KEvent* out, int capacity) {
  // Knotes re-queued while delivering (EVFILT_USER without EV_CLEAR) wait for the next call.
  const std::size_t pending = q.ready.size();
  std::size_t taken = 0;
  int placed = 0;
  while (taken < pending && placed < capacity) {
    const Key key = q.ready[taken++];
    out[placed++] = key.filter == EVFILT_USER ? deliver_user(q, key) : deliver_fd(q, key);
  }
  q.ready.erase(q.ready.begin(), q.ready.begin() + static_cast<std::ptrdiff_t>(taken));
  return placed;
}

std::int64_t monotonic_nanos() {
  timespec now{};
  ::clock_gettime(CLOCK_MONOTONIC, &now);
  return static_cast<std::int64_t>(now.tv_sec) * kNanosPerSecond + now.tv_nsec;
}

// kevent()'s timeout, kept across the waits that carry it out.
class Deadline {
 public:
  explicit Deadline(const timespec* timeout) {
    if (timeout == nullptr) return;
    const std::int64_t now = monotonic_nanos();
    // So far away that int64 nanoseconds would overflow: the same as forever.
    if (timeout->tv_sec >= (INT64_MAX - now) / kNanosPerSecond - 1) return;
    end_ = now + static_cast<std::int64_t>(timeout->tv_sec) * kNanosPerSecond + timeout->tv_nsec;
  }

  // Nanoseconds left, or -1 for forever.
  std::int64_t remaining() const {
    return end_ ? std::max<std::int64_t>(*end_ - monotonic_nanos(), 0) : -1;
  }
  bool expired() const { return end_ && monotonic_nanos() >= *end_; }

 private:
  std::optional<std::int64_t> end_;
};

// timeout_ns: -1 waits forever. Returns epoll's count, or -1 with errno.
int wait_epoll(int epfd, epoll_event* events, int max, std::int64_t timeout_ns) {
  if (timeout_ns <= 0) return ::epoll_wait(epfd, events, max, timeout_ns < 0 ? -1 : 0);
  static std::atomic<bool> have_pwait2{true};
  if (have_pwait2.load(std::memory_order_relaxed)) {
    const __kernel_timespec ts{timeout_ns / kNanosPerSecond, timeout_ns % kNanosPerSecond};
    const long n = ::syscall(SYS_epoll_pwait2, epfd, events, max, &ts,
                             static_cast<const sigset_t*>(nullptr), std::size_t{0});
    // Seccomp profiles that predate epoll_pwait2 answer EPERM rather than ENOSYS.
    if (n >= 0 || (errno != ENOSYS && errno != EPERM)) return static_cast<int>(n);
    have_pwait2.store(false, std::memory_order_relaxed);
  }
  // Whole milliseconds, rounded up: waking early would end kevent() before its timeout.
  const std::int64_t ms = (timeout_ns + 999'999) / 1'000'000;
  return ::epoll_wait(epfd, events, max, static_cast<int>(std::min<std::int64_t>(ms, INT_MAX)));
}

int collect(int kq, KEvent* out, int capacity, const timespec* timeout) {
  const Deadline deadline(timeout);
  epoll_event events[kMaxEpollEvents];
  const int max = std::min(capacity, kMaxEpollEvents);
  Registry& reg = registry();
  for (;;) {
    bool have_pending = false;
    {
      const std::lock_guard lock(reg.mutex);
      const Kqueue* q = find_queue(kq);
      if (q == nullptr) return fail(EBADF);
      have_pending = !q->ready.empty();
    }
    // Never under the mutex: another thread may need it to trigger or change something.
    const int n = wait_epoll(kq, events, max, have_pending ? 0 : deadline.remaining());
    if (n < 0) return -1;  // EINTR included, as BSD does
    {
      const std::lock_guard lock(reg.mutex);
      Kqueue* q = find_queue(kq);
      if (q == nullptr) return fail(EBADF);
      for (int i = 0; i < n; ++i) absorb(*q, events[i]);
      if (const int placed = deliver(*q, out, capacity); placed > 0) {
        // epoll woke only this waiter. Events left over (this list was full) must reach any
        // other thread blocked on this kqueue, as BSD wakes every waiter: pass the wake on.
        if (!q->ready.empty() && ensure_wake_fd(*q) == 0) wake(*q);
        return placed;
      }
    }
    // Only stale wake-ups so far (deleted knotes, a trigger another thread took): BSD does
    // not return empty-handed before the timeout, so wait for the rest of it.
    if (deadline.expired()) return 0;
  }
}

bool valid_timeout(const timespec* timeout) {
  return timeout == nullptr ||
         (timeout->tv_sec >= 0 && timeout->tv_nsec >= 0 && timeout->tv_nsec < kNanosPerSecond);
}

}  // namespace

extern "C" int kqueue(void) {
  const int epfd = ::epoll_create1(EPOLL_CLOEXEC);
  if (epfd < 0) return -1;
  try {
    Registry& reg = registry();
    const std::lock_guard lock(reg.mutex);
    // The number is free, so a kqueue that had it was closed behind our back: its
    // bookkeeping goes now, its eventfd with it.
    reg.queues.erase(epfd);
    reg.queues.try_emplace(epfd, epfd);
  } catch (const std::bad_alloc&) {
    ::close(epfd);
    return fail(ENOMEM);
  }
  return epfd;
}

extern "C" int kevent(int kq, const KEvent* changelist, int nchanges, KEvent* eventlist,
                      int nevents, const struct timespec* timeout) {
  if (nchanges < 0 || nevents < 0) return fail(EINVAL);
  if ((nchanges > 0 && changelist == nullptr) || (nevents > 0 && eventlist == nullptr)) {
    return fail(EFAULT);
  }
  try {
    {
      Registry& reg = registry();
      const std::lock_guard lock(reg.mutex);
      Kqueue* q = find_queue(kq);
      if (q == nullptr) return fail(EBADF);
      // As FreeBSD: once a change has produced an entry, the call returns just those.
      if (const int placed = apply_changes(*q, changelist, nchanges, eventlist, nevents);
          placed != 0) {
        return placed;
      }
    }
    if (nevents == 0) return 0;
    // Checked only now, as FreeBSD does: a bad timeout does not undo the changes.
    if (!valid_timeout(timeout)) return fail(EINVAL);
    return collect(kq, eventlist, nevents, timeout);
  } catch (const std::bad_alloc&) {
    return fail(ENOMEM);
  }
}
