# `cmake --install`: the public headers, libsquirrel.a and libsquirrel.so,
# a pkg-config file (squirrel.pc) and a CMake package (find_package
# (Squirrel) giving Squirrel::squirrel, the shared library, and
# Squirrel::squirrel_static).
include(CMakePackageConfigHelpers)

set_target_properties(squirrel_shared PROPERTIES EXPORT_NAME squirrel)
set_target_properties(squirrel PROPERTIES EXPORT_NAME squirrel_static)
install(TARGETS squirrel squirrel_shared EXPORT SquirrelTargets
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
  RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(FILES ${SQ_ALL_PUBLIC_HEADERS}
  DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/squirrel)

set(SQ_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/Squirrel)
install(EXPORT SquirrelTargets NAMESPACE Squirrel::
  DESTINATION ${SQ_CMAKE_DIR})
configure_package_config_file(cmake/SquirrelConfig.cmake.in
  ${CMAKE_BINARY_DIR}/SquirrelConfig.cmake
  INSTALL_DESTINATION ${SQ_CMAKE_DIR})
write_basic_package_version_file(${CMAKE_BINARY_DIR}/SquirrelConfigVersion.cmake
  VERSION ${PROJECT_VERSION} COMPATIBILITY SameMinorVersion)
install(FILES ${CMAKE_BINARY_DIR}/SquirrelConfig.cmake
  ${CMAKE_BINARY_DIR}/SquirrelConfigVersion.cmake
  DESTINATION ${SQ_CMAKE_DIR})

# pkg-config: the prefix found from the .pc file's own place, so an
# install moved elsewhere (or made with cmake --install --prefix) works.
file(RELATIVE_PATH SQ_PC_TO_PREFIX ${CMAKE_INSTALL_FULL_LIBDIR}/pkgconfig
     ${CMAKE_INSTALL_PREFIX})
string(REGEX REPLACE "/$" "" SQ_PC_TO_PREFIX "${SQ_PC_TO_PREFIX}")
configure_file(cmake/squirrel.pc.in ${CMAKE_BINARY_DIR}/squirrel.pc @ONLY)
install(FILES ${CMAKE_BINARY_DIR}/squirrel.pc
  DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
