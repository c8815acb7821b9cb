# vkv_bench_service: LOOKUP vs nanomsg echo vs redis GET; image fetch vs redis;
# LOOKUP under concurrent restores. Needs hiredis (libhiredis-dev).
pkg_check_modules(HIREDIS IMPORTED_TARGET hiredis)
if(TARGET PkgConfig::HIREDIS)
  add_executable(vkv_bench_service ${CMAKE_CURRENT_LIST_DIR}/service_bench.c)
  target_compile_definitions(vkv_bench_service PRIVATE VKVD_PATH="$<TARGET_FILE:vkvd>")
  target_link_libraries(vkv_bench_service PRIVATE vkv_client vkv_proto PkgConfig::HIREDIS
                        PkgConfig::NANOMSG Threads::Threads)
  add_dependencies(vkv_bench_service vkvd)
endif()
