/*
 * tests/gpu/gpu_pair.c - two worker processes against a vkvd on the CUDA
 * backend (run by tests/gpu/run.sh):
 *   gpu_pair put RUNDIR N   encodes N LLaVA-1.5-7B-shaped images (576
 *                           tokens, 32 layers, 32 KV heads, 128, fp16) on
 *                           the GPU straight into the daemon's device slabs
 *   gpu_pair get RUNDIR N   fetches them, decodes each into a paged cache on
 *                           its GPU and checks block bytes and decoded
 *                           elements against the CPU reference
 * Prints one line per phase with the time; exit 0 = bit-identical.
 */
#include <cuda_runtime.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gpu_util.h"
#include "vkv/codec_cuda.h"
#include "vkv/vkv.h"

#define L_  32
#define H_  32
#define D_  128
#define T_  576
#define PS_ 16

/* Monotonic seconds. */
static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Key of image i. */
static vkv_key key_of(uint32_t i)
{
    vkv_key k;
    memset(&k, 0xc5, sizeof k);
    memcpy(k.b, &i, sizeof i);
    return k;
}

/* Host chunk of image i: K layers then V layers, dense [T][H][D]. Caller frees. */
static uint16_t *chunk_of(uint32_t i)
{
    size_t n = (size_t)2 * L_ * T_ * H_ * D_;
    uint16_t *p = malloc(n * 2);
    if (!p)
        exit(1);
    vkvt_fill(p, n, D_, VKV_DTYPE_F16, 77u + i);
    return p;
}

int main(int argc, char **argv)
{
    if (argc != 4 || (strcmp(argv[1], "put") && strcmp(argv[1], "get"))) {
        fprintf(stderr, "usage: gpu_pair put|get RUNDIR N\n");
        return 2;
    }
    int ndev = 0;
    if (cudaGetDeviceCount(&ndev) != cudaSuccess || ndev == 0) {
        printf("no CUDA device: skipped\n");
        return 77;
    }
    const int put = !strcmp(argv[1], "put");
    const uint32_t N = (uint32_t)atoi(argv[3]);
    const size_t row = (size_t)H_ * D_, tens = (size_t)T_ * row;
    vkv_options o = {0};
    o.rundir = argv[2];
    o.ns = "llava-1.5-7b#gpu-pair";
    o.name = put ? "gpu-put" : "gpu-get";
    vkv_client *c;
    VK(vkv_connect(&o, &c));
    vkv_shape sh;
    vkvt_shape(&sh, L_, H_, D_, T_, 0, T_, VKV_DTYPE_F16);
    const vkv_codec_spec *spec = vkv_client_codec(c);
    size_t bsz;
    VK(vkv_codec_encoded_size(&sh, spec, &bsz));
    uint16_t *dsrc;
    CK(cudaMalloc((void **)&dsrc, 2 * L_ * tens * 2));
    const void *dk[L_], *dv[L_];
    for (int l = 0; l < L_; l++) {
        dk[l] = dsrc + l * tens;
        dv[l] = dsrc + (L_ + l) * tens;
    }
    int bad = 0;
    if (put) {
        double enc = 0;
        for (uint32_t i = 0; i < N; i++) {
            uint16_t *h = chunk_of(i);
            CK(cudaMemcpy(dsrc, h, 2 * L_ * tens * 2, cudaMemcpyHostToDevice));
            free(h);
            vkv_key k = key_of(i);
            vkv_put *p;
            VK(vkv_put_begin(c, &k, bsz, &p));
            vkv_kv_src src = {dk, dv, row, D_};
            double t0 = now();
            VK(vkv_cuda_encode(&sh, spec, &src, vkv_put_data(p), bsz, 0, NULL)); /* syncs */
            enc += now() - t0;
            VK(vkv_put_commit(c, p));
        }
        printf("put: %u images of %zu bytes encoded on the GPU into vkvd: %.3f ms/image "
               "(encode + checksum D2H)\n",
               N, bsz, 1e3 * enc / N);
    } else {
        vkv_key *keys = malloc(N * sizeof *keys);
        for (uint32_t i = 0; i < N; i++)
            keys[i] = key_of(i);
        const uint32_t used = (T_ + PS_ - 1) / PS_, np = used * 2;
        const size_t per = (size_t)np * PS_ * row;
        uint16_t *dcache;
        CK(cudaMalloc((void **)&dcache, 2 * L_ * per * 2));
        void *ck[L_], *cv[L_];
        for (int l = 0; l < L_; l++) {
            ck[l] = dcache + l * per;
            cv[l] = dcache + (L_ + l) * per;
        }
        int32_t table[(T_ + PS_ - 1) / PS_];
        for (uint32_t i = 0; i < used; i++)
            table[i] = (int32_t)(np - 1 - 2 * i); /* scattered pages */
        vkv_paged_dst pd = {ck,  cv, np, PS_, table, used, 0, 0, 0, 0, 0, vkv_geometry_of(&sh),
                            NULL};
        size_t hits = 0;
        vkv_fetch *f;
        double t0 = now();
        VK(vkv_lookup(c, keys, N, &hits, NULL));
        VK(vkv_fetch_begin(c, keys, N, &f));
        for (size_t i = 0; i < vkv_fetch_count(f); i++) {
            vkv_view v = vkv_fetch_view(f, i);
            VK(vkv_cuda_decode_paged(v.data, v.size, NULL, 0, &pd, NULL));
            if (i == 0) {
                CK(cudaDeviceSynchronize());
                printf("get: first image (lookup + fetch + GPU decode into the paged cache): %.3f "
                       "ms\n",
                       1e3 * (now() - t0));
            }
        }
        CK(cudaDeviceSynchronize());
        printf("get: %zu of %u images hit, all decoded in %.3f ms\n", vkv_fetch_count(f), N,
               1e3 * (now() - t0));
        if (hits != N || vkv_fetch_count(f) != N)
            bad = 1;
        /* verification against the CPU reference, image by image */
        uint8_t *blk = malloc(bsz), *got = malloc(bsz);
        uint16_t *want = malloc(2 * L_ * per * 2), *gc = malloc(2 * L_ * per * 2);
        vkv_codec_set_impl(VKV_IMPL_SCALAR);
        for (size_t i = 0; i < vkv_fetch_count(f); i++) {
            vkv_view v = vkv_fetch_view(f, i);
            uint16_t *h = chunk_of((uint32_t)i);
            const void *hk[L_], *hv[L_];
            void *wk[L_], *wv[L_];
            for (int l = 0; l < L_; l++) {
                hk[l] = h + l * tens;
                hv[l] = h + (L_ + l) * tens;
                wk[l] = want + l * per;
                wv[l] = want + (L_ + l) * per;
            }
            vkv_kv_src hs = {hk, hv, row, D_};
            VK(vkv_encode(&sh, spec, &hs, blk, bsz));
            uint8_t id[VKV_IDENT_LEN]; /* vkvd holds the block bound to its key */
            VK(vkv_fetch_ident(f, i, id));
            VK(vkv_block_bind(blk, bsz, id));
            CK(cudaMemcpy(got, v.data, bsz, cudaMemcpyDeviceToHost));
            if (v.size < bsz || memcmp(blk, got, bsz) != 0) {
                fprintf(stderr, "image %zu: block in vkvd differs from the CPU encoding\n", i);
                bad = 1;
            }
            memset(want, 0, 2 * L_ * per * 2);
            CK(cudaMemset(dcache, 0, 2 * L_ * per * 2));
            vkv_paged_dst hp = {wk,  wv, np, PS_, table, used, 0, 0, 0, 0, 0, vkv_geometry_of(&sh),
                                NULL};
            VK(vkv_decode_paged(blk, bsz, VKV_DECODE_VERIFY, &hp));
            VK(vkv_cuda_decode_paged(v.data, v.size, NULL, VKV_DECODE_VERIFY, &pd, NULL));
            CK(cudaMemcpy(gc, dcache, 2 * L_ * per * 2, cudaMemcpyDeviceToHost));
            if (memcmp(want, gc, 2 * L_ * per * 2) != 0) {
                fprintf(stderr, "image %zu: GPU paged decode differs from the CPU's\n", i);
                bad = 1;
            }
            free(h);
        }
        printf("get: verification %s\n",
               bad ? "FAILED" : "passed (blocks and paged caches bit-identical)");
        VK(vkv_fetch_release(c, f));
        free(blk), free(got), free(want), free(gc), free(keys);
        cudaFree(dcache);
    }
    cudaFree(dsrc);
    vkv_close(c);
    return bad;
}
