// gather(): run awaitables concurrently and collect their results (asyncio.gather).
// Coroutines are wrapped in tasks at once (eagerly, as asyncio does); the result is a
// Future of a tuple (variadic form) or a vector (range form). Without return_exceptions the
// first failure completes the gather and the other children keep running; cancelling the
// gather cancels every child. With return_exceptions, each slot is an Outcome<T>.
#pragma once

#include <cstddef>
#include <exception>
#include <tuple>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "corio/coro.hpp"
#include "corio/detail/await_result.hpp"
#include "corio/future.hpp"
#include "corio/task.hpp"

namespace corio {

struct ReturnExceptions {};
inline constexpr ReturnExceptions return_exceptions{};

// A result or the exception that took its place (a slot of gather(return_exceptions, ...)).
template <class T>
class Outcome {
 public:
  Outcome() = default;
  explicit Outcome(detail::Stored<T> value) : state_(std::move(value)) {}
  explicit Outcome(std::exception_ptr error) : state_(std::move(error)) {}

  bool has_value() const noexcept { return state_.index() == 1; }
  std::exception_ptr exception() const noexcept {
    return state_.index() == 0 ? std::get<0>(state_) : nullptr;
  }
  // The value; rethrows the exception when there is none.
  const detail::Stored<T>& value() const {
    if (!has_value()) std::rethrow_exception(std::get<0>(state_));
    return std::get<1>(state_);
  }

 private:
  std::variant<std::exception_ptr, detail::Stored<T>> state_;
};

namespace detail {

template <class A>
struct IsFutureLike : std::false_type {};
template <class T>
struct IsFutureLike<Future<T>> : std::true_type {};
template <class T>
struct IsFutureLike<Task<T>> : std::true_type {};

// What gathering A yields: a coroutine's or future's value_type, else what co_await gives.
template <class Plain, class = void>
struct GatherResult {
  using type = AwaitResultOf<Plain>;
};
template <class Plain>
struct GatherResult<Plain, std::enable_if_t<IsCoro<Plain>::value || IsFutureLike<Plain>::value>> {
  using type = typename Plain::value_type;
};
template <class A>
using AwaitResult = typename GatherResult<std::remove_cvref_t<A>>::type;

// Awaits a leaf awaitable (sleep(1), a socket op, ...) inside a coroutine of its own, so it
// can be scheduled as a task like any coroutine.
template <class A>
Coro<AwaitResultOf<A>> await_in_coroutine(A awaitable) {
  if constexpr (std::is_void_v<AwaitResultOf<A>>) {
    co_await std::move(awaitable);
  } else {
    co_return co_await std::move(awaitable);
  }
}

// asyncio.ensure_future: a coroutine becomes a task on `loop`; a future stays itself.
template <class A>
Future<AwaitResult<A>> ensure_future(EventLoop& loop, A&& awaitable) {
  using Plain = std::remove_cvref_t<A>;
  if constexpr (IsCoro<Plain>::value) {
    return loop.create_task(std::move(awaitable));
  } else if constexpr (IsFutureLike<Plain>::value) {
    return Future<AwaitResult<A>>(awaitable);
  } else {
    return loop.create_task(await_in_coroutine<Plain>(std::move(awaitable)));
  }
}

template <class T>
Outcome<T> outcome_of(const Future<T>& child) {
  if (child.cancelled())
    return Outcome<T>(std::make_exception_ptr(child.base()->make_cancelled_error()));
  if (std::exception_ptr error = child.exception()) return Outcome<T>(error);
  return Outcome<T>(**child.value_slot());
}

// Shared bookkeeping of a gathering future, independent of how results are stored.
template <class Result>
class GatheringState : public FutureState<Result> {
 public:
  GatheringState(EventLoop* loop, std::size_t count, bool return_exceptions)
      : FutureState<Result>(loop), links_(count), return_exceptions_(return_exceptions) {}

  bool cancel(std::string message = {}) override {
    if (this->done()) return false;
    bool any = false;
    for_each_child([&](FutureBase& child) { any = child.cancel(message) || any; });
    if (any) {
      cancel_requested_ = true;
      this->cancel_message_ = message;
    }
    return any;
  }

 protected:
  struct Link {
    GatheringState* owner = nullptr;
    std::size_t index = 0;
  };

  virtual FutureBase& child(std::size_t index) = 0;
  virtual Result collect() = 0;

  template <class F>
  void for_each_child(F&& f) {
    for (std::size_t i = 0; i < links_.size(); ++i) f(child(i));
  }

  // Registers on every child; call once the children exist.
  void watch_children() {
    if (links_.empty()) {
      this->value.emplace(collect());
      FutureAccess::finish_ok(this);
      return;
    }
    this->add_ref();  // kept until the last child is done
    for (std::size_t i = 0; i < links_.size(); ++i) {
      links_[i] = {this, i};
      child(i).add_waiter({&on_child_done, &links_[i]});
    }
  }

 private:
  static void on_child_done(void* arg) {
    auto* link = static_cast<Link*>(arg);
    GatheringState* self = link->owner;
    FutureBase& done_child = self->child(link->index);
    ++self->finished_;
    if (self->done()) {
      if (!done_child.cancelled()) done_child.exception();  // retrieved: never reported
    } else if (!self->return_exceptions_ && done_child.cancelled()) {
      self->set_exception(std::make_exception_ptr(done_child.make_cancelled_error()));
    } else if (!self->return_exceptions_ && done_child.exception()) {
      self->set_exception(done_child.exception());
    } else if (self->finished_ == self->links_.size()) {
      if (self->cancel_requested_) {
        self->set_exception(std::make_exception_ptr(CancelledError(self->cancel_message_)));
      } else {
        self->value.emplace(self->collect());
        FutureAccess::finish_ok(self);
      }
    }
    if (self->finished_ == self->links_.size()) self->release();
  }

  std::vector<Link> links_;
  std::size_t finished_ = 0;
  bool return_exceptions_;
  bool cancel_requested_ = false;
};

template <class Result, class... T>
class TupleGathering final : public GatheringState<Result> {
 public:
  TupleGathering(EventLoop* loop, bool return_exceptions, std::tuple<Future<T>...> children)
      : GatheringState<Result>(loop, sizeof...(T), return_exceptions),
        children_(std::move(children)) {
    this->watch_children();
  }

 private:
  FutureBase& child(std::size_t index) override {
    FutureBase* found = nullptr;
    std::size_t i = 0;
    std::apply([&](auto&... c) { ((i++ == index ? (found = c.base()) : nullptr), ...); },
               children_);
    return *found;
  }
  Result collect() override {
    return std::apply(
        [](auto&... c) {
          if constexpr (std::is_same_v<Result, std::tuple<Stored<T>...>>) {
            return Result(Stored<T>(**c.value_slot())...);
          } else {
            return Result(outcome_of(c)...);
          }
        },
        children_);
  }
  std::tuple<Future<T>...> children_;
};

template <class Result, class T>
class VectorGathering final : public GatheringState<Result> {
 public:
  VectorGathering(EventLoop* loop, bool return_exceptions, std::vector<Future<T>> children)
      : GatheringState<Result>(loop, children.size(), return_exceptions),
        children_(std::move(children)) {
    this->watch_children();
  }

 private:
  FutureBase& child(std::size_t index) override { return *children_[index].base(); }
  Result collect() override {
    Result out;
    out.reserve(children_.size());
    for (auto& c : children_) {
      if constexpr (std::is_same_v<Result, std::vector<Stored<T>>>) {
        out.push_back(**c.value_slot());
      } else {
        out.push_back(outcome_of(c));
      }
    }
    return out;
  }
  std::vector<Future<T>> children_;
};

template <class Result, class State, class... Args>
Future<Result> make_gathering(EventLoop& loop, Args&&... args) {
  auto* state = new State(&loop, std::forward<Args>(args)...);
  return FutureAccess::adopt<Result>(state, &state->value);
}

}  // namespace detail

// gather(a, b, c) -> Future<tuple<A, B, C>> (void results become std::monostate).
template <class... A>
requires(sizeof...(A) > 0 && !(std::is_same_v<std::remove_cvref_t<A>, ReturnExceptions> ||
                               ...)) auto gather(A&&... awaitables) {
  EventLoop& loop = get_running_loop();
  using Result = std::tuple<detail::Stored<detail::AwaitResult<A>>...>;
  // Braces: children are scheduled left to right, as asyncio does (a call's arguments
  // would be evaluated in an unspecified order).
  std::tuple<Future<detail::AwaitResult<A>>...> children{
      detail::ensure_future(loop, std::forward<A>(awaitables))...};
  return detail::make_gathering<Result, detail::TupleGathering<Result, detail::AwaitResult<A>...>>(
      loop, false, std::move(children));
}

// gather(return_exceptions, a, b) -> Future<tuple<Outcome<A>, Outcome<B>>>.
template <class... A>
auto gather(ReturnExceptions, A&&... awaitables) {
  EventLoop& loop = get_running_loop();
  using Result = std::tuple<Outcome<detail::AwaitResult<A>>...>;
  std::tuple<Future<detail::AwaitResult<A>>...> children{
      detail::ensure_future(loop, std::forward<A>(awaitables))...};
  return detail::make_gathering<Result, detail::TupleGathering<Result, detail::AwaitResult<A>...>>(
      loop, true, std::move(children));
}

// gather over a vector of coroutines, tasks or futures -> Future<vector<T>>.
template <class A>
auto gather(std::vector<A> awaitables) {
  EventLoop& loop = get_running_loop();
  using T = detail::AwaitResult<A>;
  std::vector<Future<T>> children;
  children.reserve(awaitables.size());
  for (auto& a : awaitables) children.push_back(detail::ensure_future(loop, std::move(a)));
  using Result = std::vector<detail::Stored<T>>;
  return detail::make_gathering<Result, detail::VectorGathering<Result, T>>(loop, false,
                                                                            std::move(children));
}

template <class A>
auto gather(ReturnExceptions, std::vector<A> awaitables) {
  EventLoop& loop = get_running_loop();
  using T = detail::AwaitResult<A>;
  std::vector<Future<T>> children;
  children.reserve(awaitables.size());
  for (auto& a : awaitables) children.push_back(detail::ensure_future(loop, std::move(a)));
  using Result = std::vector<Outcome<T>>;
  return detail::make_gathering<Result, detail::VectorGathering<Result, T>>(loop, true,
                                                                            std::move(children));
}

}  // namespace corio
