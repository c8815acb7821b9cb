# vkv_bench_attend: vkv_attend over a 1-bit block beside fp16 attention over
# the same K/V (and beside decode-to-fp16 + fp16 attention), one decode step.
if(CMAKE_SYSTEM_PROCESSOR MATCHES "^(x86_64|AMD64|amd64)$")
  add_executable(vkv_bench_attend ${CMAKE_CURRENT_LIST_DIR}/attend_bench.c)
  target_link_libraries(vkv_bench_attend PRIVATE vkv_codec vkv_common m)
endif()
