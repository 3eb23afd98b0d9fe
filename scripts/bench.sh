#!/usr/bin/env bash
# Benchmark (a command, not a test): ferry against raw copies and an rsync daemon, over
# loopback TCP, a unix socket and a pipe, always to files on disk: one big file, and
# trees of many files (issue #10).
#
#   bash scripts/bench.sh                        # as root on Debian 12, from the repo top
#   SIZE=64M ROUNDS=3 bash scripts/bench.sh      # a quick run
#   SCENARIOS="tcp pipe" bash scripts/bench.sh   # a subset
#   SCENARIOS="files-small files-many tree" ROUNDS_MANY=1 bash scripts/bench.sh  # trees only
#
# Settings (environment):
#   SIZE           random source file, numfmt IEC (default 1G); kept in BENCH_DIR for reuse
#   ROUNDS         measured rounds (default 5; at least 3 with a big-file scenario, else at
#                  least 1), after one warm-up round
#   SCENARIOS      any of "tcp unix pipe" (one big file) and "files-small files-many tree"
#                  (many files), or "all" (default "tcp unix pipe files-small")
#   FILES_SMALL, DIRS_SMALL, FSIZE_SMALL   files-small: 5000 files of 4K in 50 directories
#   FILES_MANY, DIRS_MANY, FSIZE_MANY      files-many: 100000 files of 1K in 1000 directories
#   TREE_FROM, TREE_FILES, TREE_MAX        tree: the first 30000 files (at most 400M in all)
#                  of "/usr/include /usr/share"
#   ROUNDS_SMALL, ROUNDS_MANY, ROUNDS_TREE  measured rounds of that scenario (default ROUNDS)
#   PROBE_FILES    files of each create-rate probe (default 2000)
#   PROBE_SYNCS    O_DSYNC writes of 4 KiB of each probe (default 100)
#   BENCH_DIR      source file, and run/ for outputs, sockets, logs (default /tmp/ferry-bench)
#   BUILD_DIR      where the Release ferry-send/ferry-recv are built (default build-bench/)
#   FERRY_BIN_DIR  use prebuilt executables instead of building: DIR/ferry-send and
#                  DIR/ferry-recv, or a build tree (DIR/sender/, DIR/receiver/)
#   BENCH_TIMEOUT  seconds any one process may run (default 600); in a many-files scenario
#                  a transfer that runs into it is reported as ">600 s", counted at the
#                  limit (its ratios become bounds, marked '>' or '<') and not run again
# Missing tools (socat, rsync, /usr/bin/time, tar, diff; cmake, ninja when building): runs
# scripts/setup-deps.sh, which installs them (and chattr) as root or says what to install.
#
# Big-file scenarios (tcp, unix, pipe), all in the same rounds first: each round runs
# every transfer of the chosen ones once, alternating the order
# (forward, then backward); the warm-up round is not counted. The same source file every
# time; each output is deleted and `sync` runs (untimed) before the next transfer.
#   tcp   ferry_fsync    ferry-recv --listen 127.0.0.1:0 --once DIR; ferry-send --connect .. -q FILE
#         ferry_nofsync  the same with ferry-recv --no-fsync (only if the build has it)
#         socat          socat -u -b 1048576 TCP-LISTEN:PORT OPEN:OUT; socat .. OPEN:FILE TCP:..
#         socat_sync     that run plus `sync OUT` (as ferry fsyncs each file before its rename)
#         rsync          an rsync daemon started for this transfer on a loopback port (module
#                        = the output dir), `rsync -W FILE rsync://127.0.0.1:PORT/bench/`
#         rsync_sync     that run plus `sync OUT` (rsync does not fsync by default)
#   unix  ferry_fsync, ferry_nofsync, socat, socat_sync as above over unix:BENCH_DIR/run/s.sock
#   pipe  ferry_fsync    ferry-send -e 'ferry-recv --stdio DIR' -q FILE (and ferry_nofsync)
#         copy           socat -u -b 1048576 OPEN:FILE STDOUT | socat -u -b 1048576 STDIN OPEN:OUT
#         copy_sync      that run plus `sync OUT`
#   The pipe copy is two processes joined by one kernel channel, as ferry-send and its
#   carrier are; socat EXEC:..EXEC:.. would add a relay process and two copies, flattering ferry.
# Measured per transfer: wall time from starting the sending side until both ends have
# exited ($EPOCHREALTIME); CPU user+sys and peak RSS of each end from /usr/bin/time
# -f '%e %U %S %M', which counts the children a process reaped: the rsync daemon's
# per-connection processes (the daemon is watched until they are gone, then stopped),
# and in the pipe scenario ferry-send's carrier (its own figures are subtracted from the
# sender's CPU; the sender's RSS there is max(sender, carrier), its own when above the
# carrier's, else shown with '<' as an upper bound). The `sync` after a raw copy adds its
# wall time to the transfer's and its CPU to the receiving end's.
#
# Output: every transfer, a table of medians, then the ratios (median of the per-round
# ratios, each round's ratio from transfers of that round) with the issue's targets:
#   ferry_fsync/socat_sync (/copy_sync)    <= 1.0   ferry_nofsync/socat (/copy)  <= 1.5
#   ferry_fsync/rsync_sync                 <= 0.7   peak RSS of each ferry end   <= 32 MiB
#   cpu.ferry_fsync/socat_sync (and cpu.ferry_nofsync/socat), both ends         <= 2.0
#   cpu.ferry_fsync/rsync_sync (and cpu.ferry_nofsync/rsync), both ends         <= 0.8
# (the wall and RSS targets are applied to every scenario, the CPU ones to tcp)
# marked met / NOT MET, and the same as plain lines `RATIO name value` (rss_mib.* values
# are MiB, the largest over the rounds). Exits non-zero if a transfer fails or an output
# differs from the source (cmp of every output in the warm-up round, sizes every round);
# a target not met does not change the exit status.
#
# Many-files scenarios (files-small, files-many, tree: issue #10's a, b, c), each on its own
# after the big-file ones, over loopback TCP. The source is made once per scenario below
# BENCH_DIR/run/src (files-small, files-many: random bytes from /dev/urandom; tree: regular
# files with printable ASCII names from TREE_FROM, each root sorted by path, copied with
# their paths, hard links as separate files) and its files, directories and bytes printed.
# A warm-up and the rounds, the order alternating; every transfer writes into a fresh
# directory under BENCH_DIR/run/trees, marked `chattr +T` (a warning when that fails), and
# all are kept until the scenario ends (deleting thousands of files between rounds slows
# the next round's creates on ext4); `sync` (untimed) after each. A create-rate probe
# (PROBE_FILES empty files, no fsync, in a fresh directory there, files/s, with the load
# average; then PROBE_SYNCS O_DSYNC writes of 4 KiB, ms each) before and after each
# scenario shows a slowed disk or a busy machine.
#   ferry_fsync    ferry-recv --listen 127.0.0.1:0 --once DEST; ferry-send --connect .. -q SRC
#   ferry_nofsync  the same with ferry-recv --no-fsync (only if the build has it)
#   tar_socat      tar -c -C PARENT SRC | socat -u -b 1048576 STDIN TCP:..  ->
#                  socat -u -b 1048576 TCP-LISTEN:.. STDOUT | tar -x -C DEST
#   rsync          an rsync daemon (module = DEST), `rsync -rW SRC rsync://127.0.0.1:PORT/bench/`
#   *_sync         that run plus `sync -f DEST` (syncfs: neither tar nor rsync fsyncs)
# Every copy is checked: DEST holds only SRC's directory, with the same count of files and
# directories and total bytes; in the warm-up also `diff -r`. Per tool: medians of wall,
# files/s, MiB/s, CPU and peak RSS of each end (as above; the tar ends are each a bash
# running both processes of its pipeline, so their CPU is the sum and their RSS the larger).
# Ratios (median of per-round ratios) with the targets of issue #10:
#   ferry_fsync/rsync_sync <= 1.0 (all three)   ferry_fsync/tar_socat_sync <= 2.0 (files-small)
#   ferry_nofsync/rsync, ferry_nofsync/tar_socat (no target)
#   peak RSS of each ferry end <= 64 MiB (files-many)
# The source and outputs of a scenario are deleted at its end, the next one's first
# probe shows what that did.
#
# Comparing two builds: build the old one, run both, join the RATIO lines, e.g.
#   git worktree add /tmp/ferry-old OLD_REV
#   cmake -S /tmp/ferry-old -B /tmp/ferry-old/b -G Ninja -DCMAKE_BUILD_TYPE=Release \
#     -DFERRY_BUILD_TESTS=OFF && ninja -C /tmp/ferry-old/b ferry-send ferry-recv
#   FERRY_BIN_DIR=/tmp/ferry-old/b bash scripts/bench.sh | tee old.txt
#   bash scripts/bench.sh | tee new.txt
#   join <(grep ^RATIO old.txt | cut -d' ' -f2- | sort) <(grep ^RATIO new.txt | cut -d' ' -f2- | sort)
set -euo pipefail
export LC_ALL=C  # a '.' in $EPOCHREALTIME and in awk's numbers

top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build_dir=${BUILD_DIR:-build-bench}  # not build/: the tests build there in RelWithDebInfo
[[ "$build_dir" = /* ]] || build_dir="$top/$build_dir"
bench_dir=${BENCH_DIR:-/tmp/ferry-bench}
size=${SIZE:-1G}
rounds=${ROUNDS:-${RUNS:-5}}  # RUNS: its former name
big_file_scenarios="tcp unix pipe"
tree_scenarios="files-small files-many tree"
requested=${SCENARIOS:-tcp unix pipe files-small}
[[ $requested == all ]] && requested="$big_file_scenarios $tree_scenarios"
scenarios=""  # the big-file ones of $requested (check_settings)
trees=""      # the many-files ones of $requested, in their order
limit=${BENCH_TIMEOUT:-600}
files_small=${FILES_SMALL:-5000} dirs_small=${DIRS_SMALL:-50} fsize_small=${FSIZE_SMALL:-4K}
files_many=${FILES_MANY:-100000} dirs_many=${DIRS_MANY:-1000} fsize_many=${FSIZE_MANY:-1K}
tree_files=${TREE_FILES:-30000} tree_max=${TREE_MAX:-400M} tree_from=${TREE_FROM:-/usr/include /usr/share}
probe_files=${PROBE_FILES:-2000} probe_syncs=${PROBE_SYNCS:-100}
block=1048576
tfmt='%e %U %S %M'
run="$bench_dir/run"  # outputs, sockets, logs, results; removed at exit
sock="$run/s.sock"
results="$run/results"  # one line per transfer: round scenario variant wall cpu_s cpu_r rss_s rss_r exact

say() { printf '== %s\n' "$*"; }
die() { printf 'bench: FAILED: %s\n' "$*" >&2; exit 1; }

check_settings() {
  local s v known="$big_file_scenarios $tree_scenarios all"
  [[ -n "${requested// /}" ]] || die "SCENARIOS is empty (any of: $known)"
  for s in $requested; do
    if [[ " $big_file_scenarios " == *" $s "* ]]; then
      scenarios+="${scenarios:+ }$s"
    elif [[ " $tree_scenarios " == *" $s "* ]]; then
      trees+="${trees:+ }$s"
    else
      die "unknown scenario '$s' (any of: $known)"
    fi
  done
  [[ "$rounds" =~ ^[0-9]+$ && $rounds -ge 1 ]] || die "ROUNDS must be a number >= 1 (got '$rounds')"
  [[ -z $scenarios || $rounds -ge 3 ]] || die "ROUNDS must be >= 3 for '$scenarios' (got '$rounds')"
  [[ "$limit" =~ ^[0-9]+$ ]] || die "BENCH_TIMEOUT must be a number of seconds (got '$limit')"
  for v in files_small dirs_small files_many dirs_many tree_files probe_files probe_syncs \
    ROUNDS_SMALL ROUNDS_MANY ROUNDS_TREE; do
    [[ -z ${!v:-} || ${!v} =~ ^[1-9][0-9]*$ ]] || die "${v^^} must be a number >= 1 (got '${!v}')"
  done
  for v in fsize_small fsize_many tree_max; do
    numfmt --from=iec "${!v}" >/dev/null 2>&1 || die "${v^^} must be a size such as 4K (got '${!v}')"
  done
  for s in $tree_from; do [[ $s == /* && -d $s ]] || die "TREE_FROM: '$s' is not an absolute directory"; done
  ((${#sock} < 100)) || die "BENCH_DIR is too long for a unix socket path ($sock)"
}

ensure_deps() {
  local c missing=()
  local tools=(socat rsync timeout cmp numfmt pkill)
  [[ -z $trees ]] || tools+=(tar diff split find xargs)
  [[ -n "${FERRY_BIN_DIR:-}" ]] || tools+=(cmake ninja)
  for c in "${tools[@]}"; do command -v "$c" >/dev/null || missing+=("$c"); done
  [[ -x /usr/bin/time ]] || missing+=(/usr/bin/time)
  ((${#missing[@]} == 0)) && return 0
  say "missing: ${missing[*]}; running scripts/setup-deps.sh"
  bash "$top/scripts/setup-deps.sh" || die "install the dependencies first: bash scripts/setup-deps.sh (as root)"
}

# Sets send and recv: the prebuilt executables of FERRY_BIN_DIR, or a Release build.
locate_ferry() {
  if [[ -n "${FERRY_BIN_DIR:-}" ]]; then
    say "prebuilt ferry from $FERRY_BIN_DIR (FERRY_BIN_DIR)"
    send="$FERRY_BIN_DIR/ferry-send" recv="$FERRY_BIN_DIR/ferry-recv"
    [[ -x "$send" ]] || send="$FERRY_BIN_DIR/sender/ferry-send" recv="$FERRY_BIN_DIR/receiver/ferry-recv"
  else
    say "build (Release) in $build_dir, $(git -C "$top" describe --always --dirty 2>/dev/null || echo '?')"
    cmake -S "$top" -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=Release \
      -DFERRY_ASAN=OFF -DFERRY_UBSAN=OFF -DFERRY_BUILD_TESTS=OFF >/dev/null
    ninja -C "$build_dir" ferry-send ferry-recv >/dev/null
    send="$build_dir/sender/ferry-send" recv="$build_dir/receiver/ferry-recv"
  fi
  [[ -x "$send" && -x "$recv" ]] || die "ferry-send/ferry-recv not found ($send, $recv)"
  printf '   %s\n   %s\n' "$send" "$recv"
}

# Sets nofsync to 1 when ferry-recv has --no-fsync.
detect_nofsync() {
  local help
  help=$("$recv" --help 2>&1) || true
  if grep -q -- '--no-fsync' <<<"$help"; then
    nofsync=1
    echo "   ferry-recv has --no-fsync: the ferry_nofsync rows run"
  else
    nofsync=0
    echo "   ferry-recv has no --no-fsync option (not in its --help): the ferry_nofsync rows" \
      "(ferry without fsync against the raw copies without sync) are skipped"
  fi
}

# Sets data (the source file of SIZE random bytes, reused when present) and bytes.
make_data() {
  mkdir -p "$bench_dir"
  bytes=$(numfmt --from=iec "$size")
  data="$bench_dir/data-$size.bin"
  if [[ ! -f "$data" || $(stat -c %s "$data") -ne $bytes ]]; then
    say "generating $data ($size of random bytes)"
    head -c "$bytes" /dev/urandom >"$data.tmp"
    mv "$data.tmp" "$data"
  else
    say "reusing $data"
  fi
}

# --- processes: every one runs under `timeout -k 5 $limit`, so every wait is bounded ---

bg_pids=()  # /usr/bin/time wrappers of background processes not yet waited for
# Runs "$@" in the background, /usr/bin/time into $1, stderr into $2; sets bg_pid.
start_bg() {
  local tf=$1 err=$2
  shift 2
  /usr/bin/time -f "$tfmt" -o "$tf" timeout -k 5 "$limit" "$@" 2>"$err" &
  bg_pid=$!
  bg_pids+=("$bg_pid")
}
forget_bg() {
  local p keep=()
  for p in "${bg_pids[@]}"; do [[ $p == "$1" ]] || keep+=("$p"); done
  bg_pids=("${keep[@]}")
}
# Returns the exit status of background process $1.
wait_bg() {
  local rc=0
  wait "$1" || rc=$?
  forget_bg "$1"
  return $rc
}
# Stops background process $1 (SIGTERM to its `timeout`, which passes it on) and reaps it.
stop_bg() {
  pkill -TERM -P "$1" 2>/dev/null || true
  wait_bg "$1" || true
}
cleanup() {
  local p
  for p in "${bg_pids[@]}"; do pkill -TERM -P "$p" 2>/dev/null || true; done
  for p in "${bg_pids[@]}"; do
    timeout 10 tail --pid="$p" -f /dev/null 2>/dev/null || kill -KILL "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
  done
  rm -rf "$run"
}
# Runs "$@" in the foreground, /usr/bin/time into $1.
fg_timed() {
  local tf=$1
  shift
  /usr/bin/time -f "$tfmt" -o "$tf" timeout -k 5 "$limit" "$@"
}

# Polls "$@" every 10 ms for up to $1 seconds; false if it never succeeded.
poll() {
  local deadline=$((SECONDS + $1))
  shift
  until "$@"; do
    ((SECONDS <= deadline)) || return 1
    sleep 0.01
  done
}
# True when something listens on TCP port $1 (from /proc/net/tcp, no extra tools).
listening() {
  local hex
  hex=$(printf ':%04X' "$1")
  awk -v p="$hex" '$4 == "0A" && substr($2, length($2) - 4) == p {found = 1} END {exit !found}' \
    /proc/net/tcp /proc/net/tcp6 2>/dev/null
}
free_port() {
  local p
  for _ in $(seq 1 50); do
    p=$((20000 + RANDOM % 40000))
    listening "$p" || { echo "$p"; return 0; }
  done
  die "no free TCP port found"
}

# --- measurements ---

cpu_of() { tail -n 1 "$1" | awk '{printf "%.2f", $2 + $3}'; }  # user+sys of a time file
rss_of() { tail -n 1 "$1" | awk '{print $4}'; }                 # peak RSS (KiB) of a time file
sub() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.3f", a - b}'; }
add() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.3f", a + b}'; }

# record VARIANT WALL CPU_SEND CPU_RECV RSS_SEND RSS_RECV [EXACT]: one transfer of the
# current scenario and round into $results (the last column, 0, says it did not time out),
# and a line on stdout (with files/s in a many-files scenario: $files > 0).
record() {
  local v=$1 wall=$2 cs=$3 cr=$4 ms=$5 mr=$6 exact=${7:-1}
  echo "$round $scen $v $wall $cs $cr $ms $mr $exact 0" >>"$results"
  awk -v r="$round" -v s="$scen" -v v="$v" -v w="$wall" -v cs="$cs" -v cr="$cr" -v ms="$ms" \
    -v mr="$mr" -v x="$exact" -v n="$bytes" -v f="${files:-0}" 'BEGIN {
      printf "  %-7s %-11s %-14s %7.3f s %6.0f MiB/s%s  cpu send %6.2f recv %6.2f s  rss send %s%5.1f recv %5.1f MiB\n",
        (r ? "round " r : "warm-up"), s, v, w, n / 1048576 / w, (f ? sprintf(" %7.0f files/s", f / w) : ""),
        cs, cr, (x ? " " : "<"), ms / 1024, mr / 1024}'
}

# Checks an output file $1 of $2: its size every round, its bytes (cmp) in the warm-up.
check_output() {
  [[ -f "$1" ]] || die "$2: no output file $1"
  local got
  got=$(stat -c %s "$1")
  [[ $got -eq $bytes ]] || die "$2: output has $got of $bytes bytes"
  if ((round == 0)); then
    cmp "$data" "$1" || die "$2: output differs from the source"
    echo "  (cmp: $scen $2 output identical to the source)"
  fi
}
check_ferry_dir() {
  check_output "$1/$(basename "$data")" "$2"
  [[ -z $(find "$1" -name '.*ferry-*' -o -name '*.ferry-*') ]] || die "$2 left partial or journal files"
}

# --- transfers; each leaves its output in $run/out for the caller to delete ---

# ferry-recv --listen $1 --once OUTDIR [opts...] in the background; sets bg_pid and
# ferry_addr (what ferry-send connects to).
start_ferry_listener() {
  local laddr=$1 dir=$2
  shift 2
  rm -f "$run/recv.err"  # the child creates it: no poll can read the last transfer's line
  start_bg "$run/recv.time" "$run/recv.err" "$recv" --listen "$laddr" --once "$@" "$dir"
  poll 10 listener_address "$run/recv.err" ||
    { cat "$run/recv.err" >&2; die "ferry-recv did not report that it listens"; }
}
# Sets ferry_addr from the first complete "ferry-recv: listening on ADDR" line of file $1;
# false while there is none (`read` skips a last line not yet ended by its newline, which
# a poll can catch half written).
listener_address() {
  local line
  [[ -f $1 ]] || return 1
  while IFS= read -r line; do
    if [[ $line == 'ferry-recv: listening on '?* ]]; then
      ferry_addr=${line#ferry-recv: listening on }
      return 0
    fi
  done <"$1"
  return 1
}

# ferry over a listening receiver: $1 = listen address, $2 = fsync|nofsync.
xfer_ferry_listen() {
  local laddr=$1 mode=$2 dir="$run/out" opts=() rs=0 rr=0 t0 t1
  [[ $mode == nofsync ]] && opts=(--no-fsync)
  mkdir -p "$dir"
  start_ferry_listener "$laddr" "$dir" "${opts[@]}"
  t0=$EPOCHREALTIME
  fg_timed "$run/send.time" "$send" --connect "$ferry_addr" -q "$data" || rs=$?
  ((rs == 0)) || { cat "$run/recv.err" >&2; die "$scen ferry_$mode: ferry-send status $rs"; }
  wait_bg "$bg_pid" || rr=$?
  t1=$EPOCHREALTIME
  ((rr == 0)) || { cat "$run/recv.err" >&2; die "$scen ferry_$mode: ferry-recv status $rr"; }
  check_ferry_dir "$dir" "ferry_$mode"
  record "ferry_$mode" "$(sub "$t1" "$t0")" "$(cpu_of "$run/send.time")" "$(cpu_of "$run/recv.time")" \
    "$(rss_of "$run/send.time")" "$(rss_of "$run/recv.time")"
}

# ferry-send -e 'ferry-recv --stdio OUTDIR'; $1 = fsync|nofsync. The carrier runs under its
# own /usr/bin/time; ferry-send's figures include it (a reaped child): its CPU is subtracted.
xfer_ferry_pipe() {
  local mode=$1 dir="$run/out" opt="" rs=0 t0 t1 cs ms mr
  [[ $mode == nofsync ]] && opt=" --no-fsync"
  mkdir -p "$dir"
  : >"$run/recv.time"
  t0=$EPOCHREALTIME
  fg_timed "$run/send.time" "$send" -q -e \
    "exec /usr/bin/time -f '$tfmt' -o '$run/recv.time' '$recv' --stdio$opt '$dir'" \
    "$data" 2>"$run/recv.err" || rs=$?
  # both ends exited: the carrier's time line is written when ferry-recv has exited
  poll 30 grep -q '^[0-9.]* [0-9.]* [0-9.]* [0-9]*$' "$run/recv.time" ||
    die "$scen ferry_$mode: ferry-recv (the carrier) did not exit"
  t1=$EPOCHREALTIME
  ((rs == 0)) || { cat "$run/recv.err" >&2; die "$scen ferry_$mode: ferry-send status $rs"; }
  check_ferry_dir "$dir" "ferry_$mode"
  cs=$(awk -v a="$(cpu_of "$run/send.time")" -v b="$(cpu_of "$run/recv.time")" \
    'BEGIN {d = a - b; printf "%.2f", d < 0 ? 0 : d}')
  ms=$(rss_of "$run/send.time") mr=$(rss_of "$run/recv.time")
  # ferry-send's peak RSS is max(its own, the carrier's): its own only when above the carrier's
  record "ferry_$mode" "$(sub "$t1" "$t0")" "$cs" "$(cpu_of "$run/recv.time")" "$ms" "$mr" \
    "$((ms > mr ? 1 : 0))"
}

# `sync "$@"` under /usr/bin/time (into $run/sync.time); sets tsync (its wall time).
timed_sync() {
  local t0=$EPOCHREALTIME
  fg_timed "$run/sync.time" sync "$@"
  tsync=$(sub "$EPOCHREALTIME" "$t0")
}

# Records variant $1 (wall $2) and $1_sync (plus `sync "${@:3}"` right after).
record_raw_and_synced() {
  local v=$1 wall=$2 cs cr ms mr
  cs=$(cpu_of "$run/send.time") cr=$(cpu_of "$run/recv.time")
  ms=$(rss_of "$run/send.time") mr=$(rss_of "$run/recv.time")
  timed_sync "${@:3}"
  record "$v" "$wall" "$cs" "$cr" "$ms" "$mr"
  record "${v}_sync" "$(add "$wall" "$tsync")" "$cs" "$(add "$cr" "$(cpu_of "$run/sync.time")")" "$ms" "$mr"
}

# socat -u -b 1048576 from the file to a file over $1 = tcp|unix.
xfer_socat() {
  local out="$run/out/raw.bin" port listen connect rs=0 rr=0 t0 t1
  mkdir -p "$run/out"
  if [[ $1 == tcp ]]; then
    port=$(free_port)
    listen="TCP-LISTEN:$port,bind=127.0.0.1,reuseaddr" connect="TCP:127.0.0.1:$port"
  else
    rm -f "$sock"
    listen="UNIX-LISTEN:$sock" connect="UNIX-CONNECT:$sock"
  fi
  start_bg "$run/recv.time" "$run/recv.err" socat -u -b "$block" "$listen" "OPEN:$out,creat,trunc"
  if [[ $1 == tcp ]]; then poll 10 listening "$port"; else poll 10 test -S "$sock"; fi ||
    { cat "$run/recv.err" >&2; die "$scen socat: the listener did not start"; }
  t0=$EPOCHREALTIME
  fg_timed "$run/send.time" socat -u -b "$block" "OPEN:$data" "$connect" || rs=$?
  ((rs == 0)) || die "$scen socat: the sending socat's status $rs"
  wait_bg "$bg_pid" || rr=$?
  t1=$EPOCHREALTIME
  ((rr == 0)) || { cat "$run/recv.err" >&2; die "$scen socat: the receiving socat's status $rr"; }
  check_output "$out" socat
  record_raw_and_synced socat "$(sub "$t1" "$t0")" "$out"
}

# The raw pipe copy: socat -u -b 1048576 OPEN:FILE STDOUT | socat -u -b 1048576 STDIN OPEN:OUT.
xfer_pipe_copy() {
  local out="$run/out/raw.bin" t0 t1
  mkdir -p "$run/out"
  t0=$EPOCHREALTIME
  fg_timed "$run/send.time" socat -u -b "$block" "OPEN:$data" STDOUT |
    fg_timed "$run/recv.time" socat -u -b "$block" STDIN "OPEN:$out,creat,trunc" ||
    die "$scen copy: the pipe copy failed"
  t1=$EPOCHREALTIME
  check_output "$out" copy
  record_raw_and_synced copy "$(sub "$t1" "$t0")" "$out"
}

# rsync daemon config: module "bench" = $2, into file $1.
write_rsyncd_conf() {
  {
    echo "use chroot = no"
    echo "reverse lookup = no"
    echo "log file = $run/rsyncd.log"
    if [[ $(id -u) -eq 0 ]]; then printf 'uid = root\ngid = root\n'; fi
    printf '[bench]\n  path = %s\n  read only = no\n' "$2"
  } >"$1"
}
# The pid of the process that background process $1 (time -> timeout -> command) runs.
inner_pid() {
  local t
  t=$(pgrep -P "$1" | head -n 1) && [[ -n $t ]] && pgrep -P "$t" | head -n 1
}
# True when process $1 has no child left (exited and reaped, so counted in its rusage).
no_children() { [[ -z $(cat "/proc/$1/task/$1/children" 2>/dev/null) ]]; }

# An rsync daemon started for this transfer, `rsync -W FILE rsync://127.0.0.1:PORT/bench/`.
# Both ends have exited when the client has and the daemon has reaped its connection's
# processes; then the daemon is stopped (its startup is outside the wall time).
xfer_rsync() {
  local out="$run/out" port daemon rsyncd rs=0 t0 t1
  mkdir -p "$out"
  port=$(free_port)
  write_rsyncd_conf "$run/rsyncd.conf" "$out"
  start_bg "$run/recv.time" "$run/recv.err" rsync --daemon --no-detach --config="$run/rsyncd.conf" \
    --port="$port" --address=127.0.0.1
  rsyncd=$bg_pid
  poll 10 listening "$port" || { cat "$run/recv.err" >&2; die "the rsync daemon did not start"; }
  daemon=$(inner_pid "$rsyncd") || die "the rsync daemon's pid not found"
  t0=$EPOCHREALTIME
  fg_timed "$run/send.time" rsync -W "$data" "rsync://127.0.0.1:$port/bench/" || rs=$?
  ((rs == 0)) || { cat "$run/recv.err" "$run/rsyncd.log" >&2; die "rsync: status $rs"; }
  poll "$limit" no_children "$daemon" || die "the rsync daemon's connection did not end"
  t1=$EPOCHREALTIME
  stop_bg "$rsyncd"
  check_output "$out/$(basename "$data")" rsync
  record_raw_and_synced rsync "$(sub "$t1" "$t0")" "$out/$(basename "$data")"
}

# --- rounds ---

# The transfers of one round, "scenario kind [mode]", in their forward order.
plan_steps() {
  local s
  steps=()
  for s in $scenarios; do
    steps+=("$s ferry fsync" "$s raw")
    if [[ $s == tcp ]]; then steps+=("tcp rsync"); fi
    if ((nofsync)); then steps+=("$s ferry nofsync"); fi
  done
}
# One transfer ("scenario kind [mode]"), then its output deleted and the disk synced.
run_step() {
  local kind mode
  read -r scen kind mode <<<"$1"
  case "$scen $kind" in
    "tcp ferry") xfer_ferry_listen 127.0.0.1:0 "$mode" ;;
    "unix ferry") rm -f "$sock" && xfer_ferry_listen "unix:$sock" "$mode" ;;
    "pipe ferry") xfer_ferry_pipe "$mode" ;;
    "tcp raw" | "unix raw") xfer_socat "$scen" ;;
    "pipe raw") xfer_pipe_copy ;;
    "tcp rsync") xfer_rsync ;;
  esac
  rm -rf "$run/out"
  sync
}
run_rounds() {
  local i
  plan_steps
  say "$rounds rounds after a warm-up; $size; scenarios: $scenarios; outputs in $run/out"
  echo "   $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg) (other load skews the times)"
  for round in $(seq 0 "$rounds"); do
    if ((round % 2 == 0)); then
      for i in "${!steps[@]}"; do run_step "${steps[i]}"; done
    else
      for ((i = ${#steps[@]} - 1; i >= 0; i--)); do run_step "${steps[i]}"; done
    fi
  done
}

# --- report ---

awk_median='function median(a, n,   i, j, t) {
  for (i = 2; i <= n; i++) for (j = i; j > 1 && a[j - 1] > a[j]; j--) { t = a[j]; a[j] = a[j - 1]; a[j - 1] = t }
  return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
}'

# The medians over the measured rounds of every scenario/variant, and the peak RSS.
print_medians() {
  echo
  say "medians over $rounds rounds (CPU: user+sys; RSS: the largest of the rounds; < = upper bound)"
  awk -v n="$bytes" "$awk_median"'
    { k = $2 " " $3; if (!(k in seen)) { seen[k] = 1; order[++nk] = k } }  # the warm-up order
    $1 > 0 { c = ++cnt[k]
             w[k, c] = $4; cs[k, c] = $5; cr[k, c] = $6; ct[k, c] = $5 + $6
             if ($7 > ms[k]) ms[k] = $7; if ($8 > mr[k]) mr[k] = $8; if (!$9) ub[k] = "<" }
    END {
      printf "  %-5s %-14s %9s %7s %9s %9s %9s %9s %9s\n", "", "", "wall s", "MiB/s",
        "cpu send", "cpu recv", "cpu both", "rss send", "rss recv"
      for (i = 1; i <= nk; i++) {
        k = order[i]; split(k, p, " "); c = cnt[k]
        for (j = 1; j <= c; j++) { a1[j] = w[k, j]; a2[j] = cs[k, j]; a3[j] = cr[k, j]; a4[j] = ct[k, j] }
        m = median(a1, c)
        printf "  %-5s %-14s %9.3f %7.0f %9.2f %9.2f %9.2f %9s %9.1f\n", p[1], p[2], m,
          n / 1048576 / m, median(a2, c), median(a3, c), median(a4, c),
          ub[k] sprintf("%.1f", ms[k] / 1024), mr[k] / 1024
      }
    }' "$results"
}

ratio_lines=()
# ratio SCENARIO NUM DEN wall|cpu TARGET: the per-round ratios NUM/DEN of the measured
# rounds (cpu: both ends), their median, the target ('-': none); appends a RATIO line.
# A transfer that timed out counts with the time limit: the median is then a bound,
# '>' (NUM timed out), '<' (DEN did) or '?' (both).
ratio() {
  local scen=$1 num=$2 den=$3 kind=$4 target=$5 name line
  name="$scen.$num/$den"
  [[ $kind == cpu ]] && name="$scen.cpu.$num/$den"
  line=$(awk -v s="$scen" -v nu="$num" -v de="$den" -v kind="$kind" "$awk_median"'
    $1 > 0 && $2 == s && ($3 == nu || $3 == de) {
      v[$3, $1] = kind == "cpu" ? $5 + $6 : $4; if ($10) late[$3] = 1; if ($1 > last) last = $1 }
    END {
      for (i = 1; i <= last; i++) if ((nu, i) in v && (de, i) in v) { d = v[de, i] < 0.01 ? 0.01 : v[de, i]; x[++n] = v[nu, i] / d }
      for (i = 1; i <= n; i++) list = list sprintf(" %.2f", x[i])
      bound = late[nu] ? (late[de] ? "?" : ">") : (late[de] ? "<" : "")
      if (n) printf "%s%.2f%s", bound, median(x, n), list
    }' "$results")
  [[ -n $line ]] || return 0
  local med=${line%% *} rounds_list=${line#* }
  printf '  %-38s %-30s %6s  %s\n' "$name" "$rounds_list" "$med" "$(target_text "$med" "$target")"
  ratio_lines+=("RATIO $name $med")
}
verdict() { awk -v v="$1" -v t="$2" 'BEGIN {print (v <= t ? "met" : "NOT MET")}'; }
# target_text VALUE TARGET: "<= TARGET met|NOT MET", or "(no target)" for TARGET '-'.
target_text() {
  if [[ $2 == - ]]; then
    echo "(no target)"
    return 0
  fi
  printf '<= %-4s %s' "$2" "$(verdict "${1#[<>?]}" "$2")"
  [[ $1 != [\<\>?]* ]] || printf ' (a bound: a transfer timed out)'
}

# rss SCENARIO send|recv [TARGET]: the largest peak RSS of ferry's end over the measured
# rounds, against TARGET MiB (default 32; '-': none).
rss() {
  local scen=$1 end=$2 target=${3:-32} line name
  line=$(awk -v s="$scen" -v e="$end" '
    $1 > 0 && $2 == s && $3 ~ /^ferry_/ { m = e == "send" ? $7 : $8; if (m > max) { max = m; ub = e == "send" && !$9 } }
    END { if (max) printf "%.1f %s", max / 1024, ub ? "(upper bound: with its carrier)" : "" }' "$results")
  [[ -n $line ]] || return 0
  name="rss_mib.$scen.ferry-$end"
  printf '  %-38s %-30s %6s  %s\n' "$name" "${line#* }" "${line%% *}" "$(target_text "${line%% *}" "$target")"
  ratio_lines+=("RATIO $name ${line%% *}")
}

print_ratios() {
  local s raw
  echo
  say "ratios: median of the per-round ratios (wall time unless cpu; cpu = both ends)"
  printf '  %-38s %-30s %6s  %-7s %s\n' name "per round" median target ""
  for s in $scenarios; do
    raw=socat
    [[ $s == pipe ]] && raw=copy
    ratio "$s" ferry_fsync "${raw}_sync" wall 1.0
    ((nofsync)) && ratio "$s" ferry_nofsync "$raw" wall 1.5
    if [[ $s == tcp ]]; then
      ratio tcp ferry_fsync rsync_sync wall 0.7
      ratio tcp ferry_fsync socat_sync cpu 2.0
      ((nofsync)) && ratio tcp ferry_nofsync socat cpu 2.0
      ratio tcp ferry_fsync rsync_sync cpu 0.8
      ((nofsync)) && ratio tcp ferry_nofsync rsync cpu 0.8
    fi
    rss "$s" send
    rss "$s" recv
  done
  ((nofsync)) || echo "  (ferry_nofsync rows skipped: this ferry-recv has no --no-fsync)"
}

# --- many-files scenarios: files-small (issue #10's a), files-many (b), tree (c) ---

# make_files_tree DIR FILES DIRS SIZE: FILES files of SIZE random bytes, spread evenly over
# DIRS directories DIR/d0000.. (one head | split per directory).
make_files_tree() {
  local root=$1 count=$2 dirs=$3 fsize d n sub
  fsize=$(numfmt --from=iec "$4")
  mkdir -p "$root"
  for ((d = 0; d < dirs; d++)); do
    n=$((count / dirs + (d < count % dirs ? 1 : 0)))
    sub=$(printf '%s/d%04d' "$root" "$d")
    mkdir "$sub"
    ((n > 0)) || continue
    head -c $((n * fsize)) /dev/urandom | split -b "$fsize" -d -a "${#n}" - "$sub/f"
  done
}

# make_real_tree DIR: the regular files of TREE_FROM (each root sorted by path, the roots
# in their order) whose names are printable ASCII, up to TREE_FILES files and TREE_MAX
# bytes (a file that would pass TREE_MAX is left out), copied below DIR with their
# absolute paths (DIR/usr/include/..); hard links become separate files.
make_real_tree() {
  local dest=$1 list="$run/tree.list" maxb r
  maxb=$(numfmt --from=iec "$tree_max")
  for r in $tree_from; do
    find "$r" -type f -printf '%s %p\n' 2>/dev/null | sort -k 2
  done | { grep -a -v '[^ -~]' || true; } | awk -v maxn="$tree_files" -v maxb="$maxb" '
    n < maxn && b + $1 <= maxb { n++; b += $1; p = substr($0, index($0, " ") + 1); print substr(p, 2) }' >"$list"
  [[ -s $list ]] || die "tree: no files found in TREE_FROM ($tree_from)"
  mkdir -p "$dest"
  tar -c -C / --hard-dereference --no-recursion --verbatim-files-from -T "$list" -f - |
    tar -x -C "$dest" || die "tree: copying the files of $list failed"
}

# tree_stats DIR: "FILES DIRS BYTES" below DIR (DIR itself counts as a directory).
tree_stats() {
  find "$1" -printf '%y %s\n' |
    awk '$1 == "f" {f++; b += $2} $1 == "d" {d++} END {printf "%.0f %.0f %.0f\n", f, d, b}'
}

# Sets src_tree (the directory every tool sends: $run/src/SCENARIO), files, bytes and
# src_stats for scenario $scen, generating the source.
make_tree_source() {
  src_tree="$run/src/$scen"
  rm -rf "$run/src"
  mkdir -p "$run/src"
  say "$scen: generating the source in $src_tree"
  case $scen in
    files-small) make_files_tree "$src_tree" "$files_small" "$dirs_small" "$fsize_small" ;;
    files-many) make_files_tree "$src_tree" "$files_many" "$dirs_many" "$fsize_many" ;;
    tree) make_real_tree "$src_tree" ;;
  esac
  sync
  src_stats=$(tree_stats "$src_tree")
  read -r files _ bytes <<<"$src_stats"
  awk -v f="$files" -v s="$src_stats" -v b="$bytes" 'BEGIN {split(s, x, " ")
    printf "   %d files in %d directories (with the top one), %.1f MiB (%.0f bytes), %.1f KiB a file on average\n",
      f, x[2], b / 1048576, b, f ? b / f / 1024 : 0}'
}

# The outputs' parent, marked `chattr +T` (ext4's Orlov allocator then spreads its
# subdirectories over block groups, away from inodes just freed); sets tree_parent.
make_tree_parent() {
  tree_parent="$run/trees"
  mkdir -p "$tree_parent"
  if chattr +T "$tree_parent" 2>/dev/null; then
    echo "   outputs under $tree_parent (chattr +T)"
  else
    echo "   WARNING: chattr +T failed on $tree_parent (no chattr, or not ext2/3/4): outputs" \
      "go there unmarked; the create-rate probes show whether rounds were slowed"
  fi
}

# probe_create before|after: PROBE_FILES empty files created (no fsync) in a fresh
# directory under the outputs' parent, after a sync; prints files/s and the load. Then
# PROBE_SYNCS writes of 4 KiB with O_DSYNC (one dd) into a file there: the latency of a
# write made durable, which bounds what fsyncing tools can do (others' disk traffic
# raises it without slowing the creates much).
probe_create() {
  local dir="$tree_parent/probe-$scen-$1" t0 t1 t2
  sync
  mkdir "$dir"
  t0=$EPOCHREALTIME
  (cd "$dir" && seq -f 'p%.0f' "$probe_files" | xargs touch)
  t1=$EPOCHREALTIME
  dd if=/dev/zero of="$dir/dsync" bs=4096 count="$probe_syncs" oflag=dsync status=none
  t2=$EPOCHREALTIME
  awk -v n="$probe_files" -v m="$probe_syncs" -v t0="$t0" -v t1="$t1" -v t2="$t2" -v w="$1" \
    -v s="$scen" -v l="$(cut -d' ' -f1-3 /proc/loadavg)" 'BEGIN {
      t = t1 - t0; if (t < 1e-6) t = 1e-6
      printf "  create-rate probe %-6s %s: %d files in %.3f s = %.0f files/s; %d O_DSYNC writes of 4 KiB: %.2f ms each (load average %s)\n",
        w, s, n, t, n / t, m, (t2 - t1) * 1000 / m, l}'
}

# The fresh output directory of variant $1 in this round (kept until the scenario ends).
tree_dest() { printf '%s/%s-r%d-%s' "$tree_parent" "$scen" "$round" "$1"; }

# Checks the copy below $1 (DEST) of variant $2: DEST holds only the tree, with the
# source's count of files and directories and its total bytes; in the warm-up `diff -r`.
check_tree() {
  local out="$1/${src_tree##*/}" got
  [[ -d $out ]] || die "$scen $2: no output directory $out"
  got=$(find "$1" -mindepth 1 -maxdepth 1 -printf '%f\n' | head -n 5)
  [[ $got == "${src_tree##*/}" ]] || die "$scen $2: $1 holds more than the tree: ${got//$'\n'/ }"
  got=$(tree_stats "$out")
  [[ $got == "$src_stats" ]] || die "$scen $2: the output has (files dirs bytes) $got, the source $src_stats"
  if ((round == 0)); then
    diff -r -q "$src_tree" "$out" >&2 || die "$scen $2: the output differs from the source (diff -r)"
    echo "  (diff -r: $scen $2 output identical to the source)"
  fi
}

timed_out=" "  # the variants of this scenario that ran into BENCH_TIMEOUT
# True when a transfer that started at $2 and ended with status $1 ran into BENCH_TIMEOUT:
# timeout(1)'s 124 or 137, or (an end killed first, the other failing) the whole limit.
hit_limit() {
  [[ $1 -eq 124 || $1 -eq 137 ]] ||
    awk -v t="$(sub "$EPOCHREALTIME" "$2")" -v l="$limit" 'BEGIN {exit !(t >= l - 1)}'
}
# Records variants "$@" as timed out in this round (wall = the limit); later rounds skip them.
record_timeout() {
  local v
  for v in "$@"; do
    echo "$round $scen $v $limit 0 0 0 0 1 1" >>"$results"
    printf '  %-7s %-11s %-14s >%d s (BENCH_TIMEOUT; not run again in this scenario)\n' \
      "$( ((round)) && echo "round $round" || echo warm-up)" "$scen" "$v" "$limit"
  done
  timed_out+="$1 "
}

# ferry-recv --listen 127.0.0.1:0 --once DEST [--no-fsync]; ferry-send --connect ADDR -q
# SRC_TREE; $1 = fsync|nofsync.
xfer_tree_ferry() {
  local v=ferry_$1 dest opts=() rs=0 rr=0 t0 t1 receiver
  dest=$(tree_dest "$v")
  [[ $1 == nofsync ]] && opts=(--no-fsync)
  mkdir "$dest"
  start_ferry_listener 127.0.0.1:0 "$dest" "${opts[@]}"
  receiver=$bg_pid
  t0=$EPOCHREALTIME
  fg_timed "$run/send.time" "$send" --connect "$ferry_addr" -q "$src_tree" || rs=$?
  if hit_limit "$rs" "$t0"; then
    stop_bg "$receiver"
    record_timeout "$v"
    return 0
  fi
  ((rs == 0)) || { tail -n 5 "$run/recv.err" >&2; die "$scen $v: ferry-send status $rs"; }
  wait_bg "$receiver" || rr=$?
  t1=$EPOCHREALTIME
  ((rr == 0)) || { tail -n 5 "$run/recv.err" >&2; die "$scen $v: ferry-recv status $rr"; }
  record "$v" "$(sub "$t1" "$t0")" "$(cpu_of "$run/send.time")" "$(cpu_of "$run/recv.time")" \
    "$(rss_of "$run/send.time")" "$(rss_of "$run/recv.time")"
  check_tree "$dest" "$v"
}

# tar -c -C PARENT NAME | socat -u -b 1048576 STDIN TCP:..  ->
# socat -u -b 1048576 TCP-LISTEN:.. STDOUT | tar -x -C DEST; then `sync -f DEST`.
xfer_tree_tar() {
  local dest port rs=0 rr=0 t0 t1 receiver
  dest=$(tree_dest tar_socat)
  mkdir "$dest"
  port=$(free_port)
  # shellcheck disable=SC2016 # expanded by that bash, from its arguments
  start_bg "$run/recv.time" "$run/recv.err" bash -c 'set -o pipefail
    socat -u -b "$1" "TCP-LISTEN:$2,bind=127.0.0.1,reuseaddr" STDOUT | tar -x -C "$3"' \
    tar-recv "$block" "$port" "$dest"
  receiver=$bg_pid
  poll 10 listening "$port" || { cat "$run/recv.err" >&2; die "$scen tar_socat: the listener did not start"; }
  t0=$EPOCHREALTIME
  # shellcheck disable=SC2016 # expanded by that bash, from its arguments
  fg_timed "$run/send.time" bash -c 'set -o pipefail
    tar -c -C "$1" "$2" | socat -u -b "$3" STDIN "TCP:127.0.0.1:$4"' \
    tar-send "${src_tree%/*}" "${src_tree##*/}" "$block" "$port" || rs=$?
  if hit_limit "$rs" "$t0"; then
    stop_bg "$receiver"
    record_timeout tar_socat tar_socat_sync
    return 0
  fi
  ((rs == 0)) || die "$scen tar_socat: the sending tar | socat's status $rs"
  wait_bg "$receiver" || rr=$?
  t1=$EPOCHREALTIME
  ((rr == 0)) || { cat "$run/recv.err" >&2; die "$scen tar_socat: the receiving socat | tar's status $rr"; }
  record_raw_and_synced tar_socat "$(sub "$t1" "$t0")" -f "$dest"
  check_tree "$dest" tar_socat
}

# An rsync daemon started for this transfer (module = DEST), `rsync -rW SRC_TREE
# rsync://127.0.0.1:PORT/bench/`, then `sync -f DEST`; both ends have exited as in xfer_rsync.
xfer_tree_rsync() {
  local dest port daemon rsyncd rs=0 t0 t1
  dest=$(tree_dest rsync)
  mkdir "$dest"
  port=$(free_port)
  write_rsyncd_conf "$run/rsyncd.conf" "$dest"
  start_bg "$run/recv.time" "$run/recv.err" rsync --daemon --no-detach --config="$run/rsyncd.conf" \
    --port="$port" --address=127.0.0.1
  rsyncd=$bg_pid
  poll 10 listening "$port" || { cat "$run/recv.err" >&2; die "the rsync daemon did not start"; }
  daemon=$(inner_pid "$rsyncd") || die "the rsync daemon's pid not found"
  t0=$EPOCHREALTIME
  fg_timed "$run/send.time" rsync -rW "$src_tree" "rsync://127.0.0.1:$port/bench/" || rs=$?
  if hit_limit "$rs" "$t0"; then
    stop_bg "$rsyncd"
    record_timeout rsync rsync_sync
    return 0
  fi
  ((rs == 0)) || { cat "$run/recv.err" "$run/rsyncd.log" >&2; die "$scen rsync: status $rs"; }
  poll "$limit" no_children "$daemon" || die "the rsync daemon's connection did not end"
  t1=$EPOCHREALTIME
  stop_bg "$rsyncd"
  record_raw_and_synced rsync "$(sub "$t1" "$t0")" -f "$dest"
  check_tree "$dest" rsync
}

# One transfer of this round ("ferry fsync", "tar", "rsync", "ferry nofsync"), or its
# timeout recorded again when it ran into BENCH_TIMEOUT earlier; then an (untimed) sync.
run_tree_step() {
  local kind mode
  read -r kind mode <<<"$1"
  case "$kind" in
    ferry)
      if [[ $timed_out == *" ferry_$mode "* ]]; then record_timeout "ferry_$mode"; else xfer_tree_ferry "$mode"; fi ;;
    tar)
      if [[ $timed_out == *" tar_socat "* ]]; then record_timeout tar_socat tar_socat_sync; else xfer_tree_tar; fi ;;
    rsync)
      if [[ $timed_out == *" rsync "* ]]; then record_timeout rsync rsync_sync; else xfer_tree_rsync; fi ;;
  esac
  sync
}

# The rounds of tree scenario $scen: a warm-up and ROUNDS_<SCENARIO> (default ROUNDS),
# the order alternating, each transfer into a fresh directory, all kept until the end.
run_tree_rounds() {
  local n i steps=("ferry fsync" "tar" "rsync")
  case $scen in
    files-small) n=${ROUNDS_SMALL:-$rounds} ;;
    files-many) n=${ROUNDS_MANY:-$rounds} ;;
    tree) n=${ROUNDS_TREE:-$rounds} ;;
  esac
  ((nofsync)) && steps+=("ferry nofsync")
  say "$scen: $n rounds after a warm-up, over loopback TCP; $(nproc) CPUs; each tool limited to $limit s"
  timed_out=" "
  for round in $(seq 0 "$n"); do
    if ((round % 2 == 0)); then
      for i in "${!steps[@]}"; do run_tree_step "${steps[i]}"; done
    else
      for ((i = ${#steps[@]} - 1; i >= 0; i--)); do run_tree_step "${steps[i]}"; done
    fi
  done
  tree_rounds=$n
}

# The medians of scenario $scen over its measured rounds: wall (with '>' when a round
# timed out), files/s, MiB/s; CPU and peak RSS of the rounds that did not time out.
print_tree_medians() {
  echo
  say "$scen: medians over $tree_rounds rounds ($files files, $(numfmt --to=iec-i "$bytes")B; CPU: user+sys;" \
    "RSS: the largest of the rounds)"
  awk -v s="$scen" -v f="$files" -v n="$bytes" "$awk_median"'
    $2 == s { k = $3; if (!(k in seen)) { seen[k] = 1; order[++nk] = k } }
    $2 == s && $1 > 0 { c = ++cnt[k]; w[k, c] = $4
      if ($10) { late[k] = 1; next }
      d = ++ok[k]; cs[k, d] = $5; cr[k, d] = $6
      if ($7 > ms[k]) ms[k] = $7; if ($8 > mr[k]) mr[k] = $8 }
    END {
      printf "  %-14s %9s %9s %7s %9s %9s %9s %9s\n", "", "wall s", "files/s", "MiB/s",
        "cpu send", "cpu recv", "rss send", "rss recv"
      for (i = 1; i <= nk; i++) {
        k = order[i]; c = cnt[k]; d = ok[k]
        if (!c) { printf "  %-14s (timed out in the warm-up)\n", k; continue }
        for (j = 1; j <= c; j++) a1[j] = w[k, j]
        m = median(a1, c)
        b = late[k] ? "<" : ""  # a round at the time limit: the rates are upper bounds
        printf "  %-14s %9s %9s %7s", k, (late[k] ? ">" : "") sprintf("%.3f", m), b sprintf("%.0f", f / m),
          b sprintf("%.1f", n / 1048576 / m)
        if (!d) { printf "  (every round timed out)\n"; continue }
        for (j = 1; j <= d; j++) { a2[j] = cs[k, j]; a3[j] = cr[k, j] }
        printf " %9.2f %9.2f %9.1f %9.1f\n", median(a2, d), median(a3, d), ms[k] / 1024, mr[k] / 1024
      }
    }' "$results"
}

# The ratios of scenario $scen with issue #10's targets: ferry / (rsync + sync) <= 1.0 on
# all three, ferry / (tar|socat + sync) <= 2.0 on files-small, peak RSS <= 64 MiB on files-many.
print_tree_ratios() {
  local tar_target=- rss_target=-
  [[ $scen == files-small ]] && tar_target=2.0
  [[ $scen == files-many ]] && rss_target=64
  echo
  say "$scen: ratios, median of the per-round ratios of wall times"
  printf '  %-38s %-30s %6s  %-7s %s\n' name "per round" median target ""
  ratio "$scen" ferry_fsync rsync_sync wall 1.0
  ratio "$scen" ferry_fsync tar_socat_sync wall "$tar_target"
  if ((nofsync)); then
    ratio "$scen" ferry_nofsync rsync wall -
    ratio "$scen" ferry_nofsync tar_socat wall -
  fi
  rss "$scen" send "$rss_target"
  rss "$scen" recv "$rss_target"
}

# One many-files scenario: source, probe, rounds, probe, report; then its outputs and
# source are deleted (and synced), which the next scenario's first probe would show.
run_tree_scenario() {
  scen=$1
  echo
  make_tree_source
  make_tree_parent
  probe_create before
  run_tree_rounds
  probe_create after
  print_tree_medians
  print_tree_ratios
  say "$scen: deleting its outputs and source"
  rm -rf "$tree_parent" "$run/src"
  sync
}

main() {
  check_settings
  ensure_deps
  locate_ferry
  detect_nofsync
  [[ -z $scenarios ]] || make_data
  trap cleanup EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  rm -rf "$run"
  mkdir -p "$run"
  : >"$results"
  if [[ -n $scenarios ]]; then
    run_rounds
    print_medians
    print_ratios
  fi
  local s
  for s in $trees; do run_tree_scenario "$s"; done
  echo
  printf '%s\n' "${ratio_lines[@]}"
  echo
  echo "bench: OK"
}

main "$@"
