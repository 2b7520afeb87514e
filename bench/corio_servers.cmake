# corio's servers for the side-by-side harnesses (the peers live in bench/peers).
add_executable(corio_echo ${CMAKE_CURRENT_LIST_DIR}/corio_echo.cpp ${CMAKE_CURRENT_LIST_DIR}/alloc_counter.cpp)
target_link_libraries(corio_echo PRIVATE corio::corio)
target_include_directories(corio_echo PRIVATE ${CMAKE_CURRENT_LIST_DIR})
corio_warnings(corio_echo)
