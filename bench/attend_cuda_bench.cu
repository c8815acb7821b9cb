/*
 * bench/attend_cuda_bench.cu - vkv_cuda_attend (attention straight over a
 * 1-bit block in device memory) beside, in the same run: a fp16
 * decode-attention kernel over the same K/V already decoded to fp16 in
 * device memory (same one-block-per-query-row structure: one thread per
 * token for the scores, one per channel for the values; NOT a tuned
 * FlashDecoding kernel, so its ratio is an upper bound of the gain over
 * such kernels), and a device-to-device copy of the block's bytes (the
 * bandwidth floor). One decode step: one query per head, every layer, a
 * LLaVA-1.5-7B-shaped image (576 tokens, 32 layers, 32 heads, 128, fp16,
 * default codec). CUDA events, median of 20 after 3 warm-ups. Exits 77
 * without a device. Run by tests/gpu/run.sh.
 */
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <algorithm>
#include <vector>

#include "gpu_util.h"
#include "vkv/attend_cuda.h"
#include "vkv/codec_cuda.h"

#define L_   32
#define H_   32
#define D_   128
#define T_   576
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

/* fp16 attention of one query row per block over T_ tokens of K/V
 * [T_][H_][D_] (head = blockIdx.x); sc: [H_][T_] scratch. */
__global__ static void f16_attend(const __half *K, const __half *V, const float *q, float scale,
                                  float *sc, float *out, float *lse)
{
    __shared__ float qs[D_], red[33];
    const unsigned h = blockIdx.x;
    for (unsigned d = threadIdx.x; d < D_; d += blockDim.x)
        qs[d] = q[h * D_ + d] * scale;
    __syncthreads();
    float *s = sc + (size_t)h * T_, mx = -INFINITY;
    for (unsigned t = threadIdx.x; t < T_; t += blockDim.x) {
        const __half *k = K + ((size_t)t * H_ + h) * D_;
        float a = 0.0f;
        for (unsigned d = 0; d < D_; d++)
            a += qs[d] * __half2float(k[d]);
        s[t] = a;
        mx = fmaxf(mx, a);
    }
    for (int o = 16; o > 0; o >>= 1)
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, o));
    if ((threadIdx.x & 31u) == 0)
        red[threadIdx.x >> 5] = mx;
    __syncthreads();
    if (threadIdx.x == 0) {
        float m = red[0];
        for (unsigned w = 1; w < blockDim.x / 32u; w++)
            m = fmaxf(m, red[w]);
        red[32] = m;
    }
    __syncthreads();
    mx = red[32];
    float part = 0.0f;
    for (unsigned t = threadIdx.x; t < T_; t += blockDim.x) {
        s[t] = expf(s[t] - mx);
        part += s[t];
    }
    for (int o = 16; o > 0; o >>= 1)
        part += __shfl_xor_sync(0xffffffffu, part, o);
    __syncthreads();
    if ((threadIdx.x & 31u) == 0)
        red[threadIdx.x >> 5] = part;
    __syncthreads();
    if (threadIdx.x == 0) {
        float m = 0.0f;
        for (unsigned w = 0; w < blockDim.x / 32u; w++)
            m += red[w];
        red[32] = m;
    }
    __syncthreads();
    const float sum = red[32];
    for (unsigned d = threadIdx.x; d < D_; d += blockDim.x) {
        float a = 0.0f;
        for (unsigned t = 0; t < T_; t++)
            a += s[t] * __half2float(V[((size_t)t * H_ + h) * D_ + d]);
        out[h * D_ + d] = a / sum;
    }
    if (threadIdx.x == 0)
        lse[h] = mx + logf(sum);
}

int main(void)
{
    if (!vkv_cuda_available()) {
        printf("no CUDA device: skipped\n");
        return 77;
    }
    vkv_shape sh;
    memset(&sh, 0, sizeof(sh));
    sh.layers = L_;
    sh.kv_heads = H_;
    sh.head_dim = D_;
    sh.tokens = T_;
    sh.dtype = VKV_DTYPE_F16;
    sh.n_ranges = 1;
    sh.ranges[0].start = 0;
    sh.ranges[0].len = T_;
    vkv_codec_spec spec;
    vkv_codec_spec_default(&spec);
    size_t size = 0, le = (size_t)T_ * H_ * D_;
    VK(vkv_codec_encoded_size(&sh, &spec, &size));
    std::vector<uint16_t> hk(le * L_), hv(le * L_);
    std::vector<const void *> kp(L_), vp(L_);
    for (int l = 0; l < L_; l++) {
        vkvt_fill(hk.data() + l * le, le, D_, VKV_DTYPE_F16, 11 + 2 * l);
        vkvt_fill(hv.data() + l * le, le, D_, VKV_DTYPE_F16, 12 + 2 * l);
        kp[l] = hk.data() + l * le;
        vp[l] = hv.data() + l * le;
    }
    std::vector<uint8_t> blk(size);
    vkv_kv_src src = {kp.data(), vp.data(), (size_t)H_ * D_, D_};
    VK(vkv_encode(&sh, &spec, &src, blk.data(), size));
    vkv_block_header hdr;
    VK(vkv_block_check(blk.data(), size, 0, &hdr));
    cudaStream_t st;
    CK(cudaStreamCreate(&st));
    void *dblk, *dblk2, *dk, *dv, *dq, *dout, *dlse, *dsc;
    CK(cudaMalloc(&dblk, size));
    CK(cudaMalloc(&dblk2, size));
    CK(cudaMalloc(&dk, le * L_ * 2));
    CK(cudaMalloc(&dv, le * L_ * 2));
    CK(cudaMalloc(&dq, H_ * D_ * 4));
    CK(cudaMalloc(&dout, (size_t)L_ * H_ * D_ * 4));
    CK(cudaMalloc(&dlse, (size_t)L_ * H_ * 4));
    CK(cudaMalloc(&dsc, (size_t)H_ * T_ * 4));
    CK(cudaMemcpy(dblk, blk.data(), size, cudaMemcpyHostToDevice));
    std::vector<float> q(H_ * D_);
    uint64_t s = 7;
    for (auto &x : q)
        x = vkvt_normal(&s, 1.0f);
    CK(cudaMemcpy(dq, q.data(), q.size() * 4, cudaMemcpyHostToDevice));
    /* the fp16 K/V the yardstick reads: the block decoded on the device */
    std::vector<void *> dkl(L_), dvl(L_);
    for (int l = 0; l < L_; l++) {
        dkl[l] = (uint16_t *)dk + l * le;
        dvl[l] = (uint16_t *)dv + l * le;
    }
    vkv_kv_dst dst = {dkl.data(), dvl.data(), (size_t)H_ * D_, D_, vkv_geometry_of(&sh), NULL};
    VK(vkv_cuda_decode(dblk, size, &hdr, 0, &dst, st));
    CK(cudaStreamSynchronize(st));
    const float scale = 1.0f / sqrtf((float)D_);
    double t_copy =
        time_ms(st, [&] { CK(cudaMemcpyAsync(dblk2, dblk, size, cudaMemcpyDeviceToDevice, st)); });
    double t_f16 = time_ms(st, [&] {
        for (int l = 0; l < L_; l++)
            f16_attend<<<H_, 128, 0, st>>>(
                (const __half *)dkl[l], (const __half *)dvl[l], (const float *)dq, scale,
                (float *)dsc, (float *)dout + (size_t)l * H_ * D_, (float *)dlse + (size_t)l * H_);
        CK(cudaGetLastError());
    });
    double t_dec = time_ms(st, [&] {
        VK(vkv_cuda_decode(dblk, size, &hdr, 0, &dst, st));
        for (int l = 0; l < L_; l++)
            f16_attend<<<H_, 128, 0, st>>>(
                (const __half *)dkl[l], (const __half *)dvl[l], (const float *)dq, scale,
                (float *)dsc, (float *)dout + (size_t)l * H_ * D_, (float *)dlse + (size_t)l * H_);
        CK(cudaGetLastError());
    });
    std::vector<float> o16((size_t)L_ * H_ * D_), ov(o16.size());
    CK(cudaMemcpy(o16.data(), dout, o16.size() * 4, cudaMemcpyDeviceToHost));
    double t_vkv = time_ms(st, [&] {
        for (int l = 0; l < L_; l++) {
            vkv_attend_args a;
            memset(&a, 0, sizeof(a));
            a.kv_heads = H_;
            a.head_dim = D_;
            a.layers = L_;
            a.layer = (uint32_t)l;
            a.n_q = 1;
            a.n_heads = H_;
            a.q_dtype = VKV_ATTEND_F32;
            a.q = dq;
            a.scale = scale;
            a.out = (float *)dout + (size_t)l * H_ * D_;
            a.lse = (float *)dlse + (size_t)l * H_;
            VK(vkv_cuda_attend(dblk, size, &hdr, 0, &a, st));
        }
    });
    CK(cudaMemcpy(ov.data(), dout, ov.size() * 4, cudaMemcpyDeviceToHost));
    double maxd = 0;
    for (size_t i = 0; i < ov.size(); i++)
        maxd = fmax(maxd, fabs(ov[i] - o16[i]));
    const double f16_bytes = 2.0 * L_ * T_ * H_ * D_ * 2.0;
    printf("vkv_cuda_attend, one decode step (1 query per head, %d layers, %d heads, %d tokens, "
           "head_dim %d), median of %d\n",
           L_, H_, T_, D_, REPS);
    printf("  D2D copy of the block (%.2f MB)      %8.3f ms  %7.1f GB/s\n", size / 1e6, t_copy,
           size / t_copy / 1e6);
    printf("  fp16 attention over decoded K/V    %8.3f ms  %7.1f GB/s of fp16 K/V\n", t_f16,
           f16_bytes / t_f16 / 1e6);
    printf("  decode to fp16 + fp16 attention    %8.3f ms\n", t_dec);
    printf("  vkv_cuda_attend                    %8.3f ms  %7.1f GB/s of block  %5.2fx vs fp16 "
           "attention, %5.2fx vs decode+fp16, %5.2fx the copy's time\n",
           t_vkv, size / t_vkv / 1e6, t_f16 / t_vkv, t_dec / t_vkv, t_vkv / t_copy);
    printf("  max |out diff| vkv_cuda_attend vs decode+fp16: %.3g\n", maxd);
    CK(cudaFree(dblk));
    CK(cudaFree(dblk2));
    CK(cudaFree(dk));
    CK(cudaFree(dv));
    CK(cudaFree(dq));
    CK(cudaFree(dout));
    CK(cudaFree(dlse));
    CK(cudaFree(dsc));
    CK(cudaStreamDestroy(st));
    return 0;
}
