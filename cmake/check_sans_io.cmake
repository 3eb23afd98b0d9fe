# The sans-I/O check: a session target may include the standard library, protocol/,
# lib/core/ and its own headers, nothing that does I/O. Two uses:
#
# 1. From CMakeLists.txt: ferry_check_sans_io(TARGET) adds a POST_BUILD step to TARGET
#    that runs this file as a script, so building a session that reaches for libuv,
#    CLI11, a socket, file or directory header, or a lib/ room other than lib/core fails
#    the build with the offending include named.
# 2. As a script: cmake -DCXX=g++ -DTOP=<repo> -DSOURCES=a.cpp,b.cpp -P check_sans_io.cmake
#    (tests/structure runs it on a planted impure source and expects it to fail).
#
# It asks the compiler for every header a source pulls in (-M: system headers too,
# transitively), so an include hidden two headers deep is caught as well.

if(CMAKE_SCRIPT_MODE_FILE)
  # Not <unistd.h>: libstdc++'s own <memory> and <atomic> include it (atomic_wait.h);
  # the calls that matter come with the headers below, or through lib/.
  set(_forbidden
      "/uv\\.h$" "/uv/" "/CLI/"
      "/sys/socket\\.h$" "/sys/inotify\\.h$" "/sys/stat\\.h$" "/sys/mman\\.h$" "/sys/uio\\.h$"
      "/fcntl\\.h$" "/dirent\\.h$" "/netinet/" "/linux/vm_sockets\\.h$")
  set(_allowed_project "^${TOP}/(protocol|lib/core)/" "^${TOP}/sender/sender_session\\.hpp$"
                       "^${TOP}/receiver/receiver_session\\.hpp$")
  string(REPLACE "," ";" SOURCES "${SOURCES}")
  set(_bad "")
  foreach(_src IN LISTS SOURCES)
    execute_process(COMMAND ${CXX} -std=c++20 -I${TOP} -M ${_src}
                    OUTPUT_VARIABLE _deps ERROR_VARIABLE _err RESULT_VARIABLE _rc)
    if(NOT _rc EQUAL 0)
      message(FATAL_ERROR "sans-I/O check: cannot list the includes of ${_src}:\n${_err}")
    endif()
    string(REGEX REPLACE "\\\\\n" " " _deps "${_deps}")
    string(REGEX REPLACE "^[^:]*:" "" _deps "${_deps}")
    separate_arguments(_deps UNIX_COMMAND "${_deps}")
    foreach(_dep IN LISTS _deps)
      get_filename_component(_dep "${_dep}" ABSOLUTE)
      if(_dep STREQUAL _src)
        continue()
      endif()
      foreach(_pattern IN LISTS _forbidden)
        if(_dep MATCHES "${_pattern}")
          list(APPEND _bad "${_src} includes ${_dep} (I/O)")
        endif()
      endforeach()
      if(_dep MATCHES "^${TOP}/")
        set(_ok FALSE)
        foreach(_pattern IN LISTS _allowed_project)
          if(_dep MATCHES "${_pattern}")
            set(_ok TRUE)
          endif()
        endforeach()
        if(NOT _ok)
          list(APPEND _bad "${_src} includes ${_dep} (only protocol/ and lib/core/ are allowed)")
        endif()
      endif()
    endforeach()
  endforeach()
  if(_bad)
    list(REMOVE_DUPLICATES _bad)
    list(JOIN _bad "\n  " _list)
    message(FATAL_ERROR "sans-I/O check failed: a session must not do I/O (docs/ARCHITECTURE.md):\n  ${_list}")
  endif()
  return()
endif()

# ferry_check_sans_io(TARGET): run the check above after TARGET is built.
function(ferry_check_sans_io target)
  get_target_property(_sources ${target} SOURCES)
  get_target_property(_dir ${target} SOURCE_DIR)
  set(_abs "")
  foreach(_s IN LISTS _sources)
    get_filename_component(_s "${_s}" ABSOLUTE BASE_DIR "${_dir}")
    list(APPEND _abs "${_s}")
  endforeach()
  list(JOIN _abs "," _arg)
  add_custom_command(TARGET ${target} POST_BUILD
                     COMMAND ${CMAKE_COMMAND} -DCXX=${CMAKE_CXX_COMPILER} -DTOP=${PROJECT_SOURCE_DIR}
                             -DSOURCES=${_arg} -P ${PROJECT_SOURCE_DIR}/cmake/check_sans_io.cmake
                     COMMENT "sans-I/O check of ${target}"
                     VERBATIM)
endfunction()
