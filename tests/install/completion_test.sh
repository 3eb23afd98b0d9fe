#!/usr/bin/env bash
# The bash completion cannot drift from the executables (ctest: bash_completion).
#
#   completion_test.sh SCRIPT BIN [BIN]...
#
# For each executable BIN: every option BIN --help prints is offered by SCRIPT
# (completions/ferry.bash) when completing "-" after BIN, and completing "--con" gives
# "--connect".
set -euo pipefail

(($# >= 2)) || { echo "usage: $0 SCRIPT BIN [BIN]..." >&2; exit 2; }
script=$1
shift
# shellcheck source=/dev/null
source "$script"
failed=0

# COMPREPLY for the command line "NAME WORD" (completing WORD).
complete_word() {
  COMP_WORDS=("$1" "$2")
  COMP_CWORD=1
  COMPREPLY=()
  _ferry
  printf '%s\n' "${COMPREPLY[@]}"
}

for bin in "$@"; do
  name=$(basename "$bin")
  help=$(timeout -k 5 30 "$bin" --help)
  mapfile -t options < <(printf '%s\n' "$help" | grep -E '^ {1,6}-' | awk '{print $1}' | tr ',' '\n' |
                         grep -E '^--?[A-Za-z0-9][A-Za-z0-9-]*$' | sort -u)
  ((${#options[@]} >= 5)) || { echo "completion_test: could not read $name --help" >&2; exit 1; }
  offered=$(complete_word "$name" "-")
  for opt in "${options[@]}"; do
    grep -qx -- "$opt" <<<"$offered" || { echo "completion_test: $name: $opt is not completed" >&2; failed=1; }
  done
  [[ "$(complete_word "$name" "--con")" == "--connect" ]] ||
    { echo "completion_test: $name: --con does not complete to --connect" >&2; failed=1; }
  echo "$script: checked ${#options[@]} options of $name"
done
exit "$failed"
