/*
 * eval/report.h - run one codec over one KV cache and report the result as
 * a text table, JSON (cJSON), CSV and a gnuplot rate-distortion script.
 */
#ifndef VKVE_REPORT_H
#define VKVE_REPORT_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "eval/codecs.h"
#include "eval/data.h"
#include "eval/metrics.h"

typedef struct vkve_row {
    char profile[64];
    char codec[160]; /* canonical spec */
    const char
        *impl;      /* "block" (library), "sim" (simulated block rule), "eval" (eval-only), "id" */
    double bpe;     /* bits/element on the reference chunk, all metadata included */
    vkve_metrics m; /* owns per-layer arrays: free with vkve_rows_free */
} vkve_row;

/* Runs codec `spec` over d (chunks of `chunk` tokens) and measures it with
 * top-`topk` recall. Fills *row (caller frees with vkve_rows_free). Returns
 * VKV_OK or the first error (message in err). */
int vkve_run_codec(const vkve_data *d, const char *spec, uint32_t chunk, uint32_t topk,
                   vkve_row *row, char *err, size_t errlen);

/* Frees the metric arrays of n rows (not the rows array). */
void vkve_rows_free(vkve_row *rows, size_t n);

/* Prints rows as an aligned text table to fp. */
void vkve_print_table(FILE *fp, const vkve_row *rows, size_t n, uint32_t topk);

/* Writes rows as JSON to path (per-layer/head arrays when per_head).
 * Returns VKV_OK, VKV_ENOMEM or VKV_EIO. */
int vkve_write_json(const char *path, const vkve_row *rows, size_t n, uint32_t topk, int per_head);

/* Writes rows as CSV with a header line. Returns VKV_OK or VKV_EIO. */
int vkve_write_csv(const char *path, const vkve_row *rows, size_t n);

/* Same with tab separators and no quoting (what the gnuplot script reads:
 * gnuplot does not honour CSV quotes). */
int vkve_write_tsv(const char *path, const vkve_row *rows, size_t n);

/* Writes a gnuplot script at gp_path that reads csv_name (a TSV from vkve_write_tsv; a path
 * relative to the directory gnuplot runs in) and draws png_name: KL and output error against
 * bits/element, one colour per profile. Returns VKV_OK or VKV_EIO. */
int vkve_write_gnuplot(const char *gp_path, const char *csv_name, const char *png_name,
                       const char *const *profiles, size_t n_profiles);

#endif
