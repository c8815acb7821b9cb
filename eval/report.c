/* eval/report.c - measuring a codec and writing the results (see report.h). */
#include "eval/report.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "common/errbuf.h"
#include "vkv/error.h"

/* See report.h. */
int vkve_run_codec(const vkve_data *d, const char *spec, uint32_t chunk, uint32_t topk,
                   vkve_row *row, char *err, size_t errlen)
{
    vkve_codec c;
    float **ko = NULL, **vo = NULL;
    memset(row, 0, sizeof *row);
    int rc = vkve_codec_parse(spec, &c, err, errlen);
    if (rc != VKV_OK)
        return rc;
    snprintf(row->profile, sizeof row->profile, "%s", d->name);
    snprintf(row->codec, sizeof row->codec, "%s%s", c.kind == VKVE_BLOCK && c.sim ? "sim-" : "",
             c.text + (strncmp(c.text, "sim-", 4) == 0 ? 4 : 0));
    row->impl = c.kind == VKVE_FP16    ? "id"
                : c.kind != VKVE_BLOCK ? "eval"
                : c.sim                ? "sim"
                                       : "block";
    rc = vkve_codec_bits(&c, &row->bpe);
    if (rc != VKV_OK)
        return vkv_errbuf(err, errlen, rc, "%s: cannot size: %s", spec, vkv_strerror(rc));
    size_t n = (size_t)d->tokens * d->kv_heads * d->head_dim;
    if (vkve_layers_alloc(d->layers, n, &ko) || vkve_layers_alloc(d->layers, n, &vo)) {
        rc = VKV_ENOMEM;
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    rc = vkve_codec_apply(&c, d, chunk, ko, vo, err, errlen);
    if (rc != VKV_OK)
        goto out;
    vkve_metric_opts o = {.topk = topk, .calib_offset = c.kind == VKVE_CALIBQUANT ? c.calib : 0};
    rc = vkve_metrics_compute(d, ko, vo, &o, &row->m);
    if (rc != VKV_OK)
        snprintf(err, errlen, "metrics: %s", vkv_strerror(rc));
out:
    vkve_layers_free(ko, d->layers);
    vkve_layers_free(vo, d->layers);
    return rc;
}

/* See report.h. */
void vkve_rows_free(vkve_row *rows, size_t n)
{
    for (size_t i = 0; i < n; i++)
        vkve_metrics_free(&rows[i].m);
}

/* See report.h. */
void vkve_print_table(FILE *fp, const vkve_row *rows, size_t n, uint32_t topk)
{
    fprintf(fp, "%-14s %-48s %-5s %6s %9s %9s %8s %6s %6s %8s %8s\n", "profile", "codec", "impl",
            "bits", "KL", "KLworstL", "out_err", "rec", "recmin", "nmse_k", "nmse_v");
    for (size_t i = 0; i < n; i++) {
        const vkve_row *r = &rows[i];
        fprintf(fp, "%-14s %-48s %-5s %6.4f %9.3e %9.3e %8.4f %6.3f %6.3f %8.4f %8.4f\n",
                r->profile, r->codec, r->impl, r->bpe, r->m.kl, r->m.kl_worst_layer, r->m.out_err,
                r->m.recall, r->m.recall_min, r->m.nmse_k, r->m.nmse_v);
    }
    fprintf(
        fp,
        "(bits: per element on a 32-layer, 8-KV-head, head_dim-128, 256-token all-visual chunk, "
        "header and metadata included; rec = top-%u recall of visual tokens)\n",
        topk);
}

/* Adds a JSON array of n doubles under `name`; returns true, or false
 * when out of memory. */
static bool vkve_json_arr(cJSON *o, const char *name, const double *a, size_t n)
{
    cJSON *arr = cJSON_AddArrayToObject(o, name);
    if (!arr)
        return false;
    for (size_t i = 0; i < n; i++) {
        cJSON *x = cJSON_CreateNumber(a[i]);
        if (!x)
            return false;
        cJSON_AddItemToArray(arr, x);
    }
    return true;
}

/* See report.h. */
int vkve_write_json(const char *path, const vkve_row *rows, size_t n, uint32_t topk, int per_head)
{
    cJSON *root = cJSON_CreateObject(), *arr;
    int rc = VKV_ENOMEM;
    char *txt = NULL;
    if (!root || !cJSON_AddNumberToObject(root, "topk", topk) ||
        !cJSON_AddStringToObject(root, "bits_reference",
                                 "32 layers, 8 KV heads, head_dim 128, 256 visual tokens, F16") ||
        !(arr = cJSON_AddArrayToObject(root, "rows")))
        goto out;
    for (size_t i = 0; i < n; i++) {
        const vkve_row *r = &rows[i];
        cJSON *o = cJSON_CreateObject();
        if (!o)
            goto out;
        cJSON_AddItemToArray(arr, o);
        if (!cJSON_AddStringToObject(o, "profile", r->profile) ||
            !cJSON_AddStringToObject(o, "codec", r->codec) ||
            !cJSON_AddStringToObject(o, "impl", r->impl) ||
            !cJSON_AddNumberToObject(o, "bits_per_element", r->bpe) ||
            !cJSON_AddNumberToObject(o, "kl", r->m.kl) ||
            !cJSON_AddNumberToObject(o, "kl_worst_layer", r->m.kl_worst_layer) ||
            !cJSON_AddNumberToObject(o, "out_err", r->m.out_err) ||
            !cJSON_AddNumberToObject(o, "recall", r->m.recall) ||
            !cJSON_AddNumberToObject(o, "recall_min", r->m.recall_min) ||
            !cJSON_AddNumberToObject(o, "nmse_k", r->m.nmse_k) ||
            !cJSON_AddNumberToObject(o, "nmse_v", r->m.nmse_v))
            goto out;
        if (per_head) {
            size_t lh = (size_t)r->m.layers * r->m.n_heads,
                   lk = (size_t)r->m.layers * r->m.kv_heads;
            if (!cJSON_AddNumberToObject(o, "layers", r->m.layers) ||
                !cJSON_AddNumberToObject(o, "n_heads", r->m.n_heads) ||
                !cJSON_AddNumberToObject(o, "kv_heads", r->m.kv_heads) ||
                !vkve_json_arr(o, "kl_per_layer_head", r->m.kl_lh, lh) ||
                !vkve_json_arr(o, "out_err_per_layer_head", r->m.err_lh, lh) ||
                !vkve_json_arr(o, "recall_per_layer_head", r->m.rec_lh, lh) ||
                !vkve_json_arr(o, "nmse_k_per_layer_kvhead", r->m.nmse_k_lh, lk) ||
                !vkve_json_arr(o, "nmse_v_per_layer_kvhead", r->m.nmse_v_lh, lk))
                goto out;
        }
    }
    txt = cJSON_Print(root);
    if (!txt)
        goto out;
    FILE *fp = fopen(path, "w");
    rc = VKV_EIO;
    if (fp) {
        int bad = fputs(txt, fp) < 0 || fputc('\n', fp) == EOF;
        if (fclose(fp) == 0 && !bad)
            rc = VKV_OK;
    }
out:
    free(txt);
    cJSON_Delete(root);
    return rc;
}

/* Writes rows separated by `sep`; specs contain commas, so with ',' the
 * codec field is quoted. */
static int vkve_write_sep(const char *path, const vkve_row *rows, size_t n, char sep)
{
    FILE *fp = fopen(path, "w");
    if (!fp)
        return VKV_EIO;
    const char *q = sep == ',' ? "\"" : "";
    fprintf(fp,
            "profile%ccodec%cimpl%cbits_per_element%ckl%ckl_worst_layer%cout_err%crecall%c"
            "recall_min%cnmse_k%cnmse_v\n",
            sep, sep, sep, sep, sep, sep, sep, sep, sep, sep);
    for (size_t i = 0; i < n; i++) {
        const vkve_row *r = &rows[i];
        fprintf(fp, "%s%c%s%s%s%c%s%c%.6f%c%.6e%c%.6e%c%.6f%c%.6f%c%.6f%c%.6f%c%.6f\n", r->profile,
                sep, q, r->codec, q, sep, r->impl, sep, r->bpe, sep, r->m.kl, sep,
                r->m.kl_worst_layer, sep, r->m.out_err, sep, r->m.recall, sep, r->m.recall_min, sep,
                r->m.nmse_k, sep, r->m.nmse_v);
    }
    return fclose(fp) == 0 ? VKV_OK : VKV_EIO;
}

/* See report.h. */
int vkve_write_csv(const char *path, const vkve_row *rows, size_t n)
{
    return vkve_write_sep(path, rows, n, ',');
}

/* See report.h. */
int vkve_write_tsv(const char *path, const vkve_row *rows, size_t n)
{
    return vkve_write_sep(path, rows, n, '\t');
}

/* See report.h. */
int vkve_write_gnuplot(const char *gp_path, const char *csv_name, const char *png_name,
                       const char *const *profiles, size_t n_profiles)
{
    FILE *fp = fopen(gp_path, "w");
    if (!fp)
        return VKV_EIO;
    fprintf(fp,
            "# Rate-distortion plot written by `vkv-eval table`. Run it from its own folder:\n"
            "#   cd docs/fidelity && gnuplot fidelity.gp\n"
            "set terminal pngcairo size 1400,560 noenhanced font ',10'\n"
            "set output '%s'\n"
            "set datafile separator tab\n"
            "set key outside bottom center horizontal\n"
            "set logscale xy\n"
            "set xrange [0.9:3]\n"
            "set grid\n"
            "set xlabel 'bits per element (reference chunk, all metadata)'\n"
            "set multiplot layout 1,2\n",
            png_name);
    static const char *const what[2][3] = {{"5", "attention KL(P||P_hat), nats", "KL"},
                                           {"7", "attention output relative error", "out_err"}};
    for (int w = 0; w < 2; w++) {
        fprintf(fp, "set title '%s vs bits/element'\nset ylabel '%s'\nplot ", what[w][2],
                what[w][1]);
        for (size_t i = 0; i < n_profiles; i++)
            fprintf(fp,
                    "%s'%s' skip 1 using (strcol(1) eq '%s' && $4 < 8 ? $4 : 1/0):%s with points "
                    "pt %zu ps 1.3 title '%s'",
                    i ? ", \\\n     " : "", csv_name, profiles[i], what[w][0], i + 5, profiles[i]);
        fprintf(fp, "\n");
    }
    fprintf(fp, "unset multiplot\n");
    return fclose(fp) == 0 ? VKV_OK : VKV_EIO;
}
