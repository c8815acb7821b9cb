# Cold tier benchmark: spill/restore throughput against sequential file
# write/read of the same bytes, and file growth under churn per piece size.
add_executable(vkv_bench_cold ${CMAKE_CURRENT_LIST_DIR}/cold_bench.c ${PROJECT_SOURCE_DIR}/store/cold.c)
target_include_directories(vkv_bench_cold PRIVATE ${PROJECT_SOURCE_DIR}/store)
target_link_libraries(vkv_bench_cold PRIVATE vkv_common PkgConfig::LMDB PkgConfig::XXHASH Threads::Threads)
