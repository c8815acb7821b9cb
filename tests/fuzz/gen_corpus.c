/*
 * tests/fuzz/gen_corpus.c - writes the seed corpora of the fuzz targets:
 *   OUT/proto/  one valid request frame per op (several variants) and one
 *               valid reply frame per op, plus an error reply;
 *   OUT/block/  valid blocks of a few shapes and codec specs, each behind the
 *               control byte fuzz_block.c expects (several control values);
 *   OUT/st/     small valid safetensors files (F16, BF16, F32, metadata).
 * Usage: vkv_fuzz_gen_corpus OUT   (OUT/proto etc. must exist). Seeds are
 * deterministic, so rerunning rewrites the same files. Regression inputs
 * found by fuzzing live beside them under names starting with "crash-" or
 * "regress-" and are never touched by this program.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/proto.h"
#include "tensor/safetensors.h"
#include "vkv/codec.h"

static const char *g_out;

/* Writes len bytes to OUT/sub/name. Exits on failure (a generator). */
static void put(const char *sub, const char *name, const void *p, size_t len)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s/%s", g_out, sub, name);
    FILE *f = fopen(path, "wb");
    if (!f || (len && fwrite(p, 1, len, f) != len) || fclose(f) != 0) {
        fprintf(stderr, "gen_corpus: cannot write %s\n", path);
        exit(1);
    }
}

/* Encodes `req` and writes it as proto/req-NAME. */
static void put_req(const vkvp_request *req, const char *name)
{
    void *frame;
    size_t len;
    int rc = vkvp_encode_request(req, &frame, &len);
    if (rc) {
        fprintf(stderr, "gen_corpus: encode %s: %d\n", name, rc);
        exit(1);
    }
    char n[128];
    snprintf(n, sizeof n, "req-%s", name);
    put("proto", n, frame, len);
    free(frame);
}

/* Encodes `rep` and writes it as proto/rep-NAME. */
static void put_rep(const vkvp_reply *rep, const char *name)
{
    void *frame;
    size_t len;
    int rc = vkvp_encode_reply(rep, &frame, &len);
    if (rc) {
        fprintf(stderr, "gen_corpus: encode reply %s: %d\n", name, rc);
        exit(1);
    }
    char n[128];
    snprintf(n, sizeof n, "rep-%s", name);
    put("proto", n, frame, len);
    free(frame);
}

/* One request per op, and reply bodies for each op. */
static void gen_proto(void)
{
    vkv_key keys[3];
    for (int i = 0; i < 3; i++)
        for (int b = 0; b < 32; b++)
            keys[i].b[b] = (uint8_t)(i * 37 + b);
    uint64_t leases[2] = {11, 0xffffffffffffffffull};
    vkvp_request r;

    vkvp_request_init(&r, VKVP_HELLO, 1);
    r.u.hello.ns = vkvp_cstr("llava-7b|tp0|f16#lloyd:kg=64");
    r.u.hello.pid = 4242;
    r.u.hello.has_name = true;
    r.u.hello.name = vkvp_cstr("worker-3");
    put_req(&r, "hello");
    vkvp_request_init(&r, VKVP_HELLO, 2);
    r.u.hello.pid = 1;
    r.u.hello.admin = true;
    put_req(&r, "hello-admin");
    vkvp_op key_ops[] = {VKVP_LOOKUP, VKVP_FETCH, VKVP_DELETE};
    for (int i = 0; i < 3; i++) {
        vkvp_request_init(&r, key_ops[i], 100 + (uint64_t)i);
        r.u.lookup.session = 77;
        r.u.lookup.keys = keys;
        r.u.lookup.nkeys = 3;
        put_req(&r, vkvp_op_name(key_ops[i]));
    }
    vkvp_request_init(&r, VKVP_LOOKUP, 3);
    r.u.lookup.session = 77;
    put_req(&r, "LOOKUP-empty");
    vkvp_request_init(&r, VKVP_ALLOC, 4);
    r.u.alloc.session = 77;
    r.u.alloc.key = keys[0];
    r.u.alloc.size = 123456;
    put_req(&r, "ALLOC");
    vkvp_request_init(&r, VKVP_COMMIT, 5);
    r.u.commit.session = 77;
    r.u.commit.lease = 9;
    put_req(&r, "COMMIT");
    vkvp_request_init(&r, VKVP_ABORT, 6);
    r.u.abort.session = 77;
    r.u.abort.lease = 9;
    put_req(&r, "ABORT");
    vkvp_request_init(&r, VKVP_RELEASE, 7);
    r.u.release.session = 77;
    r.u.release.leases = leases;
    r.u.release.nleases = 2;
    put_req(&r, "RELEASE");
    vkvp_request_init(&r, VKVP_EVICT, 8);
    r.u.evict.session = 77;
    r.u.evict.has_keys = true;
    r.u.evict.keys = keys;
    r.u.evict.nkeys = 2;
    r.u.evict.to = VKVP_EVICT_DROP;
    put_req(&r, "EVICT-keys");
    vkvp_request_init(&r, VKVP_EVICT, 9);
    r.u.evict.session = 77;
    r.u.evict.all = true;
    put_req(&r, "EVICT-all");
    vkvp_request_init(&r, VKVP_FLUSH, 10);
    r.u.flush.session = 77;
    put_req(&r, "FLUSH");
    vkvp_request_init(&r, VKVP_STATS, 11);
    put_req(&r, "STATS");
    vkvp_request_init(&r, VKVP_STATS, 12);
    r.u.stats.has_session = true;
    r.u.stats.session = 77;
    put_req(&r, "STATS-session");
    vkvp_request_init(&r, VKVP_LIST, 13);
    r.u.list.session = 77;
    r.u.list.cursor = 5;
    r.u.list.limit = 10;
    r.u.list.has_ns = true;
    r.u.list.ns = vkvp_cstr("other");
    put_req(&r, "LIST");
    vkvp_request_init(&r, VKVP_INFO, 14);
    r.u.info.session = 77;
    r.u.info.key = keys[1];
    r.u.info.has_ns = true;
    r.u.info.ns = vkvp_cstr("ns");
    put_req(&r, "INFO");
    vkvp_request_init(&r, VKVP_PING, 15);
    put_req(&r, "PING");

    vkvp_reply p;
    vkvp_extent ext[2] = {{0, 3, 2}, {1, 0, 1}};
    vkvp_slab slabs[2];
    memset(slabs, 0, sizeof slabs);
    slabs[0].id = 0;
    slabs[0].size = 8 << 20;
    slabs[1].id = 1;
    slabs[1].size = 8 << 20;
    vkvp_reply_init(&p, VKVP_HELLO, 1, 3);
    p.u.hello.session = 77;
    p.u.hello.epoch = 3;
    p.u.hello.backend = VKVP_BACKEND_HOST;
    p.u.hello.lease_ttl_ms = 30000;
    p.u.hello.page_size = 65536;
    p.u.hello.fd_path = vkvp_cstr("/run/user/0/vkv/vkvd.fd");
    p.u.hello.slabs = slabs;
    p.u.hello.nslabs = 2;
    put_rep(&p, "HELLO");
    vkvp_reply_init(&p, VKVP_LOOKUP, 2, 3);
    p.u.lookup.hits = 3;
    p.u.lookup.cold = 1;
    put_rep(&p, "LOOKUP");
    vkvp_block blocks[2] = {{100000, ext, 2}, {5, ext + 1, 1}};
    vkvp_reply_init(&p, VKVP_FETCH, 3, 3);
    p.u.fetch.lease = 12;
    p.u.fetch.blocks = blocks;
    p.u.fetch.nblocks = 2;
    put_rep(&p, "FETCH");
    vkvp_reply_init(&p, VKVP_ALLOC, 4, 3);
    p.u.alloc.lease = 13;
    p.u.alloc.block = blocks[0];
    put_rep(&p, "ALLOC");
    vkvp_reply_init(&p, VKVP_COMMIT, 5, 3);
    put_rep(&p, "COMMIT");
    vkvp_reply_init(&p, VKVP_RELEASE, 7, 3);
    p.u.release.count = 2;
    put_rep(&p, "RELEASE");
    vkvp_counter ctr[3] = {
        {vkvp_cstr("hits"), 5}, {vkvp_cstr("leases_active"), 0}, {vkvp_cstr("bad_frames"), 1}};
    vkvp_reply_init(&p, VKVP_STATS, 11, 3);
    p.u.stats.counters = ctr;
    p.u.stats.ncounters = 3;
    put_rep(&p, "STATS");
    vkvp_entry ent[2];
    memset(ent, 0, sizeof ent);
    ent[0].ns = vkvp_cstr("m#lloyd");
    ent[0].key = keys[0];
    ent[0].state = VKVP_STATE_READY;
    ent[0].tier = VKVP_TIER_HOT;
    ent[0].size = 4096;
    ent[0].hits = 2;
    ent[0].last_ms = 1700000000000ull;
    ent[0].shape = vkvp_cstr("4x2x64x64 f16");
    ent[1] = ent[0];
    ent[1].key = keys[1];
    ent[1].state = VKVP_STATE_COLD;
    ent[1].tier = VKVP_TIER_COLD;
    ent[1].shape = vkvp_cstr("");
    vkvp_reply_init(&p, VKVP_LIST, 12, 3);
    p.u.list.entries = ent;
    p.u.list.nentries = 2;
    p.u.list.next = 9;
    put_rep(&p, "LIST");
    vkvp_reply_init(&p, VKVP_INFO, 13, 3);
    p.u.info.entry = ent[0];
    put_rep(&p, "INFO");
    void *frame;
    size_t len;
    if (vkvp_encode_error(14, 3, VKV_EPROTO, "body.keys[3]: bin of 31 bytes", &frame, &len) != 0)
        exit(1);
    put("proto", "rep-error", frame, len);
    free(frame);
}

/* Writes one encoded block for (shape, spec) under each control byte. */
static void put_block(const char *name, const vkv_shape *s, const char *spec_text)
{
    vkv_codec_spec spec;
    size_t size = 0;
    if (vkv_codec_spec_parse(spec_text, &spec) != 0 ||
        vkv_codec_encoded_size(s, &spec, &size) != 0) {
        fprintf(stderr, "gen_corpus: bad spec/shape for %s\n", name);
        exit(1);
    }
    size_t n = (size_t)s->tokens * s->kv_heads * s->head_dim;
    uint16_t **k = calloc(s->layers, sizeof *k), **v = calloc(s->layers, sizeof *v);
    uint64_t x = 0x9e3779b97f4a7c15ull ^ size;
    for (uint32_t l = 0; l < s->layers; l++) {
        k[l] = malloc(n * 2);
        v[l] = malloc(n * 2);
        for (size_t i = 0; i < n; i++) {
            x = x * 6364136223846793005ull + 1442695040888963407ull;
            /* small finite halves/bfloats: exponent 13..16, random mantissa */
            uint16_t m = (uint16_t)((x >> 33) & 0x3ff), sgn = (uint16_t)((x >> 60) & 1);
            uint16_t e = (uint16_t)(13 + ((x >> 50) & 3));
            k[l][i] = s->dtype == VKV_DTYPE_F16
                          ? (uint16_t)(sgn << 15 | e << 10 | m)
                          : (uint16_t)(sgn << 15 | (e + 112) << 7 | (m & 0x7f));
            v[l][i] = (uint16_t)(k[l][i] ^ 0x8000u);
        }
    }
    uint8_t *buf = malloc(size + 1);
    vkv_kv_src src = {(const void *const *)k, (const void *const *)v,
                      (size_t)s->kv_heads * s->head_dim, s->head_dim};
    int rc = vkv_encode(s, &spec, &src, buf + 1, size);
    if (rc) {
        fprintf(stderr, "gen_corpus: encode %s: %d\n", name, rc);
        exit(1);
    }
    static const uint8_t ctrls[] = {0x00, 0x03, 0x0e, 0x47, 0xfe};
    for (size_t c = 0; c < sizeof ctrls; c++) {
        buf[0] = ctrls[c];
        char fn[128];
        snprintf(fn, sizeof fn, "%s-c%02x", name, ctrls[c]);
        put("block", fn, buf, size + 1);
    }
    for (uint32_t l = 0; l < s->layers; l++) {
        free(k[l]);
        free(v[l]);
    }
    free(k);
    free(v);
    free(buf);
}

/* A few shapes x specs, all small (a few KiB each). */
static void gen_block(void)
{
    vkv_shape s;
    memset(&s, 0, sizeof s);
    s.layers = 2;
    s.kv_heads = 2;
    s.head_dim = 16;
    s.tokens = 24;
    s.dtype = VKV_DTYPE_F16;
    s.n_ranges = 1;
    s.ranges[0].start = 4;
    s.ranges[0].len = 16;
    put_block("f16-lloyd-token", &s, "lloyd:kg=8,vmode=token,vg=8,iters=2");
    put_block("f16-minmax-channel", &s, "minmax:kmode=channel,kg=8,vmode=channel,vg=4");
    s.dtype = VKV_DTYPE_BF16;
    put_block("bf16-quantile", &s, "quantile:kg=8,vmode=token,vg=16");
    s.n_ranges = 2;
    s.ranges[0].start = 0;
    s.ranges[0].len = 5;
    s.ranges[1].start = 10;
    s.ranges[1].len = 14;
    s.layers = 1;
    s.kv_heads = 1;
    s.head_dim = 8;
    put_block("bf16-two-ranges", &s, "lloyd:kg=4,vmode=token,vg=8");
    s.n_ranges = 0;
    s.dtype = VKV_DTYPE_F16;
    put_block("f16-raw-only", &s, "lloyd");
    /* rule 5 (tc): rank-1 values, coded values, head_dim 24 (no power of
     * two), a budget that is not a whole byte per token and head */
    s.layers = 2;
    s.kv_heads = 2;
    s.head_dim = 24;
    s.n_ranges = 2;
    put_block("f16-tc", &s, "tc:kb=1.125,aw=1");
    s.dtype = VKV_DTYPE_BF16;
    put_block("bf16-tc-vb", &s, "tc:kb=0.375,vb=2");
}

/* Safetensors seeds through the project's own writer. */
static void gen_st(void)
{
    float data[24];
    for (int i = 0; i < 24; i++)
        data[i] = (float)i * 0.25f - 3.0f;
    vkvtn_st_out t[3] = {
        {"k.0", VKVTN_ST_F16, 2, {2, 3}, data},
        {"v.0", VKVTN_ST_BF16, 3, {2, 2, 2}, data + 6},
        {"scale", VKVTN_ST_F32, 1, {4}, data + 20},
    };
    const char *meta[] = {"format", "vkv", "spec", "lloyd:kg=64"};
    char path[4096], err[256];
    snprintf(path, sizeof path, "%s/st/three-tensors-meta", g_out);
    if (vkvtn_st_write(path, t, 3, meta, 2, err, sizeof err) != 0)
        goto fail;
    snprintf(path, sizeof path, "%s/st/one-f32", g_out);
    if (vkvtn_st_write(path, t + 2, 1, NULL, 0, err, sizeof err) != 0)
        goto fail;
    vkvtn_st_out scalar = {"s", VKVTN_ST_F16, 0, {0}, data};
    snprintf(path, sizeof path, "%s/st/scalar", g_out);
    if (vkvtn_st_write(path, &scalar, 1, NULL, 0, err, sizeof err) != 0)
        goto fail;
    /* Hand-written edge cases: empty object, zero-size tensor. */
    static const char empty[] = "\x02\0\0\0\0\0\0\0{}";
    put("st", "empty-object", empty, sizeof empty - 1);
    static const char zero[] =
        "\x38\0\0\0\0\0\0\0{\"z\":{\"dtype\":\"F16\",\"shape\":[0,4],\"data_offsets\":[0,0]}}";
    put("st", "zero-size", zero, sizeof zero - 1);
    return;
fail:
    fprintf(stderr, "gen_corpus: %s\n", err);
    exit(1);
}

/* Usage: vkv_fuzz_gen_corpus OUTDIR */
int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s OUTDIR\n", argv[0]);
        return 2;
    }
    g_out = argv[1];
    gen_proto();
    gen_block();
    gen_st();
    return 0;
}
