// create_connection: resolve, then connect to each address in order, or race them with
// happy eyeballs (asyncio's staggered_race): the next attempt starts when the previous one
// fails or after the delay, the first success wins and the others are cancelled. It must
// never leave a losing attempt running, nor return a socket that is not connected.
#include <cerrno>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "corio/core/timer_heap.hpp"
#include "corio/dns.hpp"
#include "corio/event_loop.hpp"
#include "corio/sock_ops.hpp"
#include "corio/task.hpp"
#include "net_internal.hpp"

namespace corio {

namespace {

// Waits on `list` for at most `delay` ns.
class TimedWait {
 public:
  TimedWait(detail::IoWaitList& list, core::Nanos delay) noexcept : list_(&list), delay_(delay) {}
  TimedWait(const TimedWait&) = delete;
  ~TimedWait() {
    if (timer_.armed()) loop_->disarm_timer(timer_);
  }
  bool await_ready() const noexcept { return false; }
  void await_suspend(std::coroutine_handle<> handle) {
    loop_ = &get_running_loop();
    timer_.context = this;
    timer_.fire = &fire;
    timer_.deadline = core::saturating_add(loop_->now_ns(), delay_);
    loop_->arm_timer(timer_);
    waiter_.suspend_on(*list_, handle);
  }
  void await_resume() {
    if (timer_.armed()) loop_->disarm_timer(timer_);
    waiter_.resume();
  }

 private:
  static void fire(core::TimerNode* node) {
    static_cast<TimedWait*>(node->context)->waiter_.wake();
  }

  detail::IoWaitList* list_;
  core::Nanos delay_;
  EventLoop* loop_ = nullptr;
  core::TimerNode timer_;
  detail::IoWaiter waiter_;
};

Coro<Socket> connect_one(const AddressInfo& info, std::optional<SocketAddress> local) {
  Socket sock = Socket::create(info.family, SocketKind::stream, info.protocol);
  if (local) {
    try {
      sock.bind(*local);
    } catch (const OSError& e) {
      throw_os_error(e.error_number(),
                     "error while attempting to bind on address " + format_address(*local));
    }
  }
  co_await sock_connect(sock, info.address);
  co_return sock;
}

// asyncio's _interleave_addrinfos.
std::vector<AddressInfo> interleave(std::vector<AddressInfo> infos, int first_family_count) {
  std::vector<std::vector<AddressInfo>> by_family;
  std::vector<AddressFamily> order;
  for (AddressInfo& info : infos) {
    std::size_t i = 0;
    while (i < order.size() && order[i] != info.family) ++i;
    if (i == order.size()) {
      order.push_back(info.family);
      by_family.emplace_back();
    }
    by_family[i].push_back(std::move(info));
  }
  std::vector<AddressInfo> out;
  std::vector<std::size_t> next(by_family.size(), 0);
  if (first_family_count > 1 && !by_family.empty()) {
    const std::size_t take = std::min<std::size_t>(first_family_count - 1, by_family[0].size());
    for (; next[0] < take; ++next[0]) out.push_back(std::move(by_family[0][next[0]]));
  }
  for (bool any = true; any;) {
    any = false;
    for (std::size_t f = 0; f < by_family.size(); ++f) {
      if (next[f] < by_family[f].size()) {
        out.push_back(std::move(by_family[f][next[f]++]));
        any = true;
      }
    }
  }
  return out;
}

[[noreturn]] void raise_connect_errors(const std::vector<std::exception_ptr>& errors) {
  if (errors.empty()) throw OSError(EHOSTUNREACH, "no address to connect to");
  std::vector<std::string> messages;
  for (const std::exception_ptr& e : errors) {
    try {
      std::rethrow_exception(e);
    } catch (const std::exception& x) {
      messages.emplace_back(x.what());
    }
  }
  bool alike = true;
  for (const std::string& m : messages) alike = alike && m == messages.front();
  if (alike) std::rethrow_exception(errors.front());
  std::string text = "Multiple exceptions: ";
  for (std::size_t i = 0; i < messages.size(); ++i) text += (i ? ", " : "") + messages[i];
  // A connection error code of its own: the first attempt's, as the most relevant one.
  int code = 0;
  try {
    std::rethrow_exception(errors.front());
  } catch (const OSError& x) {
    code = x.error_number();
  } catch (...) {
  }
  throw OSError(code, text);
}

struct Race {
  std::optional<Socket> winner;
  std::vector<std::exception_ptr> errors;
  std::vector<bool> finished;
  int running = 0;
  detail::IoWaitList changed;
};

Coro<void> race_attempt(std::shared_ptr<Race> race, std::size_t index, AddressInfo info,
                        std::optional<SocketAddress> local) {
  struct Done {
    Race& race;
    std::size_t index;
    ~Done() {
      race.finished[index] = true;
      --race.running;
      race.changed.wake_all();
    }
  } done{*race, index};
  try {
    Socket sock = co_await connect_one(info, local);
    if (!race->winner) race->winner = std::move(sock);
  } catch (const OSError&) {
    race->errors.push_back(std::current_exception());
  }
}

// Cancels the attempts still running when the race is left, whichever way.
struct CancelOnExit {
  std::vector<Task<void>>& tasks;
  ~CancelOnExit() {
    for (Task<void>& t : tasks) {
      if (!t.done()) t.cancel();
    }
  }
};

Coro<Socket> staggered_race(std::vector<AddressInfo> infos, std::optional<SocketAddress> local,
                            double delay) {
  auto race = std::make_shared<Race>();
  race->finished.assign(infos.size(), false);
  std::vector<Task<void>> tasks;
  tasks.reserve(infos.size());
  CancelOnExit guard{tasks};
  const core::Nanos step = delay > 0 ? core::from_seconds(delay) : 0;
  for (std::size_t i = 0; i < infos.size() && !race->winner; ++i) {
    ++race->running;
    tasks.push_back(
        create_task(race_attempt(race, i, infos[i], local), TaskOptions{.eager_start = false}));
    if (i + 1 == infos.size()) break;
    // The next attempt starts when this one fails or the delay has passed.
    const core::Nanos deadline = core::saturating_add(get_running_loop().now_ns(), step);
    while (!race->winner && !race->finished[i]) {
      const core::Nanos left = deadline - get_running_loop().now_ns();
      if (left <= 0) break;
      co_await TimedWait(race->changed, left);
    }
  }
  while (!race->winner && race->running > 0) co_await detail::IoWaitOn(race->changed);
  if (race->winner) co_return std::move(*race->winner);
  raise_connect_errors(race->errors);
}

}  // namespace

Coro<Socket> create_connection(std::string host, std::uint16_t port, ConnectOptions options) {
  std::vector<AddressInfo> infos;
  if (std::optional<SocketAddress> numeric = parse_ip_address(host, port)) {
    AddressInfo info;
    info.family = address_family(*numeric);
    info.kind = SocketKind::stream;
    info.protocol = core::net::kProtocolTcp;
    info.address = *numeric;
    if (options.family == AddressFamily::unspecified || options.family == info.family) {
      infos.push_back(std::move(info));
    }
  } else {
    infos = co_await getaddrinfo(host, std::to_string(port), options.family, SocketKind::stream);
  }
  if (infos.empty()) throw OSError(EADDRNOTAVAIL, "getaddrinfo() returned empty list");
  int interleave_count = options.interleave;
  if (options.happy_eyeballs_delay && interleave_count == 0) interleave_count = 1;
  if (interleave_count > 0) infos = interleave(std::move(infos), interleave_count);

  if (options.happy_eyeballs_delay && infos.size() > 1) {
    co_return co_await staggered_race(std::move(infos), options.local_addr,
                                      *options.happy_eyeballs_delay);
  }
  std::vector<std::exception_ptr> errors;
  for (const AddressInfo& info : infos) {
    try {
      co_return co_await connect_one(info, options.local_addr);
    } catch (const OSError&) {
      errors.push_back(std::current_exception());
    }
  }
  raise_connect_errors(errors);
}

}  // namespace corio
