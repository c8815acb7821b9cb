/*
 * bench/attend_bench.c - one decode step of attention over a cached image,
 * single thread: vkv_attend straight over the 1-bit block beside exact fp16
 * attention over the same K/V already in fp16 (an AVX2 + F16C + FMA loop
 * that walks K and V in memory order and reads each row once for all query
 * heads sharing it), and beside
 * what a worker does today (vkv_decode to fp16, then that fp16 attention).
 * All measured in the same run; prints medians and ratios.
 *
 * Shapes (one query per query head, every layer, 576 visual tokens in one
 * block, default codec rotsign):
 *   llava   LLaVA-1.5-7B: 32 layers, 32 KV heads (MHA), head_dim 128
 *   qwen2vl Qwen2-VL-7B:  28 layers, 4 KV heads x 7 query heads, head_dim 128
 * Two cache states: "warm" repeats the step back to back (the 1-bit block
 * may then sit in the last-level cache, fp16 K/V cannot), "cold" first
 * streams a 512 MiB buffer through the caches, as the rest of a model's
 * decode step would.
 *
 * Usage: vkv_bench_attend [repetitions [spec]]   (default 7, "rotsign")
 */
#include <immintrin.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "vkv/attend.h"
#include "bench_util.h"
#include "vkv/codec.h"

#define TOKENS 576
#define HDIM   128

/* Horizontal sum of 8 lanes. */
__attribute__((target("avx2,fma,f16c"))) static inline float hsum8(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* The yardstick: exact attention of one layer, all heads, over T fp16
 * K/V rows [T][H][HDIM] (contiguous), walked in memory order (token-major,
 * every K/V row loaded once for the gq query heads sharing it, as the
 * prefetchers like it). q: [H*gq][HDIM] floats; sc: [H*gq][T] scratch;
 * o: [H*gq][HDIM] scratch. Writes out[H*gq][HDIM] and lse[H*gq]. */
__attribute__((target("avx2,fma,f16c"))) static void
f16_attend_layer(const uint16_t *K, const uint16_t *V, uint32_t T, uint32_t H, uint32_t gq,
                 const float *q, float scale, float *sc, float *o, float *out, float *lse)
{
    enum { NB = HDIM / 8 };
    const uint32_t nh = H * gq;
    for (uint32_t t = 0; t < T; t++)
        for (uint32_t h = 0; h < H; h++) {
            const uint16_t *k = K + ((size_t)t * H + h) * HDIM;
            __m256 kv[NB];
            for (int b = 0; b < NB; b++)
                kv[b] = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(k + 8 * b)));
            for (uint32_t j = 0; j < gq; j++) {
                const float *qr = q + ((size_t)h * gq + j) * HDIM;
                __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
                for (int b = 0; b < NB; b += 2) {
                    a0 = _mm256_fmadd_ps(_mm256_loadu_ps(qr + 8 * b), kv[b], a0);
                    a1 = _mm256_fmadd_ps(_mm256_loadu_ps(qr + 8 * b + 8), kv[b + 1], a1);
                }
                sc[((size_t)h * gq + j) * T + t] = hsum8(_mm256_add_ps(a0, a1)) * scale;
            }
        }
    for (uint32_t r = 0; r < nh; r++) {
        float *s = sc + (size_t)r * T, m = -INFINITY, sum = 0.0f;
        for (uint32_t t = 0; t < T; t++)
            m = fmaxf(m, s[t]);
        for (uint32_t t = 0; t < T; t++) {
            s[t] = expf(s[t] - m);
            sum += s[t];
        }
        lse[r] = m + logf(sum);
        out[(size_t)r * HDIM] = sum; /* stash the sum until the end */
    }
    memset(o, 0, (size_t)nh * HDIM * sizeof(float));
    for (uint32_t t = 0; t < T; t++)
        for (uint32_t h = 0; h < H; h++) {
            const uint16_t *v = V + ((size_t)t * H + h) * HDIM;
            __m256 vv[NB];
            for (int b = 0; b < NB; b++)
                vv[b] = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(v + 8 * b)));
            for (uint32_t j = 0; j < gq; j++) {
                const size_t r = (size_t)h * gq + j;
                __m256 p = _mm256_set1_ps(sc[r * T + t]);
                float * or = o + r * HDIM;
                for (int b = 0; b < NB; b++)
                    _mm256_storeu_ps(or +8 * b,
                                     _mm256_fmadd_ps(p, vv[b], _mm256_loadu_ps(or +8 * b)));
            }
        }
    for (uint32_t r = 0; r < nh; r++) {
        float inv = 1.0f / out[r * HDIM];
        for (int d = 0; d < HDIM; d++)
            out[r * HDIM + d] = o[r * HDIM + d] * inv;
    }
}

typedef struct model {
    const char *name;
    uint32_t layers, kv_heads, gq; /* gq query heads per KV head (<= 8) */
} model;

/* Everything one model's step needs (owned here). */
typedef struct step {
    model m;
    vkv_shape shape;
    uint8_t *block;
    size_t size;
    uint16_t **k, **v; /* per layer [T][kv_heads][HDIM] fp16 */
    float *q;          /* [n_heads][HDIM] */
    float *out, *lse;  /* vkv_attend results, [layers][n_heads][HDIM] */
    float *out16, *lse16;
    float *sc, *o16; /* yardstick scratch */
} step;

/* Runs vkv_attend over every layer. Returns 0 or the error. */
static int run_vkv(step *s)
{
    const uint32_t nh = s->m.kv_heads * s->m.gq;
    for (uint32_t l = 0; l < s->m.layers; l++) {
        vkv_attend_args a;
        memset(&a, 0, sizeof(a));
        a.kv_heads = s->m.kv_heads;
        a.head_dim = HDIM;
        a.layers = s->m.layers;
        a.layer = l;
        a.n_q = 1;
        a.n_heads = nh;
        a.q_dtype = VKV_ATTEND_F32;
        a.q = s->q;
        a.scale = 1.0f / sqrtf((float)HDIM);
        a.out = s->out + (size_t)l * nh * HDIM;
        a.lse = s->lse + (size_t)l * nh;
        int rc = vkv_attend(s->block, s->size, 0, &a);
        if (rc != VKV_OK)
            return rc;
    }
    return 0;
}

/* fp16 attention over every layer of the decoded K/V. */
static void run_f16(step *s)
{
    const uint32_t nh = s->m.kv_heads * s->m.gq;
    for (uint32_t l = 0; l < s->m.layers; l++)
        f16_attend_layer(s->k[l], s->v[l], TOKENS, s->m.kv_heads, s->m.gq, s->q,
                         1.0f / sqrtf((float)HDIM), s->sc, s->o16, s->out16 + (size_t)l * nh * HDIM,
                         s->lse16 + (size_t)l * nh);
}

/* Decodes the block into the fp16 K/V. */
static int run_decode(step *s)
{
    vkv_kv_dst d = {(void *const *)s->k,          (void *const *)s->v,
                    (size_t)s->m.kv_heads * HDIM, HDIM,
                    vkv_geometry_of(&s->shape),   NULL};
    return vkv_decode(s->block, s->size, 0, &d);
}

/* This thread's CPU time in ns: the build VM is shared, and wall time there
 * mostly measures other tenants' scheduling; single-threaded code that never
 * sleeps spends its wall time on the CPU (cache and DRAM stalls included). */
static uint64_t cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static volatile uint8_t sink;

/* Streams a 512 MiB buffer through the caches. */
static void flush_caches(uint8_t *buf, size_t n)
{
    for (size_t i = 0; i < n; i += 64)
        buf[i] = (uint8_t)(buf[i] + 1);
    sink = buf[n / 2];
}

int main(int argc, char **argv)
{
    int reps = argc > 1 ? atoi(argv[1]) : 7;
    const char *spec_text = argc > 2 ? argv[2] : "rotsign";
    vkv_codec_spec spec;
    if (reps < 1 || reps > 1000 || vkv_codec_spec_parse(spec_text, &spec) != VKV_OK) {
        fprintf(stderr, "usage: %s [repetitions 1..1000 [codec spec]]\n", argv[0]);
        return 2;
    }
    if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma")) {
        fprintf(stderr, "the fp16 yardstick needs AVX2 + FMA + F16C\n");
        return 77;
    }
    static const model models[] = {{"llava-1.5-7b", 32, 32, 1}, {"qwen2-vl-7b", 28, 4, 7}};
    const size_t flush_n = (size_t)512 << 20;
    uint8_t *flush = malloc(flush_n);
    if (flush == NULL)
        return 1;
    memset(flush, 1, flush_n);
    printf("vkv_attend vs fp16 attention, one decode step (1 query per head, all layers), "
           "%d tokens, head_dim %d, codec %s, 1 thread, thread CPU time, median of %d\n",
           TOKENS, HDIM, spec_text, reps);
    for (size_t mi = 0; mi < sizeof(models) / sizeof(models[0]); mi++) {
        step s;
        memset(&s, 0, sizeof(s));
        s.m = models[mi];
        const uint32_t L = s.m.layers, H = s.m.kv_heads, nh = H * s.m.gq;
        vkv_shape sh = {L, H, HDIM, TOKENS, VKV_DTYPE_F16, 1, {{0, TOKENS}}};
        s.shape = sh;
        if (vkv_codec_encoded_size(&sh, &spec, &s.size) != VKV_OK)
            return 1;
        s.block = malloc(s.size);
        s.k = calloc(L, sizeof(*s.k));
        s.v = calloc(L, sizeof(*s.v));
        const size_t le = (size_t)TOKENS * H * HDIM;
        uint64_t seed = 42 + mi;
        for (uint32_t l = 0; l < L; l++) {
            s.k[l] = malloc(le * 2);
            s.v[l] = malloc(le * 2);
            for (uint32_t h = 0; h < H; h++)
                for (uint32_t d = 0; d < HDIM; d++) {
                    float ko = 2.0f * bench_unif(&seed), ks = 0.2f + fabsf(bench_unif(&seed));
                    float vo = 0.5f * bench_unif(&seed), vs = 0.2f + fabsf(bench_unif(&seed));
                    if (d % 16 == 3)
                        ks *= 10.0f; /* outlier key channels */
                    for (uint32_t t = 0; t < TOKENS; t++) {
                        size_t i = ((size_t)t * H + h) * HDIM + d;
                        s.k[l][i] = bench_f16(ko + ks * bench_unif(&seed));
                        s.v[l][i] = bench_f16(vo + vs * bench_unif(&seed));
                    }
                }
        }
        vkv_kv_src src = {(const void *const *)s.k, (const void *const *)s.v, (size_t)H * HDIM,
                          HDIM};
        if (vkv_encode(&sh, &spec, &src, s.block, s.size) != VKV_OK)
            return 1;
        s.q = malloc((size_t)nh * HDIM * 4);
        for (size_t i = 0; i < (size_t)nh * HDIM; i++)
            s.q[i] = bench_unif(&seed);
        s.out = malloc((size_t)L * nh * HDIM * 4);
        s.out16 = malloc((size_t)L * nh * HDIM * 4);
        s.lse = malloc((size_t)L * nh * 4);
        s.lse16 = malloc((size_t)L * nh * 4);
        s.sc = malloc((size_t)TOKENS * nh * 4);
        s.o16 = malloc((size_t)nh * HDIM * 4);
        if (run_decode(&s) != VKV_OK) /* the fp16 K/V the yardstick reads */
            return 1;
        const double f16_bytes = 2.0 * L * TOKENS * H * HDIM * 2.0;
        printf("\n%s: %u layers, %u KV heads x %u, block %.2f MB (%.3f bits/element), fp16 K/V "
               "%.1f MB (%.1fx)\n",
               s.m.name, L, H, s.m.gq, s.size / 1e6, vkv_codec_bits_per_element(&sh, s.size),
               f16_bytes / 1e6, f16_bytes / s.size);
        static const enum vkv_impl impls[] = {VKV_IMPL_AVX2, VKV_IMPL_SCALAR};
        for (int cold = 0; cold < 2; cold++) {
            /* variants 0 fp16, 1 decode + fp16, 2 vkv avx2, 3 vkv scalar,
             * interleaved per repetition (starting variant rotated) so that
             * the shared machine's slow phases hit all of them alike; warm
             * = the same variant ran just before, cold = 512 MiB streamed
             * through the caches first. The scalar reference runs 3 times. */
            uint64_t *t = malloc(4u * (size_t)reps * sizeof(uint64_t)), tm[4];
            int cnt[4] = {0, 0, 0, 0};
            int have[4] = {1, 1, vkv_codec_set_impl(impls[0]) == VKV_OK,
                           vkv_codec_set_impl(impls[1]) == VKV_OK};
            for (int r = 0; r < reps; r++)
                for (int k = 0; k < 4; k++) {
                    int vi = (k + r) % 4;
                    if (!have[vi] || (vi == 3 && cnt[3] >= 3))
                        continue;
                    if (vi >= 2)
                        (void)vkv_codec_set_impl(impls[vi - 2]);
                    for (int pass = cold ? 1 : 0; pass < 2; pass++) {
                        if (cold)
                            flush_caches(flush, flush_n);
                        uint64_t t0 = cpu_ns();
                        if (vi >= 1 && vi != 2 && vi != 3 && run_decode(&s) != VKV_OK)
                            return 1;
                        if (vi <= 1)
                            run_f16(&s);
                        else if (run_vkv(&s) != VKV_OK)
                            return 1;
                        if (pass == 1)
                            t[(size_t)vi * reps + cnt[vi]++] = cpu_ns() - t0;
                    }
                }
            for (int vi = 0; vi < 4; vi++)
                tm[vi] = have[vi] && cnt[vi] ? median(t + (size_t)vi * reps, cnt[vi]) : 0;
            uint64_t tf16 = tm[0], tdec = tm[1], tv[2] = {tm[2], tm[3]};
            (void)vkv_codec_set_impl(VKV_IMPL_AUTO);
            free(t);
            printf("  %s caches:\n", cold ? "cold" : "warm");
            printf("    fp16 attention (decoded K/V)   %9.3f ms  %6.2f GB/s read\n", tf16 / 1e6,
                   f16_bytes / tf16);
            printf("    decode to fp16 + fp16 attention %8.3f ms\n", tdec / 1e6);
            for (int ii = 0; ii < 2; ii++)
                if (tv[ii])
                    printf("    vkv_attend %-6s                %8.3f ms  %6.2f GB/s read  "
                           "%5.2fx vs fp16 attention, %5.2fx vs decode+fp16\n",
                           vkv_codec_impl_name(impls[ii]), tv[ii] / 1e6, s.size / (double)tv[ii],
                           (double)tf16 / tv[ii], (double)tdec / tv[ii]);
        }
        /* agreement of the two paths on this step (fp16 path is the decode) */
        double maxd = 0, maxo = 0, maxl = 0;
        for (size_t i = 0; i < (size_t)L * nh * HDIM; i++) {
            maxd = fmax(maxd, fabs(s.out[i] - s.out16[i]));
            maxo = fmax(maxo, fabs(s.out16[i]));
        }
        for (size_t i = 0; i < (size_t)L * nh; i++)
            maxl = fmax(maxl, fabs(s.lse[i] - s.lse16[i]));
        printf("  vkv_attend vs decode+fp16: max |out diff| %.3g (max |out| %.3g), max |lse "
               "diff| %.3g; bytes read per step %.1fx fewer\n",
               maxd, maxo, maxl, f16_bytes / s.size);
        for (uint32_t l = 0; l < L; l++) {
            free(s.k[l]);
            free(s.v[l]);
        }
        free(s.k);
        free(s.v);
        free(s.block);
        free(s.q);
        free(s.out);
        free(s.out16);
        free(s.lse);
        free(s.lse16);
        free(s.sc);
        free(s.o16);
    }
    free(flush);
    return 0;
}
