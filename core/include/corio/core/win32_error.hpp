// Windows error codes (Win32 ERROR_*, Winsock WSAE*, NTSTATUS) as the errno values the rest
// of corio speaks, so a refused connection raises ConnectionRefusedError on every platform.
// Only the Windows platform layer and the IOCP backend call these; on POSIX they are absent.
// This file must never depend on a platform header (codes travel as plain integers).
#pragma once

#include <cstdint>

namespace corio::core::win32 {

// A GetLastError()/WSAGetLastError() value to a positive errno (EIO when it has no twin).
int errno_from_error(unsigned long code) noexcept;
// An NTSTATUS (OVERLAPPED::Internal) to a positive errno; 0 for success.
// Socket statuses are mapped directly: their Win32 translations lose information
// (STATUS_CONNECTION_RESET becomes ERROR_NETNAME_DELETED).
int errno_from_ntstatus(std::int32_t status) noexcept;

}  // namespace corio::core::win32
