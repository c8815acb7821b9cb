/* eval/codecs_spec.c - codec spec strings -> vkve_codec (see codecs.h for
 * the syntax; codecs_impl.h for the file map). */
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eval/codecs_impl.h"
#include "common/errbuf.h"
#include "vkv/error.h"

/* Iterates "key=value" pairs of a comma list: copies the next pair's key and
 * value into k / v (bounded) and advances *p. Returns 1 if a pair was read,
 * 0 at the end, VKV_ESPEC on a malformed pair. */
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
        return VKV_ESPEC;
    memcpy(k, s, (size_t)(eq - s));
    k[eq - s] = '\0';
    memcpy(v, eq + 1, (size_t)(end - eq - 1));
    v[end - eq - 1] = '\0';
    *p = *end ? end + 1 : end;
    return 1;
}

/* Parses a whole number in [lo, hi]. Returns true, or false when s is not one. */
static bool vkve_parse_u(const char *s, unsigned long lo, unsigned long hi, unsigned long *out)
{
    char *e;
    unsigned long v = strtoul(s, &e, 10);
    if (e == s || *e || v < lo || v > hi)
        return false;
    *out = v;
    return true;
}

/* Parses a finite float. Returns true, or false when s is not one. */
static bool vkve_parse_f(const char *s, double *out)
{
    char *e;
    double v = strtod(s, &e);
    if (e == s || *e || !isfinite(v))
        return false;
    *out = v;
    return true;
}

/* This module's reading of the block spec syntax, used when the codec
 * library is absent or for "sim-" specs. Same keys and defaults as
 * kernels/codec.c (kg=256 channel, vmode=token vg=0, iters 3, minmax
 * 0.5/0.3, quantile 0.2). Returns true, or false on an invalid spec. */
static bool vkve_block_parse_sim(const char *text, vkv_codec_spec *s)
{
    char rule[16];
    const char *colon = strchr(text, ':');
    size_t rl = colon ? (size_t)(colon - text) : strlen(text);
    if (rl == 0 || rl >= sizeof rule)
        return false;
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
        return false;
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
                return false;
            *(k[0] == 'k' ? &s->k_mode : &s->v_mode) = (uint8_t)m;
        } else if (strcmp(k, "kg") == 0 || strcmp(k, "vg") == 0) {
            if (!vkve_parse_u(v, 0, 65535, &u))
                return false;
            *(k[0] == 'k' ? &s->k_group : &s->v_group) = (uint16_t)u;
        } else if (strcmp(k, "kp") == 0 || strcmp(k, "vp") == 0) {
            if (!vkve_parse_f(v, &f) || s->rule == VKV_RULE_LLOYD || f < 0 || f >= 1 ||
                (s->rule == VKV_RULE_QUANTILE && (f <= 0 || f >= 0.5)))
                return false;
            *(k[0] == 'k' ? &s->k_param : &s->v_param) = (float)f;
        } else if (strcmp(k, "iters") == 0) {
            if (!vkve_parse_u(v, 1, 16, &u) || s->rule != VKV_RULE_LLOYD)
                return false;
            s->iters = (uint8_t)u;
        } else {
            return false;
        }
    }
    if (r < 0 || (s->k_mode == VKV_GROUP_CHANNEL && s->k_group == 0) ||
        (s->v_mode == VKV_GROUP_CHANNEL && s->v_group == 0))
        return false;
    return true;
}

/* Applies one key=value pair of a codec family to *c (f: the value as a
 * number when the family's values are numbers; st: the family's parse
 * state). Returns true, or false for a key or value the family does not
 * take. */
typedef bool (*vkve_key_fn)(vkve_codec *c, const char *k, const char *v, double f, void *st);

/* Walks the key=value list p of spec `text` of family `name`, applying each
 * pair with fn; numeric: every value must be a finite number. Returns VKV_OK
 * or VKV_ESPEC with "NAME: bad value 'v'", "NAME: bad key 'k=v'" or "NAME:
 * malformed 'text'" in err. */
static int vkve_parse_keys(const char *name, const char *text, const char *p, bool numeric,
                           vkve_key_fn fn, vkve_codec *c, void *st, char *err, size_t errlen)
{
    char k[16], v[32];
    int r;
    while ((r = vkve_next_kv(&p, k, sizeof k, v, sizeof v)) == 1) {
        double f = 0;
        if (numeric && !vkve_parse_f(v, &f))
            return vkv_errbuf(err, errlen, VKV_ESPEC, "%s: bad value '%s'", name, v);
        if (!fn(c, k, v, f, st))
            return vkv_errbuf(err, errlen, VKV_ESPEC, "%s: bad key '%s=%s'", name, k, v);
    }
    if (r < 0)
        return vkv_errbuf(err, errlen, VKV_ESPEC, "%s: malformed '%s'", name, text);
    return VKV_OK;
}

/* CalibQuant's parse state: the logit offset and whether it is on. */
typedef struct vkve_cq_keys {
    double off;
    int calib;
} vkve_cq_keys;

/* vkve_key_fn of calibquant: ks, vs in (0, 1], calib 0|1, off > 0. */
static bool vkve_calibquant_key(vkve_codec *c, const char *k, const char *v, double f, void *st)
{
    vkve_cq_keys *q = st;
    (void)v;
    if (strcmp(k, "ks") == 0 && f > 0 && f <= 1)
        c->ks = (float)f;
    else if (strcmp(k, "vs") == 0 && f > 0 && f <= 1)
        c->vs = (float)f;
    else if (strcmp(k, "calib") == 0 && (f == 0 || f == 1))
        q->calib = (int)f;
    else if (strcmp(k, "off") == 0 && f > 0)
        q->off = f;
    else
        return false;
    return true;
}

/* Parses the keys of "calibquant[:...]" (p: after the colon) into *c. Returns
 * VKV_OK or VKV_ESPEC (message in err). */
static int vkve_parse_calibquant(const char *text, const char *p, vkve_codec *c, char *err,
                                 size_t errlen)
{
    vkve_cq_keys q = {.off = 3.0, .calib = 0};
    c->kind = VKVE_CALIBQUANT;
    c->ks = 0.5f;
    c->vs = 0.3f;
    int rc = vkve_parse_keys("calibquant", text, p, true, vkve_calibquant_key, c, &q, err, errlen);
    if (rc != VKV_OK)
        return rc;
    c->calib = q.calib ? q.off : 0.0;
    return VKV_OK;
}

/* vkve_key_fn of sim-tc: kb in (0, 3], alpha in [0, 4], maxb 1..3, minb
 * 0..2, aw 0|1, vb in [0, 3]. */
static bool vkve_sim_tc_key(vkve_codec *c, const char *k, const char *v, double f, void *st)
{
    (void)v, (void)st;
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
        return false;
    return true;
}

/* Parses the keys of the simulated "tc:..." / "sim-tc[:...]" (p: after the
 * colon) into *c. Returns VKV_OK or VKV_ESPEC (message in err). */
static int vkve_parse_sim_tc(const char *text, const char *p, vkve_codec *c, char *err,
                             size_t errlen)
{
    c->kind = VKVE_TC;
    c->tc_kb = 1.0;
    c->tc_alpha = 1.0;
    c->tc_maxb = 3;
    int rc = vkve_parse_keys("tc", text, p, true, vkve_sim_tc_key, c, NULL, err, errlen);
    if (rc != VKV_OK)
        return rc;
    if (c->tc_kb > c->tc_maxb || c->tc_kb < c->tc_minb || c->tc_minb > c->tc_maxb ||
        c->tc_vb > c->tc_maxb)
        return vkv_errbuf(err, errlen, VKV_ESPEC, "tc: kb %g outside [minb %u, maxb %u]", c->tc_kb,
                          c->tc_minb, c->tc_maxb);
    return VKV_OK;
}

/* vkve_key_fn of the eval-only rotsign: seed N, kc/kr/vc/vr 0|1, ks/vs
 * token|rank1 (values are words, f unused). */
static bool vkve_rotsign_key(vkve_codec *c, const char *k, const char *v, double f, void *st)
{
    unsigned long u;
    int t = k[0] == 'k' ? 0 : k[0] == 'v' ? 1 : -1;
    (void)f, (void)st;
    if (strcmp(k, "seed") == 0 && vkve_parse_u(v, 0, 0xffffffffUL, &u))
        c->seed = u;
    else if (t >= 0 && strlen(k) == 2 && (k[1] == 'c' || k[1] == 'r') && vkve_parse_u(v, 0, 1, &u))
        *(k[1] == 'c' ? &c->center[t] : &c->rot[t]) = (uint8_t)u;
    else if (t >= 0 && strlen(k) == 2 && k[1] == 's' && strcmp(v, "token") == 0)
        c->scale[t] = VKVE_SCALE_TOKEN;
    else if (t >= 0 && strlen(k) == 2 && k[1] == 's' && strcmp(v, "rank1") == 0)
        c->scale[t] = VKVE_SCALE_RANK1;
    else
        return false;
    return true;
}

/* Parses the keys of the eval-only "rotsign[:...]" design (p: after the
 * colon) into *c. Returns VKV_OK or VKV_ESPEC (message in err). */
static int vkve_parse_rotsign(const char *text, const char *p, vkve_codec *c, char *err,
                              size_t errlen)
{
    c->kind = VKVE_ROTSIGN;
    c->center[0] = 1, c->rot[0] = 1, c->scale[0] = VKVE_SCALE_TOKEN;
    c->center[1] = 0, c->rot[1] = 0, c->scale[1] = VKVE_SCALE_RANK1;
    c->seed = 0x5eedull;
    return vkve_parse_keys("rotsign", text, p, false, vkve_rotsign_key, c, NULL, err, errlen);
}

/* Parses a block codec spec (vkv/codec.h syntax; "sim-" prefix: this
 * module's reading, vkve_block_parse_sim) into *c. The library's specs get
 * their canonical string as c->text. Returns VKV_OK or VKV_ESPEC. */
static int vkve_parse_block(const char *text, vkve_codec *c, char *err, size_t errlen)
{
    c->kind = VKVE_BLOCK;
    if (strncmp(text, "sim-", 4) != 0) {
        if (vkv_codec_spec_parse(text, &c->spec) != VKV_OK)
            return vkv_errbuf(err, errlen, VKV_ESPEC, "unknown or invalid codec spec '%s'", text);
        vkv_codec_spec_format(&c->spec, c->text, sizeof c->text);
        return VKV_OK;
    }
    c->sim = 1;
    if (!vkve_block_parse_sim(text + 4, &c->spec))
        return vkv_errbuf(err, errlen, VKV_ESPEC, "unknown or invalid codec spec '%s'", text);
    return VKV_OK;
}

/* True when `name` (nl bytes, the part before the colon) is `word`. */
static bool vkve_is_name(const char *name, size_t nl, const char *word)
{
    return nl == strlen(word) && strncmp(name, word, nl) == 0;
}

/* True when "rotsign:..." with keys p names the block rule (its own keys, as
 * its canonical string starts) rather than the eval-only design. */
static bool vkve_rotsign_is_block(const char *p)
{
    static const char *const keys[] = {"kmode=", "vmode=", "kbits=", "vbits=", "iters="};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        if (strncmp(p, keys[i], 6) == 0)
            return true;
    return false;
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
    if (vkve_is_name(text, nl, "fp16") && !colon) {
        c->kind = VKVE_FP16;
        return VKV_OK;
    }
    if (vkve_is_name(text, nl, "ref2bit") && !colon) {
        c->kind = VKVE_REF2BIT;
        return VKV_OK;
    }
    if (vkve_is_name(text, nl, "calibquant"))
        return vkve_parse_calibquant(text, p, c, err, errlen);
    /* "tc[:kb=..,vb=..,aw=..]" is block rule 5 through the library (what
     * users get); "sim-tc:..." and specs with the eval-only keys (alpha,
     * maxb, minb) are this module's simulation */
    bool tc = vkve_is_name(text, nl, "tc");
    if (tc && !strstr(p, "alpha=") && !strstr(p, "maxb=") && !strstr(p, "minb=")) {
        c->kind = VKVE_BLOCK;
        if (vkv_codec_spec_parse(text, &c->spec) != VKV_OK)
            return vkv_errbuf(err, errlen, VKV_ESPEC, "tc: invalid spec '%s'", text);
        c->tc_aw = c->spec.iters;
        return VKV_OK; /* c->text stays as given (the table's labels) */
    }
    if (tc || vkve_is_name(text, nl, "sim-tc"))
        return vkve_parse_sim_tc(text, p, c, err, errlen);
    /* "rotsign:kmode=..." is the block codec; other rotsign specs are this
     * module's eval-only simulation */
    if (vkve_is_name(text, nl, "rotsign") && !vkve_rotsign_is_block(p))
        return vkve_parse_rotsign(text, p, c, err, errlen);
    return vkve_parse_block(text, c, err, errlen);
}
