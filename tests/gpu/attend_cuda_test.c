/*
 * tests/gpu/attend_cuda_test.c - vkv_cuda_attend against the CPU reference
 * (vkv_attend, scalar): every rule, GQA, masks, raw tokens, dtypes; out
 * and lse within GPU_TOL (below). Exits 77 (skipped) without a device.
 *
 * GPU_TOL: both sides evaluate the same fp32 expressions in different
 * orders, so they differ by a few roundings per term of the longest chain
 * (hd channels + T tokens): |d out| < 8 * 2^-24 * (hd + T) * (vmax + 1e-3)
 * with vmax the largest |decoded value| of the head, |d lse| < the same
 * factor times (|lse| + 1).
 */
#include <cuda_runtime.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gpu_util.h"
#include "vkv/attend_cuda.h"
#include "vkv/codec_cuda.h"

#define GPU_TOL (8.0 / 16777216.0)

static int g_fail, g_cases;

/* One case: CPU-encoded block, copied to the device, attended on both. */
static void run_case(const vkv_shape *sh, const char *spec_str, uint32_t gq, uint32_t nq,
                     uint8_t qdt, int masked, uint64_t seed)
{
    vkv_codec_spec spec;
    VK(vkv_codec_spec_parse(spec_str, &spec));
    size_t size = 0, le = (size_t)sh->tokens * sh->kv_heads * sh->head_dim;
    VK(vkv_codec_encoded_size(sh, &spec, &size));
    uint16_t **k = calloc(sh->layers, sizeof(*k)), **v = calloc(sh->layers, sizeof(*v));
    for (uint32_t l = 0; l < sh->layers; l++) {
        k[l] = malloc(le * 2);
        v[l] = malloc(le * 2);
        vkvt_fill(k[l], le, sh->head_dim, sh->dtype, seed + 2 * l);
        vkvt_fill(v[l], le, sh->head_dim, sh->dtype, seed + 2 * l + 1);
    }
    uint8_t *blk = malloc(size);
    vkv_kv_src src = {(const void *const *)k, (const void *const *)v,
                      (size_t)sh->kv_heads * sh->head_dim, sh->head_dim};
    VK(vkv_encode(sh, &spec, &src, blk, size));
    vkv_kv_dst dst = {(void *const *)k, (void *const *)v,    (size_t)sh->kv_heads * sh->head_dim,
                      sh->head_dim,     vkv_geometry_of(sh), NULL};
    VK(vkv_decode(blk, size, 0, &dst)); /* k/v now hold the decoded values */
    double vmax = 0;
    for (uint32_t l = 0; l < sh->layers; l++)
        for (size_t i = 0; i < le; i++)
            vmax = fmax(vmax, fabs(vkvk_to_f32(v[l][i], sh->dtype)));
    const uint32_t nh = sh->kv_heads * gq, hd = sh->head_dim, rows = nq * nh;
    const size_t qn = (size_t)rows * hd, esz = qdt == VKV_ATTEND_F32 ? 4 : 2;
    uint8_t *q = malloc(qn * esz), *mask = malloc((size_t)nq * sh->tokens);
    uint64_t s = seed ^ 0x5555u;
    for (size_t i = 0; i < qn; i++) {
        float x = vkvt_normal(&s, 1.0f);
        if (qdt == VKV_ATTEND_F32) {
            memcpy(q + 4 * i, &x, 4);
        } else {
            uint16_t hb = vkvk_from_f32(x, qdt);
            memcpy(q + 2 * i, &hb, 2);
        }
    }
    for (size_t i = 0; i < (size_t)nq * sh->tokens; i++)
        mask[i] = (vkvt_rand(&s) & 3u) != 0;
    if (masked && nq > 1)
        memset(mask + sh->tokens, 0, sh->tokens); /* query 1 sees nothing */
    float *out = malloc(qn * 4), *lse = malloc(rows * 4), *gout = malloc(qn * 4),
          *glse = malloc(rows * 4);
    void *dblk, *dq, *dmask, *dout, *dlse;
    CK(cudaMalloc(&dblk, size));
    CK(cudaMalloc(&dq, qn * esz));
    CK(cudaMalloc(&dmask, (size_t)nq * sh->tokens));
    CK(cudaMalloc(&dout, qn * 4));
    CK(cudaMalloc(&dlse, rows * 4));
    CK(cudaMemcpy(dblk, blk, size, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(dq, q, qn * esz, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(dmask, mask, (size_t)nq * sh->tokens, cudaMemcpyHostToDevice));
    VK(vkv_codec_set_impl(VKV_IMPL_SCALAR));
    for (uint32_t l = 0; l < sh->layers; l++) {
        vkv_attend_args a;
        memset(&a, 0, sizeof(a));
        a.kv_heads = sh->kv_heads;
        a.head_dim = hd;
        a.layer = l;
        a.n_q = nq;
        a.n_heads = nh;
        a.q_dtype = qdt;
        a.q = q;
        a.scale = 1.0f / sqrtf((float)hd);
        a.mask = masked ? mask : NULL;
        a.mask_tokens = masked ? sh->tokens : 0;
        a.out = out;
        a.lse = lse;
        VK(vkv_attend(blk, size, 0, &a));
        a.q = dq;
        a.mask = masked ? dmask : NULL;
        a.out = dout;
        a.lse = dlse;
        VK(vkv_cuda_attend(dblk, size, NULL, 0, &a, NULL));
        CK(cudaMemcpy(gout, dout, qn * 4, cudaMemcpyDeviceToHost));
        CK(cudaMemcpy(glse, dlse, rows * 4, cudaMemcpyDeviceToHost));
        const double f = GPU_TOL * (hd + sh->tokens);
        int bad = 0;
        for (uint32_t r = 0; r < rows && !bad; r++) {
            if (lse[r] == -INFINITY) {
                bad = glse[r] != -INFINITY;
                continue;
            }
            bad = !(fabs(glse[r] - lse[r]) < f * (fabs(lse[r]) + 1.0));
            for (uint32_t d = 0; d < hd && !bad; d++)
                bad =
                    !(fabs(gout[(size_t)r * hd + d] - out[(size_t)r * hd + d]) < f * (vmax + 1e-3));
            if (bad)
                fprintf(stderr, "FAIL %s L%u H%u D%u T%u gq%u layer %u row %u: lse %.9g vs %.9g\n",
                        spec_str, sh->layers, sh->kv_heads, hd, sh->tokens, gq, l, r,
                        (double)glse[r], (double)lse[r]);
        }
        g_fail += bad;
        g_cases++;
    }
    CK(cudaFree(dblk));
    CK(cudaFree(dq));
    CK(cudaFree(dmask));
    CK(cudaFree(dout));
    CK(cudaFree(dlse));
    for (uint32_t l = 0; l < sh->layers; l++) {
        free(k[l]);
        free(v[l]);
    }
    free(k);
    free(v);
    free(blk);
    free(q);
    free(mask);
    free(out);
    free(lse);
    free(gout);
    free(glse);
}

int main(void)
{
    if (!vkv_cuda_available()) {
        printf("no CUDA device: skipped\n");
        return 77;
    }
    static const char *const specs[] = {
        "rotsign",
        "rotsign:kmode=channel,kbits=16,vmode=token,vbits=16",
        "minmax",
        "quantile:kmode=token,kg=8,vmode=token,vg=16",
        "lloyd:kmode=token,kg=32,vmode=channel,vg=7,iters=2",
    };
    for (size_t i = 0; i < sizeof(specs) / sizeof(specs[0]); i++) {
        vkv_shape a = {2, 2, 64, 45, VKV_DTYPE_F16, 2, {{0, 20}, {25, 18}}};
        vkv_shape b = {1, 4, 128, 576, VKV_DTYPE_BF16, 1, {{0, 576}}};
        vkv_shape c = {1, 2, 128, 24, VKV_DTYPE_F16, 0, {{0, 0}}};
        run_case(&a, specs[i], 2, 3, VKV_ATTEND_F32, 1, 10 + i);
        run_case(&b, specs[i], 7, 1, VKV_ATTEND_BF16, 0, 20 + i);
        run_case(&c, specs[i], 1, 2, VKV_ATTEND_F16, 1, 30 + i);
    }
    printf("vkv_cuda_attend vs CPU reference: %d cases, %d failed\n", g_cases, g_fail);
    return g_fail ? 1 : 0;
}
