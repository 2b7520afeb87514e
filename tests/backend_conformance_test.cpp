// THE backend conformance suite: drives corio::SelectedBackend directly through
// core::Operation (start/cancel/wait/wake/close) with real sockets, pipes and files, so every
// backend (epoll, io_uring, ...) is held to the same contract from core/operation.hpp and
// core/backend.hpp. It must only assert what the contract promises: whether an operation
// completes inline (start() == true) or later is the backend's choice, so tests accept both.
// It must never depend on one backend's internals.
#include <array>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "corio/config.hpp"
#include "corio/core/backend.hpp"
#include "corio/core/operation.hpp"
#include "test_os.hpp"  // raw OS calls, spelled for POSIX and for Windows

namespace corio {
namespace {

using core::Nanos;
using core::OpCode;
using core::Operation;
using core::OpState;
using Backend = SelectedBackend;
namespace os = testing::os;

static_assert(core::Backend<Backend>);

constexpr Nanos kMs = 1'000'000;
constexpr auto kPatience = std::chrono::seconds(10);
constexpr std::uint64_t kCurrentPosition = ~std::uint64_t{0};

// An operation that counts its completions; the contract says exactly one per start() that
// returned false.
struct TestOp : Operation {
  int completions = 0;
  bool inline_done = false;

  explicit TestOp(OpCode op_code = OpCode::recv, int fd = -1) {
    code = op_code;
    handle = fd;
    on_complete = [](Operation* op) { ++static_cast<TestOp*>(op)->completions; };
  }
  bool done() const { return inline_done || completions > 0; }
};

// Owns a descriptor; closes it unless released (handed to backend.close, say).
class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  Fd(Fd&& other) noexcept : fd_(other.release()) {}
  Fd& operator=(Fd&& other) noexcept {
    reset(other.release());
    return *this;
  }
  ~Fd() { reset(); }
  int get() const { return fd_; }
  int release() { return std::exchange(fd_, -1); }
  void reset(int fd = -1) {
    if (fd_ >= 0) os::close(fd_);
    fd_ = fd;
  }

 private:
  int fd_ = -1;
};

std::pair<Fd, Fd> stream_pair() {
  int sv[2];
  EXPECT_EQ(os::stream_pair(sv), 0);
  return {Fd(sv[0]), Fd(sv[1])};
}

std::pair<Fd, Fd> nonblocking_pipe() {
  int p[2];
  EXPECT_EQ(os::pipe(p), 0);
  return {Fd(p[0]), Fd(p[1])};
}

core::SocketAddress loopback(std::uint16_t port = 0) {
  core::SocketAddress address;
  sockaddr_in in{};
  in.sin_family = AF_INET;
  in.sin_port = htons(port);
  in.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  std::memcpy(address.storage, &in, sizeof in);
  address.length = sizeof in;
  return address;
}

core::SocketAddress local_address(int fd) {
  core::SocketAddress address;
  socklen_t len = sizeof address.storage;
  EXPECT_EQ(::getsockname(fd, reinterpret_cast<sockaddr*>(address.storage), &len), 0);
  address.length = len;
  return address;
}

Fd bound_socket(int type) {
  Fd fd(os::socket(AF_INET, type, /*nonblocking=*/true));
  EXPECT_GE(fd.get(), 0);
  const core::SocketAddress address = loopback();
  EXPECT_EQ(::bind(fd.get(), reinterpret_cast<const sockaddr*>(address.storage), address.length),
            0);
  return fd;
}

std::uint16_t port_of(const core::SocketAddress& address) {
  sockaddr_in in{};
  std::memcpy(&in, address.storage, sizeof in);
  return ntohs(in.sin_port);
}

void write_all(int fd, const std::string& data) {
  ASSERT_EQ(os::write(fd, data.data(), data.size()), static_cast<ssize_t>(data.size()));
}

// Fills a socket's send buffer so the next send must wait.
void fill_send_buffer(int fd) {
  std::vector<char> chunk(65536, 'x');
  while (os::send_nowait(fd, chunk.data(), chunk.size()) > 0) {
  }
}

class BackendConformance : public ::testing::Test {
 protected:
  // Starts op, remembering whether it finished inline.
  bool start(TestOp& op) {
    op.inline_done = backend.start(op);
    if (op.inline_done) {
      EXPECT_EQ(op.state, OpState::completed);
    } else {
      EXPECT_TRUE(op.in_flight());
    }
    return op.inline_done;
  }

  // Waits (in short slices) until pred holds; fails the test after kPatience.
  bool run_until(const std::function<bool()>& pred) {
    const auto deadline = std::chrono::steady_clock::now() + kPatience;
    while (!pred()) {
      if (std::chrono::steady_clock::now() > deadline) {
        ADD_FAILURE() << "timed out waiting for the backend";
        return false;
      }
      completed_ += backend.wait(10 * kMs);
    }
    return true;
  }

  // Starts op and waits for it to finish either way.
  void run(TestOp& op) {
    start(op);
    run_until([&] { return op.done(); });
    EXPECT_LE(op.completions, 1);
  }

  // Lets the backend make progress without blocking for long.
  void pump(int rounds = 5) {
    for (int i = 0; i < rounds; ++i) completed_ += backend.wait(i == 0 ? 0 : kMs);
  }

  Backend backend;
  std::size_t completed_ = 0;
};

TEST_F(BackendConformance, StartsIdle) {
  EXPECT_FALSE(Backend::kName.empty());
  EXPECT_EQ(backend.in_flight(), 0u);
  EXPECT_EQ(backend.wait(0), 0u);
}

TEST_F(BackendConformance, WaitHonoursItsTimeout) {
  const auto before = std::chrono::steady_clock::now();
  EXPECT_EQ(backend.wait(30 * kMs), 0u);
  const auto took = std::chrono::steady_clock::now() - before;
  EXPECT_GE(took, std::chrono::milliseconds(20));  // generous: it must not return at once
  EXPECT_LT(took, std::chrono::seconds(5));
}

TEST_F(BackendConformance, WakeBeforeWaitMakesTheNextWaitReturn) {
  // A watchdog rescues a broken wake() so the test fails instead of hanging.
  std::atomic<bool> finished{false};
  std::thread watchdog([&] {
    for (int i = 0; i < 500 && !finished; ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    while (!finished) {
      backend.wake();
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  });
  backend.wake();
  const auto before = std::chrono::steady_clock::now();
  backend.wait(core::kNoDeadline);
  const auto took = std::chrono::steady_clock::now() - before;
  finished = true;
  watchdog.join();
  EXPECT_LT(took, std::chrono::seconds(4));
}

TEST_F(BackendConformance, WakeFromAnotherThreadInterruptsAnInfiniteWait) {
  auto [a, b] = stream_pair();
  TestOp recv(OpCode::recv, a.get());  // something in flight while waiting
  char buf[8];
  recv.buffer = buf;
  recv.length = sizeof buf;
  ASSERT_FALSE(start(recv));
  std::atomic<bool> finished{false};
  std::thread waker([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    while (!finished) {
      backend.wake();
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  });
  const auto before = std::chrono::steady_clock::now();
  EXPECT_EQ(backend.wait(core::kNoDeadline), 0u);
  const auto took = std::chrono::steady_clock::now() - before;
  finished = true;
  waker.join();
  EXPECT_LT(took, std::chrono::seconds(4));
  EXPECT_EQ(recv.completions, 0);
  backend.cancel(recv);
  run_until([&] { return recv.done(); });
}

TEST_F(BackendConformance, ManyWakesDoNotLeaveTheBackendSpinning) {
  for (int i = 0; i < 100; ++i) backend.wake();
  backend.wait(core::kNoDeadline);
  pump();
  const auto before = std::chrono::steady_clock::now();
  backend.wait(30 * kMs);
  EXPECT_GE(std::chrono::steady_clock::now() - before, std::chrono::milliseconds(20));
}

TEST_F(BackendConformance, RecvWaitsForDataThenCompletesOnce) {
  auto [a, b] = stream_pair();
  char buf[16] = {};
  TestOp op(OpCode::recv, a.get());
  op.buffer = buf;
  op.length = sizeof buf;
  ASSERT_FALSE(start(op));  // no data yet: nobody can answer inline
  EXPECT_EQ(backend.in_flight(), 1u);
  pump();
  EXPECT_EQ(op.completions, 0);
  EXPECT_TRUE(op.in_flight());
  write_all(b.get(), "hello");
  run_until([&] { return op.done(); });
  EXPECT_EQ(op.completions, 1);
  EXPECT_EQ(op.state, OpState::completed);
  EXPECT_EQ(op.result, 5);
  EXPECT_EQ(std::string(buf, 5), "hello");
  EXPECT_EQ(backend.in_flight(), 0u);
  EXPECT_EQ(completed_, 1u);
  pump();
  EXPECT_EQ(op.completions, 1);  // never twice
}

TEST_F(BackendConformance, RecvWithDataAlreadyThere) {
  auto [a, b] = stream_pair();
  write_all(b.get(), "ready");
  char buf[16] = {};
  TestOp op(OpCode::recv, a.get());
  op.buffer = buf;
  op.length = sizeof buf;
  run(op);
  EXPECT_EQ(op.result, 5);
  EXPECT_EQ(std::string(buf, 5), "ready");
  EXPECT_EQ(backend.in_flight(), 0u);
}

TEST_F(BackendConformance, RecvSeesEndOfStream) {
  auto [a, b] = stream_pair();
  char buf[4];
  TestOp op(OpCode::recv, a.get());
  op.buffer = buf;
  op.length = sizeof buf;
  start(op);
  os::shutdown_write(b.get());
  run_until([&] { return op.done(); });
  EXPECT_EQ(op.result, 0);
  EXPECT_EQ(op.state, OpState::completed);
}

// A short read may tell a backend the stream is empty (epoll then skips the next recv's
// syscall and waits for an edge); data and end of stream arriving after it must still be seen,
// including an end of stream that was already there behind the short read's bytes.
TEST_F(BackendConformance, ShortReadsThenLaterDataAndEndOfStream) {
  auto [a, b] = stream_pair();
  char buf[16] = {};
  auto recv_once = [&]() {
    TestOp op(OpCode::recv, a.get());
    op.buffer = buf;
    op.length = sizeof buf;
    run(op);
    EXPECT_EQ(op.state, OpState::completed);
    return op.result > 0 ? std::string(buf, static_cast<std::size_t>(op.result))
                         : std::to_string(op.result);
  };
  write_all(b.get(), "ab");
  EXPECT_EQ(recv_once(), "ab");
  TestOp waiting(OpCode::recv, a.get());
  waiting.buffer = buf;
  waiting.length = sizeof buf;
  start(waiting);
  pump();
  write_all(b.get(), "cd");
  run_until([&] { return waiting.done(); });
  EXPECT_EQ(waiting.result, 2);
  write_all(b.get(), "ef");
  os::shutdown_write(b.get());
  pump();
  EXPECT_EQ(recv_once(), "ef");  // short, with the end of stream queued behind it
  EXPECT_EQ(recv_once(), "0");
  EXPECT_EQ(recv_once(), "0");
}

// Datagram sockets return one datagram per recv, short or not: a short one says nothing about
// what else is queued.
TEST_F(BackendConformance, ShortDatagramReadsDoNotHideQueuedDatagrams) {
  Fd receiver = bound_socket(SOCK_DGRAM);
  Fd sender = bound_socket(SOCK_DGRAM);
  core::SocketAddress destination = local_address(receiver.get());
  char buf[64] = {};
  TestOp first(OpCode::recv, receiver.get());
  first.buffer = buf;
  first.length = sizeof buf;
  start(first);
  for (std::string payload : {"one", "two"}) {
    TestOp send(OpCode::send_to, sender.get());
    send.buffer = payload.data();
    send.length = payload.size();
    send.address = &destination;
    run(send);
    EXPECT_EQ(send.result, 3);
  }
  run_until([&] { return first.done(); });
  EXPECT_EQ(first.result, 3);
  EXPECT_EQ(std::string(buf, 3), "one");
  TestOp second(OpCode::recv, receiver.get());
  second.buffer = buf;
  second.length = sizeof buf;
  run(second);  // no new datagram, so no new edge: it must not wait for one
  EXPECT_EQ(second.result, 3);
  EXPECT_EQ(std::string(buf, 3), "two");
}

TEST_F(BackendConformance, LargeTransferKeepsEveryByteInOrder) {
  auto [a, b] = stream_pair();
  std::string data(1 << 20, '\0');
  for (std::size_t i = 0; i < data.size(); ++i) data[i] = static_cast<char>(i * 131 + (i >> 9));
  std::string received;
  std::size_t sent = 0;
  std::vector<char> buf(7000);
  TestOp send(OpCode::send, a.get());
  TestOp recv(OpCode::recv, b.get());
  bool send_busy = false;
  bool recv_busy = false;
  const auto deadline = std::chrono::steady_clock::now() + kPatience;
  while (received.size() < data.size() && std::chrono::steady_clock::now() < deadline) {
    if (!send_busy && sent < data.size()) {
      send = TestOp(OpCode::send, a.get());
      send.buffer = data.data() + sent;
      send.length = data.size() - sent;
      send_busy = !start(send);
      if (!send_busy) {
        ASSERT_GT(send.result, 0);
        sent += static_cast<std::size_t>(send.result);
      }
    }
    if (!recv_busy) {
      recv = TestOp(OpCode::recv, b.get());
      recv.buffer = buf.data();
      recv.length = buf.size();
      recv_busy = !start(recv);
      if (!recv_busy) {
        ASSERT_GT(recv.result, 0);
        received.append(buf.data(), static_cast<std::size_t>(recv.result));
      }
    }
    backend.wait(recv_busy ? 10 * kMs : 0);  // an inline recv may have made room: go on
    if (send_busy && send.completions > 0) {
      ASSERT_GT(send.result, 0);
      sent += static_cast<std::size_t>(send.result);
      send_busy = false;
    }
    if (recv_busy && recv.completions > 0) {
      ASSERT_GT(recv.result, 0);
      received.append(buf.data(), static_cast<std::size_t>(recv.result));
      recv_busy = false;
    }
  }
  ASSERT_EQ(received.size(), data.size());
  EXPECT_TRUE(received == data);
  EXPECT_EQ(sent, data.size());
}

TEST_F(BackendConformance, AcceptAndConnectOverTcp) {
  Fd listener = bound_socket(SOCK_STREAM);
  ASSERT_EQ(::listen(listener.get(), 8), 0);
  core::SocketAddress server = local_address(listener.get());

  core::SocketAddress peer;
  TestOp accept(OpCode::accept, listener.get());
  accept.address = &peer;
  ASSERT_FALSE(start(accept));  // nobody is connecting yet

  Fd client(os::socket(AF_INET, SOCK_STREAM, /*nonblocking=*/true));
  TestOp connect(OpCode::connect, client.get());
  connect.address = &server;
  start(connect);
  run_until([&] { return accept.done() && connect.done(); });
  EXPECT_EQ(connect.result, 0);
  EXPECT_EQ(connect.state, OpState::completed);
  ASSERT_GE(accept.result, 0);
  Fd accepted(static_cast<int>(accept.result));
  EXPECT_TRUE(os::is_nonblocking(accepted.get()));
  EXPECT_TRUE(os::is_cloexec(accepted.get()));
  EXPECT_EQ(peer.length, sizeof(sockaddr_in));
  EXPECT_EQ(port_of(peer), port_of(local_address(client.get())));

  // The pair is really connected.
  write_all(client.get(), "ping");
  char buf[8] = {};
  TestOp recv(OpCode::recv, accepted.get());
  recv.buffer = buf;
  recv.length = sizeof buf;
  run(recv);
  EXPECT_EQ(recv.result, 4);
  EXPECT_EQ(std::string(buf, 4), "ping");
}

TEST_F(BackendConformance, AcceptWithoutAddress) {
  Fd listener = bound_socket(SOCK_STREAM);
  ASSERT_EQ(::listen(listener.get(), 8), 0);
  core::SocketAddress server = local_address(listener.get());
  Fd client(os::socket(AF_INET, SOCK_STREAM, /*nonblocking=*/false));
  ASSERT_EQ(::connect(client.get(), reinterpret_cast<sockaddr*>(server.storage), server.length), 0);
  TestOp accept(OpCode::accept, listener.get());
  run(accept);
  ASSERT_GE(accept.result, 0);
  os::close(static_cast<int>(accept.result));
}

TEST_F(BackendConformance, ConnectToAClosedPortIsRefused) {
  core::SocketAddress closed;
  {
    Fd probe = bound_socket(SOCK_STREAM);  // bound, never listening: nothing accepts there
    closed = local_address(probe.get());
  }
  Fd client(os::socket(AF_INET, SOCK_STREAM, /*nonblocking=*/true));
  TestOp connect(OpCode::connect, client.get());
  connect.address = &closed;
  run(connect);
  EXPECT_EQ(connect.result, -ECONNREFUSED);
  EXPECT_EQ(connect.state, OpState::completed);
}

TEST_F(BackendConformance, DatagramSendToAndRecvFrom) {
  Fd receiver = bound_socket(SOCK_DGRAM);
  Fd sender = bound_socket(SOCK_DGRAM);
  core::SocketAddress destination = local_address(receiver.get());

  char buf[32] = {};
  core::SocketAddress source;
  TestOp recv(OpCode::recv_from, receiver.get());
  recv.buffer = buf;
  recv.length = sizeof buf;
  recv.address = &source;
  ASSERT_FALSE(start(recv));

  std::string payload = "datagram";
  TestOp send(OpCode::send_to, sender.get());
  send.buffer = payload.data();
  send.length = payload.size();
  send.address = &destination;
  start(send);
  run_until([&] { return recv.done() && send.done(); });
  EXPECT_EQ(send.result, static_cast<std::int64_t>(payload.size()));
  EXPECT_EQ(recv.result, static_cast<std::int64_t>(payload.size()));
  EXPECT_EQ(std::string(buf, payload.size()), payload);
  EXPECT_EQ(source, local_address(sender.get()));
}

TEST_F(BackendConformance, ScatterGatherMessagesWithAddress) {
  Fd receiver = bound_socket(SOCK_DGRAM);
  Fd sender = bound_socket(SOCK_DGRAM);
  core::SocketAddress destination = local_address(receiver.get());

  char r1[3] = {}, r2[16] = {};
  core::IoBuffer in[] = {{r1, sizeof r1}, {r2, sizeof r2}};
  core::SocketAddress source;
  TestOp recv(OpCode::recv_msg, receiver.get());
  recv.buffers = in;
  recv.buffer_count = 2;
  recv.address = &source;
  ASSERT_FALSE(start(recv));

  std::string s1 = "scat", s2 = "ter-", s3 = "gather";
  core::IoBuffer out[] = {{s1.data(), s1.size()}, {s2.data(), s2.size()}, {s3.data(), s3.size()}};
  TestOp send(OpCode::send_msg, sender.get());
  send.buffers = out;
  send.buffer_count = 3;
  send.address = &destination;
  start(send);
  run_until([&] { return recv.done() && send.done(); });
  EXPECT_EQ(send.result, 14);
  ASSERT_EQ(recv.result, 14);
  EXPECT_EQ(std::string(r1, 3) + std::string(r2, 11), "scatter-gather");
  EXPECT_EQ(source, local_address(sender.get()));
}

TEST_F(BackendConformance, ScatterGatherOnAStreamWithoutAddress) {
  auto [a, b] = stream_pair();
  std::string s1 = "abc", s2 = "defgh";
  core::IoBuffer out[] = {{s1.data(), s1.size()}, {s2.data(), s2.size()}};
  TestOp send(OpCode::send_msg, a.get());
  send.buffers = out;
  send.buffer_count = 2;
  run(send);
  EXPECT_EQ(send.result, 8);

  char r1[2], r2[6];
  core::IoBuffer in[] = {{r1, sizeof r1}, {r2, sizeof r2}};
  TestOp recv(OpCode::recv_msg, b.get());
  recv.buffers = in;
  recv.buffer_count = 2;
  run(recv);
  ASSERT_EQ(recv.result, 8);
  EXPECT_EQ(std::string(r1, 2) + std::string(r2, 6), "abcdefgh");
}

TEST_F(BackendConformance, FileReadAtAndWriteAtUseTheOffset) {
  Fd file(os::temp_file());  // already unlinked
  ASSERT_GE(file.get(), 0);

  std::string text = "hello";
  TestOp write(OpCode::write_at, file.get());
  write.buffer = text.data();
  write.length = text.size();
  write.offset = 100;
  run(write);
  EXPECT_EQ(write.result, 5);

  char buf[8] = {};
  TestOp read(OpCode::read_at, file.get());
  read.buffer = buf;
  read.length = sizeof buf;
  read.offset = 100;
  run(read);
  EXPECT_EQ(read.result, 5);
  EXPECT_EQ(std::string(buf, 5), "hello");

  TestOp hole(OpCode::read_at, file.get());  // before the data: zeros
  hole.buffer = buf;
  hole.length = 4;
  hole.offset = 10;
  run(hole);
  EXPECT_EQ(hole.result, 4);
  EXPECT_EQ(std::string(buf, 4), std::string(4, '\0'));

  TestOp eof(OpCode::read_at, file.get());
  eof.buffer = buf;
  eof.length = sizeof buf;
  eof.offset = 4096;
  run(eof);
  EXPECT_EQ(eof.result, 0);
  EXPECT_EQ(os::lseek(file.get(), 0, SEEK_CUR), 0);  // positional I/O leaves the offset alone
}

TEST_F(BackendConformance, FileReadAtCurrentPositionAdvancesIt) {
  Fd file(os::temp_file());  // already unlinked
  ASSERT_GE(file.get(), 0);
  write_all(file.get(), "0123456789");
  ASSERT_EQ(os::lseek(file.get(), 2, SEEK_SET), 2);
  char buf[4] = {};
  TestOp read(OpCode::read_at, file.get());
  read.buffer = buf;
  read.length = sizeof buf;
  read.offset = kCurrentPosition;
  run(read);
  EXPECT_EQ(read.result, 4);
  EXPECT_EQ(std::string(buf, 4), "2345");
  EXPECT_EQ(os::lseek(file.get(), 0, SEEK_CUR), 6);
}

TEST_F(BackendConformance, PipeReadAtCurrentPositionWaitsForTheWriter) {
  auto [r, w] = nonblocking_pipe();
  char buf[16] = {};
  TestOp read(OpCode::read_at, r.get());
  read.buffer = buf;
  read.length = sizeof buf;
  read.offset = kCurrentPosition;
  ASSERT_FALSE(start(read));
  pump();
  EXPECT_EQ(read.completions, 0);  // -EAGAIN is never a result: it waits

  std::string text = "through the pipe";
  TestOp write(OpCode::write_at, w.get());
  write.buffer = text.data();
  write.length = text.size();
  write.offset = kCurrentPosition;
  start(write);
  run_until([&] { return read.done() && write.done(); });
  EXPECT_EQ(write.result, static_cast<std::int64_t>(text.size()));
  EXPECT_EQ(read.result, static_cast<std::int64_t>(text.size()));
  EXPECT_EQ(std::string(buf, text.size()), text);
}

TEST_F(BackendConformance, PipeWriteWaitsWhileThePipeIsFull) {
  auto [r, w] = nonblocking_pipe();
  std::vector<char> chunk(65536, 'p');
  while (os::write(w.get(), chunk.data(), chunk.size()) > 0) {
  }
  std::string text = "late";
  TestOp write(OpCode::write_at, w.get());
  write.buffer = text.data();
  write.length = text.size();
  write.offset = kCurrentPosition;
  ASSERT_FALSE(start(write));
  pump();
  EXPECT_EQ(write.completions, 0);
  std::vector<char> sink(1 << 20);
  while (os::read(r.get(), sink.data(), sink.size()) > 0) {
  }
  run_until([&] { return write.done(); });
  EXPECT_EQ(write.result, 4);
}

TEST_F(BackendConformance, WaitReadableAndWritable) {
  auto [a, b] = stream_pair();
  TestOp writable(OpCode::wait_writable, a.get());
  run(writable);
  EXPECT_EQ(writable.result, 0);
  EXPECT_EQ(writable.state, OpState::completed);

  TestOp readable(OpCode::wait_readable, a.get());
  ASSERT_FALSE(start(readable));
  pump();
  EXPECT_EQ(readable.completions, 0);
  write_all(b.get(), "x");
  run_until([&] { return readable.done(); });
  EXPECT_EQ(readable.result, 0);
  char c = 0;
  EXPECT_EQ(os::read(a.get(), &c, 1), 1);  // waiting consumed nothing
  EXPECT_EQ(c, 'x');
}

TEST_F(BackendConformance, WaitWritableWaitsForRoom) {
  auto [a, b] = stream_pair();
  fill_send_buffer(a.get());
  TestOp writable(OpCode::wait_writable, a.get());
  ASSERT_FALSE(start(writable));
  pump();
  EXPECT_EQ(writable.completions, 0);
  std::vector<char> sink(1 << 20);
  while (os::read(b.get(), sink.data(), sink.size()) > 0) {
  }
  run_until([&] { return writable.done(); });
  EXPECT_EQ(writable.result, 0);
}

TEST_F(BackendConformance, CancelAPendingRecv) {
  auto [a, b] = stream_pair();
  char buf[8] = {};
  TestOp op(OpCode::recv, a.get());
  op.buffer = buf;
  op.length = sizeof buf;
  ASSERT_FALSE(start(op));
  backend.cancel(op);
  EXPECT_TRUE(op.state == OpState::cancel_requested || op.state == OpState::cancelled);
  run_until([&] { return op.done(); });
  EXPECT_EQ(op.completions, 1);
  EXPECT_EQ(op.state, OpState::cancelled);
  EXPECT_EQ(op.result, -ECANCELED);
  EXPECT_EQ(backend.in_flight(), 0u);

  // The cancelled op consumed nothing and wrote nothing.
  write_all(b.get(), "abc");
  pump();
  EXPECT_EQ(op.completions, 1);
  EXPECT_EQ(std::string(buf, 3), std::string(3, '\0'));
  char again[8] = {};
  TestOp next(OpCode::recv, a.get());
  next.buffer = again;
  next.length = sizeof again;
  run(next);
  EXPECT_EQ(next.result, 3);
  EXPECT_EQ(std::string(again, 3), "abc");
}

TEST_F(BackendConformance, CancelAfterCompletionChangesNothing) {
  auto [a, b] = stream_pair();
  write_all(b.get(), "done");
  char buf[8];
  TestOp op(OpCode::recv, a.get());
  op.buffer = buf;
  op.length = sizeof buf;
  run(op);
  const int completions = op.completions;
  backend.cancel(op);
  pump();
  EXPECT_EQ(op.completions, completions);
  EXPECT_EQ(op.state, OpState::completed);
  EXPECT_EQ(op.result, 4);
}

TEST_F(BackendConformance, CancelTwiceCompletesOnce) {
  auto [a, b] = stream_pair();
  TestOp op(OpCode::wait_readable, a.get());
  ASSERT_FALSE(start(op));
  backend.cancel(op);
  backend.cancel(op);
  run_until([&] { return op.done(); });
  pump();
  EXPECT_EQ(op.completions, 1);
  EXPECT_EQ(op.state, OpState::cancelled);
}

// Data is already there when the cancel is asked for: either outcome is allowed, but it
// must be a consistent one. Completed means the data was delivered; cancelled means it was
// left in the socket.
TEST_F(BackendConformance, CancelRacingACompletionHasOneConsistentWinner) {
  int cancelled = 0;
  int completed = 0;
  for (int round = 0; round < 100; ++round) {
    auto [a, b] = stream_pair();
    char buf[8] = {};
    TestOp op(OpCode::recv, a.get());
    op.buffer = buf;
    op.length = sizeof buf;
    const bool was_inline = start(op);
    // Vary who gets there first: data before the request is even submitted, data arriving at
    // an armed request just before the cancel, and a cancel sent before the data.
    if (round % 3 != 0) pump(1);
    if (round % 3 != 2) write_all(b.get(), "race");
    backend.cancel(op);
    if (round % 3 == 2) write_all(b.get(), "race");
    run_until([&] { return op.done(); });
    pump(1);
    ASSERT_LE(op.completions, 1);
    ASSERT_TRUE(was_inline || op.completions == 1);
    if (op.state == OpState::cancelled) {
      ++cancelled;
      ASSERT_EQ(op.result, -ECANCELED);
      char left[8];
      ASSERT_EQ(os::read(a.get(), left, sizeof left), 4);
    } else {
      ++completed;
      ASSERT_EQ(op.state, OpState::completed);
      ASSERT_EQ(op.result, 4);
      ASSERT_EQ(std::string(buf, 4), "race");
      char left[8];
      ASSERT_EQ(os::read(a.get(), left, sizeof left), -1);
      ASSERT_EQ(errno, EAGAIN);
    }
  }
  EXPECT_EQ(cancelled + completed, 100);
  RecordProperty("cancelled", cancelled);
}

TEST_F(BackendConformance, EveryWaitingOpCodeCanBeCancelled) {
  Fd listener = bound_socket(SOCK_STREAM);
  ASSERT_EQ(::listen(listener.get(), 8), 0);
  Fd datagram = bound_socket(SOCK_DGRAM);
  auto [a, b] = stream_pair();
  auto [full, drain] = stream_pair();
  fill_send_buffer(full.get());
  auto [r, w] = nonblocking_pipe();

  char buf[16];
  char buf2[16];
  core::IoBuffer iov[] = {{buf2, sizeof buf2}};
  core::SocketAddress address;
  std::string text = "x";

  std::vector<std::unique_ptr<TestOp>> ops;
  auto add = [&](OpCode code, int fd) -> TestOp& {
    ops.push_back(std::make_unique<TestOp>(code, fd));
    return *ops.back();
  };
  add(OpCode::accept, listener.get()).address = &address;
  TestOp& recv = add(OpCode::recv, a.get());
  recv.buffer = buf;
  recv.length = sizeof buf;
  TestOp& recv_from = add(OpCode::recv_from, datagram.get());
  recv_from.buffer = buf;
  recv_from.length = sizeof buf;
  recv_from.address = &address;
  TestOp& recv_msg = add(OpCode::recv_msg, b.get());
  recv_msg.buffers = iov;
  recv_msg.buffer_count = 1;
  TestOp& send = add(OpCode::send, full.get());
  send.buffer = text.data();
  send.length = text.size();
  TestOp& read = add(OpCode::read_at, r.get());
  read.buffer = buf;
  read.length = sizeof buf;
  read.offset = kCurrentPosition;
  add(OpCode::wait_readable, r.get());
  add(OpCode::wait_writable, full.get());

  for (auto& op : ops) ASSERT_FALSE(start(*op)) << static_cast<int>(op->code);
  EXPECT_EQ(backend.in_flight(), ops.size());
  pump();
  for (auto& op : ops) EXPECT_EQ(op->completions, 0) << static_cast<int>(op->code);
  for (auto& op : ops) backend.cancel(*op);
  run_until([&] {
    for (auto& op : ops)
      if (!op->done()) return false;
    return true;
  });
  for (auto& op : ops) {
    EXPECT_EQ(op->completions, 1) << static_cast<int>(op->code);
    EXPECT_EQ(op->state, OpState::cancelled) << static_cast<int>(op->code);
    EXPECT_EQ(op->result, -ECANCELED) << static_cast<int>(op->code);
  }
  EXPECT_EQ(backend.in_flight(), 0u);
}

TEST_F(BackendConformance, CloseCancelsEveryOpOnThatHandleOnly) {
  auto [a, peer_of_a] = stream_pair();
  auto [other, peer_of_other] = stream_pair();
  char buf[8], buf2[8];
  TestOp recv(OpCode::recv, a.get());
  recv.buffer = buf;
  recv.length = sizeof buf;
  TestOp readable(OpCode::wait_readable, a.get());
  TestOp unrelated(OpCode::recv, other.get());
  unrelated.buffer = buf2;
  unrelated.length = sizeof buf2;
  ASSERT_FALSE(start(recv));
  ASSERT_FALSE(start(readable));
  ASSERT_FALSE(start(unrelated));

  const int fd = a.release();
  backend.close(fd);
  EXPECT_TRUE(os::is_closed(fd));  // closed by the time close() returns
  run_until([&] { return recv.done() && readable.done(); });
  EXPECT_EQ(recv.state, OpState::cancelled);
  EXPECT_EQ(recv.result, -ECANCELED);
  EXPECT_EQ(readable.state, OpState::cancelled);
  EXPECT_EQ(recv.completions, 1);
  EXPECT_EQ(readable.completions, 1);

  // The peer sees the end of the stream once the backend let go of the socket.
  char c;
  run_until([&] { return os::read(peer_of_a.get(), &c, 1) == 0; });

  EXPECT_EQ(unrelated.completions, 0);
  EXPECT_EQ(backend.in_flight(), 1u);
  write_all(peer_of_other.get(), "still");
  run_until([&] { return unrelated.done(); });
  EXPECT_EQ(unrelated.result, 5);
  EXPECT_EQ(backend.in_flight(), 0u);
}

TEST_F(BackendConformance, CloseWithNothingInFlightClosesTheHandle) {
  auto [a, b] = stream_pair();
  const int fd = a.release();
  backend.close(fd);
  EXPECT_TRUE(os::is_closed(fd));
  char c;
  EXPECT_EQ(os::read(b.get(), &c, 1), 0);
  backend.close(-1);  // harmless
}

TEST_F(BackendConformance, AHandleNumberReusedAfterCloseStartsClean) {
  auto [a, b] = stream_pair();
  TestOp old(OpCode::wait_readable, a.get());
  ASSERT_FALSE(start(old));
  const int number = a.release();
  backend.close(number);
  auto [c, d] = stream_pair();  // likely gets the same number back
  TestOp fresh(OpCode::wait_readable, c.get());
  start(fresh);
  run_until([&] { return old.done(); });
  EXPECT_EQ(old.state, OpState::cancelled);
  pump();
  EXPECT_EQ(fresh.completions, 0);  // not caught by the old handle's cancellation
  write_all(d.get(), "!");
  run_until([&] { return fresh.done(); });
  EXPECT_EQ(fresh.state, OpState::completed);
  EXPECT_EQ(fresh.result, 0);
}

TEST_F(BackendConformance, InvalidHandles) {
  TestOp negative(OpCode::recv, -1);
  char buf[4];
  negative.buffer = buf;
  negative.length = sizeof buf;
  run(negative);
  EXPECT_EQ(negative.result, -EBADF);
  EXPECT_EQ(negative.state, OpState::completed);

  int stale;
  {
    auto [a, b] = stream_pair();
    stale = a.get();
  }  // closed: the number names nothing now
  TestOp closed(OpCode::recv, stale);
  closed.buffer = buf;
  closed.length = sizeof buf;
  run(closed);
  EXPECT_EQ(closed.result, -EBADF);
  EXPECT_EQ(backend.in_flight(), 0u);
}

TEST_F(BackendConformance, SendToAClosedPeerIsEpipeNotSigpipe) {
  auto [a, b] = stream_pair();
  b.reset();
  std::string text = "nobody";
  TestOp send(OpCode::send, a.get());
  send.buffer = text.data();
  send.length = text.size();
  run(send);  // a SIGPIPE would kill the test binary here
  EXPECT_EQ(send.result, -EPIPE);
  EXPECT_EQ(send.state, OpState::completed);
}

TEST_F(BackendConformance, ThousandsOfWaitersOnOneHandle) {
  auto [a, b] = stream_pair();
  std::vector<TestOp> ops(3000, TestOp(OpCode::wait_readable, a.get()));
  for (TestOp& op : ops) ASSERT_FALSE(start(op));
  EXPECT_EQ(backend.in_flight(), ops.size());
  pump();
  write_all(b.get(), "!");
  run_until([&] { return backend.in_flight() == 0; });
  for (TestOp& op : ops) {
    ASSERT_EQ(op.completions, 1);
    ASSERT_EQ(op.result, 0);
  }
}

TEST_F(BackendConformance, ManyHandlesCompleteInOneWait) {
  constexpr int kPairs = 64;
  std::vector<std::pair<Fd, Fd>> pairs;
  std::vector<std::unique_ptr<TestOp>> ops;
  std::vector<std::array<char, 8>> bufs(kPairs);
  for (int i = 0; i < kPairs; ++i) {
    pairs.push_back(stream_pair());
    ops.push_back(std::make_unique<TestOp>(OpCode::recv, pairs.back().first.get()));
    ops.back()->buffer = bufs[static_cast<std::size_t>(i)].data();
    ops.back()->length = 8;
    ASSERT_FALSE(start(*ops.back()));
  }
  for (int i = 0; i < kPairs; ++i)
    write_all(pairs[static_cast<std::size_t>(i)].second.get(), std::to_string(i));
  run_until([&] { return backend.in_flight() == 0; });
  EXPECT_EQ(completed_, static_cast<std::size_t>(kPairs));  // wait() counts what it completed
  for (int i = 0; i < kPairs; ++i) {
    const std::string expected = std::to_string(i);
    EXPECT_EQ(ops[static_cast<std::size_t>(i)]->result, static_cast<std::int64_t>(expected.size()));
    EXPECT_EQ(std::string(bufs[static_cast<std::size_t>(i)].data(), expected.size()), expected);
  }
}

TEST_F(BackendConformance, PingPongThousandRounds) {
  auto [a, b] = stream_pair();
  char ping = 0, pong = 0;
  for (int round = 0; round < 1000; ++round) {
    TestOp recv(OpCode::recv, b.get());
    recv.buffer = &pong;
    recv.length = 1;
    start(recv);
    ping = static_cast<char>(round);
    TestOp send(OpCode::send, a.get());
    send.buffer = &ping;
    send.length = 1;
    start(send);
    run_until([&] { return recv.done() && send.done(); });
    ASSERT_EQ(recv.result, 1);
    ASSERT_EQ(pong, static_cast<char>(round));
  }
  EXPECT_EQ(backend.in_flight(), 0u);
}

}  // namespace
}  // namespace corio
