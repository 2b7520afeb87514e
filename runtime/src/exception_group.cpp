// ExceptionGroup's construction and its split/subgroup walk over nested groups.
#include "corio/exception_group.hpp"

#include "corio/core/errors.hpp"

namespace corio {

ExceptionGroup::ExceptionGroup(std::string message, std::vector<std::exception_ptr> exceptions)
    : message_(std::move(message)), exceptions_(std::move(exceptions)) {
  if (exceptions_.empty())
    throw ValueError("second argument (exceptions) must be a non-empty sequence");
  for (const std::exception_ptr& e : exceptions_) {
    if (!e) throw TypeError("an ExceptionGroup cannot hold a null exception");
  }
  const std::size_t n = exceptions_.size();
  what_ = message_ + " (" + std::to_string(n) + " sub-exception" + (n == 1 ? "" : "s") + ")";
}

std::optional<ExceptionGroup> ExceptionGroup::from(const std::exception_ptr& error) {
  if (!error) return std::nullopt;
  try {
    std::rethrow_exception(error);
  } catch (const ExceptionGroup& group) {
    return group;
  } catch (...) {
    return std::nullopt;
  }
}

std::pair<std::optional<ExceptionGroup>, std::optional<ExceptionGroup>> ExceptionGroup::split_if(
    const Condition& condition) const {
  if (condition(std::make_exception_ptr(*this))) return {*this, std::nullopt};
  std::vector<std::exception_ptr> matching;
  std::vector<std::exception_ptr> rest;
  for (const std::exception_ptr& e : exceptions_) {
    if (std::optional<ExceptionGroup> inner = from(e)) {
      auto [in, out] = inner->split_if(condition);
      // A nested group that splits cleanly is kept as the same object, as Python does.
      if (in && !out) {
        matching.push_back(e);
      } else if (out && !in) {
        rest.push_back(e);
      } else {
        matching.push_back(std::make_exception_ptr(std::move(*in)));
        rest.push_back(std::make_exception_ptr(std::move(*out)));
      }
    } else if (condition(e)) {
      matching.push_back(e);
    } else {
      rest.push_back(e);
    }
  }
  std::optional<ExceptionGroup> first;
  std::optional<ExceptionGroup> second;
  if (!matching.empty()) first.emplace(message_, std::move(matching));
  if (!rest.empty()) second.emplace(message_, std::move(rest));
  return {std::move(first), std::move(second)};
}

std::optional<ExceptionGroup> ExceptionGroup::subgroup_if(const Condition& condition) const {
  return split_if(condition).first;
}

bool ExceptionGroup::contains_if(const Condition& condition) const {
  for (const std::exception_ptr& e : exceptions_) {
    if (std::optional<ExceptionGroup> inner = from(e)) {
      if (inner->contains_if(condition)) return true;
    } else if (condition(e)) {
      return true;
    }
  }
  return false;
}

std::vector<std::exception_ptr> ExceptionGroup::leaves() const {
  std::vector<std::exception_ptr> out;
  for (const std::exception_ptr& e : exceptions_) {
    if (std::optional<ExceptionGroup> inner = from(e)) {
      std::vector<std::exception_ptr> nested = inner->leaves();
      out.insert(out.end(), nested.begin(), nested.end());
    } else {
      out.push_back(e);
    }
  }
  return out;
}

}  // namespace corio
