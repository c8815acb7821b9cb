/* tests/cold/cold_test.c - the LMDB cold tier against real LMDB files:
 * round trips, persistence, the byte bound, corruption, map and disk
 * limits, unusable directories, group commit. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <lmdb.h>

#include "cold/cold.h"
#include "cold_util.h"
#include "common/log.h"
#include "vkv/error.h"

/* Opens the cold tier in `dir` with the given bound and piece size. */
static vkvs_cold *open_cold(const char *dir, uint64_t max_bytes, uint32_t piece)
{
    vkvs_cold_config cfg;
    vkvs_cold_config_default(&cfg);
    cfg.dir = dir;
    cfg.max_bytes = max_bytes;
    cfg.piece_size = piece;
    cfg.sync_interval_ms = 50;
    vkvs_cold *c = NULL;
    char err[256];
    int rc = vkvs_cold_open(&cfg, &c, err, sizeof err);
    if (rc != 0)
        fprintf(stderr, "open failed: %s (%s)\n", vkv_strerror(rc), err);
    assert_int_equal(rc, 0);
    assert_non_null(c);
    return c;
}

/* Restores (ns, key) and asserts it is exactly payload(key, len). */
static void expect_restore(vkvs_cold *c, const char *ns, const vkv_key *k, size_t len)
{
    uint8_t *buf = NULL;
    size_t got = 0;
    int rc = cu_restore_sync(c, ns, k, len + 17, 900, &buf, &got);
    assert_int_equal(rc, 0);
    assert_int_equal(got, len);
    assert_true(cu_check(k, buf, len));
    free(buf);
}

/* Asserts (ns, key) is absent (restore and lookup say not found). */
static void expect_absent(vkvs_cold *c, const char *ns, const vkv_key *k)
{
    vkvs_cold_entry_info info;
    assert_int_equal(vkvs_cold_lookup(c, ns, k, &info), VKV_ENOTFOUND);
    uint8_t *buf = NULL;
    size_t got = 0;
    assert_int_equal(cu_restore_sync(c, ns, k, 16, 901, &buf, &got), VKV_ENOTFOUND);
}

static const size_t sizes[] = {1,        4095,           262144,  262145,
                               1u << 20, (1u << 20) + 1, 2600000, (11u << 20) + 3};
#define NSIZES (sizeof sizes / sizeof sizes[0])

/* Spill then restore returns the same bytes, for sizes around the piece
 * size and above 10 MB, with both piece sizes, and into a split dst. */
static void cold_spill_then_restore_is_bit_identical(void **state)
{
    cu_fixture *f = *state;
    const uint32_t pieces[] = {256u << 10, 1u << 20};
    for (int p = 0; p < 2; p++) {
        vkvs_cold *c = open_cold(f->dir, 256u << 20, pieces[p]);
        for (size_t i = 0; i < NSIZES; i++) {
            vkv_key k;
            cu_key(&k, (uint64_t)p, i);
            assert_int_equal(cu_spill_sync(c, "model-a", &k, sizes[i], i + 1), 0);
        }
        for (size_t i = 0; i < NSIZES; i++) {
            vkv_key k;
            cu_key(&k, (uint64_t)p, i);
            expect_restore(c, "model-a", &k, sizes[i]);
            vkvs_cold_entry_info info;
            assert_int_equal(vkvs_cold_lookup(c, "model-a", &k, &info), 0);
            assert_int_equal(info.size, sizes[i]);
            assert_int_equal(info.piece_size, pieces[p]);
            assert_int_equal(info.pieces, (sizes[i] + pieces[p] - 1) / pieces[p]);
        }
        /* a dst split into three uneven iovecs */
        vkv_key k;
        cu_key(&k, (uint64_t)p, NSIZES - 2);
        size_t len = sizes[NSIZES - 2];
        uint8_t *b = malloc(len);
        assert_non_null(b);
        struct iovec iov[3] = {{b, 1000}, {b + 1000, 700001}, {b + 701001, len - 701001}};
        assert_int_equal(vkvs_cold_restore(c, "model-a", &k, iov, 3, 77), 0);
        vkvs_cold_completion cp;
        assert_int_equal(cu_wait(c, VKVS_COLD_OP_RESTORE, 77, &cp), 0);
        assert_int_equal(cp.status, 0);
        assert_true(cu_check(&k, b, len));
        free(b);

        vkvs_cold_stats st;
        vkvs_cold_stats_get(c, &st);
        assert_int_equal(st.entries, NSIZES);
        assert_int_equal(st.spills, NSIZES);
        assert_int_equal(st.restores, NSIZES + 1);
        assert_int_equal(st.checksum_failures, 0);
        assert_int_equal(vkvs_cold_close(c), 0);
        cu_rmrf(f->dir);
    }
}

/* One foreach visit: records what was listed. */
typedef struct listing {
    int n;
    int seen[64];
    uint64_t size[64];
    int bad;
} listing;

/* foreach callback: maps a listed entry back to its index. */
static int list_cb(void *ctx, const vkvs_cold_entry_info *e)
{
    listing *l = ctx;
    uint64_t series, idx;
    if (cu_key_parse(&e->key, &series, &idx) != 0 || idx >= 32) {
        l->bad++;
        return 0;
    }
    int slot = (int)idx + (strcmp(e->ns, "") == 0 ? 32 : 0);
    l->seen[slot]++;
    l->size[slot] = e->size;
    l->n++;
    return 0;
}

/* Entries survive close and reopen; foreach lists them all, namespaces
 * keep equal keys apart. */
static void cold_entries_persist_across_close_and_reopen(void **state)
{
    cu_fixture *f = *state;
    vkvs_cold *c = open_cold(f->dir, 256u << 20, 256u << 10);
    for (uint64_t i = 0; i < 20; i++) {
        vkv_key k;
        cu_key(&k, 1, i);
        assert_int_equal(cu_spill_sync(c, "ns-one", &k, 100000 + i * 7777, i + 1), 0);
        if (i < 5) /* same key, other (empty) namespace, other size */
            assert_int_equal(cu_spill_sync(c, "", &k, 5000 + i, 100 + i), 0);
    }
    assert_int_equal(vkvs_cold_close(c), 0);

    c = open_cold(f->dir, 256u << 20, 1u << 20);
    listing l;
    memset(&l, 0, sizeof l);
    assert_int_equal(vkvs_cold_foreach(c, list_cb, &l), 0);
    assert_int_equal(l.n, 25);
    assert_int_equal(l.bad, 0);
    for (uint64_t i = 0; i < 20; i++) {
        assert_int_equal(l.seen[i], 1);
        assert_int_equal(l.size[i], 100000 + i * 7777);
        vkv_key k;
        cu_key(&k, 1, i);
        expect_restore(c, "ns-one", &k, 100000 + i * 7777);
        if (i < 5) {
            assert_int_equal(l.size[32 + i], 5000 + i);
            expect_restore(c, "", &k, 5000 + i);
        }
    }
    vkvs_cold_stats st;
    vkvs_cold_stats_get(c, &st);
    assert_int_equal(st.entries, 25);
    assert_int_equal(vkvs_cold_close(c), 0);
}

/* Finds an EVICTED completion for (ns, key) in the side list. */
static int evicted(const char *ns, const vkv_key *k)
{
    for (int i = 0; i < cu_nside; i++)
        if (cu_side[i].op == VKVS_COLD_OP_EVICTED && strcmp(cu_side[i].ns, ns) == 0 &&
            memcmp(cu_side[i].key.b, k->b, 32) == 0)
            return 1;
    return 0;
}

/* Past max_bytes the writer evicts least recently used entries (a restore
 * refreshes an entry), posts EVICTED for each and keeps the newest. */
static void cold_bound_evicts_least_recently_used(void **state)
{
    cu_fixture *f = *state;
    const size_t mb = 1u << 20;
    vkvs_cold *c = open_cold(f->dir, 5 * mb, 256u << 10);
    vkv_key k[8];
    for (int i = 0; i < 8; i++)
        cu_key(&k[i], 2, (uint64_t)i);
    for (int i = 0; i < 5; i++)
        assert_int_equal(cu_spill_sync(c, "m", &k[i], mb, (uint64_t)i + 1), 0);
    assert_int_equal(cu_side_count(VKVS_COLD_OP_EVICTED), 0);
    expect_restore(c, "m", &k[0], mb); /* k0 becomes the most recent */
    for (int i = 5; i < 8; i++)
        assert_int_equal(cu_spill_sync(c, "m", &k[i], mb, (uint64_t)i + 1), 0);
    cu_drain(c);
    assert_int_equal(cu_side_count(VKVS_COLD_OP_EVICTED), 3);
    for (int i = 1; i <= 3; i++) {
        assert_true(evicted("m", &k[i]));
        expect_absent(c, "m", &k[i]);
    }
    expect_restore(c, "m", &k[0], mb);
    for (int i = 4; i < 8; i++)
        expect_restore(c, "m", &k[i], mb);
    vkvs_cold_stats st;
    vkvs_cold_stats_get(c, &st);
    assert_int_equal(st.evictions, 3);
    assert_int_equal(st.entries, 5);
    assert_true(st.bytes <= 5 * mb);
    /* a single spill larger than the bound is refused up front */
    void *big = malloc(6 * mb);
    assert_non_null(big);
    assert_int_equal(vkvs_cold_spill(c, "m", &k[0], big, 6 * mb, 99), VKV_ETOOBIG);
    free(big); /* still ours after an error return */
    assert_int_equal(vkvs_cold_close(c), 0);

    /* reopening with a lower bound trims right away */
    cu_nside = 0;
    c = open_cold(f->dir, 2 * mb, 256u << 10);
    assert_int_equal(vkvs_cold_flush_wait(c), 0);
    cu_drain(c);
    assert_int_equal(cu_side_count(VKVS_COLD_OP_EVICTED), 3);
    vkvs_cold_stats_get(c, &st);
    assert_int_equal(st.entries, 2);
    expect_restore(c, "m", &k[7], mb);
    assert_int_equal(vkvs_cold_close(c), 0);
}

/* Flips 8 bytes of data.mdb where payload(key) bytes [off, off+64) lie;
 * asserts the pattern is found exactly once. */
static void corrupt_payload(const char *dir, const vkv_key *k, size_t len, size_t off)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/data.mdb", dir);
    int fd = open(path, O_RDWR);
    assert_true(fd >= 0);
    struct stat sb;
    assert_int_equal(fstat(fd, &sb), 0);
    uint8_t *file = malloc((size_t)sb.st_size);
    assert_non_null(file);
    assert_int_equal(pread(fd, file, (size_t)sb.st_size, 0), sb.st_size);
    uint8_t *pl = cu_payload(k, len);
    uint8_t *hit = memmem(file, (size_t)sb.st_size, pl + off, 64);
    assert_non_null(hit);
    assert_null(memmem(hit + 1, (size_t)sb.st_size - (size_t)(hit + 1 - file), pl + off, 64));
    off_t at = (off_t)(hit - file) + 20;
    uint8_t flip[8];
    for (int i = 0; i < 8; i++)
        flip[i] = (uint8_t)(hit[20 + i] ^ 0x5a);
    assert_int_equal(pwrite(fd, flip, 8, at), 8);
    assert_int_equal(fsync(fd), 0);
    close(fd);
    free(pl);
    free(file);
}

/* verify progress callback: counts calls, checks monotonic progress. */
static int progress_cb(void *ctx, uint64_t done, uint64_t total, uint64_t db, uint64_t tb)
{
    uint64_t *calls = ctx;
    assert_true(done <= total);
    assert_true(db <= tb);
    (*calls)++;
    return 0;
}

/* Writes two malformed rows into the meta DB of the (closed) env in dir,
 * straight through LMDB: one whose key is 10 bytes long with a well-sized
 * record of `size` bytes, and one with a well-formed key (ns id 1, `key`)
 * but an 8-byte value. */
static void forge_malformed_meta_rows(const char *dir, const vkv_key *key, uint64_t size)
{
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi;
    assert_int_equal(mdb_env_create(&env), 0);
    assert_int_equal(mdb_env_set_maxdbs(env, 8), 0);
    assert_int_equal(mdb_env_open(env, dir, 0, 0600), 0);
    assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
    assert_int_equal(mdb_dbi_open(txn, "meta", 0, &dbi), 0);
    uint8_t rec[72] = {0};
    uint32_t version = 1, piece = 256u << 10;
    memcpy(rec, &version, 4);
    memcpy(rec + 4, &piece, 4);
    memcpy(rec + 8, &size, 8); /* the record's size field */
    MDB_val k1 = {10, "short-key!"}, v1 = {sizeof rec, rec};
    assert_int_equal(mdb_put(txn, dbi, &k1, &v1, 0), 0);
    uint8_t kb[4 + VKV_KEY_LEN] = {0, 0, 0, 1};
    memcpy(kb + 4, key->b, VKV_KEY_LEN);
    uint64_t shortval = 42;
    MDB_val k2 = {sizeof kb, kb}, v2 = {sizeof shortval, &shortval};
    assert_int_equal(mdb_put(txn, dbi, &k2, &v2, 0), 0);
    assert_int_equal(mdb_txn_commit(txn), 0);
    mdb_env_close(env);
}

/* foreach callback: counts entries. */
static int count_cb(void *ctx, const vkvs_cold_entry_info *e)
{
    (*(int *)ctx)++;
    return 0;
}

/* Metadata rows that break the record rule (a key of the wrong length, a
 * value that is not one record) are judged alike by the open-time scan
 * (not counted), foreach (skipped) and verify (reported corrupt, removed
 * with VKVS_COLD_VERIFY_DROP); the good entries stay served. */
static void cold_malformed_metadata_rows_follow_one_rule(void **state)
{
    cu_fixture *f = *state;
    const size_t len = 50000;
    vkvs_cold *c = open_cold(f->dir, 64u << 20, 256u << 10);
    vkv_key k[3];
    for (int i = 0; i < 3; i++)
        cu_key(&k[i], 9, (uint64_t)i);
    assert_int_equal(cu_spill_sync(c, "m", &k[0], len, 1), 0);
    assert_int_equal(cu_spill_sync(c, "m", &k[1], len, 2), 0);
    assert_int_equal(vkvs_cold_close(c), 0);
    forge_malformed_meta_rows(f->dir, &k[2], 1000);

    c = open_cold(f->dir, 64u << 20, 256u << 10);
    vkvs_cold_stats st;
    vkvs_cold_stats_get(c, &st);
    assert_int_equal(st.entries, 2);
    assert_int_equal(st.bytes, 2 * len);
    int n = 0;
    assert_int_equal(vkvs_cold_foreach(c, count_cb, &n), 0);
    assert_int_equal(n, 2);
    vkvs_cold_entry_info info;
    assert_int_equal(vkvs_cold_lookup(c, "m", &k[2], &info), VKV_EIO);

    vkvs_cold_verify_report r;
    assert_int_equal(vkvs_cold_verify(c, 0, NULL, NULL, &r), 0);
    assert_int_equal(r.entries, 4);
    assert_int_equal(r.corrupt, 2);
    assert_int_equal(r.dropped, 0);
    assert_int_equal(vkvs_cold_verify(c, VKVS_COLD_VERIFY_DROP, NULL, NULL, &r), 0);
    assert_int_equal(r.corrupt, 2);
    assert_int_equal(r.dropped, 2);
    assert_int_equal(vkvs_cold_verify(c, 0, NULL, NULL, &r), 0);
    assert_int_equal(r.entries, 2);
    assert_int_equal(r.corrupt, 0);
    expect_absent(c, "m", &k[2]);
    expect_restore(c, "m", &k[0], len);
    expect_restore(c, "m", &k[1], len);
    vkvs_cold_stats_get(c, &st);
    assert_int_equal(st.entries, 2);
    assert_int_equal(st.checksum_failures, 4);
    assert_int_equal(vkvs_cold_close(c), 0);
}

/* Bytes flipped inside a stored payload: verify reports the entries,
 * restore answers VKV_ECHECKSUM and drops the entry, never serves it. */
static void cold_corrupt_payload_is_detected_and_dropped(void **state)
{
    cu_fixture *f = *state;
    const size_t len = 600000;
    vkvs_cold *c = open_cold(f->dir, 64u << 20, 256u << 10);
    vkv_key k[3];
    for (int i = 0; i < 3; i++) {
        cu_key(&k[i], 3, (uint64_t)i);
        assert_int_equal(cu_spill_sync(c, "m", &k[i], len, (uint64_t)i + 1), 0);
    }
    assert_int_equal(vkvs_cold_close(c), 0);
    corrupt_payload(f->dir, &k[0], len, 300000);
    corrupt_payload(f->dir, &k[1], len, 590000);

    c = open_cold(f->dir, 64u << 20, 256u << 10);
    vkvs_cold_verify_report r;
    uint64_t calls = 0;
    assert_int_equal(vkvs_cold_verify(c, 0, progress_cb, &calls, &r), 0);
    assert_int_equal(r.entries, 3);
    assert_int_equal(r.corrupt, 2);
    assert_int_equal(r.dropped, 0);
    assert_int_equal(calls, 3);

    uint8_t *buf = NULL;
    size_t got = 0;
    assert_int_equal(cu_restore_sync(c, "m", &k[0], len, 10, &buf, &got), VKV_ECHECKSUM);
    assert_null(buf);
    assert_int_equal(vkvs_cold_flush_wait(c), 0);
    cu_drain(c);
    assert_int_equal(cu_side_count(VKVS_COLD_OP_DROPPED), 1);
    expect_absent(c, "m", &k[0]);

    assert_int_equal(vkvs_cold_verify(c, VKVS_COLD_VERIFY_DROP, NULL, NULL, &r), 0);
    assert_int_equal(r.entries, 2);
    assert_int_equal(r.corrupt, 1);
    assert_int_equal(r.dropped, 1);
    expect_absent(c, "m", &k[1]);
    expect_restore(c, "m", &k[2], len);
    assert_int_equal(vkvs_cold_verify(c, 0, NULL, NULL, &r), 0);
    assert_int_equal(r.entries, 1);
    assert_int_equal(r.corrupt, 0);

    vkvs_cold_stats st;
    vkvs_cold_stats_get(c, &st);
    /* counted per detection: verify x2, restore, verify-with-drop */
    assert_int_equal(st.checksum_failures, 4);
    assert_int_equal(st.entries, 1);
    assert_int_equal(vkvs_cold_close(c), 0);
}

/* The map grows on MDB_MAP_FULL up to its cap; at the cap a spill fails
 * with VKV_ENOSPC, nothing half-written, earlier entries still restore. */
static void cold_map_full_grows_then_refuses_cleanly(void **state)
{
    cu_fixture *f = *state;
    vkvs_cold_config cfg;
    vkvs_cold_config_default(&cfg);
    cfg.dir = f->dir;
    cfg.max_bytes = 256u << 20;
    cfg.piece_size = 256u << 10;
    cfg.map_initial_bytes = 2u << 20;
    cfg.map_cap_bytes = 12u << 20;
    vkvs_cold *c = NULL;
    assert_int_equal(vkvs_cold_open(&cfg, &c, NULL, 0), 0);
    vkv_key k[4];
    for (int i = 0; i < 4; i++)
        cu_key(&k[i], 4, (uint64_t)i);
    assert_int_equal(cu_spill_sync(c, "m", &k[0], 3u << 20, 1), 0);
    assert_int_equal(cu_spill_sync(c, "m", &k[1], 3u << 20, 2), 0);
    vkvs_cold_stats st;
    vkvs_cold_stats_get(c, &st);
    assert_true(st.map_grows >= 1);
    assert_true(st.map_size > (2u << 20));
    assert_int_equal(cu_spill_sync(c, "m", &k[2], 9u << 20, 3), VKV_ENOSPC);
    vkvs_cold_stats_get(c, &st);
    assert_int_equal(st.map_full, 1);
    assert_int_equal(st.spill_errors, 1);
    assert_int_equal(st.entries, 2);
    assert_true(st.map_size <= (12u << 20));
    assert_true(strstr(st.last_error, "map full") != NULL);
    expect_restore(c, "m", &k[0], 3u << 20);
    expect_restore(c, "m", &k[1], 3u << 20);
    expect_absent(c, "m", &k[2]);
    /* a small one still fits afterwards */
    assert_int_equal(cu_spill_sync(c, "m", &k[3], 100000, 4), 0);
    assert_int_equal(vkvs_cold_close(c), 0);
    c = open_cold(f->dir, 256u << 20, 256u << 10);
    expect_absent(c, "m", &k[2]);
    expect_restore(c, "m", &k[3], 100000);
    assert_int_equal(vkvs_cold_close(c), 0);
}

/* Tries to open at `dir`; asserts failure with a message and no handle. */
static int expect_open_fails(const char *dir)
{
    vkvs_cold_config cfg;
    vkvs_cold_config_default(&cfg);
    cfg.dir = dir;
    vkvs_cold *c = (vkvs_cold *)&cfg; /* must be reset to NULL */
    char err[256] = "untouched";
    int rc = vkvs_cold_open(&cfg, &c, err, sizeof err);
    assert_true(rc < 0);
    assert_null(c);
    assert_true(strlen(err) > 10);
    assert_string_not_equal(err, "untouched");
    fprintf(stderr, "  expected failure: %s: %s\n", vkv_errname(rc), err);
    return rc;
}

/* Counts this process's threads named `name_prefix`* and checks each has
 * scheduling policy `policy` (/proc stat field 41) and, unless SCHED_IDLE,
 * nice value `nice` (field 19). Returns how many matched the name. */
static int count_threads(const char *name_prefix, int policy, int nice)
{
    DIR *d = opendir("/proc/self/task");
    assert_non_null(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        char path[320], comm[32] = "", buf[1024];
        snprintf(path, sizeof path, "/proc/self/task/%s/comm", e->d_name);
        FILE *f = fopen(path, "r");
        if (!f)
            continue;
        if (!fgets(comm, sizeof comm, f))
            comm[0] = '\0';
        fclose(f);
        if (strncmp(comm, name_prefix, strlen(name_prefix)) != 0)
            continue;
        snprintf(path, sizeof path, "/proc/self/task/%s/stat", e->d_name);
        f = fopen(path, "r");
        assert_non_null(f);
        assert_non_null(fgets(buf, sizeof buf, f));
        fclose(f);
        char *p = strrchr(buf, ')') + 2; /* field 3 */
        long v[40];
        int k = 0;
        for (char *tok = strtok(p, " "); tok && k < 40; tok = strtok(NULL, " "))
            v[k++] = strtol(tok, NULL, 10);
        assert_true(k >= 39);
        assert_int_equal(v[41 - 3], policy);
        if (policy != 5)
            assert_int_equal(v[19 - 3], nice);
        n++;
    }
    closedir(d);
    return n;
}

/* thread_policy and thread_nice: the writer and every reader are named and
 * scheduled as configured by the time open returns (BATCH at nice 5, then
 * IDLE), and a policy out of range is refused at open. */
static void cold_threads_take_the_configured_policy(void **state)
{
    cu_fixture *f = *state;
    static const int pol[] = {VKVS_COLD_SCHED_BATCH, VKVS_COLD_SCHED_IDLE};
    static const int want[] = {3, 5}; /* SCHED_BATCH, SCHED_IDLE */
    for (int i = 0; i < 2; i++) {
        vkvs_cold_config cfg;
        vkvs_cold_config_default(&cfg);
        cfg.dir = f->dir;
        cfg.reader_threads = 3;
        cfg.thread_nice = 5;
        cfg.thread_policy = pol[i];
        vkvs_cold *c = NULL;
        assert_int_equal(vkvs_cold_open(&cfg, &c, NULL, 0), 0);
        assert_int_equal(count_threads("vkv-cold-w", want[i], 5), 1);
        assert_int_equal(count_threads("vkv-cold-r", want[i], 5), 3);
        assert_int_equal(vkvs_cold_close(c), 0);
        assert_int_equal(count_threads("vkv-cold-", 0, 0), 0); /* all joined */
    }
    vkvs_cold_config cfg;
    vkvs_cold_config_default(&cfg);
    cfg.dir = f->dir;
    cfg.thread_policy = 3;
    vkvs_cold *c = NULL;
    assert_int_equal(vkvs_cold_open(&cfg, &c, NULL, 0), VKV_EINVAL);
    assert_null(c);
}

/* A file in place of the directory, a path under /proc, a second process
 * on the same directory and (as non-root) a read-only directory all fail
 * at open with a clear error. */
static void cold_open_fails_cleanly_on_unusable_directory(void **state)
{
    cu_fixture *f = *state;
    char path[4200];
    snprintf(path, sizeof path, "%s/not-a-dir", f->dir);
    int fd = open(path, O_CREAT | O_WRONLY, 0600);
    assert_true(fd >= 0);
    close(fd);
    assert_int_equal(expect_open_fails(path), VKV_EINVAL);
    snprintf(path, sizeof path, "%s/not-a-dir/below", f->dir);
    assert_int_equal(expect_open_fails(path), VKV_EINVAL);
    expect_open_fails("/proc/self/vkv-cold-test");

    /* missing parents are created, mode 0700 */
    snprintf(path, sizeof path, "%s/a/b/c", f->dir);
    vkvs_cold *c = open_cold(path, 1u << 20, 256u << 10);
    struct stat sb;
    assert_int_equal(stat(path, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0700);

    /* a second open of the same directory (another process) is refused */
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        vkvs_cold_config cfg;
        vkvs_cold_config_default(&cfg);
        cfg.dir = path;
        vkvs_cold *c2 = NULL;
        _exit(vkvs_cold_open(&cfg, &c2, NULL, 0) == VKV_EBUSY && c2 == NULL ? 0 : 1);
    }
    int ws;
    assert_int_equal(waitpid(pid, &ws, 0), pid);
    assert_true(WIFEXITED(ws) && WEXITSTATUS(ws) == 0);
    assert_int_equal(vkvs_cold_close(c), 0);

    snprintf(path, sizeof path, "%s/ro", f->dir);
    assert_int_equal(mkdir(path, 0500), 0);
    if (geteuid() == 0) {
        fprintf(stderr, "  read-only directory case skipped: running as root, where mode 0500 "
                        "does not stop writes (the file-in-place and /proc cases cover it)\n");
    } else {
        snprintf(path, sizeof path, "%s/ro/sub", f->dir);
        assert_int_equal(expect_open_fails(path), VKV_EPERM);
        snprintf(path, sizeof path, "%s/ro", f->dir);
        assert_int_equal(expect_open_fails(path), VKV_EPERM);
    }
    chmod(path, 0700);
}

/* Child of the disk-full case: opens a tier of `shards` environments,
 * limits the file size (4 MiB past the largest data.mdb), spills until a
 * spill fails. Exit status: number of committed spills (< 100), or 100+ on
 * a failed check. */
static int disk_full_child(const char *dir, int shards)
{
    vkvs_cold_config cfg;
    vkvs_cold_config_default(&cfg);
    cfg.dir = dir;
    cfg.shards = shards;
    cfg.max_bytes = 1u << 30;
    cfg.piece_size = 256u << 10;
    vkvs_cold *c = NULL;
    if (vkvs_cold_open(&cfg, &c, NULL, 0) != 0)
        return 101;
    char path[4300];
    struct stat sb;
    off_t largest = 0;
    for (int k = 0; k < shards; k++) {
        if (shards == 1)
            snprintf(path, sizeof path, "%s/data.mdb", dir);
        else
            snprintf(path, sizeof path, "%s/shard-%d/data.mdb", dir, k);
        if (stat(path, &sb) != 0)
            return 102;
        largest = sb.st_size > largest ? sb.st_size : largest;
    }
    signal(SIGXFSZ, SIG_IGN);
    struct rlimit rl = {(rlim_t)largest + (4u << 20), (rlim_t)largest + (4u << 20)};
    if (setrlimit(RLIMIT_FSIZE, &rl) != 0)
        return 103;
    int committed = 0, failed = 0;
    for (uint64_t i = 0; i < 40 && !failed; i++) {
        vkv_key k;
        cu_key(&k, 5, i);
        int rc = cu_spill_sync(c, "m", &k, 1u << 20, i + 1);
        if (rc == 0)
            committed++;
        else if (rc == VKV_ENOSPC || rc == VKV_EIO)
            failed = 1;
        else
            return 104;
    }
    if (!failed || committed == 0)
        return 105;
    vkvs_cold_stats st;
    vkvs_cold_stats_get(c, &st);
    if (st.write_errors < 1 || st.enospc + st.eio < 1 || st.last_error[0] == 0 ||
        st.entries != (uint64_t)committed)
        return 106;
    for (int i = 0; i < committed; i++) { /* still serving */
        vkv_key k;
        cu_key(&k, 5, (uint64_t)i);
        uint8_t *buf;
        size_t got;
        if (cu_restore_sync(c, "m", &k, 1u << 20, 1000 + (uint64_t)i, &buf, &got) != 0 ||
            !cu_check(&k, buf, 1u << 20))
            return 107;
        free(buf);
    }
    vkvs_cold_close(c);
    return committed;
}

/* With the file size limited (as on a full disk), a spill fails with an
 * error completion, nothing half-written; after reopening every committed
 * entry restores and the failed one is absent. In a one-environment tier
 * and in a tier of 2 shards (where the spill that fails is the first to
 * outgrow its shard's file, and the other shard's entries stay whole). */
static void cold_disk_full_fails_spill_cleanly(void **state)
{
    cu_fixture *f = *state;
    for (int shards = 1; shards <= 2; shards++) {
        char dir[4200];
        snprintf(dir, sizeof dir, "%s/tier%d", f->dir, shards);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0)
            _exit(disk_full_child(dir, shards));
        int ws;
        assert_int_equal(waitpid(pid, &ws, 0), pid);
        assert_true(WIFEXITED(ws));
        int committed = WEXITSTATUS(ws);
        fprintf(stderr, "  %d shard(s): child committed %d spills before the disk-full error\n",
                shards, committed);
        assert_true(committed > 0 && committed < 100);
        vkvs_cold *c = open_cold(dir, 1u << 30, 256u << 10);
        vkvs_cold_stats st;
        vkvs_cold_stats_get(c, &st);
        assert_int_equal(st.shards, (uint64_t)shards);
        assert_int_equal(st.entries, (uint64_t)committed);
        for (int i = 0; i < committed; i++) {
            vkv_key k;
            cu_key(&k, 5, (uint64_t)i);
            expect_restore(c, "m", &k, 1u << 20);
        }
        vkv_key k;
        cu_key(&k, 5, (uint64_t)committed);
        expect_absent(c, "m", &k);
        vkvs_cold_verify_report r;
        assert_int_equal(vkvs_cold_verify(c, 0, NULL, NULL, &r), 0);
        assert_int_equal(r.corrupt, 0);
        assert_int_equal(r.entries, (uint64_t)committed);
        assert_int_equal(vkvs_cold_close(c), 0);
    }
}

/* Delete, replace, spill from iovecs, a too small destination and bad
 * arguments behave as documented. */
static void cold_delete_replace_and_argument_checks(void **state)
{
    cu_fixture *f = *state;
    vkvs_cold *c = open_cold(f->dir, 64u << 20, 256u << 10);
    vkv_key k;
    cu_key(&k, 6, 1);
    assert_int_equal(cu_spill_sync(c, "m", &k, 500000, 1), 0);
    assert_int_equal(cu_spill_sync(c, "m", &k, 700001, 2), 0); /* replace */
    expect_restore(c, "m", &k, 700001);
    vkvs_cold_stats st;
    vkvs_cold_stats_get(c, &st);
    assert_int_equal(st.entries, 1);
    assert_int_equal(st.bytes, 700001);

    uint8_t *buf;
    size_t got;
    assert_int_equal(cu_restore_sync(c, "m", &k, 700000, 3, &buf, &got), VKV_ETRUNC);
    assert_int_equal(cu_restore_sync(c, "other", &k, 700001, 4, &buf, &got), VKV_ENOTFOUND);

    assert_int_equal(vkvs_cold_delete(c, "m", &k, 5), 0);
    vkvs_cold_completion cp;
    assert_int_equal(cu_wait(c, VKVS_COLD_OP_DELETE, 5, &cp), 0);
    assert_int_equal(cp.status, 0);
    expect_absent(c, "m", &k);
    assert_int_equal(vkvs_cold_delete(c, "m", &k, 6), 0);
    assert_int_equal(cu_wait(c, VKVS_COLD_OP_DELETE, 6, &cp), 0);
    assert_int_equal(cp.status, VKV_ENOTFOUND);

    /* spill_iov gathers from caller memory */
    size_t len = 900000;
    uint8_t *src = cu_payload(&k, len);
    struct iovec iov[3] = {{src, 10}, {src + 10, 500000}, {src + 500010, len - 500010}};
    assert_int_equal(vkvs_cold_spill_iov(c, "m", &k, iov, 3, 7), 0);
    assert_int_equal(cu_wait(c, VKVS_COLD_OP_SPILL, 7, &cp), 0);
    assert_int_equal(cp.status, 0);
    assert_int_equal(cp.size, len);
    free(src);
    expect_restore(c, "m", &k, len);

    char longns[VKVS_COLD_NS_MAX + 2];
    memset(longns, 'x', sizeof longns - 1);
    longns[sizeof longns - 1] = 0;
    uint8_t one = 1;
    assert_int_equal(vkvs_cold_spill(c, longns, &k, &one, 1, 8), VKV_EINVAL);
    assert_int_equal(vkvs_cold_spill(c, "m", &k, &one, 0, 8), VKV_EINVAL);
    assert_int_equal(vkvs_cold_spill(c, NULL, &k, &one, 1, 8), VKV_EINVAL);
    longns[VKVS_COLD_NS_MAX] = 0; /* exactly the maximum is fine */
    assert_int_equal(cu_spill_sync(c, longns, &k, 3, 9), 0);
    expect_restore(c, longns, &k, 3);
    assert_int_equal(vkvs_cold_poll(c, &cp, 1), 0);
    assert_int_equal(vkvs_cold_close(c), 0);
}

/* ---- group commit ---------------------------------------------------------- */

/* A spill_check that holds the writer inside the check of the "gate"
 * namespace's spill until the test opens the gate (so the spills queued
 * meanwhile reach the writer as one run), and refuses every spill of the
 * "bad" namespace with VKV_ECHECKSUM. */
typedef struct gate {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int entered; /* the writer is inside the gate's check */
    int open;
} gate;

/* spill_check of the group tests (see gate). */
static int gate_check(void *arg, const char *ns, const vkv_key *key, const void *block, size_t len)
{
    gate *g = arg;
    (void)key;
    (void)block;
    (void)len;
    if (strcmp(ns, "bad") == 0)
        return VKV_ECHECKSUM;
    if (strcmp(ns, "gate") != 0)
        return 0;
    pthread_mutex_lock(&g->mu);
    g->entered = 1;
    pthread_cond_broadcast(&g->cv);
    while (!g->open)
        pthread_cond_wait(&g->cv, &g->mu);
    pthread_mutex_unlock(&g->mu);
    return 0;
}

/* Spills a small gate block (tag 1) and waits until the writer is held in
 * its check: everything queued before gate_open is then one run. */
static void gate_close(vkvs_cold *c, gate *g)
{
    vkv_key k;
    cu_key(&k, 30, 0);
    uint8_t *buf = cu_payload(&k, 4096);
    assert_non_null(buf);
    assert_int_equal(vkvs_cold_spill(c, "gate", &k, buf, 4096, 1), 0);
    pthread_mutex_lock(&g->mu);
    while (!g->entered)
        pthread_cond_wait(&g->cv, &g->mu);
    pthread_mutex_unlock(&g->mu);
}

/* Lets the writer go on past the gate's check. */
static void gate_open(gate *g)
{
    pthread_mutex_lock(&g->mu);
    g->open = 1;
    pthread_cond_broadcast(&g->cv);
    pthread_mutex_unlock(&g->mu);
}

/* Queues payload(key, len) as (ns, key) with `tag` (the tier owns it). */
static void spill_async(vkvs_cold *c, const char *ns, const vkv_key *k, size_t len, uint64_t tag)
{
    uint8_t *buf = cu_payload(k, len);
    assert_non_null(buf);
    assert_int_equal(vkvs_cold_spill(c, ns, k, buf, len, tag), 0);
}

/* Opens the cold tier of the group tests with the gate as spill_check. */
static vkvs_cold *open_gated(const char *dir, gate *g, uint64_t map_initial, uint64_t map_cap)
{
    vkvs_cold_config cfg;
    vkvs_cold_config_default(&cfg);
    cfg.dir = dir;
    cfg.max_bytes = 256u << 20;
    cfg.piece_size = 256u << 10;
    cfg.map_initial_bytes = map_initial;
    cfg.map_cap_bytes = map_cap;
    cfg.spill_check = gate_check;
    cfg.spill_check_arg = g;
    cfg.group_max_bytes = 64u << 20; /* every test group fits in one txn */
    vkvs_cold *c = NULL;
    assert_int_equal(vkvs_cold_open(&cfg, &c, NULL, 0), 0);
    return c;
}

/* Queues spills i = 0..n-1 of payload(k[i], len[i]) as (ns[i], k[i]),
 * tags 10 + i, behind the closed gate, opens it, and checks the gate's
 * spill stored and every member's status: `bad_status` for member `bad`,
 * 0 for the others. */
static void run_group(vkvs_cold *c, gate *g, const char *const *ns, const vkv_key *k,
                      const size_t *len, int n, int bad, int bad_status)
{
    for (int i = 0; i < n; i++)
        spill_async(c, ns[i], &k[i], len[i], 10 + (uint64_t)i);
    gate_open(g);
    vkvs_cold_completion cp;
    assert_int_equal(cu_wait(c, VKVS_COLD_OP_SPILL, 1, &cp), 0);
    assert_int_equal(cp.status, 0);
    for (int i = 0; i < n; i++) {
        assert_int_equal(cu_wait(c, VKVS_COLD_OP_SPILL, 10 + (uint64_t)i, &cp), 0);
        assert_int_equal(cp.status, i == bad ? bad_status : 0);
    }
}

/* Six spills queued behind each other are written in ONE txn; the one
 * whose check fails gets that status and nothing is written for it, its
 * neighbours are stored (a key spilled twice in the group keeps the later
 * payload), and every entry survives a reopen. */
static void cold_group_commit_keeps_each_spill_status(void **state)
{
    cu_fixture *f = *state;
    gate g = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0};
    vkvs_cold *c = open_gated(f->dir, &g, 0, 0);
    gate_close(c, &g);
    vkv_key k[6];
    size_t len[6] = {300000, 700001, 500000, 1u << 20, 123457, 65536};
    const char *ns[6] = {"m", "m", "bad", "m", "m", "n"};
    for (int i = 0; i < 6; i++)
        cu_key(&k[i], 31, (uint64_t)i);
    k[4] = k[1]; /* replaces k[1] inside the group */
    run_group(c, &g, ns, k, len, 6, 2, VKV_ECHECKSUM);
    vkvs_cold_stats st;
    vkvs_cold_stats_get(c, &st);
    assert_int_equal(st.spill_txns, 2); /* the gate's, then the group's */
    assert_int_equal(st.spills, 6);
    assert_int_equal(st.spill_errors, 1);
    assert_int_equal(st.entries, 5); /* gate, k0, k1 (with k4 payload), k3, k5 */
    assert_int_equal(st.bytes, 4096 + len[0] + len[4] + len[3] + len[5]);
    for (int pass = 0; pass < 2; pass++) {
        expect_restore(c, "m", &k[0], len[0]);
        expect_restore(c, "m", &k[1], len[4]);
        expect_restore(c, "m", &k[3], len[3]);
        expect_restore(c, "n", &k[5], len[5]);
        expect_absent(c, "bad", &k[2]);
        assert_int_equal(vkvs_cold_close(c), 0);
        if (pass == 0)
            c = open_gated(f->dir, &g, 0, 0);
    }
}

/* A group that does not fit the map at its cap is not lost as a whole:
 * its members are written one by one, the one that cannot fit fails with
 * VKV_ENOSPC and nothing of it is written, the others (before and after
 * it in the group) are stored and survive a reopen. */
static void cold_group_commit_map_full_fails_only_the_misfit(void **state)
{
    cu_fixture *f = *state;
    gate g = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0};
    vkvs_cold *c = open_gated(f->dir, &g, 2u << 20, 12u << 20);
    gate_close(c, &g);
    vkv_key k[4];
    size_t len[4] = {3u << 20, 3u << 20, 9u << 20, 100000};
    const char *ns[4] = {"m", "m", "m", "m"};
    for (int i = 0; i < 4; i++)
        cu_key(&k[i], 32, (uint64_t)i);
    run_group(c, &g, ns, k, len, 4, 2, VKV_ENOSPC);
    vkvs_cold_stats st;
    vkvs_cold_stats_get(c, &st);
    assert_true(st.map_full >= 1);
    assert_true(st.map_size <= (12u << 20));
    assert_int_equal(st.spill_errors, 1);
    assert_int_equal(st.spills, 4);     /* gate + k0, k1, k3 */
    assert_int_equal(st.spill_txns, 4); /* gate, then k0, k1, k3 alone */
    assert_int_equal(st.entries, 4);
    for (int pass = 0; pass < 2; pass++) {
        for (int i = 0; i < 4; i++) {
            if (i == 2)
                expect_absent(c, "m", &k[i]);
            else
                expect_restore(c, "m", &k[i], len[i]);
        }
        vkvs_cold_verify_report r;
        assert_int_equal(vkvs_cold_verify(c, 0, NULL, NULL, &r), 0);
        assert_int_equal(r.corrupt, 0);
        assert_int_equal(r.entries, 4);
        assert_int_equal(vkvs_cold_close(c), 0);
        if (pass == 0)
            c = open_gated(f->dir, &g, 2u << 20, 12u << 20);
    }
}

int main(void)
{
    vkv_log_init("cold_test", VKV_LOG_WARN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(cold_spill_then_restore_is_bit_identical, cu_setup,
                                        cu_teardown),
        cmocka_unit_test_setup_teardown(cold_entries_persist_across_close_and_reopen, cu_setup,
                                        cu_teardown),
        cmocka_unit_test_setup_teardown(cold_bound_evicts_least_recently_used, cu_setup,
                                        cu_teardown),
        cmocka_unit_test_setup_teardown(cold_corrupt_payload_is_detected_and_dropped, cu_setup,
                                        cu_teardown),
        cmocka_unit_test_setup_teardown(cold_map_full_grows_then_refuses_cleanly, cu_setup,
                                        cu_teardown),
        cmocka_unit_test_setup_teardown(cold_open_fails_cleanly_on_unusable_directory, cu_setup,
                                        cu_teardown),
        cmocka_unit_test_setup_teardown(cold_disk_full_fails_spill_cleanly, cu_setup, cu_teardown),
        cmocka_unit_test_setup_teardown(cold_delete_replace_and_argument_checks, cu_setup,
                                        cu_teardown),
        cmocka_unit_test_setup_teardown(cold_malformed_metadata_rows_follow_one_rule, cu_setup,
                                        cu_teardown),
        cmocka_unit_test_setup_teardown(cold_group_commit_keeps_each_spill_status, cu_setup,
                                        cu_teardown),
        cmocka_unit_test_setup_teardown(cold_group_commit_map_full_fails_only_the_misfit, cu_setup,
                                        cu_teardown),
        cmocka_unit_test_setup_teardown(cold_threads_take_the_configured_policy, cu_setup,
                                        cu_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
