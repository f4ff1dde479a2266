# loom_generate(): compile .proto files that define sagas and events into C.
#
#   loom_generate(TARGET <target>
#                 PROTOS <file.proto>...
#                 [IMPORT_DIRS <dir>...]
#                 [OUT_DIR <dir>]
#                 [PLUGIN_OPTIONS <option>...])
#
# For each <dir>/<name>.proto (its name relative to the first IMPORT_DIRS
# entry that contains it, or to its own directory), one protoc run writes
# to OUT_DIR (default: the current binary directory):
#   <dir>/<name>.pb-c.h, .pb-c.c    protoc-c's message types
#   <dir>/<name>.loom.h, .loom.c    protoc-gen-loom's tables and prototypes
#   <dir>/<name>.<Service>.mmd      a Mermaid diagram per saga
# The .c files are added to <target>'s sources and OUT_DIR to its include
# directories (PUBLIC), so `#include "<dir>/<name>.loom.h"` works. The
# target must also link Eventloom (Eventloom::loom installed, loom or
# loom_static in Eventloom's own tree). The files are generated again
# when a .proto, a file it imports (CMake 3.20 or later) or the plugin
# changes.
#
# IMPORT_DIRS are protoc's -I directories; loom/options.proto's directory
# and those of google/protobuf/descriptor.proto and
# protobuf-c/protobuf-c.proto are added after them.
# PLUGIN_OPTIONS go to --loom_opt (comma-joined): `register_symbol` also
# defines loom_register_types() for loom_registry_load() (loomctl --types).
#
# In Eventloom's tree the plugin is the protoc-gen-loom target; installed,
# find_package(Eventloom) sets LOOM_PROTOC_GEN_LOOM and
# LOOM_OPTIONS_PROTO_DIR before including this file.

if(NOT DEFINED LOOM_PROTOC_GEN_LOOM)
  if(NOT TARGET protoc-gen-loom)
    message(FATAL_ERROR "LoomGenerate.cmake: no protoc-gen-loom: include it "
                        "after add_subdirectory(codegen), or through "
                        "find_package(Eventloom)")
  endif()
  set(LOOM_PROTOC_GEN_LOOM "$<TARGET_FILE:protoc-gen-loom>")
  set(LOOM_PROTOC_GEN_LOOM_DEPENDS protoc-gen-loom)
  set(LOOM_OPTIONS_PROTO_DIR "${CMAKE_CURRENT_LIST_DIR}/proto")
elseif(NOT DEFINED LOOM_PROTOC_GEN_LOOM_DEPENDS)
  set(LOOM_PROTOC_GEN_LOOM_DEPENDS "${LOOM_PROTOC_GEN_LOOM}")
endif()

# Looked for now, required only when loom_generate() runs: a project
# that never calls it needs none of them.
find_program(LOOM_PROTOC protoc)
find_program(LOOM_PROTOC_GEN_C NAMES protoc-gen-c protoc-c)
find_path(LOOM_PROTOBUF_PROTO_DIR google/protobuf/descriptor.proto)
find_path(LOOM_PROTOBUF_C_PROTO_DIR protobuf-c/protobuf-c.proto)

# Absolute paths in protoc's --dependency_out make the policy moot, but
# CMake warns about DEPFILE under the old one. (An included file has its
# own policy scope, and a function keeps the policies of its definition.)
if(POLICY CMP0116)
  cmake_policy(SET CMP0116 NEW)
endif()

function(loom_generate)
  cmake_parse_arguments(LG "" "TARGET;OUT_DIR"
                        "PROTOS;IMPORT_DIRS;PLUGIN_OPTIONS" ${ARGN})
  if(LG_UNPARSED_ARGUMENTS)
    message(FATAL_ERROR "loom_generate: unknown arguments: ${LG_UNPARSED_ARGUMENTS}")
  endif()
  if(NOT LG_TARGET OR NOT TARGET ${LG_TARGET})
    message(FATAL_ERROR "loom_generate: TARGET must name an existing target "
                        "(got '${LG_TARGET}')")
  endif()
  if(NOT LG_PROTOS)
    message(FATAL_ERROR "loom_generate: PROTOS is empty")
  endif()
  foreach(v LOOM_PROTOC LOOM_PROTOC_GEN_C LOOM_PROTOBUF_PROTO_DIR
          LOOM_PROTOBUF_C_PROTO_DIR)
    if(NOT ${v})
      message(FATAL_ERROR
        "loom_generate: ${v} not found: it needs protoc, protoc-gen-c and "
        "the .proto files of protobuf and protobuf-c (Debian: "
        "protobuf-compiler, protobuf-c-compiler, libprotobuf-dev, "
        "libprotobuf-c-dev; set ${v} to point at yours)")
    endif()
  endforeach()
  if(NOT LG_OUT_DIR)
    set(LG_OUT_DIR ${CMAKE_CURRENT_BINARY_DIR})
  endif()
  get_filename_component(out "${LG_OUT_DIR}" ABSOLUTE
                         BASE_DIR ${CMAKE_CURRENT_BINARY_DIR})

  set(dirs "")
  foreach(d IN LISTS LG_IMPORT_DIRS)
    get_filename_component(d "${d}" ABSOLUTE BASE_DIR ${CMAKE_CURRENT_SOURCE_DIR})
    list(APPEND dirs "${d}")
  endforeach()
  set(opt "")
  if(LG_PLUGIN_OPTIONS)
    list(JOIN LG_PLUGIN_OPTIONS "," joined)
    set(opt "--loom_opt=${joined}")
  endif()

  set(sources "")
  foreach(proto IN LISTS LG_PROTOS)
    get_filename_component(abs "${proto}" ABSOLUTE
                           BASE_DIR ${CMAKE_CURRENT_SOURCE_DIR})
    # Its name for protoc (and so the generated files' names): relative to
    # the first import directory that holds it, else to its own directory.
    set(rel "")
    set(own_dir "")
    foreach(d IN LISTS dirs)
      file(RELATIVE_PATH r "${d}" "${abs}")
      if(NOT r MATCHES "^\\.\\./" AND NOT IS_ABSOLUTE "${r}")
        set(rel "${r}")
        break()
      endif()
    endforeach()
    if(rel STREQUAL "")
      get_filename_component(own_dir "${abs}" DIRECTORY)
      get_filename_component(rel "${abs}" NAME)
    endif()
    string(REGEX REPLACE "\\.proto$" "" stem "${rel}")
    set(includes "")
    foreach(d IN LISTS dirs own_dir)
      if(NOT d STREQUAL "")
        list(APPEND includes "-I${d}")
      endif()
    endforeach()
    list(APPEND includes "-I${LOOM_OPTIONS_PROTO_DIR}"
         "-I${LOOM_PROTOBUF_PROTO_DIR}" "-I${LOOM_PROTOBUF_C_PROTO_DIR}")
    list(REMOVE_DUPLICATES includes)

    set(outputs ${out}/${stem}.pb-c.c ${out}/${stem}.pb-c.h
                ${out}/${stem}.loom.c ${out}/${stem}.loom.h)
    set(depfile_args "")
    set(depfile_opt "")
    if(CMAKE_VERSION VERSION_GREATER_EQUAL 3.20)
      set(depfile_args DEPFILE ${out}/${stem}.loom.d)
      set(depfile_opt "--dependency_out=${out}/${stem}.loom.d")
    endif()
    add_custom_command(
      OUTPUT ${outputs}
      COMMAND ${CMAKE_COMMAND} -E make_directory ${out}
      COMMAND ${LOOM_PROTOC} ${includes}
              --plugin=protoc-gen-c=${LOOM_PROTOC_GEN_C} --c_out=${out}
              --plugin=protoc-gen-loom=${LOOM_PROTOC_GEN_LOOM}
              --loom_out=${out} ${opt} ${depfile_opt} ${abs}
      DEPENDS ${abs} ${LOOM_PROTOC_GEN_LOOM_DEPENDS}
              ${LOOM_OPTIONS_PROTO_DIR}/loom/options.proto
      ${depfile_args}
      COMMENT "loom_generate: ${rel}"
      VERBATIM)
    list(APPEND sources ${out}/${stem}.pb-c.c ${out}/${stem}.loom.c
         ${out}/${stem}.pb-c.h ${out}/${stem}.loom.h)
  endforeach()
  target_sources(${LG_TARGET} PRIVATE ${sources})
  target_include_directories(${LG_TARGET} PUBLIC $<BUILD_INTERFACE:${out}>)
endfunction()
