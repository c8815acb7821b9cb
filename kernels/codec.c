/*
 * kernels/codec.c - the codec's public entry points (vkv/codec.h): specs,
 * validation, sizes, the block header, and the drivers that walk a chunk's
 * sections and hand groups to the kernels of the selected implementation.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#define XXH_STATIC_LINKING_ONLY /* XXH3_state_t on the stack */
#include <xxhash.h>

#include "kernels/codec_internal.h"
#include "kernels/codec_paged.h"
#include "kernels/codec_tc.h"

#ifdef VKVK_X86
#include <cpuid.h>
#endif

/* ---- the project default spec: change it here (and only here) ---------- */
/* rotsign with 8-bit scales: best fidelity at <= 1.25 bits/element in the
 * table of docs/FIDELITY.md (1.1251 bits/element on the reference chunk). */
#define VKVK_DEFAULT_RULE VKV_RULE_ROTSIGN
/* Defaults of the level rules when a spec names one without modes/groups. */
#define VKVK_LEVEL_K_MODE  VKV_GROUP_CHANNEL
#define VKVK_LEVEL_K_GROUP 256
#define VKVK_LEVEL_V_MODE  VKV_GROUP_TOKEN
#define VKVK_LEVEL_V_GROUP 0 /* TOKEN mode: 0 means head_dim */
#define VKVK_DEFAULT_ITERS 3 /* Lloyd */
/* Per-rule parameter defaults (used when a spec names a rule but no value). */
#define VKVK_MINMAX_K_SHRINK 0.5f
#define VKVK_MINMAX_V_SHRINK 0.3f
#define VKVK_QUANTILE_P      0.2f
/* rotsign defaults: keys centred + rotated (TOKEN), values rank-1 (CHANNEL). */
#define VKVK_ROT_K_MODE VKV_GROUP_TOKEN
#define VKVK_ROT_V_MODE VKV_GROUP_CHANNEL
#define VKVK_ROT_BITS   8 /* scale width (k_group / v_group) */
#define VKVK_ROT_ITERS  0 /* rank-1 refinement passes */
/* tc defaults: 1.125 key bits per element (72/64), rank-1 sign values. */
#define VKVK_TC_KB64 72

/* Fills *kp, *vp and *iters with the defaults of `rule`. */
static void vkvk_rule_defaults(int rule, float *kp, float *vp, uint8_t *iters)
{
    *kp = *vp = 0.0f;
    *iters = 0;
    if (rule == VKV_RULE_MINMAX) {
        *kp = VKVK_MINMAX_K_SHRINK;
        *vp = VKVK_MINMAX_V_SHRINK;
    } else if (rule == VKV_RULE_QUANTILE) {
        *kp = *vp = VKVK_QUANTILE_P;
    } else if (rule == VKV_RULE_LLOYD) {
        *iters = VKVK_DEFAULT_ITERS;
    } else if (rule == VKV_RULE_ROTSIGN) {
        *iters = VKVK_ROT_ITERS;
    }
}

/* Fills `spec` with the defaults of rule `rule` (modes, groups, parameters). */
static void vkvk_spec_of_rule(int rule, vkv_codec_spec *spec)
{
    memset(spec, 0, sizeof(*spec));
    spec->rule = (uint8_t)rule;
    if (rule == VKV_RULE_ROTSIGN) {
        spec->k_mode = VKVK_ROT_K_MODE;
        spec->v_mode = VKVK_ROT_V_MODE;
        spec->k_group = spec->v_group = VKVK_ROT_BITS;
    } else if (rule == VKV_RULE_TC) {
        spec->k_mode = VKV_GROUP_TOKEN;
        spec->k_group = VKVK_TC_KB64;
        spec->v_mode = VKV_GROUP_CHANNEL;
        spec->v_group = 0;
    } else {
        spec->k_mode = VKVK_LEVEL_K_MODE;
        spec->k_group = VKVK_LEVEL_K_GROUP;
        spec->v_mode = VKVK_LEVEL_V_MODE;
        spec->v_group = VKVK_LEVEL_V_GROUP;
    }
    vkvk_rule_defaults(rule, &spec->k_param, &spec->v_param, &spec->iters);
}

void vkv_codec_spec_default(vkv_codec_spec *spec)
{
    vkvk_spec_of_rule(VKVK_DEFAULT_RULE, spec);
}

/* ---- spec strings ------------------------------------------------------- */

static const char *const vkvk_rule_names[] = {NULL, "minmax", "quantile", "lloyd", "rotsign", "tc"};
static const char *const vkvk_mode_names[] = {NULL, "channel", "token"};

/* Nonzero when `p` is a valid parameter of `rule` (lloyd takes none). */
static int vkvk_param_ok(int rule, float p)
{
    if (rule == VKV_RULE_MINMAX)
        return isfinite(p) && p >= 0.0f && p < 1.0f;
    if (rule == VKV_RULE_QUANTILE)
        return isfinite(p) && p > 0.0f && p < 0.5f;
    return 1;
}

/* Checks the shape-independent parts of a spec. Returns VKV_OK or VKV_ESPEC. */
static int vkvk_spec_valid(const vkv_codec_spec *s)
{
    if (s->rule < VKV_RULE_MINMAX || s->rule > VKV_RULE_TC)
        return VKV_ESPEC;
    if (s->rule == VKV_RULE_TC) /* keys TOKEN with a budget; values rank-1 or a budget */
        return s->k_mode == VKV_GROUP_TOKEN && s->k_group >= 1 && s->k_group <= VKVK_TC_MAX_B64 &&
                       (s->v_mode == VKV_GROUP_TOKEN
                            ? s->v_group >= 1 && s->v_group <= VKVK_TC_MAX_B64
                            : s->v_mode == VKV_GROUP_CHANNEL && s->v_group == 0) &&
                       s->iters <= 1 && s->k_param == 0.0f && s->v_param == 0.0f
                   ? VKV_OK
                   : VKV_ESPEC;
    if (s->k_mode < VKV_GROUP_CHANNEL || s->k_mode > VKV_GROUP_TOKEN ||
        s->v_mode < VKV_GROUP_CHANNEL || s->v_mode > VKV_GROUP_TOKEN)
        return VKV_ESPEC;
    if (s->rule == VKV_RULE_LLOYD && (s->iters < 1 || s->iters > VKVK_MAX_ITERS))
        return VKV_ESPEC;
    if (s->rule == VKV_RULE_ROTSIGN)
        return s->iters <= VKVK_MAX_ITERS && (s->k_group == 8 || s->k_group == 16) &&
                       (s->v_group == 8 || s->v_group == 16) && s->k_param == 0.0f &&
                       s->v_param == 0.0f
                   ? VKV_OK
                   : VKV_ESPEC;
    if (!vkvk_param_ok(s->rule, s->k_param) || !vkvk_param_ok(s->rule, s->v_param))
        return VKV_ESPEC;
    return VKV_OK;
}

/* Parses an unsigned decimal of at most `max` from [p, end). Returns 0 or -1. */
static int vkvk_parse_uint(const char *p, const char *end, unsigned long max, unsigned long *out)
{
    unsigned long v = 0;
    if (p == end)
        return -1;
    for (; p < end; p++) {
        if (*p < '0' || *p > '9')
            return -1;
        v = v * 10u + (unsigned long)(*p - '0');
        if (v > max)
            return -1;
    }
    *out = v;
    return 0;
}

/* Parses a finite float that spans exactly [p, end). Returns 0 or -1. */
static int vkvk_parse_float(const char *p, const char *end, float *out)
{
    char buf[48];
    size_t n = (size_t)(end - p);
    if (n == 0 || n >= sizeof(buf))
        return -1;
    memcpy(buf, p, n);
    buf[n] = '\0';
    char *stop = NULL;
    float v = strtof(buf, &stop);
    if (stop != buf + n || !isfinite(v))
        return -1;
    *out = v;
    return 0;
}

/* Nonzero when [p, end) equals the NUL-terminated word w. */
static int vkvk_word_is(const char *p, const char *end, const char *w)
{
    size_t n = strlen(w);
    return (size_t)(end - p) == n && memcmp(p, w, n) == 0;
}

/* Parses a tc budget "kb"/"vb": a multiple of 1/64 in [lo, 3] bits per
 * element into 64ths. Returns 0 or -1. */
static int vkvk_parse_b64(const char *p, const char *end, float lo, uint16_t *out)
{
    float f;
    if (vkvk_parse_float(p, end, &f) || f < lo || f > 3.0f)
        return -1;
    float x = f * 64.0f; /* exact for multiples of 1/64 */
    if (x != floorf(x))
        return -1;
    *out = (uint16_t)x;
    return 0;
}

/* Splits the "key=value" item that starts at *p of a comma-separated list:
 * *item = its start, *eq = its '=', *end = its end; *p moves past the comma,
 * or becomes NULL after the last item. Returns 0, or -1 when the item has no
 * '='. */
static int vkvk_next_item(const char **p, const char **item, const char **eq, const char **end)
{
    const char *comma = strchr(*p, ',');
    *item = *p;
    *end = comma ? comma : *p + strlen(*p);
    *eq = memchr(*p, '=', (size_t)(*end - *p));
    *p = comma ? comma + 1 : NULL;
    return *eq ? 0 : -1;
}

/* Parses the keys of "tc:..." (kb, vb, aw; each at most once) from list into
 * s, which holds the tc defaults. Returns VKV_OK or VKV_ESPEC. */
static int vkvk_parse_tc(const char *list, vkv_codec_spec *s)
{
    unsigned seen = 0;
    for (const char *next = list; next;) {
        const char *p, *eq, *iend;
        if (vkvk_next_item(&next, &p, &eq, &iend))
            return VKV_ESPEC;
        int key = vkvk_word_is(p, eq, "kb")   ? 0
                  : vkvk_word_is(p, eq, "vb") ? 1
                  : vkvk_word_is(p, eq, "aw") ? 2
                                              : -1;
        if (key < 0 || (seen & (1u << key)))
            return VKV_ESPEC;
        seen |= 1u << key;
        unsigned long u;
        if (key == 0) {
            if (vkvk_parse_b64(eq + 1, iend, 1.0f / 64.0f, &s->k_group))
                return VKV_ESPEC;
        } else if (key == 1) {
            if (vkvk_parse_b64(eq + 1, iend, 0.0f, &s->v_group))
                return VKV_ESPEC;
            s->v_mode = s->v_group ? VKV_GROUP_TOKEN : VKV_GROUP_CHANNEL;
        } else {
            if (vkvk_parse_uint(eq + 1, iend, 1u, &u))
                return VKV_ESPEC;
            s->iters = (uint8_t)u;
        }
    }
    return VKV_OK;
}

int vkv_codec_spec_parse(const char *text, vkv_codec_spec *spec)
{
    if (text == NULL || spec == NULL)
        return VKV_ESPEC;
    const char *colon = strchr(text, ':');
    const char *rend = colon ? colon : text + strlen(text);
    vkv_codec_spec s;
    int rule = 0;
    for (int r = VKV_RULE_MINMAX; r <= VKV_RULE_TC; r++)
        if (vkvk_word_is(text, rend, vkvk_rule_names[r]))
            rule = r;
    if (rule == 0)
        return VKV_ESPEC;
    vkvk_spec_of_rule(rule, &s);
    if (rule == VKV_RULE_TC) {
        if ((colon && vkvk_parse_tc(colon + 1, &s) != VKV_OK) || vkvk_spec_valid(&s) != VKV_OK)
            return VKV_ESPEC;
        *spec = s;
        return VKV_OK;
    }
    const int rot = rule == VKV_RULE_ROTSIGN;
    if (colon) {
        static const char *const keys[] = {"kmode", "vmode", "kg",    "vg",   "kp",
                                           "vp",    "iters", "kbits", "vbits"};
        unsigned seen = 0;
        for (const char *next = colon + 1; next;) {
            const char *p, *eq, *iend;
            if (vkvk_next_item(&next, &p, &eq, &iend))
                return VKV_ESPEC;
            int key = -1;
            for (int k = 0; k < 9; k++)
                if (vkvk_word_is(p, eq, keys[k]))
                    key = k;
            /* rotsign takes kbits/vbits instead of groups and parameters */
            if (key >= 2 && key != 6 && (key >= 7) != rot)
                return VKV_ESPEC;
            if (key < 0 || (seen & (1u << key)))
                return VKV_ESPEC;
            seen |= 1u << key;
            const char *v = eq + 1;
            unsigned long u;
            float f;
            switch (key) {
            case 0:
            case 1: {
                uint8_t m = vkvk_word_is(v, iend, "channel") ? VKV_GROUP_CHANNEL
                            : vkvk_word_is(v, iend, "token") ? VKV_GROUP_TOKEN
                                                             : 0;
                if (m == 0)
                    return VKV_ESPEC;
                if (key == 0)
                    s.k_mode = m;
                else
                    s.v_mode = m;
                break;
            }
            case 2:
            case 3:
                if (vkvk_parse_uint(v, iend, 65535u, &u))
                    return VKV_ESPEC;
                if (key == 2)
                    s.k_group = (uint16_t)u;
                else
                    s.v_group = (uint16_t)u;
                break;
            case 4:
            case 5:
                if (s.rule == VKV_RULE_LLOYD || vkvk_parse_float(v, iend, &f))
                    return VKV_ESPEC;
                if (key == 4)
                    s.k_param = f;
                else
                    s.v_param = f;
                break;
            case 7:
            case 8:
                if (vkvk_parse_uint(v, iend, 16u, &u) || (u != 8 && u != 16))
                    return VKV_ESPEC;
                if (key == 7)
                    s.k_group = (uint16_t)u;
                else
                    s.v_group = (uint16_t)u;
                break;
            default:
                if ((s.rule != VKV_RULE_LLOYD && !rot) ||
                    vkvk_parse_uint(v, iend, VKVK_MAX_ITERS, &u))
                    return VKV_ESPEC;
                s.iters = (uint8_t)u;
                break;
            }
        }
    }
    if (vkvk_spec_valid(&s) != VKV_OK)
        return VKV_ESPEC;
    *spec = s;
    return VKV_OK;
}

int vkv_codec_spec_format(const vkv_codec_spec *spec, char *buf, size_t n)
{
    if (spec->rule < VKV_RULE_MINMAX || spec->rule > VKV_RULE_TC ||
        spec->k_mode < VKV_GROUP_CHANNEL || spec->k_mode > VKV_GROUP_TOKEN ||
        spec->v_mode < VKV_GROUP_CHANNEL || spec->v_mode > VKV_GROUP_TOKEN)
        return snprintf(buf, n, "invalid");
    const char *rn = vkvk_rule_names[spec->rule];
    if (spec->rule == VKV_RULE_TC)
        return snprintf(buf, n, "%s:kb=%.9g,vb=%.9g,aw=%u", rn, (double)spec->k_group / 64.0,
                        (double)spec->v_group / 64.0, (unsigned)spec->iters);
    const char *km = vkvk_mode_names[spec->k_mode], *vm = vkvk_mode_names[spec->v_mode];
    if (spec->rule == VKV_RULE_ROTSIGN)
        return snprintf(buf, n, "%s:kmode=%s,kbits=%u,vmode=%s,vbits=%u,iters=%u", rn, km,
                        (unsigned)spec->k_group, vm, (unsigned)spec->v_group,
                        (unsigned)spec->iters);
    if (spec->rule == VKV_RULE_LLOYD)
        return snprintf(buf, n, "%s:kmode=%s,kg=%u,vmode=%s,vg=%u,iters=%u", rn, km,
                        (unsigned)spec->k_group, vm, (unsigned)spec->v_group,
                        (unsigned)spec->iters);
    return snprintf(buf, n, "%s:kmode=%s,kg=%u,kp=%.9g,vmode=%s,vg=%u,vp=%.9g", rn, km,
                    (unsigned)spec->k_group, (double)spec->k_param, vm, (unsigned)spec->v_group,
                    (double)spec->v_param);
}

/* ---- validation and the header ------------------------------------------ */

/* Resolves the group size of one tensor (TOKEN G = 0 means head_dim) and
 * checks it. Returns VKV_OK or VKV_EGROUP. */
static int vkvk_group_resolve(uint8_t mode, uint16_t g, uint32_t head_dim, uint16_t *out)
{
    if (mode == VKV_GROUP_TOKEN) {
        uint32_t r = g ? g : head_dim;
        if (r % 8u != 0 || head_dim % r != 0 || r > 65535u)
            return VKV_EGROUP;
        *out = (uint16_t)r;
        return VKV_OK;
    }
    if (g == 0)
        return VKV_EGROUP;
    *out = g;
    return VKV_OK;
}

int vkv_codec_check(const vkv_shape *shape, const vkv_codec_spec *spec)
{
    if (shape == NULL || spec == NULL)
        return VKV_EINVAL;
    int rc = vkvk_spec_valid(spec);
    if (rc != VKV_OK)
        return rc;
    if (shape->layers == 0 || shape->kv_heads == 0 || shape->head_dim == 0 || shape->tokens == 0 ||
        shape->layers > VKV_BLOCK_MAX_LAYERS || shape->kv_heads > VKV_BLOCK_MAX_HEADS ||
        shape->head_dim > VKV_BLOCK_MAX_HEAD_DIM || shape->tokens > VKV_BLOCK_MAX_TOKENS ||
        shape->head_dim % 8u != 0 ||
        (shape->dtype != VKV_DTYPE_F16 && shape->dtype != VKV_DTYPE_BF16))
        return VKV_ESHAPE;
    if (shape->n_ranges > VKV_BLOCK_MAX_RANGES)
        return VKV_ERANGES;
    uint64_t prev_end = 0;
    for (uint32_t r = 0; r < shape->n_ranges; r++) {
        uint64_t s = shape->ranges[r].start, e = s + shape->ranges[r].len;
        if (shape->ranges[r].len == 0 || e > shape->tokens || s < prev_end)
            return VKV_ERANGES;
        prev_end = e;
    }
    uint16_t g;
    if (spec->rule == VKV_RULE_TC) /* any head_dim (a multiple of 8) */
        return VKV_OK;
    if (spec->rule == VKV_RULE_ROTSIGN) /* TOKEN mode rotates: head_dim a power of two */
        return (spec->k_mode == VKV_GROUP_TOKEN || spec->v_mode == VKV_GROUP_TOKEN) &&
                       !vkvk_pow2(shape->head_dim)
                   ? VKV_EGROUP
                   : VKV_OK;
    if ((rc = vkvk_group_resolve(spec->k_mode, spec->k_group, shape->head_dim, &g)) != VKV_OK)
        return rc;
    return vkvk_group_resolve(spec->v_mode, spec->v_group, shape->head_dim, &g);
}

/* Builds the header (checksums zero) and layout for a checked shape/spec
 * (declared in codec_internal.h; the CUDA encoder uses it too). */
void vkvk_make_header(const vkv_shape *shape, const vkv_codec_spec *spec, vkv_block_header *h,
                      vkvk_layout *L)
{
    memset(h, 0, sizeof(*h));
    h->magic = VKV_BLOCK_MAGIC;
    h->version = VKV_BLOCK_VERSION;
    h->header_size = VKV_BLOCK_HEADER_SIZE;
    h->rule = spec->rule;
    h->dtype = shape->dtype;
    h->k_mode = spec->k_mode;
    h->v_mode = spec->v_mode;
    if (spec->rule == VKV_RULE_ROTSIGN || spec->rule == VKV_RULE_TC) {
        h->k_group = spec->k_group; /* rotsign: scale widths; tc: budgets */
        h->v_group = spec->v_group;
    } else {
        (void)vkvk_group_resolve(spec->k_mode, spec->k_group, shape->head_dim, &h->k_group);
        (void)vkvk_group_resolve(spec->v_mode, spec->v_group, shape->head_dim, &h->v_group);
    }
    if (spec->rule == VKV_RULE_LLOYD || spec->rule == VKV_RULE_ROTSIGN ||
        spec->rule == VKV_RULE_TC) {
        h->iters = spec->iters;
    } else {
        h->k_param = spec->k_param;
        h->v_param = spec->v_param;
    }
    h->layers = shape->layers;
    h->kv_heads = shape->kv_heads;
    h->head_dim = shape->head_dim;
    h->tokens = shape->tokens;
    h->n_ranges = shape->n_ranges;
    for (uint32_t r = 0; r < shape->n_ranges; r++)
        h->ranges[r] = shape->ranges[r];
    (void)vkvk_layout_of(h, L); /* cannot fail within the limits checked */
    for (int s = 0; s < VKV_SEC_COUNT; s++) {
        h->sections[s].offset = L->off[s];
        h->sections[s].size = L->size[s];
    }
    h->total_size = L->total;
}

int vkv_codec_encoded_size(const vkv_shape *shape, const vkv_codec_spec *spec, size_t *size)
{
    int rc = vkv_codec_check(shape, spec);
    if (rc != VKV_OK)
        return rc;
    vkv_block_header h;
    vkvk_layout L;
    vkvk_make_header(shape, spec, &h, &L);
    if (L.total > SIZE_MAX)
        return VKV_ESHAPE;
    *size = (size_t)L.total;
    return VKV_OK;
}

double vkv_codec_bits_per_element(const vkv_shape *shape, size_t encoded_size)
{
    double elems = 2.0 * shape->layers * shape->tokens * shape->kv_heads * shape->head_dim;
    return elems > 0 ? 8.0 * (double)encoded_size / elems : 0.0;
}

/* ---- implementation selection ------------------------------------------- */

static int vkvk_impl_sel; /* enum vkv_impl; 0 until chosen (atomic access) */

/* Nonzero when this CPU can run `impl`. */
static int vkvk_cpu_has(int impl)
{
    if (impl == VKV_IMPL_SCALAR)
        return 1;
#ifdef VKVK_X86
    __builtin_cpu_init();
    /* F16C by CPUID (leaf 1, ECX bit 29): clang rejects "f16c" as a
     * __builtin_cpu_supports feature string. */
    unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
    int f16c = __get_cpuid(1, &eax, &ebx, &ecx, &edx) && (ecx & (1u << 29)) != 0;
    int avx2 = __builtin_cpu_supports("avx2") && f16c && __builtin_cpu_supports("fma");
    if (impl == VKV_IMPL_AVX2)
        return avx2;
    if (impl == VKV_IMPL_AVX512)
        return avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
               __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
#endif
    return 0;
}

/* The best implementation this CPU runs. */
static int vkvk_best_impl(void)
{
    if (vkvk_cpu_has(VKV_IMPL_AVX512))
        return VKV_IMPL_AVX512;
    if (vkvk_cpu_has(VKV_IMPL_AVX2))
        return VKV_IMPL_AVX2;
    return VKV_IMPL_SCALAR;
}

int vkv_codec_set_impl(enum vkv_impl impl)
{
    int want = (int)impl;
    if (want == VKV_IMPL_AUTO)
        want = vkvk_best_impl();
    if (want < VKV_IMPL_SCALAR || want > VKV_IMPL_AVX512)
        return VKV_EINVAL;
    if (!vkvk_cpu_has(want))
        return VKV_ENOTSUP;
    __atomic_store_n(&vkvk_impl_sel, want, __ATOMIC_RELAXED);
    return VKV_OK;
}

enum vkv_impl vkv_codec_impl(void)
{
    int v = __atomic_load_n(&vkvk_impl_sel, __ATOMIC_RELAXED);
    if (v == 0) {
        v = vkvk_best_impl();
        __atomic_store_n(&vkvk_impl_sel, v, __ATOMIC_RELAXED);
    }
    return (enum vkv_impl)v;
}

const char *vkv_codec_impl_name(enum vkv_impl impl)
{
    switch (impl) {
    case VKV_IMPL_AUTO:
        return "auto";
    case VKV_IMPL_SCALAR:
        return "scalar";
    case VKV_IMPL_AVX2:
        return "avx2";
    case VKV_IMPL_AVX512:
        return "avx512";
    }
    return "unknown";
}

/* The kernel table of the implementation in use (static storage). */
static const vkvk_kernels *vkvk_kern(void)
{
#ifdef VKVK_X86
    switch (vkv_codec_impl()) {
    case VKV_IMPL_AVX512:
        return &vkvk_kernels_avx512;
    case VKV_IMPL_AVX2:
        return &vkvk_kernels_avx2;
    default:
        break;
    }
#endif
    return &vkvk_kernels_scalar;
}

/* ---- encode -------------------------------------------------------------- */

/* Index of the first visual range whose end lies after token t, from hint r. */
static uint32_t vkvk_is_visual(const vkv_block_header *h, uint32_t t, uint32_t *r)
{
    while (*r < h->n_ranges && h->ranges[*r].start + h->ranges[*r].len <= t)
        (*r)++;
    return *r < h->n_ranges && t >= h->ranges[*r].start;
}

/* Encodes one tensor (K: s = 0, V: s = 1) of layer l into block `out`.
 * next: the source tensor encoded after this one (a prefetch hint for the
 * rotsign kernels) or NULL. w: rule 5's channel weights of this layer
 * ([kv_heads][head_dim]) or NULL. */
static int vkvk_encode_tensor(const vkvk_kernels *kern, const vkv_block_header *h,
                              const vkvk_layout *L, int s, uint32_t l, const uint16_t *src,
                              const uint16_t *next, size_t ts, size_t hs, uint8_t *out,
                              const uint32_t *vt, const float *w, float *scratch)
{
    const uint32_t heads = h->kv_heads, hd = h->head_dim;
    const size_t row = (size_t)hd * 2u, brow = (size_t)heads * (hd / 8u);
    vkvk_rule_args ra = {h->rule, h->dtype, h->iters, s ? h->v_param : h->k_param};
    uint8_t *raw = out + L->off[VKV_SEC_RAW_K + s] + l * L->raw_layer;
    uint8_t *bits = out + L->off[VKV_SEC_BITS_K + s] + l * (s ? L->bits_layer_v : L->bits_layer);
    uint8_t *lev = out + L->off[VKV_SEC_LEV_K + s] + l * L->lev_layer[s];
    uint32_t r = 0;
    size_t nraw = 0;
    for (uint32_t t = 0; t < h->tokens; t++) {
        if (vkvk_is_visual(h, t, &r))
            continue;
        for (uint32_t hh = 0; hh < heads; hh++)
            memcpy(raw + (nraw * heads + hh) * row, src + t * ts + hh * hs, row);
        nraw++;
    }
    uint8_t mode = s ? h->v_mode : h->k_mode;
    uint32_t g = s ? h->v_group : h->k_group;
    if (h->rule == VKV_RULE_TC) {
#ifdef VKVK_X86
        if (kern != &vkvk_kernels_scalar) /* AVX2 and AVX-512 CPUs run the AVX2 twin */
            return vkvk_tc_enc_tensor_avx2(h, s, src, ts, hs, vt, (uint32_t)L->n_vis, w, bits, lev,
                                           scratch);
#endif
        return vkvk_tc_enc_tensor(h, s, src, ts, hs, vt, (uint32_t)L->n_vis, w, bits, lev, scratch);
    }
    if (h->rule == VKV_RULE_ROTSIGN) {
        vkvk_rot_args rr = {mode, h->dtype, (uint8_t)g, h->iters, next, 0};
        if (L->n_vis == 0)
            return VKV_OK;
        return kern->enc_rot(&rr, src, ts, hs, vt, (uint32_t)L->n_vis, heads, hd, bits, lev,
                             lev + heads * row, scratch);
    }
    size_t v = 0, grp = 0;
    for (r = 0; r < h->n_ranges; r++) {
        uint32_t end = h->ranges[r].start + h->ranges[r].len;
        if (mode == VKV_GROUP_CHANNEL) {
            for (uint32_t t0 = h->ranges[r].start; t0 < end; t0 += g, grp++) {
                uint32_t n = end - t0 < g ? end - t0 : g;
                for (uint32_t hh = 0; hh < heads; hh++) {
                    uint8_t *lo = lev + (grp * heads + hh) * 2u * row;
                    int rc = kern->enc_channel(&ra, src + t0 * ts + hh * hs, ts, n, hd,
                                               bits + v * brow + hh * (hd / 8u), brow, lo, lo + row,
                                               scratch);
                    if (rc != VKV_OK)
                        return rc;
                }
                v += n;
            }
        } else {
            size_t lrow = (size_t)(hd / g) * 4u;
            for (uint32_t t = h->ranges[r].start; t < end; t++, v++) {
                for (uint32_t hh = 0; hh < heads; hh++) {
                    int rc = kern->enc_token(&ra, src + t * ts + hh * hs, hd, g,
                                             bits + v * brow + hh * (hd / 8u),
                                             lev + (v * heads + hh) * lrow, scratch);
                    if (rc != VKV_OK)
                        return rc;
                }
            }
        }
    }
    return VKV_OK;
}

/* vkv_encode_weighted with the weights already known to be used only when
 * the rule takes them (kw NULL otherwise). */
static int vkvk_encode(const vkv_shape *shape, const vkv_codec_spec *spec, const vkv_kv_src *src,
                       const float *const *kw, void *dst, size_t dst_size)
{
    int rc = vkv_codec_check(shape, spec);
    if (rc != VKV_OK)
        return rc;
    if (src == NULL || src->k == NULL || src->v == NULL || dst == NULL)
        return VKV_EINVAL;
    if (spec->rule != VKV_RULE_TC || spec->iters == 0)
        kw = NULL; /* only tc with aw=1 reads the weights */
    for (uint32_t l = 0; kw && l < shape->layers; l++) {
        if (kw[l] == NULL)
            return VKV_EINVAL;
        for (size_t i = 0; i < (size_t)shape->kv_heads * shape->head_dim; i++)
            if (!(kw[l][i] >= 0.0f) || !isfinite(kw[l][i]))
                return VKV_EINVAL;
    }
    vkv_block_header h;
    vkvk_layout L;
    vkvk_make_header(shape, spec, &h, &L);
    if (dst_size < L.total)
        return VKV_ETRUNC;
    for (uint32_t l = 0; l < h.layers; l++)
        if (src->k[l] == NULL || src->v[l] == NULL)
            return VKV_EINVAL;
    /* Largest CHANNEL group length, for the scratch size. */
    uint32_t maxn = 1;
    for (uint32_t r = 0; r < h.n_ranges; r++) {
        uint32_t len = h.ranges[r].len;
        if (h.k_mode == VKV_GROUP_CHANNEL && (len < h.k_group ? len : h.k_group) > maxn)
            maxn = len < h.k_group ? len : h.k_group;
        if (h.v_mode == VKV_GROUP_CHANNEL && (len < h.v_group ? len : h.v_group) > maxn)
            maxn = len < h.v_group ? len : h.v_group;
    }
    size_t nf = VKVK_SCRATCH_FLOATS(maxn, h.head_dim);
    if (h.rule == VKV_RULE_ROTSIGN)
        nf = VKVK_ROT_SCRATCH_FLOATS(L.n_vis, h.kv_heads, h.head_dim);
    if (h.rule == VKV_RULE_TC)
        nf = VKVK_TC_SCRATCH_FLOATS(L.n_vis, h.head_dim);
    float *scratch = malloc(nf * sizeof(float));
    uint32_t *vt = malloc((size_t)L.n_vis * sizeof(uint32_t) + 1u);
    if (scratch == NULL || vt == NULL) {
        free(scratch);
        free(vt);
        return VKV_ENOMEM;
    }
    size_t nv = 0; /* visual token numbers in block order */
    for (uint32_t r = 0; r < h.n_ranges; r++)
        for (uint32_t t = 0; t < h.ranges[r].len; t++)
            vt[nv++] = h.ranges[r].start + t;
    const vkvk_kernels *kern = vkvk_kern();
    uint8_t *out = dst;
    for (int s = 0; s < 2 && rc == VKV_OK; s++) {
        for (uint32_t l = 0; l < h.layers && rc == VKV_OK; l++) {
            const uint16_t *p = s ? src->v[l] : src->k[l];
            const void *nx =
                l + 1 < h.layers ? (s ? src->v[l + 1] : src->k[l + 1]) : (s ? NULL : src->v[0]);
            rc = vkvk_encode_tensor(kern, &h, &L, s, l, p, nx, src->token_stride, src->head_stride,
                                    out, vt, kw && s == 0 ? kw[l] : NULL, scratch);
        }
    }
    free(scratch);
    free(vt);
    if (rc != VKV_OK)
        return rc;
    /* Zero the alignment padding in front of each section. */
    uint64_t pos = VKV_BLOCK_HEADER_SIZE;
    for (int s = 0; s < VKV_SEC_COUNT; s++) {
        memset(out + pos, 0, (size_t)(L.off[s] - pos));
        pos = L.off[s] + L.size[s];
    }
    h.header_xxh3 = XXH3_64bits(&h, sizeof(h)); /* both checksum fields still zero */
    h.payload_xxh3 =
        XXH3_64bits(out + VKV_BLOCK_HEADER_SIZE, (size_t)(L.total - VKV_BLOCK_HEADER_SIZE));
    memcpy(out, &h, sizeof(h));
    return VKV_OK;
}

int vkv_encode(const vkv_shape *shape, const vkv_codec_spec *spec, const vkv_kv_src *src, void *dst,
               size_t dst_size)
{
    return vkvk_encode(shape, spec, src, NULL, dst, dst_size);
}

int vkv_encode_weighted(const vkv_shape *shape, const vkv_codec_spec *spec, const vkv_kv_src *src,
                        const float *const *key_weights, void *dst, size_t dst_size)
{
    return vkvk_encode(shape, spec, src, key_weights, dst, dst_size);
}

/* ---- block check ---------------------------------------------------------- */

/* Nonzero when the (checksum-verified) header's fields are valid and
 * canonical: the same rules as encoding plus resolved groups, zeroed unused
 * fields and the canonical section table. Fills *L. */
static int vkvk_header_ok(const vkv_block_header *h, vkvk_layout *L)
{
    vkv_shape shape;
    vkv_codec_spec spec;
    vkv_block_shape(h, &shape, &spec);
    if (h->n_ranges > VKV_BLOCK_MAX_RANGES || vkv_codec_check(&shape, &spec) != VKV_OK)
        return 0;
    if (h->k_mode == VKV_GROUP_TOKEN && h->k_group == 0)
        return 0;
    if (h->v_mode == VKV_GROUP_TOKEN && h->v_group == 0)
        return 0;
    if (h->rule == VKV_RULE_LLOYD || h->rule == VKV_RULE_ROTSIGN || h->rule == VKV_RULE_TC
            ? (h->k_param != 0.0f || h->v_param != 0.0f)
            : h->iters != 0)
        return 0;
    for (size_t i = 0; i < sizeof(h->reserved0); i++)
        if (h->reserved0[i])
            return 0;
    for (size_t i = 0; i < sizeof(h->reserved); i++)
        if (h->reserved[i])
            return 0;
    for (uint32_t r = h->n_ranges; r < VKV_BLOCK_MAX_RANGES; r++)
        if (h->ranges[r].start || h->ranges[r].len)
            return 0;
    if (vkvk_layout_of(h, L) != 0 || L->total != h->total_size)
        return 0;
    for (int s = 0; s < VKV_SEC_COUNT; s++)
        if (h->sections[s].offset != L->off[s] || h->sections[s].size != L->size[s])
            return 0;
    return 1;
}

/* vkv_block_check that also returns the layout. */
static int vkvk_check(const void *block, size_t size, unsigned flags, vkv_block_header *out,
                      vkvk_layout *L)
{
    vkv_block_header h;
    if (block == NULL || (flags & ~VKV_DECODE_VERIFY) != 0)
        return VKV_EINVAL;
    if (size < VKV_BLOCK_HEADER_SIZE)
        return VKV_ETRUNC;
    memcpy(&h, block, sizeof(h));
    if (h.magic != VKV_BLOCK_MAGIC)
        return VKV_EMAGIC;
    if (h.version != VKV_BLOCK_VERSION)
        return VKV_EVERSION;
    if (h.header_size != VKV_BLOCK_HEADER_SIZE)
        return VKV_ECORRUPT;
    vkv_block_header z = h;
    z.payload_xxh3 = 0;
    z.header_xxh3 = 0;
    if (XXH3_64bits(&z, sizeof(z)) != h.header_xxh3)
        return VKV_ECHECKSUM;
    if (!vkvk_header_ok(&h, L))
        return VKV_ECORRUPT;
    if (h.total_size > size)
        return VKV_ETRUNC;
    if ((flags & VKV_DECODE_VERIFY) &&
        XXH3_64bits((const uint8_t *)block + VKV_BLOCK_HEADER_SIZE,
                    (size_t)(h.total_size - VKV_BLOCK_HEADER_SIZE)) != h.payload_xxh3)
        return VKV_ECHECKSUM;
    if (out)
        *out = h;
    return VKV_OK;
}

int vkv_block_check(const void *block, size_t size, unsigned flags, vkv_block_header *hdr)
{
    vkvk_layout L;
    return vkvk_check(block, size, flags, hdr, &L);
}

void vkv_block_shape(const vkv_block_header *hdr, vkv_shape *shape, vkv_codec_spec *spec)
{
    memset(shape, 0, sizeof(*shape));
    memset(spec, 0, sizeof(*spec));
    shape->layers = hdr->layers;
    shape->kv_heads = hdr->kv_heads;
    shape->head_dim = hdr->head_dim;
    shape->tokens = hdr->tokens;
    shape->dtype = hdr->dtype;
    shape->n_ranges = hdr->n_ranges;
    for (uint32_t r = 0; r < hdr->n_ranges && r < VKV_BLOCK_MAX_RANGES; r++)
        shape->ranges[r] = hdr->ranges[r];
    spec->rule = hdr->rule;
    spec->k_mode = hdr->k_mode;
    spec->v_mode = hdr->v_mode;
    spec->iters = hdr->iters;
    spec->k_group = hdr->k_group;
    spec->v_group = hdr->v_group;
    spec->k_param = hdr->k_param;
    spec->v_param = hdr->v_param;
}

/* ---- decode -------------------------------------------------------------- */

/* Where token t of the block goes: dense strides or a paged block table. */
typedef struct vkvk_dst_map {
    void *const *k;
    void *const *v;
    size_t token_stride; /* dense only */
    size_t head_stride;
    const int32_t *table; /* paged only (NULL when dense) */
    uint32_t page_size;
    uint32_t first_pos;
    size_t page_elems; /* page stride */
    size_t row_elems;  /* slot stride */
    uint32_t skip;     /* tokens [0, skip) are not written */
} vkvk_dst_map;

/* Element offset of token t's head 0 from its layer's base pointer. */
static inline size_t vkvk_tok_off(const vkvk_dst_map *m, uint32_t t)
{
    if (m->table == NULL)
        return t * m->token_stride;
    uint64_t p = (uint64_t)m->first_pos + t;
    return (size_t)m->table[p / m->page_size] * m->page_elems +
           (size_t)(p % m->page_size) * m->row_elems;
}

int vkvk_paged_geom_of(const vkv_block_header *h, const vkv_paged_dst *dst, vkvk_paged_geom *g)
{
    if (dst == NULL || dst->block_table == NULL || dst->page_size == 0 || dst->num_pages == 0 ||
        dst->k_cache == NULL || dst->v_cache == NULL || dst->skip_tokens > h->tokens)
        return VKV_EINVAL;
    uint64_t hd = h->head_dim, row = (uint64_t)h->kv_heads * hd, page, span, t;
    if (vkvk_mul64(row, dst->page_size, &page))
        return VKV_EINVAL;
    g->head_stride = dst->head_stride ? dst->head_stride : (size_t)hd;
    g->slot_stride = dst->slot_stride ? dst->slot_stride : (size_t)row;
    g->page_stride = dst->page_stride ? dst->page_stride : (size_t)page;
    /* last element of the cache the decode may touch, and twice it, in size_t */
    if (vkvk_mul64(dst->num_pages - 1u, g->page_stride, &span) ||
        vkvk_mul64(dst->page_size - 1u, g->slot_stride, &t) || vkvk_add64(span, t, &span) ||
        vkvk_mul64(h->kv_heads ? h->kv_heads - 1u : 0u, g->head_stride, &t) ||
        vkvk_add64(span, t, &span) || vkvk_add64(span, hd, &span) || span > SIZE_MAX / 2u)
        return VKV_EINVAL;
    g->skip = dst->skip_tokens;
    g->p0 = 1;
    g->p1 = 0;
    if (g->skip == h->tokens)
        return VKV_OK; /* nothing to write */
    uint64_t first = (uint64_t)dst->first_pos + g->skip,
             last = (uint64_t)dst->first_pos + h->tokens - 1u;
    if (last / dst->page_size >= dst->block_table_len)
        return VKV_EINVAL;
    for (uint64_t i = first / dst->page_size; i <= last / dst->page_size; i++)
        if (dst->block_table[i] < 0 || (uint32_t)dst->block_table[i] >= dst->num_pages)
            return VKV_EINVAL;
    g->p0 = first / dst->page_size;
    g->p1 = last / dst->page_size;
    return VKV_OK;
}

/* Decodes the visual tokens of tensor s of one layer of a checked rule-5
 * block (bits, lev: the layer's sections) into base; tb holds 3 * head_dim
 * floats and head_dim bytes of scratch. */
static void vkvk_decode_tc(const vkv_block_header *h, int s, const uint8_t *bits,
                           const uint8_t *lev, uint16_t *base, const vkvk_dst_map *m, float *tb)
{
    const uint32_t heads = h->kv_heads, hd = h->head_dim;
    const size_t cb = vkvk_tc_code_bytes(h, s);
    const int coded = s == 0 || h->v_mode == VKV_GROUP_TOKEN;
    const uint8_t *scl = lev + (size_t)heads * vkvk_tc_rec_bytes(coded, hd);
    float *row = tb + 2u * (size_t)hd;
    vkvk_tc_head c = {0, 0, 0.0f, tb, tb + hd, (uint8_t *)(tb + 3u * (size_t)hd)};
#ifdef VKVK_X86
    uint32_t *off = (uint32_t *)(void *)(tb + 4u * (size_t)hd); /* see vkvk_decode */
    const int simd = vkv_codec_impl() != VKV_IMPL_SCALAR;
#endif
    for (uint32_t hh = 0; hh < heads; hh++) {
        vkvk_tc_head_load(h, s, lev, hh, &c);
#ifdef VKVK_X86
        vkvk_tc_offsets(&c, off);
#endif
        size_t v = 0;
        for (uint32_t r = 0; r < h->n_ranges; r++) {
            uint32_t end = h->ranges[r].start + h->ranges[r].len;
            for (uint32_t t = h->ranges[r].start; t < end; t++, v++) {
                if (t < m->skip)
                    continue;
                const uint8_t *cd = bits + (v * heads + hh) * cb;
                uint16_t *o = base + vkvk_tok_off(m, t) + hh * m->head_stride;
#ifdef VKVK_X86
                if (simd) {
                    vkvk_tc_dec_out_avx2(&c, off, cd, (uint32_t)cb, scl[v * heads + hh], h->dtype,
                                         o);
                    continue;
                }
#endif
                vkvk_tc_dec_f32(&c, cd, scl[v * heads + hh], row);
                for (uint32_t d = 0; d < hd; d++)
                    o[d] = vkvk_rot_out(row[d], h->dtype);
            }
        }
    }
}

/* Decodes tensor s of layer l of a checked block into base (tb: rule-5
 * scratch, see vkvk_decode_tc). */
static void vkvk_decode_tensor(const vkvk_kernels *kern, const vkv_block_header *h,
                               const vkvk_layout *L, int s, uint32_t l, const uint8_t *in,
                               uint16_t *base, const vkvk_dst_map *m, float *tb)
{
    const uint32_t heads = h->kv_heads, hd = h->head_dim;
    const size_t row = (size_t)hd * 2u, brow = (size_t)heads * (hd / 8u);
    const uint8_t *raw = in + L->off[VKV_SEC_RAW_K + s] + l * L->raw_layer;
    const uint8_t *bits =
        in + L->off[VKV_SEC_BITS_K + s] + l * (s ? L->bits_layer_v : L->bits_layer);
    const uint8_t *lev = in + L->off[VKV_SEC_LEV_K + s] + l * L->lev_layer[s];
    uint32_t r = 0;
    size_t nraw = 0;
    for (uint32_t t = 0; t < h->tokens; t++) {
        if (vkvk_is_visual(h, t, &r))
            continue;
        if (t >= m->skip) {
            uint16_t *o = base + vkvk_tok_off(m, t);
            for (uint32_t hh = 0; hh < heads; hh++)
                memcpy(o + hh * m->head_stride, raw + (nraw * heads + hh) * row, row);
        }
        nraw++;
    }
    uint8_t mode = s ? h->v_mode : h->k_mode;
    uint32_t g = s ? h->v_group : h->k_group;
    size_t v = 0, grp = 0;
    if (h->rule == VKV_RULE_TC) {
        if (L->n_vis)
            vkvk_decode_tc(h, s, bits, lev, base, m, tb);
        return;
    }
    if (h->rule == VKV_RULE_ROTSIGN) {
        vkvk_rot_args rr = {mode, h->dtype, (uint8_t)g, h->iters, NULL, 0};
        if (L->n_vis != 0) /* the vector section exists; its bound once per tensor */
            rr.vamax1 = (uint16_t)(vkvk_rot_amax16(lev, (size_t)heads * hd) + 1u);
        const size_t sb = g / 8u, srow = heads * sb;
        for (r = 0; r < h->n_ranges; r++) {
            uint32_t end = h->ranges[r].start + h->ranges[r].len;
            for (uint32_t t = h->ranges[r].start; t < end; t++, v++)
                if (t >= m->skip)
                    kern->dec_rot(&rr, bits + v * brow, lev, lev + heads * row + v * srow, heads,
                                  hd, base + vkvk_tok_off(m, t), m->head_stride);
        }
        return;
    }
    for (r = 0; r < h->n_ranges; r++) {
        uint32_t end = h->ranges[r].start + h->ranges[r].len;
        if (mode == VKV_GROUP_CHANNEL) {
            for (uint32_t t0 = h->ranges[r].start; t0 < end; t0 += g, grp++) {
                uint32_t n = end - t0 < g ? end - t0 : g;
                const uint8_t *lv = lev + grp * heads * 2u * row;
                for (uint32_t t = t0; t < t0 + n; t++, v++)
                    if (t >= m->skip)
                        kern->dec_channel(bits + v * brow, lv, heads, hd, base + vkvk_tok_off(m, t),
                                          m->head_stride);
            }
        } else {
            size_t lrow = (size_t)heads * (hd / g) * 4u;
            for (uint32_t t = h->ranges[r].start; t < end; t++, v++)
                if (t >= m->skip)
                    kern->dec_token(bits + v * brow, lev + v * lrow, heads, hd, g,
                                    base + vkvk_tok_off(m, t), m->head_stride);
        }
    }
}

/* Decodes a checked block (header h, layout L) through map m after checking
 * the destination pointers. Nothing is written unless every check passed. */
static int vkvk_decode(const void *block, const vkv_block_header *h, const vkvk_layout *L,
                       const vkvk_dst_map *m)
{
    if (m->k == NULL || m->v == NULL)
        return VKV_EINVAL;
    for (uint32_t l = 0; l < h->layers; l++)
        if (m->k[l] == NULL || m->v[l] == NULL)
            return VKV_EINVAL;
    float *tb = NULL;
    if (h->rule == VKV_RULE_TC && L->n_vis &&
        (tb = malloc((5u * (size_t)h->head_dim + 1u) * sizeof(float))) == NULL)
        return VKV_ENOMEM;
    const vkvk_kernels *kern = vkvk_kern();
    for (int s = 0; s < 2; s++)
        for (uint32_t l = 0; l < h->layers; l++)
            vkvk_decode_tensor(kern, h, L, s, l, block, s ? m->v[l] : m->k[l], m, tb);
    free(tb);
    return VKV_OK;
}

void vkv_block_ident(const char *ns, size_t ns_len, const uint8_t key[32],
                     uint8_t out[VKV_IDENT_LEN])
{
    static const char tag[] = "vkv-ident-v1";
    uint8_t len[4] = {(uint8_t)ns_len, (uint8_t)(ns_len >> 8), (uint8_t)(ns_len >> 16),
                      (uint8_t)(ns_len >> 24)};
    XXH3_state_t s;
    XXH3_128bits_reset(&s);
    XXH3_128bits_update(&s, tag, sizeof tag - 1);
    XXH3_128bits_update(&s, len, sizeof len);
    XXH3_128bits_update(&s, ns, ns_len);
    XXH3_128bits_update(&s, key, 32);
    XXH128_hash_t h = XXH3_128bits_digest(&s);
    for (int i = 0; i < 8; i++) {
        out[i] = (uint8_t)(h.low64 >> (8 * i));
        out[8 + i] = (uint8_t)(h.high64 >> (8 * i));
    }
}

int vkv_block_bind(void *block, size_t size, const uint8_t ident[VKV_IDENT_LEN])
{
    vkv_block_header h;
    int rc = vkv_block_check(block, size, 0, &h);
    if (rc != VKV_OK)
        return rc;
    memcpy(h.ident, ident, VKV_IDENT_LEN);
    uint64_t payload = h.payload_xxh3;
    h.payload_xxh3 = 0;
    h.header_xxh3 = 0;
    h.header_xxh3 = XXH3_64bits(&h, sizeof h);
    h.payload_xxh3 = payload;
    memcpy(block, &h, sizeof h);
    return VKV_OK;
}

int vkv_block_check_ident(const vkv_block_header *hdr, const uint8_t ident[VKV_IDENT_LEN])
{
    static const uint8_t zero[VKV_IDENT_LEN];
    if (memcmp(hdr->ident, zero, VKV_IDENT_LEN) == 0 ||
        memcmp(hdr->ident, ident, VKV_IDENT_LEN) != 0)
        return VKV_EIDENT;
    return VKV_OK;
}

/* See codec_internal.h. */
int vkvk_check_dst(const vkv_block_header *h, const vkv_geometry *g, const uint8_t *ident,
                   int dense)
{
    if (g->layers == 0 || g->kv_heads == 0 || g->head_dim == 0 || g->dtype == 0 ||
        (dense && g->tokens == 0))
        return VKV_EINVAL;
    if (h->layers != g->layers || h->kv_heads != g->kv_heads || h->head_dim != g->head_dim ||
        h->dtype != g->dtype || (g->tokens != 0 && h->tokens > g->tokens))
        return VKV_EGEOMETRY;
    return ident ? vkv_block_check_ident(h, ident) : VKV_OK;
}

int vkv_decode(const void *block, size_t size, unsigned flags, const vkv_kv_dst *dst)
{
    vkv_block_header h;
    vkvk_layout L;
    int rc = vkvk_check(block, size, flags, &h, &L);
    if (rc != VKV_OK)
        return rc;
    if (dst == NULL)
        return VKV_EINVAL;
    if ((rc = vkvk_check_dst(&h, &dst->geom, dst->ident, 1)) != VKV_OK)
        return rc;
    vkvk_dst_map m = {dst->k, dst->v, dst->token_stride, dst->head_stride, NULL, 0, 0, 0, 0, 0};
    return vkvk_decode(block, &h, &L, &m);
}

int vkv_decode_paged(const void *block, size_t size, unsigned flags, const vkv_paged_dst *dst)
{
    vkv_block_header h;
    vkvk_layout L;
    vkvk_paged_geom g;
    int rc = vkvk_check(block, size, flags, &h, &L);
    if (rc != VKV_OK)
        return rc;
    if (dst == NULL)
        return VKV_EINVAL;
    /* the caller's geometry first: the default strides below come from the
     * header, which must then describe what the caches hold */
    if ((rc = vkvk_check_dst(&h, &dst->geom, dst->ident, 0)) != VKV_OK)
        return rc;
    if ((rc = vkvk_paged_geom_of(&h, dst, &g)) != VKV_OK)
        return rc;
    vkvk_dst_map m = {dst->k_cache,   dst->v_cache,     0,
                      g.head_stride,  dst->block_table, dst->page_size,
                      dst->first_pos, g.page_stride,    g.slot_stride,
                      g.skip};
    return vkvk_decode(block, &h, &L, &m);
}
