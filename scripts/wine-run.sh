#!/usr/bin/env bash
# Run a Windows console program under 64-bit wine, quietly and non-interactively.
#
#   scripts/wine-run.sh prog.exe [args...]
#
# Used as CMAKE_CROSSCOMPILING_EMULATOR by cmake/toolchains/mingw-w64-x86_64.cmake,
# so ctest (and gtest_discover_tests) run the cross-built .exe files through it.
#
# - WINEDEBUG defaults to -all (no fixme/err noise on stderr).
# - WINEDLLOVERRIDES defaults to "mscoree,mshtml=" (never offer Mono/Gecko installs).
# - WINEPREFIX defaults to a dedicated prefix, $CORIO_WINEPREFIX or
#   ${XDG_CACHE_HOME:-$HOME/.cache}/corio/wineprefix; it is created on first use
#   (under a lock, so parallel ctest jobs do not race), with its output hidden.
# - A detached wineserver is kept alive CORIO_WINESERVER_PERSIST seconds
#   (default 10; 0 disables) after the last program, so each run costs
#   ~0.05 s instead of ~2.5 s of wine start/shutdown.
# - DISPLAY/WAYLAND_DISPLAY are unset so wine never opens a window.
# - The program's exit code is passed through.  Its stdout keeps Windows line
#   endings (CRLF), as on real Windows.
# - With CORIO_WINE_RERUN_LOG set, a program that fails before printing anything is run
#   once more (see the end of this file).
set -u

if [ "$#" -lt 1 ]; then
    echo "usage: $0 program.exe [args...]" >&2
    exit 2
fi

export WINEDEBUG="${WINEDEBUG:--all}"
export WINEDLLOVERRIDES="${WINEDLLOVERRIDES:-mscoree,mshtml=}"
if [ -z "${WINEPREFIX:-}" ]; then
    if [ -n "${CORIO_WINEPREFIX:-}" ]; then
        WINEPREFIX="$CORIO_WINEPREFIX"
    else
        WINEPREFIX="${XDG_CACHE_HOME:-${HOME:-/tmp}/.cache}/corio/wineprefix"
    fi
fi
export WINEPREFIX
export WINEARCH=win64
unset DISPLAY WAYLAND_DISPLAY

# Debian ships the 64-bit loader as /usr/lib/wine/wine64 (no wine64 in PATH;
# /usr/bin/wine is a wrapper that prefers a 32-bit wine).  Other distributions
# and WineHQ builds put wine64 in PATH.
if [ -n "${CORIO_WINE:-}" ]; then
    wine="$CORIO_WINE"
elif command -v wine64 >/dev/null 2>&1; then
    wine="$(command -v wine64)"
elif [ -x /usr/lib/wine/wine64 ]; then
    wine=/usr/lib/wine/wine64
    export WINELOADER="${WINELOADER:-$wine}"
elif command -v wine >/dev/null 2>&1; then
    wine="$(command -v wine)"
else
    echo "wine-run.sh: no wine64 found (run scripts/setup-windows-deps.sh)" >&2
    exit 127
fi

if [ -n "${CORIO_WINESERVER:-}" ]; then
    wineserver="$CORIO_WINESERVER"
elif [ "$wine" = /usr/lib/wine/wine64 ] && [ -x /usr/lib/wine/wineserver ]; then
    wineserver=/usr/lib/wine/wineserver
else
    wineserver="$(command -v wineserver 2>/dev/null || true)"
fi
persist="${CORIO_WINESERVER_PERSIST:-10}"

# Under a lock (parallel ctest jobs; fd 9 is closed for everything started
# inside, or a lingering wineserver would keep the lock):
# 1. Create the prefix once, silently ("wine: created the configuration
#    directory ..." is printed regardless of WINEDEBUG).
# 2. Make sure a wineserver and wine's background processes (services.exe,
#    winedevice.exe, explorer.exe, ...) are running *detached from our
#    stdout/stderr*.  Otherwise the first wine process of a session starts
#    them with its own stdio, they outlive the program by ~2.5 s (or the
#    server's persistence), and ctest, which waits for the output pipe to
#    close, charges every test that delay.  The server stays up
#    $CORIO_WINESERVER_PERSIST seconds (default 10) after the last program
#    exits, so consecutive tests reuse it.
mkdir -p "$(dirname "$WINEPREFIX")"
{
    if command -v flock >/dev/null 2>&1; then
        flock 9
    fi
    # Marker, bump its number when the prefix set-up below changes.
    if [ ! -f "$WINEPREFIX/.corio-prefix-1" ]; then
        if [ ! -f "$WINEPREFIX/system.reg" ]; then
            "$wine" wineboot --init </dev/null >/dev/null 2>&1 9>&-
        fi
        # Report Windows 10 (wine 8's default prefix says Windows 7 / 6.1).
        "$wine" reg add 'HKCU\Software\Wine' /v Version /t REG_SZ /d win10 /f \
            </dev/null >/dev/null 2>&1 9>&- || true
        # The registry is written when the server exits; wait for that.
        if [ -n "$wineserver" ]; then
            "$wineserver" -w </dev/null >/dev/null 2>&1 9>&- || true
        fi
        if [ -f "$WINEPREFIX/system.reg" ]; then
            : >"$WINEPREFIX/.corio-prefix-1"
        fi
    fi
    if [ -n "$wineserver" ] && [ "$persist" != 0 ]; then
        # Exit status 0: no server was running and a new one was started.
        if "$wineserver" -p"$persist" </dev/null >/dev/null 2>&1 9>&-; then
            "$wine" cmd.exe /c "exit 0" </dev/null >/dev/null 2>&1 9>&- || true
        fi
    fi
} 9>"$WINEPREFIX.lock"

# Under ctest (scripts/test-windows.sh sets CORIO_WINE_RERUN_LOG) two things wine does now and
# then must not fail a test that passed, and must not go unseen:
# - A program that ends with a failing status before printing a single byte has not started:
#   seen about once in 1,000-2,000 test runs under parallel ctest. (A GoogleTest program
#   flushes its first lines before any test runs.) Such a run is logged to $CORIO_WINE_RERUN_LOG
#   and run once more; the second run's result is the one that counts. Nothing else is rerun.
# - A wine process started on the program's behalf (conhost, services, ...) can inherit its
#   stdout and outlive it; ctest waits for every holder of its pipe to close it, and once
#   charged a test that passed in 1.6 s with its 120 s timeout. So the program writes to files,
#   which are streamed to our stdout and stderr until the program itself has exited.
rerun_log="${CORIO_WINE_RERUN_LOG:-}"
if [ -z "$rerun_log" ]; then
    exec "$wine" "$@"
fi

run_captured() {
    local out err pid status follow_out follow_err
    out="$(mktemp)"
    err="$(mktemp)"
    # An asynchronous command's stdin would be /dev/null: hand it ours explicitly.
    "$wine" "$@" <&3 >"$out" 2>"$err" &
    pid=$!
    tail -q -n +1 -s 0.02 --pid="$pid" -f "$out" &
    follow_out=$!
    tail -q -n +1 -s 0.02 --pid="$pid" -f "$err" >&2 &
    follow_err=$!
    wait "$pid"
    status=$?
    wait "$follow_out" "$follow_err"
    printed=0
    [ -s "$out" ] && printed=1
    rm -f "$out" "$err"
    return "$status"
}

exec 3<&0
run_captured "$@"
status=$?
if [ "$status" -ne 0 ] && [ "$printed" = 0 ]; then
    note="wine-run.sh: '$*' exited with status $status before printing anything; running it again"
    echo "$note" >&2
    echo "$note" >>"$rerun_log"
    run_captured "$@"
    status=$?
fi
exit "$status"
