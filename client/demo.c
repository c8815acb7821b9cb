/*
 * vkv-demo - two worker processes reusing an image prefix through vkvd.
 *
 *   vkv-demo [--rundir DIR]      runs worker A, then worker B, as two processes
 *   vkv-demo worker NAME SEED    one worker (what the two processes run)
 *
 * Each worker holds a LLaVA-1.5-7B-shaped prompt (32 layers, 32 KV heads,
 * head dim 128): a 32-token system prompt, a 576-token image, then its own
 * question. The prompt is cut into 256-token chunks whose keys are chained
 * with vkv_key_chain (token ids + the image's content hash). A worker looks
 * its keys up, fetches and decodes the cached prefix, and computes + puts the
 * rest. No model runs here: "compute" is a stand-in that synthesizes the KV
 * tensors, so the printed time saved is fetch+decode versus that stand-in
 * plus encode + put, not versus a real prefill.
 *
 * A worker that found the image cached then answers its question's first
 * decode step by attention straight over the 1-bit blocks in vkvd's memory
 * (vkv_fetch_attend, every layer) merged with attention over its own fp16
 * tokens (vkv_attend_merge), with no fp16 copy of the image; it prints the
 * result against the decode-to-fp16 path (max abs difference) and both
 * timings.
 */
#include <math.h>
#include <openssl/evp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "vkv/attend.h"
#include "vkv/vkv.h"

#define LAYERS      32
#define HEADS       32
#define DIM         128
#define CHUNK       256
#define SYS_TOKENS  32
#define IMG_TOKENS  576
#define TEXT_TOKENS 40
#define TOKENS      (SYS_TOKENS + IMG_TOKENS + TEXT_TOKENS)
#define NCHUNKS     ((TOKENS + CHUNK - 1) / CHUNK)

static const char *g_rundir;

/* Seconds on the monotonic clock. */
static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* splitmix64. */
static uint64_t mix(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* The stand-in for the vision encoder + prefill: synthesizes fp16 K and V
 * for tokens [t0, t0+n) of the prompt into per-layer buffers. Keys get
 * per-channel offsets (as real keys do), values are centred. */
static void compute_kv(uint16_t **k, uint16_t **v, uint32_t t0, uint32_t n, uint64_t seed)
{
    for (uint32_t l = 0; l < LAYERS; l++) {
        for (uint32_t t = 0; t < n; t++) {
            uint64_t s = seed ^ ((uint64_t)(t0 + t) << 20) ^ l;
            for (uint32_t i = 0; i < HEADS * DIM; i += 4) {
                uint64_t r = mix(&s);
                for (int j = 0; j < 4; j++) {
                    uint16_t m = (uint16_t)(r >> (16 * j)) & 0x03ff;
                    uint16_t off = (uint16_t)((i + (uint32_t)j) % 7 == 0 ? 0x4000 : 0x3800);
                    k[l][(size_t)t * HEADS * DIM + i + (uint32_t)j] = (uint16_t)(off | m);
                    v[l][(size_t)t * HEADS * DIM + i + (uint32_t)j] =
                        (uint16_t)(((r >> (16 * j + 10)) & 1 ? 0xb400 : 0x3400) | (m >> 1));
                }
            }
        }
    }
}

/* IEEE half -> float (demo-local; the codec has its own). */
static float h2f(uint16_t h)
{
    uint32_t sign = (uint32_t)(h >> 15) << 31, e = (h >> 10) & 0x1f, m = h & 0x3ff, bits;
    if (e == 0 && m == 0) {
        bits = sign;
    } else if (e == 0) { /* subnormal */
        int sh = 0;
        while (!(m & 0x400)) {
            m <<= 1;
            sh++;
        }
        bits = sign | (uint32_t)(113 - sh) << 23 | (m & 0x3ff) << 13;
    } else if (e == 31) {
        bits = sign | 0x7f800000u | m << 13;
    } else {
        bits = sign | (e + 112) << 23 | m << 13;
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

/* Exact attention of q[HEADS][DIM] over fp16 K/V [n][HEADS][DIM] (one
 * layer): out[HEADS][DIM] and lse[HEADS] (natural log of the sum of
 * exp(scale * q.k)), the way a worker's own attention kernel would give it.
 * `sc` is scratch of n floats. */
static void fp16_attention(const float *q, const uint16_t *k, const uint16_t *v, uint32_t n,
                           float scale, float *sc, float *out, float *lse)
{
    for (uint32_t h = 0; h < HEADS; h++) {
        float mx = -INFINITY;
        for (uint32_t t = 0; t < n; t++) {
            const uint16_t *kr = k + ((size_t)t * HEADS + h) * DIM;
            float d = 0;
            for (uint32_t i = 0; i < DIM; i++)
                d += q[h * DIM + i] * h2f(kr[i]);
            sc[t] = d * scale;
            mx = sc[t] > mx ? sc[t] : mx;
        }
        double sum = 0;
        float *o = out + (size_t)h * DIM;
        memset(o, 0, DIM * sizeof *o);
        for (uint32_t t = 0; t < n; t++) {
            float p = expf(sc[t] - mx);
            sum += p;
            const uint16_t *vr = v + ((size_t)t * HEADS + h) * DIM;
            for (uint32_t i = 0; i < DIM; i++)
                o[i] += p * h2f(vr[i]);
        }
        for (uint32_t i = 0; i < DIM; i++)
            o[i] = (float)(o[i] / sum);
        lse[h] = mx + (float)log(sum);
    }
}

/* One K/V buffer per layer (fp16, rows of HEADS * DIM values), malloc'ed
 * by kv_set_alloc and owned by the set until kv_set_free. */
struct kv_set {
    uint16_t *k[LAYERS], *v[LAYERS];
};

/* Frees every buffer of *s (a zeroed or partly allocated set is fine) and
 * zeroes it. */
static void kv_set_free(struct kv_set *s)
{
    for (int l = 0; l < LAYERS; l++) {
        free(s->k[l]);
        free(s->v[l]);
    }
    memset(s, 0, sizeof *s);
}

/* Allocates every layer of *s for `tokens` rows (at least one). On failure
 * frees what it got. Returns false when out of memory (*s then all NULL). */
static bool kv_set_alloc(struct kv_set *s, uint32_t tokens)
{
    const size_t bytes = (size_t)(tokens ? tokens : 1) * HEADS * DIM * 2;
    memset(s, 0, sizeof *s);
    for (int l = 0; l < LAYERS; l++) {
        s->k[l] = malloc(bytes);
        s->v[l] = malloc(bytes);
        if (!s->k[l] || !s->v[l]) {
            kv_set_free(s);
            return false;
        }
    }
    return true;
}

/* The buffers of answer_by_attention, all malloc'ed by attn_bufs_alloc and
 * owned here until attn_bufs_free. */
struct attn_bufs {
    struct kv_set own;  /* the worker's own tokens, [own][row] per layer */
    struct kv_set all;  /* (b): decoded cached tokens then own ones, [all][row] */
    float *q;           /* the decode step's query, [HEADS][DIM] */
    float *sc;          /* fp16_attention's scratch, [all] */
    float *outs, *lses; /* (a): partial outputs [hits + 1][row], lse [hits + 1][HEADS] */
    float *oa, *ob;     /* the result of (a) and of (b), [row] each */
};

/* Frees every buffer of *b (a zeroed or partly allocated one is fine). */
static void attn_bufs_free(struct attn_bufs *b)
{
    kv_set_free(&b->own);
    kv_set_free(&b->all);
    free(b->q);
    free(b->sc);
    free(b->outs);
    free(b->lses);
    free(b->oa);
    free(b->ob);
    memset(b, 0, sizeof *b);
}

/* Allocates *b for `hits` cached chunks, `own` own tokens and `all` tokens
 * in all. Returns false when out of memory, having freed what it got. */
static bool attn_bufs_alloc(struct attn_bufs *b, size_t hits, uint32_t own, uint32_t all)
{
    const size_t row = (size_t)HEADS * DIM;
    memset(b, 0, sizeof *b);
    b->q = malloc(row * sizeof *b->q);
    b->sc = malloc((size_t)all * sizeof *b->sc);
    b->outs = malloc((hits + 1) * row * sizeof *b->outs);
    b->lses = malloc((hits + 1) * HEADS * sizeof *b->lses);
    b->oa = malloc(row * sizeof *b->oa);
    b->ob = malloc(row * sizeof *b->ob);
    if (!b->q || !b->sc || !b->outs || !b->lses || !b->oa || !b->ob ||
        !kv_set_alloc(&b->own, own) || !kv_set_alloc(&b->all, all)) {
        attn_bufs_free(b);
        return false;
    }
    return true;
}

/* Pins the `hits` cached chunks keys[0..hits) into *f (released by the
 * caller with vkv_fetch_release, also on failure when *f is set). Returns
 * 0, VKV_ENOTFOUND when fewer are there now, or the fetch's error. */
static int fetch_cached(vkv_client *c, const vkv_key *keys, size_t hits, vkv_fetch **f)
{
    int rc = vkv_fetch_begin(c, keys, hits, f);
    if (rc == 0 && vkv_fetch_count(*f) != hits)
        rc = VKV_ENOTFOUND;
    return rc;
}

/* (b), part 1: decodes the `hits` cached chunks of f to fp16 (every layer)
 * into the first rows of b->all, one after the other. Returns 0 or the
 * first decode's error. */
static int decode_to_fp16(vkv_fetch *f, const vkv_shape *shapes, size_t hits, struct attn_bufs *b)
{
    const size_t row = (size_t)HEADS * DIM;
    int rc = 0;
    uint32_t at = 0;
    for (size_t i = 0; i < hits && rc == 0; i++) {
        uint16_t *kk[LAYERS], *vv[LAYERS];
        for (int l = 0; l < LAYERS; l++) {
            kk[l] = b->all.k[l] + (size_t)at * row;
            vv[l] = b->all.v[l] + (size_t)at * row;
        }
        vkv_kv_dst dst = {
            (void *const *)kk, (void *const *)vv, row, DIM, vkv_geometry_of(&shapes[i]), NULL};
        rc = vkv_fetch_decode(f, i, 0, &dst);
        at += shapes[i].tokens;
    }
    return rc;
}

/* Copies the `own` own tokens of b->own into b->all after its `cached`
 * decoded rows, so that (b) attends over every token at once. */
static void append_own_tokens(uint32_t cached, uint32_t own, struct attn_bufs *b)
{
    const size_t row = (size_t)HEADS * DIM;
    for (int l = 0; l < LAYERS && own; l++) {
        memcpy(b->all.k[l] + (size_t)cached * row, b->own.k[l], (size_t)own * row * 2);
        memcpy(b->all.v[l] + (size_t)cached * row, b->own.v[l], (size_t)own * row * 2);
    }
}

/* Attention of q (one token, every head) over layer `layer` of cached
 * block i of f, where it lies in vkvd's memory, into out[row] and
 * lse[HEADS] (caller's memory). Returns 0 or vkv_fetch_attend's error
 * (which also checks that the block is keys[i]'s). */
static int attend_block(vkv_fetch *f, size_t i, int layer, const float *q, float scale, float *out,
                        float *lse)
{
    vkv_attend_args a = {0};
    a.kv_heads = HEADS;
    a.head_dim = DIM;
    a.layers = LAYERS;
    a.layer = (uint32_t)layer;
    a.n_q = 1;
    a.n_heads = HEADS;
    a.q_dtype = VKV_ATTEND_F32;
    a.q = q;
    a.scale = scale;
    a.out = out;
    a.lse = lse;
    return vkv_fetch_attend(f, i, 0, &a);
}

/* (a) for one layer: attention of b->q over the `hits` cached 1-bit blocks
 * of f plus the `own` own fp16 tokens, merged into b->oa (partials in
 * b->outs / b->lses). Returns 0 or the first error. */
static int attend_layer_blocks(vkv_fetch *f, size_t hits, uint32_t own, int layer, float scale,
                               struct attn_bufs *b)
{
    const size_t row = (size_t)HEADS * DIM;
    const float *op[NCHUNKS + 1], *lp[NCHUNKS + 1];
    size_t np = 0;
    int rc = 0;
    for (size_t i = 0; i < hits && rc == 0; i++, np++) {
        op[i] = b->outs + i * row;
        lp[i] = b->lses + i * HEADS;
        rc = attend_block(f, i, layer, b->q, scale, b->outs + i * row, b->lses + i * HEADS);
    }
    if (own && rc == 0) {
        fp16_attention(b->q, b->own.k[layer], b->own.v[layer], own, scale, b->sc,
                       b->outs + hits * row, b->lses + hits * HEADS);
        op[np] = b->outs + hits * row;
        lp[np++] = b->lses + hits * HEADS;
    }
    if (rc == 0)
        rc = vkv_attend_merge(np, op, lp, HEADS, DIM, b->oa, NULL);
    return rc;
}

/* What answer_by_attention measures: the time of (a) and (b) and the max
 * abs difference of their outputs over every layer. */
struct attn_result {
    double ta, tb, maxdiff;
};

/* The decode step itself, every layer: a fresh query, (a) over the blocks,
 * (b) part 2 (one exact attention over b->all's `all` tokens), and the
 * difference of the two, added into *r. Returns 0 or the first error. */
static int attend_every_layer(vkv_fetch *f, size_t hits, uint32_t own, uint32_t all,
                              struct attn_bufs *b, struct attn_result *r)
{
    const size_t row = (size_t)HEADS * DIM;
    const float scale = 1.0f / sqrtf((float)DIM);
    float lseb[HEADS];
    uint64_t qs = 0x51ed;
    int rc = 0;
    for (int l = 0; l < LAYERS && rc == 0; l++) {
        for (size_t i = 0; i < row; i++)
            b->q[i] = (float)((int)(mix(&qs) % 2001) - 1000) / 1000.0f;
        double t0 = now_s();
        rc = attend_layer_blocks(f, hits, own, l, scale, b);
        r->ta += now_s() - t0;
        t0 = now_s();
        if (rc == 0)
            fp16_attention(b->q, b->all.k[l], b->all.v[l], all, scale, b->sc, b->ob, lseb);
        r->tb += now_s() - t0;
        for (size_t i = 0; i < row && rc == 0; i++) {
            double d = fabs((double)b->oa[i] - (double)b->ob[i]);
            r->maxdiff = d > r->maxdiff ? d : r->maxdiff;
        }
    }
    return rc;
}

/* The first decode step of the question, every layer, two ways:
 *  (a) vkv_attend over the `hits` cached chunks where they lie in vkvd's
 *      memory, plus the worker's own fp16 tokens, merged (no fp16 copy of
 *      the image anywhere);
 *  (b) what a worker does without it: decode the cached chunks to fp16
 *      (every layer, once), then one exact attention over all tokens.
 * Prints the max abs difference of the outputs and both times. Every buffer
 * is its own (attn_bufs); the fetch is released before it returns. */
static int answer_by_attention(const char *name, vkv_client *c, const vkv_key *keys, size_t hits,
                               const vkv_shape *shapes)
{
    uint32_t cached = 0, own0 = (uint32_t)hits * CHUNK;
    for (size_t i = 0; i < hits; i++)
        cached += shapes[i].tokens;
    const uint32_t own = TOKENS - own0, all = cached + own;
    const size_t row = (size_t)HEADS * DIM;
    struct attn_bufs b;
    struct attn_result r = {0};
    vkv_fetch *f = NULL;
    int rc = attn_bufs_alloc(&b, hits, own, all) ? 0 : VKV_ENOMEM;
    if (rc == 0 && own)
        compute_kv(b.own.k, b.own.v, own0, own, 42); /* the worker's own tokens (fp16) */
    if (rc == 0)
        rc = fetch_cached(c, keys, hits, &f);
    if (rc == 0) {
        double t0 = now_s();
        rc = decode_to_fp16(f, shapes, hits, &b);
        r.tb += now_s() - t0;
        append_own_tokens(cached, own, &b);
    }
    if (rc == 0)
        rc = attend_every_layer(f, hits, own, all, &b, &r);
    if (rc == 0) {
        printf("%s: answered the first decode step (%d layers) by attention over the %zu cached "
               "chunk(s) in vkvd's 1-bit memory + its %u own fp16 tokens: %.1f ms, no fp16 copy "
               "of the image\n",
               name, LAYERS, hits, own, r.ta * 1e3);
        printf("%s:   the decode-to-fp16 path (%.1f MiB of fp16 K/V) + fp16 attention: %.1f ms; "
               "max |difference| of the outputs %.2g\n",
               name, (double)cached * row * 4 * LAYERS / 1048576.0, r.tb * 1e3, r.maxdiff);
    }
    if (f)
        vkv_fetch_release(c, f);
    attn_bufs_free(&b);
    if (rc)
        fprintf(stderr, "%s: attention over the cached blocks failed: %s\n", name,
                vkv_strerror(rc));
    return rc;
}

/* SHA-256 of a synthetic image (its "pixels" come from image_seed). */
static void image_hash(uint64_t image_seed, uint8_t out[32])
{
    uint8_t px[4096];
    uint64_t s = image_seed;
    for (size_t i = 0; i < sizeof px; i += 8) {
        uint64_t r = mix(&s);
        memcpy(px + i, &r, 8);
    }
    unsigned len = 0;
    EVP_Digest(px, sizeof px, out, &len, EVP_sha256(), NULL);
}

/* Connects worker `name` to vkvd in the demo's namespace into *c (closed by
 * the caller with vkv_close). Returns false after saying why. */
static bool worker_connect(const char *name, vkv_client **c)
{
    vkv_options o = {0};
    o.rundir = g_rundir;
    o.ns = "llava-hf/llava-1.5-7b-hf@main|tp0|f16";
    o.name = name;
    o.timeout_ms = 30000;
    int rc = vkv_connect(&o, c);
    if (rc) {
        fprintf(stderr, "%s: cannot connect to vkvd: %s\n", name, vkv_strerror(rc));
        return false;
    }
    return true;
}

/* Token ids of the prompt into tok (caller's array): the system prompt, the
 * image placeholders, then the question question_seed picks. */
static void prompt_tokens(uint64_t question_seed, uint32_t tok[TOKENS])
{
    for (int i = 0; i < SYS_TOKENS; i++)
        tok[i] = 1000u + (uint32_t)i;
    for (int i = 0; i < IMG_TOKENS; i++)
        tok[SYS_TOKENS + i] = 32000u; /* <image> */
    uint64_t qs = question_seed;
    for (int i = 0; i < TEXT_TOKENS; i++)
        tok[SYS_TOKENS + IMG_TOKENS + i] = 2000u + (uint32_t)(mix(&qs) % 30000u);
}

/* Shape and chained key of every chunk of the prompt tok (whose image has
 * content hash img) into the caller's keys[] and shapes[]: the part of the
 * image a chunk holds is its visual range and its image reference. */
static void chunk_keys(const uint32_t tok[TOKENS], const uint8_t img[32], vkv_key keys[NCHUNKS],
                       vkv_shape shapes[NCHUNKS])
{
    for (int ch = 0; ch < NCHUNKS; ch++) {
        uint32_t t0 = (uint32_t)ch * CHUNK;
        uint32_t n = TOKENS - t0 < CHUNK ? TOKENS - t0 : CHUNK;
        uint32_t is = SYS_TOKENS, ie = SYS_TOKENS + IMG_TOKENS; /* image span */
        uint32_t a = is > t0 ? is : t0, b = ie < t0 + n ? ie : t0 + n;
        vkv_image_ref ref;
        size_t nimg = 0;
        memset(&shapes[ch], 0, sizeof shapes[ch]);
        shapes[ch].layers = LAYERS;
        shapes[ch].kv_heads = HEADS;
        shapes[ch].head_dim = DIM;
        shapes[ch].tokens = n;
        shapes[ch].dtype = VKV_DTYPE_F16;
        if (a < b) {
            memcpy(ref.hash, img, 32);
            ref.offset = a - t0;
            ref.length = b - a;
            nimg = 1;
            shapes[ch].n_ranges = 1;
            shapes[ch].ranges[0].start = a - t0;
            shapes[ch].ranges[0].len = b - a;
        }
        vkv_key_chain(ch ? &keys[ch - 1] : NULL, tok + t0, n, &ref, nimg, &keys[ch]);
    }
}

/* Fetches and decodes the `*hits` cached chunks keys[0..*hits) into kv (one
 * chunk's worth, each overwriting the last: the worker only needs them
 * decoded), releasing the fetch; *hits becomes how many were still there.
 * Returns 0 or the first error. */
static int decode_cached(vkv_client *c, const vkv_key *keys, const vkv_shape *shapes, size_t *hits,
                         struct kv_set *kv)
{
    vkv_fetch *f;
    int rc = vkv_fetch_begin(c, keys, *hits, &f);
    if (rc)
        return rc;
    size_t got = vkv_fetch_count(f);
    for (size_t i = 0; i < got && rc == 0; i++) {
        /* checks the block's geometry and that it is bound to keys[i] */
        vkv_kv_dst dst = {(void *const *)kv->k,
                          (void *const *)kv->v,
                          HEADS * DIM,
                          DIM,
                          vkv_geometry_of(&shapes[i]),
                          NULL};
        dst.geom.tokens = CHUNK;
        rc = vkv_fetch_decode(f, i, 0, &dst);
    }
    *hits = got;
    vkv_fetch_release(c, f);
    return rc;
}

/* Computes (the stand-in) and puts chunks [from, NCHUNKS) of the prompt,
 * using kv (one chunk's worth, the caller's) as the staging buffers.
 * Returns 0 or the first error. */
static int compute_and_put(vkv_client *c, const vkv_key *keys, const vkv_shape *shapes, size_t from,
                           struct kv_set *kv)
{
    int rc = 0;
    for (size_t ch = from; ch < NCHUNKS && rc == 0; ch++) {
        uint32_t t0 = (uint32_t)ch * CHUNK;
        compute_kv(kv->k, kv->v, t0, shapes[ch].tokens, 42);
        vkv_kv_src src = {(const void *const *)kv->k, (const void *const *)kv->v, HEADS * DIM, DIM};
        int stored;
        rc = vkv_put_chunk(c, &keys[ch], &shapes[ch], &src, &stored);
    }
    return rc;
}

/* Prints what worker `name` did with its prompt: how many chunks were
 * cached and computed, with their times, and the prompt's size as fp16
 * and as blocks of c's codec. */
static void print_prompt_report(const char *name, vkv_client *c, const vkv_shape *shapes,
                                size_t hits, double t_hit, double t_miss)
{
    size_t bytes = 0;
    char spec[96];
    vkv_codec_spec_format(vkv_client_codec(c), spec, sizeof spec);
    for (size_t ch = 0; ch < NCHUNKS; ch++) {
        size_t sz;
        vkv_codec_encoded_size(&shapes[ch], vkv_client_codec(c), &sz);
        bytes += sz;
    }
    printf("%s: prompt of %d tokens (%d-token image) in %d chunks: %zu cached, %zu computed\n",
           name, TOKENS, IMG_TOKENS, NCHUNKS, hits, (size_t)NCHUNKS - hits);
    if (hits)
        printf("%s:   fetched + decoded %zu chunk(s) from vkvd in %.1f ms\n", name, hits,
               t_hit * 1e3);
    if (NCHUNKS - hits)
        printf("%s:   computed (stand-in) + encoded + put %zu chunk(s) in %.1f ms\n", name,
               (size_t)NCHUNKS - hits, t_miss * 1e3);
    printf("%s:   whole prompt is %.1f MiB as fp16, %.1f MiB as vkv blocks (%s)\n", name,
           (double)TOKENS * LAYERS * HEADS * DIM * 4 / 1048576.0, (double)bytes / 1048576.0, spec);
}

/* One worker: question_seed picks the text after the image. Looks its
 * chunks up, fetches + decodes the cached prefix, computes + puts the rest,
 * reports, and answers by attention when anything was cached. Returns the
 * process's exit status (0 or 1). */
static int worker(const char *name, uint64_t question_seed)
{
    vkv_client *c;
    if (!worker_connect(name, &c))
        return 1;
    uint32_t tok[TOKENS];
    prompt_tokens(question_seed, tok);
    uint8_t img[32];
    image_hash(0xC0FFEE, img);
    vkv_key keys[NCHUNKS];
    vkv_shape shapes[NCHUNKS];
    chunk_keys(tok, img, keys, shapes);

    struct kv_set kv; /* one chunk's K/V, every layer */
    int rc = kv_set_alloc(&kv, CHUNK) ? 0 : VKV_ENOMEM;
    double t_start = now_s();
    size_t hits = 0, cold = 0;
    if (rc == 0)
        rc = vkv_lookup(c, keys, NCHUNKS, &hits, &cold);
    if (rc == 0 && hits > 0)
        rc = decode_cached(c, keys, shapes, &hits, &kv);
    double t_hit = now_s() - t_start;
    double t1 = now_s();
    if (rc == 0)
        rc = compute_and_put(c, keys, shapes, hits, &kv);
    double t_miss = now_s() - t1;
    if (rc) {
        fprintf(stderr, "%s: failed: %s\n", name, vkv_strerror(rc));
    } else {
        print_prompt_report(name, c, shapes, hits, t_hit, t_miss);
        if (hits)
            rc = answer_by_attention(name, c, keys, hits, shapes);
    }
    kv_set_free(&kv);
    vkv_close(c);
    return rc ? 1 : 0;
}

/* Runs `vkv-demo worker NAME SEED` as a separate process and waits. */
static int spawn(const char *self, const char *name, const char *seed)
{
    pid_t p = fork();
    if (p == 0) {
        if (g_rundir)
            execl(self, self, "--rundir", g_rundir, "worker", name, seed, (char *)NULL);
        else
            execl(self, self, "worker", name, seed, (char *)NULL);
        _exit(127);
    }
    int st;
    if (p < 0 || waitpid(p, &st, 0) != p)
        return 1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 1;
}

int main(int argc, char **argv)
{
    int i = 1;
    if (i + 1 < argc && strcmp(argv[i], "--rundir") == 0) {
        g_rundir = argv[i + 1];
        i += 2;
    }
    if (i < argc && strcmp(argv[i], "worker") == 0) {
        if (i + 2 >= argc) {
            fprintf(stderr, "usage: vkv-demo [--rundir DIR] worker NAME SEED\n");
            return 2;
        }
        return worker(argv[i + 1], strtoull(argv[i + 2], NULL, 10));
    }
    if (i < argc) {
        fprintf(stderr, "usage: vkv-demo [--rundir DIR] [worker NAME SEED]\n");
        return 2;
    }
    printf("worker A asks about the image first; worker B asks another question about it\n");
    fflush(stdout);
    if (spawn("/proc/self/exe", "worker-A", "1") != 0)
        return 1;
    return spawn("/proc/self/exe", "worker-B", "2");
}
