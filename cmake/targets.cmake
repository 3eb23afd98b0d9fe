# Helpers for ferry's own static libraries. Included from the top-level CMakeLists.txt.
#
# ferry_add_library(NAME SOURCES... [PUBLIC libs...] [PRIVATE libs...]): the static
# library ferry_NAME, alias ferry::NAME, includes rooted at the repository top, the
# shared warning flags (build-only). Used for every lib/ room and each role's engine.
function(ferry_add_library name)
  cmake_parse_arguments(R "" "" "PUBLIC;PRIVATE" ${ARGN})
  add_library(ferry_${name} STATIC ${R_UNPARSED_ARGUMENTS})
  add_library(ferry::${name} ALIAS ferry_${name})
  target_include_directories(ferry_${name} PUBLIC $<BUILD_INTERFACE:${PROJECT_SOURCE_DIR}>)
  target_link_libraries(ferry_${name} PUBLIC ${R_PUBLIC} PRIVATE ${R_PRIVATE} $<BUILD_INTERFACE:ferry_warnings>)
endfunction()

# ferry_add_session(NAME SOURCES...): a role's sans-I/O session (sender/, receiver/) as
# ferry_NAME linking ferry::core (and through it protocol/) only, with the sans-I/O
# check (cmake/check_sans_io.cmake) run after every build of it.
function(ferry_add_session name)
  ferry_add_library(${name} ${ARGN} PUBLIC ferry::core)
  ferry_check_sans_io(ferry_${name})
endfunction()
