/*
 * tests/gpu/codec_cuda_test.c - the CUDA codec against the CPU reference:
 * for many shapes, dtypes and specs, blocks encoded on the GPU must equal
 * vkv_encode's (scalar) byte for byte, and GPU decodes (dense and paged)
 * must equal vkv_decode / vkv_decode_paged element for element. Exits 77
 * (skipped) when no CUDA device is present.
 */
#include <cuda_runtime.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gpu_util.h"
#include "vkv/codec_cuda.h"

static int g_fail, g_cases;

/* Reports a failed case and counts it. */
static void fail(const char *what, const char *spec, const vkv_shape *sh, long at)
{
    g_fail++;
    fprintf(stderr, "FAIL %s spec=%s L%u H%u D%u T%u dtype=%u ranges=%u at %ld\n", what, spec,
            sh->layers, sh->kv_heads, sh->head_dim, sh->tokens, sh->dtype, sh->n_ranges, at);
}

/* Index of the first differing byte of a and b (n bytes), or -1. */
static long first_diff(const void *a, const void *b, size_t n)
{
    const uint8_t *x = a, *y = b;
    for (size_t i = 0; i < n; i++)
        if (x[i] != y[i])
            return (long)i;
    return -1;
}

/* One case: CPU encode, GPU encode (rotsign) and GPU decodes vs CPU. */
static void run_case(const vkv_shape *sh, const char *spec_str, uint64_t seed)
{
    vkv_codec_spec spec;
    size_t bsz;
    if (vkv_codec_spec_parse(spec_str, &spec) != VKV_OK) {
        fail("spec", spec_str, sh, 0);
        return;
    }
    if (vkv_codec_encoded_size(sh, &spec, &bsz) != VKV_OK)
        return; /* shape not valid for this rule (e.g. rotsign, head_dim 72) */
    g_cases++;
    const uint32_t L = sh->layers, H = sh->kv_heads, D = sh->head_dim, T = sh->tokens;
    const size_t hs = D + 8, ts = (size_t)H * hs + 16; /* padded source strides */
    const size_t tens = (size_t)T * ts, row = (size_t)H * D;
    uint16_t *src = calloc(2 * L * tens, 2);
    const void **hk = calloc(L, sizeof *hk), **hv = calloc(L, sizeof *hv);
    const void **dk = calloc(L, sizeof *dk), **dv = calloc(L, sizeof *dv);
    uint8_t *blk = malloc(bsz), *gblk = malloc(bsz);
    uint16_t *dsrc;
    uint8_t *dblk;
    CK(cudaMalloc((void **)&dsrc, 2 * L * tens * 2));
    CK(cudaMalloc((void **)&dblk, bsz));
    for (uint32_t l = 0; l < 2 * L; l++)
        for (uint32_t t = 0; t < T; t++)
            for (uint32_t h = 0; h < H; h++)
                vkvt_fill(src + l * tens + t * ts + h * hs, D, D, sh->dtype,
                          seed + ((uint64_t)l * T + t) * H + h);
    for (uint32_t l = 0; l < L; l++) {
        hk[l] = src + l * tens;
        hv[l] = src + (L + l) * tens;
        dk[l] = dsrc + l * tens;
        dv[l] = dsrc + (L + l) * tens;
    }
    CK(cudaMemcpy(dsrc, src, 2 * L * tens * 2, cudaMemcpyHostToDevice));
    vkv_kv_src hsrc = {hk, hv, ts, hs}, dsrcs = {dk, dv, ts, hs};
    if (vkv_encode(sh, &spec, &hsrc, blk, bsz) != VKV_OK) {
        fail("cpu encode", spec_str, sh, 0);
        goto out;
    }
    /* GPU encode (rotsign): byte-identical block */
    if (spec.rule == VKV_RULE_ROTSIGN) {
        CK(cudaMemset(dblk, 0x5a, bsz));
        int rc = vkv_cuda_encode(sh, &spec, &dsrcs, dblk, bsz, 0, NULL);
        CK(cudaMemcpy(gblk, dblk, bsz, cudaMemcpyDeviceToHost));
        long at = rc == VKV_OK ? first_diff(blk, gblk, bsz) : -2;
        if (at != -1)
            fail("gpu encode != cpu block", spec_str, sh, at);
        /* the ASYNC path, sealed afterwards, gives the same bytes */
        CK(cudaMemset(dblk, 0x33, bsz));
        rc = vkv_cuda_encode(sh, &spec, &dsrcs, dblk, bsz, VKV_CUDA_ASYNC, NULL);
        if (rc == VKV_OK)
            rc = vkv_cuda_block_seal(dblk, bsz, NULL);
        CK(cudaMemcpy(gblk, dblk, bsz, cudaMemcpyDeviceToHost));
        at = rc == VKV_OK ? first_diff(blk, gblk, bsz) : -2;
        if (at != -1)
            fail("gpu async encode + seal != cpu block", spec_str, sh, at);
    } else if (vkv_cuda_encode(sh, &spec, &dsrcs, dblk, bsz, 0, NULL) != VKV_ENOTSUP) {
        fail("level-rule gpu encode should be ENOTSUP", spec_str, sh, 0);
    }
    CK(cudaMemcpy(dblk, blk, bsz, cudaMemcpyHostToDevice));

    /* dense decode */
    {
        size_t n = 2 * L * (size_t)T * row;
        uint16_t *want = malloc(n * 2), *got = malloc(n * 2), *dout;
        void **ok = calloc(L, sizeof *ok), **ov = calloc(L, sizeof *ov);
        void **gk = calloc(L, sizeof *gk), **gv = calloc(L, sizeof *gv);
        CK(cudaMalloc((void **)&dout, n * 2));
        CK(cudaMemset(dout, 0, n * 2));
        memset(want, 0, n * 2);
        for (uint32_t l = 0; l < L; l++) {
            ok[l] = want + l * T * row;
            ov[l] = want + (L + l) * T * row;
            gk[l] = dout + l * T * row;
            gv[l] = dout + (L + l) * T * row;
        }
        vkv_kv_dst hd_ = {ok, ov, row, D, vkv_geometry_of(sh), NULL},
                   gd = {gk, gv, row, D, vkv_geometry_of(sh), NULL};
        int rc1 = vkv_decode(blk, bsz, VKV_DECODE_VERIFY, &hd_);
        int rc2 = vkv_cuda_decode(dblk, bsz, NULL, VKV_DECODE_VERIFY, &gd, NULL);
        CK(cudaDeviceSynchronize());
        CK(cudaMemcpy(got, dout, n * 2, cudaMemcpyDeviceToHost));
        long at = rc1 == VKV_OK && rc2 == VKV_OK ? first_diff(want, got, n * 2) : -2;
        if (at != -1)
            fail("dense decode", spec_str, sh, at);
        cudaFree(dout);
        free(want), free(got), free(ok), free(ov), free(gk), free(gv);
    }
    /* paged decode through a shuffled block table, first_pos not page aligned */
    {
        const uint32_t ps = 16, first = 5, used = (first + T + ps - 1) / ps;
        const uint32_t np = used + 3;
        size_t per = (size_t)np * ps * row, n = 2 * L * per;
        int32_t *table = malloc(used * sizeof *table);
        uint64_t rs = seed | 1u;
        for (uint32_t i = 0; i < used; i++)
            table[i] = (int32_t)i;
        for (uint32_t i = used; i > 1; i--) { /* Fisher-Yates over [0, np) ids */
            uint32_t j = (uint32_t)(vkvt_rand(&rs) % i);
            int32_t x = table[i - 1];
            table[i - 1] = table[j];
            table[j] = x;
        }
        for (uint32_t i = 0; i < used; i++)
            table[i] = (table[i] + 2) % (int32_t)np;
        uint16_t *want = malloc(n * 2), *got = malloc(n * 2), *dout;
        void **ok = calloc(L, sizeof *ok), **ov = calloc(L, sizeof *ov);
        void **gk = calloc(L, sizeof *gk), **gv = calloc(L, sizeof *gv);
        for (size_t i = 0; i < n; i++)
            want[i] = 0xaaaa;
        CK(cudaMalloc((void **)&dout, n * 2));
        CK(cudaMemcpy(dout, want, n * 2, cudaMemcpyHostToDevice));
        for (uint32_t l = 0; l < L; l++) {
            ok[l] = want + l * per;
            ov[l] = want + (L + l) * per;
            gk[l] = dout + l * per;
            gv[l] = dout + (L + l) * per;
        }
        vkv_paged_dst hp = {ok,  ov, np, ps, table, used, first, 0, 0, 0, 0, vkv_geometry_of(sh),
                            NULL};
        vkv_paged_dst gp = {gk,  gv, np, ps, table, used, first, 0, 0, 0, 0, vkv_geometry_of(sh),
                            NULL};
        vkv_block_header hdr;
        int rc1 = vkv_decode_paged(blk, bsz, 0, &hp);
        int rc2 = vkv_block_check(blk, bsz, 0, &hdr);
        if (rc2 == VKV_OK)
            rc2 = vkv_cuda_decode_paged(dblk, bsz, &hdr, 0, &gp, NULL);
        CK(cudaDeviceSynchronize());
        CK(cudaMemcpy(got, dout, n * 2, cudaMemcpyDeviceToHost));
        long at = rc1 == VKV_OK && rc2 == VKV_OK ? first_diff(want, got, n * 2) : -2;
        if (at != -1)
            fail("paged decode", spec_str, sh, at);
        /* the same in vLLM's HND order ([page][head][slot][dim] strides), the
         * first 7 tokens skipped (a prefix the caller already holds) */
        for (size_t i = 0; i < n; i++)
            want[i] = 0xaaaa;
        CK(cudaMemcpy(dout, want, n * 2, cudaMemcpyHostToDevice));
        const uint32_t skip = T > 7 ? 7 : T;
        vkv_paged_dst hst = {ok,    ov,
                             np,    ps,
                             table, used,
                             first, (size_t)ps * row,
                             D,     (size_t)ps * D,
                             skip,  vkv_geometry_of(sh),
                             NULL};
        vkv_paged_dst gst = {gk,    gv,
                             np,    ps,
                             table, used,
                             first, (size_t)ps * row,
                             D,     (size_t)ps * D,
                             skip,  vkv_geometry_of(sh),
                             NULL};
        rc1 = vkv_decode_paged(blk, bsz, 0, &hst);
        rc2 = vkv_cuda_decode_paged(dblk, bsz, &hdr, 0, &gst, NULL);
        CK(cudaDeviceSynchronize());
        CK(cudaMemcpy(got, dout, n * 2, cudaMemcpyDeviceToHost));
        at = rc1 == VKV_OK && rc2 == VKV_OK ? first_diff(want, got, n * 2) : -2;
        if (at != -1)
            fail("paged decode (HND strides, skip)", spec_str, sh, at);
        /* a bad page id is rejected before anything is written */
        table[used - 1] = (int32_t)np;
        if (vkv_cuda_decode_paged(dblk, bsz, &hdr, 0, &gp, NULL) != VKV_EINVAL)
            fail("paged decode accepted a bad page id", spec_str, sh, 0);
        cudaFree(dout);
        free(table), free(want), free(got), free(ok), free(ov), free(gk), free(gv);
    }
out:
    cudaFree(dsrc);
    cudaFree(dblk);
    free(src), free(hk), free(hv), free(dk), free(dv), free(blk), free(gblk);
}

/* A NaN in a visual token must make the GPU encoder fail like the CPU one. */
static void nonfinite_case(void)
{
    vkv_shape sh;
    vkv_codec_spec spec;
    size_t bsz, n;
    vkvt_shape(&sh, 1, 2, 64, 16, 2, 10, VKV_DTYPE_F16);
    vkv_codec_spec_default(&spec);
    vkv_codec_encoded_size(&sh, &spec, &bsz);
    n = (size_t)sh.tokens * 2 * 64;
    for (int s = 0; s < 2; s++) {
        uint16_t *h = calloc(2 * n, 2), *d;
        uint8_t *blk;
        vkvt_fill(h, 2 * n, 64, VKV_DTYPE_F16, 7);
        h[s * n + 5 * 128 + 64 + 3] = 0x7e00; /* NaN: token 5, head 1, K or V */
        CK(cudaMalloc((void **)&d, 4 * n));
        CK(cudaMalloc((void **)&blk, bsz));
        CK(cudaMemcpy(d, h, 4 * n, cudaMemcpyHostToDevice));
        const void *k[1] = {d}, *v[1] = {d + n};
        vkv_kv_src src = {k, v, 128, 64};
        if (vkv_cuda_encode(&sh, &spec, &src, blk, bsz, 0, NULL) != VKV_ENONFINITE)
            fail("NaN not reported", "default", &sh, s);
        cudaFree(d);
        cudaFree(blk);
        free(h);
    }
}

int main(void)
{
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess || n == 0) {
        printf("no CUDA device: skipped\n");
        return 77;
    }
    vkv_codec_set_impl(VKV_IMPL_SCALAR); /* the ground truth */
    static const char *const specs[] = {"rotsign",
                                        "rotsign:kbits=16,vbits=16",
                                        "rotsign:iters=2",
                                        "rotsign:kmode=channel,vmode=token,kbits=16,iters=1",
                                        "minmax",
                                        "quantile",
                                        "lloyd",
                                        "minmax:kmode=token,kg=32,vmode=channel,vg=16",
                                        "lloyd:kmode=token,kg=8,vmode=channel,vg=64,iters=4",
                                        "quantile:kmode=channel,kg=7,vmode=token,vg=16"};
    vkv_shape shapes[8];
    int ns = 0;
    vkvt_shape(&shapes[ns++], 2, 2, 64, 40, 4, 30, VKV_DTYPE_F16);
    vkvt_shape(&shapes[ns++], 1, 3, 128, 64, 0, 20, VKV_DTYPE_BF16);
    shapes[ns - 1].n_ranges = 2;
    shapes[ns - 1].ranges[1].start = 30;
    shapes[ns - 1].ranges[1].len = 34;
    vkvt_shape(&shapes[ns++], 2, 1, 8, 17, 0, 17, VKV_DTYPE_F16);
    vkvt_shape(&shapes[ns++], 3, 4, 256, 33, 0, 0, VKV_DTYPE_BF16);
    vkvt_shape(&shapes[ns++], 2, 2, 72, 50, 3, 41, VKV_DTYPE_F16);
    vkvt_shape(&shapes[ns++], 2, 8, 128, 300, 10, 280, VKV_DTYPE_BF16);
    vkvt_shape(&shapes[ns++], 1, 2, 16, 9, 8, 1, VKV_DTYPE_F16);
    vkvt_shape(&shapes[ns++], 2, 32, 128, 576, 0, 576, VKV_DTYPE_F16);
    for (int i = 0; i < ns; i++)
        for (size_t s = 0; s < sizeof specs / sizeof specs[0]; s++)
            run_case(&shapes[i], specs[s], 1000u * (uint64_t)i + s);
    nonfinite_case();
    printf("%d cases, %d failures\n", g_cases, g_fail);
    return g_fail ? 1 : 0;
}
