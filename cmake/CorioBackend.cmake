# Validates CORIO_BACKEND and picks the platform's best default.
# An unknown or unavailable backend stops configure with a message naming the valid choices.
set(CORIO_BACKEND_CHOICES epoll io_uring kqueue iocp)

if(WIN32)
  set(_corio_default iocp)
elseif(CMAKE_SYSTEM_NAME MATCHES "BSD|Darwin|DragonFly")
  set(_corio_default kqueue)
else()
  set(_corio_default epoll)
endif()
set(CORIO_BACKEND "${_corio_default}" CACHE STRING "I/O backend: one of ${CORIO_BACKEND_CHOICES}")
set_property(CACHE CORIO_BACKEND PROPERTY STRINGS ${CORIO_BACKEND_CHOICES})

if(NOT CORIO_BACKEND IN_LIST CORIO_BACKEND_CHOICES)
  list(JOIN CORIO_BACKEND_CHOICES ", " _corio_choices)
  message(FATAL_ERROR "Unknown CORIO_BACKEND '${CORIO_BACKEND}'. Valid choices: ${_corio_choices} "
                      "(default on this platform: ${_corio_default}).")
endif()

set(_corio_available)
if(CMAKE_SYSTEM_NAME STREQUAL "Linux")
  # kqueue on Linux runs on its emulation (backends/kqueue/emulation), for testing only.
  list(APPEND _corio_available epoll kqueue)
  find_package(PkgConfig QUIET)
  if(PkgConfig_FOUND)
    pkg_check_modules(LIBURING QUIET IMPORTED_TARGET liburing)
  endif()
  if(LIBURING_FOUND)
    list(APPEND _corio_available io_uring)
  endif()
endif()
if(CMAKE_SYSTEM_NAME MATCHES "BSD|Darwin|DragonFly")
  list(APPEND _corio_available kqueue)
endif()
if(WIN32)
  list(APPEND _corio_available iocp)
endif()
if(NOT CORIO_BACKEND IN_LIST _corio_available)
  list(JOIN _corio_available ", " _corio_avail_text)
  set(_corio_hint "")
  if(CORIO_BACKEND STREQUAL "io_uring")
    set(_corio_hint " (io_uring needs Linux and liburing: apt-get install liburing-dev pkg-config)")
  elseif(CORIO_BACKEND STREQUAL "iocp")
    set(_corio_hint " (iocp needs a Windows target: see docs/windows.md)")
  endif()
  message(FATAL_ERROR "CORIO_BACKEND '${CORIO_BACKEND}' is not available here${_corio_hint}. "
                      "Available on this platform: ${_corio_avail_text}.")
endif()

set(CORIO_BACKEND_DIR "${CORIO_BACKEND}")
message(STATUS "corio backend: ${CORIO_BACKEND}")

if(CORIO_BACKEND STREQUAL "kqueue" AND CMAKE_SYSTEM_NAME STREQUAL "Linux")
  # The emulated kqueue build stands in for the BSDs, so it also skips Linux's shortcuts
  # (flags at creation, pidfd, SO_DOMAIN) and runs the paths FreeBSD and macOS take
  # (core/include/corio/core/posix_fd.hpp).
  add_compile_definitions(CORIO_PORTABLE_POSIX=1)
endif()
