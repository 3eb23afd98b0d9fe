# bash completion for ferry-send and ferry-recv. Installed by cmake/package.cmake as
# share/bash-completion/completions/ferry-send and .../ferry-recv (bash-completion loads
# a file named after the command). tests/install/completion_test.sh checks that every
# option --help prints is offered here.

_ferry_options_send="--listen --connect --stdio -e --rsh --chunk-size --window --stall-timeout --bwlimit
  --json --progress -q --quiet -v --verbose --remote-ferry-recv -L --copy-links -l --links --check --check-extra -n --dry-run --retries --watch --settle
  --on-sent --wait-for-receiver --key-file --generate-key --allow --no-auth-i-know-this-is-insecure --version -h --help"
_ferry_options_recv="--listen --connect --stdio -e --rsh --chunk-size --window --stall-timeout --bwlimit
  --json --progress -q --quiet -v --verbose --once --no-fsync --no-links --safe-links --inspect-only --idle-timeout --retries --stale-partial-age
  --handshake-timeout --peer-timeout --busy-timeout --max-connections --max-per-address --key-file --generate-key
  --allow --no-auth-i-know-this-is-insecure --version -h --help"

_ferry() {
  local cur prev opts
  cur="${COMP_WORDS[COMP_CWORD]}"
  prev="${COMP_WORDS[COMP_CWORD-1]}"
  if [[ "${COMP_WORDS[0]##*/}" == ferry-send ]]; then opts="$_ferry_options_send"; else opts="$_ferry_options_recv"; fi
  case "$prev" in
    --watch | --remote-ferry-recv | --key-file | --generate-key)
      mapfile -t COMPREPLY < <(compgen -f -- "$cur")
      return ;;
    --listen | --connect)
      mapfile -t COMPREPLY < <(compgen -W "tcp: unix: vsock:" -- "$cur")
      return ;;
    --on-sent)
      mapfile -t COMPREPLY < <(compgen -W "move: remove keep" -- "$cur")
      return ;;
    -e | --rsh | --chunk-size | --window | --stall-timeout | --bwlimit | --settle | --retries | \
      --wait-for-receiver | --idle-timeout | --stale-partial-age | --handshake-timeout | --peer-timeout | \
      --busy-timeout | --max-connections | --max-per-address | --allow)
      return ;;  # a value of the user's own
  esac
  if [[ "$cur" == -* ]]; then
    mapfile -t COMPREPLY < <(compgen -W "$opts" -- "$cur")
  else
    mapfile -t COMPREPLY < <(compgen -f -- "$cur")
  fi
}
complete -o filenames -F _ferry ferry-send ferry-recv
