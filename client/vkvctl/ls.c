/*
 * client/vkvctl/ls.c - `vkvctl ls` (the entries as a table fitted to the
 * terminal, keys only, or JSON) and `vkvctl namespaces` (per-namespace
 * counts and bytes).
 */
#include <cjson/cJSON.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client/vkvctl/vkvctl.h"
#include "proto/proto.h"
#include "vkv/vkv.h"

static int g_sort_field; /* 0 none, 1 recency, 2 size, 3 hits */

/* qsort comparator: descending by the chosen field, then by key. */
static int cmp_entry(const void *a, const void *b)
{
    const vkvp_entry *x = &((const struct vkvctl_ent *)a)->e;
    const vkvp_entry *y = &((const struct vkvctl_ent *)b)->e;
    uint64_t u = 0, v = 0;
    switch (g_sort_field) {
    case 1:
        u = x->last_ms, v = y->last_ms;
        break;
    case 2:
        u = x->size, v = y->size;
        break;
    case 3:
        u = x->hits, v = y->hits;
        break;
    default:
        break;
    }
    if (u != v)
        return u > v ? -1 : 1;
    return memcmp(x->key.b, y->key.b, VKV_KEY_LEN);
}

/* Prints the usage of `ls` to fp. */
static void usage_ls(FILE *fp)
{
    fprintf(fp, "usage: vkvctl ls [--ns NS] [--tier hot|cold] [--sort recency|size|hits] "
                "[--limit N] [--long] [--quiet]\n"
                "  Lists entries (every namespace unless --ns; NS may be a unique prefix or\n"
                "  the model part). The KEY column is a unique key prefix and a long\n"
                "  namespace is shortened to fit the terminal, ending in \"...\": both can be\n"
                "  pasted into show, evict, delete and export. --long prints whole keys and\n"
                "  namespaces; --quiet only the keys. --sort orders by last access, size or\n"
                "  hits, largest first; without it entries come in the daemon's order.\n"
                "  --json prints an array of entry objects (whole keys and namespaces).\n");
}

/* Colour of a state name in `ls`. */
static const char *state_col(int state)
{
    switch (state) {
    case VKVP_STATE_READY:
        return vkvctl_col("32");
    case VKVP_STATE_COLD:
        return vkvctl_col("34");
    default:
        return vkvctl_col("33");
    }
}

/* Options of `ls`, as ls_parse reads them. The strings point into argv. */
struct ls_opts {
    const char *ns;   /* --ns as given, or NULL: every namespace */
    const char *tier; /* "hot", "cold", or NULL: both */
    long limit;       /* at most this many rows; -1: all */
    int sort;         /* the order (g_sort_field's values): 0 the daemon's */
    int long_form;    /* --long: whole keys and namespaces */
    int quiet;        /* --quiet: only the keys */
};

/* The g_sort_field value of a --sort name into *field. Returns false when
 * the name is not one of recency, size, hits. */
static bool ls_sort_field(const char *name, int *field)
{
    static const char *const names[] = {"recency", "size", "hits"};
    for (int i = 0; i < 3; i++)
        if (!strcmp(name, names[i])) {
            *field = i + 1;
            return true;
        }
    return false;
}

/* Parses the options of `ls` into *o. Returns true to go on; else false
 * with the exit code in *ex (help printed: VKVCTL_EX_OK; a bad option or operand:
 * VKVCTL_EX_USAGE after printing the usage to stderr). */
static bool ls_parse(int argc, char **argv, struct ls_opts *o, int *ex)
{
    static const struct option opts[] = {
        {"ns", required_argument, NULL, 'n'},   {"limit", required_argument, NULL, 'l'},
        {"tier", required_argument, NULL, 't'}, {"sort", required_argument, NULL, 's'},
        {"long", no_argument, NULL, 'L'},       {"quiet", no_argument, NULL, 'q'},
        {"help", no_argument, NULL, 'h'},       {0, 0, 0, 0}};
    const char *sort = NULL;
    int opt;
    memset(o, 0, sizeof *o);
    o->limit = -1;
    optind = 1;
    while ((opt = getopt_long(argc, argv, "n:l:t:s:Lqh", opts, NULL)) != -1) {
        switch (opt) {
        case 'n':
            o->ns = optarg;
            break;
        case 'l':
            o->limit = strtol(optarg, NULL, 10);
            break;
        case 't':
            o->tier = optarg;
            break;
        case 's':
            sort = optarg;
            break;
        case 'L':
            o->long_form = 1;
            break;
        case 'q':
            o->quiet = 1;
            break;
        case 'h':
            usage_ls(stdout);
            *ex = VKVCTL_EX_OK;
            return false;
        default:
            usage_ls(stderr);
            *ex = VKVCTL_EX_USAGE;
            return false;
        }
    }
    if ((sort && !ls_sort_field(sort, &o->sort)) ||
        (o->tier && strcmp(o->tier, "hot") && strcmp(o->tier, "cold")) || o->limit == 0 ||
        optind < argc) {
        usage_ls(stderr);
        *ex = VKVCTL_EX_USAGE;
        return false;
    }
    return true;
}

/* Moves the rows `ls` shows to the front of s->v (only namespace want_ns
 * unless it is (size_t)-1, only tier o->tier when set), sorts them as
 * o->sort asks and cuts them to o->limit. Returns how many rows to show. */
static size_t ls_select(struct vkvctl_scan *s, size_t want_ns, const struct ls_opts *o)
{
    size_t n = 0;
    for (size_t i = 0; i < s->n; i++) {
        const struct vkvctl_ent *e = &s->v[i];
        if ((want_ns != (size_t)-1 && e->ns_ix != want_ns) ||
            (o->tier && strcmp(vkvp_tier_name(e->e.tier), o->tier)))
            continue;
        struct vkvctl_ent t = s->v[i];
        s->v[i] = s->v[n];
        s->v[n++] = t;
    }
    g_sort_field = o->sort;
    if (g_sort_field && n > 1)
        qsort(s->v, n, sizeof *s->v, cmp_entry);
    if (o->limit > 0 && (long)n > o->limit)
        n = (size_t)o->limit;
    return n;
}

/* Columns of the `ls` table: how many key digits, which optional columns,
 * and the width left to the namespace (0 = unlimited). */
struct ls_layout {
    size_t klen, avail;
    int show_when, show_hits, show_state;
};

/* Width the NAMESPACE column needs for rows s->v[0..n) to stay unique
 * (about a name's unique prefix + "...", at most 24 for a long name) into
 * *need. Returns false when out of memory (its scratch is freed). */
static bool ls_ns_need(const struct vkvctl_scan *s, size_t n, size_t *need)
{
    size_t *uniq = calloc(s->nns + 1, sizeof *uniq);
    if (!uniq)
        return false;
    size_t ns_need = 9; /* "NAMESPACE" */
    for (size_t i = 0; i < s->nns; i++)
        uniq[i] = vkvctl_ns_unique_len(s, i);
    for (size_t i = 0; i < n; i++) {
        /* the narrowest a name can get is about its unique prefix + "..." */
        size_t ix = s->v[i].ns_ix, full = strlen(s->ns[ix]);
        size_t w = uniq[ix] + 3 < full ? uniq[ix] + 3 : full;
        if (w > 24 && full > 24) /* a HEAD...TAIL form may be shorter */
            w = 24;
        if (w > ns_need)
            ns_need = w;
    }
    free(uniq);
    *need = ns_need;
    return true;
}

/* Fits the table to the terminal: the namespace gets what the other
 * columns leave; when that is less than ns_need, drop LAST ACCESS, then
 * HITS, then STATE. Nothing is dropped with --long or off a terminal. */
static struct ls_layout ls_fit(size_t klen, int long_form, size_t ns_need)
{
    struct ls_layout lay = {klen, 0, 1, 1, 1};
    /* key, state, tier, size, hits, last access, the space before the namespace */
    size_t fixed = klen + 2 + 10 + 5 + 11 + 7 + 21 + 1;
    if (vkvctl.width && !long_form && fixed + ns_need > vkvctl.width)
        lay.show_when = 0, fixed -= 21;
    if (vkvctl.width && !long_form && fixed + ns_need > vkvctl.width)
        lay.show_hits = 0, fixed -= 7;
    if (vkvctl.width && !long_form && fixed + ns_need > vkvctl.width)
        lay.show_state = 0, fixed -= 10;
    lay.avail = long_form || !vkvctl.width ? 0 : vkvctl.width > fixed ? vkvctl.width - fixed : 1;
    return lay;
}

/* Prints the header line of the `ls` table laid out as lay. */
static void ls_print_header(const struct ls_layout *lay)
{
    printf("%s%-*s  ", vkvctl_col("1"), (int)lay->klen, "KEY");
    if (lay->show_state)
        printf("%-9s ", "STATE");
    printf("%-4s %10s ", "TIER", "SIZE");
    if (lay->show_hits)
        printf("%6s ", "HITS");
    if (lay->show_when)
        printf(" %-19s ", "LAST ACCESS");
    printf(" NAMESPACE%s\n", vkvctl_rst());
}

/* Prints the `ls` row of entry d of s laid out as lay. shown (the caller's,
 * VKVP_MAX_NS + 4 bytes per namespace of s, zeroed) caches each namespace
 * as printed, shortened once. */
static void ls_print_row(const struct vkvctl_scan *s, const struct vkvctl_ent *d,
                         const struct ls_layout *lay, char *shown)
{
    const vkvp_entry *e = &d->e;
    char hex[65], sz[32], when[32];
    vkv_key_hex(&e->key, hex);
    vkvctl_format_when(e->last_ms, when, sizeof when);
    printf("%s%-*.*s%s  ", vkvctl_col("36"), (int)lay->klen, (int)lay->klen, hex, vkvctl_rst());
    if (lay->show_state)
        printf("%s%-9s%s ", state_col(e->state), vkvp_state_name(e->state), vkvctl_rst());
    printf("%-4s %10s ", vkvp_tier_name(e->tier), vkvctl_hsize(e->size, sz, sizeof sz));
    if (lay->show_hits)
        printf("%6" PRIu64 " ", e->hits);
    if (lay->show_when)
        printf(" %-19s ", when);
    char *sh = shown + d->ns_ix * (VKVP_MAX_NS + 4); /* once per namespace */
    if (!sh[0])
        vkvctl_ns_short(s, d->ns_ix, lay->avail, sh);
    printf(" %s\n", sh);
}

/* Prints rows s->v[0..n) as the `ls` table (klen key digits, fitted to the
 * terminal unless long_form). Returns VKVCTL_EX_OK, or the exit code after
 * reporting that memory ran out. */
static int ls_print_table(const struct vkvctl_scan *s, size_t n, size_t klen, int long_form)
{
    size_t ns_need;
    if (!ls_ns_need(s, n, &ns_need))
        return vkvctl_fail(VKV_ENOMEM, NULL);
    char *shown = calloc(s->nns + 1, VKVP_MAX_NS + 4); /* each namespace as printed */
    if (!shown)
        return vkvctl_fail(VKV_ENOMEM, NULL);
    struct ls_layout lay = ls_fit(klen, long_form, ns_need);
    ls_print_header(&lay);
    for (size_t i = 0; i < n; i++)
        ls_print_row(s, &s->v[i], &lay, shown);
    free(shown);
    return VKVCTL_EX_OK;
}

/* Prints rows s->v[0..n) as `ls` does with --json (an array of entry
 * objects) or --quiet (the first klen digits of each key, one a line). */
static void ls_print_plain(const struct vkvctl_scan *s, size_t n, size_t klen)
{
    if (vkvctl.json) {
        cJSON *arr = cJSON_CreateArray();
        for (size_t i = 0; i < n; i++)
            vkvctl_show_entry(&s->v[i].e, arr);
        vkvctl_emit(arr);
        return;
    }
    char hex[65];
    for (size_t i = 0; i < n; i++) {
        vkv_key_hex(&s->v[i].e.key, hex);
        printf("%.*s\n", (int)klen, hex);
    }
}

int vkvctl_cmd_ls(vkv_client *c, int argc, char **argv)
{
    struct ls_opts o;
    int ex;
    if (!ls_parse(argc, argv, &o, &ex))
        return ex;
    /* Every entry is listed, even with --ns or --limit: the printed key and
     * namespace prefixes must be unique among all of them. */
    struct vkvctl_scan s;
    if ((ex = vkvctl_scan_entries(c, NULL, NULL, -1, &s)) != 0)
        return ex;
    size_t want_ns = (size_t)-1;
    if (o.ns && (want_ns = vkvctl_resolve_ns(&s, o.ns, &ex)) == (size_t)-1) {
        vkvctl_scan_free(&s);
        return ex;
    }
    size_t klen = o.long_form ? 64 : vkvctl_key_show_len(&s);
    size_t n = ls_select(&s, want_ns, &o);
    if (vkvctl.json || o.quiet)
        ls_print_plain(&s, n, klen);
    else
        ex = ls_print_table(&s, n, klen, o.long_form);
    vkvctl_scan_free(&s);
    return ex;
}

/* Prints the usage of `namespaces` to fp. */
static void usage_namespaces(FILE *fp)
{
    fprintf(fp, "usage: vkvctl namespaces [--quiet]\n"
                "  Every namespace that holds entries, with its entry counts per tier and\n"
                "  bytes; --quiet prints the names only. JSON: an array of {ns, model,\n"
                "  entries, hot, cold, bytes}.\n");
}

/* Parses the options of `namespaces` (--quiet into *quiet). Returns true to
 * go on; else false with the exit code in *ex (help printed: VKVCTL_EX_OK;
 * a bad option or operand: VKVCTL_EX_USAGE after printing the usage). */
static bool namespaces_parse(int argc, char **argv, int *quiet, int *ex)
{
    static const struct option opts[] = {
        {"quiet", no_argument, NULL, 'q'}, {"help", no_argument, NULL, 'h'}, {0, 0, 0, 0}};
    int o;
    *quiet = 0;
    optind = 1;
    while ((o = getopt_long(argc, argv, "qh", opts, NULL)) != -1) {
        if (o == 'q') {
            *quiet = 1;
        } else if (o == 'h') {
            usage_namespaces(stdout);
            *ex = VKVCTL_EX_OK;
            return false;
        } else {
            usage_namespaces(stderr);
            *ex = VKVCTL_EX_USAGE;
            return false;
        }
    }
    if (optind < argc) {
        usage_namespaces(stderr);
        *ex = VKVCTL_EX_USAGE;
        return false;
    }
    return true;
}

/* What `namespaces` shows of one namespace. */
struct ns_totals {
    uint64_t entries, hot, cold, bytes;
};

/* The totals of every namespace of s (indexed as s->ns), an array the
 * caller frees; NULL when out of memory. */
static struct ns_totals *namespaces_totals(const struct vkvctl_scan *s)
{
    struct ns_totals *agg = calloc(s->nns + 1, sizeof *agg);
    if (!agg)
        return NULL;
    for (size_t i = 0; i < s->n; i++) {
        struct ns_totals *a = &agg[s->v[i].ns_ix];
        a->entries++;
        if (s->v[i].e.tier == VKVP_TIER_COLD)
            a->cold++;
        else
            a->hot++;
        a->bytes += s->v[i].e.size;
    }
    return agg;
}

/* The JSON object of namespace ns with totals a. */
static cJSON *namespace_json(const char *ns, const struct ns_totals *a)
{
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "ns", ns);
    char model[VKVP_MAX_NS + 1];
    snprintf(model, sizeof model, "%.*s", (int)vkvctl_ns_model_len(ns), ns);
    cJSON_AddStringToObject(j, "model", model);
    cJSON_AddNumberToObject(j, "entries", (double)a->entries);
    cJSON_AddNumberToObject(j, "hot", (double)a->hot);
    cJSON_AddNumberToObject(j, "cold", (double)a->cold);
    cJSON_AddNumberToObject(j, "bytes", (double)a->bytes);
    return j;
}

int vkvctl_cmd_namespaces(vkv_client *c, int argc, char **argv)
{
    int quiet, ex;
    if (!namespaces_parse(argc, argv, &quiet, &ex))
        return ex;
    struct vkvctl_scan s;
    if ((ex = vkvctl_scan_entries(c, NULL, NULL, -1, &s)) != 0)
        return ex;
    struct ns_totals *agg = namespaces_totals(&s);
    if (!agg) {
        vkvctl_scan_free(&s);
        return vkvctl_fail(VKV_ENOMEM, NULL);
    }
    cJSON *arr = vkvctl.json ? cJSON_CreateArray() : NULL;
    if (!vkvctl.json && !quiet)
        printf("%s%8s %8s %8s %10s  NAMESPACE%s\n", vkvctl_col("1"), "ENTRIES", "HOT", "COLD",
               "SIZE", vkvctl_rst());
    for (size_t i = 0; i < s.nns; i++) {
        if (arr) {
            cJSON_AddItemToArray(arr, namespace_json(s.ns[i], &agg[i]));
        } else if (quiet) {
            puts(s.ns[i]);
        } else {
            char sz[32];
            printf("%8" PRIu64 " %8" PRIu64 " %8" PRIu64 " %10s  %s\n", agg[i].entries, agg[i].hot,
                   agg[i].cold, vkvctl_hsize(agg[i].bytes, sz, sizeof sz), s.ns[i]);
        }
    }
    if (arr)
        vkvctl_emit(arr);
    free(agg);
    vkvctl_scan_free(&s);
    return VKVCTL_EX_OK;
}
