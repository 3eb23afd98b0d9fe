#!/usr/bin/env bash
# The ferry demo: build, then send a 256 MiB random file and a small directory tree
# over loopback TCP, and prove that what arrived is byte-for-byte what was sent.
#
#   bash scripts/demo.sh          # as root on a fresh Debian 12, from the repo top
#
# Steps: scripts/setup-deps.sh; a Release build of ferry-send and ferry-recv in
# build/ (BUILD_DIR to change it, relative to the repo top); sources generated in a
# temp dir (DEMO_MIB: size of the random file, default 256); ferry-recv --listen
# 127.0.0.1:0 --once DEST; ferry-send with progress; cmp / diff -r; a check that DEST
# holds the delivered files and nothing else. Exits non-zero on any failure.
set -euo pipefail

top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build_dir=${BUILD_DIR:-$top/build}
[[ "$build_dir" = /* ]] || build_dir="$top/$build_dir"
size_mib=${DEMO_MIB:-256}

say() { printf '\n== %s\n' "$*"; }
die() { printf 'demo: FAILED: %s\n' "$*" >&2; exit 1; }

say "dependencies"
bash "$top/scripts/setup-deps.sh"

say "build (Release) in $build_dir"
cmake -S "$top" -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DFERRY_ASAN=OFF -DFERRY_UBSAN=OFF >/dev/null
ninja -C "$build_dir" ferry-send ferry-recv
send="$build_dir/sender/ferry-send"
recv="$build_dir/receiver/ferry-recv"
[[ -x "$send" && -x "$recv" ]] || die "executables not found in $build_dir"

work=$(mktemp -d /tmp/ferry-demo.XXXXXX)
recv_pid=""
cleanup() {
  if [[ -n "$recv_pid" ]] && kill -0 "$recv_pid" 2>/dev/null; then
    kill "$recv_pid" 2>/dev/null || true
    wait "$recv_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

say "sources in $work/src"
src="$work/src"
dest="$work/dest"
mkdir -p "$src/tree/docs/notes/deep" "$src/tree/empty-dir" "$src/tree/bin"
head -c "${size_mib}M" /dev/urandom >"$src/random.bin"
printf 'hello from ferry\n' >"$src/tree/README.txt"
printf 'nested three levels down\n' >"$src/tree/docs/notes/deep/leaf.txt"
seq 1 20000 >"$src/tree/docs/numbers.txt"
head -c 300000 /dev/urandom >"$src/tree/bin/blob.dat"
: >"$src/tree/empty-file"
(cd "$src" && find . -printf '%y %8s  %p\n' | sort -k3)

say "ferry-recv --listen 127.0.0.1:0 --once $dest"
"$recv" --listen 127.0.0.1:0 --once "$dest" 2>"$work/recv.err" &
recv_pid=$!
port=""
for _ in $(seq 1 100); do  # up to 10 s for the listening line
  port=$(sed -n 's/^ferry-recv: listening on tcp:127\.0\.0\.1:\([0-9][0-9]*\)$/\1/p' "$work/recv.err")
  [[ -n "$port" ]] && break
  kill -0 "$recv_pid" 2>/dev/null || break
  sleep 0.1
done
[[ -n "$port" ]] || { cat "$work/recv.err" >&2; die "ferry-recv did not report its port"; }
echo "listening on port $port"

say "ferry-send --connect 127.0.0.1:$port -v random.bin tree"
start=$(date +%s.%N)
(cd "$src" && timeout 600 "$send" --connect "127.0.0.1:$port" -v random.bin tree) ||
  die "ferry-send exited with status $?"
end=$(date +%s.%N)

recv_rc=0
timeout 60 tail --pid="$recv_pid" -f /dev/null || die "ferry-recv did not exit after the transfer"
wait "$recv_pid" || recv_rc=$?
recv_pid=""
sed 's/^/  recv| /' "$work/recv.err"
[[ $recv_rc -eq 0 ]] || die "ferry-recv exited with status $recv_rc"

say "verification"
cmp "$src/random.bin" "$dest/random.bin" || die "random.bin differs"
diff -r "$src/tree" "$dest/tree" || die "tree differs"
[[ -d "$dest/tree/empty-dir" ]] || die "empty directory missing"
[[ -f "$dest/tree/empty-file" && ! -s "$dest/tree/empty-file" ]] || die "empty file missing"
(cd "$src" && find . -mindepth 1 | sort) >"$work/src.list"
(cd "$dest" && find . -mindepth 1 | sort) >"$work/dest.list"
diff "$work/src.list" "$work/dest.list" >/dev/null ||
  { diff "$work/src.list" "$work/dest.list" >&2 || true; die "DEST holds other entries than were sent"; }
leftovers=$(cd "$dest" && find . -name '*.ferry-part' -o -name '*.ferry-journal*' | wc -l)
[[ $leftovers -eq 0 ]] || die "$leftovers ferry partial/journal files left in DEST"

bytes=$(stat -c %s "$dest/random.bin")
files=$(cd "$dest" && find . -type f | wc -l)
dirs=$(cd "$dest" && find . -mindepth 1 -type d | wc -l)
tree_bytes=$(cd "$dest/tree" && find . -type f -printf '%s\n' | awk '{s+=$1} END {print s+0}')
secs=$(awk -v a="$start" -v b="$end" 'BEGIN {printf "%.2f", b - a}')
rate=$(awk -v n="$bytes" -v a="$start" -v b="$end" 'BEGIN {printf "%.0f", n / 1048576 / (b - a)}')
echo "random.bin: $bytes bytes, identical (cmp)"
echo "tree:       $tree_bytes bytes in $((files - 1)) files and $dirs directories (empty ones included), identical (diff -r)"
echo "DEST:       exactly the sent entries; no partial or journal files left"
echo "time:       $secs s for $((bytes / 1048576)) MiB, about $rate MiB/s (from connect to the last verified file, fsync included)"
echo
echo "demo: OK"
