# store_churn: arena fragmentation churn at 95% occupancy vs malloc.
add_executable(store_churn ${CMAKE_CURRENT_LIST_DIR}/store_churn.c)
target_link_libraries(store_churn PRIVATE vkv_store m)
