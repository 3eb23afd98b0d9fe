# ferry as an installed package: what `cmake --install BUILD [--prefix P]` puts in P.
#
#   bin/ferry-send, bin/ferry-recv
#   lib/libferry_*.a: sender, receiver, their sessions, the lib/ rooms core, uv, net,
#                     fs, engine, and protocol             (${CMAKE_INSTALL_LIBDIR})
#   lib/libferry.so -> libferry.so.0 -> libferry.so.0.1.0  the same, one shared library
#                     (FERRY_BUILD_SHARED, default ON)
#   include/ferry/{sender,receiver,lib,protocol}/...       the public headers, below
#   lib/cmake/ferry/ferryConfig.cmake (+ Version, Targets)  find_package(ferry) ->
#                     ferry::ferry (static), ferry::ferry_shared (libferry.so)
#   lib/pkgconfig/ferry.pc                                  pkg-config --cflags --libs ferry
#                     (the static libraries)
#   share/man/man1/ferry-send.1, ferry-recv.1
#   share/bash-completion/completions/ferry-send, ferry-recv (completions/ferry.bash)
#
# A program includes <ferry/sender/sender.hpp> and <ferry/receiver/receiver.hpp>; the
# only exported include directory is ${includedir}. The public headers include each
# other by relative paths ("../lib/net/transport.hpp"), which resolve inside
# include/ferry/ whatever else is on the program's include path: ferry's generic folder
# names (lib/, protocol/) never are. docs/examples/embed-receiver builds against it;
# tests/install proves it, with a program whose own lib/ and protocol/ headers would
# otherwise be taken for ferry's.
# Included from the top-level CMakeLists.txt after the library targets exist.
include(CMakePackageConfigHelpers)

set(FERRY_INSTALL_CMAKEDIR "${CMAKE_INSTALL_LIBDIR}/cmake/ferry")

# ferry::ferry: everything a program embedding ferry::Sender / ferry::Receiver links.
add_library(ferry_ferry INTERFACE)
add_library(ferry::ferry ALIAS ferry_ferry)
target_link_libraries(ferry_ferry INTERFACE ferry_sender ferry_receiver)
target_compile_features(ferry_ferry INTERFACE cxx_std_20)

# The static libraries ferry::ferry links, in link order (a library before what it uses).
set(FERRY_INSTALLED_LIBS sender receiver sender_session receiver_session engine net fs uv core protocol)
foreach(_lib IN LISTS FERRY_INSTALLED_LIBS)
  set_target_properties(ferry_${_lib} PROPERTIES EXPORT_NAME ${_lib})
endforeach()
set_target_properties(ferry_ferry PROPERTIES EXPORT_NAME ferry)
list(TRANSFORM FERRY_INSTALLED_LIBS PREPEND "ferry_" OUTPUT_VARIABLE _ferry_lib_targets)
list(TRANSFORM FERRY_INSTALLED_LIBS PREPEND "-lferry_" OUTPUT_VARIABLE FERRY_PC_LIBS)
list(JOIN FERRY_PC_LIBS " " FERRY_PC_LIBS)

# A sanitizer build's static libraries call into the sanitizer runtime: whatever links
# them needs the same -fsanitize link options (in the build tree ferry_warnings gives
# them; this carries them into the installed package and ferry.pc).
if(_ferry_san)
  target_link_options(ferry_protocol INTERFACE ${_ferry_san})
endif()
list(JOIN _ferry_san " " FERRY_PC_EXTRA_LIBS)
if(FERRY_PC_EXTRA_LIBS)
  string(PREPEND FERRY_PC_EXTRA_LIBS " ")
endif()

install(TARGETS ${_ferry_lib_targets} ferry_ferry
        EXPORT ferryTargets
        ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
        INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})

# libferry.so: the static libraries' own objects (compiled position-independent for
# it, so each source is compiled once) linked into one shared library. Its SONAME
# carries FERRY_SOVERSION, an ABI number of its own rather than the project's major
# version: while ferry is 0.x a minor release may break the ABI, and must then bump
# it. Every symbol has default visibility (the headers carry no export annotations);
# only those the public headers declare are promised.
set(FERRY_SOVERSION 0)
if(FERRY_BUILD_SHARED)
  add_library(ferry_ferry_shared SHARED)
  add_library(ferry::ferry_shared ALIAS ferry_ferry_shared)
  foreach(_lib IN LISTS FERRY_INSTALLED_LIBS)
    set_target_properties(ferry_${_lib} PROPERTIES POSITION_INDEPENDENT_CODE ON)
    target_sources(ferry_ferry_shared PRIVATE $<TARGET_OBJECTS:ferry_${_lib}>)
  endforeach()
  set_target_properties(ferry_ferry_shared PROPERTIES OUTPUT_NAME ferry EXPORT_NAME ferry_shared
                        VERSION ${PROJECT_VERSION} SOVERSION ${FERRY_SOVERSION})
  target_include_directories(ferry_ferry_shared INTERFACE $<BUILD_INTERFACE:${PROJECT_SOURCE_DIR}>)
  target_compile_features(ferry_ferry_shared INTERFACE cxx_std_20)
  # libuv: the public headers include <uv.h>. The rest is the library's own business.
  target_link_libraries(ferry_ferry_shared PUBLIC PkgConfig::LIBUV
                        PRIVATE PkgConfig::XXHASH PkgConfig::SODIUM Threads::Threads
                                $<BUILD_INTERFACE:ferry_warnings>)
  if(_ferry_san)
    target_link_options(ferry_ferry_shared INTERFACE ${_ferry_san})
  endif()
  install(TARGETS ferry_ferry_shared
          EXPORT ferryTargets
          LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
          INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
endif()

# The public headers: exactly what sender/sender.hpp and receiver/receiver.hpp include,
# transitively (tests/install compiles both against the installed tree alone). A new
# include in one of them must be added here.
set(FERRY_PUBLIC_HEADERS
  sender/sender.hpp
  receiver/receiver.hpp
  lib/net/address.hpp
  lib/core/events.hpp
  lib/core/outcome.hpp
  lib/net/transport.hpp
  protocol/auth_key.hpp
  protocol/result.hpp)
foreach(_h IN LISTS FERRY_PUBLIC_HEADERS)
  get_filename_component(_dir "${_h}" DIRECTORY)
  install(FILES "${PROJECT_SOURCE_DIR}/${_h}" DESTINATION "${CMAKE_INSTALL_INCLUDEDIR}/ferry/${_dir}")
endforeach()

install(EXPORT ferryTargets NAMESPACE ferry:: DESTINATION ${FERRY_INSTALL_CMAKEDIR})
configure_package_config_file(cmake/ferryConfig.cmake.in "${PROJECT_BINARY_DIR}/ferryConfig.cmake"
                              INSTALL_DESTINATION ${FERRY_INSTALL_CMAKEDIR})
write_basic_package_version_file("${PROJECT_BINARY_DIR}/ferryConfigVersion.cmake"
                                 VERSION ${PROJECT_VERSION} COMPATIBILITY SameMajorVersion)
install(FILES "${PROJECT_BINARY_DIR}/ferryConfig.cmake" "${PROJECT_BINARY_DIR}/ferryConfigVersion.cmake"
        DESTINATION ${FERRY_INSTALL_CMAKEDIR})

# ferry.pc is relocatable: its prefix is found from the .pc file's own place
# (${pcfiledir}), so `cmake --install --prefix ANYWHERE` gives a working file.
file(RELATIVE_PATH _ferry_pc_up "${CMAKE_INSTALL_FULL_LIBDIR}/pkgconfig" "${CMAKE_INSTALL_PREFIX}")
string(REGEX REPLACE "/$" "" FERRY_PC_PREFIX "\${pcfiledir}/${_ferry_pc_up}")
foreach(_kind LIBDIR INCLUDEDIR)
  if(IS_ABSOLUTE "${CMAKE_INSTALL_${_kind}}")
    set(FERRY_PC_${_kind} "${CMAKE_INSTALL_${_kind}}")
  else()
    set(FERRY_PC_${_kind} "\${prefix}/${CMAKE_INSTALL_${_kind}}")
  endif()
endforeach()
configure_file(cmake/ferry.pc.in "${PROJECT_BINARY_DIR}/ferry.pc" @ONLY)
install(FILES "${PROJECT_BINARY_DIR}/ferry.pc" DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)

install(FILES docs/ferry-send.1 docs/ferry-recv.1 DESTINATION ${CMAKE_INSTALL_MANDIR}/man1)

# Bash completion for both executables: one script, installed under each command's name.
foreach(_cmd ferry-send ferry-recv)
  install(FILES completions/ferry.bash DESTINATION ${CMAKE_INSTALL_DATADIR}/bash-completion/completions
          RENAME ${_cmd})
endforeach()
