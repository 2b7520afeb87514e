// asyncio's exception vocabulary, in C++.
// CancelledError and KeyboardInterrupt deliberately do NOT derive from std::exception: like
// Python's BaseException, a `catch (const std::exception&)` written for ordinary errors must
// never swallow a cancellation. Everything else derives from a standard exception type.
// This file must never depend on a platform header.
#pragma once

#include <exception>
#include <stdexcept>
#include <string>
#include <system_error>
#include <utility>

namespace corio {

// Root of the exceptions that are not errors (Python's BaseException minus Exception).
class BaseException {
 public:
  explicit BaseException(std::string message) : message_(std::move(message)) {}
  virtual ~BaseException() = default;
  virtual const char* what() const noexcept { return message_.c_str(); }
  const std::string& message() const noexcept { return message_; }

 private:
  std::string message_;
};

// Delivered at a task's suspension point when the task is cancelled.
class CancelledError : public BaseException {
 public:
  explicit CancelledError(std::string message = {}) : BaseException(std::move(message)) {}
};

// Raised in the main task when SIGINT arrives under Runner, as asyncio does.
class KeyboardInterrupt : public BaseException {
 public:
  KeyboardInterrupt() : BaseException("KeyboardInterrupt") {}
};

class RuntimeError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class NotImplementedError : public RuntimeError {
 public:
  using RuntimeError::RuntimeError;
};

class ValueError : public std::invalid_argument {
 public:
  using std::invalid_argument::invalid_argument;
};

class TypeError : public std::invalid_argument {
 public:
  using std::invalid_argument::invalid_argument;
};

// An operation on a Future (or Task) that is not allowed in its current state.
class InvalidStateError : public std::logic_error {
 public:
  using std::logic_error::logic_error;
};

// OSError keeps the errno (or Windows error) it came from; subclasses mirror Python's.
class OSError : public std::system_error {
 public:
  OSError(int error_number, const std::string& what)
      : std::system_error(error_number, std::generic_category(), what) {}
  OSError(std::error_code code, const std::string& what) : std::system_error(code, what) {}
  int error_number() const noexcept { return code().value(); }
};

#define CORIO_OS_ERROR_SUBCLASS(Name, Base) \
  class Name : public Base {                \
   public:                                  \
    using Base::Base;                       \
  }

CORIO_OS_ERROR_SUBCLASS(TimeoutError, OSError);
CORIO_OS_ERROR_SUBCLASS(ConnectionError, OSError);
CORIO_OS_ERROR_SUBCLASS(BrokenPipeError, ConnectionError);
CORIO_OS_ERROR_SUBCLASS(ConnectionAbortedError, ConnectionError);
CORIO_OS_ERROR_SUBCLASS(ConnectionRefusedError, ConnectionError);
CORIO_OS_ERROR_SUBCLASS(ConnectionResetError, ConnectionError);
CORIO_OS_ERROR_SUBCLASS(FileNotFoundError, OSError);
CORIO_OS_ERROR_SUBCLASS(FileExistsError, OSError);
CORIO_OS_ERROR_SUBCLASS(PermissionError, OSError);
CORIO_OS_ERROR_SUBCLASS(InterruptedError, OSError);
CORIO_OS_ERROR_SUBCLASS(BlockingIOError, OSError);
CORIO_OS_ERROR_SUBCLASS(ProcessLookupError, OSError);
CORIO_OS_ERROR_SUBCLASS(ChildProcessError, OSError);
CORIO_OS_ERROR_SUBCLASS(IsADirectoryError, OSError);
CORIO_OS_ERROR_SUBCLASS(NotADirectoryError, OSError);
// Name resolution failures (socket.gaierror); the code is the EAI_* value.
CORIO_OS_ERROR_SUBCLASS(GaiError, OSError);

#undef CORIO_OS_ERROR_SUBCLASS

// Throws the OSError subclass Python would raise for this errno value (a positive number).
[[noreturn]] void throw_os_error(int error_number, const std::string& context);

// Queue, stream and barrier errors.
class QueueEmpty : public std::runtime_error {
 public:
  QueueEmpty() : std::runtime_error("queue is empty") {}
};
class QueueFull : public std::runtime_error {
 public:
  QueueFull() : std::runtime_error("queue is full") {}
};
class QueueShutDown : public std::runtime_error {
 public:
  QueueShutDown() : std::runtime_error("queue is shut down") {}
};
class BrokenBarrierError : public RuntimeError {
 public:
  BrokenBarrierError() : RuntimeError("barrier is broken") {}
};
class LimitOverrunError : public std::runtime_error {
 public:
  LimitOverrunError(const std::string& message, std::size_t consumed)
      : std::runtime_error(message), consumed_(consumed) {}
  std::size_t consumed() const noexcept { return consumed_; }

 private:
  std::size_t consumed_;
};
// EOFError twin: the stream ended before `expected` bytes; `partial` holds what did arrive.
class IncompleteReadError : public std::runtime_error {
 public:
  IncompleteReadError(std::string partial, std::size_t expected)
      : std::runtime_error(std::to_string(partial.size()) + " bytes read on a total of " +
                           std::to_string(expected) + " expected bytes"),
        partial_(std::move(partial)),
        expected_(expected) {}
  const std::string& partial() const noexcept { return partial_; }
  std::size_t expected() const noexcept { return expected_; }

 private:
  std::string partial_;
  std::size_t expected_;
};

}  // namespace corio
