#!/usr/bin/env bash
# Builds ferry with its tests and runs the whole suite with ctest.
#
#   bash scripts/test.sh                          # as root on a fresh Debian 12, from the repo top
#   BUILD_DIR=build-asan CMAKE_ARGS="-DFERRY_ASAN=ON -DFERRY_UBSAN=ON" bash scripts/test.sh
#
# Steps: scripts/setup-deps.sh; configure BUILD_DIR (default build/, relative to the
# repo top) with Ninja, RelWithDebInfo (-O2 -g1) and FERRY_WERROR=ON (CMAKE_ARGS: extra
# cmake arguments, applied last, split on blanks; sanitizer builds compile at -O1 with
# assertions on, see CMakeLists.txt); build; `ctest --output-on-failure -j2` with a
# default timeout per test (CTEST_TIMEOUT, default 300 s; a test's own TIMEOUT property
# wins) and one for the whole run (CTEST_TOTAL_TIMEOUT, default 1800 s); then the
# reason of every skipped test (e.g. vsock transfers without vsock_loopback).
# Exits with ctest's status.
set -euo pipefail

top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build_dir=${BUILD_DIR:-$top/build}
[[ "$build_dir" = /* ]] || build_dir="$top/$build_dir"
read -r -a extra_args <<<"${CMAKE_ARGS:-}"
jobs=${JOBS:-$(nproc 2>/dev/null || echo 2)}

bash "$top/scripts/setup-deps.sh"

echo "== configure $build_dir ${extra_args[*]}"
# -g1 (line tables, enough for backtraces) instead of -g: a fifth less compile time.
cmake -S "$top" -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  "-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-O2 -g1 -DNDEBUG" \
  -DFERRY_WERROR=ON -DFERRY_ASAN=OFF -DFERRY_UBSAN=OFF -DFERRY_BUILD_TESTS=ON "${extra_args[@]}"

echo "== build"
ninja -C "$build_dir" -j "$jobs"

echo "== test"
rc=0
(cd "$build_dir" &&
  timeout --kill-after=30 "${CTEST_TOTAL_TIMEOUT:-1800}" \
    ctest --output-on-failure -j2 --timeout "${CTEST_TIMEOUT:-300}" </dev/null) || rc=$?
# ctest lists skipped tests without their reason: print gtest's "Skipped" messages
# (e.g. the vsock transfers where the kernel has no vsock_loopback).
log="$build_dir/Testing/Temporary/LastTest.log"
if [[ -f "$log" ]] && grep -q ': Skipped$' "$log"; then
  echo "== skipped, and why"
  awk '/: Skipped$/ { getline reason; why = reason }
       /^\[  SKIPPED \] / && why != "" { sub(/ \([0-9]+ ms\)$/, ""); print "  " substr($0, 14) ": " why; why = "" }' "$log" | sort -u
fi
exit "$rc"
