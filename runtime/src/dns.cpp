// getaddrinfo / getnameinfo off the loop: a few worker threads of our own, and a leaf
// awaiter that a cancellation releases at once.
#include "corio/dns.hpp"

#include <atomic>
#include <condition_variable>
#include <deque>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>

#include "corio/detail/suspension.hpp"
#include "corio/event_loop.hpp"
#include "net_internal.hpp"

namespace corio {
namespace detail {

namespace {

std::atomic<ResolverFunction> g_resolver{nullptr};

// One blocking call. `work` runs on a worker; everything else is touched on the loop thread
// only (delivery comes back through call_soon_threadsafe, which orders the two).
struct BlockingJob {
  std::function<void()> work;
  EventLoop* loop = nullptr;
  std::uint64_t loop_token = 0;
  // Loop-thread state.
  bool delivered = false;
  class BlockingCall* waiter = nullptr;
};

// Up to kMaxThreads workers, started on demand, each leaving after kIdle without work.
// Never destroyed: a worker may still be finishing a lookup while the process exits.
class ResolverPool {
 public:
  static ResolverPool& instance() {
    static ResolverPool* pool = new ResolverPool;
    return *pool;
  }

  void submit(std::shared_ptr<BlockingJob> job) {
    bool spawn = false;
    {
      std::lock_guard lock(mutex_);
      queue_.push_back(std::move(job));
      if (idle_ == 0 && threads_ < kMaxThreads) {
        ++threads_;
        spawn = true;
      }
    }
    if (spawn) {
      try {
        std::thread([this] { work(); }).detach();
      } catch (...) {
        std::lock_guard lock(mutex_);
        --threads_;
        if (threads_ == 0) throw;  // nobody would ever run the job
      }
    } else {
      ready_.notify_one();
    }
  }

 private:
  static constexpr int kMaxThreads = 8;
  static constexpr auto kIdle = std::chrono::seconds(10);

  void work() {
    std::unique_lock lock(mutex_);
    for (;;) {
      if (queue_.empty()) {
        ++idle_;
        const bool got = ready_.wait_for(lock, kIdle, [this] { return !queue_.empty(); });
        --idle_;
        if (!got) {
          --threads_;
          return;
        }
      }
      std::shared_ptr<BlockingJob> job = std::move(queue_.front());
      queue_.pop_front();
      lock.unlock();
      run(job);
      job.reset();
      lock.lock();
    }
  }

  static void run(const std::shared_ptr<BlockingJob>& job);

  std::mutex mutex_;
  std::condition_variable ready_;
  std::deque<std::shared_ptr<BlockingJob>> queue_;
  int threads_ = 0;
  int idle_ = 0;
};

// The leaf a lookup's coroutine suspends on.
class BlockingCall {
 public:
  explicit BlockingCall(std::shared_ptr<BlockingJob> job) noexcept : job_(std::move(job)) {}
  BlockingCall(const BlockingCall&) = delete;
  ~BlockingCall() {
    if (job_->waiter == this) job_->waiter = nullptr;
    stop_counting();
  }

  bool await_ready() const noexcept { return false; }
  void await_suspend(std::coroutine_handle<> handle) {
    suspension_.begin(handle);
    EventLoop* loop = suspension_.loop();
    job_->loop = loop;
    job_->loop_token = loop_token(*loop);
    job_->waiter = this;
    loop->add_external_work();
    counting_ = true;
    try {
      ResolverPool::instance().submit(job_);
    } catch (...) {
      job_->waiter = nullptr;
      stop_counting();
      throw;
    }
    suspension_.arm({&cancel_leaf, this});
  }
  void await_resume() { suspension_.end(cancelled_); }

  // On the loop thread, when the worker is done.
  static void deliver(const std::shared_ptr<BlockingJob>& job) {
    job->delivered = true;
    if (BlockingCall* call = job->waiter) {
      job->waiter = nullptr;
      call->stop_counting();
      call->suspension_.wake();
    }
  }

 private:
  static bool cancel_leaf(void* arg) {
    auto* self = static_cast<BlockingCall*>(arg);
    if (self->job_->delivered || self->job_->waiter != self) return false;
    // Return now; the worker finishes on its own and its answer is dropped.
    self->job_->waiter = nullptr;
    self->stop_counting();
    self->cancelled_ = true;
    self->suspension_.wake();
    return true;
  }

  void stop_counting() noexcept {
    if (counting_) {
      counting_ = false;
      suspension_.loop()->remove_external_work();
    }
  }

  std::shared_ptr<BlockingJob> job_;
  Suspension suspension_;
  bool counting_ = false;
  bool cancelled_ = false;
};

void ResolverPool::run(const std::shared_ptr<BlockingJob>& job) {
  job->work();  // stores its own result or exception
  // Deliver only to a loop that is still open; a closed loop's waiter was cancelled already.
  with_open_loop(job->loop, job->loop_token, [&](EventLoop& loop) {
    try {
      loop.call_soon_threadsafe([job] { BlockingCall::deliver(job); });
    } catch (const RuntimeError&) {
      // Closed between the check and the call: nobody is waiting any more.
    }
  });
}

// Runs `fn` on a worker and returns its result (or rethrows what it threw).
template <class R, class Fn>
Coro<R> run_blocking(Fn fn) {
  auto job = std::make_shared<BlockingJob>();
  auto result = std::make_shared<std::optional<R>>();
  auto error = std::make_shared<std::exception_ptr>();
  job->work = [fn = std::move(fn), result, error]() mutable {
    try {
      result->emplace(fn());
    } catch (...) {
      *error = std::current_exception();
    }
  };
  co_await BlockingCall(job);
  if (*error) std::rethrow_exception(*error);
  co_return std::move(**result);
}

}  // namespace

void set_resolver_for_testing(ResolverFunction resolver) noexcept {
  g_resolver.store(resolver);
}

}  // namespace detail

Coro<std::vector<AddressInfo>> getaddrinfo(std::string host, std::string port, AddressFamily family,
                                           SocketKind type, int proto, int flags) {
  return detail::run_blocking<std::vector<AddressInfo>>(
      [host = std::move(host), port = std::move(port), family, type, proto, flags] {
        if (detail::ResolverFunction fake = detail::g_resolver.load()) {
          return fake(host, port, family, type, proto, flags);
        }
        return core::net::resolve(host, port, family, type, proto, flags);
      });
}

Coro<std::vector<AddressInfo>> getaddrinfo(std::string host, std::uint16_t port,
                                           AddressFamily family, SocketKind type, int proto,
                                           int flags) {
  return getaddrinfo(std::move(host), std::to_string(port), family, type, proto, flags);
}

Coro<std::pair<std::string, std::string>> getnameinfo(SocketAddress address, int flags) {
  return detail::run_blocking<std::pair<std::string, std::string>>(
      [address, flags] { return core::net::name_info(address, flags); });
}

}  // namespace corio
