/*
 * client/vkvctl/block.c - one block fetched through a worker-like session
 * (show --layers, export), and its anatomy for `show --layers`: codec,
 * visual ranges, bytes per section and per layer, K/V scale statistics.
 */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "client/vkvctl/vkvctl.h"
#include "common/errbuf.h"
#include "kernels/codec_math.h"
#include "kernels/codec_tc.h"
#include "vkv/vkv.h"

int vkvctl_with_block(const char *ns, const vkv_key *key,
                      int (*fn)(const vkv_view *, void *, char *, size_t), void *arg)
{
    char keyhex[65], why[VKVP_MAX_NS + 200];
    vkv_key_hex(key, keyhex);
    vkv_options opt = {0};
    opt.rundir = vkvctl.rundir;
    opt.ns = ns;
    opt.ns_is_full = 1;
    opt.name = "vkvctl-fetch";
    opt.timeout_ms = 30000;
    vkv_client *w = NULL;
    int rc = vkv_connect(&opt, &w);
    if (rc) {
        snprintf(why, sizeof why, "cannot open a session in namespace '%s': %s", ns,
                 vkv_strerror(rc));
        return vkvctl_fail(rc, why);
    }
    vkv_fetch *f = NULL;
    if ((rc = vkv_fetch_begin(w, key, 1, &f)) != 0) {
        vkv_close(w);
        return vkvctl_fail(rc, NULL);
    }
    if (vkv_fetch_count(f) != 1) {
        vkv_fetch_release(w, f);
        vkv_close(w);
        snprintf(why, sizeof why, "no entry %s in namespace '%s'", keyhex, ns);
        return vkvctl_fail(VKV_ENOTFOUND, why);
    }
    vkv_view view = vkv_fetch_view(f, 0);
    char err[256] = "";
    rc = fn(&view, arg, err, sizeof err);
    vkv_fetch_release(w, f);
    vkv_close(w);
    if (rc == VKV_EIO) {
        vkvctl_fail(rc, err);
        return VKVCTL_EX_IO;
    }
    return rc ? vkvctl_fail(rc, err) : VKVCTL_EX_OK;
}

/* min / mean / max of the finite values added to it. */
struct stat3 {
    double min, max, sum;
    uint64_t n;
};

/* Adds v to st unless it is NaN or infinite. */
static void stat_add(struct stat3 *st, double v)
{
    if (!isfinite(v))
        return;
    if (st->n == 0 || v < st->min)
        st->min = v;
    if (st->n == 0 || v > st->max)
        st->max = v;
    st->sum += v;
    st->n++;
}

/* {min, mean, max, count} of st as JSON, or null when it saw no value. */
static cJSON *stat_json(const struct stat3 *st)
{
    if (st->n == 0)
        return cJSON_CreateNull();
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "min", st->min);
    cJSON_AddNumberToObject(o, "mean", st->sum / (double)st->n);
    cJSON_AddNumberToObject(o, "max", st->max);
    cJSON_AddNumberToObject(o, "count", (double)st->n);
    return o;
}

/* Little-endian 16-bit element at p, as a float of dtype. */
static float elem_f32(const uint8_t *p, int dtype)
{
    return vkvk_to_f32((uint16_t)(p[0] | (p[1] << 8)), dtype);
}

/* Scale statistics of one layer's LEV section of K or V (lev: its bytes,
 * levl: their count). rotsign: the per-token scales after the [kv_heads]
 * [head_dim] vector (scale bits sbits); tc: the per-token scales (each
 * head's top times its 8-bit code); the other rules: the spread
 * high - low of every group's two levels (CHANNEL rows or TOKEN pairs).
 * Returns 0, or VKV_ECORRUPT when levl does not match that layout. */
static int lev_stats(const vkv_block_header *h, int is_v, const uint8_t *lev, uint64_t levl,
                     uint32_t n_vis, struct stat3 *st)
{
    uint32_t H = h->kv_heads, D = h->head_dim;
    int mode = is_v ? h->v_mode : h->k_mode;
    memset(st, 0, sizeof *st);
    if (levl == 0)
        return 0;
    if (h->rule == VKV_RULE_TC) { /* per head a record ending in `top`, then the scale bytes */
        int coded = !is_v || mode == VKV_GROUP_TOKEN;
        uint64_t rec = vkvk_tc_rec_bytes(coded, D);
        if (levl != (uint64_t)H * rec + (uint64_t)n_vis * H)
            return VKV_ECORRUPT;
        for (uint64_t i = 0; i < (uint64_t)n_vis * H; i++)
            stat_add(st, vkvk_tc_scale(elem_f32(lev + (i % H) * rec + rec - 2, h->dtype),
                                       lev[(uint64_t)H * rec + i]));
        return 0;
    }
    if (h->rule == VKV_RULE_ROTSIGN) {
        int sbits = is_v ? h->v_group : h->k_group;
        uint64_t sb = (uint64_t)sbits / 8, vec = (uint64_t)H * D * 2;
        if (levl != vec + (uint64_t)n_vis * H * sb)
            return VKV_ECORRUPT;
        for (uint64_t i = 0; i < (uint64_t)n_vis * H; i++)
            stat_add(st, vkvk_rot_scale_get(lev + vec + i * sb, sbits, h->dtype));
        return 0;
    }
    if (mode == VKV_GROUP_CHANNEL) {
        uint64_t row = (uint64_t)D * 2, per = (uint64_t)H * 2 * row; /* one group, every head */
        if (levl % per)
            return VKV_ECORRUPT;
        for (uint64_t g = 0; g < levl / per; g++)
            for (uint32_t hh = 0; hh < H; hh++) {
                const uint8_t *lo = lev + g * per + (uint64_t)hh * 2 * row, *hi = lo + row;
                for (uint32_t d = 0; d < D; d++)
                    stat_add(st, (double)elem_f32(hi + 2 * d, h->dtype) -
                                     (double)elem_f32(lo + 2 * d, h->dtype));
            }
        return 0;
    }
    if (levl % 4)
        return VKV_ECORRUPT;
    for (uint64_t p = 0; p < levl / 4; p++)
        stat_add(st, (double)elem_f32(lev + 4 * p + 2, h->dtype) -
                         (double)elem_f32(lev + 4 * p, h->dtype));
    return 0;
}

/* A checked block as vkvctl_block_layers describes it. */
struct block_desc {
    vkv_block_header h;
    vkv_shape sh;
    char codec[128];             /* the codec spec, formatted */
    uint32_t n_vis;              /* visual tokens */
    uint64_t per[VKV_SEC_COUNT]; /* bytes of each section per layer */
    uint64_t sum;                /* bytes of every section */
};

/* Checks the block in view and describes it into *d. Returns 0, or a
 * VKV_E* code with a message in err (VKV_ECORRUPT: a section does not
 * split into the layers). */
static int block_describe(const vkv_view *view, struct block_desc *d, char *err, size_t errlen)
{
    vkv_block_header *h = &d->h;
    int rc = vkv_block_check(view->data, view->size, VKV_DECODE_VERIFY, h);
    if (rc)
        return vkv_errbuf(err, errlen, rc, "block check failed: %s", vkv_strerror(rc));
    vkv_codec_spec spec;
    vkv_block_shape(h, &d->sh, &spec);
    vkv_codec_spec_format(&spec, d->codec, sizeof d->codec);
    uint32_t L = h->layers;
    d->n_vis = 0;
    for (uint32_t r = 0; r < h->n_ranges; r++)
        d->n_vis += h->ranges[r].len;
    d->sum = 0;
    for (int i = 0; i < VKV_SEC_COUNT; i++) {
        if (L == 0 || h->sections[i].size % L) {
            snprintf(err, errlen, "section %d of %llu bytes does not split into %u layers", i,
                     (unsigned long long)h->sections[i].size, L);
            return VKV_ECORRUPT;
        }
        d->per[i] = h->sections[i].size / L;
        d->sum += h->sections[i].size;
    }
    return 0;
}

/* Adds the whole block's fields to o: codec, shape, visual ranges,
 * raw-token share, bytes per kind of section, bits per element. */
static void block_json_summary(cJSON *o, const struct block_desc *d, const vkv_view *view)
{
    const vkv_block_header *h = &d->h;
    uint32_t n_vis = d->n_vis;
    cJSON_AddStringToObject(o, "codec", d->codec);
    cJSON_AddStringToObject(o, "dtype", h->dtype == VKV_DTYPE_BF16 ? "bf16" : "f16");
    cJSON_AddNumberToObject(o, "layers", h->layers);
    cJSON_AddNumberToObject(o, "tokens", h->tokens);
    cJSON_AddNumberToObject(o, "kv_heads", h->kv_heads);
    cJSON_AddNumberToObject(o, "head_dim", h->head_dim);
    cJSON *vr = cJSON_AddArrayToObject(o, "visual_ranges");
    for (uint32_t r = 0; r < h->n_ranges; r++) {
        cJSON *p = cJSON_CreateArray();
        cJSON_AddItemToArray(p, cJSON_CreateNumber(h->ranges[r].start));
        cJSON_AddItemToArray(p, cJSON_CreateNumber(h->ranges[r].start + h->ranges[r].len));
        cJSON_AddItemToArray(vr, p);
    }
    cJSON_AddNumberToObject(o, "visual_tokens", n_vis);
    cJSON_AddNumberToObject(o, "raw_tokens", h->tokens - n_vis);
    cJSON_AddNumberToObject(o, "raw_token_share",
                            h->tokens ? (double)(h->tokens - n_vis) / h->tokens : 0.0);
    uint64_t raw = h->sections[VKV_SEC_RAW_K].size + h->sections[VKV_SEC_RAW_V].size;
    uint64_t bits = h->sections[VKV_SEC_BITS_K].size + h->sections[VKV_SEC_BITS_V].size;
    uint64_t lev = h->sections[VKV_SEC_LEV_K].size + h->sections[VKV_SEC_LEV_V].size;
    cJSON_AddNumberToObject(o, "bytes", (double)view->size);
    cJSON_AddNumberToObject(o, "header_bytes", h->header_size);
    cJSON_AddNumberToObject(o, "raw_bytes", (double)raw);
    cJSON_AddNumberToObject(o, "bits_bytes", (double)bits);
    cJSON_AddNumberToObject(o, "lev_bytes", (double)lev);
    cJSON_AddNumberToObject(o, "padding_bytes", (double)(h->total_size - h->header_size - d->sum));
    cJSON_AddNumberToObject(o, "raw_byte_share", (double)raw / (double)view->size);
    cJSON_AddNumberToObject(o, "bits_per_element", vkv_codec_bits_per_element(&d->sh, view->size));
    cJSON_AddStringToObject(o, "scale_kind",
                            h->rule == VKV_RULE_ROTSIGN || h->rule == VKV_RULE_TC ? "scale"
                                                                                  : "spread");
}

/* The per_layer item of layer l of the block in view: its bytes per kind of
 * section and its K and V scale statistics (caller owns it). NULL with a
 * message in err when a LEV section does not have the codec's layout. */
static cJSON *block_json_layer(const struct block_desc *d, const vkv_view *view, uint32_t l,
                               char *err, size_t errlen)
{
    const uint64_t *per = d->per;
    cJSON *j = cJSON_CreateObject();
    cJSON_AddNumberToObject(j, "layer", l);
    uint64_t b = 0;
    for (int i = 0; i < VKV_SEC_COUNT; i++)
        b += per[i];
    cJSON_AddNumberToObject(j, "bytes", (double)b);
    cJSON_AddNumberToObject(j, "raw_bytes", (double)(per[VKV_SEC_RAW_K] + per[VKV_SEC_RAW_V]));
    cJSON_AddNumberToObject(j, "bits_bytes", (double)(per[VKV_SEC_BITS_K] + per[VKV_SEC_BITS_V]));
    cJSON_AddNumberToObject(j, "lev_bytes", (double)(per[VKV_SEC_LEV_K] + per[VKV_SEC_LEV_V]));
    const uint8_t *base = view->data;
    for (int kv = 0; kv < 2; kv++) {
        int sec = kv ? VKV_SEC_LEV_V : VKV_SEC_LEV_K;
        struct stat3 st;
        const uint8_t *p = base + d->h.sections[sec].offset + (uint64_t)l * per[sec];
        if (lev_stats(&d->h, kv, p, per[sec], d->n_vis, &st) != 0) {
            cJSON_Delete(j);
            snprintf(err, errlen, "layer %u: %s section does not have the %s layout", l,
                     kv ? "LEV_V" : "LEV_K", d->codec);
            return NULL;
        }
        cJSON_AddItemToObject(j, kv ? "v_scale" : "k_scale", stat_json(&st));
    }
    return j;
}

int vkvctl_block_layers(const vkv_view *view, void *arg, char *err, size_t errlen)
{
    cJSON *o = arg;
    struct block_desc d;
    int rc = block_describe(view, &d, err, errlen);
    if (rc)
        return rc;
    block_json_summary(o, &d, view);
    cJSON *layers = cJSON_AddArrayToObject(o, "per_layer");
    for (uint32_t l = 0; l < d.h.layers; l++) {
        cJSON *j = block_json_layer(&d, view, l, err, errlen);
        if (!j)
            return VKV_ECORRUPT;
        cJSON_AddItemToArray(layers, j);
    }
    return 0;
}

/* Prints one min/mean/max triple of a per_layer item (or "-"), 26 columns. */
static void print_stat(const cJSON *st)
{
    if (!cJSON_IsObject(st)) {
        printf("  %-24s", "-");
        return;
    }
    char buf[64];
    snprintf(buf, sizeof buf, "%.3g / %.3g / %.3g", cJSON_GetObjectItem(st, "min")->valuedouble,
             cJSON_GetObjectItem(st, "mean")->valuedouble,
             cJSON_GetObjectItem(st, "max")->valuedouble);
    printf("  %-24s", buf);
}

/* Number field of a JSON object (0 when absent). */
static double jnum(const cJSON *o, const char *name)
{
    const cJSON *v = cJSON_GetObjectItem(o, name);
    return cJSON_IsNumber(v) ? v->valuedouble : 0.0;
}

void vkvctl_print_layers(const cJSON *o)
{
    char a[32], b[32], d[32], e[32];
    printf("%scodec:%s    %s\n", vkvctl_col("1"), vkvctl_rst(),
           cJSON_GetObjectItem(o, "codec")->valuestring);
    printf("%sblock:%s    %s, %.0f layers x %.0f tokens x %.0f kv heads x %.0f head dim\n",
           vkvctl_col("1"), vkvctl_rst(), cJSON_GetObjectItem(o, "dtype")->valuestring,
           jnum(o, "layers"), jnum(o, "tokens"), jnum(o, "kv_heads"), jnum(o, "head_dim"));
    printf("%svisual:%s   ", vkvctl_col("1"), vkvctl_rst());
    const cJSON *r;
    int first = 1;
    cJSON_ArrayForEach(r, cJSON_GetObjectItem(o, "visual_ranges"))
    {
        printf("%s%d:%d", first ? "tokens " : ",", cJSON_GetArrayItem(r, 0)->valueint,
               cJSON_GetArrayItem(r, 1)->valueint);
        first = 0;
    }
    printf("%s(%.0f visual, %.0f raw = %.1f%% of the tokens)\n", first ? "none " : " ",
           jnum(o, "visual_tokens"), jnum(o, "raw_tokens"), 100 * jnum(o, "raw_token_share"));
    printf("%sbytes:%s    %s = header %.0f B + raw %s (%.1f%%) + sign bits %s + %s %s + "
           "padding %.0f B; %.3f bits/element\n",
           vkvctl_col("1"), vkvctl_rst(), vkvctl_hsize((uint64_t)jnum(o, "bytes"), a, sizeof a),
           jnum(o, "header_bytes"), vkvctl_hsize((uint64_t)jnum(o, "raw_bytes"), b, sizeof b),
           100 * jnum(o, "raw_byte_share"),
           vkvctl_hsize((uint64_t)jnum(o, "bits_bytes"), d, sizeof d),
           strcmp(cJSON_GetObjectItem(o, "scale_kind")->valuestring, "scale") ? "levels"
                                                                              : "means+scales",
           vkvctl_hsize((uint64_t)jnum(o, "lev_bytes"), e, sizeof e), jnum(o, "padding_bytes"),
           jnum(o, "bits_per_element"));
    const char *kind =
        strcmp(cJSON_GetObjectItem(o, "scale_kind")->valuestring, "scale") ? "SPREAD" : "SCALE";
    char kh[40], vh[40];
    snprintf(kh, sizeof kh, "K %s min/mean/max", kind);
    snprintf(vh, sizeof vh, "V %s min/mean/max", kind);
    printf("%s%5s %10s %10s %10s %10s  %-24s  %-24s%s\n", vkvctl_col("1"), "LAYER", "BYTES", "RAW",
           "BITS", "LEVELS", kh, vh, vkvctl_rst());
    const cJSON *l;
    cJSON_ArrayForEach(l, cJSON_GetObjectItem(o, "per_layer"))
    {
        printf("%5.0f %10s %10s %10s %10s", jnum(l, "layer"),
               vkvctl_hsize((uint64_t)jnum(l, "bytes"), a, sizeof a),
               vkvctl_hsize((uint64_t)jnum(l, "raw_bytes"), b, sizeof b),
               vkvctl_hsize((uint64_t)jnum(l, "bits_bytes"), d, sizeof d),
               vkvctl_hsize((uint64_t)jnum(l, "lev_bytes"), e, sizeof e));
        print_stat(cJSON_GetObjectItem(l, "k_scale"));
        print_stat(cJSON_GetObjectItem(l, "v_scale"));
        putchar('\n');
    }
}
