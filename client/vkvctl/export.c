/*
 * client/vkvctl/export.c - `vkvctl export`: one block fetched, decoded and
 * written as per-layer K/V tensors to a safetensors file.
 */
#include <cjson/cJSON.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>

#include "client/vkvctl/vkvctl.h"
#include "common/errbuf.h"
#include "tensor/f16.h"
#include "tensor/safetensors.h"
#include "vkv/vkv.h"

/* Prints the usage of `export` to fp. */
static void usage_export(FILE *fp)
{
    fprintf(fp, "usage: vkvctl export [--ns NS] KEY OUT.safetensors\n"
                "  Fetches one block, decodes it and writes layers.{i}.k / layers.{i}.v\n"
                "  [tokens, kv_heads, head_dim] in the block's dtype, with __metadata__\n"
                "  visual_ranges (docs/FIDELITY.md naming). KEY is a unique prefix of >= 8\n"
                "  hex digits; NS a unique prefix or the model part of a namespace.\n");
}

/* One block decoded for the file: layer l's K is outs[2l], its V outs[2l+1],
 * each [tokens, kv_heads, head_dim] pointing into f32 and named in names.
 * Owns all three; freed by tensors_free. */
struct tensors {
    float *f32;
    vkvtn_st_out *outs;
    char (*names)[32];
};

/* Frees what t owns. */
static void tensors_free(struct tensors *t)
{
    free(t->f32);
    free(t->outs);
    free(t->names);
}

/* Names the 2 * sh->layers tensors of t "layers.{i}.k" / "layers.{i}.v"
 * with the block's dtype and shape. */
static void tensors_name(const vkv_shape *sh, struct tensors *t)
{
    size_t per = (size_t)sh->tokens * sh->kv_heads * sh->head_dim;
    for (size_t l = 0; l < sh->layers; l++)
        for (int kv = 0; kv < 2; kv++) {
            size_t j = 2 * l + (size_t)kv;
            vkvtn_st_out *o = &t->outs[j];
            snprintf(t->names[j], sizeof t->names[j], "layers.%zu.%c", l, kv ? 'v' : 'k');
            o->name = t->names[j];
            o->dtype = sh->dtype == VKV_DTYPE_BF16 ? VKVTN_ST_BF16 : VKVTN_ST_F16;
            o->ndim = 3;
            o->shape[0] = sh->tokens;
            o->shape[1] = sh->kv_heads;
            o->shape[2] = sh->head_dim;
            o->data = t->f32 + j * per;
        }
}

/* Decodes the block in view (of shape sh) into *t (zeroed first; the
 * caller frees it with tensors_free, also on failure). Returns 0 or a
 * VKV_E* code with a message in err. */
static int tensors_decode(const vkv_view *view, const vkv_shape *sh, struct tensors *t, char *err,
                          size_t errlen)
{
    size_t per = (size_t)sh->tokens * sh->kv_heads * sh->head_dim;
    size_t L = sh->layers;
    size_t nel = 2 * L * per + 1, nt = 2 * L + 1; /* +1: never calloc(0) */
    uint16_t *raw = calloc(nel, sizeof *raw);
    void **kp = calloc(L + 1, sizeof *kp), **vp = calloc(L + 1, sizeof *vp);
    t->f32 = calloc(nel, sizeof *t->f32);
    t->outs = calloc(nt, sizeof *t->outs);
    t->names = calloc(nt, sizeof *t->names);
    int rc = VKV_ENOMEM;
    if (!raw || !t->f32 || !kp || !vp || !t->outs || !t->names)
        goto out;
    for (size_t l = 0; l < L; l++) {
        kp[l] = raw + (2 * l) * per;
        vp[l] = raw + (2 * l + 1) * per;
    }
    vkv_kv_dst dst = {(void *const *)kp, (void *const *)vp,   (size_t)sh->kv_heads * sh->head_dim,
                      sh->head_dim,      vkv_geometry_of(sh), NULL};
    if ((rc = vkv_decode(view->data, view->size, VKV_DECODE_VERIFY, &dst)) != 0) {
        snprintf(err, errlen, "decode failed: %s", vkv_strerror(rc));
        goto out;
    }
    for (size_t i = 0; i < 2 * L * per; i++)
        t->f32[i] = vkvtn_to_f32(raw[i], sh->dtype);
    tensors_name(sh, t);
out:
    free(raw);
    free(kp);
    free(vp);
    return rc;
}

/* Writes the visual ranges of sh as "start:end,..." into the caller's
 * buf[cap] (VKV_BLOCK_MAX_RANGES * 24 + 1 bytes hold them all). */
static void format_ranges(const vkv_shape *sh, char *buf, size_t cap)
{
    size_t at = 0;
    buf[0] = '\0';
    for (uint32_t r = 0; r < sh->n_ranges && at < cap; r++)
        at += (size_t)snprintf(buf + at, cap - at, "%s%u:%u", r ? "," : "", sh->ranges[r].start,
                               sh->ranges[r].start + sh->ranges[r].len);
}

/* Adds what export wrote (shape, ranges, codec, block size) to info. */
static void export_info(cJSON *info, const vkv_shape *sh, const char *ranges, const char *codec,
                        size_t block_bytes)
{
    cJSON_AddStringToObject(info, "dtype", sh->dtype == VKV_DTYPE_BF16 ? "bf16" : "f16");
    cJSON_AddNumberToObject(info, "layers", sh->layers);
    cJSON_AddNumberToObject(info, "tokens", sh->tokens);
    cJSON_AddNumberToObject(info, "kv_heads", sh->kv_heads);
    cJSON_AddNumberToObject(info, "head_dim", sh->head_dim);
    cJSON_AddStringToObject(info, "visual_ranges", ranges);
    cJSON_AddStringToObject(info, "codec", codec);
    cJSON_AddNumberToObject(info, "block_bytes", (double)block_bytes);
}

/* Decodes the block in view into per-layer float tensors and writes them to
 * path, with the block's visual ranges, key, namespace and codec as
 * metadata; adds what it wrote to info. Returns 0 or a VKV_E* code with a
 * message in err. */
static int export_block(const vkv_view *view, const char *path, const char *ns, const char *keyhex,
                        char *err, size_t errlen, cJSON *info)
{
    vkv_block_header hdr;
    int rc = vkv_block_check(view->data, view->size, VKV_DECODE_VERIFY, &hdr);
    if (rc)
        return vkv_errbuf(err, errlen, rc, "block check failed: %s", vkv_strerror(rc));
    vkv_shape sh;
    vkv_codec_spec spec;
    vkv_block_shape(&hdr, &sh, &spec);
    struct tensors t;
    if ((rc = tensors_decode(view, &sh, &t, err, errlen)) != 0) {
        tensors_free(&t);
        return rc;
    }
    char ranges[VKV_BLOCK_MAX_RANGES * 24 + 1];
    format_ranges(&sh, ranges, sizeof ranges);
    char codec[128];
    vkv_codec_spec_format(&spec, codec, sizeof codec);
    const char *meta[] = {"visual_ranges", ranges, "vkv_key",   keyhex,
                          "vkv_ns",        ns,     "vkv_codec", codec};
    /* an empty visual_ranges would mean "all visual" to vkv-eval: omit it
     * only when the block really has no visual tokens */
    size_t nmeta = 4;
    const char *const *m = meta;
    if (sh.n_ranges == 0) {
        m = meta + 2;
        nmeta = 3;
    }
    rc = vkvtn_st_write(path, t.outs, 2 * (size_t)sh.layers, m, nmeta, err, errlen);
    if (rc == 0)
        export_info(info, &sh, ranges, codec, view->size);
    tensors_free(&t);
    return rc;
}

/* What vkvctl_cmd_export hands export_one through vkvctl_with_block. */
struct export_arg {
    const char *path, *ns, *keyhex;
    cJSON *info;
};

/* fn of vkvctl_with_block for export: export_block with the arguments of a. */
static int export_one(const vkv_view *view, void *arg, char *err, size_t errlen)
{
    struct export_arg *a = arg;
    return export_block(view, a->path, a->ns, a->keyhex, err, errlen, a->info);
}

int vkvctl_cmd_export(vkv_client *c, int argc, char **argv)
{
    const char *ns;
    int ex;
    if (!vkvctl_parse_ns_opts(argc, argv, usage_export, &ns, NULL, &ex))
        return ex;
    if (optind + 2 != argc) {
        usage_export(stderr);
        return VKVCTL_EX_USAGE;
    }
    struct vkvctl_scan s;
    struct vkvctl_target t;
    if ((ex = vkvctl_resolve_keys(c, ns, argv + optind, 1, &s, &t, 1)) != 0) {
        vkvctl_scan_free(&s);
        return ex;
    }
    const char *path = argv[optind + 1];
    char keyhex[65];
    vkv_key_hex(&t.key, keyhex);
    cJSON *info = cJSON_CreateObject();
    cJSON_AddStringToObject(info, "key", keyhex);
    cJSON_AddStringToObject(info, "ns", s.ns[t.ns_ix]);
    cJSON_AddStringToObject(info, "path", path);
    struct export_arg a = {path, s.ns[t.ns_ix], keyhex, info};
    ex = vkvctl_with_block(s.ns[t.ns_ix], &t.key, export_one, &a);
    vkvctl_scan_free(&s);
    if (ex) {
        cJSON_Delete(info);
        return ex;
    }
    if (vkvctl.json) {
        vkvctl_emit(info);
    } else {
        cJSON *tk = cJSON_GetObjectItem(info, "tokens");
        cJSON *l = cJSON_GetObjectItem(info, "layers");
        printf("wrote %s: %d layers x %d tokens (%s)\n", path, l ? l->valueint : 0,
               tk ? tk->valueint : 0, cJSON_GetObjectItem(info, "dtype")->valuestring);
        cJSON_Delete(info);
    }
    return VKVCTL_EX_OK;
}
