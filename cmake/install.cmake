# Installation: the library, public headers, a CMake package config
# (find_package(Eventloom)) and a pkg-config file (pkg-config loom).
include(CMakePackageConfigHelpers)

install(TARGETS loom EXPORT EventloomTargets
        LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
        ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
        INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(DIRECTORY ${PROJECT_SOURCE_DIR}/framework/include/loom
                  ${PROJECT_SOURCE_DIR}/eventstore/include/loom
                  ${PROJECT_SOURCE_DIR}/outbox/include/loom
                  ${PROJECT_SOURCE_DIR}/saga/include/loom
        DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(FILES ${PROJECT_SOURCE_DIR}/framework/proto/loom/metadata.proto
        DESTINATION ${CMAKE_INSTALL_DATADIR}/eventloom/proto/loom)

# The saga definition language: protoc-gen-loom, loom/options.proto (the
# import directory is share/eventloom/proto), and loom_generate(), which
# EventloomConfig.cmake includes.
set(LOOM_INSTALL_PROTO_DIR ${CMAKE_INSTALL_DATADIR}/eventloom/proto)
install(TARGETS protoc-gen-loom RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(FILES ${PROJECT_SOURCE_DIR}/codegen/proto/loom/options.proto
        DESTINATION ${LOOM_INSTALL_PROTO_DIR}/loom)
install(FILES ${PROJECT_SOURCE_DIR}/codegen/LoomGenerate.cmake
        DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/Eventloom)

install(EXPORT EventloomTargets NAMESPACE Eventloom::
        DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/Eventloom)
configure_package_config_file(
  ${PROJECT_SOURCE_DIR}/cmake/EventloomConfig.cmake.in
  ${PROJECT_BINARY_DIR}/EventloomConfig.cmake
  INSTALL_DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/Eventloom
  PATH_VARS CMAKE_INSTALL_BINDIR LOOM_INSTALL_PROTO_DIR)
write_basic_package_version_file(
  ${PROJECT_BINARY_DIR}/EventloomConfigVersion.cmake
  VERSION ${PROJECT_VERSION} COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/EventloomConfig.cmake
              ${PROJECT_BINARY_DIR}/EventloomConfigVersion.cmake
        DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/Eventloom)

# The .pc file finds its prefix relative to itself, so an installed tree
# can be moved (or installed with `cmake --install --prefix`).
file(RELATIVE_PATH LOOM_PC_TO_PREFIX ${CMAKE_INSTALL_FULL_LIBDIR}/pkgconfig
     ${CMAKE_INSTALL_PREFIX})
# libnats is a private dependency of libloom.so (static linking needs it).
if(LOOM_WITH_NATS)
  set(LOOM_PC_REQUIRES_PRIVATE libnats)
else()
  set(LOOM_PC_REQUIRES_PRIVATE "")
endif()
configure_file(${PROJECT_SOURCE_DIR}/cmake/loom.pc.in
               ${PROJECT_BINARY_DIR}/loom.pc @ONLY)
install(FILES ${PROJECT_BINARY_DIR}/loom.pc
        DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
