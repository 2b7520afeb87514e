// ThreadPoolExecutor, run_in_executor's completion path, the loop's default executor and the
// LoopLink other threads use to reach a loop. Workers only ever touch the job they run and
// the LoopLink; every Future is set, cancelled and released on the loop's thread.
#include "corio/executor.hpp"

#include <algorithm>
#include <cstdio>

#include "corio/async_generator.hpp"
#include "corio/detail/loop_link.hpp"
#include "corio/detail/loop_local.hpp"
#include "corio/task.hpp"

namespace corio {

// --- ThreadPoolExecutor ---

std::size_t ThreadPoolExecutor::default_max_workers() noexcept {
  const std::size_t cores = std::max(1u, std::thread::hardware_concurrency());
  return std::min<std::size_t>(32, cores + 4);
}

ThreadPoolExecutor::ThreadPoolExecutor(std::size_t max_workers)
    : max_workers_(max_workers == 0 ? default_max_workers() : max_workers) {}

ThreadPoolExecutor::~ThreadPoolExecutor() {
  shutdown(true);
}

std::size_t ThreadPoolExecutor::thread_count() const {
  std::lock_guard lock(mutex_);
  return threads_.size();
}

void ThreadPoolExecutor::submit(Job job) {
  Job unrun;  // declared first, destroyed after the lock: its destructor may report to a loop
  std::unique_lock lock(mutex_);
  if (shutdown_) throw RuntimeError("cannot schedule new futures after shutdown");
  queue_.push_back(std::move(job));
  // A new thread only when the idle ones cannot take every queued job (Python's rule).
  if (idle_ < queue_.size() && threads_.size() < max_workers_) {
    try {
      threads_.emplace_back([this] { work(); });
    } catch (...) {
      if (threads_.empty()) {  // nobody could ever run it: take it back
        unrun = std::move(queue_.back());
        queue_.pop_back();
        lock.unlock();
        throw;
      }
    }
  }
  wake_.notify_one();
}

void ThreadPoolExecutor::work() {
  for (;;) {
    Job job;
    {
      std::unique_lock lock(mutex_);
      ++idle_;
      wake_.wait(lock, [this] { return !queue_.empty() || shutdown_; });
      --idle_;
      if (queue_.empty()) return;  // shut down and drained
      job = std::move(queue_.front());
      queue_.pop_front();
    }
    try {
      std::move(job)();
    } catch (...) {
      EventLoop::default_exception_handler(
          {"exception in a job run by ThreadPoolExecutor", std::current_exception(), {}});
    }
    job = nullptr;  // its captures are released before this thread waits again
  }
}

void ThreadPoolExecutor::shutdown(bool wait, bool cancel_futures) {
  std::deque<Job> dropped;
  std::vector<std::thread> joining;
  {
    std::lock_guard lock(mutex_);
    shutdown_ = true;
    if (cancel_futures) dropped.swap(queue_);
    wake_.notify_all();
    if (wait) joining.swap(threads_);
  }
  dropped.clear();  // outside the lock: a dropped job's destructor reports back to its loop
  for (std::thread& thread : joining) {
    if (thread.get_id() == std::this_thread::get_id()) {
      thread.detach();  // shut down from one of its own jobs: that thread ends by itself
    } else {
      thread.join();
    }
  }
}

namespace detail {

// --- LoopLink ---

bool LoopLink::post(Callback callback) {
  std::lock_guard lock(mutex_);
  if (loop_ == nullptr) return false;
  try {
    // The returned handle is dropped while the link is held: once the loop has detached,
    // nothing of the callback is left on this thread.
    loop_->call_soon_threadsafe(std::move(callback));
  } catch (const RuntimeError&) {
    return false;  // closed, and not detached yet
  }
  return true;
}

void LoopLink::detach() {
  std::lock_guard lock(mutex_);
  loop_ = nullptr;
}

// --- per-loop state ---

// What a loop needs for thread work: its link, its default executor, the jobs in flight.
class LoopThreads {
 public:
  explicit LoopThreads(EventLoop& loop) : loop_(&loop), link_(std::make_shared<LoopLink>(loop)) {}

  const std::shared_ptr<LoopLink>& link() const noexcept { return link_; }

  Executor& default_executor() {
    if (shutdown_called_) throw RuntimeError("Executor shutdown has been called");
    if (!default_executor_) {
      default_executor_ = std::make_shared<ThreadPoolExecutor>();
      EventLoop* loop = loop_;
      loop_->at_shutdown([loop] { return shutdown_default_executor(*loop); });
    }
    return *default_executor_;
  }

  // shutdown_default_executor: no new default jobs; the executor to wait for, if any.
  std::shared_ptr<ThreadPoolExecutor> begin_default_shutdown() {
    shutdown_called_ = true;
    return default_executor_;
  }

  void track(ThreadJobBase* job) {
    job->owner = this;
    job->prev = nullptr;
    job->next = jobs_;
    if (jobs_ != nullptr) jobs_->prev = job;
    jobs_ = job;
    loop_->add_external_work();
  }

  void untrack(ThreadJobBase* job) noexcept {
    (job->prev ? job->prev->next : jobs_) = job->next;
    if (job->next) job->next->prev = job->prev;
    job->prev = job->next = nullptr;
    job->owner = nullptr;
    loop_->remove_external_work();
  }

  // The loop is closing (on its thread). Workers can no longer post; the default executor is
  // shut down, waiting for its jobs; futures of jobs that never reported back are released.
  void on_loop_close() {
    link_->detach();
    if (default_executor_) default_executor_->shutdown(true);
    while (jobs_ != nullptr) {
      ThreadJobBase* job = jobs_;
      untrack(job);
      job->cancelled.store(true, std::memory_order_release);
      if (FutureBase* future = std::exchange(job->future, nullptr)) future->release();
    }
  }

 private:
  EventLoop* loop_;
  std::shared_ptr<LoopLink> link_;
  std::shared_ptr<ThreadPoolExecutor> default_executor_;
  bool shutdown_called_ = false;
  ThreadJobBase* jobs_ = nullptr;  // submitted, completion not yet delivered
};

std::shared_ptr<LoopLink> loop_link(EventLoop& loop) {
  std::shared_ptr<LoopThreads> threads = LoopLocal<LoopThreads>::get(loop);
  if (!threads) throw RuntimeError("Event loop is closed");
  return threads->link();
}

namespace {

// Loop thread: the job reported back (ran, skipped or dropped by its executor).
void complete_job(const std::shared_ptr<ThreadJobBase>& job) {
  FutureBase* future = std::exchange(job->future, nullptr);
  if (future == nullptr) return;  // the loop closed first and released it
  if (job->owner != nullptr) job->owner->untrack(job.get());
  if (!future->done()) {
    if (job->ran) {
      try {
        job->deliver(*future);
      } catch (...) {
        future->release();
        throw;
      }
    } else {
      future->cancel();  // dropped by the executor before it ran
    }
  }
  future->release();
}

// The worker's side of a job. If the executor drops it without running it, the destructor
// still reports back so the Future does not stay pending forever.
class JobRunner {
 public:
  JobRunner(std::shared_ptr<ThreadJobBase> job, std::shared_ptr<LoopLink> link)
      : job_(std::move(job)), link_(std::move(link)) {}
  JobRunner(JobRunner&&) noexcept = default;
  JobRunner& operator=(JobRunner&&) = delete;
  ~JobRunner() {
    if (job_) report();
  }

  void operator()() && {
    if (!job_->cancelled.load(std::memory_order_acquire)) {
      job_->run();
      job_->ran = true;
    }
    report();
  }

 private:
  void report() {
    std::shared_ptr<ThreadJobBase> job = std::move(job_);
    // Only the shared job is captured: safe to destroy on either thread.
    link_->post([job = std::move(job)] { complete_job(job); });
  }

  std::shared_ptr<ThreadJobBase> job_;
  std::shared_ptr<LoopLink> link_;
};

}  // namespace

void submit_job(EventLoop& loop, Executor* executor, const std::shared_ptr<ThreadJobBase>& job,
                FutureBase* future) {
  std::shared_ptr<LoopThreads> threads = LoopLocal<LoopThreads>::get(loop);
  if (!threads) throw RuntimeError("Event loop is closed");
  Executor& target = executor != nullptr ? *executor : threads->default_executor();
  future->add_ref();
  job->future = future;
  threads->track(job.get());
  try {
    target.submit(JobRunner(job, threads->link()));
  } catch (...) {
    // Not submitted. If the JobRunner was destroyed inside submit, its report is already
    // queued and will find nothing to do.
    if (job->owner != nullptr) threads->untrack(job.get());
    if (FutureBase* f = std::exchange(job->future, nullptr)) f->release();
    throw;
  }
}

}  // namespace detail

Coro<void> shutdown_default_executor(EventLoop& loop) {
  co_await shutdown_asyncgens(loop);
  std::shared_ptr<detail::LoopThreads> threads = detail::LoopLocal<detail::LoopThreads>::find(loop);
  if (!threads) co_return;
  std::shared_ptr<ThreadPoolExecutor> executor = threads->begin_default_shutdown();
  if (!executor) co_return;
  // Waiting for the jobs blocks: do it on a thread of its own while the loop keeps running.
  // The job is built outside the co_await: GCC 12 destroys a closure temporary with
  // non-trivial captures twice when it appears inside a co_await expression.
  ThreadPoolExecutor waiter(1);
  Future<void> stopped = run_in_executor(loop, &waiter, [executor] { executor->shutdown(true); });
  co_await stopped;
}

}  // namespace corio
