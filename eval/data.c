/* eval/data.c - the measured KV cache and its safetensors I/O (see data.h). */
#include "eval/data.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tensor/safetensors.h"
#include "vkv/error.h"

/* See data.h. */
int vkve_layers_alloc(uint32_t layers, size_t n, float ***out)
{
    float **a = calloc(layers ? layers : 1, sizeof *a);
    if (!a)
        return VKV_ENOMEM;
    for (uint32_t l = 0; l < layers; l++) {
        a[l] = calloc(n ? n : 1, sizeof **a);
        if (!a[l]) {
            vkve_layers_free(a, l);
            return VKV_ENOMEM;
        }
    }
    *out = a;
    return VKV_OK;
}

/* See data.h. */
void vkve_layers_free(float **a, uint32_t layers)
{
    if (!a)
        return;
    for (uint32_t l = 0; l < layers; l++)
        free(a[l]);
    free(a);
}

/* See data.h. */
int vkve_data_alloc(vkve_data *d)
{
    size_t kv = (size_t)d->tokens * d->kv_heads * d->head_dim;
    size_t qn = (size_t)d->n_queries * d->n_heads * d->head_dim;
    d->k = d->v = d->q = d->qw = NULL;
    if (vkve_layers_alloc(d->layers, kv, &d->k) || vkve_layers_alloc(d->layers, kv, &d->v) ||
        vkve_layers_alloc(d->layers, qn, &d->q)) {
        vkve_data_free(d);
        return VKV_ENOMEM;
    }
    return VKV_OK;
}

/* See data.h. */
int vkve_data_alloc_qw(vkve_data *d)
{
    return vkve_layers_alloc(d->layers, (size_t)d->kv_heads * d->head_dim, &d->qw);
}

/* See data.h. */
void vkve_data_free(vkve_data *d)
{
    vkve_layers_free(d->k, d->layers);
    vkve_layers_free(d->v, d->layers);
    vkve_layers_free(d->q, d->layers);
    vkve_layers_free(d->qw, d->layers);
    d->k = d->v = d->q = d->qw = NULL;
}

/* See data.h. */
int vkve_is_visual(const vkve_data *d, uint32_t t)
{
    for (uint32_t i = 0; i < d->n_ranges; i++)
        if (t >= d->ranges[i].start && t - d->ranges[i].start < d->ranges[i].len)
            return 1;
    return 0;
}

/* See data.h. */
uint32_t vkve_n_visual(const vkve_data *d)
{
    uint32_t n = 0;
    for (uint32_t i = 0; i < d->n_ranges; i++)
        n += d->ranges[i].len;
    return n;
}

/* See data.h. */
int vkve_ranges_parse(const char *s, uint32_t tokens, vkv_block_range *r, uint32_t *n)
{
    uint32_t cnt = 0;
    uint64_t prev_end = 0;
    const char *p = s;
    while (*p) {
        char *e1, *e2;
        unsigned long long a = strtoull(p, &e1, 10);
        if (e1 == p || *e1 != ':')
            return VKV_ERANGES;
        unsigned long long b = strtoull(e1 + 1, &e2, 10);
        if (e2 == e1 + 1 || (*e2 != ',' && *e2 != '\0'))
            return VKV_ERANGES;
        if (b <= a || b > tokens || a < prev_end || cnt >= VKVE_MAX_RANGES)
            return VKV_ERANGES;
        r[cnt].start = (uint32_t)a;
        r[cnt].len = (uint32_t)(b - a);
        cnt++;
        prev_end = b;
        p = *e2 ? e2 + 1 : e2;
    }
    if (cnt == 0)
        return VKV_ERANGES;
    *n = cnt;
    return VKV_OK;
}

/* See data.h. */
void vkve_ranges_format(const vkv_block_range *r, uint32_t nr, char *buf, size_t n)
{
    size_t used = 0;
    if (n)
        buf[0] = '\0';
    for (uint32_t i = 0; i < nr && used < n; i++) {
        int w = snprintf(buf + used, n - used, "%s%u:%u", i ? "," : "", r[i].start,
                         r[i].start + r[i].len);
        if (w < 0)
            return;
        used += (size_t)w;
    }
}

/* Copies tensor t (expected [a][b][c]) into dst, checking its shape. */
static int vkve_data_take(const vkvtn_st_tensor *t, uint64_t a, uint64_t b, uint64_t c, float *dst,
                          char *err, size_t errlen)
{
    if (t->ndim != 3 || t->shape[0] != a || t->shape[1] != b || t->shape[2] != c) {
        snprintf(err, errlen, "tensor '%s' has the wrong shape (want [%llu, %llu, %llu])", t->name,
                 (unsigned long long)a, (unsigned long long)b, (unsigned long long)c);
        return VKV_ESHAPE;
    }
    return vkvtn_st_to_f32(t, dst);
}

/* Reads the shape of the dump f into d: tokens, KV heads, head_dim and
 * dtype from layers.0.k, the layer count, and n_queries / n_heads from
 * layers.0.q when *q0 (set here) is present. Returns VKV_OK or VKV_ESHAPE
 * (message in err). */
static int vkve_data_shape(const vkvtn_st_file *f, const char *path, vkve_data *d,
                           const vkvtn_st_tensor **q0, char *err, size_t errlen)
{
    const vkvtn_st_tensor *k0 = vkvtn_st_find(f, "layers.0.k");
    *q0 = vkvtn_st_find(f, "layers.0.q");
    char name[64];
    if (!k0 || k0->ndim != 3 || k0->shape[0] == 0 || k0->shape[1] == 0 || k0->shape[2] == 0 ||
        k0->shape[0] > VKV_BLOCK_MAX_TOKENS * 16u || k0->shape[1] > VKV_BLOCK_MAX_HEADS ||
        k0->shape[2] > VKV_BLOCK_MAX_HEAD_DIM) {
        snprintf(err, errlen, "%s: needs layers.0.k of shape [tokens, kv_heads, head_dim]", path);
        return VKV_ESHAPE;
    }
    d->tokens = (uint32_t)k0->shape[0];
    d->kv_heads = (uint32_t)k0->shape[1];
    d->head_dim = (uint32_t)k0->shape[2];
    d->dtype = k0->dtype;
    while (d->layers < VKV_BLOCK_MAX_LAYERS) {
        snprintf(name, sizeof name, "layers.%u.k", d->layers);
        if (!vkvtn_st_find(f, name))
            break;
        d->layers++;
    }
    const vkvtn_st_tensor *q = *q0;
    if (q) {
        if (q->ndim != 3 || q->shape[0] == 0 || q->shape[2] != d->head_dim || q->shape[1] == 0 ||
            q->shape[1] % d->kv_heads != 0 || q->shape[0] > 65536 || q->shape[1] > 4096) {
            snprintf(err, errlen,
                     "layers.0.q must be [n_queries, n_heads, %u] with n_heads a multiple of %u",
                     d->head_dim, d->kv_heads);
            return VKV_ESHAPE;
        }
        d->n_queries = (uint32_t)q->shape[0];
        d->n_heads = (uint32_t)q->shape[1];
    }
    return VKV_OK;
}

/* Reads the visual ranges of the dump f into d (default: every token).
 * Returns VKV_OK or VKV_ERANGES (message in err). */
static int vkve_data_ranges(const vkvtn_st_file *f, vkve_data *d, char *err, size_t errlen)
{
    const char *vr = vkvtn_st_meta(f, "visual_ranges");
    if (!vr) {
        d->n_ranges = 1;
        d->ranges[0].start = 0;
        d->ranges[0].len = d->tokens;
        return VKV_OK;
    }
    if (vkve_ranges_parse(vr, d->tokens, d->ranges, &d->n_ranges) != VKV_OK) {
        snprintf(err, errlen, "metadata visual_ranges '%s' is malformed or out of [0, %u)", vr,
                 d->tokens);
        return VKV_ERANGES;
    }
    return VKV_OK;
}

/* Copies tensor `name` of the dump f (expected [a][b][c]) into dst.
 * Returns VKV_OK, VKV_ESHAPE (missing or misshapen) or a conversion error
 * (message in err). */
static int vkve_data_get(const vkvtn_st_file *f, const char *path, const char *name, uint64_t a,
                         uint64_t b, uint64_t c, float *dst, char *err, size_t errlen)
{
    const vkvtn_st_tensor *t = vkvtn_st_find(f, name);
    if (!t) {
        snprintf(err, errlen, "%s: missing tensor '%s'", path, name);
        return VKV_ESHAPE;
    }
    return vkve_data_take(t, a, b, c, dst, err, errlen);
}

/* Reads layer l of the dump f into d's allocated arrays: qw when d has it,
 * k and v, and q when has_q. Returns as vkve_data_get. */
static int vkve_data_layer(const vkvtn_st_file *f, const char *path, vkve_data *d, uint32_t l,
                           int has_q, char *err, size_t errlen)
{
    char name[64];
    int rc;
    if (d->qw) {
        snprintf(name, sizeof name, "layers.%u.qw", l);
        rc = vkve_data_get(f, path, name, 1, d->kv_heads, d->head_dim, d->qw[l], err, errlen);
        if (rc != VKV_OK)
            return rc;
    }
    const char *kinds = has_q ? "kvq" : "kv";
    for (const char *c = kinds; *c; c++) {
        snprintf(name, sizeof name, "layers.%u.%c", l, *c);
        if (*c == 'q')
            rc = vkve_data_get(f, path, name, d->n_queries, d->n_heads, d->head_dim, d->q[l], err,
                               errlen);
        else
            rc = vkve_data_get(f, path, name, d->tokens, d->kv_heads, d->head_dim,
                               *c == 'k' ? d->k[l] : d->v[l], err, errlen);
        if (rc != VKV_OK)
            return rc;
    }
    return VKV_OK;
}

/* Proxy queries of layer l: the keys of the last n_queries tokens,
 * preferring raw ones. */
static void vkve_proxy_queries(vkve_data *d, uint32_t l)
{
    uint32_t got = 0;
    size_t row = (size_t)d->kv_heads * d->head_dim;
    for (int pass = 0; pass < 2 && got < d->n_queries; pass++)
        for (uint32_t t = d->tokens; t-- > 0 && got < d->n_queries;)
            if (vkve_is_visual(d, t) == pass) {
                memcpy(d->q[l] + got * row, d->k[l] + t * row, row * sizeof(float));
                got++;
            }
}

/* See data.h. */
int vkve_data_load(const char *path, vkve_data *d, char *err, size_t errlen)
{
    vkvtn_st_file *f = NULL;
    const vkvtn_st_tensor *q0;
    memset(d, 0, sizeof *d);
    int rc = vkvtn_st_read_file(path, &f, err, errlen);
    if (rc != VKV_OK)
        return rc;
    rc = vkve_data_shape(f, path, d, &q0, err, errlen);
    if (rc == VKV_OK)
        rc = vkve_data_ranges(f, d, err, errlen);
    if (rc != VKV_OK)
        goto fail;
    if (!q0) {
        /* proxy queries: keys of the last raw tokens, or the last tokens */
        d->n_heads = d->kv_heads;
        d->n_queries = d->tokens < 8 ? d->tokens : 8;
        d->proxy_queries = 1;
    }
    rc = vkve_data_alloc(d);
    if (rc != VKV_OK) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    if (vkvtn_st_find(f, "layers.0.qw") && vkve_data_alloc_qw(d) != VKV_OK) {
        snprintf(err, errlen, "out of memory");
        rc = VKV_ENOMEM;
        goto fail;
    }
    for (uint32_t l = 0; l < d->layers; l++) {
        rc = vkve_data_layer(f, path, d, l, q0 != NULL, err, errlen);
        if (rc != VKV_OK)
            goto fail;
        if (!q0)
            vkve_proxy_queries(d, l);
    }
    const char *base = strrchr(path, '/');
    snprintf(d->name, sizeof d->name, "%s", base ? base + 1 : path);
    vkvtn_st_free(f);
    return VKV_OK;
fail:
    vkve_data_free(d);
    vkvtn_st_free(f);
    return rc;
}

/* See data.h. */
int vkve_data_save(const char *path, const vkve_data *d, int dtype, const char *const *meta,
                   size_t n_meta, char *err, size_t errlen)
{
    size_t per = (d->proxy_queries ? 2 : 3) + (d->qw ? 1 : 0);
    size_t nt = per * d->layers;
    vkvtn_st_out *t = calloc(nt ? nt : 1, sizeof *t);
    char(*names)[32] = calloc(nt ? nt : 1, sizeof *names);
    const char **m = calloc(2 * n_meta + 2, sizeof *m);
    char ranges[VKVE_MAX_RANGES * 24];
    int rc;
    if (!t || !names || !m) {
        rc = VKV_ENOMEM;
        goto out;
    }
    for (uint32_t l = 0; l < d->layers; l++) {
        for (size_t j = 0; j < per; j++) {
            vkvtn_st_out *o = &t[l * per + j];
            char c = d->qw && j == per - 1 ? 'w' : "kvq"[j];
            if (c == 'w')
                snprintf(names[l * per + j], sizeof names[0], "layers.%u.qw", l);
            else
                snprintf(names[l * per + j], sizeof names[0], "layers.%u.%c", l, c);
            o->name = names[l * per + j];
            o->dtype = c == 'w' ? VKVTN_ST_F32 : dtype;
            o->ndim = 3;
            if (c == 'w') {
                o->shape[0] = 1;
                o->shape[1] = d->kv_heads;
                o->shape[2] = d->head_dim;
                o->data = d->qw[l];
                continue;
            }
            o->shape[0] = c == 'q' ? d->n_queries : d->tokens;
            o->shape[1] = c == 'q' ? d->n_heads : d->kv_heads;
            o->shape[2] = d->head_dim;
            o->data = c == 'k' ? d->k[l] : c == 'v' ? d->v[l] : d->q[l];
        }
    }
    vkve_ranges_format(d->ranges, d->n_ranges, ranges, sizeof ranges);
    m[0] = "visual_ranges";
    m[1] = ranges;
    for (size_t i = 0; i < 2 * n_meta; i++)
        m[2 + i] = meta[i];
    rc = vkvtn_st_write(path, t, nt, m, n_meta + 1, err, errlen);
out:
    free(t);
    free(names);
    free(m);
    return rc;
}
