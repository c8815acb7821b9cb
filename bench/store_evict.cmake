# store_evict: LRU vs S3-FIFO hit rate on Zipf traces through the store API.
add_executable(store_evict ${CMAKE_CURRENT_LIST_DIR}/store_evict.c)
target_link_libraries(store_evict PRIVATE vkv_store m)
