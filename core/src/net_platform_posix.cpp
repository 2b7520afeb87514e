// POSIX implementation of net_platform.hpp: the only place corio's networking touches
// <sys/socket.h> and friends. It must never block except inside resolve()/name_info(),
// which the runtime calls from a worker thread.
#ifndef _WIN32

#include <arpa/inet.h>
#include <fcntl.h>
#include <net/if.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <system_error>

#include "corio/core/errors.hpp"
#include "corio/core/net_platform.hpp"
#include "corio/core/posix_fd.hpp"

namespace corio::core::net {

static_assert(sizeof(SocketAddress::storage) >= sizeof(sockaddr_storage));

namespace {

int to_native(AddressFamily family) {
  switch (family) {
    case AddressFamily::ipv4:
      return AF_INET;
    case AddressFamily::ipv6:
      return AF_INET6;
    case AddressFamily::unix_domain:
      return AF_UNIX;
    case AddressFamily::unspecified:
      break;
  }
  return AF_UNSPEC;
}

AddressFamily from_native_family(int family) {
  switch (family) {
    case AF_INET:
      return AddressFamily::ipv4;
    case AF_INET6:
      return AddressFamily::ipv6;
    case AF_UNIX:
      return AddressFamily::unix_domain;
    default:
      return AddressFamily::unspecified;
  }
}

int to_native(SocketKind kind) {
  switch (kind) {
    case SocketKind::stream:
      return SOCK_STREAM;
    case SocketKind::datagram:
      return SOCK_DGRAM;
    case SocketKind::unspecified:
      break;
  }
  return 0;
}

SocketKind from_native_kind(int type) {
  switch (type) {
    case SOCK_STREAM:
      return SocketKind::stream;
    case SOCK_DGRAM:
      return SocketKind::datagram;
    default:
      return SocketKind::unspecified;
  }
}

int fd_of(NativeHandle handle) {
  return static_cast<int>(handle);
}

const sockaddr* as_sockaddr(const SocketAddress& address) {
  return reinterpret_cast<const sockaddr*>(address.storage);
}

[[noreturn]] void fail(const char* what) {
  throw_os_error(errno, what);
}

// Where an option lives: level, name, and whether it is a linger struct.
struct NativeOption {
  int level;
  int name;
};

NativeOption native_option(SocketOption option) {
  switch (option) {
    case SocketOption::reuse_address:
      return {SOL_SOCKET, SO_REUSEADDR};
    case SocketOption::reuse_port:
#ifdef SO_REUSEPORT
      return {SOL_SOCKET, SO_REUSEPORT};
#else
      throw ValueError("reuse_port is not supported on this platform");
#endif
    case SocketOption::tcp_nodelay:
      return {IPPROTO_TCP, TCP_NODELAY};
    case SocketOption::keep_alive:
      return {SOL_SOCKET, SO_KEEPALIVE};
    case SocketOption::broadcast:
      return {SOL_SOCKET, SO_BROADCAST};
    case SocketOption::ipv6_only:
      return {IPPROTO_IPV6, IPV6_V6ONLY};
    case SocketOption::receive_buffer:
      return {SOL_SOCKET, SO_RCVBUF};
    case SocketOption::send_buffer:
      return {SOL_SOCKET, SO_SNDBUF};
    case SocketOption::linger_abort:
      return {SOL_SOCKET, SO_LINGER};
    case SocketOption::error:
      return {SOL_SOCKET, SO_ERROR};
  }
  throw ValueError("unknown socket option");
}

SocketAddress address_of(const sockaddr* sa, socklen_t length) {
  SocketAddress address;
  if (length > sizeof(address.storage)) length = sizeof(address.storage);
  std::memcpy(address.storage, sa, length);
  address.length = length;
  return address;
}

// Parses "fe80::1%eth0" / "fe80::1%2"; the scope part may be an interface name or a number.
bool parse_ipv6(std::string_view text, sockaddr_in6& out) {
  std::string host(text);
  std::uint32_t scope = 0;
  if (const auto percent = host.find('%'); percent != std::string::npos) {
    const std::string zone = host.substr(percent + 1);
    host.resize(percent);
    if (zone.empty()) return false;
    char* end = nullptr;
    const unsigned long number = std::strtoul(zone.c_str(), &end, 10);
    if (end != nullptr && *end == '\0') {
      scope = static_cast<std::uint32_t>(number);
    } else {
      scope = ::if_nametoindex(zone.c_str());
      if (scope == 0) return false;
    }
  }
  if (::inet_pton(AF_INET6, host.c_str(), &out.sin6_addr) != 1) return false;
  out.sin6_scope_id = scope;
  return true;
}

// EAI_* codes have their own messages (gai_strerror), so they get their own category.
class GaiCategory final : public std::error_category {
 public:
  const char* name() const noexcept override { return "getaddrinfo"; }
  std::string message(int code) const override { return ::gai_strerror(code); }
};

const std::error_category& gai_category() {
  static const GaiCategory category;
  return category;
}

[[noreturn]] void throw_gai_error(int code, const std::string& what) {
  if (code == EAI_SYSTEM) throw_os_error(errno != 0 ? errno : EIO, what);
  throw GaiError(std::error_code(code, gai_category()), what);
}

}  // namespace

NativeHandle open_socket(AddressFamily family, SocketKind kind, int protocol) {
  const int fd = posix::make_socket(to_native(family), to_native(kind), protocol);
  if (fd < 0) fail("socket");
  return fd;
}

std::pair<NativeHandle, NativeHandle> open_socket_pair(SocketKind kind) {
  int fds[2];
  if (posix::make_socket_pair(AF_UNIX, to_native(kind), true, fds) < 0) fail("socketpair");
  return {fds[0], fds[1]};
}

void prepare_handle(NativeHandle handle) {
  if (posix::adopt(fd_of(handle)) < 0) fail("fcntl");
}

void close_handle(NativeHandle handle) noexcept {
  if (handle >= 0) ::close(fd_of(handle));
}

void bind(NativeHandle handle, const SocketAddress& address) {
  if (::bind(fd_of(handle), as_sockaddr(address), address.length) < 0) {
    throw_os_error(errno, "bind(" + format_address(address) + ")");
  }
}

void listen(NativeHandle handle, int backlog) {
  if (::listen(fd_of(handle), backlog) < 0) fail("listen");
}

void shutdown(NativeHandle handle, ShutdownHow how) {
  const int native = how == ShutdownHow::read    ? SHUT_RD
                     : how == ShutdownHow::write ? SHUT_WR
                                                 : SHUT_RDWR;
  if (::shutdown(fd_of(handle), native) < 0) fail("shutdown");
}

void set_option(NativeHandle handle, SocketOption option, int value) {
  const NativeOption native = native_option(option);
  int r;
  if (option == SocketOption::linger_abort) {
    linger l{};
    l.l_onoff = value != 0;
    l.l_linger = 0;
    r = ::setsockopt(fd_of(handle), native.level, native.name, &l, sizeof l);
  } else {
    r = ::setsockopt(fd_of(handle), native.level, native.name, &value, sizeof value);
  }
  if (r < 0) fail("setsockopt");
}

int get_option(NativeHandle handle, SocketOption option) {
  const NativeOption native = native_option(option);
  if (option == SocketOption::linger_abort) {
    linger l{};
    socklen_t len = sizeof l;
    if (::getsockopt(fd_of(handle), native.level, native.name, &l, &len) < 0) fail("getsockopt");
    return l.l_onoff != 0 && l.l_linger == 0;
  }
  int value = 0;
  socklen_t len = sizeof value;
  if (::getsockopt(fd_of(handle), native.level, native.name, &value, &len) < 0) fail("getsockopt");
  return value;
}

SocketAddress local_address(NativeHandle handle) {
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (::getsockname(fd_of(handle), reinterpret_cast<sockaddr*>(&ss), &len) < 0) fail("getsockname");
  return address_of(reinterpret_cast<sockaddr*>(&ss), len);
}

SocketAddress peer_address(NativeHandle handle) {
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (::getpeername(fd_of(handle), reinterpret_cast<sockaddr*>(&ss), &len) < 0) fail("getpeername");
  return address_of(reinterpret_cast<sockaddr*>(&ss), len);
}

AddressFamily socket_family(NativeHandle handle) {
#if defined(SO_DOMAIN) && !defined(CORIO_PORTABLE_POSIX)
  int domain = 0;
  socklen_t len = sizeof domain;
  if (::getsockopt(fd_of(handle), SOL_SOCKET, SO_DOMAIN, &domain, &len) < 0)
    fail("getsockopt(SO_DOMAIN)");
  return from_native_family(domain);
#else
  // No SO_DOMAIN (macOS): the local address carries the family, bound or not.
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (::getsockname(fd_of(handle), reinterpret_cast<sockaddr*>(&ss), &len) < 0) fail("getsockname");
  return from_native_family(ss.ss_family);
#endif
}

SocketKind socket_kind(NativeHandle handle) {
  int type = 0;
  socklen_t len = sizeof type;
  if (::getsockopt(fd_of(handle), SOL_SOCKET, SO_TYPE, &type, &len) < 0)
    fail("getsockopt(SO_TYPE)");
  return from_native_kind(type);
}

SocketAddress ipv4_address(std::string_view host, std::uint16_t port) {
  sockaddr_in sin{};
  sin.sin_family = AF_INET;
  sin.sin_port = htons(port);
  const std::string text(host);
  if (::inet_pton(AF_INET, text.c_str(), &sin.sin_addr) != 1) {
    throw ValueError("not an IPv4 address: '" + text + "'");
  }
  return address_of(reinterpret_cast<sockaddr*>(&sin), sizeof sin);
}

SocketAddress ipv6_address(std::string_view host, std::uint16_t port, std::uint32_t scope_id) {
  sockaddr_in6 sin6{};
  sin6.sin6_family = AF_INET6;
  sin6.sin6_port = htons(port);
  if (!parse_ipv6(host, sin6)) throw ValueError("not an IPv6 address: '" + std::string(host) + "'");
  if (scope_id != 0) sin6.sin6_scope_id = scope_id;
  return address_of(reinterpret_cast<sockaddr*>(&sin6), sizeof sin6);
}

SocketAddress unix_address(std::string_view path) {
  sockaddr_un sun{};
  sun.sun_family = AF_UNIX;
  if (path.size() >= sizeof(sun.sun_path)) {
    throw ValueError("Unix socket path too long (" + std::to_string(path.size()) + " bytes)");
  }
  std::memcpy(sun.sun_path, path.data(), path.size());
  // A path keeps its terminating NUL in the length; an abstract name is exactly its bytes.
  const bool abstract = !path.empty() && path[0] == '\0';
  const socklen_t len =
      static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + path.size() + (abstract ? 0 : 1));
  return address_of(reinterpret_cast<sockaddr*>(&sun), len);
}

std::optional<SocketAddress> parse_ip_address(std::string_view host, std::uint16_t port) {
  if (host.empty()) return std::nullopt;
  const std::string text(host);
  sockaddr_in sin{};
  if (::inet_pton(AF_INET, text.c_str(), &sin.sin_addr) == 1) {
    sin.sin_family = AF_INET;
    sin.sin_port = htons(port);
    return address_of(reinterpret_cast<sockaddr*>(&sin), sizeof sin);
  }
  sockaddr_in6 sin6{};
  if (text.find(':') != std::string::npos && parse_ipv6(text, sin6)) {
    sin6.sin6_family = AF_INET6;
    sin6.sin6_port = htons(port);
    return address_of(reinterpret_cast<sockaddr*>(&sin6), sizeof sin6);
  }
  return std::nullopt;
}

SocketAddress any_address(AddressFamily family, std::uint16_t port) {
  if (family == AddressFamily::ipv6) return ipv6_address("::", port);
  if (family == AddressFamily::ipv4) return ipv4_address("0.0.0.0", port);
  throw ValueError("any_address() needs ipv4 or ipv6");
}

SocketAddress loopback_address(AddressFamily family, std::uint16_t port) {
  if (family == AddressFamily::ipv6) return ipv6_address("::1", port);
  if (family == AddressFamily::ipv4) return ipv4_address("127.0.0.1", port);
  throw ValueError("loopback_address() needs ipv4 or ipv6");
}

AddressFamily address_family(const SocketAddress& address) noexcept {
  if (address.length < sizeof(sa_family_t)) return AddressFamily::unspecified;
  return from_native_family(as_sockaddr(address)->sa_family);
}

std::string address_host(const SocketAddress& address) {
  switch (address_family(address)) {
    case AddressFamily::ipv4: {
      char text[INET_ADDRSTRLEN] = {};
      const auto* sin = reinterpret_cast<const sockaddr_in*>(address.storage);
      ::inet_ntop(AF_INET, &sin->sin_addr, text, sizeof text);
      return text;
    }
    case AddressFamily::ipv6: {
      char text[INET6_ADDRSTRLEN] = {};
      const auto* sin6 = reinterpret_cast<const sockaddr_in6*>(address.storage);
      ::inet_ntop(AF_INET6, &sin6->sin6_addr, text, sizeof text);
      std::string host = text;
      if (sin6->sin6_scope_id != 0) {
        char name[IF_NAMESIZE] = {};
        host += '%';
        host += ::if_indextoname(sin6->sin6_scope_id, name) ? std::string(name)
                                                            : std::to_string(sin6->sin6_scope_id);
      }
      return host;
    }
    case AddressFamily::unix_domain: {
      const auto* sun = reinterpret_cast<const sockaddr_un*>(address.storage);
      const std::size_t offset = offsetof(sockaddr_un, sun_path);
      if (address.length <= offset) return {};
      std::size_t n = address.length - offset;
      if (sun->sun_path[0] != '\0') n = ::strnlen(sun->sun_path, n);
      return std::string(sun->sun_path, n);
    }
    case AddressFamily::unspecified:
      break;
  }
  return {};
}

std::uint16_t address_port(const SocketAddress& address) noexcept {
  switch (address_family(address)) {
    case AddressFamily::ipv4:
      return ntohs(reinterpret_cast<const sockaddr_in*>(address.storage)->sin_port);
    case AddressFamily::ipv6:
      return ntohs(reinterpret_cast<const sockaddr_in6*>(address.storage)->sin6_port);
    default:
      return 0;
  }
}

SocketAddress with_port(SocketAddress address, std::uint16_t port) noexcept {
  switch (address_family(address)) {
    case AddressFamily::ipv4:
      reinterpret_cast<sockaddr_in*>(address.storage)->sin_port = htons(port);
      break;
    case AddressFamily::ipv6:
      reinterpret_cast<sockaddr_in6*>(address.storage)->sin6_port = htons(port);
      break;
    default:
      break;
  }
  return address;
}

std::optional<FileIdentity> socket_file_identity(const std::string& path) {
  struct stat st {};
  if (path.empty() || path[0] == '\0' || ::stat(path.c_str(), &st) != 0 || !S_ISSOCK(st.st_mode)) {
    return std::nullopt;
  }
  return FileIdentity{static_cast<std::uint64_t>(st.st_dev), static_cast<std::uint64_t>(st.st_ino)};
}

void remove_file(const std::string& path) noexcept {
  if (!path.empty() && path[0] != '\0') ::unlink(path.c_str());
}

std::vector<AddressInfo> resolve(const std::string& host, const std::string& service,
                                 AddressFamily family, SocketKind kind, int protocol, int flags) {
  addrinfo hints{};
  hints.ai_family = to_native(family);
  hints.ai_socktype = to_native(kind);
  hints.ai_protocol = protocol;
  if (flags & ai::passive) hints.ai_flags |= AI_PASSIVE;
  if (flags & ai::canonname) hints.ai_flags |= AI_CANONNAME;
  if (flags & ai::numeric_host) hints.ai_flags |= AI_NUMERICHOST;
  if (flags & ai::numeric_service) hints.ai_flags |= AI_NUMERICSERV;
  if (flags & ai::addrconfig) hints.ai_flags |= AI_ADDRCONFIG;
  if (flags & ai::v4mapped) hints.ai_flags |= AI_V4MAPPED;
  if (flags & ai::all) hints.ai_flags |= AI_ALL;
  addrinfo* list = nullptr;
  errno = 0;
  const int rc = ::getaddrinfo(host.empty() ? nullptr : host.c_str(),
                               service.empty() ? nullptr : service.c_str(), &hints, &list);
  if (rc != 0)
    throw_gai_error(rc, "getaddrinfo(" + (host.empty() ? std::string("None") : host) + ")");
  std::vector<AddressInfo> out;
  for (const addrinfo* ai = list; ai != nullptr; ai = ai->ai_next) {
    const AddressFamily f = from_native_family(ai->ai_family);
    if (f == AddressFamily::unspecified) continue;  // a family corio has no name for
    AddressInfo info;
    info.family = f;
    info.kind = from_native_kind(ai->ai_socktype);
    info.protocol = ai->ai_protocol;
    if (ai->ai_canonname) info.canonical_name = ai->ai_canonname;
    info.address = address_of(ai->ai_addr, ai->ai_addrlen);
    out.push_back(std::move(info));
  }
  ::freeaddrinfo(list);
  return out;
}

std::pair<std::string, std::string> name_info(const SocketAddress& address, int flags) {
  int native = 0;
  if (flags & ni::numeric_host) native |= NI_NUMERICHOST;
  if (flags & ni::numeric_service) native |= NI_NUMERICSERV;
  if (flags & ni::name_required) native |= NI_NAMEREQD;
  if (flags & ni::no_fqdn) native |= NI_NOFQDN;
  if (flags & ni::datagram) native |= NI_DGRAM;
  char host[NI_MAXHOST] = {};
  char service[NI_MAXSERV] = {};
  errno = 0;
  const int rc = ::getnameinfo(as_sockaddr(address), address.length, host, sizeof host, service,
                               sizeof service, native);
  if (rc != 0) throw_gai_error(rc, "getnameinfo");
  return {host, service};
}

}  // namespace corio::core::net

#endif  // !_WIN32
