# Installs headers and libraries and exports corio::corio for find_package(corio).
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)
install(TARGETS corio corio_core corio_backend EXPORT corioTargets
        ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
        LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR})
# A backend built from shared parts (backends/posix) names all its header folders.
if(NOT CORIO_BACKEND_INCLUDE_DIRS)
  set(CORIO_BACKEND_INCLUDE_DIRS backends/${CORIO_BACKEND_DIR}/include/)
endif()
install(DIRECTORY core/include/ runtime/include/ ${CORIO_BACKEND_INCLUDE_DIRS}
        DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/generated/corio/config.hpp
        DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/corio)
install(EXPORT corioTargets NAMESPACE corio:: DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/corio)
file(WRITE ${CMAKE_CURRENT_BINARY_DIR}/corioConfig.cmake.in
     "include(CMakeFindDependencyMacro)\nfind_dependency(absl CONFIG)\nfind_dependency(Threads)\n"
     "include(\${CMAKE_CURRENT_LIST_DIR}/corioTargets.cmake)\n")
configure_package_config_file(${CMAKE_CURRENT_BINARY_DIR}/corioConfig.cmake.in
                              ${CMAKE_CURRENT_BINARY_DIR}/corioConfig.cmake
                              INSTALL_DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/corio)
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/corioConfig.cmake DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/corio)
