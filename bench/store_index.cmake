# store_index: index lookup latency at 1k and 1M entries vs bsearch.
add_executable(store_index ${CMAKE_CURRENT_LIST_DIR}/store_index.c)
target_include_directories(store_index PRIVATE ${PROJECT_SOURCE_DIR})
target_link_libraries(store_index PRIVATE vkv_store)
