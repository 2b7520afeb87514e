#!/usr/bin/env bash
# Quick start, command 2 (and what .ci/run calls): the whole test suite.
# Builds and runs the same tests on every backend this machine can run, plus sanitizers:
#   epoll (optimized), epoll + ASan/UBSan, io_uring, io_uring + ASan/UBSan,
#   kqueue on its Linux emulation, plain and with ASan/UBSan, TSan over the cross-thread
#   suites, and the Windows (IOCP) build under wine.
# Ends with one line "N passed, M failed" counting ctest's tests over every configuration.
# CORIO_TEST_CONFIGS="epoll asan ..." limits the run to some configurations.
set -uo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh || { echo "could not install dependencies"; exit 1; }

jobs=$(nproc)
configs=${CORIO_TEST_CONFIGS:-"epoll asan io_uring io_uring-asan kqueue kqueue-asan tsan windows"}
total_passed=0
total_failed=0
failed_configs=()

# The Python binding (bindings/python) is built and tested in the unsanitized Linux
# configurations and in epoll + ASan/UBSan, with Debian's python3, which install-deps.sh gives the packages it needs
# (CPython's asyncio test suite among them).
python=(-DCORIO_BUILD_PYTHON=ON)
[ -x /usr/bin/python3 ] && python+=(-DPython3_EXECUTABLE=/usr/bin/python3)

# The unsanitized configurations are optimized as a release is (-O2, assertions off) but carry
# no debug information: it was a third of their compile time, and the build is most of the
# run. The sanitizer configurations keep theirs, for the stacks in their reports.
optimized=(-DCMAKE_BUILD_TYPE=Release "-DCMAKE_CXX_FLAGS_RELEASE=-O2 -DNDEBUG"
           "-DCMAKE_C_FLAGS_RELEASE=-O2 -DNDEBUG")

# Tests that exercise threads, for the ThreadSanitizer run. Only the test programs that hold
# them are built there, found by the same names in the sources (and the examples, which some
# of them run), so a test added later under one of these names is built and run.
tsan_filter='Threadsafe|ToThread|Executor|Thread|Concurrent'
tsan_targets=($(grep -lE "^\s*(TEST|TEST_F|TEST_P|TYPED_TEST|INSTANTIATE_TEST_SUITE_P)\([^)]*($tsan_filter)" \
                  tests/*_test.cpp | xargs -n1 basename | sed 's/\.cpp$//'))

run_config() {
  local name=$1; shift
  local dir=build-test/$name
  local started=$SECONDS
  echo "=== [$name] configure + build"
  if ! cmake -S . -B "$dir" -G Ninja -DCORIO_BUILD_BENCH=OFF "$@" >"$dir.configure.log" 2>&1; then
    cat "$dir.configure.log"; return 1
  fi
  local targets=() extra=()
  if [ "$name" = tsan ]; then
    targets=(--target "${tsan_targets[@]}" corio_examples)
    extra=(-R "$tsan_filter")
  fi
  if ! cmake --build "$dir" -j"$jobs" "${targets[@]}" >"$dir.build.log" 2>&1; then
    grep -E "error|Error" "$dir.build.log" | head -40; return 1
  fi
  echo "=== [$name] ctest (built in $((SECONDS - started)) s)"
  ctest --test-dir "$dir" --output-on-failure -j"$jobs" --timeout 300 "${extra[@]}" | tee "$dir.ctest.log" | tail -n 25
  local line
  line=$(grep -E "tests passed, [0-9]+ tests failed out of [0-9]+" "$dir.ctest.log" | tail -1)
  local failed_n=$(echo "$line" | sed -E 's/.* ([0-9]+) tests failed out of ([0-9]+).*/\1/')
  local total_n=$(echo "$line" | sed -E 's/.* ([0-9]+) tests failed out of ([0-9]+).*/\2/')
  if [ -z "$line" ]; then echo "[$name] ctest produced no summary"; return 1; fi
  total_passed=$((total_passed + total_n - failed_n))
  total_failed=$((total_failed + failed_n))
  [ "$failed_n" -eq 0 ]
}

mkdir -p build-test
for config in $configs; do
  case $config in
    epoll) run_config epoll "${optimized[@]}" -DCORIO_BACKEND=epoll "${python[@]}" ;;
    asan) run_config asan -DCMAKE_BUILD_TYPE=Debug -DCORIO_BACKEND=epoll -DCORIO_SANITIZE=address,undefined "${python[@]}" ;;
    io_uring)
      [ -d backends/io_uring ] || { echo "=== [io_uring] backend not present, skipped"; continue; }
      run_config io_uring "${optimized[@]}" -DCORIO_BACKEND=io_uring "${python[@]}" ;;
    io_uring-asan)
      [ -d backends/io_uring ] || continue
      run_config io_uring-asan -DCMAKE_BUILD_TYPE=Debug -DCORIO_BACKEND=io_uring -DCORIO_SANITIZE=address,undefined ;;
    kqueue) run_config kqueue "${optimized[@]}" -DCORIO_BACKEND=kqueue "${python[@]}" ;;
    kqueue-asan)
      run_config kqueue-asan -DCMAKE_BUILD_TYPE=Debug -DCORIO_BACKEND=kqueue -DCORIO_SANITIZE=address,undefined ;;
    tsan) run_config tsan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCORIO_BACKEND=epoll -DCORIO_SANITIZE=thread -DCORIO_BUILD_EXAMPLES=ON ;;
    windows)
      [ -x scripts/test-windows.sh ] && [ -d backends/iocp ] || { echo "=== [windows] not present, skipped"; continue; }
      echo "=== [windows] scripts/test-windows.sh"
      if scripts/test-windows.sh 2>&1 | tee build-test/windows.log | tail -n 25; then :; fi
      line=$(grep -E "tests passed, [0-9]+ tests failed out of [0-9]+" build-test/windows.log | tail -1)
      if [ -z "$line" ]; then failed_configs+=(windows); continue; fi
      f=$(echo "$line" | sed -E 's/.* ([0-9]+) tests failed out of ([0-9]+).*/\1/')
      t=$(echo "$line" | sed -E 's/.* ([0-9]+) tests failed out of ([0-9]+).*/\2/')
      total_passed=$((total_passed + t - f)); total_failed=$((total_failed + f))
      [ "$f" -eq 0 ] || failed_configs+=(windows)
      continue ;;
    *) echo "unknown configuration '$config'"; exit 2 ;;
  esac
  [ $? -eq 0 ] || failed_configs+=("$config")
done

echo
if [ ${#failed_configs[@]} -gt 0 ]; then
  echo "failing configurations: ${failed_configs[*]}"
  [ "$total_failed" -eq 0 ] && total_failed=1
fi
echo "$total_passed passed, $total_failed failed"
[ ${#failed_configs[@]} -eq 0 ]
