# cpack -G DEB: one Debian package, "ferry", holding everything `cmake --install` puts
# in place (cmake/package.cmake): the executables, libferry.so.0 and the static
# libraries, the headers, the CMake package, ferry.pc, man pages, bash completion and
# the license (as share/doc/ferry/copyright, Debian's name for it).
#
#   bash scripts/package.sh OUTDIR      # a Release build for /usr, then the .deb in OUTDIR
#   cpack -G DEB --config BUILD/CPackConfig.cmake -B OUTDIR    # from an existing build
#
# Depends: computed by dpkg-shlibdeps (dpkg-dev) from what the executables and
# libferry.so link (libuv1, libxxhash0, libsodium23, libc6, libstdc++6, libgcc-s1);
# without dpkg-shlibdeps, that list, unversioned. The -dev packages a program building
# against the headers needs are Suggests, not Depends: most who install ferry want the
# executables only. Included from the top-level CMakeLists.txt after cmake/package.cmake.

set(CPACK_PACKAGE_NAME ferry)
set(CPACK_PACKAGE_VENDOR "the ferry authors")
set(CPACK_PACKAGE_CONTACT "ferry maintainers <maintainers@users.noreply.h-seed-cf4f413c.example>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY
    "verified, resumable file transfer over untrusted byte streams")
set(CPACK_PACKAGE_DESCRIPTION
    "ferry-send and ferry-recv move files and trees over TCP, unix sockets, pipes, ssh or
vsock: chunked, each chunk and each whole file checked with XXH3, windowed, resumable
after a cut connection or a killed process, and renamed into place only once the whole
file's digest matched. Also the C++20 library behind them (ferry::Sender,
ferry::Receiver): libferry.so.${FERRY_SOVERSION}, static libraries, headers under
<ferry/...>, a CMake package and ferry.pc. MIT license.")
set(CPACK_RESOURCE_FILE_LICENSE "${PROJECT_SOURCE_DIR}/LICENSE")
set(CPACK_GENERATOR DEB)

set(CPACK_DEBIAN_PACKAGE_MAINTAINER "${CPACK_PACKAGE_CONTACT}")
set(CPACK_DEBIAN_PACKAGE_SECTION net)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
set(CPACK_DEBIAN_PACKAGE_RELEASE 1)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)  # ferry_0.1.0-1_amd64.deb
set(CPACK_DEBIAN_PACKAGE_SUGGESTS "libuv1-dev, libxxhash-dev, libsodium-dev, pkg-config")
# shlibs and an ldconfig trigger for libferry.so.0.
set(CPACK_DEBIAN_PACKAGE_GENERATE_SHLIBS ON)
find_program(FERRY_DPKG_SHLIBDEPS dpkg-shlibdeps)
if(FERRY_DPKG_SHLIBDEPS)
  set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
else()
  set(CPACK_DEBIAN_PACKAGE_DEPENDS "libuv1, libxxhash0, libsodium23, libc6, libstdc++6, libgcc-s1")
endif()

install(FILES LICENSE DESTINATION ${CMAKE_INSTALL_DOCDIR} RENAME copyright)

include(CPack)
