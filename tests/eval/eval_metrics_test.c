/* tests/eval/eval_metrics_test.c - the fidelity metrics on hand-computed cases. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "eval/metrics.h"
#include "vkv/error.h"

#define NEAR(a, b, tol) assert_true(fabs((double)(a) - (double)(b)) <= (tol))

static void softmax_of_logs_gives_the_normalised_weights(void **state)
{
    (void)state;
    double x[3] = {0.0, log(2.0), log(3.0)}, p[3];
    vkve_softmax(x, 3, p);
    NEAR(p[0], 1.0 / 6, 1e-12);
    NEAR(p[1], 2.0 / 6, 1e-12);
    NEAR(p[2], 3.0 / 6, 1e-12);
    double big[2] = {1000.0, 1000.0 + log(3.0)}; /* no overflow */
    vkve_softmax(big, 2, p);
    NEAR(p[0], 0.25, 1e-12);
}

static void kl_matches_the_closed_form(void **state)
{
    (void)state;
    double p[2] = {0.5, 0.5}, q[2] = {0.25, 0.75};
    /* 0.5 ln 2 + 0.5 ln(2/3) = 0.5 ln(4/3) */
    NEAR(vkve_kl(p, q, 2), 0.5 * log(4.0 / 3.0), 1e-12);
    NEAR(vkve_kl(p, p, 2), 0.0, 0.0);
    double p0[2] = {0.0, 1.0}, q0[2] = {0.5, 0.5};
    NEAR(vkve_kl(p0, q0, 2), log(2.0), 1e-12); /* zero-probability term adds nothing */
    double qz[2] = {1.0, 0.0};
    assert_true(isfinite(vkve_kl(p0, qz, 2))); /* floored, stays finite */
}

static void topk_recall_counts_the_shared_top_tokens(void **state)
{
    (void)state;
    double p[6] = {0.9, 0.5, 0.4, 0.3, 0.2, 0.1};
    double q[6] = {0.9, 0.1, 0.4, 0.3, 0.2, 0.5};
    uint32_t idx[5] = {1, 2, 3, 4, 5}; /* token 0 (the sink) is not visual */
    vkve_rank scr[10];
    /* top-2 visual by p: {1, 2}; by q: {5, 2} -> 1 of 2 */
    NEAR(vkve_topk_recall(p, q, idx, 5, 2, scr), 0.5, 1e-12);
    NEAR(vkve_topk_recall(p, p, idx, 5, 3, scr), 1.0, 1e-12);
    /* k larger than the candidates is clamped */
    NEAR(vkve_topk_recall(p, q, idx, 5, 32, scr), 1.0, 1e-12);
}

static void nmse_is_error_energy_over_signal_energy(void **state)
{
    (void)state;
    float x[2] = {3.0f, 4.0f}, y[2] = {3.0f, 3.0f};
    NEAR(vkve_nmse(x, y, 2), 1.0 / 25.0, 1e-12);
    NEAR(vkve_nmse(x, x, 2), 0.0, 0.0);
}

static void calibration_maps_the_visual_logit_range(void **state)
{
    (void)state;
    double s[4] = {10.0, 0.0, 2.0, 6.0};
    uint32_t vis[3] = {1, 2, 3};
    vkve_calibrate_logits(s, vis, 3, 3.0);
    /* [0, 6] -> [0, 3]: halves each visual logit; token 0 untouched */
    NEAR(s[0], 10.0, 0.0);
    NEAR(s[1], 0.0, 1e-6);
    NEAR(s[2], 1.0, 1e-6);
    NEAR(s[3], 3.0, 1e-6);
}

/* A one-layer cache: tokens 0 (raw) and 1 (visual), 1 KV head, head_dim 4,
 * two query heads sharing it (GQA 2), one query each. */
static void setup_tiny(vkve_data *d)
{
    memset(d, 0, sizeof *d);
    d->layers = 1;
    d->kv_heads = 1;
    d->head_dim = 4;
    d->tokens = 2;
    d->n_heads = 2;
    d->n_queries = 1;
    d->n_ranges = 1;
    d->ranges[0].start = 1;
    d->ranges[0].len = 1;
    assert_int_equal(vkve_data_alloc(d), VKV_OK);
    /* k0 = 0, k1 = e0; v0 = (1,0,0,0), v1 = (0,1,0,0) */
    d->k[0][4] = 1.0f;
    d->v[0][0] = 1.0f;
    d->v[0][5] = 1.0f;
    /* head 0 query (2,0,0,0): logits (0, 1); head 1 query 0: logits (0, 0) */
    d->q[0][0] = 2.0f;
}

static void attention_metrics_follow_the_formulas_with_gqa(void **state)
{
    (void)state;
    vkve_data d;
    setup_tiny(&d);
    float kh[8], vh[8];
    memcpy(kh, d.k[0], sizeof kh);
    memcpy(vh, d.v[0], sizeof vh);
    kh[4] = 0.0f; /* decoded k1 = 0: head 0 logits become (0, 0) */
    vh[5] = 0.5f; /* decoded v1 = (0, 0.5, 0, 0) */
    float *kp[1] = {kh}, *vp[1] = {vh};
    vkve_metric_opts o = {.topk = 32};
    vkve_metrics m;
    assert_int_equal(vkve_metrics_compute(&d, kp, vp, &o, &m), VKV_OK);
    double e = exp(1.0), p0 = 1.0 / (1.0 + e), p1 = e / (1.0 + e);
    /* head 0: P = (p0, p1), P_hat = (.5, .5) */
    double kl0 = p0 * log(p0 / 0.5) + p1 * log(p1 / 0.5);
    NEAR(m.kl_lh[0], kl0, 1e-9);
    NEAR(m.kl_lh[1], 0.0, 1e-12); /* head 1 sees identical logits */
    NEAR(m.kl, kl0 / 2, 1e-9);
    /* head 0: o = (p0, p1), o_hat = (.5, .25) */
    double err0 =
        sqrt((p0 - 0.5) * (p0 - 0.5) + (p1 - 0.25) * (p1 - 0.25)) / sqrt(p0 * p0 + p1 * p1);
    NEAR(m.err_lh[0], err0, 1e-6);
    /* head 1: o = (.5, .5), o_hat = (.5, .25) -> 0.25 / sqrt(.5) */
    NEAR(m.err_lh[1], 0.25 / sqrt(0.5), 1e-6);
    /* only the visual token counts for NMSE: k1 = e0 -> 0, v1 = e1 -> e1/2 */
    NEAR(m.nmse_k, 1.0, 1e-12);
    NEAR(m.nmse_v, 0.25, 1e-12);
    NEAR(m.recall, 1.0, 0.0); /* one visual token: always recalled */
    NEAR(m.kl_worst_layer, kl0 / 2, 1e-9);
    vkve_metrics_free(&m);
    vkve_data_free(&d);
}

static void identical_caches_score_perfectly(void **state)
{
    (void)state;
    vkve_data d;
    setup_tiny(&d);
    vkve_metric_opts o = {.topk = 32};
    vkve_metrics m;
    assert_int_equal(vkve_metrics_compute(&d, d.k, d.v, &o, &m), VKV_OK);
    NEAR(m.kl, 0.0, 0.0);
    NEAR(m.out_err, 0.0, 0.0);
    NEAR(m.nmse_k, 0.0, 0.0);
    NEAR(m.recall_min, 1.0, 0.0);
    vkve_metrics_free(&m);
    vkve_data_free(&d);
}

static void heads_that_do_not_divide_are_refused(void **state)
{
    (void)state;
    vkve_data d;
    setup_tiny(&d);
    d.kv_heads = 3; /* only the check runs; no array is read */
    vkve_metric_opts o = {.topk = 32};
    vkve_metrics m;
    assert_int_equal(vkve_metrics_compute(&d, d.k, d.v, &o, &m), VKV_EINVAL);
    d.kv_heads = 1;
    vkve_data_free(&d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(softmax_of_logs_gives_the_normalised_weights),
        cmocka_unit_test(kl_matches_the_closed_form),
        cmocka_unit_test(topk_recall_counts_the_shared_top_tokens),
        cmocka_unit_test(nmse_is_error_energy_over_signal_energy),
        cmocka_unit_test(calibration_maps_the_visual_logit_range),
        cmocka_unit_test(attention_metrics_follow_the_formulas_with_gqa),
        cmocka_unit_test(identical_caches_score_perfectly),
        cmocka_unit_test(heads_that_do_not_divide_are_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
