// getaddrinfo / getnameinfo off the loop, on the loop's default executor (asyncio does the
// same), with a test hook to replace the resolver. It must never call the resolver on the
// loop's thread.
#include "corio/dns.hpp"

#include <atomic>
#include <utility>

#include "corio/event_loop.hpp"
#include "corio/executor.hpp"

namespace corio {
namespace detail {

namespace {

std::atomic<ResolverFunction> g_resolver{nullptr};

// Runs `fn` on the loop's default executor, as loop.getaddrinfo does. Cancelling the
// awaiting task cancels the executor's future at once; a lookup already running finishes
// on its thread and its answer is dropped.
template <class R, class Fn>
Coro<R> run_blocking(Fn fn) {
  co_return co_await run_in_executor(get_running_loop(), nullptr, std::move(fn));
}

}  // namespace

void set_resolver_for_testing(ResolverFunction resolver) noexcept {
  g_resolver.store(resolver);
}

}  // namespace detail

Coro<std::vector<AddressInfo>> getaddrinfo(std::string host, std::string port, AddressFamily family,
                                           SocketKind type, int proto, int flags) {
  return detail::run_blocking<std::vector<AddressInfo>>(
      [host = std::move(host), port = std::move(port), family, type, proto, flags] {
        if (detail::ResolverFunction fake = detail::g_resolver.load()) {
          return fake(host, port, family, type, proto, flags);
        }
        return core::net::resolve(host, port, family, type, proto, flags);
      });
}

Coro<std::vector<AddressInfo>> getaddrinfo(std::string host, std::uint16_t port,
                                           AddressFamily family, SocketKind type, int proto,
                                           int flags) {
  return getaddrinfo(std::move(host), std::to_string(port), family, type, proto, flags);
}

Coro<std::pair<std::string, std::string>> getnameinfo(SocketAddress address, int flags) {
  return detail::run_blocking<std::pair<std::string, std::string>>(
      [address, flags] { return core::net::name_info(address, flags); });
}

}  // namespace corio
