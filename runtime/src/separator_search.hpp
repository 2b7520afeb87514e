// The search behind readuntil/readline on sockets and on subprocess pipes: asyncio's rules
// for where a separator ends, where the next search resumes and when the limit is overrun,
// for one separator or 3.13's several. The scan only looks at bytes: it must never raise,
// wait or consume from the buffer (the callers decide that, so the two reader kinds cannot
// drift); only sorted_separators, which checks what the caller was given, raises.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "corio/core/errors.hpp"

namespace corio::detail {

// view.find(separator, from) for the short separators streams use ("\n", "\r\n\r\n"):
// memchr for the first byte, the rest compared inline (string_view::find calls memcmp for
// every candidate, which costs more than the compare on an HTTP head's many "\r\n").
inline std::size_t find_bytes(std::string_view view, std::string_view separator,
                              std::size_t from) noexcept {
  const std::size_t n = separator.size();
  if (n == 0 || view.size() < n || from > view.size() - n) return std::string_view::npos;
  const char* const base = view.data();
  if (n == 1) {
    const void* hit = std::memchr(base + from, separator[0], view.size() - from);
    return hit ? static_cast<std::size_t>(static_cast<const char*>(hit) - base)
               : std::string_view::npos;
  }
  const char* p = base + from;
  const char* const last = base + view.size() - n;  // the last place a match can start
  while (p <= last) {
    p = static_cast<const char*>(
        std::memchr(p, separator[0], static_cast<std::size_t>(last - p) + 1));
    if (p == nullptr) return std::string_view::npos;
    std::size_t i = 1;
    while (i < n && p[i] == separator[i]) ++i;
    if (i == n) return static_cast<std::size_t>(p - base);
    ++p;
  }
  return std::string_view::npos;
}

enum class Scan { found, need_more, found_past_limit, past_limit };

struct SeparatorMatch {
  std::size_t start = 0;  // found*: where the separator starts; past_limit: the offset
  std::size_t end = 0;    // found*: just past the separator (the chunk to return)
};

// One pass of asyncio's readuntil loop over `separators` (sorted shortest first, none
// empty). Of several matches the one ending first wins, as in 3.13. `offset` is where the
// next pass resumes: bytes before it cannot start a match.
template <class Separators>
Scan scan_separators(std::string_view view, std::size_t limit, const Separators& separators,
                     std::size_t& offset, SeparatorMatch& match) noexcept {
  const std::size_t shortest = std::string_view(*std::begin(separators)).size();
  const std::size_t longest = std::string_view(*std::prev(std::end(separators))).size();
  if (view.size() < offset + shortest) return Scan::need_more;
  bool found = false;
  for (const auto& separator : separators) {
    const std::string_view sep(separator);
    const std::size_t at = find_bytes(view, sep, offset);
    if (at == std::string_view::npos) continue;
    if (!found || at + sep.size() < match.end) match = {at, at + sep.size()};
    found = true;
  }
  if (found) return match.start > limit ? Scan::found_past_limit : Scan::found;
  offset = view.size() + 1 > longest ? view.size() + 1 - longest : 0;
  match.start = offset;
  return offset > limit ? Scan::past_limit : Scan::need_more;
}

// The LimitOverrunError a past-limit scan raises (asyncio's messages).
inline LimitOverrunError limit_overrun(Scan scan, std::size_t consumed) {
  return LimitOverrunError(scan == Scan::found_past_limit
                               ? "Separator is found, but chunk is longer than limit"
                               : "Separator is not found, and chunk exceed the limit",
                           consumed);
}

// readuntil's separators as asyncio 3.13 takes a tuple: sorted shortest first (stably, so of
// equal lengths the first given is tried first). ValueError for none or an empty one.
inline std::vector<std::string> sorted_separators(std::vector<std::string> separators) {
  if (separators.empty()) throw ValueError("Separator should contain at least one element");
  std::stable_sort(separators.begin(), separators.end(),
                   [](const std::string& a, const std::string& b) { return a.size() < b.size(); });
  if (separators.front().empty()) {
    throw ValueError("Separator should be at least one-byte string");
  }
  return separators;
}

}  // namespace corio::detail
