// The thin platform layer under corio's networking: socket creation and options, socket
// addresses, and blocking name resolution. Everything here is a direct system call (or a
// pure conversion); the I/O itself goes through the backend's Operations.
// This header must never expose a platform type: handles are core::NativeHandle, addresses
// are core::SocketAddress, and every option or flag is corio's own enum, mapped in the
// platform's .cpp (net_platform_posix.cpp; a Windows twin goes beside it).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "corio/core/operation.hpp"

namespace corio::core::net {

enum class AddressFamily : std::uint8_t { unspecified, ipv4, ipv6, unix_domain };
enum class SocketKind : std::uint8_t { unspecified, stream, datagram };
enum class ShutdownHow : std::uint8_t { read, write, both };

// Integer-valued socket options, named for what they do. set_option(..., linger_abort, 1)
// arms SO_LINGER with a zero timeout, so the next close sends a reset instead of a FIN.
enum class SocketOption : std::uint8_t {
  reuse_address,
  reuse_port,
  tcp_nodelay,
  keep_alive,
  broadcast,
  ipv6_only,
  receive_buffer,
  send_buffer,
  linger_abort,
  error,  // SO_ERROR (read only)
};

// IP protocol numbers are the same on every platform corio targets.
inline constexpr int kProtocolTcp = 6;
inline constexpr int kProtocolUdp = 17;

// --- sockets: every handle is non-blocking and close-on-exec from birth ---
NativeHandle open_socket(AddressFamily family, SocketKind kind, int protocol = 0);
// A connected pair of Unix-domain sockets (socket.socketpair()).
std::pair<NativeHandle, NativeHandle> open_socket_pair(SocketKind kind);
// Makes a handle created elsewhere non-blocking and close-on-exec.
void prepare_handle(NativeHandle handle);
// Closes a handle no backend has seen. Handles a backend may know go through backend.close().
void close_handle(NativeHandle handle) noexcept;
void bind(NativeHandle handle, const SocketAddress& address);
void listen(NativeHandle handle, int backlog);
void shutdown(NativeHandle handle, ShutdownHow how);
void set_option(NativeHandle handle, SocketOption option, int value);
int get_option(NativeHandle handle, SocketOption option);
SocketAddress local_address(NativeHandle handle);
SocketAddress peer_address(NativeHandle handle);
AddressFamily socket_family(NativeHandle handle);
SocketKind socket_kind(NativeHandle handle);

// --- addresses ---
// Numeric addresses only (no name lookup); ValueError when `host` is not a literal of
// that family. IPv6 literals may carry a %scope suffix (interface name or number).
SocketAddress ipv4_address(std::string_view host, std::uint16_t port);
SocketAddress ipv6_address(std::string_view host, std::uint16_t port, std::uint32_t scope_id = 0);
// A Unix-domain address; a path starting with '\0' names Linux's abstract namespace.
SocketAddress unix_address(std::string_view path);
// An IPv4 or IPv6 literal, or nullopt when `host` needs a name lookup.
std::optional<SocketAddress> parse_ip_address(std::string_view host, std::uint16_t port);
// 0.0.0.0 / :: and 127.0.0.1 / ::1.
SocketAddress any_address(AddressFamily family, std::uint16_t port);
SocketAddress loopback_address(AddressFamily family, std::uint16_t port);

AddressFamily address_family(const SocketAddress& address) noexcept;
// The numeric host ("127.0.0.1", "::1", "fe80::1%eth0") or the Unix path.
std::string address_host(const SocketAddress& address);
std::uint16_t address_port(const SocketAddress& address) noexcept;
// "127.0.0.1:8080", "[::1]:8080", "/run/app.sock", "@abstract", "<unnamed>".
std::string format_address(const SocketAddress& address);
// Same address with another port (IP families only).
SocketAddress with_port(SocketAddress address, std::uint16_t port) noexcept;

// --- Unix-domain socket files ---
// The identity of the file at `path` when it is a socket (used to clean up only our own).
struct FileIdentity {
  std::uint64_t device = 0;
  std::uint64_t inode = 0;
  bool operator==(const FileIdentity&) const = default;
};
std::optional<FileIdentity> socket_file_identity(const std::string& path);
void remove_file(const std::string& path) noexcept;

// --- name resolution (blocking: run it off the loop) ---
namespace ai {  // getaddrinfo flags
inline constexpr int passive = 1;
inline constexpr int canonname = 2;
inline constexpr int numeric_host = 4;
inline constexpr int numeric_service = 8;
inline constexpr int addrconfig = 16;
inline constexpr int v4mapped = 32;
inline constexpr int all = 64;
}  // namespace ai
namespace ni {  // getnameinfo flags
inline constexpr int numeric_host = 1;
inline constexpr int numeric_service = 2;
inline constexpr int name_required = 4;
inline constexpr int no_fqdn = 8;
inline constexpr int datagram = 16;
}  // namespace ni

struct AddressInfo {
  AddressFamily family = AddressFamily::unspecified;
  SocketKind kind = SocketKind::unspecified;
  int protocol = 0;
  std::string canonical_name;
  SocketAddress address;
};

// getaddrinfo(3). `host` / `service` may be empty (None). Throws GaiError (code = EAI_*
// value) or OSError when the resolver failed with a system error.
std::vector<AddressInfo> resolve(const std::string& host, const std::string& service,
                                 AddressFamily family, SocketKind kind, int protocol, int flags);
// getnameinfo(3): (host, service).
std::pair<std::string, std::string> name_info(const SocketAddress& address, int flags);

}  // namespace corio::core::net
