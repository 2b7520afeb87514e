// Socket ownership and closing, and the registry of open loops that makes closing safe
// after the loop is gone. It must never touch a closed loop, nor another thread's backend.
#include "corio/socket.hpp"

#include <absl/synchronization/mutex.h>

#include <cerrno>
#include <unordered_map>

#include "corio/event_loop.hpp"
#include "net_internal.hpp"

namespace corio {

namespace detail {
namespace {

struct LoopRegistry {
  absl::Mutex mutex;
  std::unordered_map<EventLoop*, std::uint64_t> open ABSL_GUARDED_BY(mutex);
  std::uint64_t next_token ABSL_GUARDED_BY(mutex) = 1;
};

// Never destroyed: resolver threads may still consult it while the process exits.
LoopRegistry& registry() {
  static LoopRegistry* instance = new LoopRegistry;
  return *instance;
}

}  // namespace

std::uint64_t loop_token(EventLoop& loop) {
  if (loop.is_closed()) return 0;
  LoopRegistry& r = registry();
  std::uint64_t token;
  {
    absl::MutexLock lock(&r.mutex);
    auto it = r.open.find(&loop);
    if (it != r.open.end()) return it->second;
    token = r.next_token++;
    r.open.emplace(&loop, token);
  }
  loop.at_close([&loop, token] {
    LoopRegistry& reg = registry();
    absl::MutexLock lock(&reg.mutex);
    auto it = reg.open.find(&loop);
    if (it != reg.open.end() && it->second == token) reg.open.erase(it);
  });
  return token;
}

bool with_open_loop(EventLoop* loop, std::uint64_t token, absl::FunctionRef<void(EventLoop&)> fn) {
  if (loop == nullptr || token == 0) return false;
  LoopRegistry& r = registry();
  absl::MutexLock lock(&r.mutex);
  auto it = r.open.find(loop);
  if (it == r.open.end() || it->second != token) return false;
  fn(*loop);
  return true;
}

std::exception_ptr make_os_error(int error_number, const std::string& context) {
  try {
    throw_os_error(error_number, context);
  } catch (...) {
    return std::current_exception();
  }
}

}  // namespace detail

Socket& Socket::operator=(Socket&& other) noexcept {
  if (this != &other) {
    close();
    handle_ = std::exchange(other.handle_, core::kInvalidHandle);
    loop_ = std::exchange(other.loop_, nullptr);
    loop_token_ = std::exchange(other.loop_token_, 0);
  }
  return *this;
}

Socket Socket::create(AddressFamily family, SocketKind kind, int protocol) {
  Socket s(core::net::open_socket(family, kind, protocol));
  if (EventLoop* loop = try_get_running_loop()) s.attach_loop(*loop);
  return s;
}

std::pair<Socket, Socket> Socket::pair(SocketKind kind) {
  auto [a, b] = core::net::open_socket_pair(kind);
  std::pair<Socket, Socket> out{Socket(a), Socket(b)};
  if (EventLoop* loop = try_get_running_loop()) {
    out.first.attach_loop(*loop);
    out.second.attach_loop(*loop);
  }
  return out;
}

Socket Socket::adopt(NativeHandle handle) {
  core::net::prepare_handle(handle);
  Socket s(handle);
  if (EventLoop* loop = try_get_running_loop()) s.attach_loop(*loop);
  return s;
}

void Socket::attach_loop(EventLoop& loop) {
  if (loop_ == &loop && loop_token_ != 0) return;
  loop_ = &loop;
  loop_token_ = detail::loop_token(loop);
}

void Socket::close() noexcept {
  if (handle_ == core::kInvalidHandle) return;
  const NativeHandle handle = std::exchange(handle_, core::kInvalidHandle);
  EventLoop* const loop = std::exchange(loop_, nullptr);
  const std::uint64_t token = std::exchange(loop_token_, 0);
  if (loop != nullptr && loop == try_get_running_loop()) {
    loop->backend().close(handle);  // the common case: closing from the loop's own thread
    return;
  }
  bool done = false;
  try {
    done = detail::with_open_loop(loop, token, [&](EventLoop& l) {
      if (l.is_running()) {
        // Another thread runs that loop: its backend may only be touched from there.
        l.call_soon_threadsafe([&l, handle] { l.backend().close(handle); });
      } else {
        l.backend().close(handle);
      }
    });
  } catch (...) {
    done = false;
  }
  if (!done) core::net::close_handle(handle);
}

NativeHandle Socket::detach() noexcept {
  loop_ = nullptr;
  loop_token_ = 0;
  return std::exchange(handle_, core::kInvalidHandle);
}

void Socket::check_open(const char* what) const {
  if (!is_open()) throw_os_error(EBADF, what);
}

void Socket::bind(const SocketAddress& address) {
  check_open("bind");
  core::net::bind(handle_, address);
}

void Socket::listen(int backlog) {
  check_open("listen");
  core::net::listen(handle_, backlog);
}

void Socket::shutdown(ShutdownHow how) {
  check_open("shutdown");
  core::net::shutdown(handle_, how);
}

void Socket::setsockopt(SocketOption option, int value) {
  check_open("setsockopt");
  core::net::set_option(handle_, option, value);
}

int Socket::getsockopt(SocketOption option) const {
  check_open("getsockopt");
  return core::net::get_option(handle_, option);
}

SocketAddress Socket::getsockname() const {
  check_open("getsockname");
  return core::net::local_address(handle_);
}

SocketAddress Socket::getpeername() const {
  check_open("getpeername");
  return core::net::peer_address(handle_);
}

AddressFamily Socket::family() const {
  check_open("family");
  return core::net::socket_family(handle_);
}

SocketKind Socket::kind() const {
  check_open("kind");
  return core::net::socket_kind(handle_);
}

}  // namespace corio
