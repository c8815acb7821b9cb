/*
 * tests/proto/proto_test.c - unit tests of the vkv wire protocol (proto/).
 *
 * Round trips of every request and reply op, one rejection test per decoding
 * rule, and a deterministic random-mutation loop (run it under ASan).
 * Hand-made frames are written in a tiny notation turned into msgpack by
 * mk() below, e.g. "[1,2,7,{'session':1,'keys':[b31]}]".
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <msgpack.h>

#include "proto/fdrec.h"
#include "proto/proto.h"

/* ------------------------------------------------------------------------- */
/* frame notation -> msgpack                                                  */
/*   123 -5 1.5 true false nil 'text' sN (str of N 'a') bN (bin of N bytes)   */
/*   [a,b] {k:v} aN:v (array of N copies of v) mN (map of N distinct 'kI':I) */

/* Parses one value at *s, packing it; advances *s. Fails the test on a
 * notation error. */
static void mk_value(msgpack_packer *pk, const char **s)
{
    const char *p = *s;
    while (*p == ' ')
        p++;
    if (*p == '[' || *p == '{') {
        char close = *p == '[' ? ']' : '}';
        bool map = *p == '{';
        /* count elements first */
        int depth = 0, n = 0;
        bool any = false, quote = false;
        for (const char *q = p + 1; *q; q++) {
            if (*q == '\'')
                quote = !quote;
            if (quote)
                continue;
            if (*q == '[' || *q == '{')
                depth++;
            else if ((*q == ']' || *q == '}') && depth > 0)
                depth--;
            else if (*q == close && depth == 0)
                break;
            else if (*q == ',' && depth == 0)
                n++;
            if (*q != ' ' && !(*q == close && depth == 0))
                any = true;
        }
        n = any ? n + 1 : 0;
        if (map)
            assert_int_equal(msgpack_pack_map(pk, (size_t)n), 0);
        else
            assert_int_equal(msgpack_pack_array(pk, (size_t)n), 0);
        p++;
        for (int i = 0; i < n; i++) {
            mk_value(pk, &p);
            while (*p == ' ')
                p++;
            if (map) {
                assert_int_equal(*p, ':');
                p++;
                mk_value(pk, &p);
                while (*p == ' ')
                    p++;
            }
            if (*p == ',')
                p++;
        }
        while (*p == ' ')
            p++;
        assert_int_equal(*p, close);
        *s = p + 1;
        return;
    }
    if (*p == '\'') {
        const char *e = strchr(p + 1, '\'');
        assert_non_null(e);
        assert_int_equal(msgpack_pack_str_with_body(pk, p + 1, (size_t)(e - p - 1)), 0);
        *s = e + 1;
        return;
    }
    if (*p == 's' || *p == 'b' || *p == 'a' || *p == 'm') {
        char kind = *p;
        char *e;
        unsigned long n = strtoul(p + 1, &e, 10);
        assert_true(e != p + 1);
        if (kind == 'a') {
            assert_int_equal(*e, ':');
            assert_int_equal(msgpack_pack_array(pk, n), 0);
            const char *start = e + 1, *end = start;
            for (unsigned long i = 0; i < n; i++) {
                end = start;
                mk_value(pk, &end);
            }
            if (n == 0) { /* still consume the element */
                msgpack_sbuffer tmp;
                msgpack_packer tp;
                msgpack_sbuffer_init(&tmp);
                msgpack_packer_init(&tp, &tmp, msgpack_sbuffer_write);
                mk_value(&tp, &end);
                msgpack_sbuffer_destroy(&tmp);
            }
            *s = end;
            return;
        }
        if (kind == 'm') {
            assert_int_equal(msgpack_pack_map(pk, n), 0);
            for (unsigned long i = 0; i < n; i++) {
                char k[24];
                int kl = snprintf(k, sizeof(k), "k%lu", i);
                msgpack_pack_str_with_body(pk, k, (size_t)kl);
                msgpack_pack_uint64(pk, i);
            }
            *s = e;
            return;
        }
        char *buf = malloc(n + 1);
        assert_non_null(buf);
        for (unsigned long i = 0; i < n; i++)
            buf[i] = kind == 's' ? 'a' : (char)(i * 7 + 1);
        if (kind == 's')
            assert_int_equal(msgpack_pack_str_with_body(pk, buf, n), 0);
        else
            assert_int_equal(msgpack_pack_bin_with_body(pk, buf, n), 0);
        free(buf);
        *s = e;
        return;
    }
    if (!strncmp(p, "true", 4) || !strncmp(p, "false", 5) || !strncmp(p, "nil", 3)) {
        if (*p == 't')
            msgpack_pack_true(pk);
        else if (*p == 'f')
            msgpack_pack_false(pk);
        else
            msgpack_pack_nil(pk);
        *s = p + (*p == 'f' ? 5 : *p == 't' ? 4 : 3);
        return;
    }
    char *e;
    size_t span = strspn(p, "-0123456789.");
    assert_true(span > 0);
    if (memchr(p, '.', span)) {
        msgpack_pack_double(pk, strtod(p, &e));
    } else if (*p == '-') {
        msgpack_pack_int64(pk, strtoll(p, &e, 10));
    } else {
        msgpack_pack_uint64(pk, strtoull(p, &e, 10));
    }
    *s = e;
}

/* Builds the frame written in notation `fmt` (printf-style); returns a
 * malloc'ed buffer (caller frees) and its length in *len. */
static uint8_t *mk(size_t *len, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static uint8_t *mk(size_t *len, const char *fmt, ...)
{
    char text[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    const char *s = text;
    mk_value(&pk, &s);
    while (*s == ' ')
        s++;
    assert_int_equal(*s, '\0');
    *len = sb.size;
    return (uint8_t *)msgpack_sbuffer_release(&sb);
}

/* Decodes `fmt` as a request and expects error `code` with `frag` in why. */
#define REJ(code, frag, ...) rej_req(__LINE__, code, frag, __VA_ARGS__)
static void rej_req(int line, int code, const char *frag, const char *fmt, ...)
{
    char text[4096], why[VKVP_WHY_LEN];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    size_t len;
    uint8_t *f = mk(&len, "%s", text);
    vkvp_request *req = (vkvp_request *)1;
    int rc = vkvp_decode_request(f, len, &req, why, sizeof(why));
    if (rc != code || !strstr(why, frag))
        fail_msg("line %d: %s -> rc %d (%s) why '%s'; want %d with '%s'", line, text, rc,
                 vkv_errname(rc), why, code, frag);
    assert_null(req);
    free(f);
}

/* Decodes `fmt` as a request and expects success; returns the message. */
static vkvp_request *acc_req(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static vkvp_request *acc_req(const char *fmt, ...)
{
    char text[4096], why[VKVP_WHY_LEN];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    size_t len;
    uint8_t *f = mk(&len, "%s", text);
    vkvp_request *req = NULL;
    int rc = vkvp_decode_request(f, len, &req, why, sizeof(why));
    if (rc != 0)
        fail_msg("%s -> rc %d why '%s'", text, rc, why);
    free(f);
    return req;
}

/* Decodes `fmt` as a reply to `op` and expects error `code` with `frag`. */
#define REJR(op, code, frag, ...) rej_rep(__LINE__, op, code, frag, __VA_ARGS__)
static void rej_rep(int line, vkvp_op op, int code, const char *frag, const char *fmt, ...)
{
    char text[4096], why[VKVP_WHY_LEN];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    size_t len;
    uint8_t *f = mk(&len, "%s", text);
    vkvp_reply *rep = (vkvp_reply *)1;
    int rc = vkvp_decode_reply(f, len, op, &rep, why, sizeof(why));
    if (rc != code || !strstr(why, frag))
        fail_msg("line %d: %s -> rc %d (%s) why '%s'; want %d with '%s'", line, text, rc,
                 vkv_errname(rc), why, code, frag);
    assert_null(rep);
    free(f);
}

/* ------------------------------------------------------------------------- */
/* populated messages of every op                                             */

static vkv_key g_keys[8];
static uint64_t g_leases[3] = {11, 0, UINT64_MAX};
static vkvp_extent g_ext[3] = {{0, 0, 1}, {7, 123456789, 4}, {UINT32_MAX, 1ull << 50, 9}};
static vkvp_block g_blocks[2];
static vkvp_slab g_slabs[2];
static vkvp_counter g_counters[3];
static vkvp_entry g_entries[2];

/* Fills the global fixtures (deterministic). */
static int setup_fixtures(void **state)
{
    for (int i = 0; i < 8; i++)
        for (int j = 0; j < 32; j++)
            g_keys[i].b[j] = (uint8_t)(i * 31 + j * 7 + (j == 0 ? 0 : 1));
    g_blocks[0] = (vkvp_block){4096 * 5 - 17, g_ext, 3};
    g_blocks[1] = (vkvp_block){1, g_ext + 1, 1};
    g_slabs[0] = (vkvp_slab){.id = 0, .size = 1ull << 30, .handle_len = 0};
    g_slabs[1] = (vkvp_slab){.id = 9, .size = 2ull << 20, .handle_len = VKVP_HANDLE_LEN};
    for (int i = 0; i < VKVP_HANDLE_LEN; i++)
        g_slabs[1].handle[i] = (uint8_t)(255 - i);
    g_counters[0] = (vkvp_counter){vkvp_cstr("hits"), 42};
    g_counters[1] = (vkvp_counter){vkvp_cstr("misses"), 0};
    g_counters[2] = (vkvp_counter){vkvp_cstr("bytes_hot"), UINT64_MAX};
    g_entries[0] = (vkvp_entry){vkvp_cstr("llava-1.5-7b@r1/tp0/f16|lloyd:g32"),
                                g_keys[3],
                                VKVP_STATE_READY,
                                VKVP_TIER_HOT,
                                9000,
                                5,
                                1700000000123ull,
                                2,
                                vkvp_cstr("32x8x128x256 f16 lloyd:g32")};
    g_entries[1] = (vkvp_entry){{"a\"b\\c\n\x01\xff", 8},
                                g_keys[4],
                                VKVP_STATE_RESTORING,
                                VKVP_TIER_COLD,
                                1,
                                0,
                                0,
                                0,
                                vkvp_cstr("")};
    (void)state;
    return 0;
}

/* Builds a fully populated request of op (variant picks optional fields). */
static void make_request(vkvp_request *r, vkvp_op op, int variant)
{
    vkvp_request_init(r, op, 0x1122334455667788ull + (uint64_t)op);
    switch (op) {
    case VKVP_HELLO:
        r->u.hello.ns = vkvp_cstr(variant ? "" : "llava-1.5-7b@abc/tp0/f16|lloyd:g32");
        r->u.hello.pid = 4242;
        r->u.hello.has_name = !variant;
        r->u.hello.name = vkvp_cstr("worker-3");
        r->u.hello.admin = variant;
        break;
    case VKVP_LOOKUP:
    case VKVP_FETCH:
        r->u.lookup.session = 77;
        r->u.lookup.keys = g_keys;
        r->u.lookup.nkeys = variant ? 0 : 8;
        break;
    case VKVP_DELETE:
        r->u.del.session = 77;
        r->u.del.keys = g_keys;
        r->u.del.nkeys = variant ? 0 : 8;
        r->u.del.has_ns = variant;
        r->u.del.ns = vkvp_cstr("model-a#lloyd:kg=256");
        break;
    case VKVP_ALLOC:
        r->u.alloc.session = 77;
        r->u.alloc.key = g_keys[5];
        r->u.alloc.size = variant ? VKVP_MAX_ALLOC : 123457;
        break;
    case VKVP_COMMIT:
    case VKVP_ABORT:
        r->u.commit.session = 77;
        r->u.commit.lease = variant ? 0 : 991;
        break;
    case VKVP_RELEASE:
    case VKVP_RENEW:
        r->u.release.session = 77;
        r->u.release.leases = g_leases;
        r->u.release.nleases = variant ? 1 : 3;
        break;
    case VKVP_EVICT:
        r->u.evict.session = 77;
        r->u.evict.has_keys = !variant;
        r->u.evict.keys = g_keys + 1;
        r->u.evict.nkeys = 2;
        r->u.evict.all = variant;
        r->u.evict.to = variant ? VKVP_EVICT_DROP : VKVP_EVICT_COLD;
        r->u.evict.has_ns = !variant;
        r->u.evict.ns = vkvp_cstr("model-b#minmax");
        break;
    case VKVP_FLUSH:
    case VKVP_CLOSE:
        r->u.flush.session = 5;
        break;
    case VKVP_STATS:
    case VKVP_PING:
        r->u.ping.has_session = !variant;
        r->u.ping.session = 8;
        break;
    case VKVP_LIST:
        r->u.list.session = 77;
        r->u.list.cursor = variant ? 0 : 99;
        r->u.list.limit = variant ? VKVP_MAX_LIST : 1;
        r->u.list.has_ns = !variant;
        r->u.list.ns = vkvp_cstr("ns-x");
        break;
    case VKVP_VERIFY:
        r->u.verify.session = 77;
        r->u.verify.start = !variant;
        r->u.verify.drop = variant;
        break;
    case VKVP_INFO:
        r->u.info.session = 77;
        r->u.info.key = g_keys[7];
        r->u.info.has_ns = variant;
        r->u.info.ns = vkvp_cstr("other");
        break;
    default:
        break;
    }
}

/* Builds a fully populated OK reply to op (variant varies optional data). */
static void make_reply(vkvp_reply *r, vkvp_op op, int variant)
{
    vkvp_reply_init(r, op, 0xdeadbeefull + (uint64_t)op, 3 + (uint64_t)variant);
    switch (op) {
    case VKVP_HELLO:
        r->u.hello = (vkvp_hello_rep){.session = 77,
                                      .epoch = 3,
                                      .lease_ttl_ms = 30000,
                                      .page_size = 4096,
                                      .slabs = g_slabs,
                                      .nslabs = 2};
        r->u.hello.backend = variant ? VKVP_BACKEND_CUDA : VKVP_BACKEND_HOST;
        r->u.hello.fd_path = vkvp_cstr(variant ? "" : "/run/user/1000/vkv/vkvd.fd");
        break;
    case VKVP_LOOKUP:
        r->u.lookup = (vkvp_lookup_rep){variant ? 0 : 7, variant ? 0 : 2};
        break;
    case VKVP_FETCH:
        r->u.fetch.lease = 12;
        r->u.fetch.blocks = g_blocks;
        r->u.fetch.nblocks = variant ? 0 : 2;
        break;
    case VKVP_ALLOC:
        r->u.alloc.lease = 13;
        r->u.alloc.block = g_blocks[0];
        break;
    case VKVP_RELEASE:
    case VKVP_RENEW:
    case VKVP_DELETE:
    case VKVP_EVICT:
    case VKVP_FLUSH:
        r->u.release.count = variant ? 0 : 3;
        break;
    case VKVP_STATS:
        r->u.stats.counters = g_counters;
        r->u.stats.ncounters = variant ? 0 : 3;
        break;
    case VKVP_LIST:
        r->u.list.entries = g_entries;
        r->u.list.nentries = variant ? 0 : 2;
        r->u.list.next = variant ? 0 : 555;
        break;
    case VKVP_INFO:
        r->u.info.entry = g_entries[variant];
        break;
    case VKVP_VERIFY:
        r->u.verify = (vkvp_verify_rep){.running = !variant,
                                        .entries_done = 3,
                                        .entries_total = variant ? 3 : 10,
                                        .bytes_done = 300,
                                        .bytes_total = UINT64_MAX,
                                        .corrupt = variant,
                                        .dropped = 0};
        break;
    default:
        break;
    }
}

/* Encodes req and returns the frame (caller frees). */
static uint8_t *enc_req(const vkvp_request *req, size_t *len)
{
    void *f;
    assert_int_equal(vkvp_encode_request(req, &f, len), 0);
    return f;
}

/* Encodes rep and returns the frame (caller frees). */
static uint8_t *enc_rep(const vkvp_reply *rep, size_t *len)
{
    void *f;
    assert_int_equal(vkvp_encode_reply(rep, &f, len), 0);
    return f;
}

/* JSON of a request / reply (caller frees). */
static char *jreq(const vkvp_request *r)
{
    char *j;
    assert_int_equal(vkvp_request_to_json(r, &j), 0);
    return j;
}
static char *jrep(const vkvp_reply *r)
{
    char *j;
    assert_int_equal(vkvp_reply_to_json(r, &j), 0);
    return j;
}

/* ------------------------------------------------------------------------- */
/* round trips                                                                */

static void proto_every_request_round_trips(void **state)
{
    for (int op = 1; op <= VKVP_OP_MAX_; op++)
        for (int v = 0; v < 2; v++) {
            vkvp_request in, *out;
            char why[VKVP_WHY_LEN];
            size_t len;
            make_request(&in, (vkvp_op)op, v);
            uint8_t *f = enc_req(&in, &len);
            int rc = vkvp_decode_request(f, len, &out, why, sizeof(why));
            if (rc)
                fail_msg("op %d variant %d: %s", op, v, why);
            assert_int_equal(out->op, op);
            assert_int_equal(out->version, 1);
            assert_true(out->req_id == in.req_id);
            char *a = jreq(&in), *b = jreq(out);
            assert_string_equal(a, b);
            assert_non_null(strstr(a, vkvp_op_name(op)));
            free(a);
            free(b);
            /* the decoded message does not point into the frame */
            memset(f, 0xee, len);
            free(f);
            if (op == VKVP_LOOKUP && v == 0) {
                assert_int_equal(out->u.lookup.nkeys, 8);
                assert_memory_equal(out->u.lookup.keys, g_keys, sizeof(g_keys));
            }
            if (op == VKVP_HELLO && v == 0) {
                assert_string_equal(out->u.hello.name.ptr, "worker-3");
                assert_true(out->u.hello.has_name);
            }
            if (op == VKVP_RELEASE && v == 0)
                assert_true(out->u.release.leases[2] == UINT64_MAX);
            vkvp_request_free(out);
        }
}

static void proto_every_reply_round_trips(void **state)
{
    for (int op = 1; op <= VKVP_OP_MAX_; op++)
        for (int v = 0; v < 2; v++) {
            vkvp_reply in, *out;
            char why[VKVP_WHY_LEN];
            size_t len;
            make_reply(&in, (vkvp_op)op, v);
            uint8_t *f = enc_rep(&in, &len);
            int rc = vkvp_decode_reply(f, len, (vkvp_op)op, &out, why, sizeof(why));
            if (rc)
                fail_msg("op %d variant %d: %s", op, v, why);
            char *a = jrep(&in), *b = jrep(out);
            assert_string_equal(a, b);
            free(a);
            free(b);
            memset(f, 0xee, len);
            free(f);
            assert_true(out->epoch == in.epoch);
            if (op == VKVP_HELLO && v == 1) {
                assert_int_equal(out->u.hello.slabs[1].handle_len, VKVP_HANDLE_LEN);
                assert_memory_equal(out->u.hello.slabs[1].handle, g_slabs[1].handle, 64);
                assert_int_equal(out->u.hello.backend, VKVP_BACKEND_CUDA);
            }
            if (op == VKVP_FETCH && v == 0) {
                assert_int_equal(out->u.fetch.blocks[0].next, 3);
                assert_memory_equal(out->u.fetch.blocks[0].ext, g_ext, sizeof(g_ext));
            }
            if (op == VKVP_INFO && v == 1) {
                assert_int_equal(out->u.info.entry.ns.len, 8);
                assert_memory_equal(out->u.info.entry.ns.ptr, "a\"b\\c\n\x01\xff", 8);
                assert_int_equal(out->u.info.entry.ns.ptr[8], '\0');
            }
            vkvp_reply_free(out);
        }
}

static void proto_error_reply_round_trips_and_truncates_long_messages(void **state)
{
    void *f;
    size_t len;
    vkvp_reply *out;
    char longmsg[2000];
    memset(longmsg, 'z', sizeof(longmsg) - 1);
    longmsg[sizeof(longmsg) - 1] = '\0';
    assert_int_equal(vkvp_encode_error(99, 4, VKV_EBUSY, "being written", &f, &len), 0);
    assert_int_equal(vkvp_decode_reply(f, len, VKVP_ALLOC, &out, NULL, 0), 0);
    assert_int_equal(out->status, VKV_EBUSY);
    assert_true(out->req_id == 99 && out->epoch == 4);
    assert_string_equal(out->msg.ptr, "being written");
    assert_int_equal(out->op, VKVP_ALLOC);
    vkvp_reply_free(out);
    free(f);
    assert_int_equal(vkvp_encode_error(1, 1, VKV_EPROTO, longmsg, &f, &len), 0);
    assert_int_equal(vkvp_decode_reply(f, len, VKVP_PING, &out, NULL, 0), 0);
    assert_int_equal(out->msg.len, VKVP_MAX_MSG);
    vkvp_reply_free(out);
    free(f);
    assert_int_equal(vkvp_encode_error(1, 1, 0, "x", &f, &len), VKV_EINVAL);
    assert_null(f);
    assert_int_equal(vkvp_encode_error(1, 1, VKV_EIO, NULL, &f, &len), 0);
    free(f);
}

static void proto_defaults_apply_when_optional_keys_are_absent(void **state)
{
    vkvp_request *r = acc_req("[1,12,5,{'session':3}]");
    assert_true(r->u.list.limit == VKVP_LIST_DEFAULT && r->u.list.cursor == 0);
    assert_false(r->u.list.has_ns);
    vkvp_request_free(r);
    r = acc_req("[1,9,5,{'session':3,'all':true}]");
    assert_int_equal(r->u.evict.to, VKVP_EVICT_COLD);
    assert_false(r->u.evict.has_keys);
    vkvp_request_free(r);
    r = acc_req("[1,14,5,{}]");
    assert_false(r->u.ping.has_session);
    vkvp_request_free(r);
    r = acc_req("[1,1,5,{'ns':'','pid':1,'admin':true}]");
    assert_true(r->u.hello.admin);
    vkvp_request_free(r);
    /* small ints in any width are accepted */
    size_t len;
    uint8_t f[] = {0x94, 0xcf, 0, 0, 0, 0, 0, 0, 0, 1, 0xcd, 0, 14, 0xd0, 5, 0x80};
    vkvp_request *p;
    assert_int_equal(vkvp_decode_request(f, sizeof(f), &p, NULL, 0), 0);
    assert_int_equal(p->op, VKVP_PING);
    assert_true(p->req_id == 5);
    vkvp_request_free(p);
    (void)len;
}

/* ------------------------------------------------------------------------- */
/* rejections                                                                 */

static void proto_every_truncation_of_a_valid_frame_is_rejected(void **state)
{
    for (int op = 1; op <= VKVP_OP_MAX_; op++) {
        vkvp_request in, *out;
        vkvp_reply rin, *rout;
        size_t len, rlen;
        char why[VKVP_WHY_LEN];
        make_request(&in, (vkvp_op)op, 0);
        make_reply(&rin, (vkvp_op)op, 0);
        uint8_t *f = enc_req(&in, &len), *rf = enc_rep(&rin, &rlen);
        for (size_t n = 0; n < len; n++) {
            uint8_t *copy = malloc(n ? n : 1); /* exact-size copy: ASan sees overreads */
            memcpy(copy, f, n);
            assert_int_equal(vkvp_decode_request(copy, n, &out, why, sizeof(why)), VKV_EPROTO);
            assert_null(out);
            free(copy);
        }
        for (size_t n = 0; n < rlen; n++) {
            uint8_t *copy = malloc(n ? n : 1);
            memcpy(copy, rf, n);
            assert_int_equal(vkvp_decode_reply(copy, n, (vkvp_op)op, &rout, why, sizeof(why)),
                             VKV_EPROTO);
            free(copy);
        }
        free(f);
        free(rf);
    }
}

static void proto_huge_claimed_counts_are_refused_before_allocation(void **state)
{
    char why[VKVP_WHY_LEN];
    vkvp_request *r;
    const uint8_t arr32[] = {0xdd, 0xff, 0xff, 0xff, 0xff, 0xc0};
    const uint8_t map32[] = {0x94, 1, 2, 3, 0xdf, 0xff, 0xff, 0xff, 0xff};
    const uint8_t str32[] = {0x94, 1, 2, 3, 0x81, 0xdb, 0xff, 0xff, 0xff, 0xf0, 'a'};
    const uint8_t bin32[] = {0x94, 1, 2, 3, 0x81, 0xa1, 'k', 0xc6, 0x7f, 0xff, 0xff, 0xff};
    const uint8_t arr16[] = {0x94, 1, 2, 3, 0x81, 0xa4, 'k', 'e', 'y', 's', 0xdc, 0x10, 0x00};
    /* one byte short of what a map of 2 needs */
    const uint8_t map2[] = {0x94, 1, 2, 3, 0x82, 0xa1, 'k', 1, 0xa1};
    assert_int_equal(vkvp_decode_request(arr32, sizeof(arr32), &r, why, sizeof(why)), VKV_EPROTO);
    assert_non_null(strstr(why, "container of 4294967295"));
    assert_int_equal(vkvp_decode_request(map32, sizeof(map32), &r, why, sizeof(why)), VKV_EPROTO);
    assert_non_null(strstr(why, "container"));
    assert_int_equal(vkvp_decode_request(str32, sizeof(str32), &r, why, sizeof(why)), VKV_EPROTO);
    assert_non_null(strstr(why, "length 4294967280"));
    assert_int_equal(vkvp_decode_request(bin32, sizeof(bin32), &r, why, sizeof(why)), VKV_EPROTO);
    assert_non_null(strstr(why, "length"));
    assert_int_equal(vkvp_decode_request(arr16, sizeof(arr16), &r, why, sizeof(why)), VKV_EPROTO);
    assert_non_null(strstr(why, "container of 4096"));
    assert_int_equal(vkvp_decode_request(map2, sizeof(map2), &r, why, sizeof(why)), VKV_EPROTO);
    assert_non_null(strstr(why, "length 1 at offset 8 exceeds the 0 bytes left"));
    const uint8_t u32[] = {0x94, 1, 2, 0xce, 0, 0};
    assert_int_equal(vkvp_decode_request(u32, sizeof(u32), &r, why, sizeof(why)), VKV_EPROTO);
    assert_non_null(strstr(why, "truncated frame: need 4 bytes at offset 4, 2 left"));
}

static void proto_nesting_deeper_than_the_limit_is_refused(void **state)
{
    char why[VKVP_WHY_LEN];
    vkvp_request *r;
    uint8_t bomb[10000];
    memset(bomb, 0x91, sizeof(bomb) - 1);
    bomb[sizeof(bomb) - 1] = 0xc0;
    assert_int_equal(vkvp_decode_request(bomb, sizeof(bomb), &r, why, sizeof(why)), VKV_EPROTO);
    assert_non_null(strstr(why, "nesting deeper than 8"));
    /* depth 8 is fine for the raw pass (then fails on types), depth 9 is not */
    REJ(VKV_EPROTO, "body.keys[0]: expected bin, got array",
        "[1,2,1,{'session':1,'keys':[[[[[[1]]]]]]}]");
    REJ(VKV_EPROTO, "nesting deeper", "[1,2,1,{'session':1,'keys':[[[[[[[1]]]]]]]}]");
}

static void proto_trailing_bytes_and_empty_frames_are_refused(void **state)
{
    char why[VKVP_WHY_LEN];
    vkvp_request in, *r;
    size_t len;
    make_request(&in, VKVP_PING, 0);
    uint8_t *f = enc_req(&in, &len);
    uint8_t *g = malloc(len + 1);
    memcpy(g, f, len);
    g[len] = 0xc0;
    assert_int_equal(vkvp_decode_request(g, len + 1, &r, why, sizeof(why)), VKV_EPROTO);
    assert_non_null(strstr(why, "1 trailing bytes"));
    /* two complete frames back to back */
    uint8_t *two = malloc(2 * len);
    memcpy(two, f, len);
    memcpy(two + len, f, len);
    assert_int_equal(vkvp_decode_request(two, 2 * len, &r, why, sizeof(why)), VKV_EPROTO);
    assert_int_equal(vkvp_decode_request(f, 0, &r, why, sizeof(why)), VKV_EPROTO);
    assert_non_null(strstr(why, "empty"));
    assert_int_equal(vkvp_decode_request(NULL, 0, &r, why, sizeof(why)), VKV_EPROTO);
    free(two);
    free(g);
    free(f);
}

static void proto_frames_over_the_size_cap_are_too_big(void **state)
{
    char why[VKVP_WHY_LEN];
    vkvp_request *r;
    uint8_t *big = calloc(1, VKVP_MAX_FRAME + 1);
    assert_int_equal(vkvp_decode_request(big, VKVP_MAX_FRAME + 1, &r, why, sizeof(why)),
                     VKV_ETOOBIG);
    assert_non_null(strstr(why, "exceeds"));
    free(big);
    /* the encoder refuses to build one: 4096 blocks of 4096 extents */
    vkvp_extent *e = malloc(sizeof(vkvp_extent) * VKVP_MAX_EXTENTS);
    vkvp_block *b = malloc(sizeof(vkvp_block) * VKVP_MAX_KEYS);
    for (int i = 0; i < VKVP_MAX_EXTENTS; i++)
        e[i] = (vkvp_extent){1, 1ull << 40, 1};
    for (int i = 0; i < VKVP_MAX_KEYS; i++)
        b[i] = (vkvp_block){1, e, VKVP_MAX_EXTENTS};
    vkvp_reply rep;
    void *f;
    size_t len;
    vkvp_reply_init(&rep, VKVP_FETCH, 1, 1);
    rep.u.fetch.blocks = b;
    rep.u.fetch.nblocks = VKVP_MAX_KEYS;
    assert_int_equal(vkvp_encode_reply(&rep, &f, &len), VKV_ETOOBIG);
    assert_null(f);
    assert_int_equal(len, 0);
    free(b);
    free(e);
}

static void proto_ext_types_and_the_reserved_byte_are_refused(void **state)
{
    char why[VKVP_WHY_LEN];
    vkvp_request *r;
    const uint8_t fixext[] = {0x94, 1,   14,  3,   0x81, 0xa7, 's', 'e',
                              's',  's', 'i', 'o', 'n',  0xd4, 1,   0};
    const uint8_t ext8[] = {0x94, 1, 14, 3, 0xc7, 1, 5, 0};
    const uint8_t c1[] = {0x94, 1, 14, 3, 0xc1};
    assert_int_equal(vkvp_decode_request(fixext, sizeof(fixext), &r, why, sizeof(why)), VKV_EPROTO);
    assert_non_null(strstr(why, "ext type 0xd4"));
    assert_int_equal(vkvp_decode_request(ext8, sizeof(ext8), &r, why, sizeof(why)), VKV_EPROTO);
    assert_non_null(strstr(why, "ext type 0xc7"));
    assert_int_equal(vkvp_decode_request(c1, sizeof(c1), &r, why, sizeof(why)), VKV_EPROTO);
    assert_non_null(strstr(why, "reserved byte"));
}

static void proto_frame_header_is_checked(void **state)
{
    REJ(VKV_EPROTO, "expected array, got map", "{'a':1}");
    REJ(VKV_EPROTO, "expected array, got uint", "7");
    REJ(VKV_EPROTO, "array of 3, expected 4", "[1,14,3]");
    REJ(VKV_EPROTO, "array of 5, expected 4", "[1,14,3,{},0]");
    REJ(VKV_EPROTO, "version 2 unsupported", "[2,14,3,{}]");
    REJ(VKV_EPROTO, "version 0 unsupported", "[0,14,3,{}]");
    REJ(VKV_EPROTO, "version: expected uint, got negative int", "[-1,14,3,{}]");
    REJ(VKV_EPROTO, "version: expected uint, got str", "['1',14,3,{}]");
    REJ(VKV_EPROTO, "unknown op 0", "[1,0,3,{}]");
    REJ(VKV_EPROTO, "unknown op 18", "[1,18,3,{}]");
    REJ(VKV_EPROTO, "unknown op 9223372036854775808", "[1,9223372036854775808,3,{}]");
    REJ(VKV_EPROTO, "op: expected uint, got negative int", "[1,-14,3,{}]");
    REJ(VKV_EPROTO, "op: expected uint, got float", "[1,14.0,3,{}]");
    REJ(VKV_EPROTO, "req_id: expected uint, got negative int", "[1,14,-3,{}]");
    REJ(VKV_EPROTO, "req_id: expected uint, got nil", "[1,14,nil,{}]");
    REJ(VKV_EPROTO, "body: expected map, got array", "[1,14,3,[]]");
    REJ(VKV_EPROTO, "body: expected map, got nil", "[1,14,3,nil]");
}

static void proto_wrong_field_types_are_refused(void **state)
{
    REJ(VKV_EPROTO, "body.session: expected uint, got str", "[1,2,1,{'session':'1','keys':[]}]");
    REJ(VKV_EPROTO, "body.session: expected uint, got negative int",
        "[1,2,1,{'session':-1,'keys':[]}]");
    REJ(VKV_EPROTO, "body.session: expected uint, got float", "[1,2,1,{'session':1.5,'keys':[]}]");
    REJ(VKV_EPROTO, "body.session: expected uint, got bool", "[1,2,1,{'session':true,'keys':[]}]");
    REJ(VKV_EPROTO, "body.keys: expected array, got map", "[1,3,1,{'session':1,'keys':{}}]");
    REJ(VKV_EPROTO, "body.keys[1]: expected bin, got str",
        "[1,8,1,{'session':1,'keys':[b32,s32]}]");
    REJ(VKV_EPROTO, "body.ns: expected str, got bin", "[1,1,1,{'ns':b3,'pid':1}]");
    REJ(VKV_EPROTO, "body.pid: expected uint, got negative int", "[1,1,1,{'ns':'m','pid':-5}]");
    REJ(VKV_EPROTO, "body.admin: expected bool, got uint", "[1,1,1,{'ns':'m','pid':5,'admin':1}]");
    REJ(VKV_EPROTO, "body.name: expected str, got nil", "[1,1,1,{'ns':'m','pid':5,'name':nil}]");
    REJ(VKV_EPROTO, "body.key: expected bin, got str", "[1,4,1,{'session':1,'key':s32,'size':1}]");
    REJ(VKV_EPROTO, "body.leases[1]: expected uint, got negative int",
        "[1,7,1,{'session':1,'leases':[1,-2]}]");
    REJ(VKV_EPROTO, "body.to: unknown value 'freeze'",
        "[1,9,1,{'session':1,'all':true,'to':'freeze'}]");
    REJ(VKV_EPROTO, "body.to: expected str, got uint", "[1,9,1,{'session':1,'all':true,'to':1}]");
    REJ(VKV_EPROTO, "body.all: expected bool, got nil", "[1,9,1,{'session':1,'all':nil}]");
    REJ(VKV_EPROTO, "body.cursor: expected uint, got float", "[1,12,1,{'session':1,'cursor':0.0}]");
    REJ(VKV_EPROTO, "body: key #0 is a uint, not a str", "[1,14,1,{1:1}]");
    REJ(VKV_EPROTO, "body: key #1 is a bin, not a str", "[1,14,1,{'session':1,b7:1}]");
}

static void proto_unknown_missing_and_duplicate_keys_are_refused(void **state)
{
    REJ(VKV_EPROTO, "body: unknown key 'bogus'", "[1,2,1,{'session':1,'keys':[],'bogus':1}]");
    REJ(VKV_EPROTO, "body: unknown key 'Session'", "[1,14,1,{'Session':1}]");
    REJ(VKV_EPROTO, "body: unknown key 'keys'", "[1,14,1,{'keys':[]}]");
    REJ(VKV_EPROTO, "body: unknown key 'sessio'", "[1,10,1,{'sessio':1}]");
    REJ(VKV_EPROTO, "body: missing key 'keys'", "[1,2,1,{'session':1}]");
    REJ(VKV_EPROTO, "body: missing key 'session'", "[1,3,1,{'keys':[]}]");
    REJ(VKV_EPROTO, "body: missing key 'pid'", "[1,1,1,{'ns':'m'}]");
    REJ(VKV_EPROTO, "body: missing key 'size'", "[1,4,1,{'session':1,'key':b32}]");
    REJ(VKV_EPROTO, "body: missing key 'lease'", "[1,5,1,{'session':1}]");
    REJ(VKV_EPROTO, "body: missing key 'key'", "[1,13,1,{'session':1}]");
    REJ(VKV_EPROTO, "body: duplicate key 'session'", "[1,10,1,{'session':1,'session':1}]");
    REJ(VKV_EPROTO, "body: duplicate key 'keys'", "[1,8,1,{'keys':[],'session':1,'keys':[b32]}]");
}

static void proto_ns_is_accepted_on_delete_and_evict_only(void **state)
{
    vkvp_request *r = acc_req("[1,8,1,{'session':1,'keys':[b32],'ns':'m#x'}]");
    assert_true(r->u.del.has_ns);
    assert_string_equal(r->u.del.ns.ptr, "m#x");
    assert_int_equal(r->u.del.nkeys, 1);
    vkvp_request_free(r);
    r = acc_req("[1,8,1,{'session':1,'keys':[]}]");
    assert_false(r->u.del.has_ns);
    vkvp_request_free(r);
    r = acc_req("[1,9,1,{'session':1,'keys':[b32],'ns':'m#x','to':'drop'}]");
    assert_true(r->u.evict.has_ns && r->u.evict.has_keys);
    assert_int_equal(r->u.evict.to, VKVP_EVICT_DROP);
    assert_string_equal(r->u.evict.ns.ptr, "m#x");
    vkvp_request_free(r);
    r = acc_req("[1,9,1,{'session':1,'all':true}]");
    assert_false(r->u.evict.has_ns);
    vkvp_request_free(r);
    r = acc_req("[1,8,1,{'session':1,'keys':[],'ns':s255}]");
    vkvp_request_free(r);
    REJ(VKV_ETOOBIG, "body.ns: 256 bytes", "[1,8,1,{'session':1,'keys':[],'ns':s256}]");
    REJ(VKV_ETOOBIG, "body.ns: 256 bytes", "[1,9,1,{'session':1,'all':true,'ns':s256}]");
    REJ(VKV_EPROTO, "body.ns", "[1,8,1,{'session':1,'keys':[],'ns':5}]");
    /* LOOKUP and FETCH keep refusing a namespace */
    REJ(VKV_EPROTO, "body: unknown key 'ns'", "[1,2,1,{'session':1,'keys':[],'ns':'m'}]");
    REJ(VKV_EPROTO, "body: unknown key 'ns'", "[1,3,1,{'session':1,'keys':[],'ns':'m'}]");
    /* the encoder checks the limit too */
    vkvp_request q;
    void *f = NULL;
    size_t len = 0;
    char big[VKVP_MAX_NS + 2];
    memset(big, 'n', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    vkvp_request_init(&q, VKVP_DELETE, 1);
    q.u.del.has_ns = true;
    q.u.del.ns = vkvp_cstr(big);
    assert_int_equal(vkvp_encode_request(&q, &f, &len), VKV_EINVAL);
    assert_null(f);
    /* JSON shows ns only when present */
    q.u.del.ns = vkvp_cstr("m#x");
    char *j = jreq(&q);
    assert_non_null(strstr(j, "\"ns\":\"m#x\""));
    free(j);
    q.u.del.has_ns = false;
    j = jreq(&q);
    assert_null(strstr(j, "\"ns\""));
    free(j);
}

static void proto_verify_defaults_and_rules(void **state)
{
    vkvp_request *r = acc_req("[1,15,1,{'session':9}]");
    assert_int_equal(r->op, VKVP_VERIFY);
    assert_false(r->u.verify.start);
    assert_false(r->u.verify.drop);
    vkvp_request_free(r);
    r = acc_req("[1,15,1,{'session':9,'start':true,'drop':true}]");
    assert_true(r->u.verify.start && r->u.verify.drop);
    vkvp_request_free(r);
    assert_string_equal(vkvp_op_name(VKVP_VERIFY), "VERIFY");
    REJ(VKV_EPROTO, "body: missing key 'session'", "[1,15,1,{'start':true}]");
    REJ(VKV_EPROTO, "body.start", "[1,15,1,{'session':1,'start':1}]");
    REJ(VKV_EPROTO, "body: unknown key 'ns'", "[1,15,1,{'session':1,'ns':'x'}]");
    REJR(VKVP_VERIFY, VKV_EPROTO, "body: missing key 'running'",
         "[1,0,3,1,{'entries_done':0,'entries_total':0,'bytes_done':0,'bytes_total':0,"
         "'corrupt':0,'dropped':0}]");
    REJR(VKVP_VERIFY, VKV_EPROTO, "body: missing key 'dropped'",
         "[1,0,3,1,{'running':false,'entries_done':0,'entries_total':0,'bytes_done':0,"
         "'bytes_total':0,'corrupt':0}]");
}

static void proto_keys_must_be_exactly_32_bytes(void **state)
{
    REJ(VKV_EPROTO, "body.keys[0]: bin of 31 bytes, expected 32",
        "[1,2,1,{'session':1,'keys':[b31]}]");
    REJ(VKV_EPROTO, "body.keys[2]: bin of 33 bytes, expected 32",
        "[1,2,1,{'session':1,'keys':[b32,b32,b33]}]");
    REJ(VKV_EPROTO, "body.key: bin of 0 bytes, expected 32",
        "[1,4,1,{'session':1,'key':b0,'size':1}]");
    REJ(VKV_EPROTO, "body.key: bin of 64 bytes, expected 32", "[1,13,1,{'session':1,'key':b64}]");
}

static void proto_limits_and_ranges_are_enforced(void **state)
{
    vkvp_request *r = acc_req("[1,2,1,{'session':1,'keys':a4096:b32}]");
    assert_int_equal(r->u.lookup.nkeys, VKVP_MAX_KEYS);
    vkvp_request_free(r);
    REJ(VKV_ETOOBIG, "body.keys: 4097 elements, at most 4096",
        "[1,2,1,{'session':1,'keys':a4097:b32}]");
    REJ(VKV_ETOOBIG, "body.leases: 4097 elements", "[1,7,1,{'session':1,'leases':a4097:1}]");
    REJ(VKV_EPROTO, "body.leases: 0 elements, at least 1", "[1,7,1,{'session':1,'leases':[]}]");
    REJ(VKV_ETOOBIG, "body.ns: 256 bytes, at most 255", "[1,1,1,{'ns':s256,'pid':1}]");
    r = acc_req("[1,1,1,{'ns':s255,'pid':1,'name':s64}]");
    vkvp_request_free(r);
    REJ(VKV_ETOOBIG, "body.name: 65 bytes, at most 64", "[1,1,1,{'ns':'m','pid':1,'name':s65}]");
    REJ(VKV_EPROTO, "body.pid: 0 out of range", "[1,1,1,{'ns':'m','pid':0}]");
    REJ(VKV_EPROTO, "body.pid: 2147483648 out of range", "[1,1,1,{'ns':'m','pid':2147483648}]");
    REJ(VKV_EPROTO, "body: ns: empty namespace needs admin=true", "[1,1,1,{'ns':'','pid':1}]");
    REJ(VKV_EPROTO, "body.size: 0 out of range", "[1,4,1,{'session':1,'key':b32,'size':0}]");
    REJ(VKV_EPROTO, "body.size: 1099511627777 out of range",
        "[1,4,1,{'session':1,'key':b32,'size':1099511627777}]");
    REJ(VKV_EPROTO, "body.limit: 0 out of range", "[1,12,1,{'session':1,'limit':0}]");
    REJ(VKV_EPROTO, "body.limit: 1001 out of range", "[1,12,1,{'session':1,'limit':1001}]");
    REJ(VKV_ETOOBIG, "body.ns: 256 bytes", "[1,12,1,{'session':1,'ns':s256}]");
    REJ(VKV_EPROTO, "body: needs exactly one of keys / all=true", "[1,9,1,{'session':1}]");
    REJ(VKV_EPROTO, "body: needs exactly one of keys / all=true",
        "[1,9,1,{'session':1,'all':false}]");
    REJ(VKV_EPROTO, "body: needs exactly one of keys / all=true",
        "[1,9,1,{'session':1,'all':true,'keys':[]}]");
}

static void proto_reply_rules_are_enforced(void **state)
{
    REJR(VKVP_PING, VKV_EPROTO, "array of 4, expected 5", "[1,0,3,{}]");
    REJR(VKVP_PING, VKV_EPROTO, "status: positive value 3", "[1,3,3,1,{}]");
    REJR(VKVP_PING, VKV_EPROTO, "status: expected int, got str", "[1,'0',3,1,{}]");
    REJR(VKVP_PING, VKV_EPROTO, "status: out of range", "[1,-9223372036854775807,3,1,{}]");
    REJR(VKVP_PING, VKV_EPROTO, "epoch: expected uint, got negative int", "[1,0,3,-1,{}]");
    REJR(VKVP_PING, VKV_EPROTO, "body: unknown key 'x'", "[1,0,3,1,{'x':1}]");
    REJR(VKVP_PING, VKV_EPROTO, "body: missing key 'msg'", "[1,-13,3,1,{}]");
    REJR(VKVP_PING, VKV_ETOOBIG, "body.msg: 513 bytes", "[1,-13,3,1,{'msg':s513}]");
    REJR(VKVP_LOOKUP, VKV_EPROTO, "body: cold: larger than hits", "[1,0,3,1,{'hits':1,'cold':2}]");
    REJR(VKVP_LOOKUP, VKV_EPROTO, "body.hits: 4097 out of range",
         "[1,0,3,1,{'hits':4097,'cold':0}]");
    REJR(VKVP_RELEASE, VKV_EPROTO, "missing key 'released'", "[1,0,3,1,{}]");
    const char *hello = "[1,0,3,1,{'session':1,'epoch':1,'backend':%s,'lease_ttl_ms':1,"
                        "'page_size':%s,'fd_path':%s,'slabs':[%s]}]";
    REJR(VKVP_HELLO, VKV_EPROTO, "body.backend: unknown value 'rocm'", hello, "'rocm'", "4096",
         "''", "");
    REJR(VKVP_HELLO, VKV_EPROTO, "body: page_size: not a power of two", hello, "'host'", "4095",
         "''", "");
    REJR(VKVP_HELLO, VKV_EPROTO, "body.page_size: 0 out of range", hello, "'host'", "0", "''", "");
    REJR(VKVP_HELLO, VKV_ETOOBIG, "body.fd_path: 108 bytes", hello, "'host'", "4096", "s108", "");
    REJR(VKVP_HELLO, VKV_EPROTO, "body.slabs[0].handle: bin of 10 bytes, expected 0 or 64", hello,
         "'cuda'", "4096", "''", "{'id':1,'size':2,'handle':b10}");
    REJR(VKVP_HELLO, VKV_EPROTO, "body.slabs[0].id: 4294967296 out of range", hello, "'cuda'",
         "4096", "''", "{'id':4294967296,'size':2,'handle':b0}");
    REJR(VKVP_HELLO, VKV_EPROTO, "body.slabs[1]: missing key 'handle'", hello, "'host'", "4096",
         "''", "{'id':1,'size':2,'handle':b0},{'id':2,'size':2}");
    REJR(VKVP_ALLOC, VKV_EPROTO, "body.ext: 0 elements, at least 1",
         "[1,0,3,1,{'lease':1,'len':5,'ext':[]}]");
    REJR(VKVP_ALLOC, VKV_EPROTO, "body.ext[0]: 2 elements, at least 3",
         "[1,0,3,1,{'lease':1,'len':5,'ext':[[1,2]]}]");
    REJR(VKVP_ALLOC, VKV_ETOOBIG, "body.ext[0]: 4 elements, at most 3",
         "[1,0,3,1,{'lease':1,'len':5,'ext':[[1,2,3,4]]}]");
    REJR(VKVP_ALLOC, VKV_EPROTO, "body.ext[0]: 0 out of range",
         "[1,0,3,1,{'lease':1,'len':5,'ext':[[1,2,0]]}]");
    REJR(VKVP_ALLOC, VKV_EPROTO, "page range overflows",
         "[1,0,3,1,{'lease':1,'len':5,'ext':[[1,18446744073709551615,1]]}]");
    REJR(VKVP_FETCH, VKV_ETOOBIG, "body.blocks[0].ext: 4097 elements",
         "[1,0,3,1,{'lease':1,'blocks':[{'len':1,'ext':a4097:[0,0,1]}]}]");
    REJR(VKVP_STATS, VKV_EPROTO, "body.counters[1]: duplicate counter name",
         "[1,0,3,1,{'counters':{'a':1,'a':2}}]");
    REJR(VKVP_STATS, VKV_EPROTO, "body.counters[0]: 0 bytes, at least 1",
         "[1,0,3,1,{'counters':{'':1}}]");
    REJR(VKVP_STATS, VKV_ETOOBIG, "body.counters: 257 counters", "[1,0,3,1,{'counters':m257}]");
    REJR(VKVP_STATS, VKV_EPROTO, "body.counters[0]: expected uint, got float",
         "[1,0,3,1,{'counters':{'a':1.0}}]");
    REJR(VKVP_INFO, VKV_EPROTO, "body.entry.state: unknown value 'warm'",
         "[1,0,3,1,{'entry':{'ns':'','key':b32,'state':'warm','tier':'hot','size':1,'hits':1,"
         "'last_ms':1,'pins':0,'shape':''}}]");
    REJR(VKVP_LIST, VKV_EPROTO, "body.entries[0]: missing key 'shape'",
         "[1,0,3,1,{'next':0,'entries':[{'ns':'','key':b32,'state':'cold','tier':'cold',"
         "'size':1,'hits':1,'last_ms':1,'pins':0}]}]");
    /* an unknown op for the reply decoder is a caller error */
    vkvp_reply *r;
    uint8_t f[] = {0x95, 1, 0, 1, 1, 0x80};
    assert_int_equal(vkvp_decode_reply(f, sizeof(f), (vkvp_op)0, &r, NULL, 0), VKV_EINVAL);
    assert_int_equal(vkvp_decode_reply(f, sizeof(f), VKVP_PING, &r, NULL, 0), 0);
    vkvp_reply_free(r);
}

static void proto_encoder_refuses_out_of_range_fields(void **state)
{
    vkvp_request q;
    vkvp_reply p;
    void *f;
    size_t len;
    vkv_key k[2] = {{{0}}};
    make_request(&q, VKVP_ALLOC, 0);
    q.u.alloc.size = 0;
    assert_int_equal(vkvp_encode_request(&q, &f, &len), VKV_EINVAL);
    assert_null(f);
    make_request(&q, VKVP_HELLO, 0);
    q.u.hello.ns.len = VKVP_MAX_NS + 1;
    assert_int_equal(vkvp_encode_request(&q, &f, &len), VKV_EINVAL);
    make_request(&q, VKVP_HELLO, 0);
    q.u.hello.ns = vkvp_cstr("");
    assert_int_equal(vkvp_encode_request(&q, &f, &len), VKV_EINVAL);
    make_request(&q, VKVP_EVICT, 0);
    q.u.evict.all = true;
    assert_int_equal(vkvp_encode_request(&q, &f, &len), VKV_EINVAL);
    make_request(&q, VKVP_LOOKUP, 0);
    q.u.lookup.nkeys = VKVP_MAX_KEYS + 1;
    assert_int_equal(vkvp_encode_request(&q, &f, &len), VKV_EINVAL);
    q.u.lookup.keys = NULL;
    q.u.lookup.nkeys = 2;
    assert_int_equal(vkvp_encode_request(&q, &f, &len), VKV_EINVAL);
    q.u.lookup.keys = k;
    assert_int_equal(vkvp_encode_request(&q, &f, &len), 0);
    free(f);
    make_request(&q, VKVP_LIST, 0);
    q.u.list.limit = 0;
    assert_int_equal(vkvp_encode_request(&q, &f, &len), VKV_EINVAL);
    make_request(&q, VKVP_PING, 0);
    q.op = (vkvp_op)16;
    assert_int_equal(vkvp_encode_request(&q, &f, &len), VKV_EINVAL);
    make_reply(&p, VKVP_HELLO, 0);
    p.u.hello.page_size = 3000;
    assert_int_equal(vkvp_encode_reply(&p, &f, &len), VKV_EINVAL);
    make_reply(&p, VKVP_HELLO, 0);
    p.u.hello.backend = (vkvp_backend)7;
    assert_int_equal(vkvp_encode_reply(&p, &f, &len), VKV_EINVAL);
    make_reply(&p, VKVP_LOOKUP, 0);
    p.u.lookup.cold = 8;
    assert_int_equal(vkvp_encode_reply(&p, &f, &len), VKV_EINVAL);
    make_reply(&p, VKVP_STATS, 0);
    vkvp_counter dup[2] = {{vkvp_cstr("x"), 1}, {vkvp_cstr("x"), 2}};
    p.u.stats.counters = dup;
    p.u.stats.ncounters = 2;
    assert_int_equal(vkvp_encode_reply(&p, &f, &len), VKV_EINVAL);
    make_reply(&p, VKVP_PING, 0);
    p.status = 5;
    assert_int_equal(vkvp_encode_reply(&p, &f, &len), VKV_EINVAL);
    assert_null(f);
}

static void proto_req_id_is_recovered_from_damaged_frames(void **state)
{
    vkvp_request q;
    size_t len;
    make_request(&q, VKVP_LOOKUP, 0);
    uint8_t *f = enc_req(&q, &len);
    assert_true(vkvp_peek_req_id(f, len) == q.req_id);
    /* body cut off: the header still names the request */
    assert_true(vkvp_peek_req_id(f, 1 + 1 + 1 + 9) == q.req_id);
    assert_true(vkvp_peek_req_id(f, 1 + 1 + 1 + 8) == 0);
    f[len - 1] ^= 0xff; /* damage the body */
    assert_true(vkvp_peek_req_id(f, len) == q.req_id);
    free(f);
    const uint8_t small[] = {0x93, 0x02, 0xd0, 0xf0, 0x2a};
    assert_true(vkvp_peek_req_id(small, sizeof(small)) == 42);
    const uint8_t neg[] = {0x94, 1, 2, 0xff, 0x80};
    assert_true(vkvp_peek_req_id(neg, sizeof(neg)) == 0);
    const uint8_t garbage[] = {0xc1, 0xc1, 0xc1, 0xc1};
    assert_true(vkvp_peek_req_id(garbage, sizeof(garbage)) == 0);
    const uint8_t arr16[] = {0xdc, 0, 4, 1, 2, 0xcd, 0x12, 0x34};
    assert_true(vkvp_peek_req_id(arr16, sizeof(arr16)) == 0x1234);
    assert_true(vkvp_peek_req_id(NULL, 0) == 0);
}

/* ------------------------------------------------------------------------- */
/* random mutations                                                           */

/* xorshift64*: deterministic pseudo-random numbers for the mutation loop. */
static uint64_t rnd(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 2685821657736338117ull;
}

/* Applies 1..4 random edits (flip, set, insert, delete, truncate) to a copy
 * of f; returns it (malloc'ed, exactly *n bytes). */
static uint8_t *mutate(const uint8_t *f, size_t len, size_t *n, uint64_t *s)
{
    static const uint8_t interesting[] = {0x00, 0x7f, 0x80, 0x8f, 0x90, 0x9f, 0xa0, 0xbf, 0xc0,
                                          0xc1, 0xc4, 0xc6, 0xc7, 0xca, 0xcb, 0xcf, 0xd3, 0xd4,
                                          0xd9, 0xdb, 0xdc, 0xdd, 0xde, 0xdf, 0xe0, 0xff};
    uint8_t *b = malloc(len + 8);
    memcpy(b, f, len);
    *n = len;
    int edits = 1 + (int)(rnd(s) % 4);
    for (int e = 0; e<edits && * n> 0; e++) {
        size_t at = rnd(s) % *n;
        switch (rnd(s) % 6) {
        case 0:
            b[at] ^= (uint8_t)(1u << (rnd(s) % 8));
            break;
        case 1:
            b[at] = interesting[rnd(s) % sizeof(interesting)];
            break;
        case 2:
            b[at] = (uint8_t)rnd(s);
            break;
        case 3:
            if (*n < len + 8) {
                memmove(b + at + 1, b + at, *n - at);
                b[at] = interesting[rnd(s) % sizeof(interesting)];
                (*n)++;
            }
            break;
        case 4:
            memmove(b + at, b + at + 1, *n - at - 1);
            (*n)--;
            break;
        default:
            *n = at;
            break;
        }
    }
    uint8_t *exact = malloc(*n ? *n : 1); /* exact size so ASan catches overreads */
    memcpy(exact, b, *n);
    free(b);
    return exact;
}

static void proto_random_mutations_never_crash_and_accepted_frames_reencode(void **state)
{
    uint64_t seed = 0x9e3779b97f4a7c15ull;
    int accepted = 0, rejected = 0;
    for (int op = 1; op <= VKVP_OP_MAX_; op++)
        for (int v = 0; v < 2; v++) {
            vkvp_request q;
            vkvp_reply p;
            size_t ql, pl;
            make_request(&q, (vkvp_op)op, v);
            make_reply(&p, (vkvp_op)op, v);
            uint8_t *qf = enc_req(&q, &ql), *pf = enc_rep(&p, &pl);
            for (int i = 0; i < 150; i++) {
                size_t n;
                char why[VKVP_WHY_LEN];
                void *re;
                size_t rl;
                uint8_t *m = mutate(qf, ql, &n, &seed);
                vkvp_request *r;
                int rc = vkvp_decode_request(m, n, &r, why, sizeof(why));
                if (rc == 0) {
                    /* whatever the decoder accepts, the encoder can write back */
                    accepted++;
                    assert_int_equal(vkvp_encode_request(r, &re, &rl), 0);
                    free(re);
                    char *j;
                    assert_int_equal(vkvp_request_to_json(r, &j), 0);
                    free(j);
                    vkvp_request_free(r);
                } else {
                    rejected++;
                    assert_true(rc == VKV_EPROTO || rc == VKV_ETOOBIG);
                    assert_true(why[0] != '\0');
                    (void)vkvp_peek_req_id(m, n);
                }
                free(m);
                m = mutate(pf, pl, &n, &seed);
                vkvp_reply *rr;
                rc = vkvp_decode_reply(m, n, (vkvp_op)op, &rr, why, sizeof(why));
                if (rc == 0) {
                    accepted++;
                    assert_int_equal(vkvp_encode_reply(rr, &re, &rl), 0);
                    free(re);
                    vkvp_reply_free(rr);
                } else {
                    rejected++;
                    assert_true(rc == VKV_EPROTO || rc == VKV_ETOOBIG);
                }
                free(m);
            }
            free(qf);
            free(pf);
        }
    /* the loop exercised both outcomes */
    assert_true(accepted > 50);
    assert_true(rejected > 2000);
}

/* The fd side channel's records (fdrec.h) are the little-endian layouts
 * docs/PROTOCOL.md states, and decode what they encode. */
static void proto_fd_records_are_little_endian(void **state)
{
    (void)state;
    uint8_t hello[VKVP_FD_HELLO_LEN], slab[VKVP_FD_SLAB_LEN];
    vkvp_fd_hello_encode(hello, 0x0102030405060708ull);
    const uint8_t want_hello[8] = {8, 7, 6, 5, 4, 3, 2, 1};
    assert_memory_equal(hello, want_hello, sizeof want_hello);
    assert_int_equal(vkvp_fd_hello_decode(hello), 0x0102030405060708ull);
    vkvp_fd_slab_encode(slab, 3, 0xa0000000beefull);
    const uint8_t want_slab[16] = {3, 0, 0, 0, 0, 0, 0, 0, 0xef, 0xbe, 0, 0, 0, 0xa0, 0, 0};
    assert_memory_equal(slab, want_slab, sizeof want_slab);
    uint64_t id = 0, size = 0;
    vkvp_fd_slab_decode(slab, &id, &size);
    assert_int_equal(id, 3);
    assert_int_equal(size, 0xa0000000beefull);
    vkvp_fd_slab_encode(slab, UINT64_MAX, 0);
    vkvp_fd_slab_decode(slab, &id, &size);
    assert_true(id == UINT64_MAX && size == 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(proto_every_request_round_trips),
        cmocka_unit_test(proto_every_reply_round_trips),
        cmocka_unit_test(proto_error_reply_round_trips_and_truncates_long_messages),
        cmocka_unit_test(proto_defaults_apply_when_optional_keys_are_absent),
        cmocka_unit_test(proto_every_truncation_of_a_valid_frame_is_rejected),
        cmocka_unit_test(proto_huge_claimed_counts_are_refused_before_allocation),
        cmocka_unit_test(proto_nesting_deeper_than_the_limit_is_refused),
        cmocka_unit_test(proto_trailing_bytes_and_empty_frames_are_refused),
        cmocka_unit_test(proto_frames_over_the_size_cap_are_too_big),
        cmocka_unit_test(proto_ext_types_and_the_reserved_byte_are_refused),
        cmocka_unit_test(proto_frame_header_is_checked),
        cmocka_unit_test(proto_wrong_field_types_are_refused),
        cmocka_unit_test(proto_unknown_missing_and_duplicate_keys_are_refused),
        cmocka_unit_test(proto_keys_must_be_exactly_32_bytes),
        cmocka_unit_test(proto_ns_is_accepted_on_delete_and_evict_only),
        cmocka_unit_test(proto_verify_defaults_and_rules),
        cmocka_unit_test(proto_limits_and_ranges_are_enforced),
        cmocka_unit_test(proto_reply_rules_are_enforced),
        cmocka_unit_test(proto_encoder_refuses_out_of_range_fields),
        cmocka_unit_test(proto_req_id_is_recovered_from_damaged_frames),
        cmocka_unit_test(proto_random_mutations_never_crash_and_accepted_frames_reencode),
        cmocka_unit_test(proto_fd_records_are_little_endian),
    };
    return cmocka_run_group_tests(tests, setup_fixtures, NULL);
}
