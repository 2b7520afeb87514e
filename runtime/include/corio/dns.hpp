// Name resolution: the twins of loop.getaddrinfo() and loop.getnameinfo().
// The blocking resolver runs on the loop's default executor (executor.hpp), as in asyncio;
// while a lookup runs, the loop counts it as external work (virtual time does not jump).
// Cancelling a lookup returns control at once; the thread finishes in the background and
// its answer is dropped. Failures raise GaiError (error_number() is the EAI_* code) or
// OSError. It must never block the loop's thread.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "corio/core/net_platform.hpp"
#include "corio/coro.hpp"
#include "corio/socket.hpp"

namespace corio {

using core::net::AddressInfo;
namespace ai = core::net::ai;  // getaddrinfo flags: ai::passive, ai::canonname, ...
namespace ni = core::net::ni;  // getnameinfo flags: ni::numeric_host, ...

// loop.getaddrinfo(host, port, family=, type=, proto=, flags=). An empty host or port means
// None. Entries are in the resolver's order.
Coro<std::vector<AddressInfo>> getaddrinfo(std::string host, std::string port,
                                           AddressFamily family = AddressFamily::unspecified,
                                           SocketKind type = SocketKind::unspecified, int proto = 0,
                                           int flags = 0);
Coro<std::vector<AddressInfo>> getaddrinfo(std::string host, std::uint16_t port,
                                           AddressFamily family = AddressFamily::unspecified,
                                           SocketKind type = SocketKind::unspecified, int proto = 0,
                                           int flags = 0);
// loop.getnameinfo(sockaddr, flags) -> (host, port)
Coro<std::pair<std::string, std::string>> getnameinfo(SocketAddress address, int flags = 0);

namespace detail {
// Tests only: replaces the blocking resolver (nullptr restores getaddrinfo(3)). The function
// runs on a worker thread.
using ResolverFunction = std::vector<AddressInfo> (*)(const std::string& host,
                                                      const std::string& service,
                                                      AddressFamily family, SocketKind type,
                                                      int proto, int flags);
void set_resolver_for_testing(ResolverFunction resolver) noexcept;
}  // namespace detail

}  // namespace corio
