/*
 * client/vkvctl/scan.c - every entry listed through LIST, and the --ns
 * argument: matching a namespace the user typed (prefix, model part, a
 * name `ls` shortened with "...") and shortening one to fit a column.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client/client_internal.h"
#include "client/vkvctl/vkvctl.h"
#include "proto/proto.h"
#include "vkv/vkv.h"

void vkvctl_scan_free(struct vkvctl_scan *s)
{
    for (size_t i = 0; i < s->n; i++)
        free((char *)s->v[i].e.shape.ptr);
    for (size_t i = 0; i < s->nns; i++)
        free(s->ns[i]);
    free(s->v);
    free(s->ns);
    memset(s, 0, sizeof *s);
}

/* Index of namespace text (len bytes) in s, interning a copy when new;
 * (size_t)-1 when out of memory. */
static size_t scan_intern(struct vkvctl_scan *s, const char *p, size_t len)
{
    for (size_t i = 0; i < s->nns; i++)
        if (strlen(s->ns[i]) == len && memcmp(s->ns[i], p, len) == 0)
            return i;
    if (s->nns == s->nscap) {
        size_t nc = s->nscap ? 2 * s->nscap : 16;
        char **na = realloc(s->ns, nc * sizeof *na);
        if (!na)
            return (size_t)-1;
        s->ns = na;
        s->nscap = nc;
    }
    char *d = malloc(len + 1);
    if (!d)
        return (size_t)-1;
    memcpy(d, p, len);
    d[len] = '\0';
    s->ns[s->nns] = d;
    return s->nns++;
}

int vkvctl_scan_entries(vkv_client *c, const char *ns, const char *tier, long max,
                        struct vkvctl_scan *s)
{
    memset(s, 0, sizeof *s);
    uint64_t cursor = 0;
    do {
        vkvp_request rq;
        vkvp_reply *rep;
        char why[256] = "";
        vkvp_request_init(&rq, VKVP_LIST, 0);
        rq.u.list.session = vkvc_session(c);
        rq.u.list.cursor = cursor;
        rq.u.list.limit = VKVP_MAX_LIST;
        if (ns) {
            rq.u.list.has_ns = true;
            rq.u.list.ns = vkvp_cstr(ns);
        }
        int rc = vkvc_call(c, &rq, &rep, why, sizeof why);
        if (rc) {
            vkvctl_scan_free(s);
            return vkvctl_fail(rc, why);
        }
        for (uint32_t i = 0; i < rep->u.list.nentries; i++) {
            const vkvp_entry *e = &rep->u.list.entries[i];
            if (tier && strcmp(vkvp_tier_name(e->tier), tier))
                continue;
            if (max >= 0 && (long)s->n >= max)
                break;
            if (s->n == s->cap) {
                size_t nc = s->cap ? 2 * s->cap : 256;
                struct vkvctl_ent *na = realloc(s->v, nc * sizeof *na);
                if (!na)
                    goto oom;
                s->v = na;
                s->cap = nc;
            }
            size_t ix = scan_intern(s, e->ns.ptr ? e->ns.ptr : "", e->ns.len);
            char *shape = malloc(e->shape.len + 1);
            if (ix == (size_t)-1 || !shape) {
                free(shape);
                goto oom;
            }
            memcpy(shape, e->shape.ptr ? e->shape.ptr : "", e->shape.len);
            shape[e->shape.len] = '\0';
            struct vkvctl_ent *d = &s->v[s->n++];
            d->e = *e;
            d->ns_ix = ix;
            d->e.shape = vkvp_cstr(shape);
            continue;
        oom:
            vkvp_reply_free(rep);
            vkvctl_scan_free(s);
            return vkvctl_fail(VKV_ENOMEM, NULL);
        }
        cursor = rep->u.list.next;
        vkvp_reply_free(rep);
    } while (cursor && (max < 0 || (long)s->n < max));
    for (size_t i = 0; i < s->n; i++) /* ns array is final now */
        s->v[i].e.ns = vkvp_cstr(s->ns[s->v[i].ns_ix]);
    return 0;
}

size_t vkvctl_ns_model_len(const char *ns)
{
    return strcspn(ns, "@|#");
}

size_t vkvctl_ns_unique_len(const struct vkvctl_scan *s, size_t ix)
{
    const char *a = s->ns[ix];
    size_t need = 1, n = strlen(a);
    for (size_t j = 0; j < s->nns; j++) {
        if (j == ix)
            continue;
        const char *b = s->ns[j];
        size_t k = 0;
        while (a[k] && a[k] == b[k])
            k++;
        if (k + 1 > need)
            need = k + 1;
    }
    return need < n ? need : n;
}

/* Whether namespace ns matches pattern pat[0..plen), in which "..." stands
 * for any text (as `ls` shortens names): ns starts with the text before the
 * first "...", holds the pieces between in order, and ends with the text
 * after the last one (anything when pat ends in "..."). */
static int ns_glob(const char *ns, const char *pat, size_t plen)
{
    const char *pe = pat + plen, *d = strstr(pat, "...");
    if (!d || d >= pe)
        return strlen(ns) == plen && !memcmp(ns, pat, plen);
    size_t n = (size_t)(d - pat);
    if (strncmp(ns, pat, n))
        return 0;
    const char *at = ns + n;
    pat = d + 3;
    while (pat < pe) {
        d = strstr(pat, "...");
        if (!d || d > pe)
            d = pe;
        n = (size_t)(d - pat);
        if (d == pe) { /* the last piece: a suffix of what is left */
            size_t left = strlen(at);
            return left >= n && !memcmp(at + left - n, pat, n);
        }
        char piece[VKVP_MAX_NS + 1];
        snprintf(piece, sizeof piece, "%.*s", (int)n, pat);
        const char *f = strstr(at, piece);
        if (!f)
            return 0;
        at = f + n;
        pat = d + 3;
    }
    return 1; /* pattern ended in "..." */
}

/* Number of namespaces of s that pattern pat matches (see ns_glob). */
static size_t ns_glob_count(const struct vkvctl_scan *s, const char *pat)
{
    size_t n = 0, plen = strlen(pat);
    for (size_t i = 0; i < s->nns; i++)
        n += (size_t)ns_glob(s->ns[i], pat, plen);
    return n;
}

void vkvctl_ns_short(const struct vkvctl_scan *s, size_t ix, size_t avail, char *out)
{
    const char *ns = s->ns[ix];
    size_t n = strlen(ns);
    if (avail == 0 || n <= avail) {
        memcpy(out, ns, n + 1);
        return;
    }
    size_t u = vkvctl_ns_unique_len(s, ix), h;
    /* (a piece never ends in '.' next to "...", which would read as part of it) */
    if (u + 3 <= avail) { /* HEAD... */
        for (h = avail - 3; h > 0 && ns[h - 1] == '.'; h--)
            ;
        snprintf(out, VKVP_MAX_NS + 4, "%.*s...", (int)h, ns);
        if (ns_glob(ns, out, strlen(out)) && ns_glob_count(s, out) == 1)
            return;
    }
    /* MODEL...PIECE...: the piece from the separator before the first
     * character that tells this name apart */
    size_t sep = u - 1;
    while (sep > 0 && !strchr("@|#:,/", ns[sep]))
        sep--;
    if (avail > 6 + (u - sep)) {
        size_t ml = vkvctl_ns_model_len(ns);
        h = avail - 6 - (u - sep);
        if (h > ml)
            h = ml;
        if (h > sep)
            h = sep;
        while (h > 0 && ns[h - 1] == '.')
            h--;
        size_t m = avail - 6 - h;
        if (sep + m > n)
            m = n - sep;
        while (m > 0 && ns[sep + m - 1] == '.')
            m--;
        if (h > 0 && m > 0) {
            snprintf(out, VKVP_MAX_NS + 4, "%.*s...%.*s...", (int)h, ns, (int)m, ns + sep);
            if (ns_glob(ns, out, strlen(out)) && ns_glob_count(s, out) == 1)
                return;
        }
    }
    for (size_t t = 1; avail > 3 + t; t++) { /* HEAD...TAIL */
        for (h = avail - 3 - t; h > 0 && ns[h - 1] == '.'; h--)
            ;
        if (ns[n - t] == '.')
            continue;
        snprintf(out, VKVP_MAX_NS + 4, "%.*s...%s", (int)h, ns, ns + n - t);
        if (ns_glob(ns, out, strlen(out)) && ns_glob_count(s, out) == 1)
            return;
    }
    /* too narrow for all of these: the model part and the distinguishing
     * piece, wider than avail but shorter than the unique prefix */
    size_t ml = vkvctl_ns_model_len(ns), m = u - sep;
    while (m > 0 && sep + m < n && ns[sep + m - 1] == '.')
        m++;
    if (ml > 0 && ml <= sep && ns[ml - 1] != '.' && ml + 6 + m < u + 3) {
        snprintf(out, VKVP_MAX_NS + 4, "%.*s...%.*s...", (int)ml, ns, (int)m, ns + sep);
        if (ns_glob(ns, out, strlen(out)) && ns_glob_count(s, out) == 1)
            return;
    }
    if (u >= n)
        memcpy(out, ns, n + 1);
    else
        snprintf(out, VKVP_MAX_NS + 4, "%.*s...", (int)u, ns);
}

size_t vkvctl_ns_candidates(const struct vkvctl_scan *s, const char *arg, char *mask)
{
    size_t len = strlen(arg), n = 0;
    memset(mask, 0, s->nns);
    for (size_t i = 0; i < s->nns; i++)
        if (!strcmp(s->ns[i], arg)) {
            mask[i] = 1;
            return 1;
        }
    if (strstr(arg, "...")) {
        for (size_t i = 0; i < s->nns; i++)
            n += (size_t)(mask[i] = (char)ns_glob(s->ns[i], arg, len));
        return n;
    }
    for (size_t i = 0; i < s->nns; i++) {
        const char *ns = s->ns[i];
        size_t fp = strcspn(ns, "#");
        n += (size_t)(mask[i] = (char)((vkvctl_ns_model_len(ns) == len || fp == len) &&
                                       !strncmp(ns, arg, len)));
    }
    if (n == 0)
        for (size_t i = 0; i < s->nns; i++)
            n += (size_t)(mask[i] = (char)!strncmp(s->ns[i], arg, len));
    return n;
}

int vkvctl_ns_report(const struct vkvctl_scan *s, const char *arg, const char *mask, size_t n)
{
    if (n == 0) {
        char msg[VKVP_MAX_NS + 64];
        snprintf(msg, sizeof msg, "no namespace matches '%s' (vkvctl namespaces lists them)", arg);
        return vkvctl_fail(VKV_ENOTFOUND, msg);
    }
    const char **cand = calloc(n, sizeof *cand);
    if (!cand)
        return vkvctl_fail(VKV_ENOMEM, NULL);
    size_t k = 0;
    for (size_t i = 0; i < s->nns && k < n; i++)
        if (mask[i])
            cand[k++] = s->ns[i];
    char what[VKVP_MAX_NS + 32];
    snprintf(what, sizeof what, "namespace '%s'", arg);
    int ex = vkvctl_ambiguous(what, cand, k,
                              "give more of the namespace (vkvctl namespaces lists them)");
    free(cand);
    return ex;
}

size_t vkvctl_resolve_ns(const struct vkvctl_scan *s, const char *arg, int *ex)
{
    char *mask = malloc(s->nns + 1);
    if (!mask) {
        *ex = vkvctl_fail(VKV_ENOMEM, NULL);
        return (size_t)-1;
    }
    size_t n = vkvctl_ns_candidates(s, arg, mask), found = (size_t)-1;
    if (n == 1) {
        for (size_t i = 0; i < s->nns; i++)
            if (mask[i])
                found = i;
    } else {
        *ex = vkvctl_ns_report(s, arg, mask, n);
    }
    free(mask);
    return found;
}
