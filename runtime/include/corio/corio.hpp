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
#include "corio/as_completed.hpp"
#include "corio/exception_group.hpp"
#include "corio/shield.hpp"
#include "corio/task_group.hpp"
#include "corio/timeouts.hpp"
#include "corio/wait.hpp"
#include "corio/wait_for.hpp"
