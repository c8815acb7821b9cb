# vkv_bench_remote: remote image fetch through vkvd vs redis GET of the fp16
# bytes; publish throughput vs redis-benchmark SET (a real Redis Cluster).
add_executable(vkv_bench_remote ${CMAKE_CURRENT_LIST_DIR}/remote_bench.c)
target_compile_definitions(vkv_bench_remote PRIVATE VKVD_PATH="$<TARGET_FILE:vkvd>")
target_link_libraries(vkv_bench_remote PRIVATE vkv_client vkv_remote vkv_redis_cluster
                      PkgConfig::HIREDIS)
add_dependencies(vkv_bench_remote vkvd)
