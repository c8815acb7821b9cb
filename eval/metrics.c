/* eval/metrics.c - attention fidelity metrics (see metrics.h). */
#include "eval/metrics.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "vkv/error.h"

/* See metrics.h. */
void vkve_softmax(const double *x, size_t n, double *p)
{
    double mx = -INFINITY, sum = 0.0;
    for (size_t i = 0; i < n; i++)
        if (x[i] > mx)
            mx = x[i];
    for (size_t i = 0; i < n; i++) {
        p[i] = exp(x[i] - mx);
        sum += p[i];
    }
    for (size_t i = 0; i < n; i++)
        p[i] /= sum;
}

/* See metrics.h. */
double vkve_kl(const double *p, const double *q, size_t n)
{
    double kl = 0.0;
    for (size_t i = 0; i < n; i++) {
        if (p[i] <= 0.0)
            continue;
        double qi = q[i] > 1e-300 ? q[i] : 1e-300;
        kl += p[i] * log(p[i] / qi);
    }
    return kl > 0.0 ? kl : 0.0; /* rounding can give -1e-17 */
}

/* qsort comparator: larger value first, then lower index. */
static int vkve_rank_cmp(const void *a, const void *b)
{
    const vkve_rank *x = a, *y = b;
    if (x->val != y->val)
        return x->val > y->val ? -1 : 1;
    return x->idx < y->idx ? -1 : (x->idx > y->idx);
}

/* See metrics.h. Sorts both candidate lists and intersects their top k. */
double vkve_topk_recall(const double *p, const double *q, const uint32_t *idx, size_t n_idx,
                        uint32_t k, vkve_rank *scratch)
{
    if (n_idx == 0 || k == 0)
        return 1.0;
    if (k > n_idx)
        k = (uint32_t)n_idx;
    vkve_rank *a = scratch, *b = scratch + n_idx;
    for (size_t j = 0; j < n_idx; j++) {
        a[j].val = p[idx[j]];
        a[j].idx = idx[j];
        b[j].val = q[idx[j]];
        b[j].idx = idx[j];
    }
    qsort(a, n_idx, sizeof *a, vkve_rank_cmp);
    qsort(b, n_idx, sizeof *b, vkve_rank_cmp);
    uint32_t hit = 0;
    for (uint32_t i = 0; i < k; i++)
        for (uint32_t j = 0; j < k; j++)
            if (a[i].idx == b[j].idx) {
                hit++;
                break;
            }
    return (double)hit / k;
}

/* See metrics.h. */
double vkve_nmse(const float *x, const float *y, size_t n)
{
    double e = 0.0, s = 0.0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)x[i] - y[i];
        e += d * d;
        s += (double)x[i] * x[i];
    }
    return s > 0.0 ? e / s : (e > 0.0 ? INFINITY : 0.0);
}

/* See metrics.h. */
void vkve_calibrate_logits(double *s, const uint32_t *idx, size_t n_idx, double offset)
{
    if (n_idx == 0)
        return;
    double mn = INFINITY, mx = -INFINITY;
    for (size_t j = 0; j < n_idx; j++) {
        double v = s[idx[j]];
        mn = v < mn ? v : mn;
        mx = v > mx ? v : mx;
    }
    double tmax = mx - offset;
    for (size_t j = 0; j < n_idx; j++) {
        double v = s[idx[j]];
        s[idx[j]] = (v - mn) / (mx - mn + 1e-8) * (tmax - mn) + mn;
    }
}

/* See metrics.h. */
void vkve_metrics_free(vkve_metrics *m)
{
    free(m->kl_lh);
    free(m->err_lh);
    free(m->rec_lh);
    free(m->nmse_k_lh);
    free(m->nmse_v_lh);
    m->kl_lh = m->err_lh = m->rec_lh = m->nmse_k_lh = m->nmse_v_lh = NULL;
}

/* Logits of query vector q (head_dim D) against every token's key of KV head
 * kh in layer array K: s[t] = q . k_t / sqrt(D). */
static void vkve_logits(const vkve_data *d, const float *K, uint32_t kh, const float *q, double *s)
{
    uint32_t D = d->head_dim;
    double inv = 1.0 / sqrt((double)D);
    for (uint32_t t = 0; t < d->tokens; t++) {
        const float *k = K + ((size_t)t * d->kv_heads + kh) * D;
        double acc = 0.0;
        for (uint32_t i = 0; i < D; i++)
            acc += (double)q[i] * k[i];
        s[t] = acc * inv;
    }
}

/* o = sum_t p_t v_t for KV head kh of layer array V (o has head_dim doubles). */
static void vkve_attn_out(const vkve_data *d, const float *V, uint32_t kh, const double *p,
                          double *o)
{
    uint32_t D = d->head_dim;
    memset(o, 0, D * sizeof *o);
    for (uint32_t t = 0; t < d->tokens; t++) {
        const float *v = V + ((size_t)t * d->kv_heads + kh) * D;
        for (uint32_t i = 0; i < D; i++)
            o[i] += p[t] * v[i];
    }
}

/* Scratch of one vkve_metrics_compute call: logits and probabilities of
 * the reference (s, p) and the decoded cache (sh, ph), T doubles each; the
 * attention outputs (out, outh), head_dim each; the n visual tokens vis (room
 * for nv) and the recall's sort space scr. */
typedef struct vkve_mscratch {
    double *s, *sh, *p, *ph, *out, *outh;
    uint32_t *vis, n;
    vkve_rank *scr;
} vkve_mscratch;

/* Frees the arrays of x. */
static void vkve_mscratch_free(vkve_mscratch *x)
{
    free(x->s), free(x->sh), free(x->p), free(x->ph), free(x->out), free(x->outh), free(x->vis),
        free(x->scr);
}

/* Allocates x for ref (nv visual tokens) and lists the visual tokens in
 * x->vis (x->n of them). Returns VKV_OK or VKV_ENOMEM (then frees what it took). */
static int vkve_mscratch_alloc(vkve_mscratch *x, const vkve_data *ref, uint32_t nv)
{
    uint32_t T = ref->tokens, D = ref->head_dim;
    x->s = malloc(T * sizeof(double)), x->sh = malloc(T * sizeof(double));
    x->p = malloc(T * sizeof(double)), x->ph = malloc(T * sizeof(double));
    x->out = malloc(D * sizeof(double)), x->outh = malloc(D * sizeof(double));
    x->vis = malloc((nv ? nv : 1) * sizeof(uint32_t));
    x->scr = malloc((2 * (size_t)nv + 1) * sizeof(vkve_rank));
    if (!x->s || !x->sh || !x->p || !x->ph || !x->out || !x->outh || !x->vis || !x->scr) {
        vkve_mscratch_free(x);
        return VKV_ENOMEM;
    }
    x->n = 0;
    for (uint32_t t = 0; t < T; t++)
        if (vkve_is_visual(ref, t))
            x->vis[x->n++] = t;
    return VKV_OK;
}

/* Attention metrics of query head h in layer l, averaged over the queries,
 * into m's kl_lh / err_lh / rec_lh. */
static void vkve_head_metrics(const vkve_data *ref, float *const *k_hat, float *const *v_hat,
                              const vkve_metric_opts *o, uint32_t l, uint32_t h, uint32_t nv,
                              vkve_mscratch *x, vkve_metrics *m)
{
    uint32_t NH = ref->n_heads, D = ref->head_dim, T = ref->tokens;
    uint32_t kh = h / (NH / ref->kv_heads);
    double a_kl = 0, a_err = 0, a_rec = 0;
    for (uint32_t qi = 0; qi < ref->n_queries; qi++) {
        const float *q = ref->q[l] + ((size_t)qi * NH + h) * D;
        vkve_logits(ref, ref->k[l], kh, q, x->s);
        vkve_logits(ref, k_hat[l], kh, q, x->sh);
        if (o->calib_offset > 0)
            vkve_calibrate_logits(x->sh, x->vis, nv, o->calib_offset);
        vkve_softmax(x->s, T, x->p);
        vkve_softmax(x->sh, T, x->ph);
        a_kl += vkve_kl(x->p, x->ph, T);
        vkve_attn_out(ref, ref->v[l], kh, x->p, x->out);
        vkve_attn_out(ref, v_hat[l], kh, x->ph, x->outh);
        double e = 0, nn = 0;
        for (uint32_t i = 0; i < D; i++) {
            e += (x->out[i] - x->outh[i]) * (x->out[i] - x->outh[i]);
            nn += x->out[i] * x->out[i];
        }
        a_err += nn > 0 ? sqrt(e / nn) : (e > 0 ? INFINITY : 0.0);
        a_rec += vkve_topk_recall(x->p, x->ph, x->vis, nv, o->topk, x->scr);
    }
    size_t at = (size_t)l * NH + h;
    m->kl_lh[at] = a_kl / ref->n_queries;
    m->err_lh[at] = a_err / ref->n_queries;
    m->rec_lh[at] = a_rec / ref->n_queries;
}

/* Squared errors and norms of the visual keys (e[0], e[1]) and values
 * (e[2], e[3]) of KV head kh in layer l. */
static void vkve_kv_errors(const vkve_data *ref, float *const *k_hat, float *const *v_hat,
                           uint32_t l, uint32_t kh, const uint32_t *vis, uint32_t nv, double e[4])
{
    uint32_t H = ref->kv_heads, D = ref->head_dim;
    double lek = 0, lsk = 0, lev = 0, lsv = 0;
    for (uint32_t j = 0; j < nv; j++) {
        size_t base = ((size_t)vis[j] * H + kh) * D;
        for (uint32_t i = 0; i < D; i++) {
            double a = ref->k[l][base + i], b = k_hat[l][base + i];
            double c = ref->v[l][base + i], dd = v_hat[l][base + i];
            lek += (a - b) * (a - b);
            lsk += a * a;
            lev += (c - dd) * (c - dd);
            lsv += c * c;
        }
    }
    e[0] = lek, e[1] = lsk, e[2] = lev, e[3] = lsv;
}

/* See metrics.h. */
int vkve_metrics_compute(const vkve_data *ref, float *const *k_hat, float *const *v_hat,
                         const vkve_metric_opts *o, vkve_metrics *m)
{
    memset(m, 0, sizeof *m);
    if (!ref->n_queries || !ref->kv_heads || !ref->n_heads || ref->n_heads % ref->kv_heads)
        return VKV_EINVAL;
    uint32_t L = ref->layers, NH = ref->n_heads, H = ref->kv_heads, nv = vkve_n_visual(ref);
    m->layers = L;
    m->n_heads = NH;
    m->kv_heads = H;
    m->kl_lh = calloc((size_t)L * NH, sizeof(double));
    m->err_lh = calloc((size_t)L * NH, sizeof(double));
    m->rec_lh = calloc((size_t)L * NH, sizeof(double));
    m->nmse_k_lh = calloc((size_t)L * H, sizeof(double));
    m->nmse_v_lh = calloc((size_t)L * H, sizeof(double));
    vkve_mscratch x;
    if (!m->kl_lh || !m->err_lh || !m->rec_lh || !m->nmse_k_lh || !m->nmse_v_lh ||
        vkve_mscratch_alloc(&x, ref, nv) != VKV_OK) {
        vkve_metrics_free(m);
        return VKV_ENOMEM;
    }
    double ek = 0, sk = 0, ev = 0, sv = 0, kl_sum = 0, err_sum = 0, rec_sum = 0;
    m->recall_min = 1.0;
    for (uint32_t l = 0; l < L; l++) {
        double kl_layer = 0;
        for (uint32_t h = 0; h < NH; h++) {
            size_t at = (size_t)l * NH + h;
            vkve_head_metrics(ref, k_hat, v_hat, o, l, h, nv, &x, m);
            kl_layer += m->kl_lh[at];
            kl_sum += m->kl_lh[at];
            err_sum += m->err_lh[at];
            rec_sum += m->rec_lh[at];
            if (m->rec_lh[at] < m->recall_min)
                m->recall_min = m->rec_lh[at];
        }
        kl_layer /= NH;
        if (kl_layer > m->kl_worst_layer)
            m->kl_worst_layer = kl_layer;
        for (uint32_t kh = 0; kh < H; kh++) {
            double e[4];
            vkve_kv_errors(ref, k_hat, v_hat, l, kh, x.vis, x.n, e);
            m->nmse_k_lh[(size_t)l * H + kh] = e[1] > 0 ? e[0] / e[1] : 0;
            m->nmse_v_lh[(size_t)l * H + kh] = e[3] > 0 ? e[2] / e[3] : 0;
            ek += e[0], sk += e[1], ev += e[2], sv += e[3];
        }
    }
    m->kl = kl_sum / ((double)L * NH);
    m->out_err = err_sum / ((double)L * NH);
    m->recall = rec_sum / ((double)L * NH);
    m->nmse_k = sk > 0 ? ek / sk : 0;
    m->nmse_v = sv > 0 ? ev / sv : 0;
    vkve_mscratch_free(&x);
    return VKV_OK;
}
