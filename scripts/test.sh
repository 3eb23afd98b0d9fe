#!/usr/bin/env bash
# Builds ferry with its tests and runs the whole suite with ctest.
#
#   bash scripts/test.sh                          # as root on a fresh Debian 12, from the repo top
#   BUILD_DIR=build-asan CMAKE_ARGS="-DFERRY_ASAN=ON -DFERRY_UBSAN=ON" bash scripts/test.sh
#
# Steps: scripts/setup-deps.sh; configure BUILD_DIR (default build/, relative to the
# repo top) with Ninja, RelWithDebInfo and FERRY_WERROR=ON (CMAKE_ARGS: extra cmake
# arguments, applied last, split on blanks); build; `ctest --output-on-failure -j2`
# with a default timeout per test (CTEST_TIMEOUT, default 300 s; a test's own TIMEOUT
# property wins) and one for the whole run (CTEST_TOTAL_TIMEOUT, default 1800 s).
# Exits with ctest's status.
set -euo pipefail

top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build_dir=${BUILD_DIR:-$top/build}
[[ "$build_dir" = /* ]] || build_dir="$top/$build_dir"
read -r -a extra_args <<<"${CMAKE_ARGS:-}"
jobs=${JOBS:-$(nproc 2>/dev/null || echo 2)}

bash "$top/scripts/setup-deps.sh"

echo "== configure $build_dir ${extra_args[*]}"
cmake -S "$top" -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DFERRY_WERROR=ON -DFERRY_ASAN=OFF -DFERRY_UBSAN=OFF -DFERRY_BUILD_TESTS=ON "${extra_args[@]}"

echo "== build"
ninja -C "$build_dir" -j "$jobs"

echo "== test"
rc=0
(cd "$build_dir" &&
  timeout --kill-after=30 "${CTEST_TOTAL_TIMEOUT:-1800}" \
    ctest --output-on-failure -j2 --timeout "${CTEST_TIMEOUT:-300}" </dev/null) || rc=$?
exit "$rc"
