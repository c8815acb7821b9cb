/*
 * bench/codec_bench.c - single-thread codec throughput beside memcpy.
 *
 * One realistic chunk: 256 tokens x 32 layers x 8 KV heads x head_dim 128,
 * fp16, all tokens visual, K and V with per-channel offsets/scales (keys with
 * outlier channels) plus noise. For every implementation the CPU has and
 * every rule (rule 5, tc: the scalar encoder, or its AVX2 twin for the
 * AVX2 and AVX-512 impls), times quantize (fp16 bytes in per second) and dequantize
 * (fp16 bytes out per second) beside memcpy of the same fp16 bytes, all four
 * interleaved in every repetition (memcpy, encode, decode, paged decode) so
 * that a shared machine's swings hit the codec and its yardstick alike;
 * prints each row's medians and the ratios codec / memcpy. The paged column
 * decodes the same block with vkv_decode_paged into a cache of 16-token
 * pages whose block table lists the pages in reverse order.
 *
 * Usage: vkv_bench_codec [repetitions [spec [impl [layers [clock]]]]]
 * (default 9, every spec below, every implementation, 32 layers, wall
 * clock); a spec string such as "default" or "lloyd" times that spec alone;
 * impl "scalar", "avx2" or "avx512" (or "all") times that implementation
 * alone; layers 1..32 shrinks the chunk, e.g. 1 layer = 1 MB that stays in
 * L2: a compute-bound figure less moved by other tenants' memory traffic than
 * the 33.6 MB default; clock "cpu" times with CLOCK_THREAD_CPUTIME_ID (time
 * the thread was descheduled does not count; memory stalls still do)
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/clock.h"
#include "bench_util.h"
#include "vkv/codec.h"

#define LAYERS 32 /* default and most layers */
#define HEADS  8
#define HDIM   128
#define TOKENS 256
#define PAGE   16 /* tokens per page of the paged-decode destination */

static int use_cpu_clock; /* 1: thread CPU time instead of the monotonic clock */

/* Nanoseconds on the chosen clock. */
static uint64_t bench_now(void)
{
    if (!use_cpu_clock)
        return vkv_now_ns();
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

int main(int argc, char **argv)
{
    int reps = argc > 1 ? atoi(argv[1]) : 9;
    if (reps < 1 || reps > 1000) {
        fprintf(stderr,
                "usage: %s [repetitions 1..1000 [spec|default [scalar|avx2|avx512|all [layers "
                "[wall|cpu]]]]]\n",
                argv[0]);
        return 2;
    }
    const size_t layer_elems = (size_t)TOKENS * HEADS * HDIM;
    /* fewer layers: a cache-resident chunk (1 layer = 1 MB), compute-bound */
    const int layers = argc > 4 ? atoi(argv[4]) : LAYERS;
    if (layers < 1 || layers > LAYERS) {
        fprintf(stderr, "layers must be 1..%d\n", LAYERS);
        return 2;
    }
    use_cpu_clock = argc > 5 && strcmp(argv[5], "cpu") == 0;
    const size_t bytes = 2 * (size_t)layers * layer_elems * 2; /* K and V, fp16 */
    uint16_t *src = malloc(bytes), *copy = malloc(bytes), *out = malloc(bytes);
    uint64_t *t = malloc(sizeof(uint64_t) * 4u * (size_t)reps);
    if (!src || !copy || !out || !t) {
        fprintf(stderr, "out of memory\n");
        return 1;
    }
    uint64_t seed = 12345;
    for (size_t l = 0; l < 2 * (size_t)layers; l++)
        for (size_t h = 0; h < HEADS; h++)
            for (size_t d = 0; d < HDIM; d++) {
                float off = bench_unif(&seed), scale = 0.2f + 0.8f * (bench_unif(&seed) + 1.0f);
                if (l < (size_t)layers && d % 16 == 3)
                    scale *= 10.0f; /* key outlier channels */
                for (size_t tk = 0; tk < TOKENS; tk++)
                    src[l * layer_elems + tk * HEADS * HDIM + h * HDIM + d] =
                        bench_f16(off + scale * bench_unif(&seed));
            }
    const void *kp[LAYERS], *vp[LAYERS];
    void *ko[LAYERS], *vo[LAYERS];
    for (size_t l = 0; l < (size_t)layers; l++) {
        kp[l] = src + l * layer_elems;
        vp[l] = src + ((size_t)layers + l) * layer_elems;
        ko[l] = out + l * layer_elems;
        vo[l] = out + ((size_t)layers + l) * layer_elems;
    }
    vkv_kv_src s = {kp, vp, HEADS * HDIM, HDIM};
    vkv_shape shape = {(uint32_t)layers, HEADS, HDIM, TOKENS, VKV_DTYPE_F16, 1, {{0, TOKENS}}};
    vkv_kv_dst o = {ko, vo, HEADS * HDIM, HDIM, vkv_geometry_of(&shape), NULL};
    /* paged destination: the same buffers as pages of PAGE tokens, reversed */
    int32_t table[TOKENS / PAGE];
    for (int i = 0; i < TOKENS / PAGE; i++)
        table[i] = TOKENS / PAGE - 1 - i;
    vkv_paged_dst po = {ko, vo, TOKENS / PAGE,           PAGE, table, TOKENS / PAGE, 0, 0, 0,
                        0,  0,  vkv_geometry_of(&shape), NULL};

    memcpy(copy, src, bytes); /* fault the yardstick's pages in */
    double mb = (double)bytes / 1e6;
    printf("chunk: %d tokens x %d layers x %d kv heads x %d, fp16, all visual; K+V %.1f MB; "
           "median of %d, memcpy interleaved, %s clock\n",
           TOKENS, layers, HEADS, HDIM, mb, reps, use_cpu_clock ? "thread-CPU" : "wall");

    vkv_codec_spec def;
    vkv_codec_spec_default(&def);
    char dspec[128];
    vkv_codec_spec_format(&def, dspec, sizeof(dspec));
    const char *specs[] = {dspec, "lloyd", "minmax", "quantile", "tc", "tc:kb=2,vb=1.5"};
    size_t nspecs = sizeof(specs) / sizeof(specs[0]);
    if (argc > 2) { /* one spec only */
        specs[0] = strcmp(argv[2], "default") == 0 ? dspec : argv[2];
        nspecs = 1;
    }
    const enum vkv_impl impls[] = {VKV_IMPL_SCALAR, VKV_IMPL_AVX2, VKV_IMPL_AVX512};
    printf("%-7s %-48s %6s %8s %10s %7s %10s %7s %10s %7s\n", "impl", "spec", "bits", "memcpy",
           "quant GB/s", "x memcpy", "deq GB/s", "x memcpy", "paged GB/s", "x memcpy");
    for (size_t ii = 0; ii < 3; ii++) {
        if (argc > 3 && strcmp(argv[3], "all") != 0 &&
            strcmp(argv[3], vkv_codec_impl_name(impls[ii])) != 0)
            continue;
        if (vkv_codec_set_impl(impls[ii]) != VKV_OK)
            continue;
        for (size_t si = 0; si < nspecs; si++) {
            vkv_codec_spec spec;
            if (vkv_codec_spec_parse(specs[si], &spec) != VKV_OK)
                return 1;
            size_t size;
            if (vkv_codec_encoded_size(&shape, &spec, &size) != VKV_OK)
                return 1;
            uint8_t *blk = malloc(size);
            if (blk == NULL)
                return 1;
            /* warm-up, then per repetition: memcpy, encode, decode, paged */
            int rc = vkv_encode(&shape, &spec, &s, blk, size);
            rc = rc ? rc : vkv_decode(blk, size, 0, &o);
            rc = rc ? rc : vkv_decode_paged(blk, size, 0, &po);
            uint64_t *tc = t, *te = t + reps, *td = t + 2 * reps, *tp = t + 3 * reps;
            for (int r = 0; r < reps && rc == VKV_OK; r++) {
                uint64_t t0 = bench_now();
                memcpy(copy, src, bytes);
                bench_keep(copy);
                uint64_t t1 = bench_now();
                rc = vkv_encode(&shape, &spec, &s, blk, size);
                uint64_t t2 = bench_now();
                rc = rc ? rc : vkv_decode(blk, size, 0, &o);
                uint64_t t3 = bench_now();
                rc = rc ? rc : vkv_decode_paged(blk, size, 0, &po);
                uint64_t t4 = bench_now();
                tc[r] = t1 - t0;
                te[r] = t2 - t1;
                td[r] = t3 - t2;
                tp[r] = t4 - t3;
            }
            if (rc != VKV_OK) {
                fprintf(stderr, "codec failed: %s\n", vkv_strerror(rc));
                return 1;
            }
            uint64_t mc = median(tc, reps), me = median(te, reps), md = median(td, reps),
                     mp = median(tp, reps);
            char name[128];
            vkv_codec_spec_format(&spec, name, sizeof(name));
            printf("%-7s %-48s %6.3f %8.2f %10.2f %7.2fx %10.2f %7.2fx %10.2f %7.2fx\n",
                   vkv_codec_impl_name(impls[ii]), name, vkv_codec_bits_per_element(&shape, size),
                   (double)bytes / (double)mc, (double)bytes / (double)me, (double)mc / (double)me,
                   (double)bytes / (double)md, (double)mc / (double)md, (double)bytes / (double)mp,
                   (double)mc / (double)mp);
            free(blk);
        }
    }
    printf("ratios > 1 are faster than memcpy of the same fp16 bytes; goal for the default on "
           "AVX2+: quantize >= 1.0x, dequantize >= 1.0x (issue 14)\n");
    free(src);
    free(copy);
    free(out);
    free(t);
    return 0;
}
