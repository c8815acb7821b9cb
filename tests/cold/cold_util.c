/* tests/cold/cold_util.c - see cold_util.h. */
#include "cold_util.h"

#include "vkv/error.h"

#include <errno.h>
#include <ftw.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

vkvs_cold_completion cu_side[4096];
int cu_nside;

char *cu_mkdtemp(const char *tag)
{
    const char *base = getenv("TMPDIR");
    char path[4096];
    snprintf(path, sizeof path, "%s/vkv-%s-XXXXXX", base && base[0] ? base : "/tmp", tag);
    if (mkdtemp(path) == NULL)
        return NULL;
    return strdup(path);
}

/* nftw callback removing one path. */
static int cu_rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(p);
}

int cu_rmrf(const char *path)
{
    return nftw(path, cu_rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* splitmix64 step. */
static uint64_t cu_mix(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

void cu_key(vkv_key *k, uint64_t series, uint64_t idx)
{
    uint64_t s = series * 1000003u + idx;
    memcpy(k->b, &idx, 8);
    uint32_t se = (uint32_t)series;
    memcpy(k->b + 8, &se, 4);
    memcpy(k->b + 12, "vkvK", 4);
    for (int i = 16; i < 32; i += 8) {
        uint64_t r = cu_mix(&s);
        memcpy(k->b + i, &r, 8);
    }
}

int cu_key_parse(const vkv_key *k, uint64_t *series, uint64_t *idx)
{
    if (memcmp(k->b + 12, "vkvK", 4) != 0)
        return -1;
    uint32_t se;
    memcpy(idx, k->b, 8);
    memcpy(&se, k->b + 8, 4);
    *series = se;
    vkv_key chk;
    cu_key(&chk, *series, *idx);
    return memcmp(chk.b, k->b, 32) == 0 ? 0 : -1;
}

void cu_fill(const vkv_key *k, uint8_t *buf, size_t len)
{
    uint64_t s;
    memcpy(&s, k->b + 16, 8);
    size_t i = 0;
    while (i + 8 <= len) {
        uint64_t r = cu_mix(&s);
        memcpy(buf + i, &r, 8);
        i += 8;
    }
    if (i < len) {
        uint64_t r = cu_mix(&s);
        memcpy(buf + i, &r, len - i);
    }
}

uint8_t *cu_payload(const vkv_key *k, size_t len)
{
    uint8_t *b = malloc(len ? len : 1);
    if (b)
        cu_fill(k, b, len);
    return b;
}

int cu_check(const vkv_key *k, const uint8_t *buf, size_t len)
{
    uint8_t *want = cu_payload(k, len);
    int ok = want != NULL && memcmp(want, buf, len) == 0;
    free(want);
    return ok;
}

void cu_drain(vkvs_cold *c)
{
    vkvs_cold_completion cp[64];
    int n;
    while ((n = vkvs_cold_poll(c, cp, 64)) > 0)
        for (int i = 0; i < n; i++)
            if (cu_nside < (int)(sizeof cu_side / sizeof cu_side[0]))
                cu_side[cu_nside++] = cp[i];
}

int cu_wait(vkvs_cold *c, int op, uint64_t tag, vkvs_cold_completion *out)
{
    for (int spins = 0; spins < 600; spins++) {
        vkvs_cold_completion cp;
        while (vkvs_cold_poll(c, &cp, 1) == 1) {
            if (cp.op == op && cp.tag == tag) {
                *out = cp;
                return 0;
            }
            if (cu_nside < (int)(sizeof cu_side / sizeof cu_side[0]))
                cu_side[cu_nside++] = cp;
        }
        struct pollfd pfd = {vkvs_cold_fd(c), POLLIN, 0};
        poll(&pfd, 1, 100); /* hang guard only: 600 x 100 ms */
    }
    return -1;
}

int cu_side_count(int op)
{
    int n = 0;
    for (int i = 0; i < cu_nside; i++)
        n += cu_side[i].op == op;
    return n;
}

int cu_spill_sync(vkvs_cold *c, const char *ns, const vkv_key *k, size_t len, uint64_t tag)
{
    uint8_t *buf = cu_payload(k, len);
    if (buf == NULL)
        return VKV_ENOMEM;
    int rc = vkvs_cold_spill(c, ns, k, buf, len, tag);
    if (rc != 0) {
        free(buf);
        return rc;
    }
    vkvs_cold_completion cp;
    if (cu_wait(c, VKVS_COLD_OP_SPILL, tag, &cp) != 0)
        return VKV_ETIMEDOUT;
    return cp.status;
}

int cu_restore_sync(vkvs_cold *c, const char *ns, const vkv_key *k, size_t cap, uint64_t tag,
                    uint8_t **buf, size_t *len)
{
    uint8_t *b = malloc(cap ? cap : 1);
    *buf = NULL;
    if (b == NULL)
        return VKV_ENOMEM;
    struct iovec iov = {b, cap};
    int rc = vkvs_cold_restore(c, ns, k, &iov, 1, tag);
    if (rc != 0) {
        free(b);
        return rc;
    }
    vkvs_cold_completion cp;
    if (cu_wait(c, VKVS_COLD_OP_RESTORE, tag, &cp) != 0) {
        return VKV_ETIMEDOUT; /* b leaks on purpose: a reader may still write it */
    }
    if (cp.status != 0) {
        free(b);
        return cp.status;
    }
    *buf = b;
    *len = cp.size;
    return 0;
}

/* See cold_util.h. */
int cu_setup(void **state)
{
    cu_fixture *f = calloc(1, sizeof *f);
    if (f == NULL || (f->dir = cu_mkdtemp("cold")) == NULL) {
        free(f);
        return -1;
    }
    cu_nside = 0;
    *state = f;
    return 0;
}

/* See cold_util.h. */
int cu_teardown(void **state)
{
    cu_fixture *f = *state;
    cu_rmrf(f->dir);
    free(f->dir);
    free(f);
    return 0;
}

/* See cold_util.h. */
int cu_damage_env(const char *dir)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/data.mdb", dir);
    FILE *fp = fopen(path, "r+b");
    if (fp == NULL)
        return -1;
    uint8_t junk[8192];
    for (size_t i = 0; i < sizeof junk; i++)
        junk[i] = (uint8_t)(i * 131u + 7u);
    size_t n = fwrite(junk, 1, sizeof junk, fp);
    return fclose(fp) == 0 && n == sizeof junk ? 0 : -1;
}
