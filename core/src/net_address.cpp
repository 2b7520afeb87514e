// Address formatting shared by every platform: built only on the platform layer's
// address_family/address_host/address_port, so it never needs a socket header.
#include "corio/core/net_platform.hpp"

namespace corio::core::net {

std::string format_address(const SocketAddress& address) {
  switch (address_family(address)) {
    case AddressFamily::ipv4:
      return address_host(address) + ":" + std::to_string(address_port(address));
    case AddressFamily::ipv6:
      return "[" + address_host(address) + "]:" + std::to_string(address_port(address));
    case AddressFamily::unix_domain: {
      std::string path = address_host(address);
      if (path.empty()) return "<unnamed>";
      if (path[0] == '\0') path[0] = '@';
      return path;
    }
    case AddressFamily::unspecified:
      break;
  }
  return "<unspecified>";
}

}  // namespace corio::core::net
