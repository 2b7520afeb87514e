#!/usr/bin/env bash
# Quick start, command 1: install what is missing, build corio (Release, epoll), and run the
# main job: the example programs (the C++ twins of the asyncio tutorials' programs).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release
cmake --build build

for example in countasync say_after factorial nested; do
  echo "=== examples/$example"
  ./build/examples/$example
done
echo "=== examples/say_after tasks"
./build/examples/say_after tasks
echo
echo "Built in ./build. Run the whole test suite with: scripts/test.sh"
