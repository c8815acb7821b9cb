/*
 * tests/daemon/fault/store_alloc_fault_test.c - allocation-failure injection
 * into the store (the store/ sources), the daemon's core data structure.
 *
 * The program is linked with -Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc,
 * --wrap=strdup, so every allocation the store's objects make goes through
 * the wrappers below (libc-internal allocations do not). Run N (N = 1, 2, ...)
 * opens a store and drives a fixed scenario - sessions, alloc + write +
 * commit with eviction through an evict hook, fetch, lookup, release, delete,
 * evict, list, info, abort, add_slab, reap - with the N-th allocation failing.
 * The loop ends with the first run in which no failure was injected, so every
 * allocation the scenario reaches has failed once.
 *
 * After each run (injection off) the store must be consistent:
 *  - every call returned 0 or a VKV_E* code;
 *  - after closing every session: no active leases, no pinned pages, no
 *    WRITING entries; pages_free + pages held by listed entries == total;
 *  - lookups still answer; after evicting everything the whole capacity can
 *    be allocated and committed (no leaked pages);
 *  - vkvs_close frees everything (ASan builds: LeakSanitizer checks).
 * Exit 0 on success, 1 with a message on the first violation.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "store/store.h"
#include "vkv/error.h"

/* ---- the injectable allocator --------------------------------------------- */

void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t m);
void *__real_realloc(void *p, size_t n);
char *__real_strdup(const char *s);
void *__wrap_malloc(size_t n);
void *__wrap_calloc(size_t n, size_t m);
void *__wrap_realloc(void *p, size_t n);
char *__wrap_strdup(const char *s);

static long g_fail_at; /* 1-based allocation number to fail; 0 = never */
static long g_count;   /* allocations seen since arming */
static bool g_injected;

/* True when this allocation is the one to fail. */
static bool should_fail(void)
{
    if (g_fail_at <= 0)
        return false;
    if (++g_count == g_fail_at) {
        g_injected = true;
        return true;
    }
    return false;
}

/* Wrappers: same contracts as the libc functions, failing on schedule. */
void *__wrap_malloc(size_t n)
{
    return should_fail() ? NULL : __real_malloc(n);
}

void *__wrap_calloc(size_t n, size_t m)
{
    return should_fail() ? NULL : __real_calloc(n, m);
}

void *__wrap_realloc(void *p, size_t n)
{
    return should_fail() ? NULL : __real_realloc(p, n);
}

char *__wrap_strdup(const char *s)
{
    return should_fail() ? NULL : __real_strdup(s);
}

/* ---- scenario -------------------------------------------------------------- */

#define PAGE     4096u
#define FAKE_PID 999999 /* session B's "process": reported dead by alive() */

static uint64_t g_now = 1000;
static int g_bad;         /* calls that returned something outside VKV_E* */
static const char *g_run; /* label for messages */

/* Fake clock for the store. */
static uint64_t clock_ms(void *arg)
{
    (void)arg;
    return g_now;
}

/* Reap callback: only our own pid is alive. */
static bool alive(void *arg, pid_t pid)
{
    (void)arg;
    return pid == getpid();
}

/* Evict hook: copies the victim like the cold tier would (allocating, so the
 * hook's own failure path is exercised too). */
static int evict_hook(void *arg, vkvs_store *st, const vkvs_victim *v)
{
    (void)arg;
    void *buf = malloc(v->size ? v->size : 1);
    if (!buf)
        return VKV_ENOMEM;
    int rc = vkvs_read(st, v->extents, v->nextents, 0, buf, v->size);
    free(buf);
    return rc;
}

/* Records a return code; anything but 0 / a VKV_E* code is a failure. */
static int chk(int rc, const char *what)
{
    if (rc > 0 || rc < VKV_ERR_MIN_) {
        fprintf(stderr, "%s: %s returned %d (not a VKV_E* code)\n", g_run, what, rc);
        g_bad++;
    }
    return rc;
}

/* Key i of the test (distinct bytes). */
static vkv_key key(uint32_t i)
{
    vkv_key k;
    for (int b = 0; b < 32; b++)
        k.b[b] = (uint8_t)(i * 131u + (uint32_t)b * 7u + 1u);
    return k;
}

/* Test config: 2 slabs of 16 pages (max 3), fake clock. */
static void test_config(vkvs_config *cfg)
{
    vkvs_config_default(cfg);
    cfg->page_size = PAGE;
    cfg->slab_size = 16 * PAGE;
    cfg->nslabs = 2;
    cfg->max_slabs = 3;
    cfg->lease_ttl_ms = 1000;
    cfg->session_ttl_ms = 5000;
    cfg->clock_ms = clock_ms;
}

/* Allocates, fills and commits key i (size bytes) in session sid. */
static void put(vkvs_store *st, uint64_t sid, uint32_t i, uint64_t size)
{
    vkv_key k = key(i);
    uint64_t lease = 0;
    vkvs_block b;
    if (chk(vkvs_alloc(st, sid, &k, size, &lease, &b), "alloc") != 0)
        return;
    uint8_t chunk[PAGE];
    memset(chunk, (int)i, sizeof chunk);
    for (uint64_t off = 0; off < size; off += PAGE) {
        size_t n = size - off < PAGE ? (size_t)(size - off) : PAGE;
        if (chk(vkvs_write(st, b.extents, b.nextents, off, chunk, n), "write") != 0)
            break;
    }
    chk(vkvs_commit(st, sid, lease, NULL, NULL), "commit");
}

/* The fixed scenario. Sessions opened are returned for the check phase. */
static void scenario(vkvs_store *st, uint64_t *sa, uint64_t *sb, uint64_t *sadm)
{
    vkvs_hooks h = {evict_hook, NULL, NULL};
    vkvs_set_hooks(st, &h);
    chk(vkvs_session_open(st, "ns-a", getpid(), false, sa), "session_open a");
    chk(vkvs_session_open(st, "ns-b", FAKE_PID, false, sb), "session_open b");
    chk(vkvs_session_open(st, NULL, getpid(), true, sadm), "session_open admin");
    for (uint32_t i = 0; i < 12; i++) /* 12 x 4 pages > 32: eviction happens */
        put(st, *sa, i, 3 * PAGE + 100);
    vkv_key keys[12];
    for (uint32_t i = 0; i < 12; i++)
        keys[i] = key(i);
    vkvs_block blocks[12];
    vkvs_fetch_result fr = {0};
    chk(vkvs_fetch(st, *sa, keys + 8, 4, blocks, &fr), "fetch");
    size_t prefix = 0, ncold = 0;
    chk(vkvs_lookup(st, *sa, keys, 12, &prefix, &ncold), "lookup a");
    chk(vkvs_lookup(st, *sb, keys + 8, 4, &prefix, &ncold), "lookup b");
    if (*sb && prefix != 0) {
        fprintf(stderr, "%s: namespace b sees %zu keys of namespace a\n", g_run, prefix);
        g_bad++;
    }
    vkv_key kb = key(100);
    uint64_t lease_b = 0;
    vkvs_block bb;
    chk(vkvs_alloc(st, *sb, &kb, 8 * PAGE, &lease_b, &bb), "alloc b (left WRITING)");
    uint32_t slab_id;
    chk(vkvs_add_slab(st, &slab_id), "add_slab");
    put(st, *sa, 20, 10 * PAGE); /* multi-extent after fragmentation */
    if (fr.lease)
        chk(vkvs_release(st, *sa, &fr.lease, 1, NULL), "release");
    chk(vkvs_delete(st, *sa, NULL, keys + 8, 2, NULL), "delete");
    chk(vkvs_evict(st, *sa, NULL, keys + 10, 1, true, NULL), "evict key");
    vkvs_info info[8];
    size_t nout = 0;
    uint64_t cursor = 0, next = 0;
    for (int guard = 0; guard < 100; guard++) {
        if (chk(vkvs_list(st, *sadm, NULL, cursor, 8, info, &nout, &next), "list") != 0 ||
            next == 0)
            break;
        cursor = next;
    }
    chk(vkvs_list(st, *sa, "ns-b", 0, 8, info, &nout, &next), "list other ns");
    vkvs_info one;
    int rc = chk(vkvs_info_get(st, *sa, NULL, &keys[11], &one), "info");
    (void)rc;
    vkv_key ka = key(200);
    uint64_t lease_a = 0;
    vkvs_block ba;
    if (chk(vkvs_alloc(st, *sa, &ka, PAGE, &lease_a, &ba), "alloc to abort") == 0)
        chk(vkvs_abort(st, *sa, lease_a), "abort");
    chk(vkvs_evict(st, *sadm, NULL, NULL, 0, true, NULL), "evict all to cold");
    put(st, *sa, 21, 2 * PAGE);
    g_now += 2000; /* leases expire; session b's pid is dead */
    int reaped = vkvs_reap(st, g_now, alive, NULL);
    if (reaped < 0)
        chk(reaped, "reap");
    vkvs_stats s;
    vkvs_stats_get(st, &s);
}

/* Consistency checks after a run (injection off). Returns violations. */
static int check_consistent(vkvs_store *st, uint64_t sa, uint64_t sb, uint64_t sadm)
{
    int bad = 0;
#define EXPECT(c, ...)                                                                             \
    do {                                                                                           \
        if (!(c)) {                                                                                \
            fprintf(stderr, "%s: %s: ", g_run, #c);                                                \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fputc('\n', stderr);                                                                   \
            bad++;                                                                                 \
        }                                                                                          \
    } while (0)
    if (sa)
        vkvs_session_close(st, sa);
    if (sb)
        vkvs_session_close(st, sb); /* may be reaped already: ESESSION is fine */
    if (sadm)
        vkvs_session_close(st, sadm);
    vkvs_stats s;
    vkvs_stats_get(st, &s);
    EXPECT(s.leases_active == 0, "%llu", (unsigned long long)s.leases_active);
    EXPECT(s.pages_pinned == 0, "%llu", (unsigned long long)s.pages_pinned);
    EXPECT(s.entries_writing == 0, "%llu", (unsigned long long)s.entries_writing);
    EXPECT(s.entries_restoring == 0, "%llu", (unsigned long long)s.entries_restoring);
    EXPECT(s.bytes_capacity == s.pages_total * PAGE, "capacity");
    EXPECT(s.bytes_free == s.pages_free * PAGE, "free bytes");
    EXPECT(s.pages_total == (uint64_t)vkvs_slab_count(st) * 16, "pages_total %llu",
           (unsigned long long)s.pages_total);

    uint64_t adm = 0, used_pages = 0, ready = 0, cold = 0;
    EXPECT(vkvs_session_open(st, NULL, getpid(), true, &adm) == 0, "admin session");
    uint64_t cursor = 0, next = 0;
    vkvs_info info[16];
    size_t nout = 0;
    for (int guard = 0; guard < 1000; guard++) {
        if (vkvs_list(st, adm, NULL, cursor, 16, info, &nout, &next) != 0) {
            EXPECT(0, "list failed");
            break;
        }
        for (size_t i = 0; i < nout; i++) {
            for (uint32_t e = 0; e < info[i].nextents; e++)
                used_pages += info[i].extents[e].npages;
            ready += info[i].state == VKVS_READY;
            cold += info[i].state == VKVS_COLD;
        }
        if (next == 0)
            break;
        cursor = next;
    }
    EXPECT(s.pages_free + used_pages == s.pages_total, "free %llu + used %llu != total %llu",
           (unsigned long long)s.pages_free, (unsigned long long)used_pages,
           (unsigned long long)s.pages_total);
    EXPECT(ready == s.entries_ready, "listed ready %llu, stats %llu", (unsigned long long)ready,
           (unsigned long long)s.entries_ready);
    EXPECT(cold == s.entries_cold, "listed cold %llu, stats %llu", (unsigned long long)cold,
           (unsigned long long)s.entries_cold);

    /* Lookups answer; then drop everything and use the whole capacity. */
    uint64_t sid = 0;
    EXPECT(vkvs_session_open(st, "ns-a", getpid(), false, &sid) == 0, "session");
    vkv_key keys[12];
    for (uint32_t i = 0; i < 12; i++)
        keys[i] = key(i);
    size_t prefix = 99, ncold = 99;
    EXPECT(vkvs_lookup(st, sid, keys, 12, &prefix, &ncold) == 0 && prefix <= 12 && ncold <= prefix,
           "lookup");
    size_t nev = 0;
    EXPECT(vkvs_evict(st, adm, NULL, NULL, 0, false, &nev) == 0, "evict all");
    vkvs_stats_get(st, &s);
    EXPECT(s.pages_free == s.pages_total, "pages leaked: %llu of %llu free",
           (unsigned long long)s.pages_free, (unsigned long long)s.pages_total);
    vkv_key big = key(999);
    uint64_t lease = 0;
    vkvs_block b;
    int rc = vkvs_alloc(st, sid, &big, s.pages_total * PAGE, &lease, &b);
    EXPECT(rc == 0, "whole-capacity alloc: %s", vkv_strerror(rc));
    if (rc == 0)
        EXPECT(vkvs_commit(st, sid, lease, NULL, NULL) == 0, "commit");
    vkvs_session_close(st, sid);
    vkvs_session_close(st, adm);
    return bad;
#undef EXPECT
}

int main(void)
{
    int failures = 0;
    long n;
    for (n = 1;; n++) {
        char label[64];
        snprintf(label, sizeof label, "fail-at %ld", n);
        g_run = label;
        g_now = 1000;
        g_bad = 0;
        g_injected = false;
        g_count = 0;
        g_fail_at = n;
        vkvs_config cfg;
        test_config(&cfg);
        vkvs_store *st = NULL;
        int rc = vkvs_open(&cfg, &st);
        if (rc != 0) {
            g_fail_at = 0;
            if (!g_injected || st != NULL) {
                fprintf(stderr, "%s: open failed without injection (%d) or set *out\n", label, rc);
                return 1;
            }
            if (rc != VKV_ENOMEM) {
                fprintf(stderr, "%s: open failed with %s, expected VKV_ENOMEM\n", label,
                        vkv_strerror(rc));
                failures++;
            }
            continue;
        }
        uint64_t sa = 0, sb = 0, sadm = 0;
        scenario(st, &sa, &sb, &sadm);
        bool injected = g_injected;
        g_fail_at = 0; /* the checks run without injection */
        int bad = g_bad + check_consistent(st, sa, sb, sadm);
        vkvs_close(st);
        if (bad)
            failures++;
        if (!injected)
            break;
        if (n > 100000) {
            fprintf(stderr, "runaway schedule\n");
            return 1;
        }
    }
    printf("store allocation fault injection: %ld runs (%ld allocation sites reached), "
           "%d failing\n",
           n, n - 1, failures);
    return failures ? 1 : 0;
}
