#!/usr/bin/env bash
# Installs the Debian 12 packages ferry needs to build, test, demo and benchmark.
#
#   bash scripts/setup-deps.sh        # as root: installs whatever is missing
#
# Idempotent: checks each package with dpkg-query and runs apt-get (non-interactive,
# no stdin needed) only when something is missing. Not root and something missing:
# prints the apt-get command to run and exits 1.
set -euo pipefail

packages=(
  build-essential cmake ninja-build pkg-config
  libuv1-dev libxxhash-dev nlohmann-json3-dev libgtest-dev libcli11-dev
  libsodium-dev  # the authentication handshake's MAC and random numbers
  socat time rsync fiu-utils libfiu-dev  # socat, time, rsync: scripts/bench.sh
  tar diffutils e2fsprogs  # scripts/bench.sh's many-files scenarios: tar, diff -r, chattr +T
  groff-base man-db  # tests/install: rendering the man pages
  dpkg-dev  # cpack -G DEB: dpkg-shlibdeps computes the .deb's Depends (tests/install/deb_test.sh)
)

missing=()
for p in "${packages[@]}"; do
  status=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
  [[ "$status" == "installed" ]] || missing+=("$p")
done

if [[ ${#missing[@]} -eq 0 ]]; then
  echo "setup-deps: all ${#packages[@]} packages present"
  exit 0
fi

echo "setup-deps: missing: ${missing[*]}"
if [[ $(id -u) -ne 0 ]]; then
  echo "setup-deps: not root; install them with:" >&2
  echo "  sudo apt-get install -y ${missing[*]}" >&2
  exit 1
fi

export DEBIAN_FRONTEND=noninteractive
apt-get update -q </dev/null
apt-get install -y -q --no-install-recommends "${missing[@]}" </dev/null
echo "setup-deps: installed: ${missing[*]}"
