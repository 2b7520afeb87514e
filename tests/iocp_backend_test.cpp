// IOCP-only tests: what the shared conformance suite cannot see from the outside. Windows
// error codes reaching the runtime as the errno values (and so the exceptions) Linux gives,
// handles closed behind the backend's back (Windows reuses their numbers at once), AcceptEx's
// pre-created socket when the listener goes away, and datagram edge cases where Winsock and
// Linux differ. Compiled to nothing on other backends.
// It must never depend on the backend's internals beyond what its header promises.
#include <gtest/gtest.h>

#include "corio/config.hpp"

#ifdef CORIO_BACKEND_IOCP

// clang-format off
#include <winsock2.h>
#include <ws2tcpip.h>
#include <windows.h>
// clang-format on

#include <cerrno>
#include <chrono>
#include <cstring>
#include <functional>
#include <string>
#include <utility>

#include "corio/core/errors.hpp"
#include "corio/core/operation.hpp"
#include "corio/core/win32_error.hpp"
#include "test_os.hpp"

namespace corio {
namespace {

using core::OpCode;
using core::Operation;
using core::OpState;
namespace os = testing::os;

constexpr core::Nanos kMs = 1'000'000;

struct TestOp : Operation {
  int completions = 0;
  explicit TestOp(OpCode op_code, int fd) {
    code = op_code;
    handle = fd;
    on_complete = [](Operation* op) { ++static_cast<TestOp*>(op)->completions; };
  }
};

core::SocketAddress loopback4(std::uint16_t port = 0) {
  sockaddr_in in{};
  in.sin_family = AF_INET;
  in.sin_port = htons(port);
  in.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  core::SocketAddress address;
  std::memcpy(address.storage, &in, sizeof in);
  address.length = sizeof in;
  return address;
}

core::SocketAddress local_address(int fd) {
  core::SocketAddress address;
  int length = sizeof address.storage;
  EXPECT_EQ(
      ::getsockname(static_cast<SOCKET>(fd), reinterpret_cast<sockaddr*>(address.storage), &length),
      0);
  address.length = static_cast<std::uint32_t>(length);
  return address;
}

int bound_udp() {
  const int fd = os::socket(AF_INET, SOCK_DGRAM, true);
  const core::SocketAddress address = loopback4();
  EXPECT_EQ(::bind(static_cast<SOCKET>(fd), reinterpret_cast<const sockaddr*>(address.storage),
                   static_cast<int>(address.length)),
            0);
  return fd;
}

class IocpBackend : public ::testing::Test {
 protected:
  // Starts op and waits until it is done either way; returns whether it completed inline.
  bool run(TestOp& op) {
    const bool done_inline = backend.start(op);
    if (!done_inline) run_until([&] { return op.completions > 0; });
    return done_inline;
  }
  void run_until(const std::function<bool()>& pred) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (!pred()) {
      ASSERT_LT(std::chrono::steady_clock::now(), deadline) << "timed out";
      backend.wait(10 * kMs);
    }
  }

  SelectedBackend backend;
};

TEST(IocpErrors, WindowsCodesBecomeTheErrnoLinuxReports) {
  using core::win32::errno_from_error;
  using core::win32::errno_from_ntstatus;
  EXPECT_EQ(errno_from_error(WSAECONNREFUSED), ECONNREFUSED);
  EXPECT_EQ(errno_from_error(ERROR_CONNECTION_REFUSED), ECONNREFUSED);
  EXPECT_EQ(errno_from_error(WSAECONNRESET), ECONNRESET);
  EXPECT_EQ(errno_from_error(ERROR_NETNAME_DELETED), ECONNRESET);  // a reset seen by ReadFile
  EXPECT_EQ(errno_from_error(WSAECONNABORTED), ECONNABORTED);
  EXPECT_EQ(errno_from_error(WSAETIMEDOUT), ETIMEDOUT);
  EXPECT_EQ(errno_from_error(WSAEADDRINUSE), EADDRINUSE);
  EXPECT_EQ(errno_from_error(WSAEWOULDBLOCK), EAGAIN);
  EXPECT_EQ(errno_from_error(WSAESHUTDOWN), EPIPE);
  EXPECT_EQ(errno_from_error(ERROR_OPERATION_ABORTED), ECANCELED);
  EXPECT_EQ(errno_from_error(ERROR_FILE_NOT_FOUND), ENOENT);
  EXPECT_EQ(errno_from_error(ERROR_ACCESS_DENIED), EACCES);
  // Socket statuses keep their meaning (RtlNtStatusToDosError would say "network name deleted").
  EXPECT_EQ(errno_from_ntstatus(0), 0);
  EXPECT_EQ(errno_from_ntstatus(static_cast<std::int32_t>(0xC000020Du)), ECONNRESET);
  EXPECT_EQ(errno_from_ntstatus(static_cast<std::int32_t>(0xC0000236u)), ECONNREFUSED);
  EXPECT_EQ(errno_from_ntstatus(static_cast<std::int32_t>(0xC0000120u)), ECANCELED);
  EXPECT_EQ(errno_from_ntstatus(static_cast<std::int32_t>(0xC000014Bu)), EPIPE);
  // Through the runtime's one mapping, the same exception types as on Linux.
  EXPECT_THROW(throw_os_error(errno_from_error(WSAECONNREFUSED), "connect"),
               ConnectionRefusedError);
  EXPECT_THROW(throw_os_error(errno_from_error(WSAECONNRESET), "recv"), ConnectionResetError);
  EXPECT_THROW(throw_os_error(errno_from_error(WSAETIMEDOUT), "connect"), TimeoutError);
  EXPECT_THROW(throw_os_error(errno_from_error(WSAEWOULDBLOCK), "send"), BlockingIOError);
}

// Windows hands a closed handle's number to the next socket at once. A socket closed with
// closesocket() instead of backend.close() must not leave its successor unassociated (its
// operations would then complete nowhere and hang).
TEST_F(IocpBackend, AHandleClosedBehindTheBackendsBackDoesNotStrandItsSuccessor) {
  for (int round = 0; round < 20; ++round) {
    int sv[2];
    ASSERT_EQ(os::stream_pair(sv), 0);
    char buf[8] = {};
    TestOp recv(OpCode::recv, sv[0]);
    recv.buffer = buf;
    recv.length = sizeof buf;
    const bool done_inline = backend.start(recv);
    ASSERT_FALSE(done_inline);  // nothing to read yet: it must wait
    ASSERT_EQ(os::write(sv[1], "hi", 2), 2);
    run_until([&] { return recv.completions == 1; });
    ASSERT_EQ(recv.result, 2) << "round " << round;
    os::close(sv[0]);  // not through the backend
    os::close(sv[1]);
  }
  EXPECT_EQ(backend.in_flight(), 0u);
}

TEST_F(IocpBackend, ClosingAListenerWithAPendingAcceptCancelsIt) {
  const int listener = os::socket(AF_INET, SOCK_STREAM, true);
  const core::SocketAddress any = loopback4();
  ASSERT_EQ(::bind(static_cast<SOCKET>(listener), reinterpret_cast<const sockaddr*>(any.storage),
                   static_cast<int>(any.length)),
            0);
  ASSERT_EQ(::listen(static_cast<SOCKET>(listener), 4), 0);
  core::SocketAddress peer;
  TestOp accept(OpCode::accept, listener);
  accept.address = &peer;
  ASSERT_FALSE(backend.start(accept));
  backend.close(listener);
  run_until([&] { return accept.completions == 1; });
  EXPECT_EQ(accept.state, OpState::cancelled);
  EXPECT_EQ(accept.result, -ECANCELED);
  EXPECT_EQ(backend.in_flight(), 0u);
}

TEST_F(IocpBackend, AcceptWithoutAnAddressStillAccepts) {
  const int listener = os::socket(AF_INET, SOCK_STREAM, true);
  const core::SocketAddress any = loopback4();
  ASSERT_EQ(::bind(static_cast<SOCKET>(listener), reinterpret_cast<const sockaddr*>(any.storage),
                   static_cast<int>(any.length)),
            0);
  ASSERT_EQ(::listen(static_cast<SOCKET>(listener), 4), 0);
  const core::SocketAddress server = local_address(listener);
  TestOp accept(OpCode::accept, listener);  // address == nullptr: the backend's own buffer
  ASSERT_FALSE(backend.start(accept));
  const int client = os::socket(AF_INET, SOCK_STREAM, true);
  core::SocketAddress target = server;
  TestOp connect(OpCode::connect, client);
  connect.address = &target;
  backend.start(connect);
  run_until([&] { return accept.completions == 1; });
  ASSERT_GE(accept.result, 0);
  // The accepted socket is fully set up (SO_UPDATE_ACCEPT_CONTEXT): getpeername works.
  sockaddr_storage ss{};
  int length = sizeof ss;
  EXPECT_EQ(
      ::getpeername(static_cast<SOCKET>(accept.result), reinterpret_cast<sockaddr*>(&ss), &length),
      0);
  run_until([&] { return connect.completions == 1 || connect.state == OpState::completed; });
  EXPECT_EQ(connect.result, 0);
  backend.close(static_cast<core::NativeHandle>(accept.result));
  backend.close(client);
  backend.close(listener);
}

// Linux returns the part of a datagram that fit; Winsock fails with WSAEMSGSIZE after filling
// the buffer. The backend reports what Linux does.
TEST_F(IocpBackend, ATruncatedDatagramReturnsWhatFit) {
  const int receiver = bound_udp();
  const int sender = bound_udp();
  core::SocketAddress destination = local_address(receiver);
  std::string payload(100, 'd');
  TestOp send(OpCode::send_to, sender);
  send.buffer = payload.data();
  send.length = payload.size();
  send.address = &destination;
  run(send);
  ASSERT_EQ(send.result, 100);
  char small[10] = {};
  core::SocketAddress source;
  TestOp recv(OpCode::recv_from, receiver);
  recv.buffer = small;
  recv.length = sizeof small;
  recv.address = &source;
  run(recv);
  EXPECT_EQ(recv.result, 10);
  EXPECT_EQ(std::string(small, 10), std::string(10, 'd'));
  EXPECT_EQ(source, local_address(sender));
  backend.close(receiver);
  backend.close(sender);
}

// A send_to a port nobody listens on draws an ICMP "port unreachable"; Winsock would fail the
// NEXT receive on the socket with WSAECONNRESET, Linux reports nothing on an unconnected one.
TEST_F(IocpBackend, AnUnreachablePortDoesNotBreakTheNextReceive) {
  const int socket = bound_udp();
  int closed_fd = bound_udp();
  core::SocketAddress nowhere = local_address(closed_fd);
  os::close(closed_fd);
  char byte = 'x';
  TestOp send(OpCode::send_to, socket);
  send.buffer = &byte;
  send.length = 1;
  send.address = &nowhere;
  char buf[8] = {};
  core::SocketAddress source;
  // Associate first so the option is set before the ICMP can come back.
  TestOp recv(OpCode::recv_from, socket);
  recv.buffer = buf;
  recv.length = sizeof buf;
  recv.address = &source;
  ASSERT_FALSE(backend.start(recv));
  run(send);
  for (int i = 0; i < 5; ++i) backend.wait(10 * kMs);
  EXPECT_EQ(recv.completions, 0) << "result " << recv.result;
  const int other = bound_udp();
  core::SocketAddress here = local_address(socket);
  TestOp hello(OpCode::send_to, other);
  char h = 'h';
  hello.buffer = &h;
  hello.length = 1;
  hello.address = &here;
  run(hello);
  run_until([&] { return recv.completions == 1; });
  EXPECT_EQ(recv.result, 1);
  EXPECT_EQ(buf[0], 'h');
  backend.close(socket);
  backend.close(other);
}

TEST_F(IocpBackend, ReadAtEndOfFileIsZeroBytesNotAnError) {
  const int file = os::temp_file();
  ASSERT_GE(file, 0);
  char buf[4];
  TestOp read(OpCode::read_at, file);
  read.buffer = buf;
  read.length = sizeof buf;
  read.offset = 1 << 20;
  run(read);
  EXPECT_EQ(read.result, 0);
  EXPECT_EQ(read.state, OpState::completed);
  backend.close(file);
}

TEST_F(IocpBackend, WaitReadableOnAPipeSeesTheWriterGoAway) {
  int p[2];
  ASSERT_EQ(os::pipe(p), 0);
  TestOp readable(OpCode::wait_readable, p[0]);
  ASSERT_FALSE(backend.start(readable));
  os::close(p[1]);  // end of file is readable, as on POSIX
  run_until([&] { return readable.completions == 1; });
  EXPECT_EQ(readable.result, 0);
  EXPECT_EQ(readable.state, OpState::completed);
  backend.close(p[0]);
}

}  // namespace
}  // namespace corio

#endif  // CORIO_BACKEND_IOCP
