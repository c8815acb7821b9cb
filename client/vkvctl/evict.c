/*
 * client/vkvctl/evict.c - `vkvctl evict`, `delete` and `flush`: the ops
 * that take entries out of the hot tier or out of both, by resolved KEY
 * arguments, a whole namespace or everything.
 */
#include <cjson/cJSON.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client/client_internal.h"
#include "client/vkvctl/vkvctl.h"
#include "proto/proto.h"
#include "vkv/vkv.h"

/* Prints `{"<field>": n}` or "<field> n entries". */
static void print_count(const char *field, uint64_t n)
{
    if (vkvctl.json) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, field, (double)n);
        vkvctl_emit(o);
    } else {
        printf("%s %" PRIu64 " entries\n", field, n);
    }
}

/* EVICT (--all or keys, optionally in namespace ns), DELETE (keys in ns) or
 * FLUSH. keys may be NULL with nkeys 0 for --all / FLUSH. Adds the count
 * the daemon answered to *count. Returns 0 or the exit code after
 * reporting. */
static int keys_op(vkv_client *c, vkvp_op op, int to_drop, const char *ns, const vkv_key *keys,
                   size_t nkeys, int all, uint64_t *count)
{
    vkvp_request rq;
    vkvp_reply *rep;
    char why[256] = "";
    vkvp_request_init(&rq, op, 0);
    if (op == VKVP_FLUSH) {
        rq.u.flush.session = vkvc_session(c);
    } else if (op == VKVP_DELETE) {
        rq.u.del.session = vkvc_session(c);
        rq.u.del.keys = keys;
        rq.u.del.nkeys = (uint32_t)nkeys;
        rq.u.del.has_ns = true;
        rq.u.del.ns = vkvp_cstr(ns);
    } else {
        rq.u.evict.session = vkvc_session(c);
        rq.u.evict.all = all;
        rq.u.evict.has_keys = !all;
        rq.u.evict.keys = keys;
        rq.u.evict.nkeys = (uint32_t)nkeys;
        rq.u.evict.to = to_drop ? VKVP_EVICT_DROP : VKVP_EVICT_COLD;
        if (ns) {
            rq.u.evict.has_ns = true;
            rq.u.evict.ns = vkvp_cstr(ns);
        }
    }
    int rc = vkvc_call(c, &rq, &rep, why, sizeof why);
    if (rc)
        return vkvctl_fail(rc, why);
    *count += op == VKVP_FLUSH    ? rep->u.flush.count
              : op == VKVP_DELETE ? rep->u.del.count
                                  : rep->u.evict.count;
    vkvp_reply_free(rep);
    return 0;
}

/* Resolves the KEY arguments argv[from..argc) (with --ns ns_arg) and sends
 * op (EVICT or DELETE) once per namespace they resolved to. Adds the
 * counts to *count. Returns 0 or the exit code after reporting. */
static int keys_op_resolved(vkv_client *c, vkvp_op op, int to_drop, const char *ns_arg, int argc,
                            char **argv, int from, uint64_t *count)
{
    int n = argc - from;
    struct vkvctl_target *t = calloc((size_t)n, sizeof *t);
    vkv_key *keys = calloc((size_t)n, sizeof *keys);
    struct vkvctl_scan s;
    memset(&s, 0, sizeof s);
    int ex = !t || !keys ? vkvctl_fail(VKV_ENOMEM, NULL)
                         : vkvctl_resolve_keys(c, ns_arg, argv + from, n, &s, t, 1);
    char *done = ex ? NULL : calloc((size_t)n, 1);
    if (!ex && !done)
        ex = vkvctl_fail(VKV_ENOMEM, NULL);
    for (int i = 0; !ex && i < n; i++) {
        if (done[i])
            continue;
        size_t nk = 0;
        for (int j = i; j < n; j++)
            if (!done[j] && t[j].ns_ix == t[i].ns_ix) {
                keys[nk++] = t[j].key;
                done[j] = 1;
            }
        ex = keys_op(c, op, to_drop, s.ns[t[i].ns_ix], keys, nk, 0, count);
    }
    free(done);
    free(keys);
    free(t);
    vkvctl_scan_free(&s);
    return ex;
}

/* Prints the usage of `evict` to fp. */
static void usage_evict(FILE *fp)
{
    fprintf(fp, "usage: vkvctl evict [--ns NS] [--to cold|drop] KEY...\n"
                "       vkvctl evict --all [--ns NS] [--to cold|drop]\n"
                "  Evicts entries from the hot tier: to the cold tier (default) or dropped.\n"
                "  KEY is a unique prefix of >= 8 hex digits; NS a unique prefix or the\n"
                "  model part of a namespace.\n");
}

int vkvctl_cmd_evict(vkv_client *c, int argc, char **argv)
{
    static const struct option opts[] = {{"all", no_argument, NULL, 'a'},
                                         {"to", required_argument, NULL, 't'},
                                         {"ns", required_argument, NULL, 'n'},
                                         {"help", no_argument, NULL, 'h'},
                                         {0, 0, 0, 0}};
    int all = 0, drop = 0, o;
    const char *ns = NULL;
    optind = 1;
    while ((o = getopt_long(argc, argv, "at:n:h", opts, NULL)) != -1) {
        if (o == 'a')
            all = 1;
        else if (o == 'n')
            ns = optarg;
        else if (o == 't' && (!strcmp(optarg, "cold") || !strcmp(optarg, "drop")))
            drop = !strcmp(optarg, "drop");
        else if (o == 'h') {
            usage_evict(stdout);
            return VKVCTL_EX_OK;
        } else {
            usage_evict(stderr);
            return VKVCTL_EX_USAGE;
        }
    }
    uint64_t count = 0;
    int ex;
    if (all) {
        if (optind < argc) {
            usage_evict(stderr);
            return VKVCTL_EX_USAGE;
        }
        if (!ns) {
            ex = keys_op(c, VKVP_EVICT, drop, NULL, NULL, 0, 1, &count);
        } else {
            struct vkvctl_scan s;
            if ((ex = vkvctl_scan_entries(c, NULL, NULL, -1, &s)) != 0)
                return ex;
            size_t ix = vkvctl_resolve_ns(&s, ns, &ex);
            if (ix != (size_t)-1)
                ex = keys_op(c, VKVP_EVICT, drop, s.ns[ix], NULL, 0, 1, &count);
            vkvctl_scan_free(&s);
        }
    } else {
        if (optind >= argc || argc - optind > VKVP_MAX_KEYS) {
            usage_evict(stderr);
            return VKVCTL_EX_USAGE;
        }
        ex = keys_op_resolved(c, VKVP_EVICT, drop, ns, argc, argv, optind, &count);
    }
    if (ex)
        return ex;
    print_count("evicted", count);
    return VKVCTL_EX_OK;
}

/* Prints the usage of `delete` to fp. */
static void usage_delete(FILE *fp)
{
    fprintf(fp, "usage: vkvctl delete [--ns NS] KEY...\n"
                "  Deletes entries from both tiers. KEY is a unique prefix of >= 8 hex\n"
                "  digits (as ls prints it); NS a unique prefix or the model part of a\n"
                "  namespace, needed only when a key is in several. Exit 4 when none\n"
                "  was deleted.\n");
}

int vkvctl_cmd_delete(vkv_client *c, int argc, char **argv)
{
    const char *ns;
    int ex;
    if (!vkvctl_parse_ns_opts(argc, argv, usage_delete, &ns, NULL, &ex))
        return ex;
    if (optind >= argc || argc - optind > VKVP_MAX_KEYS) {
        usage_delete(stderr);
        return VKVCTL_EX_USAGE;
    }
    uint64_t deleted = 0;
    if ((ex = keys_op_resolved(c, VKVP_DELETE, 0, ns, argc, argv, optind, &deleted)) != 0)
        return ex;
    print_count("deleted", deleted);
    return deleted ? VKVCTL_EX_OK : VKVCTL_EX_NOTFOUND;
}

int vkvctl_cmd_flush(vkv_client *c, int argc, char **argv)
{
    if (argc > 1) {
        fprintf(argv[1][0] == '-' && argv[1][1] == 'h' ? stdout : stderr,
                "usage: vkvctl flush\n  Spills every hot entry to the cold tier.\n");
        return strcmp(argv[1], "--help") && strcmp(argv[1], "-h") ? VKVCTL_EX_USAGE : VKVCTL_EX_OK;
    }
    uint64_t n = 0;
    int ex = keys_op(c, VKVP_FLUSH, 0, NULL, NULL, 0, 1, &n);
    if (ex)
        return ex;
    print_count("spilled", n);
    return VKVCTL_EX_OK;
}
