#!/usr/bin/env bash
# Install everything needed to cross-build corio for Windows (x86_64, mingw-w64)
# on Debian bookworm and to run the resulting tests under wine.
#
#   scripts/setup-windows-deps.sh
#
# 1. apt-get installs the mingw-w64 posix cross compilers, wine (64-bit),
#    cmake, ninja, dpkg-dev and googletest (sources in /usr/src/googletest).
# 2. Enables Debian source packages (deb-src) if `apt-get source` cannot work.
# 3. Cross-builds, from Debian's own sources, static C++20 Release libraries of
#      - Abseil      (`apt-get source abseil`, Debian patches applied)
#      - GoogleTest + GoogleMock (/usr/src/googletest)
#    and installs them into ${CORIO_WIN_DEPS:-/opt/corio-win-deps}, where
#    find_package(absl CONFIG) / find_package(GTest CONFIG) find them through
#    cmake/toolchains/mingw-w64-x86_64.cmake.
# 4. Creates the wine prefix used by scripts/wine-run.sh and checks wine runs.
#
# Idempotent: packages already installed are not touched, and the build is
# skipped while the prefix holds a stamp for the same source, compiler and
# recipe versions.  Set CORIO_WIN_DEPS_FORCE=1 to rebuild anyway.
# Environment: CORIO_WIN_DEPS (prefix), CORIO_JOBS (build parallelism),
#              CORIO_WIN_DEPS_SKIP_WINE=1 (do not initialise the wine prefix).
set -euo pipefail

# Bump when build flags change, so existing prefixes get rebuilt.
RECIPE=1

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"
toolchain="$repo/cmake/toolchains/mingw-w64-x86_64.cmake"
prefix="${CORIO_WIN_DEPS:-/opt/corio-win-deps}"
jobs="${CORIO_JOBS:-$(nproc 2>/dev/null || echo 2)}"
stamp_name=.corio-win-deps.stamp

log() { printf '[setup-windows-deps] %s\n' "$*"; }
die() { printf '[setup-windows-deps] error: %s\n' "$*" >&2; exit 1; }

if [ "$(id -u)" -eq 0 ]; then
    SUDO=()
elif command -v sudo >/dev/null 2>&1; then
    SUDO=(sudo)
else
    die "needs root (or sudo) for apt-get"
fi
export DEBIAN_FRONTEND=noninteractive

[ -f "$toolchain" ] || die "toolchain file not found: $toolchain"

# ---------------------------------------------------------------------------
# 1. Debian packages
# ---------------------------------------------------------------------------
packages=(
    g++-mingw-w64-x86-64-posix
    gcc-mingw-w64-x86-64-posix
    wine64          # /usr/lib/wine/wine64, the 64-bit loader
    wine            # wineboot/wineserver commands (+ /usr/bin/wine wrapper)
    dpkg-dev        # dpkg-source, needed by apt-get source
    cmake
    ninja-build
    googletest      # GoogleTest/GoogleMock sources in /usr/src/googletest
    ca-certificates
)
apt_update() {
    log "apt-get update"
    "${SUDO[@]}" apt-get update -qq "$@" >/dev/null
}

missing=()
for p in "${packages[@]}"; do
    if [ "$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null)" != installed ]; then
        missing+=("$p")
    fi
done
if [ "${#missing[@]}" -gt 0 ]; then
    log "installing: ${missing[*]}"
    # --no-install-recommends: wine's recommends (wine32, fonts, GL, ...) are
    # ~80 extra packages that a console test runner does not need.
    aptlog="$(mktemp "${TMPDIR:-/tmp}/corio-apt.XXXXXX")"
    install() {
        "${SUDO[@]}" apt-get install -y -qq --no-install-recommends \
            -o Dpkg::Use-Pty=0 "${missing[@]}" >"$aptlog" 2>&1
    }
    if ! install; then
        apt_update
        if ! install; then
            tail -n 30 "$aptlog" >&2
            die "apt-get install failed (log: $aptlog)"
        fi
    fi
    rm -f "$aptlog"
else
    log "packages already installed"
fi

# ---------------------------------------------------------------------------
# 2. Source packages (deb-src)
# ---------------------------------------------------------------------------
have_abseil_source() {
    apt-cache showsrc --only-source abseil 2>/dev/null | grep -q '^Package: abseil$'
}
if ! have_abseil_source; then
    srcfile=/etc/apt/sources.list.d/corio-deb-src.sources
    log "enabling Debian source packages ($srcfile)"
    if [ -f /etc/apt/sources.list.d/debian.sources ]; then
        # Same mirrors/suites/keys as the binary entries, as deb-src.
        sed -E 's/^Types:.*/Types: deb-src/' /etc/apt/sources.list.d/debian.sources \
            | "${SUDO[@]}" tee "$srcfile.tmp" >/dev/null
    else
        "${SUDO[@]}" tee "$srcfile.tmp" >/dev/null <<'EOF'
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb-src
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
    fi
    "${SUDO[@]}" mv "$srcfile.tmp" "$srcfile"
    # Refresh only the new source entries (fast); fall back to a full update.
    apt_update -o Dir::Etc::sourcelist="$srcfile" -o Dir::Etc::sourceparts=- \
        -o APT::Get::List-Cleanup=0 || true
    have_abseil_source || apt_update
    have_abseil_source || die "apt-get source abseil still unavailable after enabling deb-src"
fi

# ---------------------------------------------------------------------------
# 3. Versions and stamp
# ---------------------------------------------------------------------------
absl_version=""
for v in $(apt-cache showsrc --only-source abseil | sed -n 's/^Version: //p'); do
    if [ -z "$absl_version" ] || dpkg --compare-versions "$v" gt "$absl_version"; then
        absl_version="$v"
    fi
done
[ -n "$absl_version" ] || die "cannot determine abseil source version"
case "$absl_version" in
    20220623.*) ;;
    *) log "warning: abseil $absl_version is not the bookworm 20220623 series; trying anyway" ;;
esac
gtest_version="$(dpkg-query -W -f='${Version}' googletest)"
mingw_version="$(dpkg-query -W -f='${Version}' g++-mingw-w64-x86-64-posix)"
# Flags in the toolchain file are part of the build (comments are not).
toolchain_hash="$(grep -v '^[[:space:]]*#' "$toolchain" | sha256sum | cut -c1-16)"

stamp_content="recipe=$RECIPE
abseil=$absl_version
googletest=$gtest_version
g++-mingw-w64-x86-64-posix=$mingw_version
toolchain=$toolchain_hash
cxx_standard=20
build_type=Release"

if [ "${CORIO_WIN_DEPS_FORCE:-0}" != 1 ] && [ -f "$prefix/$stamp_name" ] \
   && [ "$(cat "$prefix/$stamp_name")" = "$stamp_content" ]; then
    log "abseil $absl_version + googletest $gtest_version already in $prefix"
else
    # Never clobber a directory this script did not create.
    if [ -e "$prefix" ] && [ ! -f "$prefix/$stamp_name" ] \
       && [ -n "$(ls -A "$prefix" 2>/dev/null)" ]; then
        die "$prefix exists, is not empty and has no $stamp_name; remove it or set CORIO_WIN_DEPS"
    fi

    work="$(mktemp -d "${TMPDIR:-/tmp}/corio-win-deps.XXXXXX")"
    buildlog="$work/build.log"
    cleanup() {
        local rc=$?
        if [ "$rc" -ne 0 ]; then
            printf '[setup-windows-deps] failed; last lines of %s:\n' "$buildlog" >&2
            tail -n 40 "$buildlog" >&2 2>/dev/null || true
            printf '[setup-windows-deps] work dir kept: %s\n' "$work" >&2
        else
            rm -rf "$work"
        fi
    }
    trap cleanup EXIT
    run() { echo "+ $*" >>"$buildlog"; "$@" >>"$buildlog" 2>&1; }

    stage="$work/stage"
    common=(
        -G Ninja
        -DCMAKE_TOOLCHAIN_FILE="$toolchain"
        -DCORIO_WIN_DEPS="$prefix"
        -DCMAKE_BUILD_TYPE=Release
        -DCMAKE_CXX_STANDARD=20
        -DCMAKE_CXX_STANDARD_REQUIRED=ON
        -DCMAKE_CXX_EXTENSIONS=OFF
        -DBUILD_SHARED_LIBS=OFF
        -DBUILD_TESTING=OFF
        -DCMAKE_INSTALL_PREFIX="$prefix"
        -DCMAKE_INSTALL_LIBDIR=lib
    )

    log "fetching abseil $absl_version source (apt-get source)"
    mkdir -p "$work/src"
    # Sandbox user root: the download dir is private to us, avoid apt's warning.
    (cd "$work/src" && run apt-get source -qq -o APT::Sandbox::User=root "abseil=$absl_version") \
        || die "apt-get source abseil=$absl_version failed"
    absl_src="$(find "$work/src" -mindepth 1 -maxdepth 1 -type d -name 'abseil-*' | head -n1)"
    [ -n "$absl_src" ] || die "abseil source tree not found after apt-get source"

    log "building abseil ($jobs jobs; log: $buildlog)"
    run cmake -S "$absl_src" -B "$work/build-absl" "${common[@]}" \
        -DABSL_PROPAGATE_CXX_STD=ON \
        -DABSL_BUILD_TESTING=OFF \
        -DABSL_ENABLE_INSTALL=ON \
        || die "abseil configure failed"
    run cmake --build "$work/build-absl" -j "$jobs" || die "abseil build failed"
    DESTDIR="$stage" run cmake --install "$work/build-absl" || die "abseil install failed"

    log "building googletest $gtest_version"
    [ -f /usr/src/googletest/CMakeLists.txt ] || die "/usr/src/googletest missing"
    run cmake -S /usr/src/googletest -B "$work/build-gtest" "${common[@]}" \
        -DBUILD_GMOCK=ON \
        -DINSTALL_GTEST=ON \
        -Dgtest_build_tests=OFF -Dgmock_build_tests=OFF -Dgtest_build_samples=OFF \
        || die "googletest configure failed"
    run cmake --build "$work/build-gtest" -j "$jobs" || die "googletest build failed"
    DESTDIR="$stage" run cmake --install "$work/build-gtest" || die "googletest install failed"

    printf '%s\n' "$stamp_content" >"$stage$prefix/$stamp_name"

    # Swap the new tree into place.
    log "installing into $prefix"
    parent="$(dirname "$prefix")"
    "${SUDO[@]}" mkdir -p "$parent"
    if [ -e "$prefix" ]; then
        "${SUDO[@]}" rm -rf "$prefix.old"
        "${SUDO[@]}" mv "$prefix" "$prefix.old"
    fi
    "${SUDO[@]}" rm -rf "$prefix.new"
    "${SUDO[@]}" cp -a "$stage$prefix" "$prefix.new"
    "${SUDO[@]}" mv "$prefix.new" "$prefix"
    "${SUDO[@]}" rm -rf "$prefix.old"
    log "abseil $absl_version + googletest $gtest_version installed in $prefix"
fi

# ---------------------------------------------------------------------------
# 4. Wine prefix (first start takes several seconds; do it now, quietly)
# ---------------------------------------------------------------------------
if [ "${CORIO_WIN_DEPS_SKIP_WINE:-0}" != 1 ]; then
    wineprefix="${WINEPREFIX:-${CORIO_WINEPREFIX:-${XDG_CACHE_HOME:-${HOME:-/tmp}/.cache}/corio/wineprefix}}"
    if "$here/wine-run.sh" cmd.exe /c "exit 0" >/dev/null 2>&1 </dev/null; then
        log "wine OK (prefix: $wineprefix)"
    else
        die "wine cannot run cmd.exe (prefix: $wineprefix); see scripts/wine-run.sh"
    fi
fi
log "done"
