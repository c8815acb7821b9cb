/*
 * client/vkvctl/show.c - `vkvctl show`: one entry (INFO), and with
 * --layers its block described layer by layer (block.c).
 */
#include <cjson/cJSON.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>

#include "client/client_internal.h"
#include "client/vkvctl/vkvctl.h"
#include "proto/proto.h"
#include "vkv/vkv.h"

void vkvctl_show_entry(const vkvp_entry *e, cJSON *arr)
{
    char hex[65];
    vkv_key_hex(&e->key, hex);
    if (arr) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "key", hex);
        char ns[VKVP_MAX_NS + 1];
        snprintf(ns, sizeof ns, "%.*s", (int)e->ns.len, e->ns.ptr ? e->ns.ptr : "");
        cJSON_AddStringToObject(o, "ns", ns);
        cJSON_AddStringToObject(o, "state", vkvp_state_name(e->state));
        cJSON_AddStringToObject(o, "tier", vkvp_tier_name(e->tier));
        cJSON_AddNumberToObject(o, "size", (double)e->size);
        cJSON_AddNumberToObject(o, "hits", (double)e->hits);
        cJSON_AddNumberToObject(o, "last_ms", (double)e->last_ms);
        cJSON_AddNumberToObject(o, "pins", (double)e->pins);
        char shape[VKVP_MAX_SHAPE + 1];
        snprintf(shape, sizeof shape, "%.*s", (int)e->shape.len, e->shape.ptr ? e->shape.ptr : "");
        cJSON_AddStringToObject(o, "shape", shape);
        cJSON_AddItemToArray(arr, o);
        return;
    }
    char sz[32], when[32];
    vkvctl_format_when(e->last_ms, when, sizeof when);
    printf("%skey:%s      %s\n%sns:%s       %.*s\n", vkvctl_col("1"), vkvctl_rst(), hex,
           vkvctl_col("1"), vkvctl_rst(), (int)e->ns.len, e->ns.ptr ? e->ns.ptr : "");
    printf("state:    %s\ntier:     %s\nsize:     %s\nhits:     %" PRIu64 "\nlast:     %s\n"
           "pins:     %" PRIu64 "\nshape:    %.*s\n",
           vkvp_state_name(e->state), vkvp_tier_name(e->tier), vkvctl_hsize(e->size, sz, sizeof sz),
           e->hits, when, e->pins, (int)e->shape.len, e->shape.ptr ? e->shape.ptr : "");
}

/* Prints the usage of `show` to fp. */
static void usage_show(FILE *fp)
{
    fprintf(fp, "usage: vkvctl show [--ns NS] [--layers] KEY\n"
                "  One entry: namespace, state, tier, size, hits, last access, pins, shape.\n"
                "  KEY is a unique prefix of >= 8 hex digits (as ls prints it); NS is needed\n"
                "  only when the key is in several namespaces (a unique prefix will do).\n"
                "  --layers also fetches the block (a cold one is restored; it counts as a\n"
                "  hit) and shows its codec, visual ranges, raw-token share, bytes per\n"
                "  section and per layer, and per layer the K and V scale statistics\n"
                "  (rotsign: per-token scales; other rules: high - low of each group).\n");
}

int vkvctl_cmd_show(vkv_client *c, int argc, char **argv)
{
    const char *ns;
    int layers = 0;
    int ex;
    if (!vkvctl_parse_ns_opts(argc, argv, usage_show, &ns, &layers, &ex))
        return ex;
    if (optind + 1 != argc) {
        usage_show(stderr);
        return VKVCTL_EX_USAGE;
    }
    struct vkvctl_scan s;
    struct vkvctl_target t;
    if ((ex = vkvctl_resolve_keys(c, ns, argv + optind, 1, &s, &t, 1)) != 0) {
        vkvctl_scan_free(&s);
        return ex;
    }
    const char *full_ns = s.ns[t.ns_ix];
    vkvp_request rq;
    vkvp_reply *rep;
    char why[256] = "";
    vkvp_request_init(&rq, VKVP_INFO, 0);
    rq.u.info.session = vkvc_session(c);
    rq.u.info.key = t.key;
    rq.u.info.has_ns = true;
    rq.u.info.ns = vkvp_cstr(full_ns);
    int rc = vkvc_call(c, &rq, &rep, why, sizeof why);
    if (rc) {
        vkvctl_scan_free(&s);
        return vkvctl_fail(rc, why);
    }
    cJSON *arr = cJSON_CreateArray();
    vkvctl_show_entry(&rep->u.info.entry, arr);
    cJSON *one = cJSON_DetachItemFromArray(arr, 0);
    cJSON_Delete(arr);
    if (!vkvctl.json)
        vkvctl_show_entry(&rep->u.info.entry, NULL);
    vkvp_reply_free(rep);
    if (layers) {
        cJSON *blk = cJSON_CreateObject();
        ex = vkvctl_with_block(full_ns, &t.key, vkvctl_block_layers, blk);
        if (ex) {
            cJSON_Delete(blk);
            cJSON_Delete(one);
            vkvctl_scan_free(&s);
            return ex;
        }
        if (!vkvctl.json)
            vkvctl_print_layers(blk);
        cJSON_AddItemToObject(one, "block", blk);
    }
    if (vkvctl.json)
        vkvctl_emit(one);
    else
        cJSON_Delete(one);
    vkvctl_scan_free(&s);
    return VKVCTL_EX_OK;
}
