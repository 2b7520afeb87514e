#!/usr/bin/env bash
# Installs the Debian packages corio builds, tests and benchmarks with (bookworm).
# Idempotent and quiet: does nothing when everything is present. Needs root (or sudo).
set -euo pipefail

packages=(
  build-essential g++ cmake ninja-build pkg-config git python3
  libabsl-dev libgtest-dev libgmock-dev googletest libbenchmark-dev liburing-dev
  pybind11-dev python3-dev libpython3.11-testsuite libasio-dev libuv1-dev wrk clang-format
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
echo "install-deps: installing ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
