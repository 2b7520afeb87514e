#!/usr/bin/env bash
# The ONE command for Windows: cross-build corio (IOCP backend) with mingw-w64 and run the
# whole test suite, examples included, under wine with ctest.
#
#   scripts/test-windows.sh [extra ctest arguments, e.g. -R BackendConformance]
#
# Steps: (1) scripts/setup-windows-deps.sh when the compilers, wine or the cross-built deps
# are missing; (2) warm wine, because test discovery runs the .exe files at build time;
# (3) configure build-windows with cmake/toolchains/mingw-w64-x86_64.cmake; (4) build;
# (5) ctest --output-on-failure under the emulator (scripts/wine-run.sh), skipping exactly
# the tests listed, with reasons, in tests/windows-exclusions.cmake.
#
# Environment: CORIO_WIN_BUILD_DIR (default <repo>/build-windows), CORIO_BUILD_TYPE
# (default Release), CORIO_JOBS (build and ctest parallelism, default 2: the machine is
# shared), CORIO_WIN_DEPS (deps prefix, default /opt/corio-win-deps), CORIO_SKIP_SETUP=1.
# It must never change anything outside the build directory except through the setup script.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"
build="${CORIO_WIN_BUILD_DIR:-$repo/build-windows}"
build_type="${CORIO_BUILD_TYPE:-Release}"
jobs="${CORIO_JOBS:-2}"
prefix="${CORIO_WIN_DEPS:-/opt/corio-win-deps}"
toolchain="$repo/cmake/toolchains/mingw-w64-x86_64.cmake"

log() { printf '[test-windows] %s\n' "$*"; }

# 1. Dependencies: the setup script is idempotent but needs root; skip it when all is there.
need_setup=0
command -v x86_64-w64-mingw32-g++-posix >/dev/null 2>&1 || need_setup=1
[ -x /usr/lib/wine/wine64 ] || command -v wine64 >/dev/null 2>&1 || need_setup=1
[ -f "$prefix/.corio-win-deps.stamp" ] || need_setup=1
if [ "${CORIO_SKIP_SETUP:-0}" != 1 ] && [ "$need_setup" = 1 ]; then
    log "running scripts/setup-windows-deps.sh"
    "$here/setup-windows-deps.sh"
fi

# 2. Warm wine: a cold wineserver (or a new prefix) can outlast test discovery's timeout.
log "warming wine"
"$here/wine-run.sh" cmd.exe /c "exit 0" >/dev/null 2>&1 </dev/null || log "warning: wine warm-up failed"

# 3. Configure. Benchmarks are Linux-only; examples are built because examples_test runs them.
log "configuring $build ($build_type)"
cmake -S "$repo" -B "$build" -G Ninja \
      -DCMAKE_TOOLCHAIN_FILE="$toolchain" \
      -DCORIO_WIN_DEPS="$prefix" \
      -DCMAKE_BUILD_TYPE="$build_type" \
      -DCORIO_BACKEND=iocp \
      -DCORIO_BUILD_TESTS=ON -DCORIO_BUILD_EXAMPLES=ON -DCORIO_BUILD_BENCH=OFF >/dev/null

# ctest reads CTestCustom.cmake from the top of the build tree: the exclusions live there.
printf 'include("%s")\n' "$repo/tests/windows-exclusions.cmake" >"$build/CTestCustom.cmake"

# 4. Build everything (tests, examples). Keep going past a target that fails to build, so
# the rest still runs; ctest then lists that target as <name>_NOT_BUILT, and we fail below.
log "building with $jobs jobs"
build_ok=1
cmake --build "$build" -j"$jobs" -- -k 0 || build_ok=0

# 5. Run. Wine stays warm between tests (scripts/wine-run.sh keeps wineserver alive).
# A test program that dies before printing anything (wine failing to start it) is run once
# more, and listed here, so such a run is seen, not hidden (see scripts/wine-run.sh).
log "running ctest under wine"
test_ok=1
reruns="$build/wine-reruns.log"
: >"$reruns"
CORIO_WINE_RERUN_LOG="$reruns" ctest --test-dir "$build" --output-on-failure -j"$jobs" "$@" || test_ok=0
if [ -s "$reruns" ]; then
    log "$(wc -l <"$reruns") test program(s) printed nothing and failed at start, and were run again:"
    sed 's/^/    /' "$reruns"
fi

if [ "$build_ok" = 0 ]; then
    log "FAILED: some targets did not build (see the compiler errors above)"
    exit 1
fi
[ "$test_ok" = 1 ] || exit 1
log "all tests passed"
