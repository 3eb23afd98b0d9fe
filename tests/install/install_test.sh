#!/usr/bin/env bash
# The installed package, as a program that embeds ferry sees it (ctest: install_package,
# tests/install/CMakeLists.txt sets the environment below).
#
#   1. cmake --install FERRY_BUILD_DIR --prefix TMP/prefix (bash completion included); the tree holds the
#      executables, static libraries, libferry.so.0 (SONAME, links), headers,
#      ferryConfig.cmake, ferry.pc, man pages;
#   2. docs/examples/embed-receiver configured and built against TMP/prefix alone
#      (find_package(ferry) must come from there), once with ferry::ferry (static) and
#      once with ferry::ferry_shared, whose executable must load TMP/prefix's libferry.so.0;
#   3. the example compiled once more with `pkg-config --cflags --libs ferry`, and both
#      public headers compiled with the .pc's flags alone, which name ${includedir} and
#      not ${includedir}/ferry;
#   3b. tests/install/conflicting-consumer, a program with its own lib/events.hpp,
#      lib/core/events.hpp, protocol/result.hpp and protocol/auth_key.hpp FIRST on its
#      include path, built with find_package(ferry) and with pkg-config and run: it gets
#      its own headers where it includes them, ferry's headers get ferry's (else ferry's
#      types are missing and it does not compile);
#   4. a transfer: the installed ferry-send --listen, ferry-fault-proxy in front of it
#      cutting the FIRST connection after 2 MiB of data (later ones are clean), and the
#      example dialling the proxy: its dial function is called again, the file resumes,
#      both exit 0, the tree arrives byte-identical with no ferry leftovers, and every
#      descriptor the example lent was released;
#   5. a transfer from the installed ferry-send straight to the example linked against
#      libferry.so.0: a real transfer through the shared library.
#
# Environment: FERRY_BUILD_DIR FERRY_SOURCE_DIR FERRY_PROXY FERRY_CMAKE FERRY_GENERATOR
# FERRY_CXX FERRY_BUILD_TYPE FERRY_BINDIR FERRY_LIBDIR FERRY_INCLUDEDIR FERRY_MANDIR
# FERRY_BUILD_SHARED (ON: the build made libferry.so, and steps 1, 2 and 5 check it).
# FERRY_KEEP_TMP=1 keeps the temporary directory. Every process runs under timeout(1);
# everything started is stopped and removed on exit.
set -euo pipefail

for v in FERRY_BUILD_DIR FERRY_SOURCE_DIR FERRY_PROXY FERRY_CMAKE FERRY_GENERATOR FERRY_CXX \
         FERRY_BINDIR FERRY_LIBDIR FERRY_INCLUDEDIR FERRY_MANDIR FERRY_BUILD_SHARED; do
  [[ -n "${!v:-}" ]] || { echo "install_test: $v is not set (run through ctest)" >&2; exit 2; }
done

tmp=$(mktemp -d "${TMPDIR:-/tmp}/ferry-install-test.XXXXXX")
prefix="$tmp/prefix"
pids=()
cleanup() {
  local p
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  if [[ "${FERRY_KEEP_TMP:-0}" == 1 ]]; then echo "install_test: kept $tmp"; else rm -rf "$tmp"; fi
}
trap cleanup EXIT

step() { echo "== $*"; }
fail() {
  echo "install_test: FAILED: $*" >&2
  local f
  for f in "$tmp"/*.log "$tmp"/*.out "$tmp"/*.err "$tmp"/*.jsonl; do
    [[ -s "$f" ]] && { echo "---- ${f#"$tmp"/}" >&2; tail -n 60 "$f" >&2; }
  done
  exit 1
}
# Under the install prefix unless absolute (GNUInstallDirs allows both).
installed() { if [[ "$1" = /* ]]; then echo "$1"; else echo "$prefix/$1"; fi; }
bindir=$(installed "$FERRY_BINDIR")
libdir=$(installed "$FERRY_LIBDIR")
includedir=$(installed "$FERRY_INCLUDEDIR")
mandir=$(installed "$FERRY_MANDIR")

# Waits up to $2 seconds for a line matching the ERE $3 in file $1; prints the match.
wait_for_line() {
  local file=$1 secs=$2 re=$3 i
  for ((i = 0; i < secs * 10; i++)); do
    if grep -Eo -m1 "$re" "$file" 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  return 1
}

# ---------------------------------------------------------------------------------
step "1. cmake --install $FERRY_BUILD_DIR --prefix $prefix"
timeout -k 5 120 "$FERRY_CMAKE" --install "$FERRY_BUILD_DIR" --prefix "$prefix" >"$tmp/install.log" 2>&1 ||
  fail "cmake --install"
expected=(
  "$bindir/ferry-send" "$bindir/ferry-recv"
  "$libdir/libferry_protocol.a" "$libdir/libferry_core.a" "$libdir/libferry_uv.a" "$libdir/libferry_net.a"
  "$libdir/libferry_fs.a" "$libdir/libferry_engine.a" "$libdir/libferry_sender_session.a"
  "$libdir/libferry_receiver_session.a" "$libdir/libferry_sender.a" "$libdir/libferry_receiver.a"
  "$includedir/ferry/sender/sender.hpp" "$includedir/ferry/receiver/receiver.hpp"
  "$includedir/ferry/lib/net/transport.hpp" "$includedir/ferry/lib/core/outcome.hpp"
  "$includedir/ferry/lib/core/events.hpp" "$includedir/ferry/lib/net/address.hpp"
  "$includedir/ferry/protocol/result.hpp" "$includedir/ferry/protocol/auth_key.hpp"
  "$libdir/cmake/ferry/ferryConfig.cmake" "$libdir/cmake/ferry/ferryConfigVersion.cmake"
  "$libdir/cmake/ferry/ferryTargets.cmake"
  "$libdir/pkgconfig/ferry.pc"
  "$mandir/man1/ferry-send.1" "$mandir/man1/ferry-recv.1"
  "$prefix/share/bash-completion/completions/ferry-send" "$prefix/share/bash-completion/completions/ferry-recv"
)
if [[ "$FERRY_BUILD_SHARED" == ON ]]; then
  expected+=("$libdir/libferry.so.0.1.0")
  [[ "$(readlink "$libdir/libferry.so")" == libferry.so.0 ]] || fail "libferry.so does not link to libferry.so.0"
  [[ "$(readlink "$libdir/libferry.so.0")" == libferry.so.0.1.0 ]] || fail "libferry.so.0 does not link to libferry.so.0.1.0"
  soname=$(readelf -d "$libdir/libferry.so.0.1.0" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
  [[ "$soname" == libferry.so.0 ]] || fail "libferry.so.0.1.0's SONAME is '$soname', not libferry.so.0"
fi
for f in "${expected[@]}"; do [[ -s "$f" ]] || fail "not installed: $f"; done
[[ -x "$bindir/ferry-send" && -x "$bindir/ferry-recv" ]] || fail "installed executables are not executable"
# Exactly the public headers: nothing of the implementation leaks into include/.
n_headers=$(find "$includedir/ferry" -type f | wc -l)
[[ "$n_headers" -eq 8 ]] || fail "expected 8 headers under $includedir/ferry, found $n_headers: $(find "$includedir/ferry" -type f)"

# ---------------------------------------------------------------------------------
step "2. docs/examples/embed-receiver with find_package(ferry) from $prefix"
# build_against_prefix SRC BUILD NAME [CMAKE ARGS...]: configures and builds the CMake
# project SRC in BUILD against $prefix alone; logs as NAME-*.log.
build_against_prefix() {
  local src=$1 build=$2 name=$3
  shift 3
  timeout -k 5 180 "$FERRY_CMAKE" -S "$src" -B "$build" -G "$FERRY_GENERATOR" \
    -DCMAKE_CXX_COMPILER="$FERRY_CXX" -DCMAKE_BUILD_TYPE="${FERRY_BUILD_TYPE:-RelWithDebInfo}" \
    -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF "$@" >"$tmp/$name-configure.log" 2>&1 ||
    fail "configuring $name"
  local found_dir
  found_dir=$(sed -n 's/^ferry_DIR:PATH=//p' "$build/CMakeCache.txt")
  [[ "$found_dir" == "$libdir/cmake/ferry" ]] || fail "$name: find_package(ferry) found '$found_dir', not $libdir/cmake/ferry"
  timeout -k 5 180 "$FERRY_CMAKE" --build "$build" >"$tmp/$name-build.log" 2>&1 || fail "building $name"
}
example_src="$FERRY_SOURCE_DIR/docs/examples/embed-receiver"
build_against_prefix "$example_src" "$tmp/example" example
example="$tmp/example/embed-receiver"
[[ -x "$example" ]] || fail "no $example"
readelf -d "$example" | grep -q 'NEEDED.*libferry' && fail "the ferry::ferry build links a shared libferry"
if [[ "$FERRY_BUILD_SHARED" == ON ]]; then
  build_against_prefix "$example_src" "$tmp/example-shared" example-shared -DFERRY_TARGET=ferry::ferry_shared
  example_shared="$tmp/example-shared/embed-receiver"
  readelf -d "$example_shared" | grep -q 'NEEDED.*\[libferry\.so\.0\]' ||
    fail "the ferry::ferry_shared build does not need libferry.so.0"
  loaded=$(ldd "$example_shared" | sed -n 's/^[[:space:]]*libferry\.so\.0 => \([^ ]*\).*/\1/p')
  [[ "$loaded" == "$libdir/libferry.so.0" ]] || fail "the shared example loads libferry.so.0 from '$loaded', not $libdir"
fi

# ---------------------------------------------------------------------------------
step "3. the example and both public headers with pkg-config --cflags --libs ferry"
export PKG_CONFIG_PATH="$libdir/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
pc_cflags=$(pkg-config --cflags ferry) || fail "pkg-config --cflags ferry"
pc_libs=$(pkg-config --libs ferry) || fail "pkg-config --libs ferry"
[[ "$(pkg-config --modversion ferry)" == 0.* ]] || fail "ferry.pc version: $(pkg-config --modversion ferry)"
# ferry.pc is relocatable: its includedir is spelled from its own place (.../pkgconfig/../..).
pc_includedir=$(pkg-config --variable=includedir ferry)
[[ "$(realpath "$pc_includedir")" == "$(realpath "$includedir")" ]] || fail "ferry.pc's includedir is $pc_includedir"
[[ " $pc_cflags " == *" -I$pc_includedir "* ]] || fail "pkg-config --cflags ferry lacks -I$pc_includedir: $pc_cflags"
[[ " $pc_cflags " != *" -I$pc_includedir/ferry "* ]] || fail "pkg-config --cflags ferry puts ferry's own folders on the path: $pc_cflags"
# shellcheck disable=SC2086 # the flags are words
timeout -k 5 180 "$FERRY_CXX" -std=c++20 -Wall -Wextra -Werror "$example_src/embed_receiver.cpp" \
  $pc_cflags $pc_libs -o "$tmp/embed-receiver-pc" >"$tmp/pkg-config-build.log" 2>&1 ||
  fail "compiling the example with pkg-config ($pc_cflags $pc_libs)"
rc=0
timeout -k 5 30 "$tmp/embed-receiver-pc" >"$tmp/pc-usage.out" 2>&1 || rc=$?
[[ $rc -eq 2 ]] || fail "the pkg-config build without arguments exited $rc, not 2 (usage)"
printf '#include <ferry/sender/sender.hpp>\n#include <ferry/receiver/receiver.hpp>\nint main() {}\n' >"$tmp/headers.cpp"
# shellcheck disable=SC2086
timeout -k 5 120 "$FERRY_CXX" -std=c++20 -Wall -Wextra -Werror -fsyntax-only $pc_cflags "$tmp/headers.cpp" \
  >"$tmp/headers.log" 2>&1 || fail "the public headers do not compile from the installed tree alone"

# ---------------------------------------------------------------------------------
step "3b. a consumer with its own lib/ and protocol/ headers: find_package(ferry) and pkg-config"
consumer_src="$FERRY_SOURCE_DIR/tests/install/conflicting-consumer"
own_line="consumer lib/events.hpp, consumer lib/core/events.hpp, consumer protocol/result.hpp, consumer protocol/auth_key.hpp (code 7)"
build_against_prefix "$consumer_src" "$tmp/consumer" consumer
# shellcheck disable=SC2086
timeout -k 5 180 "$FERRY_CXX" -std=c++20 -Wall -Wextra -Werror -I"$consumer_src/include" "$consumer_src/consumer.cpp" \
  $pc_cflags $pc_libs -o "$tmp/consumer-pc" >"$tmp/consumer-pc-build.log" 2>&1 ||
  fail "compiling the conflicting consumer with pkg-config ($pc_cflags)"
for c in "$tmp/consumer/consumer" "$tmp/consumer-pc"; do
  timeout -k 5 30 "$c" >"$tmp/consumer.out" 2>&1 || fail "$c exited $?"
  grep -qxF "$own_line" "$tmp/consumer.out" || fail "$c did not get its own headers"
  grep -q '^ferry: tcp:127\.0\.0\.1:7000, exit code 0, event [0-9]*$' "$tmp/consumer.out" || fail "$c: ferry's part"
done

# ---------------------------------------------------------------------------------
step "4. transfer: installed ferry-send -> fault proxy (first connection cut) -> embed-receiver"
mkdir -p "$tmp/src/tree/sub" "$tmp/dest"
head -c $((8 * 1024 * 1024)) /dev/urandom >"$tmp/src/tree/big.bin"
echo "a small file in a sub-directory" >"$tmp/src/tree/sub/small.txt"

timeout -k 5 120 "$bindir/ferry-send" --listen 127.0.0.1:0 --json "$tmp/src/tree" >"$tmp/send.jsonl" 2>"$tmp/send.err" &
send_pid=$!
pids+=("$send_pid")
send_addr=$(wait_for_line "$tmp/send.jsonl" 30 '"address":"tcp:127\.0\.0\.1:[0-9]+') || fail "ferry-send did not listen"
send_port=${send_addr##*:}

timeout -k 5 120 "$FERRY_PROXY" --listen 127.0.0.1:0 --target "tcp:127.0.0.1:$send_port" \
  --faulty 1 --down close-after=2M --log "$tmp/proxy.jsonl" >"$tmp/proxy.out" 2>"$tmp/proxy.err" &
proxy_pid=$!
pids+=("$proxy_pid")
proxy_addr=$(wait_for_line "$tmp/proxy.out" 30 'listening on (tcp:)?127\.0\.0\.1:[0-9]+') || fail "the proxy did not listen"
proxy_port=${proxy_addr##*:}

start=$SECONDS
rc=0
timeout -k 5 120 "$example" "$tmp/dest" "127.0.0.1:$proxy_port" >"$tmp/example.out" 2>"$tmp/example.err" || rc=$?
[[ $rc -eq 0 ]] || fail "embed-receiver exited $rc"
rc=0
wait "$send_pid" || rc=$?
[[ $rc -eq 0 ]] || fail "ferry-send exited $rc"
echo "transfer took $((SECONDS - start)) s"
# The proxy writes a connection's log line when it ends; SIGTERM ends the rest and it exits 0.
kill -TERM "$proxy_pid"
rc=0
wait "$proxy_pid" || rc=$?
[[ $rc -eq 0 ]] || fail "ferry-fault-proxy exited $rc"
pids=()  # all reaped

diff -r "$tmp/src/tree" "$tmp/dest/tree" >"$tmp/diff.log" 2>&1 || fail "DEST differs from the source (or holds more)"
leftovers=$(find "$tmp/dest" -name '*.ferry-part' -o -name '*.ferry-journal*')
[[ -z "$leftovers" ]] || fail "ferry leftovers in DEST: $leftovers"

grep -q '^reconnect' "$tmp/example.out" || fail "the example printed no reconnect"
grep -q '^resume tree/big.bin' "$tmp/example.out" || fail "the example did not resume tree/big.bin"
grep -q '^dial 2: connected' "$tmp/example.out" || fail "the example's dial function was not called again"
n_dialled=$(grep -c '^dial [0-9]*: connected' "$tmp/example.out" || true)
n_released=$(grep -c '^dial [0-9]*: released' "$tmp/example.out" || true)
[[ "$n_dialled" -eq "$n_released" ]] || fail "$n_dialled descriptors lent, $n_released released"
grep -q '^session_end: done \[exit 0' "$tmp/example.out" || fail "the example's session_end is not a success"
grep -q '"event":"session_end"' "$tmp/send.jsonl" || fail "ferry-send --json wrote no session_end"
n_conns=$(grep -c '"conn":' "$tmp/proxy.jsonl" || true)
[[ "$n_conns" -ge 2 ]] || fail "the proxy saw $n_conns connections, not 2 or more"
head -n1 "$tmp/proxy.jsonl" | grep -q '"fired":\["down close' || fail "the first connection was not cut"


# ---------------------------------------------------------------------------------
if [[ "$FERRY_BUILD_SHARED" == ON ]]; then
  step "5. transfer: installed ferry-send -> the example linked against libferry.so.0"
  rm -rf "$tmp/dest" && mkdir -p "$tmp/dest"
  timeout -k 5 120 "$bindir/ferry-send" --listen 127.0.0.1:0 --json "$tmp/src/tree" >"$tmp/send2.jsonl" 2>"$tmp/send2.err" &
  send_pid=$!
  pids+=("$send_pid")
  send_addr=$(wait_for_line "$tmp/send2.jsonl" 30 '"address":"tcp:127\.0\.0\.1:[0-9]+') || fail "ferry-send did not listen"
  rc=0
  timeout -k 5 120 "$example_shared" "$tmp/dest" "127.0.0.1:${send_addr##*:}" >"$tmp/example-shared.out" 2>&1 || rc=$?
  [[ $rc -eq 0 ]] || fail "the shared embed-receiver exited $rc"
  rc=0
  wait "$send_pid" || rc=$?
  pids=()
  [[ $rc -eq 0 ]] || fail "ferry-send exited $rc"
  diff -r "$tmp/src/tree" "$tmp/dest/tree" >"$tmp/diff.log" 2>&1 || fail "DEST differs from the source (shared library)"
  grep -q '^session_end: done \[exit 0' "$tmp/example-shared.out" || fail "the shared example's session_end is not a success"
fi

echo "install_test: OK ($n_conns connections, $n_dialled dials; shared library: $FERRY_BUILD_SHARED)"
