/*
 * client/vkvctl/resolve.c - KEY arguments: a unique prefix of >= 8 hex
 * digits resolved to one entry through a full listing (within the
 * namespaces --ns names), and how many digits `ls` prints to stay unique.
 */
#include <ctype.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client/vkvctl/vkvctl.h"
#include "proto/proto.h"
#include "vkv/vkv.h"

#define KEY_MIN_HEX  8  /* shortest key prefix accepted */
#define KEY_SHOW_HEX 16 /* key digits `ls` prints (more when needed to be unique) */

/* Checks a KEY argument: 8..64 hex digits. Writes it in lower case to
 * hex[]. Returns 0, or VKVCTL_EX_USAGE after saying why. */
static int key_prefix_arg(const char *arg, char hex[65])
{
    size_t n = strlen(arg);
    for (size_t i = 0; i < n; i++)
        if (!isxdigit((unsigned char)arg[i]) || i >= 64) {
            char msg[200];
            snprintf(msg, sizeof msg,
                     "'%.80s' is not a key: give 8 to 64 hex digits "
                     "(the KEY column of vkvctl ls)",
                     arg);
            vkvctl_fail(VKV_EINVAL, msg);
            return VKVCTL_EX_USAGE;
        }
    if (n < KEY_MIN_HEX) {
        char msg[200];
        snprintf(msg, sizeof msg, "key prefix '%s' is too short: give at least %d hex digits", arg,
                 KEY_MIN_HEX);
        vkvctl_fail(VKV_EINVAL, msg);
        return VKVCTL_EX_USAGE;
    }
    for (size_t i = 0; i <= n; i++)
        hex[i] = (char)tolower((unsigned char)arg[i]);
    return 0;
}

/* Where vkvctl_resolve_keys looks for keys: a full listing and the namespaces of
 * it that --ns allows. Borrows the scan; owns the mask (key_scope_free). */
struct key_scope {
    const struct vkvctl_scan *s;
    const char *ns_arg; /* --ns as given, or NULL */
    char *allowed;      /* malloc'ed mask over s->ns; NULL: every namespace */
    size_t nallowed;    /* how many namespaces the mask allows */
    size_t want_ns;     /* the one allowed namespace, or (size_t)-1 */
};

/* Frees what a key_scope owns. */
static void key_scope_free(struct key_scope *sc)
{
    free(sc->allowed);
    sc->allowed = NULL;
}

/* Whether namespace ix of the scan may hold the keys. */
static bool key_scope_allows(const struct key_scope *sc, size_t ix)
{
    return !sc->allowed || sc->allowed[ix];
}

/* Lists every entry into *s (the daemon's exact --ns filter first, every
 * namespace when that finds nothing) and sets *sc to the namespaces
 * ns_arg names (all of them when ns_arg is NULL). The caller frees *s with
 * vkvctl_scan_free (also on failure) and *sc with key_scope_free (only on
 * success). Returns 0 or the exit code after reporting (VKVCTL_EX_NOTFOUND /
 * VKVCTL_EX_USAGE when --ns names no namespace). */
static int key_scope_open(vkv_client *c, const char *ns_arg, struct vkvctl_scan *s,
                          struct key_scope *sc)
{
    int ex;
    memset(sc, 0, sizeof *sc);
    sc->s = s;
    sc->ns_arg = ns_arg;
    sc->want_ns = (size_t)-1;
    if (!ns_arg)
        return vkvctl_scan_entries(c, NULL, NULL, -1, s);
    /* the daemon filters an exact namespace itself; anything else is
     * resolved against every namespace */
    if ((ex = vkvctl_scan_entries(c, ns_arg, NULL, -1, s)) != 0)
        return ex;
    if (s->n == 0) {
        vkvctl_scan_free(s);
        if ((ex = vkvctl_scan_entries(c, NULL, NULL, -1, s)) != 0)
            return ex;
    }
    if (!(sc->allowed = malloc(s->nns + 1)))
        return vkvctl_fail(VKV_ENOMEM, NULL);
    if ((sc->nallowed = vkvctl_ns_candidates(s, ns_arg, sc->allowed)) == 0) {
        key_scope_free(sc);
        return vkvctl_ns_report(s, ns_arg, NULL, 0);
    }
    for (size_t i = 0; sc->nallowed == 1 && i < s->nns; i++)
        if (sc->allowed[i])
            sc->want_ns = i;
    return 0;
}

/* Number of entries of the scope whose key starts with hex (lower case);
 * the index of the first of them into *first. */
static size_t key_matches(const struct key_scope *sc, const char *hex, size_t *first)
{
    size_t plen = strlen(hex), nm = 0;
    char kh[65];
    for (size_t j = 0; j < sc->s->n; j++) {
        const struct vkvctl_ent *e = &sc->s->v[j];
        vkv_key_hex(&e->e.key, kh);
        if (key_scope_allows(sc, e->ns_ix) && !strncmp(kh, hex, plen) && nm++ == 0)
            *first = j;
    }
    return nm;
}

/* Reports that KEY argument arg matches nothing in the scope. Returns
 * VKVCTL_EX_NOTFOUND. */
static int key_not_found(const struct key_scope *sc, const char *arg)
{
    char msg[VKVP_MAX_NS + 160];
    if (sc->want_ns != (size_t)-1)
        snprintf(msg, sizeof msg, "no entry matches key '%s' in namespace '%s'", arg,
                 sc->s->ns[sc->want_ns]);
    else if (sc->allowed)
        snprintf(msg, sizeof msg,
                 "no entry matches key '%s' in the %zu namespaces '%s' "
                 "names",
                 arg, sc->nallowed, sc->ns_arg);
    else
        snprintf(msg, sizeof msg, "no entry matches key '%s'", arg);
    return vkvctl_fail(VKV_ENOTFOUND, msg);
}

/* Reports that KEY argument arg (hex in lower case) matches the nm > 1
 * entries of the scope, the first at index first, listing them as "KEY  NS"
 * lines (its own memory, freed here). Returns VKVCTL_EX_USAGE, or the exit code of
 * running out of memory. */
static int key_ambiguous(const struct key_scope *sc, const char *arg, const char *hex, size_t nm,
                         size_t first)
{
    const struct vkvctl_scan *s = sc->s;
    size_t plen = strlen(hex), k = 0;
    char **cand = calloc(nm, sizeof *cand), kh[65];
    int same_key = 1;
    for (size_t j = 0; cand && j < s->n && k < nm; j++) {
        const struct vkvctl_ent *e = &s->v[j];
        vkv_key_hex(&e->e.key, kh);
        if (!key_scope_allows(sc, e->ns_ix) || strncmp(kh, hex, plen))
            continue;
        if (memcmp(e->e.key.b, s->v[first].e.key.b, VKV_KEY_LEN))
            same_key = 0;
        size_t cap = 64 + 2 + strlen(s->ns[e->ns_ix]) + 1;
        if (!(cand[k] = malloc(cap)))
            break;
        snprintf(cand[k++], cap, "%s  %s", kh, s->ns[e->ns_ix]);
    }
    char what[128];
    snprintf(what, sizeof what, "key prefix '%s'", arg);
    int ex = cand && k == nm ? vkvctl_ambiguous(what, (const char *const *)cand, nm,
                                                same_key ? "the key is in several namespaces: "
                                                           "add --ns NS"
                                                         : "give more hex digits of the key")
                             : vkvctl_fail(VKV_ENOMEM, NULL);
    for (size_t j = 0; cand && j < k; j++)
        free(cand[j]);
    free(cand);
    return ex;
}

/* Resolves KEY argument arg (already checked by key_prefix_arg) to the one
 * entry of the scope it names, into *out; see vkvctl_resolve_keys for missing_ok.
 * Returns 0 or the exit code after reporting. */
static int resolve_key(const struct key_scope *sc, const char *arg, int missing_ok,
                       struct vkvctl_target *out)
{
    char hex[65];
    size_t first = 0;
    key_prefix_arg(arg, hex);
    size_t nm = key_matches(sc, hex, &first);
    if (nm == 0 && missing_ok && strlen(hex) == 64 && sc->want_ns != (size_t)-1) {
        vkv_key_parse(hex, &out->key);
        out->ns_ix = sc->want_ns;
        return 0;
    }
    if (nm == 0)
        return key_not_found(sc, arg);
    if (nm > 1)
        return key_ambiguous(sc, arg, hex, nm, first);
    out->key = sc->s->v[first].e.key;
    out->ns_ix = sc->s->v[first].ns_ix;
    return 0;
}

int vkvctl_resolve_keys(vkv_client *c, const char *ns_arg, char **args, int n,
                        struct vkvctl_scan *s, struct vkvctl_target *out, int missing_ok)
{
    char hex[65];
    int ex;
    for (int i = 0; i < n; i++)
        if ((ex = key_prefix_arg(args[i], hex)) != 0) {
            memset(s, 0, sizeof *s);
            return ex;
        }
    struct key_scope sc;
    if ((ex = key_scope_open(c, ns_arg, s, &sc)) != 0)
        return ex;
    for (int i = 0; i < n && ex == 0; i++)
        ex = resolve_key(&sc, args[i], missing_ok, &out[i]);
    key_scope_free(&sc);
    return ex;
}

/* qsort comparator: keys in byte order. */
static int cmp_key(const void *a, const void *b)
{
    return memcmp(((const vkv_key *)a)->b, ((const vkv_key *)b)->b, VKV_KEY_LEN);
}

size_t vkvctl_key_show_len(const struct vkvctl_scan *s)
{
    size_t n = s->n, need = KEY_SHOW_HEX;
    vkv_key *k = malloc((n + 1) * sizeof *k);
    if (!k)
        return 64;
    for (size_t i = 0; i < n; i++)
        k[i] = s->v[i].e.key;
    qsort(k, n, sizeof *k, cmp_key);
    for (size_t i = 1; i < n; i++) {
        char a[65], b[65];
        vkv_key_hex(&k[i - 1], a);
        vkv_key_hex(&k[i], b);
        size_t c = 0;
        while (c < 64 && a[c] == b[c])
            c++;
        if (c < 64 && c + 1 > need) /* c == 64: the same key in two namespaces */
            need = c + 1;
    }
    free(k);
    return need;
}
