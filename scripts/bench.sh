#!/usr/bin/env bash
# Benchmark: ferry against a raw socat copy, 1 GiB over loopback TCP to a file on disk.
#
#   bash scripts/bench.sh                      # from the repo top
#   SIZE=256M RUNS=3 bash scripts/bench.sh     # a quicker run
#
# In one run it builds ferry-send/ferry-recv (Release, BUILD_DIR, default build-bench/),
# makes a random file of SIZE (default 1G; reused if already in BENCH_DIR, default
# /tmp/ferry-bench), then RUNS times (default 5, at least 3), alternating:
#   socat   socat -u -b 1048576 TCP-LISTEN:PORT,reuseaddr OPEN:out,creat,trunc
#           socat -u -b 1048576 OPEN:file TCP:127.0.0.1:PORT
#           then `sync out`, timed separately (the "socat+fsync" line);
#   ferry   ferry-recv --listen 127.0.0.1:0 --once DIR  and
#           ferry-send --connect 127.0.0.1:PORT -q file, each under /usr/bin/time -f %M.
# Wall clock from starting the sender until both processes have exited. Outputs are
# deleted between runs; ferry's output is compared with cmp once. Prints every run,
# the medians, the ratio ferry/socat (plain socat: a raw copy with no checks and no
# fsync; ferry verifies and fsyncs before its rename), and ferry's peak RSS (max of
# both processes over all runs). Exits non-zero only if a transfer or check failed.
set -euo pipefail

top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build_dir=${BUILD_DIR:-$top/build-bench}  # not build/: the tests build there in RelWithDebInfo
[[ "$build_dir" = /* ]] || build_dir="$top/$build_dir"
bench_dir=${BENCH_DIR:-/tmp/ferry-bench}
size=${SIZE:-1G}
runs=${RUNS:-5}
block=1048576

die() { printf 'bench: FAILED: %s\n' "$*" >&2; exit 1; }
[[ "$runs" =~ ^[0-9]+$ && $runs -ge 3 ]] || die "RUNS must be a number >= 3 (got '$runs')"
command -v socat >/dev/null || die "socat is not installed (bash scripts/setup-deps.sh)"
[[ -x /usr/bin/time ]] || die "/usr/bin/time is not installed (bash scripts/setup-deps.sh)"

echo "== build (Release) in $build_dir"
cmake -S "$top" -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DFERRY_ASAN=OFF -DFERRY_UBSAN=OFF >/dev/null
ninja -C "$build_dir" ferry-send ferry-recv >/dev/null
send="$build_dir/sender/ferry-send"
recv="$build_dir/receiver/ferry-recv"

mkdir -p "$bench_dir"
data="$bench_dir/data-$size.bin"
bytes=$(numfmt --from=iec "$size")
if [[ ! -f "$data" || $(stat -c %s "$data") -ne $bytes ]]; then
  echo "== generating $data ($size of random bytes)"
  head -c "$bytes" /dev/urandom >"$data.tmp"
  mv "$data.tmp" "$data"
else
  echo "== reusing $data"
fi
out="$bench_dir/out"
rm -rf "$out"
mkdir -p "$out"

bg_pid=""  # the background receiver of the current run, while it runs
cleanup() {
  if [[ -n "$bg_pid" ]]; then
    kill "$bg_pid" 2>/dev/null || true
    wait "$bg_pid" 2>/dev/null || true
  fi
  rm -rf "$out"
}
trap cleanup EXIT

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.3f", b - a}'; }

# True when something listens on TCP port $1 (from /proc/net/tcp, no extra tools).
listening() {
  local hex
  hex=$(printf ':%04X' "$1")
  awk -v p="$hex" '$4 == "0A" && substr($2, length($2) - 4) == p {found = 1} END {exit !found}' \
    /proc/net/tcp /proc/net/tcp6 2>/dev/null
}

# Starts the socat receiver writing to $1 on a free port; sets bg_pid and sock_port.
start_socat_receiver() {
  local target=$1
  for _ in $(seq 1 20); do
    sock_port=$((20000 + RANDOM % 40000))
    listening "$sock_port" && continue
    socat -u -b "$block" "TCP-LISTEN:$sock_port,reuseaddr" "OPEN:$target,creat,trunc" &
    bg_pid=$!
    for _ in $(seq 1 100); do  # up to 5 s
      listening "$sock_port" && return 0
      kill -0 "$bg_pid" 2>/dev/null || break
      sleep 0.05
    done
    kill "$bg_pid" 2>/dev/null || true
    wait "$bg_pid" 2>/dev/null || true
    bg_pid=""
  done
  die "could not start a socat listener"
}

# One socat run; sets ts (transfer seconds) and tsync (seconds of `sync out` after it).
run_socat() {
  local target="$out/socat.bin" t0 t1 t2 rc=0
  start_socat_receiver "$target"
  t0=$(now)
  timeout 600 socat -u -b "$block" "OPEN:$data" "TCP:127.0.0.1:$sock_port" || rc=$?
  wait "$bg_pid" || rc=$?
  bg_pid=""
  t1=$(now)
  [[ $rc -eq 0 ]] || die "socat run failed (status $rc)"
  sync "$target"
  t2=$(now)
  [[ $(stat -c %s "$target") -eq $bytes ]] || die "socat wrote $(stat -c %s "$target") of $bytes bytes"
  rm -f "$target"
  ts=$(elapsed "$t0" "$t1")
  tsync=$(elapsed "$t1" "$t2")
}

# One ferry run; sets tf (seconds), rss_s and rss_r (peak RSS in KiB of ferry-send and
# ferry-recv). $1 = 1: compare the output with the source (outside the timing).
run_ferry() {
  local dir="$out/ferry" t0 t1 rc=0 port=""
  mkdir -p "$dir"
  /usr/bin/time -f %M -o "$out/recv.rss" "$recv" --listen 127.0.0.1:0 --once "$dir" 2>"$out/recv.err" &
  bg_pid=$!
  for _ in $(seq 1 200); do  # up to 10 s for the listening line
    port=$(sed -n 's/^ferry-recv: listening on tcp:127\.0\.0\.1:\([0-9][0-9]*\)$/\1/p' "$out/recv.err")
    [[ -n "$port" ]] && break
    kill -0 "$bg_pid" 2>/dev/null || break
    sleep 0.05
  done
  [[ -n "$port" ]] || { cat "$out/recv.err" >&2; die "ferry-recv did not report its port"; }
  t0=$(now)
  timeout 600 /usr/bin/time -f %M -o "$out/send.rss" "$send" --connect "127.0.0.1:$port" -q "$data" || rc=$?
  wait "$bg_pid" || rc=$?
  bg_pid=""
  t1=$(now)
  [[ $rc -eq 0 ]] || { cat "$out/recv.err" >&2; die "ferry run failed (status $rc)"; }
  local got
  got="$dir/$(basename "$data")"
  if [[ $1 -eq 1 ]]; then
    cmp "$data" "$got" || die "ferry's output differs from the source"
    echo "   (cmp: ferry's output is identical to the source)"
  fi
  [[ -z $(find "$dir" -name '.*ferry-*') ]] || die "ferry left partial or journal files"
  rm -rf "$dir"
  tf=$(elapsed "$t0" "$t1")
  rss_s=$(tail -n 1 "$out/send.rss")
  rss_r=$(tail -n 1 "$out/recv.rss")
}

median() { sort -n | awk '{v[NR] = $1} END {if (NR % 2) print v[(NR + 1) / 2]; else printf "%.3f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
mib_s() { awk -v n="$bytes" -v s="$1" 'BEGIN {printf "%.0f", n / 1048576 / s}'; }

socat_times=() sync_times=() socat_fsync_times=() ferry_times=()
peak_send=0 peak_recv=0
echo "== $runs runs each, $size over loopback TCP to $out"
for i in $(seq 1 "$runs"); do
  run_socat
  tsf=$(awk -v a="$ts" -v b="$tsync" 'BEGIN {printf "%.3f", a + b}')
  socat_times+=("$ts") sync_times+=("$tsync") socat_fsync_times+=("$tsf")
  run_ferry "$([[ $i -eq 1 ]] && echo 1 || echo 0)"
  ferry_times+=("$tf")
  if ((rss_s > peak_send)); then peak_send=$rss_s; fi
  if ((rss_r > peak_recv)); then peak_recv=$rss_r; fi
  printf 'run %d: socat %6.3f s (%4s MiB/s)  socat+fsync %6.3f s  ferry %6.3f s (%4s MiB/s)  RSS send %d KiB, recv %d KiB\n' \
    "$i" "$ts" "$(mib_s "$ts")" "$tsf" "$tf" "$(mib_s "$tf")" "$rss_s" "$rss_r"
done

m_socat=$(printf '%s\n' "${socat_times[@]}" | median)
m_socat_fsync=$(printf '%s\n' "${socat_fsync_times[@]}" | median)
m_ferry=$(printf '%s\n' "${ferry_times[@]}" | median)
ratio=$(awk -v f="$m_ferry" -v s="$m_socat" 'BEGIN {printf "%.2f", f / s}')
ratio_fsync=$(awk -v f="$m_ferry" -v s="$m_socat_fsync" 'BEGIN {printf "%.2f", f / s}')
peak=$((peak_send > peak_recv ? peak_send : peak_recv))
peak_mib=$(awk -v k="$peak" 'BEGIN {printf "%.1f", k / 1024}')
verdict() { awk -v v="$1" -v lim="$2" 'BEGIN {print (v <= lim ? "within" : "OVER") " the target of " lim}'; }

echo
echo "median socat:        $m_socat s ($(mib_s "$m_socat") MiB/s)"
echo "median socat+fsync:  $m_socat_fsync s ($(mib_s "$m_socat_fsync") MiB/s)  (extra: socat, then sync of the output file)"
echo "median ferry:        $m_ferry s ($(mib_s "$m_ferry") MiB/s)"
echo "ratio ferry/socat:   $ratio ($(verdict "$ratio" 1.3))"
echo "ratio ferry/socat+fsync: $ratio_fsync"
echo "ferry peak RSS:      $peak_mib MiB (ferry-send $((peak_send / 1024)) MiB, ferry-recv $((peak_recv / 1024)) MiB; $(verdict "$peak_mib" 64) MiB)"
