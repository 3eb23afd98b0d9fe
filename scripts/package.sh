#!/usr/bin/env bash
# Builds the Debian package of ferry (cmake/cpack.cmake) into a directory.
#
#   bash scripts/package.sh [OUTDIR]      # default OUTDIR: ./dist
#   sudo apt install ./dist/ferry_*.deb
#
# Configures a Release build for the prefix /usr in BUILD_DIR (default build-deb/, kept
# so a second run only rebuilds what changed; tests off), builds it, and runs
# `cpack -G DEB` there with OUTDIR as the package directory. Prints the .deb's path as
# its last line. Needs the build dependencies (scripts/setup-deps.sh) and dpkg-dev
# (dpkg-shlibdeps computes the package's Depends). Touches nothing outside BUILD_DIR
# and OUTDIR; installs nothing.
set -euo pipefail

top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
outdir=${1:-$top/dist}
build_dir=${BUILD_DIR:-$top/build-deb}
generator=()
command -v ninja >/dev/null && generator=(-G Ninja)

mkdir -p "$outdir"
outdir=$(cd "$outdir" && pwd)

cmake -S "$top" -B "$build_dir" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_INSTALL_PREFIX=/usr -DFERRY_BUILD_TESTS=OFF -DFERRY_BUILD_SHARED=ON
cmake --build "$build_dir"
# cpack stages the install below OUTDIR/_CPack_Packages; only the .deb is kept. Its
# last line names the package: "CPack: - package: PATH generated."
log=$(cd "$build_dir" && cpack -G DEB -B "$outdir")
echo "$log"
rm -rf "$outdir/_CPack_Packages"
deb=$(sed -n 's/^CPack: - package: \(.*\.deb\) generated\.$/\1/p' <<<"$log")
[[ -s "$deb" ]] || { echo "package.sh: cpack named no .deb" >&2; exit 1; }
echo "$deb"
