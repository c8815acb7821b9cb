/*
 * bench/cuda_bench.cu - GPU codec throughput beside a device-to-device
 * cudaMemcpy of the same bytes, measured in the same run (CUDA events,
 * median of 20 after 3 warm-ups), on a LLaVA-1.5-7B-shaped image chunk:
 * 576 visual tokens, 32 layers, 32 KV heads, head_dim 128, fp16.
 *   decode dense / paged: fp16 bytes written per second (vs D2D copy of them)
 *   encode (ASYNC: kernels only; and full: + D2H copy + host XXH3): fp16
 *   bytes read per second (vs D2D copy of them)
 * The cross-process figure (a second process fetching the cached image from
 * vkvd and decoding it into its paged cache) comes from tests/gpu/gpu_pair,
 * run by tests/gpu/run.sh. Exits 77 without a device.
 */
#include <cuda_runtime.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <algorithm>
#include <vector>

#include "gpu_util.h"
#include "vkv/codec_cuda.h"

#define L_   32
#define H_   32
#define D_   128
#define T_   576
#define PS_  16
#define REPS 20

/* Median milliseconds of REPS runs of f (after 3 warm-ups) on stream st. */
template <class F> static double time_ms(cudaStream_t st, F f)
{
    cudaEvent_t a, b;
    CK(cudaEventCreate(&a));
    CK(cudaEventCreate(&b));
    std::vector<float> v;
    for (int i = 0; i < REPS + 3; i++) {
        CK(cudaEventRecord(a, st));
        f();
        CK(cudaEventRecord(b, st));
        CK(cudaEventSynchronize(b));
        float ms = 0;
        CK(cudaEventElapsedTime(&ms, a, b));
        if (i >= 3)
            v.push_back(ms);
    }
    std::sort(v.begin(), v.end());
    cudaEventDestroy(a);
    cudaEventDestroy(b);
    return v[v.size() / 2];
}

/* Prints one result line: name, time, GB/s of `bytes`, ratio to the copy. */
static void line(const char *name, double ms, size_t bytes, double copy_ms)
{
    printf("| %-44s | %9.3f | %8.1f | %5.2fx |\n", name, ms, bytes / ms / 1e6, copy_ms / ms);
}

int main(void)
{
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess || n == 0) {
        printf("no CUDA device: skipped\n");
        return 77;
    }
    cudaDeviceProp prop;
    CK(cudaGetDeviceProperties(&prop, 0));
    vkv_shape sh;
    vkvt_shape(&sh, L_, H_, D_, T_, 0, T_, VKV_DTYPE_F16);
    vkv_codec_spec spec;
    vkv_codec_spec_default(&spec);
    char sname[128];
    vkv_codec_spec_format(&spec, sname, sizeof sname);
    size_t bsz;
    VK(vkv_codec_encoded_size(&sh, &spec, &bsz));
    const size_t row = (size_t)H_ * D_, tens = (size_t)T_ * row, fp = 2 * L_ * tens * 2;
    uint16_t *h = (uint16_t *)malloc(fp), *src, *dst, *cache;
    uint8_t *blk;
    vkvt_fill(h, fp / 2, D_, VKV_DTYPE_F16, 1);
    cudaStream_t st;
    CK(cudaStreamCreate(&st));
    const uint32_t used = (T_ + PS_ - 1) / PS_, np = 2 * used;
    const size_t per = (size_t)np * PS_ * row;
    CK(cudaMalloc((void **)&src, fp));
    CK(cudaMalloc((void **)&dst, fp));
    CK(cudaMalloc((void **)&cache, 2 * L_ * per * 2));
    CK(cudaMalloc((void **)&blk, bsz));
    CK(cudaMemcpy(src, h, fp, cudaMemcpyHostToDevice));
    const void *sk[L_], *sv[L_];
    void *dk[L_], *dv[L_], *ck[L_], *cv[L_];
    for (int l = 0; l < L_; l++) {
        sk[l] = src + l * tens;
        sv[l] = src + (L_ + l) * tens;
        dk[l] = dst + l * tens;
        dv[l] = dst + (L_ + l) * tens;
        ck[l] = cache + l * per;
        cv[l] = cache + (L_ + l) * per;
    }
    vkv_kv_src s = {sk, sv, row, D_};
    VK(vkv_cuda_encode(&sh, &spec, &s, blk, bsz, 0, st));
    vkv_block_header hdr;
    CK(cudaMemcpy(&hdr, blk, sizeof hdr, cudaMemcpyDeviceToHost));
    vkv_kv_dst d = {dk, dv, row, D_, vkv_geometry_of(&sh), NULL};
    int32_t table[(T_ + PS_ - 1) / PS_];
    for (uint32_t i = 0; i < used; i++)
        table[i] = (int32_t)(np - 1 - 2 * i);
    vkv_paged_dst pd = {ck, cv, np, PS_, table, used, 0, 0, 0, 0, 0, vkv_geometry_of(&sh), NULL};

    double copy =
        time_ms(st, [&] { CK(cudaMemcpyAsync(dst, src, fp, cudaMemcpyDeviceToDevice, st)); });
    double copy_blk =
        time_ms(st, [&] { CK(cudaMemcpyAsync(dst, blk, bsz, cudaMemcpyDeviceToDevice, st)); });
    double dec = time_ms(st, [&] { VK(vkv_cuda_decode(blk, bsz, &hdr, 0, &d, st)); });
    double decp = time_ms(st, [&] { VK(vkv_cuda_decode_paged(blk, bsz, &hdr, 0, &pd, st)); });
    double enca =
        time_ms(st, [&] { VK(vkv_cuda_encode(&sh, &spec, &s, blk, bsz, VKV_CUDA_ASYNC, st)); });
    double encs = time_ms(st, [&] { VK(vkv_cuda_encode(&sh, &spec, &s, blk, bsz, 0, st)); });

    printf("GPU: %s (sm_%d%d, %d SMs)\n", prop.name, prop.major, prop.minor,
           prop.multiProcessorCount);
    printf("chunk: %u tokens x %u layers x %u heads x %u (fp16, K+V = %.1f MB); codec %s; "
           "block %zu bytes (%.3f bits/element)\n",
           T_, L_, H_, D_, fp / 1e6, sname, bsz, vkv_codec_bits_per_element(&sh, bsz));
    printf(
        "\n| operation                                    |   ms (med) |     GB/s | vs copy |\n");
    printf("|----------------------------------------------|-----------:|---------:|--------:|\n");
    line("cudaMemcpy D2D of the fp16 KV (yardstick)", copy, fp, copy);
    line("decode -> dense fp16 (bytes written)", dec, fp, copy);
    line("decode -> paged fp16 (bytes written)", decp, fp, copy);
    line("encode, ASYNC (kernels; fp16 bytes read)", enca, fp, copy);
    line("encode + D2H + host XXH3 (fp16 bytes read)", encs, fp, copy);
    line("cudaMemcpy D2D of the block bytes", copy_blk, bsz, copy_blk);
    cudaFree(src);
    cudaFree(dst);
    cudaFree(cache);
    cudaFree(blk);
    cudaStreamDestroy(st);
    free(h);
    return 0;
}
