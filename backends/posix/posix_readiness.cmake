# backends/posix/: what the POSIX readiness backends (epoll, kqueue) share. Not a backend of
# its own: a backend's CMakeLists include()s this file to compile it into corio_backend.
# corio_add_posix_readiness(target): adds the sources and headers to the backend's target.
function(corio_add_posix_readiness target)
  set(dir ${CMAKE_CURRENT_FUNCTION_LIST_DIR})
  target_sources(${target} PRIVATE ${dir}/src/readiness_backend.cpp)
  target_include_directories(${target} PUBLIC $<BUILD_INTERFACE:${dir}/include>)
  # Lets tests of what only the readiness backends promise compile themselves in.
  target_compile_definitions(${target} PUBLIC CORIO_BACKEND_READINESS=1)
endfunction()
