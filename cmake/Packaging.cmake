# Debian packages for operators (docs/operator-guide.md, "Installing"):
#
#   cmake --build build --target package     # or: cd build && cpack -G DEB
#
# makes, in build/packages/:
#   vmhost      the host binary, the default plugins (/usr/lib/vmhost/plugins),
#               the systemd units and the default configs in /etc/vmhost
#   vmctl       the CLI
#   vmhost-sdk  headers, schemas, the CMake package, vmhost-plugin-check
#
# Each package is one group of install() components; a component no group
# names would be left out of every package, so configuring fails on one
# (the check at the end). tests/packaging installs the packages in a fresh
# Debian 12 root.
include_guard(GLOBAL)

set(_pkg_dir "${PROJECT_SOURCE_DIR}/deploy/packaging")

# --- what the vmhost package adds to the install() rules of host/ ----------
# The units name /usr/bin/vmhost: packages install under /usr.
install(FILES "${PROJECT_SOURCE_DIR}/deploy/systemd/vmhost-all-in-one.service"
              "${PROJECT_SOURCE_DIR}/deploy/systemd/vmhost-controller.service"
              "${PROJECT_SOURCE_DIR}/deploy/systemd/vmhost-node.service"
        DESTINATION lib/systemd/system COMPONENT systemd)
# /etc is outside any prefix, so the configs are installed only into a
# package: EXCLUDE_FROM_ALL keeps `cmake --install build --prefix DIR` (the
# out-of-tree SDK test, a developer's prefix) from writing to the machine's
# /etc.
install(FILES "${_pkg_dir}/etc/vmhost.yaml" "${_pkg_dir}/etc/controller.yaml"
              "${_pkg_dir}/etc/node.yaml"
        DESTINATION /etc/vmhost COMPONENT config EXCLUDE_FROM_ALL)
# The units' Documentation= points here.
install(FILES "${PROJECT_SOURCE_DIR}/docs/operator-guide.md" DESTINATION share/doc/vmhost
        COMPONENT doc)
install(FILES "${PROJECT_SOURCE_DIR}/docs/plugin-author-guide.md"
        DESTINATION share/doc/vmhost-sdk COMPONENT sdk-doc)

# --- components -> packages -------------------------------------------------
set(_vmhost_package_groups vmhost vmctl sdk)
set(_vmhost_group_vmhost host plugins systemd config doc)
set(_vmhost_group_vmctl vmctl)
set(_vmhost_group_sdk sdk sdk-doc)

set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME vmhost)
set(CPACK_PACKAGE_VENDOR vmhost)
set(CPACK_PACKAGE_VERSION "${PROJECT_VERSION}")
# Each package's synopsis is the first line of its _DESCRIPTION below.
# CPackDeb would prepend one summary to all of them unless it is CPack's
# default, so it is set to exactly that.
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "${CMAKE_PROJECT_NAME} built using CMake")
set(CPACK_PACKAGE_CONTACT "vmhost maintainers <vmhost@localhost>")
set(CPACK_PACKAGE_DIRECTORY "${CMAKE_BINARY_DIR}/packages")
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
# Packages carry no debug info (a RelWithDebInfo vmhost is ~10x its size).
set(CPACK_STRIP_FILES ON)
set(CPACK_DEB_COMPONENT_INSTALL ON)
set(CPACK_COMPONENTS_GROUPING ONE_PER_GROUP)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_RELEASE 1)
set(CPACK_DEBIAN_PACKAGE_SECTION admin)
# Library dependencies come from the binaries (dpkg-shlibdeps, in dpkg-dev),
# so a newly linked library cannot be forgotten.
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)

set(CPACK_COMPONENTS_ALL)
foreach(_group IN LISTS _vmhost_package_groups)
  foreach(_component IN LISTS _vmhost_group_${_group})
    string(TOUPPER "${_component}" _c)
    set(CPACK_COMPONENT_${_c}_GROUP "${_group}")
    list(APPEND CPACK_COMPONENTS_ALL "${_component}")
  endforeach()
endforeach()

set(CPACK_DEBIAN_VMHOST_PACKAGE_NAME vmhost)
set(CPACK_DEBIAN_VMHOST_DESCRIPTION
    "Pet virtual machines on a cluster of hosts
vmhost runs virtual machines on libvirt and QEMU the way Kubernetes runs
pods: `vmhost controller` serves a Kubernetes-style API and schedules VMs,
`vmhost node` runs them on each host, `vmhost all-in-one` is both on one
machine. Includes the default scheduler, storage, network and migration
plugins and systemd units for the three modes.")
# The same package serves a controller-only machine, which runs no VM: the
# hypervisor stack is recommended (apt installs it by default), not
# required. Without it `vmhost node` says which libvirt URI it cannot open.
set(CPACK_DEBIAN_VMHOST_PACKAGE_RECOMMENDS "libvirt-daemon-system, qemu-system-x86, qemu-utils, vmctl")
set(CPACK_DEBIAN_VMHOST_PACKAGE_CONTROL_EXTRA
    "${_pkg_dir}/debian/vmhost/conffiles" "${_pkg_dir}/debian/vmhost/postinst"
    "${_pkg_dir}/debian/vmhost/prerm" "${_pkg_dir}/debian/vmhost/postrm")

set(CPACK_DEBIAN_VMCTL_PACKAGE_NAME vmctl)
set(CPACK_DEBIAN_VMCTL_DESCRIPTION
    "Command-line client of the vmhost API
vmctl applies, lists, starts, stops and deletes vmhost virtual machines,
attaches to their serial consoles and cordons or drains hosts.")

set(CPACK_DEBIAN_SDK_PACKAGE_NAME vmhost-sdk)
set(CPACK_DEBIAN_SDK_PACKAGE_SECTION devel)
set(CPACK_DEBIAN_SDK_DESCRIPTION
    "SDK for vmhost plugins
The C ABI header, the C++ author layer, the Cap'n Proto schemas, the CMake
package (find_package(VmhostSdk), vmhost_add_plugin) and the conformance kit
vmhost-plugin-check.")
# What vmhost_add_plugin needs at a plugin author's: the Cap'n Proto
# compiler and headers (the schemas are compiled into each plugin), CMake,
# and pkg-config, without which Cap'n Proto's CMake package fails ("Could
# NOT find PkgConfig") though libcapnp-dev does not depend on it. Any C and
# C++ compiler will do, so one is only recommended.
set(CPACK_DEBIAN_SDK_PACKAGE_DEPENDS "capnproto, libcapnp-dev, cmake (>= 3.16), pkg-config")
set(CPACK_DEBIAN_SDK_PACKAGE_RECOMMENDS "g++ | clang, vmhost")

include(CPack)

# Every component some install() rule names must be in a package.
get_cmake_property(_vmhost_components COMPONENTS)
foreach(_component IN LISTS _vmhost_components)
  if(NOT _component IN_LIST CPACK_COMPONENTS_ALL)
    list(JOIN _vmhost_package_groups ", " _groups)
    message(FATAL_ERROR
      "cmake/Packaging.cmake: install() component '${_component}' is in no package (an install() "
      "without COMPONENT is 'Unspecified'); add it to the list of one of the packages: "
      "_vmhost_group_<package> for ${_groups}")
  endif()
endforeach()
