// Windows implementation of net_platform.hpp: the only place corio's networking touches
// Winsock directly (the IOCP backend does the I/O). Sockets are overlapped (for the backend),
// non-blocking (so a plain send()/recv() never blocks the loop) and not inheritable, the
// Windows twin of O_NONBLOCK|O_CLOEXEC. Errors are mapped to errno values through
// core/win32_error.hpp so the runtime raises the same exceptions as on POSIX.
// It must never block except inside resolve()/name_info(), which run on a worker thread.
#ifdef _WIN32

// clang-format off
#include <winsock2.h>
#include <ws2tcpip.h>
#include <afunix.h>
#include <iphlpapi.h>
#include <windows.h>
// clang-format on

#include <cerrno>
#include <cstring>
#include <string>
#include <system_error>

#include "corio/core/errors.hpp"
#include "corio/core/net_platform.hpp"
#include "corio/core/win32_error.hpp"

namespace corio::core::net {

static_assert(sizeof(SocketAddress::storage) >= sizeof(sockaddr_storage));

namespace {

// Winsock needs WSAStartup before the first call; it is reference counted, and the process
// keeps this one for its lifetime.
void ensure_winsock() {
  static const int started = [] {
    WSADATA data;
    return ::WSAStartup(MAKEWORD(2, 2), &data);
  }();
  if (started != 0)
    throw_os_error(win32::errno_from_error(static_cast<unsigned long>(started)), "WSAStartup");
}

SOCKET sock_of(NativeHandle handle) {
  return static_cast<SOCKET>(handle);
}

[[noreturn]] void fail(const char* what) {
  throw_os_error(win32::errno_from_error(static_cast<unsigned long>(::WSAGetLastError())), what);
}

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

const sockaddr* as_sockaddr(const SocketAddress& address) {
  return reinterpret_cast<const sockaddr*>(address.storage);
}

SocketAddress address_of(const void* sa, std::size_t length) {
  SocketAddress address;
  if (length > sizeof(address.storage)) length = sizeof(address.storage);
  std::memcpy(address.storage, sa, length);
  address.length = static_cast<std::uint32_t>(length);
  return address;
}

bool is_socket(NativeHandle handle) {
  int type = 0;
  int length = sizeof type;
  return ::getsockopt(sock_of(handle), SOL_SOCKET, SO_TYPE, reinterpret_cast<char*>(&type),
                      &length) == 0;
}

void make_nonblocking(SOCKET s) {
  u_long on = 1;
  if (::ioctlsocket(s, FIONBIO, &on) != 0) fail("ioctlsocket(FIONBIO)");
}

std::wstring widen(const std::string& text) {
  if (text.empty()) return {};
  const int n =
      ::MultiByteToWideChar(CP_UTF8, 0, text.data(), static_cast<int>(text.size()), nullptr, 0);
  std::wstring out(static_cast<std::size_t>(n), L'\0');
  ::MultiByteToWideChar(CP_UTF8, 0, text.data(), static_cast<int>(text.size()), out.data(), n);
  return out;
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

// getaddrinfo's codes are WSA error numbers on Windows; gai_strerror names them.
class GaiCategory final : public std::error_category {
 public:
  const char* name() const noexcept override { return "getaddrinfo"; }
  std::string message(int code) const override { return ::gai_strerrorA(code); }
};

const std::error_category& gai_category() {
  static const GaiCategory category;
  return category;
}

[[noreturn]] void throw_gai_error(int code, const std::string& what) {
  switch (code) {
    case WSA_NOT_ENOUGH_MEMORY:
    case WSANOTINITIALISED:
      throw_os_error(win32::errno_from_error(static_cast<unsigned long>(code)), what);
    default:
      throw GaiError(std::error_code(code, gai_category()), what);
  }
}

struct NativeOption {
  int level;
  int name;
};

NativeOption native_option(SocketOption option) {
  switch (option) {
    case SocketOption::reuse_address:
      return {SOL_SOCKET, SO_REUSEADDR};
    case SocketOption::reuse_port:
      throw ValueError("reuse_port is not supported on this platform");
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

}  // namespace

NativeHandle open_socket(AddressFamily family, SocketKind kind, int protocol) {
  ensure_winsock();
  const SOCKET s = ::WSASocketW(to_native(family), to_native(kind), protocol, nullptr, 0,
                                WSA_FLAG_OVERLAPPED | WSA_FLAG_NO_HANDLE_INHERIT);
  if (s == INVALID_SOCKET) fail("socket");
  try {
    make_nonblocking(s);
  } catch (...) {
    ::closesocket(s);
    throw;
  }
  return static_cast<NativeHandle>(s);
}

// No socketpair() on Windows (and AF_UNIX is not everywhere): a loopback connection stands
// in, as Python's socket.socketpair() does there.
std::pair<NativeHandle, NativeHandle> open_socket_pair(SocketKind kind) {
  ensure_winsock();
  const SocketAddress loopback = loopback_address(AddressFamily::ipv4, 0);
  if (kind == SocketKind::datagram) {
    const NativeHandle a = open_socket(AddressFamily::ipv4, SocketKind::datagram);
    NativeHandle b = kInvalidHandle;
    try {
      b = open_socket(AddressFamily::ipv4, SocketKind::datagram);
      bind(a, loopback);
      bind(b, loopback);
      const SocketAddress address_a = local_address(a);
      const SocketAddress address_b = local_address(b);
      if (::connect(sock_of(a), as_sockaddr(address_b), static_cast<int>(address_b.length)) != 0 ||
          ::connect(sock_of(b), as_sockaddr(address_a), static_cast<int>(address_a.length)) != 0) {
        fail("connect");
      }
    } catch (...) {
      close_handle(a);
      close_handle(b);
      throw;
    }
    return {a, b};
  }
  const NativeHandle listener = open_socket(AddressFamily::ipv4, SocketKind::stream);
  NativeHandle client = kInvalidHandle;
  NativeHandle server = kInvalidHandle;
  try {
    bind(listener, loopback);
    listen(listener, 1);
    const SocketAddress address = local_address(listener);
    client = open_socket(AddressFamily::ipv4, SocketKind::stream);
    // Loopback connects complete at once or very nearly: wait for them briefly, blocking.
    if (::connect(sock_of(client), as_sockaddr(address), static_cast<int>(address.length)) != 0 &&
        ::WSAGetLastError() != WSAEWOULDBLOCK) {
      fail("connect");
    }
    fd_set readable;
    FD_ZERO(&readable);
    FD_SET(sock_of(listener), &readable);
    timeval timeout{5, 0};
    if (::select(0, &readable, nullptr, nullptr, &timeout) != 1) fail("select");
    const SOCKET accepted = ::accept(sock_of(listener), nullptr, nullptr);
    if (accepted == INVALID_SOCKET) fail("accept");
    server = static_cast<NativeHandle>(accepted);
    prepare_handle(server);
    // Make sure the accepted socket really is the client's peer (nobody else raced in).
    const SocketAddress client_address = local_address(client);
    if (!(peer_address(server) == client_address))
      throw OSError(ECONNABORTED, "socketpair: unexpected peer");
    fd_set writable;
    FD_ZERO(&writable);
    FD_SET(sock_of(client), &writable);
    timeout = {5, 0};
    if (::select(0, nullptr, &writable, nullptr, &timeout) != 1) fail("select");
    const BOOL on = TRUE;
    ::setsockopt(sock_of(client), IPPROTO_TCP, TCP_NODELAY, reinterpret_cast<const char*>(&on),
                 sizeof on);
    ::setsockopt(sock_of(server), IPPROTO_TCP, TCP_NODELAY, reinterpret_cast<const char*>(&on),
                 sizeof on);
  } catch (...) {
    close_handle(listener);
    close_handle(client);
    close_handle(server);
    throw;
  }
  close_handle(listener);
  return {client, server};
}

void prepare_handle(NativeHandle handle) {
  ensure_winsock();
  ::SetHandleInformation(reinterpret_cast<HANDLE>(handle), HANDLE_FLAG_INHERIT, 0);
  if (is_socket(handle)) make_nonblocking(sock_of(handle));
}

void close_handle(NativeHandle handle) noexcept {
  if (handle == kInvalidHandle || handle == static_cast<NativeHandle>(INVALID_SOCKET)) return;
  if (is_socket(handle)) {
    ::closesocket(sock_of(handle));
  } else {
    ::CloseHandle(reinterpret_cast<HANDLE>(handle));
  }
}

void bind(NativeHandle handle, const SocketAddress& address) {
  if (::bind(sock_of(handle), as_sockaddr(address), static_cast<int>(address.length)) != 0) {
    throw_os_error(win32::errno_from_error(static_cast<unsigned long>(::WSAGetLastError())),
                   "bind(" + format_address(address) + ")");
  }
}

void listen(NativeHandle handle, int backlog) {
  if (::listen(sock_of(handle), backlog) != 0) fail("listen");
}

void shutdown(NativeHandle handle, ShutdownHow how) {
  const int native = how == ShutdownHow::read    ? SD_RECEIVE
                     : how == ShutdownHow::write ? SD_SEND
                                                 : SD_BOTH;
  if (::shutdown(sock_of(handle), native) != 0) fail("shutdown");
}

void set_option(NativeHandle handle, SocketOption option, int value) {
  const NativeOption native = native_option(option);
  int r;
  if (option == SocketOption::reuse_address) {
    // Windows' SO_REUSEADDR lets a second socket take over a port another one is listening
    // on; what POSIX means by it (rebinding past TIME_WAIT) is Windows' default already.
    return;
  }
  if (option == SocketOption::linger_abort) {
    linger l{};
    l.l_onoff = value != 0 ? 1 : 0;
    l.l_linger = 0;
    r = ::setsockopt(sock_of(handle), native.level, native.name, reinterpret_cast<const char*>(&l),
                     sizeof l);
  } else {
    // BOOL and int options are both 4 bytes on Windows.
    r = ::setsockopt(sock_of(handle), native.level, native.name,
                     reinterpret_cast<const char*>(&value), sizeof value);
  }
  if (r != 0) fail("setsockopt");
}

int get_option(NativeHandle handle, SocketOption option) {
  const NativeOption native = native_option(option);
  if (option == SocketOption::linger_abort) {
    linger l{};
    int length = sizeof l;
    if (::getsockopt(sock_of(handle), native.level, native.name, reinterpret_cast<char*>(&l),
                     &length) != 0) {
      fail("getsockopt");
    }
    return l.l_onoff != 0 && l.l_linger == 0;
  }
  int value = 0;
  int length = sizeof value;
  if (::getsockopt(sock_of(handle), native.level, native.name, reinterpret_cast<char*>(&value),
                   &length) != 0) {
    fail("getsockopt");
  }
  if (option == SocketOption::error)
    value = win32::errno_from_error(static_cast<unsigned long>(value));
  return value;
}

SocketAddress local_address(NativeHandle handle) {
  sockaddr_storage ss{};
  int length = sizeof ss;
  if (::getsockname(sock_of(handle), reinterpret_cast<sockaddr*>(&ss), &length) != 0)
    fail("getsockname");
  return address_of(&ss, static_cast<std::size_t>(length));
}

SocketAddress peer_address(NativeHandle handle) {
  sockaddr_storage ss{};
  int length = sizeof ss;
  if (::getpeername(sock_of(handle), reinterpret_cast<sockaddr*>(&ss), &length) != 0)
    fail("getpeername");
  return address_of(&ss, static_cast<std::size_t>(length));
}

AddressFamily socket_family(NativeHandle handle) {
  WSAPROTOCOL_INFOW info{};
  int length = sizeof info;
  if (::getsockopt(sock_of(handle), SOL_SOCKET, SO_PROTOCOL_INFOW, reinterpret_cast<char*>(&info),
                   &length) != 0) {
    fail("getsockopt(SO_PROTOCOL_INFO)");
  }
  return from_native_family(info.iAddressFamily);
}

SocketKind socket_kind(NativeHandle handle) {
  int type = 0;
  int length = sizeof type;
  if (::getsockopt(sock_of(handle), SOL_SOCKET, SO_TYPE, reinterpret_cast<char*>(&type), &length) !=
      0) {
    fail("getsockopt(SO_TYPE)");
  }
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
  return address_of(&sin, sizeof sin);
}

SocketAddress ipv6_address(std::string_view host, std::uint16_t port, std::uint32_t scope_id) {
  sockaddr_in6 sin6{};
  sin6.sin6_family = AF_INET6;
  sin6.sin6_port = htons(port);
  if (!parse_ipv6(host, sin6)) throw ValueError("not an IPv6 address: '" + std::string(host) + "'");
  if (scope_id != 0) sin6.sin6_scope_id = scope_id;
  return address_of(&sin6, sizeof sin6);
}

SocketAddress unix_address(std::string_view path) {
  sockaddr_un sun{};
  sun.sun_family = AF_UNIX;
  if (path.size() >= sizeof(sun.sun_path)) {
    throw ValueError("Unix socket path too long (" + std::to_string(path.size()) + " bytes)");
  }
  std::memcpy(sun.sun_path, path.data(), path.size());
  const bool abstract = !path.empty() && path[0] == '\0';
  return address_of(&sun, offsetof(sockaddr_un, sun_path) + path.size() + (abstract ? 0 : 1));
}

std::optional<SocketAddress> parse_ip_address(std::string_view host, std::uint16_t port) {
  if (host.empty()) return std::nullopt;
  const std::string text(host);
  sockaddr_in sin{};
  if (::inet_pton(AF_INET, text.c_str(), &sin.sin_addr) == 1) {
    sin.sin_family = AF_INET;
    sin.sin_port = htons(port);
    return address_of(&sin, sizeof sin);
  }
  sockaddr_in6 sin6{};
  if (text.find(':') != std::string::npos && parse_ipv6(text, sin6)) {
    sin6.sin6_family = AF_INET6;
    sin6.sin6_port = htons(port);
    return address_of(&sin6, sizeof sin6);
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
  if (address.length < sizeof(ADDRESS_FAMILY)) return AddressFamily::unspecified;
  return from_native_family(as_sockaddr(address)->sa_family);
}

std::string address_host(const SocketAddress& address) {
  switch (address_family(address)) {
    case AddressFamily::ipv4: {
      char text[INET_ADDRSTRLEN] = {};
      sockaddr_in sin{};
      std::memcpy(&sin, address.storage, sizeof sin);
      ::inet_ntop(AF_INET, &sin.sin_addr, text, sizeof text);
      return text;
    }
    case AddressFamily::ipv6: {
      char text[INET6_ADDRSTRLEN] = {};
      sockaddr_in6 sin6{};
      std::memcpy(&sin6, address.storage, sizeof sin6);
      ::inet_ntop(AF_INET6, &sin6.sin6_addr, text, sizeof text);
      std::string host = text;
      if (sin6.sin6_scope_id != 0) {
        char name[IF_NAMESIZE + 1] = {};
        host += '%';
        host += ::if_indextoname(sin6.sin6_scope_id, name) ? std::string(name)
                                                           : std::to_string(sin6.sin6_scope_id);
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

// An AF_UNIX socket file is a reparse point tagged IO_REPARSE_TAG_AF_UNIX; its identity is
// the volume serial number and the file index.
std::optional<FileIdentity> socket_file_identity(const std::string& path) {
  if (path.empty() || path[0] == '\0') return std::nullopt;
  HANDLE h =
      ::CreateFileW(widen(path).c_str(), FILE_READ_ATTRIBUTES,
                    FILE_SHARE_READ | FILE_SHARE_WRITE | FILE_SHARE_DELETE, nullptr, OPEN_EXISTING,
                    FILE_FLAG_OPEN_REPARSE_POINT | FILE_FLAG_BACKUP_SEMANTICS, nullptr);
  if (h == INVALID_HANDLE_VALUE) return std::nullopt;
  std::optional<FileIdentity> identity;
  FILE_ATTRIBUTE_TAG_INFO tag{};
  BY_HANDLE_FILE_INFORMATION info{};
  if (::GetFileInformationByHandleEx(h, FileAttributeTagInfo, &tag, sizeof tag) &&
      (tag.FileAttributes & FILE_ATTRIBUTE_REPARSE_POINT) != 0 &&
      tag.ReparseTag == IO_REPARSE_TAG_AF_UNIX && ::GetFileInformationByHandle(h, &info)) {
    identity =
        FileIdentity{info.dwVolumeSerialNumber,
                     (static_cast<std::uint64_t>(info.nFileIndexHigh) << 32) | info.nFileIndexLow};
  }
  ::CloseHandle(h);
  return identity;
}

void remove_file(const std::string& path) noexcept {
  if (!path.empty() && path[0] != '\0') ::DeleteFileW(widen(path).c_str());
}

std::vector<AddressInfo> resolve(const std::string& host, const std::string& service,
                                 AddressFamily family, SocketKind kind, int protocol, int flags) {
  ensure_winsock();
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
  const int rc = ::getaddrinfo(host.empty() ? nullptr : host.c_str(),
                               service.empty() ? nullptr : service.c_str(), &hints, &list);
  if (rc != 0)
    throw_gai_error(rc, "getaddrinfo(" + (host.empty() ? std::string("None") : host) + ")");
  std::vector<AddressInfo> out;
  for (const addrinfo* ai = list; ai != nullptr; ai = ai->ai_next) {
    const AddressFamily f = from_native_family(ai->ai_family);
    if (f == AddressFamily::unspecified) continue;
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
  ensure_winsock();
  int native = 0;
  if (flags & ni::numeric_host) native |= NI_NUMERICHOST;
  if (flags & ni::numeric_service) native |= NI_NUMERICSERV;
  if (flags & ni::name_required) native |= NI_NAMEREQD;
  if (flags & ni::no_fqdn) native |= NI_NOFQDN;
  if (flags & ni::datagram) native |= NI_DGRAM;
  char host[NI_MAXHOST] = {};
  char service[NI_MAXSERV] = {};
  const int rc = ::getnameinfo(as_sockaddr(address), static_cast<socklen_t>(address.length), host,
                               sizeof host, service, sizeof service, native);
  if (rc != 0) throw_gai_error(rc, "getnameinfo");
  return {host, service};
}

}  // namespace corio::core::net

#endif  // _WIN32
