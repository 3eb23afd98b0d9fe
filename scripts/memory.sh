#!/usr/bin/env bash
# Peak memory of both ends for a tree of many empty files (issue #10: "a 1,000,000-entry
# tree must not cost a gigabyte"). A command, not a test: it prints figures and passes
# or fails nothing but a transfer that did not complete.
#
#   bash scripts/memory.sh                          # 1,000,000 files, from the repo top
#   FILES=100000 bash scripts/memory.sh             # a quicker run
#   FERRY_BIN_DIR=build bash scripts/memory.sh      # executables of an existing build
#
# Settings (environment):
#   FILES        empty files in the tree (default 1000000)
#   PER_DIR      files per directory (default 1000)
#   MEM_DIR      where the tree, DEST, the socket and logs go (default /tmp/ferry-memory);
#                the tree is kept for the next run when it already has FILES files
#   FERRY_BIN_DIR  a build tree (DIR/sender/ferry-send, DIR/receiver/ferry-recv) or a
#                directory holding both (default build/)
#   NO_FSYNC     1: ferry-recv --no-fsync (default 1: the figure is memory, not disks)
#
# Prints, per end: the peak resident set (GNU time's %M, KiB) and the wall time. Needs
# /usr/bin/time (scripts/setup-deps.sh installs it).
set -euo pipefail

FILES=${FILES:-1000000}
PER_DIR=${PER_DIR:-1000}
MEM_DIR=${MEM_DIR:-/tmp/ferry-memory}
BIN=${FERRY_BIN_DIR:-build}
NO_FSYNC=${NO_FSYNC:-1}

find_bin() {  # NAME SUBDIR
  if [[ -x "$BIN/$2/$1" ]]; then echo "$BIN/$2/$1"; elif [[ -x "$BIN/$1" ]]; then echo "$BIN/$1"; else
    echo "memory.sh: no $1 in $BIN (set FERRY_BIN_DIR)" >&2; exit 2
  fi
}
SEND=$(find_bin ferry-send sender)
RECV=$(find_bin ferry-recv receiver)
[[ -x /usr/bin/time ]] || { echo "memory.sh: /usr/bin/time is missing (bash scripts/setup-deps.sh)" >&2; exit 2; }

SRC="$MEM_DIR/tree"
mkdir -p "$MEM_DIR"
if [[ ! -f "$SRC/.count" || "$(cat "$SRC/.count")" != "$FILES/$PER_DIR" ]]; then
  echo "memory.sh: making $FILES empty files in directories of $PER_DIR under $SRC"
  rm -rf "$SRC"
  mkdir -p "$SRC"
  dirs=$(((FILES + PER_DIR - 1) / PER_DIR))
  for ((d = 0; d < dirs; d++)); do
    dir=$(printf '%s/d%05d' "$SRC" "$d")
    mkdir "$dir"
    n=$((FILES - d * PER_DIR < PER_DIR ? FILES - d * PER_DIR : PER_DIR))
    (cd "$dir" && seq -f 'f%05g' 0 $((n - 1)) | xargs touch)
  done
  echo "$FILES/$PER_DIR" >"$SRC/.count"
fi

RUN="$MEM_DIR/run"
rm -rf "$RUN"
mkdir -p "$RUN"
recv_args=(--listen "unix:$RUN/sock" --once)
[[ "$NO_FSYNC" == 1 ]] && recv_args+=(--no-fsync)
/usr/bin/time -o "$RUN/recv.time" -f '%M %e' "$RECV" "${recv_args[@]}" "$RUN/dest" 2>"$RUN/recv.log" &
recv_pid=$!
for _ in $(seq 100); do [[ -S "$RUN/sock" ]] && break; sleep 0.1; done
status=0
/usr/bin/time -o "$RUN/send.time" -f '%M %e' "$SEND" -q --connect "unix:$RUN/sock" "$SRC" 2>"$RUN/send.log" || status=$?
wait "$recv_pid" || status=$((status ? status : $?))
read -r send_kib send_s <"$RUN/send.time"
read -r recv_kib recv_s <"$RUN/recv.time"
printf 'memory.sh: %d empty files in directories of %d\n' "$FILES" "$PER_DIR"
printf '  ferry-send  peak RSS %8d KiB  %6s s\n' "$send_kib" "$send_s"
printf '  ferry-recv  peak RSS %8d KiB  %6s s\n' "$recv_kib" "$recv_s"
if [[ $status -ne 0 ]]; then
  echo "memory.sh: the transfer failed (exit $status); logs in $RUN" >&2
  tail -3 "$RUN/send.log" "$RUN/recv.log" >&2
  exit 1
fi
rm -rf "$RUN/dest"
