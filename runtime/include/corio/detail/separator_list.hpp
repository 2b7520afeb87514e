// What readuntil accepts as several separators (asyncio 3.13's tuple), shared by
// StreamReader and the subprocess PipeReader. It must never match a single string: a
// std::string is a range of chars, and readuntil(std::string) means one separator.
#pragma once

#include <concepts>
#include <ranges>
#include <string_view>

namespace corio::detail {

template <class R>
concept SeparatorList = std::ranges::common_range<const R&> &&
    std::convertible_to<std::ranges::range_reference_t<const R&>, std::string_view>;

}  // namespace corio::detail
