/* eval/codecs.c - the compared codecs: block codec (real or simulated),
 * CalibQuant, rotsign, 2-bit reference, identity (see codecs.h). */
#include "eval/codecs.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eval/rng.h"
#include "common/errbuf.h"
#include "tensor/f16.h"
#include "tensor/safetensors.h"
#include "vkv/error.h"

/* See codecs.h. */
int vkve_have_codec(void)
{
    return 1;
}

/* ---- spec parsing ------------------------------------------------------ */

/* Iterates "key=value" pairs of a comma list: copies the next pair's key and
 * value into k / v (bounded) and advances *p. Returns 1 if a pair was read,
 * 0 at the end, -1 on a malformed pair. */
static int vkve_next_kv(const char **p, char *k, size_t kn, char *v, size_t vn)
{
    const char *s = *p;
    if (!*s)
        return 0;
    const char *eq = strchr(s, '=');
    const char *end = strchr(s, ',');
    if (!end)
        end = s + strlen(s);
    if (!eq || eq > end || eq == s || (size_t)(eq - s) >= kn || (size_t)(end - eq - 1) >= vn ||
        end == eq + 1)
        return -1;
    memcpy(k, s, (size_t)(eq - s));
    k[eq - s] = '\0';
    memcpy(v, eq + 1, (size_t)(end - eq - 1));
    v[end - eq - 1] = '\0';
    *p = *end ? end + 1 : end;
    return 1;
}

/* Parses a whole number in [lo, hi]. Returns 0 or -1. */
static int vkve_parse_u(const char *s, unsigned long lo, unsigned long hi, unsigned long *out)
{
    char *e;
    unsigned long v = strtoul(s, &e, 10);
    if (e == s || *e || v < lo || v > hi)
        return -1;
    *out = v;
    return 0;
}

/* Parses a finite float. Returns 0 or -1. */
static int vkve_parse_f(const char *s, double *out)
{
    char *e;
    double v = strtod(s, &e);
    if (e == s || *e || !isfinite(v))
        return -1;
    *out = v;
    return 0;
}

/* This module's reading of the block spec syntax, used when the codec
 * library is absent or for "sim-" specs. Same keys and defaults as
 * kernels/codec.c (kg=256 channel, vmode=token vg=0, iters 3, minmax
 * 0.5/0.3, quantile 0.2). */
static int vkve_block_parse_sim(const char *text, vkv_codec_spec *s)
{
    char rule[16];
    const char *colon = strchr(text, ':');
    size_t rl = colon ? (size_t)(colon - text) : strlen(text);
    if (rl == 0 || rl >= sizeof rule)
        return -1;
    memcpy(rule, text, rl);
    rule[rl] = '\0';
    memset(s, 0, sizeof *s);
    if (strcmp(rule, "minmax") == 0) {
        s->rule = VKV_RULE_MINMAX;
        s->k_param = 0.5f;
        s->v_param = 0.3f;
    } else if (strcmp(rule, "quantile") == 0) {
        s->rule = VKV_RULE_QUANTILE;
        s->k_param = s->v_param = 0.2f;
    } else if (strcmp(rule, "lloyd") == 0) {
        s->rule = VKV_RULE_LLOYD;
        s->iters = 3;
    } else {
        return -1;
    }
    s->k_mode = VKV_GROUP_CHANNEL;
    s->k_group = 256;
    s->v_mode = VKV_GROUP_TOKEN;
    s->v_group = 0;
    const char *p = colon ? colon + 1 : "";
    char k[16], v[32];
    int r;
    while ((r = vkve_next_kv(&p, k, sizeof k, v, sizeof v)) == 1) {
        unsigned long u;
        double f;
        if (strcmp(k, "kmode") == 0 || strcmp(k, "vmode") == 0) {
            int m = strcmp(v, "channel") == 0 ? VKV_GROUP_CHANNEL
                    : strcmp(v, "token") == 0 ? VKV_GROUP_TOKEN
                                              : 0;
            if (!m)
                return -1;
            *(k[0] == 'k' ? &s->k_mode : &s->v_mode) = (uint8_t)m;
        } else if (strcmp(k, "kg") == 0 || strcmp(k, "vg") == 0) {
            if (vkve_parse_u(v, 0, 65535, &u))
                return -1;
            *(k[0] == 'k' ? &s->k_group : &s->v_group) = (uint16_t)u;
        } else if (strcmp(k, "kp") == 0 || strcmp(k, "vp") == 0) {
            if (vkve_parse_f(v, &f) || s->rule == VKV_RULE_LLOYD || f < 0 || f >= 1 ||
                (s->rule == VKV_RULE_QUANTILE && (f <= 0 || f >= 0.5)))
                return -1;
            *(k[0] == 'k' ? &s->k_param : &s->v_param) = (float)f;
        } else if (strcmp(k, "iters") == 0) {
            if (vkve_parse_u(v, 1, 16, &u) || s->rule != VKV_RULE_LLOYD)
                return -1;
            s->iters = (uint8_t)u;
        } else {
            return -1;
        }
    }
    if (r < 0 || (s->k_mode == VKV_GROUP_CHANNEL && s->k_group == 0) ||
        (s->v_mode == VKV_GROUP_CHANNEL && s->v_group == 0))
        return -1;
    return 0;
}

/* See codecs.h. */
int vkve_codec_parse(const char *text, vkve_codec *c, char *err, size_t errlen)
{
    if (strcmp(text, "default") == 0) {
        char buf[160];
        vkv_codec_spec sp;
        vkv_codec_spec_default(&sp);
        vkv_codec_spec_format(&sp, buf, sizeof buf);
        return vkve_codec_parse(buf, c, err, errlen);
    }
    memset(c, 0, sizeof *c);
    if (strlen(text) >= sizeof c->text)
        return vkv_errbuf(err, errlen, VKV_ESPEC, "codec spec too long: '%s'", text);
    snprintf(c->text, sizeof c->text, "%s", text);
    const char *colon = strchr(text, ':');
    const char *p = colon ? colon + 1 : "";
    size_t nl = colon ? (size_t)(colon - text) : strlen(text);
    char k[16], v[32];
    int r;
    if (nl == 4 && strncmp(text, "fp16", 4) == 0 && !colon) {
        c->kind = VKVE_FP16;
        return VKV_OK;
    }
    if (nl == 7 && strncmp(text, "ref2bit", 7) == 0 && !colon) {
        c->kind = VKVE_REF2BIT;
        return VKV_OK;
    }
    if (nl == 10 && strncmp(text, "calibquant", 10) == 0) {
        c->kind = VKVE_CALIBQUANT;
        c->ks = 0.5f;
        c->vs = 0.3f;
        double off = 3.0;
        int calib = 0;
        while ((r = vkve_next_kv(&p, k, sizeof k, v, sizeof v)) == 1) {
            double f;
            if (vkve_parse_f(v, &f))
                return vkv_errbuf(err, errlen, VKV_ESPEC, "calibquant: bad value '%s'", v);
            if (strcmp(k, "ks") == 0 && f > 0 && f <= 1)
                c->ks = (float)f;
            else if (strcmp(k, "vs") == 0 && f > 0 && f <= 1)
                c->vs = (float)f;
            else if (strcmp(k, "calib") == 0 && (f == 0 || f == 1))
                calib = (int)f;
            else if (strcmp(k, "off") == 0 && f > 0)
                off = f;
            else
                return vkv_errbuf(err, errlen, VKV_ESPEC, "calibquant: bad key '%s=%s'", k, v);
        }
        if (r < 0)
            return vkv_errbuf(err, errlen, VKV_ESPEC, "calibquant: malformed '%s'", text);
        c->calib = calib ? off : 0.0;
        return VKV_OK;
    }
    /* "tc[:kb=..,vb=..,aw=..]" is block rule 5 through the library (what
     * users get); "sim-tc:..." and specs with the eval-only keys (alpha,
     * maxb, minb) are this module's simulation */
    int sim_tc = nl == 6 && strncmp(text, "sim-tc", 6) == 0;
    if (nl == 2 && strncmp(text, "tc", 2) == 0 && !strstr(p, "alpha=") && !strstr(p, "maxb=") &&
        !strstr(p, "minb=")) {
        c->kind = VKVE_BLOCK;
        if (vkv_codec_spec_parse(text, &c->spec) != VKV_OK)
            return vkv_errbuf(err, errlen, VKV_ESPEC, "tc: invalid spec '%s'", text);
        c->tc_aw = c->spec.iters;
        return VKV_OK; /* c->text stays as given (the table's labels) */
    }
    if ((nl == 2 && strncmp(text, "tc", 2) == 0) || sim_tc) {
        c->kind = VKVE_TC;
        c->tc_kb = 1.0;
        c->tc_alpha = 1.0;
        c->tc_maxb = 3;
        while ((r = vkve_next_kv(&p, k, sizeof k, v, sizeof v)) == 1) {
            double f;
            if (vkve_parse_f(v, &f))
                return vkv_errbuf(err, errlen, VKV_ESPEC, "tc: bad value '%s'", v);
            if (strcmp(k, "kb") == 0 && f > 0 && f <= 3)
                c->tc_kb = f;
            else if (strcmp(k, "alpha") == 0 && f >= 0 && f <= 4)
                c->tc_alpha = f;
            else if (strcmp(k, "maxb") == 0 && (f == 1 || f == 2 || f == 3))
                c->tc_maxb = (uint32_t)f;
            else if (strcmp(k, "minb") == 0 && (f == 0 || f == 1 || f == 2))
                c->tc_minb = (uint32_t)f;
            else if (strcmp(k, "aw") == 0 && (f == 0 || f == 1))
                c->tc_aw = (int)f;
            else if (strcmp(k, "vb") == 0 && f >= 0 && f <= 3)
                c->tc_vb = f;
            else
                return vkv_errbuf(err, errlen, VKV_ESPEC, "tc: bad key '%s=%s'", k, v);
        }
        if (r < 0)
            return vkv_errbuf(err, errlen, VKV_ESPEC, "tc: malformed '%s'", text);
        if (c->tc_kb > c->tc_maxb || c->tc_kb < c->tc_minb || c->tc_minb > c->tc_maxb ||
            c->tc_vb > c->tc_maxb)
            return vkv_errbuf(err, errlen, VKV_ESPEC, "tc: kb %g outside [minb %u, maxb %u]",
                              c->tc_kb, c->tc_minb, c->tc_maxb);
        return VKV_OK;
    }
    /* "rotsign:kmode=..." (the block rule's own keys, as its canonical
     * string starts) is the block codec; other rotsign specs are this
     * module's eval-only simulation */
    int rot_block = nl == 7 && strncmp(text, "rotsign", 7) == 0 &&
                    (strncmp(p, "kmode=", 6) == 0 || strncmp(p, "vmode=", 6) == 0 ||
                     strncmp(p, "kbits=", 6) == 0 || strncmp(p, "vbits=", 6) == 0 ||
                     strncmp(p, "iters=", 6) == 0);
    if (nl == 7 && strncmp(text, "rotsign", 7) == 0 && !rot_block) {
        c->kind = VKVE_ROTSIGN;
        c->center[0] = 1, c->rot[0] = 1, c->scale[0] = VKVE_SCALE_TOKEN;
        c->center[1] = 0, c->rot[1] = 0, c->scale[1] = VKVE_SCALE_RANK1;
        c->seed = 0x5eedull;
        while ((r = vkve_next_kv(&p, k, sizeof k, v, sizeof v)) == 1) {
            unsigned long u;
            int t = k[0] == 'k' ? 0 : k[0] == 'v' ? 1 : -1;
            if (strcmp(k, "seed") == 0 && !vkve_parse_u(v, 0, 0xffffffffUL, &u))
                c->seed = u;
            else if (t >= 0 && strlen(k) == 2 && (k[1] == 'c' || k[1] == 'r') &&
                     !vkve_parse_u(v, 0, 1, &u))
                *(k[1] == 'c' ? &c->center[t] : &c->rot[t]) = (uint8_t)u;
            else if (t >= 0 && strlen(k) == 2 && k[1] == 's' && strcmp(v, "token") == 0)
                c->scale[t] = VKVE_SCALE_TOKEN;
            else if (t >= 0 && strlen(k) == 2 && k[1] == 's' && strcmp(v, "rank1") == 0)
                c->scale[t] = VKVE_SCALE_RANK1;
            else
                return vkv_errbuf(err, errlen, VKV_ESPEC, "rotsign: bad key '%s=%s'", k, v);
        }
        if (r < 0)
            return vkv_errbuf(err, errlen, VKV_ESPEC, "rotsign: malformed '%s'", text);
        return VKV_OK;
    }
    c->kind = VKVE_BLOCK;
    const char *bt = text;
    if (strncmp(text, "sim-", 4) == 0) {
        c->sim = 1;
        bt = text + 4;
    }
    if (!c->sim) {
        if (vkv_codec_spec_parse(bt, &c->spec) != VKV_OK)
            return vkv_errbuf(err, errlen, VKV_ESPEC, "unknown or invalid codec spec '%s'", text);
        vkv_codec_spec_format(&c->spec, c->text, sizeof c->text);
        return VKV_OK;
    }
    if (rot_block)
        return vkv_errbuf(err, errlen, VKV_ESPEC, "'%s' needs the block codec library", text);
    if (vkve_block_parse_sim(bt, &c->spec) != 0)
        return vkv_errbuf(err, errlen, VKV_ESPEC, "unknown or invalid codec spec '%s'", text);
    return VKV_OK;
}

/* ---- storage ------------------------------------------------------------ */

/* Rounds n up to the block section alignment. */
static uint64_t vkve_al(uint64_t n)
{
    return (n + VKV_BLOCK_ALIGN - 1) / VKV_BLOCK_ALIGN * VKV_BLOCK_ALIGN;
}

/* Bytes of one tensor's level section of a block spec (CHANNEL or TOKEN). */
static int vkve_lev_bytes(int mode, uint32_t G, const vkv_shape *s, uint64_t *out)
{
    uint64_t L = s->layers, H = s->kv_heads, D = s->head_dim;
    if (mode == VKV_GROUP_CHANNEL) {
        if (!G)
            return VKV_EGROUP;
        uint64_t ng = 0;
        for (uint32_t i = 0; i < s->n_ranges; i++)
            ng += (s->ranges[i].len + G - 1) / G;
        *out = L * ng * H * 2 * D * 2;
        return VKV_OK;
    }
    uint32_t g = G ? G : s->head_dim;
    if (D % g)
        return VKV_EGROUP;
    uint64_t nv = 0;
    for (uint32_t i = 0; i < s->n_ranges; i++)
        nv += s->ranges[i].len;
    *out = L * nv * H * (D / g) * 2 * 2;
    return VKV_OK;
}

/* Bits one token and head of keys gets under tc: round(kb * head_dim). */
static uint64_t vkve_tc_budget(const vkve_codec *c, uint32_t D)
{
    return (uint64_t)llround(c->tc_kb * D);
}

/* The tc settings that code values when vb > 0: keys' quantizer with the
 * value budget, unweighted. */
static vkve_codec vkve_tc_vcodec(const vkve_codec *c)
{
    vkve_codec v = *c;
    v.tc_kb = c->tc_vb;
    v.tc_alpha = 0;
    v.tc_aw = 0;
    v.tc_minb = 0;
    return v;
}

/* See codecs.h. */
int vkve_codec_layout_bytes(const vkve_codec *c, const vkv_shape *s, uint64_t *bytes)
{
    uint64_t L = s->layers, H = s->kv_heads, D = s->head_dim, T = s->tokens;
    uint64_t elems = L * T * H * D, sec[6] = {0};
    int rc = VKV_OK;
    switch (c->kind) {
    case VKVE_FP16:
        sec[0] = sec[1] = elems * 2;
        break;
    case VKVE_BLOCK:
        sec[2] = sec[3] = elems / 8;
        rc = vkve_lev_bytes(c->spec.k_mode, c->spec.k_group, s, &sec[4]);
        if (rc == VKV_OK)
            rc = vkve_lev_bytes(c->spec.v_mode, c->spec.v_group, s, &sec[5]);
        break;
    case VKVE_CALIBQUANT:
        sec[2] = sec[3] = elems / 8;
        sec[4] = sec[5] = L * H * 2 * D * 2; /* scaled min and max per channel */
        break;
    case VKVE_REF2BIT:
        sec[2] = sec[3] = elems / 4;
        rc = vkve_lev_bytes(VKV_GROUP_CHANNEL, 256, s, &sec[4]); /* min and step */
        if (rc == VKV_OK)
            rc = vkve_lev_bytes(VKV_GROUP_TOKEN, 0, s, &sec[5]);
        break;
    case VKVE_ROTSIGN:
        sec[2] = sec[3] = elems / 8;
        for (int t = 0; t < 2; t++) {
            uint64_t m = 0;
            if (c->center[t])
                m += L * H * D * 2;
            m += L * T * H * 2; /* per-token scale a_t */
            if (c->scale[t] == VKVE_SCALE_RANK1)
                m += L * H * D * 2; /* per-channel factor b_d */
            sec[4 + t] = m;
        }
        break;
    case VKVE_TC: {
        /* keys: the allocated bits of every token and head, then per layer
         * and head mean, channel scale (fp16 each), 2-bit allocation per
         * channel, the fp16 top of the token-scale code, then one byte per
         * token and head; values: sign bits, b_d fp16, top fp16, a_t bytes */
        uint64_t kbits = vkve_tc_budget(c, s->head_dim);
        sec[2] = (L * T * H * kbits + 7) / 8;
        sec[3] = elems / 8;
        sec[4] = L * H * (D * 2 + D * 2 + (D * 2 + 7) / 8 + 2) + L * T * H;
        sec[5] = L * H * (D * 2 + 2) + L * T * H;
        if (c->tc_vb > 0) {
            vkve_codec vc = vkve_tc_vcodec(c);
            sec[3] = (L * T * H * vkve_tc_budget(&vc, s->head_dim) + 7) / 8;
            sec[5] = sec[4];
        }
        break;
    }
    default:
        return VKV_ESPEC;
    }
    if (rc != VKV_OK)
        return rc;
    /* each section starts aligned; the block ends where the last one ends */
    uint64_t pos = VKV_BLOCK_HEADER_SIZE;
    for (int i = 0; i < 6; i++)
        pos = vkve_al(pos) + sec[i];
    *bytes = pos;
    return VKV_OK;
}

/* See codecs.h. */
int vkve_codec_bits(const vkve_codec *c, double *bpe)
{
    vkv_shape s;
    memset(&s, 0, sizeof s);
    s.layers = 32;
    s.kv_heads = 8;
    s.head_dim = 128;
    s.tokens = 256;
    s.dtype = VKV_DTYPE_F16;
    s.n_ranges = 1;
    s.ranges[0].start = 0;
    s.ranges[0].len = 256;
    double elems = 2.0 * 32 * 8 * 128 * 256;
    if (c->kind == VKVE_FP16) {
        *bpe = 16.0; /* the plain fp16 cache itself, no block around it */
        return VKV_OK;
    }
    if (c->kind == VKVE_BLOCK && !c->sim) {
        size_t sz;
        int rc = vkv_codec_encoded_size(&s, &c->spec, &sz);
        if (rc != VKV_OK)
            return rc;
        *bpe = 8.0 * (double)sz / elems;
        return VKV_OK;
    }
    uint64_t b;
    int rc = vkve_codec_layout_bytes(c, &s, &b);
    if (rc != VKV_OK)
        return rc;
    *bpe = 8.0 * (double)b / elems;
    return VKV_OK;
}

/* ---- chunks ------------------------------------------------------------- */

typedef struct vkve_chunk {
    uint32_t t0, n; /* tokens [t0, t0 + n) of the data */
    uint32_t nr;
    vkv_block_range r[VKVE_MAX_RANGES]; /* visual ranges, chunk-relative */
    uint32_t nv;
    uint32_t *vt; /* visual tokens, chunk-relative, owned by the caller */
} vkve_chunk;

/* Fills ck for the chunk starting at t0 (vt must hold `chunk` entries). */
static void vkve_chunk_at(const vkve_data *d, uint32_t t0, uint32_t chunk, vkve_chunk *ck)
{
    ck->t0 = t0;
    ck->n = d->tokens - t0 < chunk ? d->tokens - t0 : chunk;
    ck->nr = 0;
    ck->nv = 0;
    for (uint32_t i = 0; i < d->n_ranges; i++) {
        uint32_t a = d->ranges[i].start, b = a + d->ranges[i].len;
        if (a < t0)
            a = t0;
        if (b > t0 + ck->n)
            b = t0 + ck->n;
        if (a >= b)
            continue;
        ck->r[ck->nr].start = a - t0;
        ck->r[ck->nr].len = b - a;
        ck->nr++;
        for (uint32_t t = a; t < b; t++)
            ck->vt[ck->nv++] = t - t0;
    }
}

/* ---- simulated block rules (mirror kernels/codec_math.h) ---------------- */

/* qsort comparator for floats, ascending. */
static int vkve_fcmp(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return x < y ? -1 : (x > y);
}

/* Quantizes the n values x[] in place with two levels chosen by the block
 * codec's `rule` (param, iters) and rounded to dtype; scratch holds n
 * floats. Mirrors the codec: constant group -> both levels the constant;
 * levels clamped to [min, max]; code 1 iff x >= midpoint of rounded levels. */
static void vkve_sim_group(float *x, uint32_t n, int rule, float param, int iters, int dtype,
                           float *scratch)
{
    float mn = x[0], mx = x[0];
    for (uint32_t i = 1; i < n; i++) {
        mn = x[i] < mn ? x[i] : mn;
        mx = x[i] > mx ? x[i] : mx;
    }
    float lo = mn, hi = mx;
    if (rule == VKV_RULE_MINMAX) {
        float h = param * 0.5f, r = mx - mn;
        lo = mn + h * r;
        hi = mx - h * r;
    } else if (rule == VKV_RULE_QUANTILE) {
        for (uint32_t i = 0; i < n; i++)
            scratch[i] = x[i] + 0.0f;
        qsort(scratch, n, sizeof *scratch, vkve_fcmp);
        uint32_t k = (uint32_t)((double)param * (double)(n - 1u));
        lo = scratch[k];
        hi = scratch[n - 1 - k];
    } else {
        float sum = 0;
        for (uint32_t i = 0; i < n; i++)
            sum += x[i];
        float thr = sum / (float)n;
        for (int it = 0; it < iters; it++) {
            float sl = 0, sh = 0;
            uint32_t nl = 0, nh = 0;
            for (uint32_t i = 0; i < n; i++) {
                if (x[i] >= thr)
                    sh += x[i], nh++;
                else
                    sl += x[i], nl++;
            }
            lo = nl ? sl / (float)nl : 0;
            hi = nh ? sh / (float)nh : 0;
            if (!nl)
                lo = hi;
            if (!nh)
                hi = lo;
            thr = (lo + hi) * 0.5f;
        }
    }
    if (mn == mx)
        lo = hi = mn;
    lo = fmaxf(fminf(lo, mx), mn);
    hi = fmaxf(fminf(hi, mx), mn);
    lo = vkvtn_round_dtype(lo, dtype);
    hi = vkvtn_round_dtype(hi, dtype);
    float thr = (lo + hi) * 0.5f;
    for (uint32_t i = 0; i < n; i++)
        x[i] = x[i] >= thr ? hi : lo;
}

/* Quantizer callback: quantizes x[0..n) in place (scratch: n floats). */
typedef void (*vkve_group_fn)(float *x, uint32_t n, const void *arg, int dtype, float *scratch);

typedef struct vkve_rule_arg {
    int rule, iters;
    float param;
} vkve_rule_arg;

/* vkve_group_fn adapter for the block rules. */
static void vkve_rule_fn(float *x, uint32_t n, const void *arg, int dtype, float *scratch)
{
    const vkve_rule_arg *a = arg;
    vkve_sim_group(x, n, a->rule, a->param, a->iters, dtype, scratch);
}

/* Uniform 2-bit quantizer: 4 levels min + q * step, step = (max-min)/3,
 * min and step rounded to dtype. */
static void vkve_2bit_fn(float *x, uint32_t n, const void *arg, int dtype, float *scratch)
{
    float mn = x[0], mx = x[0];
    for (uint32_t i = 1; i < n; i++) {
        mn = x[i] < mn ? x[i] : mn;
        mx = x[i] > mx ? x[i] : mx;
    }
    mn = vkvtn_round_dtype(mn, dtype);
    float st = vkvtn_round_dtype((mx - mn) / 3.0f, dtype);
    for (uint32_t i = 0; i < n; i++) {
        float q = st > 0 ? nearbyintf((x[i] - mn) / st) : 0.0f;
        q = q < 0 ? 0 : q > 3 ? 3 : q;
        x[i] = vkvtn_round_dtype(mn + q * st, dtype);
    }
}

typedef struct vkve_cq_arg {
    float scale;
} vkve_cq_arg;

/* CalibQuant's 1-bit quant(): x_min = min * scale, x_max = max * scale,
 * step = x_max - x_min, code = round(clamp((x - x_min) / step, 0, 1)) with
 * round-half-to-even (exactly 0.5 -> 0), reconstruction x_min or x_max. */
static void vkve_cq_fn(float *x, uint32_t n, const void *arg, int dtype, float *scratch)
{
    const vkve_cq_arg *a = arg;
    float mn = x[0], mx = x[0];
    for (uint32_t i = 1; i < n; i++) {
        mn = x[i] < mn ? x[i] : mn;
        mx = x[i] > mx ? x[i] : mx;
    }
    float lo = vkvtn_round_dtype(mn * a->scale, dtype),
          hi = vkvtn_round_dtype(mx * a->scale, dtype);
    float st = hi - lo;
    for (uint32_t i = 0; i < n; i++) {
        float u = st > 0 ? (x[i] - lo) / st : 0.0f;
        x[i] = u > 0.5f ? hi : lo;
    }
}

/* Applies fn to every group of one layer's chunk tensor (src -> dst, both
 * pointing at the chunk's first token, row stride H*D). CHANNEL mode: groups
 * of G consecutive visual tokens of one (head, channel), restarting at each
 * range; G = 0 means all visual tokens of the chunk as one group (across
 * ranges). TOKEN mode: G consecutive channels (0 = head_dim) of one token
 * and head. buf/scratch hold max(chunk tokens, head_dim) floats. */
static void vkve_groups(const float *src, float *dst, const vkve_chunk *ck, uint32_t H, uint32_t D,
                        int mode, uint32_t G, vkve_group_fn fn, const void *arg, int dtype,
                        float *buf, float *scratch)
{
    size_t row = (size_t)H * D;
    if (mode == VKV_GROUP_TOKEN) {
        uint32_t g = G ? G : D;
        for (uint32_t j = 0; j < ck->nv; j++)
            for (uint32_t h = 0; h < H; h++)
                for (uint32_t c0 = 0; c0 < D; c0 += g) {
                    size_t at = ck->vt[j] * row + (size_t)h * D + c0;
                    memcpy(buf, src + at, g * sizeof *buf);
                    fn(buf, g, arg, dtype, scratch);
                    memcpy(dst + at, buf, g * sizeof *buf);
                }
        return;
    }
    /* CHANNEL: list the groups as [first, count) spans over ck->vt */
    uint32_t first = 0;
    for (uint32_t ri = 0; ri < ck->nr || (G == 0 && ri == 0); ri++) {
        uint32_t len = G == 0 ? ck->nv : ck->r[ri].len;
        uint32_t gs = G == 0 ? ck->nv : G;
        for (uint32_t g0 = 0; g0 < len; g0 += gs) {
            uint32_t cnt = len - g0 < gs ? len - g0 : gs;
            for (uint32_t h = 0; h < H; h++)
                for (uint32_t d = 0; d < D; d++) {
                    size_t off = (size_t)h * D + d;
                    for (uint32_t j = 0; j < cnt; j++)
                        buf[j] = src[ck->vt[first + g0 + j] * row + off];
                    fn(buf, cnt, arg, dtype, scratch);
                    for (uint32_t j = 0; j < cnt; j++)
                        dst[ck->vt[first + g0 + j] * row + off] = buf[j];
                }
        }
        first += len;
        if (G == 0)
            break;
    }
}

/* ---- rotsign ------------------------------------------------------------- */

/* See codecs.h. */
void vkve_fwht(float *x, uint32_t n)
{
    for (uint32_t h = 1; h < n; h <<= 1)
        for (uint32_t i = 0; i < n; i += h << 1)
            for (uint32_t j = i; j < i + h; j++) {
                float a = x[j], b = x[j + h];
                x[j] = a + b;
                x[j + h] = a - b;
            }
    float s = 1.0f / sqrtf((float)n);
    for (uint32_t i = 0; i < n; i++)
        x[i] *= s;
}

/* rotsign on one (layer, head) of a chunk for tensor t (0 keys, 1 values):
 * y[nv][D] is scratch filled with the visual rows; sg the sign vector;
 * a[nv], b[D] scratch. Writes the reconstruction into dst rows. */
static void vkve_rotsign_head(const vkve_codec *c, int t, const float *src, float *dst,
                              const vkve_chunk *ck, uint32_t H, uint32_t D, uint32_t h,
                              const float *sg, int dtype, float *y, float *a, float *b, float *mu)
{
    size_t row = (size_t)H * D;
    uint32_t nv = ck->nv;
    for (uint32_t j = 0; j < nv; j++)
        memcpy(y + (size_t)j * D, src + ck->vt[j] * row + (size_t)h * D, D * sizeof *y);
    for (uint32_t d = 0; d < D; d++)
        mu[d] = 0;
    if (c->center[t]) {
        for (uint32_t j = 0; j < nv; j++)
            for (uint32_t d = 0; d < D; d++)
                mu[d] += y[(size_t)j * D + d];
        for (uint32_t d = 0; d < D; d++)
            mu[d] = vkvtn_round_dtype(mu[d] / (float)nv, dtype);
        for (uint32_t j = 0; j < nv; j++)
            for (uint32_t d = 0; d < D; d++)
                y[(size_t)j * D + d] -= mu[d];
    }
    if (c->rot[t])
        for (uint32_t j = 0; j < nv; j++) {
            float *r = y + (size_t)j * D;
            for (uint32_t d = 0; d < D; d++)
                r[d] *= sg[d];
            vkve_fwht(r, D);
        }
    if (c->scale[t] == VKVE_SCALE_TOKEN) {
        for (uint32_t d = 0; d < D; d++)
            b[d] = 1.0f;
        for (uint32_t j = 0; j < nv; j++) {
            double s = 0;
            for (uint32_t d = 0; d < D; d++)
                s += fabsf(y[(size_t)j * D + d]);
            a[j] = vkvtn_round_dtype((float)(s / D), dtype); /* mean |y|: optimal for signs */
        }
    } else {
        /* rank-1 fit |y_jd| ~ a_j b_d by alternating least squares */
        for (uint32_t d = 0; d < D; d++) {
            double s = 0;
            for (uint32_t j = 0; j < nv; j++)
                s += fabsf(y[(size_t)j * D + d]);
            b[d] = (float)(s / nv);
        }
        for (int it = 0; it < 3; it++) {
            double bb = 0;
            for (uint32_t d = 0; d < D; d++)
                bb += (double)b[d] * b[d];
            for (uint32_t j = 0; j < nv; j++) {
                double s = 0;
                for (uint32_t d = 0; d < D; d++)
                    s += fabsf(y[(size_t)j * D + d]) * b[d];
                a[j] = bb > 0 ? (float)(s / bb) : 0.0f;
            }
            double aa = 0;
            for (uint32_t j = 0; j < nv; j++)
                aa += (double)a[j] * a[j];
            for (uint32_t d = 0; d < D; d++) {
                double s = 0;
                for (uint32_t j = 0; j < nv; j++)
                    s += fabsf(y[(size_t)j * D + d]) * a[j];
                b[d] = aa > 0 ? (float)(s / aa) : 0.0f;
            }
        }
        /* store b normalised to max 1 so both fit fp16 comfortably */
        float bm = 0;
        for (uint32_t d = 0; d < D; d++)
            bm = b[d] > bm ? b[d] : bm;
        for (uint32_t d = 0; d < D; d++)
            b[d] = vkvtn_round_dtype(bm > 0 ? b[d] / bm : 0.0f, dtype);
        for (uint32_t j = 0; j < nv; j++)
            a[j] = vkvtn_round_dtype(a[j] * bm, dtype);
    }
    for (uint32_t j = 0; j < nv; j++) {
        float *r = y + (size_t)j * D;
        for (uint32_t d = 0; d < D; d++)
            r[d] = (r[d] >= 0 ? 1.0f : -1.0f) * a[j] * b[d];
        if (c->rot[t]) {
            vkve_fwht(r, D);
            for (uint32_t d = 0; d < D; d++)
                r[d] *= sg[d];
        }
        float *o = dst + ck->vt[j] * row + (size_t)h * D;
        for (uint32_t d = 0; d < D; d++)
            o[d] = vkvtn_round_dtype(r[d] + mu[d], dtype);
    }
}

/* ---- tc: transform coding with bit allocation (eval-only) ---------------- */

/* Gaussian Lloyd-Max quantizers of 1..3 bits (unit variance): thresholds,
 * levels and mean squared error. */
static const float vkve_lm_thr[4][7] = {
    {0},
    {0},
    {-0.9816f, 0.0f, 0.9816f},
    {-1.748f, -1.05f, -0.5006f, 0.0f, 0.5006f, 1.05f, 1.748f},
};
static const float vkve_lm_lev[4][8] = {
    {0},
    {-0.7979f, 0.7979f},
    {-1.5104f, -0.4528f, 0.4528f, 1.5104f},
    {-2.152f, -1.344f, -0.756f, -0.2451f, 0.2451f, 0.756f, 1.344f, 2.152f},
};
static const double vkve_lm_mse[4] = {1.0, 0.3634, 0.1175, 0.03454};

/* Level of the b-bit Lloyd-Max quantizer for z. */
static float vkve_lm_q(float z, uint32_t b)
{
    uint32_t n = (1u << b) - 1u, i = 0;
    while (i < n && z >= vkve_lm_thr[b][i])
        i++;
    return vkve_lm_lev[b][i];
}

/* Replaces the positive scales a[0..n) by their 8-bit log code relative to
 * the largest (rounded to dtype): a = top * 2^(-q/16), q in 0..255. */
static void vkve_logcode8(float *a, uint32_t n, int dtype)
{
    float top = 0;
    for (uint32_t j = 0; j < n; j++)
        top = a[j] > top ? a[j] : top;
    top = vkvtn_round_dtype(top, dtype);
    for (uint32_t j = 0; j < n; j++) {
        if (!(top > 0) || !(a[j] > 0)) {
            a[j] = 0;
            continue;
        }
        double q = nearbyint(-16.0 * log2(a[j] / top));
        q = q < 0 ? 0 : q > 255 ? 255 : q;
        a[j] = (float)(top * exp2(-q / 16.0));
    }
}

/* tc keys on one (layer, head) of a chunk: y[nv][D], a[nv], mu/b/w[D] scratch;
 * bits[D] scratch (uint8); qw[D] the head's prefill-query weights or NULL
 * (then the key-energy proxy). Writes the reconstruction into dst rows. */
static void vkve_tc_keys(const vkve_codec *c, const float *src, float *dst, const vkve_chunk *ck,
                         uint32_t H, uint32_t D, uint32_t h, int dtype, const float *qw, float *y,
                         float *a, float *mu, float *var, float *w, uint8_t *bits)
{
    size_t row = (size_t)H * D;
    uint32_t nv = ck->nv;
    for (uint32_t j = 0; j < nv; j++)
        memcpy(y + (size_t)j * D, src + ck->vt[j] * row + (size_t)h * D, D * sizeof *y);
    double e2m = 0;
    for (uint32_t d = 0; d < D; d++) {
        double s = 0, s2 = 0;
        for (uint32_t j = 0; j < nv; j++) {
            s += y[(size_t)j * D + d];
            s2 += (double)y[(size_t)j * D + d] * y[(size_t)j * D + d];
        }
        mu[d] = vkvtn_round_dtype((float)(s / nv), dtype);
        w[d] = (float)(s2 / nv);
        e2m += s2 / nv;
    }
    e2m /= D;
    for (uint32_t d = 0; d < D; d++) {
        double s2 = 0;
        for (uint32_t j = 0; j < nv; j++) {
            float x = y[(size_t)j * D + d] -= mu[d];
            s2 += (double)x * x;
        }
        var[d] = (float)(s2 / nv);
        w[d] = e2m > 0 ? (float)pow(w[d] / e2m, c->tc_alpha) : 1.0f;
        if (qw)
            w[d] = qw[d];
        bits[d] = (uint8_t)c->tc_minb;
    }
    /* greedy reverse water-filling of the bit budget above minb each */
    uint64_t budget = vkve_tc_budget(c, D);
    for (uint64_t i = (uint64_t)c->tc_minb * D; i < budget; i++) {
        double best = 0;
        int at = -1;
        for (uint32_t d = 0; d < D; d++) {
            if (bits[d] >= c->tc_maxb)
                continue;
            double g = (double)w[d] * var[d] * (vkve_lm_mse[bits[d]] - vkve_lm_mse[bits[d] + 1]);
            if (g > best)
                best = g, at = (int)d;
        }
        if (at < 0)
            break;
        bits[at]++;
    }
    /* per-token scale: rms over coded channels of y / sd */
    for (uint32_t j = 0; j < nv; j++) {
        double s = 0;
        uint32_t m = 0;
        for (uint32_t d = 0; d < D; d++)
            if (bits[d] && var[d] > 0) {
                double z = y[(size_t)j * D + d] / sqrt(var[d]);
                s += z * z, m++;
            }
        a[j] = m ? (float)sqrt(s / m) : 0.0f;
    }
    vkve_logcode8(a, nv, dtype);
    /* code, then the least-squares channel scale of the coded levels */
    for (uint32_t d = 0; d < D; d++) {
        double sd = sqrt(var[d]), num = 0, den = 0;
        for (uint32_t j = 0; j < nv; j++) {
            float *x = y + (size_t)j * D + d;
            float r = 0;
            if (bits[d] && sd > 0 && a[j] > 0)
                r = a[j] * vkve_lm_q((float)(*x / (sd * a[j])), bits[d]);
            num += (double)*x * r;
            den += (double)r * r;
            *x = r; /* the unscaled reconstruction */
        }
        float sc = vkvtn_round_dtype(den > 0 ? (float)(num / den) : 0.0f, dtype);
        for (uint32_t j = 0; j < nv; j++)
            y[(size_t)j * D + d] *= sc;
    }
    for (uint32_t j = 0; j < nv; j++) {
        float *o = dst + ck->vt[j] * row + (size_t)h * D;
        for (uint32_t d = 0; d < D; d++)
            o[d] = vkvtn_round_dtype(y[(size_t)j * D + d] + mu[d], dtype);
    }
}

/* tc values on one (layer, head): signs times a_t * b_d, b_d the column mean
 * of |v| (fp16), a_t the least-squares fit (8-bit log code). */
static void vkve_tc_values(const float *src, float *dst, const vkve_chunk *ck, uint32_t H,
                           uint32_t D, uint32_t h, int dtype, float *a, float *b)
{
    size_t row = (size_t)H * D;
    uint32_t nv = ck->nv;
    for (uint32_t d = 0; d < D; d++) {
        double s = 0;
        for (uint32_t j = 0; j < nv; j++)
            s += fabsf(src[ck->vt[j] * row + (size_t)h * D + d]);
        b[d] = vkvtn_round_dtype((float)(s / nv), dtype);
    }
    double bb = 0;
    for (uint32_t d = 0; d < D; d++)
        bb += (double)b[d] * b[d];
    for (uint32_t j = 0; j < nv; j++) {
        const float *x = src + ck->vt[j] * row + (size_t)h * D;
        double s = 0;
        for (uint32_t d = 0; d < D; d++)
            s += fabsf(x[d]) * b[d];
        a[j] = bb > 0 ? (float)(s / bb) : 0.0f;
    }
    vkve_logcode8(a, nv, dtype);
    for (uint32_t j = 0; j < nv; j++) {
        const float *x = src + ck->vt[j] * row + (size_t)h * D;
        float *o = dst + ck->vt[j] * row + (size_t)h * D;
        for (uint32_t d = 0; d < D; d++)
            o[d] = vkvtn_round_dtype((x[d] >= 0 ? 1.0f : -1.0f) * a[j] * b[d], dtype);
    }
}

/* ---- the real block codec ------------------------------------------------ */

/* Encodes and decodes one chunk with the library; writes decoded floats of
 * all tokens of the chunk into ko/vo (offset to the chunk). */
static int vkve_block_chunk(const vkve_codec *c, const vkve_data *in, const vkve_chunk *ck,
                            int dtype, float **ko, float **vo, char *err, size_t errlen)
{
    uint32_t L = in->layers, H = in->kv_heads, D = in->head_dim;
    size_t row = (size_t)H * D, n = (size_t)ck->n * row;
    vkv_shape sh;
    memset(&sh, 0, sizeof sh);
    sh.layers = L;
    sh.kv_heads = H;
    sh.head_dim = D;
    sh.tokens = ck->n;
    sh.dtype = (uint8_t)dtype;
    if (ck->nr > VKV_BLOCK_MAX_RANGES)
        return vkv_errbuf(err, errlen, VKV_ERANGES,
                          "chunk at token %u has %u visual ranges (max %u)", ck->t0, ck->nr,
                          VKV_BLOCK_MAX_RANGES);
    sh.n_ranges = ck->nr;
    memcpy(sh.ranges, ck->r, ck->nr * sizeof ck->r[0]);
    size_t bsz = 0;
    int rc = vkv_codec_encoded_size(&sh, &c->spec, &bsz);
    if (rc != VKV_OK)
        return vkv_errbuf(err, errlen, rc, "%s: %s", c->text, vkv_strerror(rc));
    uint16_t *buf = malloc(4 * (size_t)L * n * sizeof(uint16_t) + 1);
    const void **sp = malloc(2 * (size_t)L * sizeof(void *) + 1);
    void **dp = malloc(2 * (size_t)L * sizeof(void *) + 1);
    void *blk = malloc(bsz);
    if (!buf || !sp || !dp || !blk) {
        rc = vkv_errbuf(err, errlen, VKV_ENOMEM, "out of memory");
        goto out;
    }
    for (uint32_t l = 0; l < L; l++) {
        uint16_t *ks = buf + (4 * (size_t)l) * n, *vs = ks + n;
        const float *kf = in->k[l] + ck->t0 * row, *vf = in->v[l] + ck->t0 * row;
        for (size_t i = 0; i < n; i++) {
            ks[i] = dtype == VKV_DTYPE_BF16 ? vkvtn_f32_to_bf16(kf[i]) : vkvtn_f32_to_f16(kf[i]);
            vs[i] = dtype == VKV_DTYPE_BF16 ? vkvtn_f32_to_bf16(vf[i]) : vkvtn_f32_to_f16(vf[i]);
        }
        sp[l] = ks;
        sp[L + l] = vs;
        dp[l] = vs + n;
        dp[L + l] = vs + 2 * n;
    }
    vkv_kv_src src = {.k = sp, .v = sp + L, .token_stride = row, .head_stride = D};
    vkv_kv_dst dst = {
        .k = dp, .v = dp + L, .token_stride = row, .head_stride = D, .geom = vkv_geometry_of(&sh)};
    /* tc aw=1: the dump's prefill-query channel weights steer the keys */
    const float *const *kw = c->tc_aw && in->qw ? (const float *const *)in->qw : NULL;
    rc = vkv_encode_weighted(&sh, &c->spec, &src, kw, blk, bsz);
    if (rc == VKV_OK)
        rc = vkv_decode(blk, bsz, VKV_DECODE_VERIFY, &dst);
    if (rc != VKV_OK) {
        rc = vkv_errbuf(err, errlen, rc, "%s: block codec failed: %s", c->text, vkv_strerror(rc));
        goto out;
    }
    for (uint32_t l = 0; l < L; l++) {
        const uint16_t *kd = dp[l], *vd = dp[L + l];
        float *kf = ko[l] + ck->t0 * row, *vf = vo[l] + ck->t0 * row;
        for (size_t i = 0; i < n; i++) {
            kf[i] = dtype == VKV_DTYPE_BF16 ? vkvtn_bf16_to_f32(kd[i]) : vkvtn_f16_to_f32(kd[i]);
            vf[i] = dtype == VKV_DTYPE_BF16 ? vkvtn_bf16_to_f32(vd[i]) : vkvtn_f16_to_f32(vd[i]);
        }
    }
out:
    free(buf);
    free(sp);
    free(dp);
    free(blk);
    return rc;
}

/* ---- driver ---------------------------------------------------------------- */

/* See codecs.h. */
int vkve_codec_apply(const vkve_codec *c, const vkve_data *in, uint32_t chunk, float **k_out,
                     float **v_out, char *err, size_t errlen)
{
    uint32_t L = in->layers, H = in->kv_heads, D = in->head_dim, T = in->tokens;
    int dtype = in->dtype == VKVTN_ST_BF16 ? VKV_DTYPE_BF16 : VKV_DTYPE_F16;
    size_t row = (size_t)H * D;
    if (chunk == 0)
        return vkv_errbuf(err, errlen, VKV_EINVAL, "chunk size must be positive");
    if (c->kind == VKVE_ROTSIGN && (D & (D - 1)))
        return vkv_errbuf(err, errlen, VKV_ESHAPE, "rotsign needs a power-of-two head_dim (got %u)",
                          D);
    if (c->kind == VKVE_BLOCK && c->spec.rule != VKV_RULE_ROTSIGN && c->spec.rule != VKV_RULE_TC &&
        ((c->spec.k_mode == VKV_GROUP_TOKEN && c->spec.k_group && D % c->spec.k_group) ||
         (c->spec.v_mode == VKV_GROUP_TOKEN && c->spec.v_group && D % c->spec.v_group)))
        return vkv_errbuf(err, errlen, VKV_EGROUP, "%s: token group does not divide head_dim %u",
                          c->text, D);
    /* raw tokens (and the starting point of every codec): the source rounded
     * to the codec dtype */
    for (uint32_t l = 0; l < L; l++)
        for (size_t i = 0; i < (size_t)T * row; i++) {
            k_out[l][i] = vkvtn_round_dtype(in->k[l][i], dtype);
            v_out[l][i] = vkvtn_round_dtype(in->v[l][i], dtype);
        }
    if (c->kind == VKVE_FP16)
        return VKV_OK;
    size_t big = (chunk > D ? chunk : D);
    uint32_t *vt = malloc(chunk * sizeof *vt);
    float *buf = malloc(big * sizeof(float)), *scr = malloc(big * sizeof(float));
    float *y = malloc((size_t)chunk * D * sizeof(float)), *a = malloc(chunk * sizeof(float));
    float *b = malloc(D * sizeof(float)), *mu = malloc(D * sizeof(float)),
          *sg = malloc(D * sizeof(float));
    uint8_t *tcb = malloc(D);
    int rc = VKV_OK;
    if (!vt || !buf || !scr || !y || !a || !b || !mu || !sg || !tcb) {
        rc = vkv_errbuf(err, errlen, VKV_ENOMEM, "out of memory");
        goto out;
    }
    vkve_rng rng;
    vkve_rng_seed(&rng, c->seed);
    for (uint32_t d = 0; d < D; d++)
        sg[d] = (vkve_rng_u64(&rng) >> 63) ? -1.0f : 1.0f;
    for (uint32_t t0 = 0; t0 < T && rc == VKV_OK; t0 += chunk) {
        vkve_chunk ck;
        ck.vt = vt;
        vkve_chunk_at(in, t0, chunk, &ck);
        if (ck.nv == 0)
            continue;
        if (c->kind == VKVE_BLOCK && !c->sim) {
            rc = vkve_block_chunk(c, in, &ck, dtype, k_out, v_out, err, errlen);
            continue;
        }
        for (uint32_t l = 0; l < L; l++) {
            /* the sources are the dtype-rounded copies already in k_out/v_out */
            float *ks = k_out[l] + t0 * row, *vs = v_out[l] + t0 * row;
            if (c->kind == VKVE_BLOCK) {
                vkve_rule_arg ka = {c->spec.rule, c->spec.iters, c->spec.k_param};
                vkve_rule_arg va = {c->spec.rule, c->spec.iters, c->spec.v_param};
                vkve_groups(ks, ks, &ck, H, D, c->spec.k_mode, c->spec.k_group, vkve_rule_fn, &ka,
                            dtype, buf, scr);
                vkve_groups(vs, vs, &ck, H, D, c->spec.v_mode, c->spec.v_group, vkve_rule_fn, &va,
                            dtype, buf, scr);
            } else if (c->kind == VKVE_CALIBQUANT) {
                vkve_cq_arg ka = {c->ks}, va = {c->vs};
                vkve_groups(ks, ks, &ck, H, D, VKV_GROUP_CHANNEL, 0, vkve_cq_fn, &ka, dtype, buf,
                            scr);
                vkve_groups(vs, vs, &ck, H, D, VKV_GROUP_CHANNEL, 0, vkve_cq_fn, &va, dtype, buf,
                            scr);
            } else if (c->kind == VKVE_REF2BIT) {
                vkve_groups(ks, ks, &ck, H, D, VKV_GROUP_CHANNEL, 256, vkve_2bit_fn, NULL, dtype,
                            buf, scr);
                vkve_groups(vs, vs, &ck, H, D, VKV_GROUP_TOKEN, 0, vkve_2bit_fn, NULL, dtype, buf,
                            scr);
            } else if (c->kind == VKVE_TC) {
                for (uint32_t h = 0; h < H; h++) {
                    const float *qw = c->tc_aw && in->qw ? in->qw[l] + (size_t)h * D : NULL;
                    vkve_tc_keys(c, ks, ks, &ck, H, D, h, dtype, qw, y, a, mu, b, scr, tcb);
                    if (c->tc_vb > 0) {
                        vkve_codec vc = vkve_tc_vcodec(c);
                        vkve_tc_keys(&vc, vs, vs, &ck, H, D, h, dtype, NULL, y, a, mu, b, scr, tcb);
                    } else {
                        vkve_tc_values(vs, vs, &ck, H, D, h, dtype, a, b);
                    }
                }
            } else {
                for (uint32_t h = 0; h < H; h++) {
                    vkve_rotsign_head(c, 0, ks, ks, &ck, H, D, h, sg, dtype, y, a, b, mu);
                    vkve_rotsign_head(c, 1, vs, vs, &ck, H, D, h, sg, dtype, y, a, b, mu);
                }
            }
        }
    }
out:
    free(vt), free(buf), free(scr), free(y), free(a), free(b), free(mu), free(sg), free(tcb);
    return rc;
}
