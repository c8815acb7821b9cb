/*
 * eval/metrics.h - what the attention computes with the decoded cache,
 * compared with what it computes with the original.
 *
 * For each layer l, query i and query head h (reading KV head
 * h / (n_heads / kv_heads)) the logits over the whole context are
 * s_t = q . k_t / sqrt(head_dim), P = softmax(s); P_hat and the output use the
 * decoded K and V. Decode-time queries sit after every cached token, so no
 * causal mask applies. Reported per (layer, query head), averaged over the
 * queries, and aggregated over everything:
 *   kl       KL(P || P_hat) in nats over all tokens
 *   out_err  ||o - o_hat|| / ||o||, o = sum_t P_t v_t
 *   recall   |top-k visual tokens by P  intersect  top-k by P_hat| / k
 * and per (layer, KV head) for the visual tokens only (raw tokens are exact):
 *   nmse_k, nmse_v   sum ||x - x_hat||^2 / sum ||x||^2
 */
#ifndef VKVE_METRICS_H
#define VKVE_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "eval/data.h"

/* Writes softmax(x[0..n)) into p (caller-owned, n doubles). Max-subtracted,
 * so any finite input works. */
void vkve_softmax(const double *x, size_t n, double *p);

/* KL(p || q) = sum p_i ln(p_i / q_i) in nats; terms with p_i = 0 add 0, and
 * q_i is floored at 1e-300 so the result stays finite. */
double vkve_kl(const double *p, const double *q, size_t n);

/* Fraction of the k largest p[idx[j]] (j < n_idx) that are also among the k
 * largest q[idx[j]]; k is clamped to n_idx (1.0 when n_idx is 0). Ties go to
 * the lower index. `scratch` is caller-owned space for 2 * n_idx entries of
 * vkve_rank. */
typedef struct vkve_rank {
    double val;
    uint32_t idx;
} vkve_rank;
double vkve_topk_recall(const double *p, const double *q, const uint32_t *idx, size_t n_idx,
                        uint32_t k, vkve_rank *scratch);

/* Normalized MSE: sum (x-y)^2 / sum x^2 (0 when both sums are 0). */
double vkve_nmse(const float *x, const float *y, size_t n);

/* Linear logit post-scaling of CalibQuant applied to the visual logits of
 * one (head, query): [min, max] is mapped to [min, max - offset] (exactly as
 * its code: (s - min) / (max - min + 1e-8) * (max - offset - min) + min).
 * s holds all n logits; only those at idx[0..n_idx) change. */
void vkve_calibrate_logits(double *s, const uint32_t *idx, size_t n_idx, double offset);

typedef struct vkve_metric_opts {
    uint32_t topk;       /* k of the recall (32) */
    double calib_offset; /* >0: apply vkve_calibrate_logits to P_hat's logits */
} vkve_metric_opts;

typedef struct vkve_metrics {
    uint32_t layers, n_heads, kv_heads;
    double kl, out_err, recall;      /* means over layers, heads, queries */
    double kl_worst_layer;           /* largest per-layer mean KL */
    double recall_min;               /* smallest per-(layer, head) mean recall */
    double nmse_k, nmse_v;           /* over all visual elements */
    double *kl_lh, *err_lh, *rec_lh; /* [layers][n_heads], owned */
    double *nmse_k_lh, *nmse_v_lh;   /* [layers][kv_heads], owned */
} vkve_metrics;

/* Computes every metric of the decoded (k_hat, v_hat; same layout as ref->k)
 * against ref. Fills *m (free its arrays with vkve_metrics_free). Reads all
 * inputs only. Returns VKV_OK, VKV_EINVAL (n_heads not a multiple of
 * kv_heads, no queries) or VKV_ENOMEM. */
int vkve_metrics_compute(const vkve_data *ref, float *const *k_hat, float *const *v_hat,
                         const vkve_metric_opts *o, vkve_metrics *m);

/* Frees the per-layer arrays of m. */
void vkve_metrics_free(vkve_metrics *m);

#endif
