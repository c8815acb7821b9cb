# Cold tier benchmark: spill/restore throughput against sequential file
# write/read of the same bytes, and file growth under churn per piece size.
add_executable(vkv_bench_cold ${CMAKE_CURRENT_LIST_DIR}/cold_bench.c)
target_link_libraries(vkv_bench_cold PRIVATE vkv_cold vkv_common Threads::Threads)
