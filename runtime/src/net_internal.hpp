// Private helpers shared by corio's networking sources (never installed, never included by
// a public header): the registry of open loops, errno-to-exception helpers, and the byte
// buffer streams read into. Nothing here may block or touch a loop it has not checked is open.
#pragma once

#include <absl/functional/function_ref.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <exception>
#include <memory>
#include <string>
#include <string_view>

#include "corio/core/errors.hpp"

namespace corio {
class EventLoop;
namespace detail {

// --- loops that are still open -------------------------------------------------------
// A socket closed after its loop, or a resolver thread finishing after the loop closed,
// must not touch that loop. Each open loop gets a token (registered on first use and
// dropped by its at_close callback); a (loop, token) pair names one incarnation, so a new
// loop allocated at a dead loop's address is never mistaken for it.
// Returns 0 (never a valid token) for a closed loop.
std::uint64_t loop_token(EventLoop& loop);
// Runs fn(loop) while holding the registry lock, if that incarnation is still open.
bool with_open_loop(EventLoop* loop, std::uint64_t token, absl::FunctionRef<void(EventLoop&)> fn);

// --- errors ---------------------------------------------------------------------------
std::exception_ptr make_os_error(int error_number, const std::string& context);
[[noreturn]] inline void raise_os_error(int error_number, const std::string& context) {
  throw_os_error(error_number, context);
}

// --- ByteBuffer -----------------------------------------------------------------------
// A growable byte queue with room at the tail for the next recv: reading appends in place
// (no zero-filling, no copy), consuming advances the head. It only grows, so a connection
// in steady state never allocates. Its storage must not move while a recv into it is in
// flight: only prepare() moves it, and the reader calls it before starting a recv.
class ByteBuffer {
 public:
  std::size_t size() const noexcept { return tail_ - head_; }
  bool empty() const noexcept { return head_ == tail_; }
  const char* data() const noexcept { return data_.get() + head_; }
  std::string_view view() const noexcept { return {data(), size()}; }
  std::size_t capacity() const noexcept { return capacity_; }

  // Room for at least `min_free` bytes after the tail; returns the tail.
  char* prepare(std::size_t min_free) {
    if (capacity_ - tail_ >= min_free) return data_.get() + tail_;
    const std::size_t used = size();
    if (capacity_ >= used + min_free && head_ > 0) {
      std::memmove(data_.get(), data_.get() + head_, used);
    } else {
      std::size_t grown = capacity_ == 0 ? min_free : capacity_ * 2;
      if (grown < used + min_free) grown = used + min_free;
      auto bigger = std::make_unique_for_overwrite<char[]>(grown);
      if (used > 0) std::memcpy(bigger.get(), data_.get() + head_, used);
      data_ = std::move(bigger);
      capacity_ = grown;
    }
    head_ = 0;
    tail_ = used;
    return data_.get() + tail_;
  }
  std::size_t writable() const noexcept { return capacity_ - tail_; }
  void commit(std::size_t n) noexcept { tail_ += n; }
  void append(std::string_view bytes) {
    std::memcpy(prepare(bytes.size()), bytes.data(), bytes.size());
    commit(bytes.size());
  }
  void consume(std::size_t n) noexcept {
    head_ += n;
    if (head_ == tail_) head_ = tail_ = 0;
  }
  std::string take(std::size_t n) {
    std::string out(data(), n);
    consume(n);
    return out;
  }
  void clear() noexcept { head_ = tail_ = 0; }

 private:
  std::unique_ptr<char[]> data_;
  std::size_t capacity_ = 0;
  std::size_t head_ = 0;
  std::size_t tail_ = 0;
};

}  // namespace detail
}  // namespace corio
