# vkv_bench_codec: codec quantize/dequantize throughput beside memcpy.
add_executable(vkv_bench_codec ${CMAKE_CURRENT_LIST_DIR}/codec_bench.c)
target_link_libraries(vkv_bench_codec PRIVATE vkv_codec vkv_common)
