/* A vkv block as Redis pieces plus a manifest written last; see pieces.h. */
#include "remote/pieces.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "common/clock.h"
#include "vkv/block.h"
#include "vkv/error.h"

#define PIECE_TTL_EXTRA_MS 60000 /* pieces outlive their manifest */
#define READ_BATCH         4     /* piece reads in flight per pipeline */
#define WRITE_BATCH        8     /* piece SETs per pipeline */

/* ---- key names ------------------------------------------------------------- */

/* Appends the escaped namespace and "/{<key hex>}" to out at *pos. */
static int name_base(char *out, size_t cap, size_t *pos, const char *prefix, const char *ns,
                     const vkv_key *key)
{
    static const char hex[] = "0123456789abcdef";
    size_t p = 0, pl = strlen(prefix);
    if (pl + 3 * strlen(ns) + 2 * VKV_KEY_LEN + 4 >= cap)
        return VKV_EINVAL;
    memcpy(out, prefix, pl);
    p = pl;
    for (const unsigned char *s = (const unsigned char *)ns; *s; s++) {
        if (*s < 0x21 || *s > 0x7e || *s == '%' || *s == '/' || *s == '{' || *s == '}') {
            out[p++] = '%';
            out[p++] = hex[*s >> 4];
            out[p++] = hex[*s & 15];
        } else {
            out[p++] = (char)*s;
        }
    }
    out[p++] = '/';
    out[p++] = '{';
    for (int i = 0; i < VKV_KEY_LEN; i++) {
        out[p++] = hex[key->b[i] >> 4];
        out[p++] = hex[key->b[i] & 15];
    }
    out[p++] = '}';
    out[p] = '\0';
    *pos = p;
    return 0;
}

int vkvr_name_manifest(char *out, size_t cap, const char *prefix, const char *ns,
                       const vkv_key *key)
{
    size_t p;
    if (name_base(out, cap, &p, prefix, ns, key) || p + 3 > cap)
        return VKV_EINVAL;
    memcpy(out + p, "/m", 3);
    return (int)(p + 2);
}

int vkvr_name_piece(char *out, size_t cap, const char *prefix, const char *ns, const vkv_key *key,
                    uint64_t nonce, uint32_t i)
{
    size_t p;
    if (name_base(out, cap, &p, prefix, ns, key))
        return VKV_EINVAL;
    int n = snprintf(out + p, cap - p, "/%016llx/%u", (unsigned long long)nonce, i);
    if (n < 0 || (size_t)n >= cap - p)
        return VKV_EINVAL;
    return (int)(p + (size_t)n);
}

/* ---- manifest ---------------------------------------------------------------- */

/* Little-endian stores/loads (the format is LE; so is every supported host). */
static void put64(uint8_t *p, uint64_t v)
{
    memcpy(p, &v, 8);
}
static void put32(uint8_t *p, uint32_t v)
{
    memcpy(p, &v, 4);
}
static uint64_t get64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}
static uint32_t get32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

/* Number of pieces of `size` bytes cut in piece_size pieces. */
static uint64_t piece_count(uint64_t size, uint32_t piece_size)
{
    return (size + piece_size - 1) / piece_size;
}

int vkvr_manifest_build(const void *block, uint64_t size, uint32_t piece_size, const char *ns,
                        const vkv_key *key, uint64_t nonce, void **out, size_t *outlen)
{
    if (!block || size == 0 || piece_size == 0 || piece_count(size, piece_size) > VKVR_PIECES_MAX)
        return VKV_EINVAL;
    uint32_t n = (uint32_t)piece_count(size, piece_size);
    size_t len = VKVR_MAN_HDR + 8u * n + 8u;
    uint8_t *m = calloc(1, len);
    if (!m)
        return VKV_ENOMEM;
    memcpy(m, VKVR_MAN_MAGIC, 8);
    put32(m + 8, VKVR_MAN_VERSION);
    put32(m + 12, VKVR_MAN_HDR);
    put64(m + 16, size);
    put32(m + 24, piece_size);
    put32(m + 28, n);
    put64(m + 32, XXH3_64bits(block, (size_t)size));
    put64(m + 40, nonce);
    put64(m + 48, vkv_wall_ms());
    vkv_block_ident(ns, strlen(ns), key->b, m + 56);
    memcpy(m + 72, key->b, VKV_KEY_LEN);
    const uint8_t *b = block;
    for (uint32_t i = 0; i < n; i++) {
        uint64_t off = (uint64_t)i * piece_size;
        uint64_t plen = size - off < piece_size ? size - off : piece_size;
        put64(m + VKVR_MAN_HDR + 8u * i, XXH3_64bits(b + off, (size_t)plen));
    }
    put64(m + len - 8, XXH3_64bits(m, len - 8));
    *out = m;
    *outlen = len;
    return 0;
}

int vkvr_manifest_parse(const void *buf, size_t len, const char *ns, const vkv_key *key,
                        uint64_t max_block, vkvr_manifest *m)
{
    const uint8_t *p = buf;
    if (len < VKVR_MAN_HDR + 8 || memcmp(p, VKVR_MAN_MAGIC, 8) != 0 ||
        get32(p + 8) != VKVR_MAN_VERSION || get32(p + 12) != VKVR_MAN_HDR)
        return VKV_ECORRUPT;
    m->size = get64(p + 16);
    m->piece_size = get32(p + 24);
    m->pieces = get32(p + 28);
    if (m->pieces == 0 || m->pieces > VKVR_PIECES_MAX ||
        len != VKVR_MAN_HDR + 8u * (size_t)m->pieces + 8u)
        return VKV_ECORRUPT;
    if (get64(p + len - 8) != XXH3_64bits(p, len - 8))
        return VKV_ECORRUPT;
    if (m->piece_size == 0 || m->size == 0 || piece_count(m->size, m->piece_size) != m->pieces)
        return VKV_ECORRUPT;
    m->block_xxh3 = get64(p + 32);
    m->nonce = get64(p + 40);
    m->created_ms = get64(p + 48);
    memcpy(m->ident, p + 56, VKV_IDENT_LEN);
    memcpy(m->key.b, p + 72, VKV_KEY_LEN);
    m->piece_xxh3 = p + VKVR_MAN_HDR;
    uint8_t want[VKV_IDENT_LEN];
    vkv_block_ident(ns, strlen(ns), key->b, want);
    if (memcmp(want, m->ident, VKV_IDENT_LEN) != 0 || memcmp(key->b, m->key.b, VKV_KEY_LEN) != 0)
        return VKV_EIDENT;
    if (m->size > max_block)
        return VKV_ETOOBIG;
    return 0;
}

int vkvr_redis_error(const char *msg)
{
    if (strncmp(msg, "OOM", 3) == 0)
        return VKV_ENOSPC;
    if (strncmp(msg, "NOAUTH", 6) == 0 || strncmp(msg, "NOPERM", 6) == 0 ||
        strncmp(msg, "WRONGPASS", 9) == 0)
        return VKV_EPERM;
    if (strncmp(msg, "WRONGTYPE", 9) == 0)
        return VKV_ECORRUPT;
    return VKV_EIO;
}

/* ---- piece pipelines ---------------------------------------------------------- */

/* Where the keys of one block live: router, prefix, namespace, key and the
 * publish nonce that names its pieces. Borrowed pointers. */
struct blk {
    vkvr_cluster *c;
    const char *prefix, *ns;
    const vkv_key *key;
    uint64_t nonce;
};

#define BATCH_MAX (WRITE_BATCH > READ_BATCH ? WRITE_BATCH : READ_BATCH)

/* One pipeline of piece commands: each command's argument vector (names
 * are the piece keys, values borrowed from the caller) and its reply, which
 * the caller frees. */
struct batch {
    int k; /* commands so far */
    char names[BATCH_MAX][VKVR_KEYNAME_MAX];
    char ends[BATCH_MAX][24]; /* GETRANGE's last offset */
    const char *av[BATCH_MAX][5];
    size_t al[BATCH_MAX][5];
    const char *const *avp[BATCH_MAX];
    const size_t *alp[BATCH_MAX];
    int ac[BATCH_MAX];
    redisReply *rr[BATCH_MAX];
};

/* Appends a read of piece i to bt (vlen: its length; "GETRANGE <piece i> 0
 * vlen", at most one byte more than the piece, or "GET <piece i>" where the
 * ACL refuses GETRANGE), or "SET <piece i> val [PX pttl]" when val is set
 * (pttl NULL: no expiry). val and pttl must outlive the pipeline. */
static void batch_add(struct batch *bt, const struct blk *bk, uint32_t i, const uint8_t *val,
                      size_t vlen, const char *pttl)
{
    int k = bt->k++;
    int nl = vkvr_name_piece(bt->names[k], sizeof bt->names[k], bk->prefix, bk->ns, bk->key,
                             bk->nonce, i);
    bt->av[k][0] = val ? "SET" : "GET";
    bt->al[k][0] = 3;
    bt->av[k][1] = bt->names[k];
    bt->al[k][1] = (size_t)nl;
    bt->ac[k] = 2;
    if (!val && vkvr_cluster_getrange(bk->c)) {
        bt->av[k][0] = "GETRANGE";
        bt->al[k][0] = 8;
        bt->av[k][2] = "0";
        bt->al[k][2] = 1;
        bt->al[k][3] = (size_t)snprintf(bt->ends[k], sizeof bt->ends[k], "%zu", vlen);
        bt->av[k][3] = bt->ends[k];
        bt->ac[k] = 4;
    }
    if (val) {
        bt->av[k][2] = (const char *)val;
        bt->al[k][2] = vlen;
        bt->av[k][3] = "PX";
        bt->al[k][3] = 2;
        bt->av[k][4] = pttl ? pttl : "";
        bt->al[k][4] = pttl ? strlen(pttl) : 0;
        bt->ac[k] = pttl ? 5 : 3;
    }
    bt->avp[k] = bt->av[k];
    bt->alp[k] = bt->al[k];
}

/* Sends bt in one pipeline; on 0 every bt->rr[0..k) is set (caller frees). */
static int batch_send(struct batch *bt, const struct blk *bk)
{
    return vkvr_cluster_pipeline(bk->c, bt->k, bt->ac, bt->avp, bt->alp, 1, bt->rr);
}

/* Bytes of piece i of a block of `size` bytes cut in piece_size pieces. */
static uint64_t piece_len(uint64_t size, uint32_t piece_size, uint32_t i)
{
    uint64_t off = (uint64_t)i * piece_size;
    return size - off < piece_size ? size - off : piece_size;
}

/* ---- write ------------------------------------------------------------------- */

/* DEL of the key name[0..len); best effort. Returns whether a key was
 * removed (false on any error, and for len <= 0: a name that did not fit). */
static bool del_key(vkvr_cluster *c, const char *name, int len)
{
    const char *av[2] = {"DEL", name};
    size_t al[2] = {3, (size_t)len};
    redisReply *r = NULL;
    if (len <= 0 || vkvr_cluster_command(c, 2, av, al, 1, &r) != 0)
        return false;
    bool removed = r->type == REDIS_REPLY_INTEGER && r->integer > 0;
    freeReplyObject(r);
    return removed;
}

/* Deletes pieces [0, n) of publish bk->nonce (best effort, errors
 * ignored). */
static void delete_pieces(const struct blk *bk, uint32_t n)
{
    char name[VKVR_KEYNAME_MAX];
    for (uint32_t i = 0; i < n; i++)
        del_key(bk->c, name,
                vkvr_name_piece(name, sizeof name, bk->prefix, bk->ns, bk->key, bk->nonce, i));
}

/* A random 64-bit publish nonce (time, address and thread mixed; uniqueness
 * among concurrent publishers of one key is all it needs). */
static uint64_t make_nonce(const void *salt)
{
    uint64_t in[3] = {vkv_now_ns(), vkv_wall_ms(), (uint64_t)(uintptr_t)salt};
    return XXH3_64bits(in, sizeof in) | 1u;
}

/* Once per key: VKV_EEXIST when the manifest mname already exists (a
 * manifest is never rewritten), 0 when it is absent, or a router/Redis
 * error. */
static int manifest_absent(vkvr_cluster *c, const char *mname, int mlen)
{
    const char *ex[2] = {"EXISTS", mname};
    size_t exl[2] = {6, (size_t)mlen};
    redisReply *r = NULL;
    int rc = vkvr_cluster_command(c, 2, ex, exl, 1, &r);
    if (rc)
        return rc;
    if (r->type == REDIS_REPLY_ERROR)
        rc = vkvr_redis_error(r->str);
    else if (r->type == REDIS_REPLY_INTEGER && r->integer > 0)
        rc = VKV_EEXIST;
    freeReplyObject(r);
    return rc;
}

/* Writes every piece of block[0..size), WRITE_BATCH SETs per pipeline (PX
 * pttl; pttl NULL: no expiry). *written counts the pieces of the pipelines
 * that were sent or being sent (what a failure must delete). The first error reply wins
 * (VKV_ENOSPC also sets rep->oom). */
static int write_pieces(const struct blk *bk, const uint8_t *block, uint64_t size,
                        uint32_t piece_size, const char *pttl, uint32_t *written,
                        vkvr_io_report *rep)
{
    uint32_t n = (uint32_t)piece_count(size, piece_size);
    struct batch bt;
    int rc = 0;
    *written = 0;
    for (uint32_t i0 = 0; i0 < n && rc == 0; i0 += WRITE_BATCH) {
        bt.k = 0;
        for (uint32_t i = i0; i < n && bt.k < WRITE_BATCH; i++)
            batch_add(&bt, bk, i, block + (uint64_t)i * piece_size,
                      (size_t)piece_len(size, piece_size, i), pttl);
        /* counted before it is sent: a pipeline that fails half way (a
         * timeout, a lost connection) may still have stored its pieces */
        *written = i0 + (uint32_t)bt.k;
        if ((rc = batch_send(&bt, bk)) != 0)
            break;
        for (int j = 0; j < bt.k; j++) {
            if (bt.rr[j]->type == REDIS_REPLY_ERROR && rc == 0) {
                rc = vkvr_redis_error(bt.rr[j]->str);
                if (rc == VKV_ENOSPC)
                    rep->oom = 1;
            }
            freeReplyObject(bt.rr[j]);
        }
    }
    return rc;
}

/* Reads the value at name[0..nlen) into *out (the caller frees it): at most
 * max + 1 bytes (GETRANGE name 0 max), so an oversized value planted in the
 * cluster is refused without being read whole; where the ACL refuses
 * GETRANGE (NOPERM), the cluster is told once and the read is GET. A
 * missing key reads as nil (GET) or as an empty string (GETRANGE): see
 * value_missing. Returns 0 or a router error. */
static int read_value(vkvr_cluster *c, const char *name, int nlen, size_t max, redisReply **out)
{
    char end[24];
    const int el = snprintf(end, sizeof end, "%zu", max);
    for (;;) {
        const bool ranged = vkvr_cluster_getrange(c);
        const char *av[4] = {ranged ? "GETRANGE" : "GET", name, "0", end};
        size_t al[4] = {ranged ? 8u : 3u, (size_t)nlen, 1, (size_t)el};
        int rc = vkvr_cluster_command(c, ranged ? 4 : 2, av, al, 1, out);
        /* only the refusal of the command itself: a key-pattern NOPERM is
         * the caller's answer */
        if (rc != 0 || !ranged || (*out)->type != REDIS_REPLY_ERROR ||
            strncmp((*out)->str, "NOPERM", 6) != 0 || strcasestr((*out)->str, "getrange") == NULL)
            return rc;
        freeReplyObject(*out);
        *out = NULL;
        vkvr_cluster_no_getrange(c);
    }
}

/* True when reply r of read_value (or of a piece read) says the key is
 * absent: nil, or the empty string GETRANGE answers for a missing key (no
 * manifest or piece is ever empty). */
static bool value_missing(const redisReply *r)
{
    return r->type == REDIS_REPLY_NIL || (r->type == REDIS_REPLY_STRING && r->len == 0);
}

/* True when the manifest mname holds exactly man[0..manlen): a SET NX
 * resent on a fresh connection after its reply was lost finds our own
 * manifest, which is success, not a lost race. */
static bool manifest_is_ours(vkvr_cluster *c, const char *mname, int mlen, const void *man,
                             size_t manlen)
{
    redisReply *r = NULL;
    bool ours = false;
    if (read_value(c, mname, mlen, manlen, &r) == 0) {
        ours =
            r->type == REDIS_REPLY_STRING && r->len == manlen && memcmp(r->str, man, manlen) == 0;
        freeReplyObject(r);
    }
    return ours;
}

/* Writes the manifest with SET NX (PX ttl; ttl NULL: no expiry), only if it
 * is still absent: VKV_EEXIST when another node published the key meanwhile,
 * a Redis error (VKV_ENOSPC also sets rep->oom) or a router error. */
static int write_manifest(vkvr_cluster *c, const char *mname, int mlen, const void *man,
                          size_t manlen, const char *ttl, vkvr_io_report *rep)
{
    const char *mv[6] = {"SET", mname, man, "NX", "PX", ttl ? ttl : ""};
    size_t ml[6] = {3, (size_t)mlen, manlen, 2, 2, ttl ? strlen(ttl) : 0};
    redisReply *r = NULL;
    int rc = vkvr_cluster_command(c, ttl ? 6 : 4, mv, ml, 1, &r);
    if (rc)
        return rc;
    if (r->type == REDIS_REPLY_ERROR) {
        rc = vkvr_redis_error(r->str);
        if (rc == VKV_ENOSPC)
            rep->oom = 1;
    } else if (r->type == REDIS_REPLY_NIL) {
        rc = VKV_EEXIST;
    }
    freeReplyObject(r);
    if (rc == VKV_EEXIST && manifest_is_ours(c, mname, mlen, man, manlen))
        rc = 0;
    return rc;
}

/* See pieces.h. The steps: the manifest must be absent, the pieces, then
 * the manifest; on failure the pieces written are deleted. */
int vkvr_block_write(vkvr_cluster *c, const char *prefix, const char *ns, const vkv_key *key,
                     const void *block, uint64_t size, uint32_t piece_size, uint64_t ttl_ms,
                     vkvr_io_report *rep)
{
    char mname[VKVR_KEYNAME_MAX];
    int mlen = vkvr_name_manifest(mname, sizeof mname, prefix, ns, key);
    if (mlen < 0)
        return VKV_EINVAL;
    int rc = manifest_absent(c, mname, mlen);
    if (rc)
        return rc;

    struct blk bk = {c, prefix, ns, key, 0};
    bk.nonce = make_nonce(&bk.nonce);
    void *man = NULL;
    size_t manlen = 0;
    if ((rc = vkvr_manifest_build(block, size, piece_size, ns, key, bk.nonce, &man, &manlen)) != 0)
        return rc;
    uint32_t n = (uint32_t)piece_count(size, piece_size), written = 0;
    char ttl[24], pttl[24];
    snprintf(ttl, sizeof ttl, "%llu", (unsigned long long)ttl_ms);
    snprintf(pttl, sizeof pttl, "%llu", (unsigned long long)(ttl_ms + PIECE_TTL_EXTRA_MS));

    rc = write_pieces(&bk, block, size, piece_size, ttl_ms ? pttl : NULL, &written, rep);
    if (rc == 0)
        rc = write_manifest(c, mname, mlen, man, manlen, ttl_ms ? ttl : NULL, rep);
    free(man);
    if (rc)
        delete_pieces(&bk, rc == VKV_EEXIST ? n : written);
    return rc;
}

/* ---- read -------------------------------------------------------------------- */

/* See pieces.h. */
int vkvr_manifest_read(vkvr_cluster *c, const char *prefix, const char *ns, const vkv_key *key,
                       uint64_t max_block, vkvr_manifest *m, void **mbuf, vkvr_io_report *rep)
{
    char mname[VKVR_KEYNAME_MAX];
    int mlen = vkvr_name_manifest(mname, sizeof mname, prefix, ns, key);
    if (mlen < 0)
        return VKV_EINVAL;
    redisReply *r = NULL;
    int rc = read_value(c, mname, mlen, VKVR_MAN_MAX, &r);
    if (rc)
        return rc;
    if (value_missing(r)) {
        rc = VKV_ENOTFOUND;
    } else if (r->type == REDIS_REPLY_ERROR) {
        rc = vkvr_redis_error(r->str);
    } else if (r->type != REDIS_REPLY_STRING) {
        rc = VKV_ECORRUPT;
    } else if ((*mbuf = malloc(r->len ? r->len : 1)) == NULL) {
        rc = VKV_ENOMEM;
    } else {
        memcpy(*mbuf, r->str, r->len);
        rc = vkvr_manifest_parse(*mbuf, r->len, ns, key, max_block, m);
        if (rc) {
            free(*mbuf);
            *mbuf = NULL;
        }
    }
    if (rc == VKV_ECORRUPT || rc == VKV_EIDENT)
        rep->foreign = 1;
    freeReplyObject(r);
    return rc;
}

/* Copies src[0..len) to the iovec list dst at byte offset off. */
static void iov_put(const struct iovec *dst, int ndst, uint64_t off, const uint8_t *src,
                    uint64_t len)
{
    for (int i = 0; i < ndst && len > 0; i++) {
        if (off >= dst[i].iov_len) {
            off -= dst[i].iov_len;
            continue;
        }
        uint64_t n = dst[i].iov_len - off < len ? dst[i].iov_len - off : len;
        memcpy((uint8_t *)dst[i].iov_base + off, src, (size_t)n);
        src += n;
        len -= n;
        off = 0;
    }
}

/* One block being read: its manifest, the caller's memory, the running
 * hashes of the whole block and of its payload, and a copy of its header
 * (from piece 0; piece_size >= VKV_BLOCK_HEADER_SIZE). */
struct fetch {
    const vkvr_manifest *m;
    const struct iovec *dst;
    int ndst;
    XXH3_state_t *whole, *payload;
    vkv_block_header hdr;
};

/* Takes piece i (reply x): checks its length and its manifest hash, feeds
 * it to both hashes and copies it into place. 0, VKV_ENOTFOUND (expired or
 * evicted piece), a Redis error, or VKV_ECHECKSUM (sets rep->corrupt). */
static int take_piece(struct fetch *f, uint32_t i, const redisReply *x, vkvr_io_report *rep)
{
    const vkvr_manifest *m = f->m;
    uint64_t off = (uint64_t)i * m->piece_size;
    uint64_t plen = piece_len(m->size, m->piece_size, i);
    if (value_missing(x))
        return VKV_ENOTFOUND;
    if (x->type == REDIS_REPLY_ERROR)
        return vkvr_redis_error(x->str);
    if (x->type != REDIS_REPLY_STRING || x->len != plen ||
        XXH3_64bits(x->str, x->len) != get64(m->piece_xxh3 + 8u * i)) {
        rep->corrupt = 1;
        return VKV_ECHECKSUM;
    }
    const uint8_t *s = (const uint8_t *)x->str;
    XXH3_64bits_update(f->whole, s, (size_t)plen);
    if (i == 0) {
        memcpy(&f->hdr, s, sizeof f->hdr);
        XXH3_64bits_update(f->payload, s + VKV_BLOCK_HEADER_SIZE,
                           (size_t)plen - VKV_BLOCK_HEADER_SIZE);
    } else {
        XXH3_64bits_update(f->payload, s, (size_t)plen);
    }
    iov_put(f->dst, f->ndst, off, s, plen);
    return 0;
}

/* Reads every piece of f->m, READ_BATCH reads per pipeline, taking each as
 * it arrives; stops at the first failure (take_piece's or the router's). */
static int read_pieces(struct fetch *f, const struct blk *bk, vkvr_io_report *rep)
{
    struct batch bt;
    int rc = 0;
    for (uint32_t i0 = 0; i0 < f->m->pieces && rc == 0; i0 += READ_BATCH) {
        bt.k = 0;
        for (uint32_t i = i0; i < f->m->pieces && bt.k < READ_BATCH; i++)
            batch_add(&bt, bk, i, NULL, (size_t)piece_len(f->m->size, f->m->piece_size, i), NULL);
        if ((rc = batch_send(&bt, bk)) != 0)
            break;
        for (int j = 0; j < bt.k; j++) {
            if (rc == 0)
                rc = take_piece(f, i0 + (uint32_t)j, bt.rr[j], rep);
            freeReplyObject(bt.rr[j]);
        }
    }
    return rc;
}

/* The block's own checks once its bytes match the manifest: its header (a
 * copy, against the real size), payload checksum (hp) and identity. A sound
 * manifest over a block that fails these is a planted value: VKV_ECHECKSUM
 * sets rep->corrupt, anything else rep->foreign and reads as VKV_EIDENT or
 * VKV_ECORRUPT. */
static int verify_block(const vkvr_manifest *m, const vkv_block_header *hdr, uint64_t hp,
                        vkvr_io_report *rep)
{
    vkv_block_header h;
    int rc = vkv_block_check(hdr, (size_t)m->size, 0, &h);
    if (rc == 0 && h.total_size != m->size)
        rc = VKV_ECORRUPT;
    if (rc == 0 && h.payload_xxh3 != hp)
        rc = VKV_ECHECKSUM;
    if (rc == 0)
        rc = vkv_block_check_ident(&h, m->ident);
    if (rc) {
        if (rc == VKV_ECHECKSUM)
            rep->corrupt = 1;
        else
            rep->foreign = 1;
        if (rc != VKV_ECHECKSUM && rc != VKV_EIDENT)
            rc = VKV_ECORRUPT;
    }
    return rc;
}

/* Deletes the manifest of (ns, key) after one of its pieces was found
 * missing (expired early, or evicted by an LRU policy that kept the small,
 * often-read manifest), and the pieces of that publish still there: left in
 * place, the manifest would make every fetch of the key miss and every node
 * holding the block skip publishing it (EXISTS) until its TTL ran out; the
 * next publish of the key then succeeds. The manifest is read again first
 * and deleted only if it still names publish m->nonce; between that read
 * and the DEL another reader may have deleted it and a node published the
 * key again, in which case that newer publish is deleted too: it is lost
 * (its pieces are left to their TTL), never served wrong. Best effort
 * (errors ignored); sets rep->dangling when the DEL removed the manifest. */
static void drop_dangling(const struct blk *bk, const vkvr_manifest *m, vkvr_io_report *rep)
{
    char mname[VKVR_KEYNAME_MAX];
    int mlen = vkvr_name_manifest(mname, sizeof mname, bk->prefix, bk->ns, bk->key);
    if (mlen < 0)
        return;
    redisReply *r = NULL;
    if (read_value(bk->c, mname, mlen, VKVR_MAN_MAX, &r) != 0)
        return;
    vkvr_manifest now;
    bool same = r->type == REDIS_REPLY_STRING &&
                vkvr_manifest_parse(r->str, r->len, bk->ns, bk->key, UINT64_MAX, &now) == 0 &&
                now.nonce == m->nonce;
    freeReplyObject(r);
    if (!same)
        return; /* gone already, or a newer publish: not ours to delete */
    rep->dangling = del_key(bk->c, mname, mlen);
    if (rep->dangling)
        delete_pieces(bk, m->pieces);
}

/* See pieces.h. The steps: room and sizes, the pieces (each checked as it
 * arrives), the whole block's hash, then the block's own checks; a missing
 * piece drops the manifest (drop_dangling). */
int vkvr_block_read(vkvr_cluster *c, const char *prefix, const char *ns, const vkv_key *key,
                    const vkvr_manifest *m, const struct iovec *dst, int ndst, vkvr_io_report *rep)
{
    uint64_t room = 0;
    for (int i = 0; i < ndst; i++)
        room += dst[i].iov_len;
    if (room < m->size)
        return VKV_ETRUNC;
    if (m->size < VKV_BLOCK_HEADER_SIZE || m->piece_size < VKV_BLOCK_HEADER_SIZE) {
        rep->foreign = 1;
        return VKV_ECORRUPT;
    }
    struct fetch f = {.m = m, .dst = dst, .ndst = ndst};
    f.whole = XXH3_createState();
    f.payload = XXH3_createState();
    if (!f.whole || !f.payload) {
        XXH3_freeState(f.whole);
        XXH3_freeState(f.payload);
        return VKV_ENOMEM;
    }
    XXH3_64bits_reset(f.whole);
    XXH3_64bits_reset(f.payload);
    struct blk bk = {c, prefix, ns, key, m->nonce};
    int rc = read_pieces(&f, &bk, rep);
    if (rc == VKV_ENOTFOUND)
        drop_dangling(&bk, m, rep);
    uint64_t hw = XXH3_64bits_digest(f.whole), hp = XXH3_64bits_digest(f.payload);
    XXH3_freeState(f.whole);
    XXH3_freeState(f.payload);
    if (rc)
        return rc;
    if (hw != m->block_xxh3) {
        rep->corrupt = 1;
        return VKV_ECHECKSUM;
    }
    return verify_block(m, &f.hdr, hp, rep);
}
