#!/usr/bin/env bash
# The Debian package (ctest: deb_package; tests/install/CMakeLists.txt sets the
# environment below).
#
#   1. cpack -G DEB on this build tree (cmake/cpack.cmake), into a temporary directory;
#   2. dpkg-deb -I: package name, version, architecture, maintainer, section, a
#      description, and Depends as dpkg-shlibdeps computed them (libuv1, libsodium23,
#      libxxhash0, libc6, libstdc++6); dpkg-deb -c: the executables, libferry.so.0 and
#      its links, the headers under usr/include/ferry/, the CMake package, ferry.pc, man
#      pages, completion, copyright; nothing outside usr/; ldconfig after install and
#      removal, a shlibs entry for libferry.so.0;
#   3. "installs": `apt-get install --simulate ./ferry_*.deb` resolves the package's
#      Depends against this machine's installed packages without changing anything;
#   4. "runs": the package's data unpacked with `dpkg-deb -x` into a scratch root (what
#      dpkg itself would put in /, moved to a directory); every ELF file in it loads
#      with all its libraries found (ldd, with the root's usr/lib first, standing in for
#      ld.so.conf), the unpacked ferry-send --version names the protocol, and the unpacked
#      ferry-send sends a tree over loopback TCP to the unpacked ferry-recv, which
#      delivers it byte-identical.
# Installing into the machine's own / is what step 3 simulates and this test must not
# do (it would change the system the rest of the suite runs on); steps 3 and 4 together
# are that installation, split into its checkable halves: dpkg accepts the package here,
# and the files it would put in place run from where it would put them (relative to
# the root).
#
# Environment: FERRY_BUILD_DIR, FERRY_CPACK (the cpack executable), FERRY_BUILD_SHARED (ON:
# the build made libferry.so.0, and the package must hold it). FERRY_KEEP_TMP=1 keeps
# the temporary directory. Every process runs under timeout(1); everything started is
# stopped and removed on exit. No network is used.
set -euo pipefail

for v in FERRY_BUILD_DIR FERRY_CPACK FERRY_BUILD_SHARED; do
  [[ -n "${!v:-}" ]] || { echo "deb_test: $v is not set (run through ctest)" >&2; exit 2; }
done

tmp=$(mktemp -d "${TMPDIR:-/tmp}/ferry-deb-test.XXXXXX")
pids=()
cleanup() {
  local p
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  if [[ "${FERRY_KEEP_TMP:-0}" == 1 ]]; then echo "deb_test: kept $tmp"; else rm -rf "$tmp"; fi
}
trap cleanup EXIT

step() { echo "== $*"; }
fail() {
  echo "deb_test: FAILED: $*" >&2
  local f
  for f in "$tmp"/*.log "$tmp"/*.out "$tmp"/*.err; do
    [[ -s "$f" ]] && { echo "---- ${f#"$tmp"/}" >&2; tail -n 60 "$f" >&2; }
  done
  exit 1
}

# ---------------------------------------------------------------------------------
step "1. cpack -G DEB in $FERRY_BUILD_DIR"
(cd "$FERRY_BUILD_DIR" && timeout -k 5 240 "$FERRY_CPACK" -G DEB -B "$tmp/pkg") >"$tmp/cpack.log" 2>&1 ||
  fail "cpack -G DEB"
debs=("$tmp"/pkg/ferry_*.deb)
[[ ${#debs[@]} -eq 1 && -s "${debs[0]}" ]] || fail "expected one ferry_*.deb, found: ${debs[*]}"
deb=${debs[0]}
echo "built ${deb##*/}"

# ---------------------------------------------------------------------------------
step "2. dpkg-deb -I and -c"
dpkg-deb -I "$deb" >"$tmp/info.out" 2>&1 || fail "dpkg-deb -I"
field() { dpkg-deb -f "$deb" "$1"; }
[[ "$(field Package)" == ferry ]] || fail "Package: $(field Package)"
[[ "$(field Version)" =~ ^0\.[0-9]+\.[0-9]+-1$ ]] || fail "Version: $(field Version)"
[[ "$(field Architecture)" == "$(dpkg --print-architecture)" ]] || fail "Architecture: $(field Architecture)"
[[ "$(field Section)" == net ]] || fail "Section: $(field Section)"
[[ "$(field Maintainer)" == *@* ]] || fail "Maintainer: $(field Maintainer)"
[[ "$(field Description)" == *"resumable file transfer"* ]] || fail "Description: $(field Description)"
depends=$(field Depends)
for lib in libuv1 libsodium23 libxxhash0 libc6 libstdc++6; do
  [[ ", $depends," == *", $lib "* || ", $depends," == *", $lib,"* ]] || fail "Depends lacks $lib: $depends"
done

dpkg-deb -c "$deb" >"$tmp/contents.out" 2>&1 || fail "dpkg-deb -c"
paths=$(awk '{print $6}' "$tmp/contents.out")
# the install prefix in the package: cpack puts the tree below /usr
wants=('usr/bin/ferry-send$' 'usr/bin/ferry-recv$' 'usr/lib/(.*/)?libferry_sender\.a$'
       'usr/include/ferry/sender/sender\.hpp$' 'usr/include/ferry/receiver/receiver\.hpp$'
       'usr/lib/(.*/)?cmake/ferry/ferryConfig\.cmake$' 'usr/lib/(.*/)?pkgconfig/ferry\.pc$'
       'usr/share/man/man1/ferry-send\.1' 'usr/share/bash-completion/completions/ferry-recv$'
       'usr/share/doc/ferry/copyright$')
if [[ "$FERRY_BUILD_SHARED" == ON ]]; then
  wants+=('usr/lib/(.*/)?libferry\.so\.0\.[0-9]+\.[0-9]+$' 'usr/lib/(.*/)?libferry\.so\.0$' 'usr/lib/(.*/)?libferry\.so$')
fi
for want in "${wants[@]}"; do
  grep -Eq "^\./$want" <<<"$paths" || fail "the package lacks $want"
done
outside=$(grep -Ev '^\./(usr/.*)?$' <<<"$paths" || true)
[[ -z "$outside" ]] || fail "the package puts files outside /usr: $outside"
if [[ "$FERRY_BUILD_SHARED" == ON ]]; then
  grep -q 'libferry.so.0 -> libferry.so.0.' "$tmp/contents.out" || fail "libferry.so.0 is not a link to the library"
  # libferry.so.0 in a library directory: the ld.so cache is refreshed after install and
  # removal (CPACK_DEBIAN_PACKAGE_GENERATE_SHLIBS writes an ldconfig postinst and postrm).
  for script in postinst postrm; do
    dpkg-deb -I "$deb" "$script" 2>/dev/null | grep -q ldconfig || fail "the package's $script does not run ldconfig"
  done
  dpkg-deb -I "$deb" shlibs 2>/dev/null | grep -q '^libferry 0 ferry' || fail "no shlibs entry for libferry.so.0"
fi

# ---------------------------------------------------------------------------------
step "3. apt-get install --simulate ./${deb##*/}"
# No lock taken, no cache file written: apt only reads the machine's package state.
(cd "$tmp/pkg" && timeout -k 5 60 apt-get install --simulate --no-download -o Debug::NoLocking=1 \
  -o Dir::Cache::pkgcache= -o Dir::Cache::srcpkgcache= "./${deb##*/}") >"$tmp/apt.log" 2>&1 || fail "apt-get would not install the package"
grep -Eq '^Inst ferry ' "$tmp/apt.log" || fail "apt-get's simulation does not install ferry"

# ---------------------------------------------------------------------------------
step "4. unpacked into a scratch root: every ELF file loads, --version, a loopback transfer"
root="$tmp/root"
dpkg-deb -x "$deb" "$root" || fail "dpkg-deb -x"
n_elf_expected=2
if [[ "$FERRY_BUILD_SHARED" == ON ]]; then
  n_elf_expected=3
  libdirs=$(find "$root/usr/lib" -name 'libferry.so.0' -printf '%h\n')
  [[ -n "$libdirs" ]] || fail "no libferry.so.0 unpacked"
  export LD_LIBRARY_PATH="$libdirs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
fi
n_elf=0
while IFS= read -r -d '' f; do
  head -c 4 "$f" | grep -q 'ELF' || continue
  n_elf=$((n_elf + 1))
  ldd "$f" >"$tmp/ldd.out" 2>&1 || fail "ldd $f"
  if grep -q 'not found' "$tmp/ldd.out"; then fail "$f: $(grep 'not found' "$tmp/ldd.out" | tr '\n' ' ')"; fi
done < <(find "$root/usr/bin" "$root/usr/lib" -type f \( -perm -u+x -o -name '*.so.*' \) -print0)
[[ $n_elf -ge $n_elf_expected ]] || fail "found $n_elf ELF files to load, expected $n_elf_expected (ferry-send, ferry-recv, libferry.so)"

version=$(timeout -k 5 10 "$root/usr/bin/ferry-send" --version) || fail "the unpacked ferry-send --version"
[[ "$version" == *protocol* ]] || fail "ferry-send --version does not name the protocol: $version"
timeout -k 5 10 "$root/usr/bin/ferry-recv" --version >/dev/null || fail "the unpacked ferry-recv --version"

mkdir -p "$tmp/src/tree/sub" "$tmp/dest"
head -c $((3 * 1024 * 1024)) /dev/urandom >"$tmp/src/tree/big.bin"
echo "small" >"$tmp/src/tree/sub/small.txt"
timeout -k 5 60 "$root/usr/bin/ferry-recv" --listen 127.0.0.1:0 --once --json "$tmp/dest" \
  >"$tmp/recv.out" 2>"$tmp/recv.err" &
recv_pid=$!
pids+=("$recv_pid")
port=""
for ((i = 0; i < 300; i++)); do
  port=$(grep -Eo -m1 '"address":"tcp:127\.0\.0\.1:[0-9]+' "$tmp/recv.out" 2>/dev/null | sed 's/.*://' || true)
  [[ -n "$port" ]] && break
  sleep 0.1
done
[[ -n "$port" ]] || fail "the unpacked ferry-recv did not listen"
timeout -k 5 60 "$root/usr/bin/ferry-send" --connect "127.0.0.1:$port" "$tmp/src/tree" >"$tmp/send.out" 2>"$tmp/send.err" ||
  fail "the unpacked ferry-send exited $?"
rc=0
wait "$recv_pid" || rc=$?
pids=()
[[ $rc -eq 0 ]] || fail "the unpacked ferry-recv exited $rc"
diff -r "$tmp/src/tree" "$tmp/dest/tree" >"$tmp/diff.log" 2>&1 || fail "DEST differs from the source"

echo "deb_test: OK (${deb##*/}, $n_elf ELF files, Depends: $depends)"
