# vmhost_add_plugin(NAME KIND <kind> SOURCES <src>... [SCHEMAS <file.capnp>...]
#                   [LINK_LIBRARIES <lib>...] [OUTPUT_DIRECTORY <dir>])
#
# Builds a vmhost plugin as a MODULE library named vmhost-<kind>-<NAME>.so,
# the file name the host resolves `plugins: {<kind>: {name: <NAME>}}` to.
#
#   KIND              scheduler | storage | network | migration
#   SOURCES           the plugin's C++ sources (one of them uses VMHOST_PLUGIN)
#   SCHEMAS           the plugin's own Cap'n Proto schemas (e.g. its config,
#                     decoded with vmhost/plugin_config.hpp)
#   LINK_LIBRARIES    extra libraries, linked privately
#   OUTPUT_DIRECTORY  where the .so goes (default: CMAKE_LIBRARY_OUTPUT_DIRECTORY)
#   NO_INSTALL        no install rule (default: installs into
#                     ${VMHOST_PLUGIN_INSTALL_DIR}, default lib/vmhost/plugins)
#
# The target is named vmhost-<kind>-<NAME>. Only the entry symbol is
# exported; the SDK schemas are compiled into the plugin with the plugin's own
# compiler, so nothing but the C ABI is shared with the host.
#
# Without this function: link Vmhost::schema (the SDK headers, and the
# schemas' generated code compiled into your target) to a plain
# add_library(x MODULE ...); see docs/plugin-author-guide.md.
include_guard(GLOBAL)

if(NOT COMMAND capnp_generate_cpp)
  find_package(CapnProto REQUIRED)
endif()

# Compiles the SDK schemas once per project into an object library that every
# plugin of the project links: from an installed SDK, its generated sources
# (the target Vmhost::schema carries them); in vmhost's own build, generated
# here from the .capnp files.
function(_vmhost_sdk_schema_target out_var)
  if(NOT TARGET vmhost_sdk_schema_objects)
    if(TARGET Vmhost::schema)
      add_library(vmhost_sdk_schema_objects OBJECT)
      # PRIVATE: the sources are compiled here, and only here; a PUBLIC link
      # would hand them on and compile them again into every plugin.
      target_link_libraries(vmhost_sdk_schema_objects PUBLIC Vmhost::sdk PRIVATE Vmhost::schema)
    else()
      if(NOT VMHOST_SDK_SCHEMA_DIR)
        message(FATAL_ERROR "vmhost_add_plugin: VMHOST_SDK_SCHEMA_DIR is not set (find_package(VmhostSdk) sets it)")
      endif()
      set(VMHOST_SDK_GENERATED_DIR "${CMAKE_BINARY_DIR}/vmhost-sdk-gen" CACHE INTERNAL
        "where the SDK schemas' generated code goes")
      file(GLOB _schemas "${VMHOST_SDK_SCHEMA_DIR}/*.capnp")
      set(CAPNPC_SRC_PREFIX "${VMHOST_SDK_SCHEMA_DIR}")
      set(CAPNPC_OUTPUT_DIR "${VMHOST_SDK_GENERATED_DIR}/vmhost/schema")
      file(MAKE_DIRECTORY "${CAPNPC_OUTPUT_DIR}")
      capnp_generate_cpp(_srcs _hdrs ${_schemas})
      add_library(vmhost_sdk_schema_objects OBJECT ${_srcs} ${_hdrs})
      target_include_directories(vmhost_sdk_schema_objects PUBLIC
        "$<BUILD_INTERFACE:${VMHOST_SDK_GENERATED_DIR}>")
      target_link_libraries(vmhost_sdk_schema_objects PUBLIC CapnProto::capnp)
    endif()
    set_target_properties(vmhost_sdk_schema_objects PROPERTIES
      POSITION_INDEPENDENT_CODE ON
      CXX_VISIBILITY_PRESET hidden
      VISIBILITY_INLINES_HIDDEN ON)
    target_compile_features(vmhost_sdk_schema_objects PUBLIC cxx_std_17)
  endif()
  set(${out_var} vmhost_sdk_schema_objects PARENT_SCOPE)
endfunction()

function(vmhost_add_plugin NAME)
  cmake_parse_arguments(PARSE_ARGV 1 ARG "NO_INSTALL" "KIND;OUTPUT_DIRECTORY" "SOURCES;SCHEMAS;LINK_LIBRARIES")
  if(ARG_UNPARSED_ARGUMENTS)
    message(FATAL_ERROR "vmhost_add_plugin(${NAME}): unknown arguments: ${ARG_UNPARSED_ARGUMENTS}")
  endif()
  set(_kinds scheduler storage network migration)
  if(NOT ARG_KIND IN_LIST _kinds)
    message(FATAL_ERROR "vmhost_add_plugin(${NAME}): KIND must be one of ${_kinds}, got '${ARG_KIND}'")
  endif()
  if(NOT NAME MATCHES "^[a-z0-9][a-z0-9-]*$")
    message(FATAL_ERROR "vmhost_add_plugin(${NAME}): NAME must match [a-z0-9][a-z0-9-]*")
  endif()
  if(NOT ARG_SOURCES)
    message(FATAL_ERROR "vmhost_add_plugin(${NAME}): SOURCES is required")
  endif()

  _vmhost_sdk_schema_target(_schema_target)
  set(_target "vmhost-${ARG_KIND}-${NAME}")
  set(_own_srcs)
  if(ARG_SCHEMAS)
    set(CAPNPC_SRC_PREFIX "${CMAKE_CURRENT_SOURCE_DIR}")
    set(CAPNPC_OUTPUT_DIR "${CMAKE_CURRENT_BINARY_DIR}/${_target}-gen")
    file(MAKE_DIRECTORY "${CAPNPC_OUTPUT_DIR}")
    capnp_generate_cpp(_own_srcs _own_hdrs ${ARG_SCHEMAS})
  endif()

  add_library(${_target} MODULE ${ARG_SOURCES} ${_own_srcs})
  if(ARG_SCHEMAS)
    target_include_directories(${_target} PRIVATE "${CMAKE_CURRENT_BINARY_DIR}/${_target}-gen")
  endif()
  target_link_libraries(${_target} PRIVATE Vmhost::sdk ${_schema_target} CapnProto::capnp-json ${ARG_LINK_LIBRARIES})
  set_target_properties(${_target} PROPERTIES
    PREFIX ""
    OUTPUT_NAME "${_target}"
    CXX_VISIBILITY_PRESET hidden
    C_VISIBILITY_PRESET hidden
    VISIBILITY_INLINES_HIDDEN ON)
  if(ARG_OUTPUT_DIRECTORY)
    set_target_properties(${_target} PROPERTIES LIBRARY_OUTPUT_DIRECTORY "${ARG_OUTPUT_DIRECTORY}")
  endif()
  if(CMAKE_SYSTEM_NAME STREQUAL "Linux")
    # Undefined symbols fail at link time, not at the host's dlopen(); and the
    # entry is the only symbol exported (template instantiations from
    # libstdc++ headers would otherwise leak out with default visibility).
    set(_map "${CMAKE_BINARY_DIR}/vmhost-sdk-gen/vmhost-plugin.map")
    if(NOT EXISTS "${_map}")
      file(WRITE "${_map}" "{\n  global: vmhost_plugin_entry;\n  local: *;\n};\n")
    endif()
    target_link_options(${_target} PRIVATE "LINKER:-z,defs" "LINKER:--version-script=${_map}")
    set_property(TARGET ${_target} APPEND PROPERTY LINK_DEPENDS "${_map}")
  endif()
  if(NOT ARG_NO_INSTALL)
    if(NOT VMHOST_PLUGIN_INSTALL_DIR)
      set(VMHOST_PLUGIN_INSTALL_DIR "lib/vmhost/plugins")
    endif()
    install(TARGETS ${_target} LIBRARY DESTINATION "${VMHOST_PLUGIN_INSTALL_DIR}" COMPONENT plugins)
  endif()
endfunction()
