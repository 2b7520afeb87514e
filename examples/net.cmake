# Networking examples: echo_server / echo_client (the asyncio streams docs' pair) and
# http_hello (TechEmpower plaintext shape). They need nothing beyond corio::corio; the
# guards keep this fragment harmless when the directory's glob already made the targets.
foreach(corio_net_example echo_server echo_client http_hello)
  if(NOT TARGET ${corio_net_example})
    add_executable(${corio_net_example} ${CMAKE_CURRENT_LIST_DIR}/${corio_net_example}.cpp)
    target_link_libraries(${corio_net_example} PRIVATE corio::corio)
    corio_warnings(${corio_net_example})
  endif()
endforeach()
