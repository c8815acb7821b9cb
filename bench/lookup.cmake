# vkv_bench_lookup: LOOKUP from the shared-memory index vs the round trip vs a
# nanomsg echo vs redis GET; lookups/s from 1/2/8 processes vs redis-benchmark.
pkg_check_modules(HIREDIS IMPORTED_TARGET hiredis)
if(TARGET PkgConfig::HIREDIS)
  add_executable(vkv_bench_lookup ${CMAKE_CURRENT_LIST_DIR}/lookup_bench.c)
  target_compile_definitions(vkv_bench_lookup PRIVATE VKVD_PATH="$<TARGET_FILE:vkvd>")
  target_link_libraries(vkv_bench_lookup PRIVATE vkv_client vkv_proto PkgConfig::HIREDIS
                        PkgConfig::NANOMSG Threads::Threads)
  add_dependencies(vkv_bench_lookup vkvd)
endif()
