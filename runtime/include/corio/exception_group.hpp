// ExceptionGroup: several unrelated exceptions raised together, Python's ExceptionGroup.
// TaskGroup raises one when children fail. C++ has no `except*`, so the group is inspected by
// type: contains<E>(), subgroup<E>(), split<E>() (and *_if variants taking a predicate), which
// keep the nesting of inner groups exactly as Python's split/subgroup do.
// It must never be empty and never hold a null exception_ptr (checked on construction).
#pragma once

#include <exception>
#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace corio {

class ExceptionGroup : public std::exception {
 public:
  // ValueError when `exceptions` is empty, TypeError when one of them is null.
  ExceptionGroup(std::string message, std::vector<std::exception_ptr> exceptions);

  // "message (N sub-exceptions)", as Python's str() of a group.
  const char* what() const noexcept override { return what_.c_str(); }
  const std::string& message() const noexcept { return message_; }
  const std::vector<std::exception_ptr>& exceptions() const noexcept { return exceptions_; }

  using Condition = std::function<bool(const std::exception_ptr&)>;

  // The part of the group matching `condition`, nesting preserved; nullopt when nothing
  // matches. As in Python, the condition is tried on this group and on nested groups too: a
  // group that matches is kept whole.
  std::optional<ExceptionGroup> subgroup_if(const Condition& condition) const;
  // {matching part, the rest}; either may be nullopt.
  std::pair<std::optional<ExceptionGroup>, std::optional<ExceptionGroup>> split_if(
      const Condition& condition) const;
  // Whether any leaf (an exception that is not itself a group), at any depth, matches.
  bool contains_if(const Condition& condition) const;
  // Every leaf, depth first.
  std::vector<std::exception_ptr> leaves() const;

  template <class E>
  static bool is(const std::exception_ptr& error) {
    if (!error) return false;
    try {
      std::rethrow_exception(error);
    } catch (const E&) {
      return true;
    } catch (...) {
      return false;
    }
  }
  template <class E>
  bool contains() const {
    return contains_if(&is<E>);
  }
  template <class E>
  std::optional<ExceptionGroup> subgroup() const {
    return subgroup_if(&is<E>);
  }
  template <class E>
  std::pair<std::optional<ExceptionGroup>, std::optional<ExceptionGroup>> split() const {
    return split_if(&is<E>);
  }

  // The group inside `error`, if it holds one.
  static std::optional<ExceptionGroup> from(const std::exception_ptr& error);

 private:
  std::string message_;
  std::vector<std::exception_ptr> exceptions_;
  std::string what_;
};

}  // namespace corio
