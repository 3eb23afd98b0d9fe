#!/usr/bin/env bash
# The man pages cannot drift from the executables (ctest: man_pages).
#
#   man_pages_test.sh BIN PAGE [BIN PAGE]...
#
# For each executable BIN and its page PAGE (roff, man(7) macros):
#   - every option BIN --help prints (-x and --xx names, taken from --help itself, so an
#     option added to the executable must be documented) appears in the rendered
#     OPTIONS section of PAGE;
#   - PAGE has the sections NAME, SYNOPSIS, DESCRIPTION, OPTIONS, EXIT STATUS, SEE ALSO;
#   - PAGE renders without warnings: `groff -man -ww -z` and `man --warnings -l`
#     (Debian groff-base and man-db, installed by scripts/setup-deps.sh).
# Options documented under OPTIONS but not printed by --help are listed as a note only
# (a page may describe an option before the executable has it).
set -euo pipefail

(($# >= 2 && $# % 2 == 0)) || { echo "usage: $0 BIN PAGE [BIN PAGE]..." >&2; exit 2; }
for tool in groff man; do
  command -v "$tool" >/dev/null || { echo "man_pages_test: $tool not found (scripts/setup-deps.sh installs it)" >&2; exit 1; }
done
export LC_ALL=C.UTF-8 MANWIDTH=80
failed=0
problem() { echo "man_pages_test: $*" >&2; failed=1; }

check() {
  local bin=$1 page=$2 name help text options opt
  name=$(basename "$bin")
  help=$(timeout -k 5 30 "$bin" --help) || { problem "$name --help failed"; return; }
  # CLI11 lists options one per line, names first, indented by two: "  -e,--rsh TEXT   Run ...".
  mapfile -t options < <(printf '%s\n' "$help" | grep -E '^ {1,6}-' | awk '{print $1}' | tr ',' '\n' |
                         grep -E '^--?[A-Za-z0-9][A-Za-z0-9-]*$' | sort -u)
  if ((${#options[@]} < 5)) || ! grep -qx -- '--help' < <(printf '%s\n' "${options[@]}"); then
    problem "$name: could not read the options from --help (got: ${options[*]:-none})"
    return
  fi

  # Plain text, no hyphenation or line breaks inside words (a very long line).
  text=$(timeout -k 5 30 groff -man -Tascii -P-cbou -rLL=2000n "$page" 2>/dev/null) || { problem "$page: groff failed"; return; }
  local section
  for section in NAME SYNOPSIS DESCRIPTION OPTIONS "EXIT STATUS" "SEE ALSO"; do
    grep -qx "$section" <<<"$text" || problem "$page: no $section section"
  done
  local options_text
  options_text=$(printf '%s\n' "$text" | awk '/^OPTIONS$/ {on = 1; next} /^[A-Z][A-Z ]*$/ {on = 0} on')
  for opt in "${options[@]}"; do
    # A here-string, not a pipe: grep -q stops reading at the first match, and under
    # pipefail the writer's SIGPIPE would fail the check (it did, now and then).
    grep -Eq -- "(^|[^A-Za-z0-9-])${opt}([^A-Za-z0-9-]|\$)" <<<"$options_text" ||
      problem "$page: '$opt' (printed by $name --help) is not documented under OPTIONS"
  done
  local documented extra=()
  # The tags of the option list (.TP), indented by 7 columns; descriptions are deeper.
  mapfile -t documented < <(printf '%s\n' "$options_text" | grep -E '^ {7}-' |
                            grep -Eo -- '(^|[ ,])--?[A-Za-z][A-Za-z0-9-]*' | sed 's/^[ ,]*//' | sort -u)
  for opt in "${documented[@]}"; do
    grep -qx -- "$opt" < <(printf '%s\n' "${options[@]}") || extra+=("$opt")
  done
  ((${#extra[@]} == 0)) || echo "note: $page documents options $name --help does not print (yet): ${extra[*]}"

  local warnings
  warnings=$(timeout -k 5 30 groff -man -ww -z -Tutf8 "$page" 2>&1) || problem "$page: groff -ww failed"
  [[ -z "$warnings" ]] || problem "$page: groff warnings:"$'\n'"$warnings"
  warnings=$(timeout -k 5 30 man --warnings -E UTF-8 -l -Tutf8 "$page" 2>&1 >/dev/null) || problem "$page: man -l failed"
  [[ -z "$warnings" ]] || problem "$page: man warnings:"$'\n'"$warnings"
  echo "$page: checked ${#options[@]} options of $name --help"
}

while (($#)); do
  check "$1" "$2"
  shift 2
done
exit "$failed"
