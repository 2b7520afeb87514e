# CMake toolchain file: cross-compile corio for 64-bit Windows with Debian's
# mingw-w64 (posix thread model) and run the resulting .exe files under wine.
#
#   cmake -S . -B build-win -G Ninja \
#         -DCMAKE_TOOLCHAIN_FILE=cmake/toolchains/mingw-w64-x86_64.cmake
#
# Prerequisites: scripts/setup-windows-deps.sh (compilers, wine, and Abseil +
# GoogleTest cross-built into ${CORIO_WIN_DEPS:-/opt/corio-win-deps}).
#
# Knobs (environment variable or -D cache variable):
#   CORIO_WIN_DEPS   prefix holding the cross-built Abseil/GoogleTest
#                    (default /opt/corio-win-deps)
#   CORIO_MINGW_TRIPLE  compiler triple (default x86_64-w64-mingw32)

set(CMAKE_SYSTEM_NAME Windows)
set(CMAKE_SYSTEM_PROCESSOR AMD64)

if(NOT CORIO_MINGW_TRIPLE)
  set(CORIO_MINGW_TRIPLE x86_64-w64-mingw32)
endif()

# Deps prefix: -DCORIO_WIN_DEPS=... wins, then $ENV{CORIO_WIN_DEPS}, then default.
if(NOT CORIO_WIN_DEPS)
  if(DEFINED ENV{CORIO_WIN_DEPS} AND NOT "$ENV{CORIO_WIN_DEPS}" STREQUAL "")
    set(CORIO_WIN_DEPS "$ENV{CORIO_WIN_DEPS}")
  else()
    set(CORIO_WIN_DEPS "/opt/corio-win-deps")
  endif()
endif()
# Make the values visible inside try_compile() projects too.
list(APPEND CMAKE_TRY_COMPILE_PLATFORM_VARIABLES CORIO_WIN_DEPS CORIO_MINGW_TRIPLE)

# The -posix variants use winpthreads and therefore provide std::thread,
# std::mutex, std::condition_variable etc. (the -win32 ones do not in GCC 12).
set(CMAKE_C_COMPILER   ${CORIO_MINGW_TRIPLE}-gcc-posix)
set(CMAKE_CXX_COMPILER ${CORIO_MINGW_TRIPLE}-g++-posix)
set(CMAKE_RC_COMPILER  ${CORIO_MINGW_TRIPLE}-windres)

# Target headers/libraries/CMake packages come only from the mingw sysroot and
# the deps prefix; programs (code generators, git, ...) come from the host.
set(CMAKE_FIND_ROOT_PATH /usr/${CORIO_MINGW_TRIPLE} "${CORIO_WIN_DEPS}")
list(APPEND CMAKE_PREFIX_PATH "${CORIO_WIN_DEPS}")
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)

# Fully static executables: libgcc, libstdc++ and winpthread are linked in, so
# the .exe files run under wine (or on Windows) without any mingw DLL next to
# them.  DLLs/modules at least embed libgcc/libstdc++.
set(CMAKE_EXE_LINKER_FLAGS_INIT    "-static")
set(CMAKE_SHARED_LINKER_FLAGS_INIT "-static-libgcc -static-libstdc++")
set(CMAKE_MODULE_LINKER_FLAGS_INIT "-static-libgcc -static-libstdc++")

# Template-heavy translation units (gtest, coroutines, absl containers) can
# exceed the 2^16 section limit of plain COFF objects.
set(CMAKE_C_FLAGS_INIT   "-Wa,-mbig-obj")
set(CMAKE_CXX_FLAGS_INIT "-Wa,-mbig-obj")

# ctest, gtest_discover_tests and add_custom_command(... COMMAND <target>) run
# target executables through wine.
get_filename_component(_corio_wine_run
  "${CMAKE_CURRENT_LIST_DIR}/../../scripts/wine-run.sh" ABSOLUTE)
if(EXISTS "${_corio_wine_run}")
  set(CMAKE_CROSSCOMPILING_EMULATOR "${_corio_wine_run}")
else()
  find_program(_corio_wine64 NAMES wine64 PATHS /usr/lib/wine NO_CACHE)
  if(_corio_wine64)
    set(CMAKE_CROSSCOMPILING_EMULATOR "${_corio_wine64}")
  endif()
endif()
unset(_corio_wine_run)
