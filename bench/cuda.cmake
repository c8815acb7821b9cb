# bench/cuda_bench: GPU codec vs device-to-device copy (only with CUDA).
if(VKV_HAVE_CUDA)
  add_executable(cuda_bench ${CMAKE_CURRENT_LIST_DIR}/cuda_bench.cu)
  set_property(TARGET cuda_bench PROPERTY CUDA_ARCHITECTURES 80 90)
  target_include_directories(cuda_bench PRIVATE ${PROJECT_SOURCE_DIR}
                                                ${PROJECT_SOURCE_DIR}/tests/gpu)
  target_link_libraries(cuda_bench PRIVATE vkv_codec_cuda CUDA::cudart)
  target_compile_options(cuda_bench PRIVATE --extended-lambda -Xcompiler=-Wall,-Wextra -fmad=false)
  if(VKV_WERROR)
    target_compile_options(cuda_bench PRIVATE -Werror=all-warnings -Xcompiler=-Werror)
  endif()
endif()
