#!/usr/bin/env bash
# Soak: many seeded, randomized transfers of the real ferry-send and ferry-recv through
# every fault of docs/RELIABILITY.md: ferry-fault-proxy (black holes, early close and
# reset, bit flips, stalls, trickle, rate limits), libfiu errno storms (fiu-run), and
# SIGKILL of either process. Each transfer is verified with cmp, and DEST is checked for
# any file under a final name that differs from its source and for leftovers.
#
#   bash scripts/soak.sh                  # N=200 transfers, file sizes 0 .. 300 MiB
#   SOAK_SHORT=1 bash scripts/soak.sh     # CI: 20 transfers, sizes up to 8 MiB, < 3 min
#   N=50 MAX_SIZE=64M SEED=7 bash scripts/soak.sh
#
# Environment: N (transfers), MAX_SIZE (largest file, K/M/G suffixes), SEED (first
# seed; transfer i uses SEED+i, so `SEED=1234 N=1` replays transfer 1234), BUILD_DIR
# (default build/; ferry-send, ferry-recv and ferry-fault-proxy are built there if
# missing), WORK (scratch parent, default /tmp), KEEP_FAILED (default 1: keep the work
# directory of a failed transfer and print its path), SCENARIOS (space-separated
# subset of the scenario names below, e.g. "kill-sender kill-receiver").
# Needs fiu-utils and libfiu-dev (scripts/setup-deps.sh). Not part of the test suite.
# The last line is "N passed, M failed"; the exit status is 0 only when M is 0.
set -uo pipefail

top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build_dir=${BUILD_DIR:-$top/build}
[[ "$build_dir" = /* ]] || build_dir="$top/$build_dir"
if [[ -n "${SOAK_SHORT:-}" ]]; then
  n=${N:-20}
  max_size_text=${MAX_SIZE:-8M}
else
  n=${N:-200}
  max_size_text=${MAX_SIZE:-300M}
fi
seed0=${SEED:-1}
keep_failed=${KEEP_FAILED:-1}

to_bytes() {
  local t=$1 v s
  v=${t%%[KkMmGg]*}
  s=${t#"$v"}
  case "$s" in
    "") echo "$v" ;;
    K | k) echo $((v << 10)) ;;
    M | m) echo $((v << 20)) ;;
    G | g) echo $((v << 30)) ;;
    *) echo "soak: bad size '$t'" >&2; exit 2 ;;
  esac
}
max_size=$(to_bytes "$max_size_text")

send_bin=$build_dir/sender/ferry-send
recv_bin=$build_dir/receiver/ferry-recv
proxy_bin=$build_dir/tests/fault/tools/ferry-fault-proxy
if [[ ! -x $send_bin || ! -x $recv_bin || ! -x $proxy_bin ]]; then
  echo "soak: building ferry-send, ferry-recv and ferry-fault-proxy in $build_dir"
  if [[ ! -f $build_dir/build.ninja ]]; then
    cmake -S "$top" -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DFERRY_BUILD_TESTS=ON >/dev/null || exit 2
  fi
  ninja -C "$build_dir" ferry-send ferry-recv ferry-fault-proxy >/dev/null || exit 2
fi
fiu_run=$(command -v fiu-run || true)
if [[ -z $fiu_run || ! -r /usr/lib/fiu/fiu_posix_preload.so ]]; then
  echo "soak: fiu-run (fiu-utils) and libfiu's preload libraries (libfiu-dev) are required: bash scripts/setup-deps.sh" >&2
  exit 2
fi

work_root=$(mktemp -d "${WORK:-/tmp}/ferry-soak.XXXXXX")
# Background children are reaped with `jobs -p` (still ours), never by a stale pid.
reap_children() {
  local p
  for p in $(jobs -p); do kill -9 "$p" 2>/dev/null; done
  wait 2>/dev/null
}
cleanup() {
  reap_children
  [[ -n "${keep_root:-}" ]] || rm -rf "$work_root"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# rnd N: a seeded random integer in [0, N) (bash's RANDOM, seeded per transfer).
rnd() { echo $(( ((RANDOM << 15) | RANDOM) % $1 )); }
pick() { local a=("$@"); echo "${a[$(rnd ${#a[@]})]}"; }

# wait_listen FILE PID: the address a listener printed, within 15 s.
wait_listen() {
  local f=$1 pid=$2 i a
  for ((i = 0; i < 300; i++)); do
    # "listening on ADDR" (human, the fault proxy) or --json's {"address":"ADDR",...}
    a=$(grep -oE '(listening on |"address":")[a-z]*:[^" ]*' "$f" 2>/dev/null | head -n 1 | sed -E 's/^(listening on |"address":")//')
    if [[ -n $a ]]; then echo "$a"; return 0; fi
    kill -0 "$pid" 2>/dev/null || return 1
    sleep 0.05
  done
  return 1
}

# wait_pid PID SECONDS: the exit status of a background child, or 124 after killing it.
wait_pid() {
  local pid=$1 limit=$2 i
  for ((i = 0; i < limit * 20; i++)); do
    if ! kill -0 "$pid" 2>/dev/null; then wait "$pid"; return $?; fi
    sleep 0.05
  done
  kill -9 "$pid" 2>/dev/null
  wait "$pid" 2>/dev/null
  return 124
}

# wait_progress FILE OFFSET PID: until the sender's JSON shows OFFSET bytes acknowledged.
wait_progress() {
  local f=$1 want=$2 pid=$3 i got
  for ((i = 0; i < 1200; i++)); do
    got=$(grep -o '"offset":[0-9]*' "$f" 2>/dev/null | tail -n 1 | cut -d: -f2)
    [[ -n $got && $got -ge $want ]] && return 0
    kill -0 "$pid" 2>/dev/null || return 1
    sleep 0.05
  done
  return 1
}

total() { grep '"session_end"' "$1" 2>/dev/null | tail -n 1 | grep -o "\"$2\":[0-9]*" | cut -d: -f2; }

# A file size for this transfer: a boundary (1 in 5), uniform in [0, max_size] (2 in 5),
# or log-uniform (2 in 5, for many small files).
draw_size() {
  local chunk=$1 r
  r=$(rnd 20)
  case $r in
    0) echo 0 ;;
    1) echo 1 ;;
    2) echo $((chunk - 1)) ;;
    3) echo $((chunk + 1)) ;;
    4 | 5 | 6 | 7 | 8 | 9 | 10 | 11) echo $(($(rnd $((max_size + 1))))) ;;
    *)
      local bits=0 m=$max_size
      while ((m > 1)); do m=$((m >> 1)); bits=$((bits + 1)); done
      local b=$(($(rnd $((bits + 1))) ))
      local hi=$((1 << b))
      local s=$((hi / 2 + $(rnd $((hi / 2 + 1)))))
      ((s > max_size)) && s=$max_size
      echo $s
      ;;
  esac
}

scenarios=(clean blackhole-up blackhole-up-hold blackhole-down close-up close-down reset-up reset-down
  flip-payload flip-header-up flip-header-down flip-any stall-up stall-down trickle rate
  storm-tcp storm-pipes eintr-all live-error kill-sender kill-receiver cut-and-storm)
if [[ -n "${SCENARIOS:-}" ]]; then
  read -r -a scenarios <<<"$SCENARIOS"
fi

passed=0
failed=0
start_all=$(date +%s)
for ((i = 0; i < n; i++)); do
  seed=$((seed0 + i))
  RANDOM=$seed
  scenario=${scenarios[$(rnd ${#scenarios[@]})]}
  chunk=$(pick 16384 65536 262144 1048576)
  window=$((chunk * $(pick 1 2 4 16)))
  ((window < 65536)) && window=65536
  size=$(draw_size "$chunk")
  # 1..7 bytes at a time is slow: keep trickled files small.
  [[ $scenario == trickle ]] && size=$((size % 262144))
  d=$work_root/t$seed
  mkdir -p "$d/src" "$d/dest"
  # One file, or now and then a small tree around it.
  tree=0
  if (($(rnd 6) == 0)); then
    tree=1
    mkdir -p "$d/src/tree/sub" "$d/src/tree/empty"
    head -c "$size" /dev/urandom >"$d/src/tree/big.bin"
    head -c "$(rnd 100000)" /dev/urandom >"$d/src/tree/sub/small.bin"
    : >"$d/src/tree/sub/zero.bin"
    what=$d/src/tree
  else
    head -c "$size" /dev/urandom >"$d/src/f.bin"
    what=$d/src/f.bin
  fi
  stall=1
  proxy_args=()
  recv_wrap=()
  send_wrap=()
  kill_what=""
  mode=tcp
  storm_errno=$(pick 105 11 4)
  storm="enable_random name=posix/io/net/sendmsg,probability=0.$((1 + $(rnd 3))),failinfo=$storm_errno"
  case $scenario in
    clean) ;;
    blackhole-up)
      # N > window so that each connection makes progress; every connection black-holes
      # for small files, the first few for large ones.
      nb=$((window + 65536 + size / 3))
      ((size <= 16 << 20)) && proxy_args=(--faulty all) || proxy_args=(--faulty $((1 + $(rnd 3))))
      proxy_args+=(--up "blackhole-after=$nb") ;;
    blackhole-up-hold)
      nb=$((window + 65536 + size / 3))
      proxy_args=(--faulty $((1 + $(rnd 3))) --up "blackhole-after=$nb" --hold "0.$((1 + $(rnd 9)))") ;;
    blackhole-down) proxy_args=(--faulty 1 --down "blackhole-after=$((200 + $(rnd 2000)))") ;;
    close-up | reset-up)
      proxy_args=(--faulty $((1 + $(rnd 4))) --seed "$seed" --up "${scenario%-up}-after=0..$((size + 4096))") ;;
    close-down | reset-down)
      proxy_args=(--faulty $((1 + $(rnd 4))) --seed "$seed" --down "${scenario%-down}-after=0..2000") ;;
    flip-payload) proxy_args=(--faulty $((1 + $(rnd 3))) --seed "$seed" --up "flip-payload=0..$size") ;;
    flip-header-up) proxy_args=(--faulty $((1 + $(rnd 2))) --seed "$seed" --up "flip-header=0..$size") ;;
    flip-header-down) proxy_args=(--faulty 1 --seed "$seed" --down "flip-header=0..1000") ;;
    flip-any) proxy_args=(--faulty 2 --seed "$seed" "$(pick --up --down)" "flip-at=0..$((size / 2 + 500))") ;;
    stall-up) proxy_args=(--faulty 1 --up "stall-after=$(rnd $((size + 1)))" --for 2) ;;
    stall-down) proxy_args=(--faulty 1 --down "stall-after=$(rnd 1500)" --for 2) ;;
    trickle)
      stall=10
      proxy_args=(--up trickle --down trickle) ;;
    rate)
      rate=$((size / 4 + 1048576))
      proxy_args=(--up "rate=$rate") ;;
    storm-tcp)
      recv_wrap=("$fiu_run" -x -f "" -c "$storm")
      send_wrap=("$fiu_run" -x -f "" -c "$storm") ;;
    storm-pipes)
      mode=pipes
      storm="enable_random name=posix/io/rw/writev,probability=0.$((1 + $(rnd 3))),failinfo=$storm_errno"
      recv_wrap=("$fiu_run" -x -f "" -c "$storm")
      send_wrap=("$fiu_run" -x -f "" -c "$storm") ;;
    eintr-all)
      e=()
      for p in posix/io/rw/read posix/io/rw/write posix/io/rw/writev posix/io/rw/pread posix/io/rw/pwrite \
        posix/io/net/send posix/io/net/sendmsg; do
        e+=(-c "enable_random name=$p,probability=0.2,failinfo=4")
      done
      recv_wrap=("$fiu_run" -x -f "" "${e[@]}")
      send_wrap=("$fiu_run" -x -f "" "${e[@]}") ;;
    live-error)
      # A rare ECONNRESET / EPIPE / EBADF from sendmsg on a live connection.
      # (The receiver calls sendmsg once per ACK, the sender once per few MiB.)
      le="name=posix/io/net/sendmsg,failinfo=$(pick 104 32 9)"
      if (($(rnd 2))); then
        send_wrap=("$fiu_run" -x -f "" -c "enable_random $le,probability=0.0$((1 + $(rnd 5)))")
      else
        recv_wrap=("$fiu_run" -x -f "" -c "enable_random $le,probability=0.00$((1 + $(rnd 5)))")
      fi ;;
    kill-sender | kill-receiver)
      # Only when there is a middle to kill in.
      ((size > 2 * chunk)) && kill_what=${scenario#kill-}
      rate=$((size / 3 + 1048576))
      proxy_args=(--up "rate=$rate") ;;
    cut-and-storm)
      proxy_args=(--faulty 2 --seed "$seed" --up "$(pick close reset)-after=0..$((size + 4096))")
      send_wrap=("$fiu_run" -x -f "" -c "$storm") ;;
  esac
  flow=(--window "$window" --chunk-size "$chunk" --stall-timeout "$stall" --retries 30)
  limit=$((120 + size / 1048576 * 3))
  t0=$(date +%s.%N)
  why=""
  note=""
  recv_out=$d/recv.out

  if [[ $mode == pipes ]]; then
    mkfifo "$d/a" "$d/b"
    "${recv_wrap[@]}" "$recv_bin" --stdio --json "$d/dest" <"$d/a" >"$d/b" 2>"$d/recv.out" &
    rpid=$!
    timeout -k 5 "$limit" "${send_wrap[@]}" "$send_bin" --stdio --json "${flow[@]}" "$what" >"$d/a" <"$d/b" 2>"$d/send.out"
    src_rc=$?
    wait_pid "$rpid" 30
    rrc=$?
    [[ $src_rc -eq 0 ]] || why="ferry-send exited $src_rc"
    [[ -z $why && $rrc -ne 0 ]] && why="ferry-recv exited $rrc"
  else
    once=(--once --idle-timeout 120)
    [[ $kill_what == receiver ]] && once=()  # killed, then restarted with --once
    "${recv_wrap[@]}" "$recv_bin" --listen 127.0.0.1:0 --json "${once[@]}" "$d/dest" >"$recv_out" 2>"$d/recv.err" &
    rpid=$!
    raddr=$(wait_listen "$recv_out" "$rpid") || why="ferry-recv did not start"
    target=$raddr
    ppid_=""
    if [[ -z $why && ${#proxy_args[@]} -gt 0 ]]; then
      "$proxy_bin" --listen 127.0.0.1:0 --target "$raddr" --log "$d/proxy.log" "${proxy_args[@]}" >"$d/proxy.out" 2>"$d/proxy.err" &
      ppid_=$!
      target=$(wait_listen "$d/proxy.out" "$ppid_") || why="proxy did not start"
    fi
    if [[ -z $why ]]; then
      if [[ -n $kill_what ]]; then
        "${send_wrap[@]}" "$send_bin" --connect "$target" --json "${flow[@]}" "$what" >"$d/send1.out" 2>"$d/send1.err" &
        spid=$!
        # Somewhere between 10 % and 90 % of the file.
        wait_progress "$d/send1.out" $((size * (10 + $(rnd 80)) / 100)) "$spid"
        if ! kill -0 "$spid" 2>/dev/null; then
          # It finished (or failed) before the point was reached: judge that run.
          wait "$spid"
          src_rc=$?
          cp "$d/send1.out" "$d/send.out"
          cp "$d/send1.err" "$d/send.err"
          if [[ $kill_what == receiver ]]; then  # it serves on without --once: stop it
            kill -9 "$rpid" 2>/dev/null
            wait "$rpid" 2>/dev/null
            rpid=""
          fi
        elif [[ $kill_what == sender ]]; then
          note=", sender killed at $(grep -o '"offset":[0-9]*' "$d/send1.out" | tail -n 1 | cut -d: -f2)"
          kill -9 "$spid" 2>/dev/null
          wait "$spid" 2>/dev/null
          sleep 0.2
          if grep -q '"event":"session_end","exit_code":0' "$d/send1.out" || ! kill -0 "$rpid" 2>/dev/null; then
            # It finished between the progress check and the kill; the --once receiver
            # has ended with it (or is ending), so a rerun would find no one: judge the
            # first run (the receiver's exit status and DEST are checked below).
            src_rc=0
            cp "$d/send1.out" "$d/send.out"
            cp "$d/send1.err" "$d/send.err"
            note="$note (finished before the kill)"
          else
            timeout -k 5 "$limit" "$send_bin" --connect "$target" --json "${flow[@]}" "$what" >"$d/send.out" 2>"$d/send.err"
            src_rc=$?
          fi
        else
          note=", receiver killed at $(grep -o '"offset":[0-9]*' "$d/send1.out" | tail -n 1 | cut -d: -f2)"
          kill -9 "$rpid" 2>/dev/null
          wait "$rpid" 2>/dev/null
          # Restarted on the same address and DEST; the running sender redials.
          "$recv_bin" --listen "$raddr" --json --once --idle-timeout 120 "$d/dest" >"$d/recv2.out" 2>"$d/recv2.err" &
          rpid=$!
          wait_pid "$spid" "$limit"
          src_rc=$?
          cp "$d/send1.out" "$d/send.out"
          cp "$d/send1.err" "$d/send.err"
          # The transfer may have ended between the progress check and the kill: then no
          # sender ever comes to the restarted receiver; stop it rather than wait for it.
          if [[ $src_rc -eq 0 ]] && grep -q '"reconnects":0' "$d/send.out"; then
            kill -9 "$rpid" 2>/dev/null
            wait "$rpid" 2>/dev/null
            rpid=""
            note="$note (finished before the kill)"
          fi
        fi
      else
        timeout -k 5 "$limit" "${send_wrap[@]}" "$send_bin" --connect "$target" --json "${flow[@]}" "$what" >"$d/send.out" 2>"$d/send.err"
        src_rc=$?
      fi
      [[ $src_rc -eq 0 ]] || why="ferry-send exited $src_rc: $(tail -n 1 "$d/send.err" 2>/dev/null)"
      if [[ -n $rpid ]]; then
        wait_pid "$rpid" 30
        rrc=$?
        [[ -z $why && $rrc -ne 0 ]] && why="ferry-recv exited $rrc: $(tail -n 1 "$d"/recv*.err 2>/dev/null)"
      fi
    fi
    if [[ -n $ppid_ ]]; then
      kill "$ppid_" 2>/dev/null
      wait_pid "$ppid_" 10 >/dev/null
    fi
  fi

  # Verification: every delivered file equals its source; nothing else in DEST.
  if [[ -z $why ]]; then
    if [[ $tree == 1 ]]; then
      diff -r "$d/src/tree" "$d/dest/tree" >"$d/diff.txt" 2>&1 || why="tree differs: $(head -n 1 "$d/diff.txt")"
    else
      cmp -s "$d/src/f.bin" "$d/dest/f.bin" || why="f.bin differs from its source (cmp)"
    fi
  fi
  # Never a final name whose bytes differ (checked even when the transfer failed).
  while IFS= read -r -d '' f; do
    rel=${f#"$d/dest/"}
    base=$(basename "$rel")
    [[ $base == .*ferry-part || $base == .*ferry-journal || $base == .*ferry-journal.tmp ]] && {
      [[ -z $why ]] && why="leftover $rel after a successful transfer"
      continue
    }
    cmp -s "$f" "$d/src/$rel" || why="CORRUPT: $rel under its final name differs from its source${why:+; $why}"
  done < <(find "$d/dest" -type f -print0 2>/dev/null)
  # The issue's bound on what the sender wrote (kills excepted: a killed receiver's
  # journal may lag by a second).
  if [[ -z $why && -z $kill_what ]]; then
    payload=$(total "$d/send.out" bytes_payload)
    rec=$(total "$d/send.out" reconnects)
    rej=$(total "$d/send.out" chunks_rejected)
    tsize=$(find "$d/src" -type f -printf '%s\n' | awk '{ s += $1 } END { print s + 0 }')
    bound=$((tsize + (${rec:-0} + ${rej:-0}) * (window + chunk) + chunk))
    [[ -n $payload && $payload -le $bound ]] || why="bytes_payload ${payload:-?} exceeds the bound $bound"
  fi
  secs=$(echo "$(date +%s.%N) - $t0" | bc)
  rec=$(total "$d/send.out" reconnects)
  desc="seed=$seed $scenario size=$size$([[ $tree == 1 ]] && echo "+tree") window=$window chunk=$chunk"
  if [[ -z $why ]]; then
    passed=$((passed + 1))
    printf '[%d/%d] ok   %s (%.1f s, %s reconnects%s)\n' $((i + 1)) "$n" "$desc" "$secs" "${rec:-?}" "$note"
    rm -rf "$d"
  else
    failed=$((failed + 1))
    printf '[%d/%d] FAIL %s (%.1f s): %s\n' $((i + 1)) "$n" "$desc" "$secs" "$why"
    printf '        proxy: %s  recv: %s  send: %s\n' "${proxy_args[*]:-none}" "${recv_wrap[*]:-plain}" "${send_wrap[*]:-plain}"
    if [[ $keep_failed == 1 ]]; then
      keep_root=1
      echo "        kept $d"
    else
      rm -rf "$d"
    fi
  fi
  reap_children  # anything left of this transfer
done
echo "soak: $n transfers in $(($(date +%s) - start_all)) s (seeds $seed0..$((seed0 + n - 1)), MAX_SIZE=$max_size_text)"
echo "$passed passed, $failed failed"
[[ $failed -eq 0 ]]
