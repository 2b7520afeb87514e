// The whole of corio's public API in one include, laid out as asyncio's documentation is.
#pragma once

#include "corio/core/errors.hpp"
#include "corio/coro.hpp"
#include "corio/event_loop.hpp"
#include "corio/future.hpp"
#include "corio/gather.hpp"
#include "corio/handle.hpp"
#include "corio/runner.hpp"
#include "corio/sleep.hpp"
#include "corio/task.hpp"
