# bench/attend_cuda_bench: vkv_cuda_attend vs fp16 decode attention and a D2D
# copy of the block (only with CUDA; run by tests/gpu/run.sh).
if(VKV_HAVE_CUDA)
  add_executable(attend_cuda_bench ${CMAKE_CURRENT_LIST_DIR}/attend_cuda_bench.cu)
  set_property(TARGET attend_cuda_bench PROPERTY CUDA_ARCHITECTURES 80 90)
  target_include_directories(attend_cuda_bench PRIVATE ${PROJECT_SOURCE_DIR}
                                                       ${PROJECT_SOURCE_DIR}/tests/gpu)
  target_link_libraries(attend_cuda_bench PRIVATE vkv_codec_cuda CUDA::cudart)
  target_compile_options(attend_cuda_bench PRIVATE --extended-lambda -Xcompiler=-Wall,-Wextra)
  if(VKV_WERROR)
    target_compile_options(attend_cuda_bench PRIVATE -Werror=all-warnings -Xcompiler=-Werror)
  endif()
endif()
