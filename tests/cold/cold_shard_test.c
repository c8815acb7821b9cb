/* tests/cold/cold_shard_test.c - a cold tier of several LMDB environments
 * (shards), against real LMDB files: keys spread over the shards and come
 * back bit-identical, the count is fixed at creation, each shard keeps its
 * share of the bound, one process per tier, and a damaged shard (or shard
 * count, or one-env tier) is moved aside alone while the rest is served. */
#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <lmdb.h>
#include <xxhash.h>

#include "cold/cold.h"
#include "cold/cold_int.h"
#include "cold_util.h"
#include "common/log.h"
#include "vkv/error.h"

#define NKEYS 48

/* Opens the tier in dir asking for `shards` (quarantine as given); returns
 * the open's code and sets *out. */
static int try_open(const char *dir, int shards, uint64_t max_bytes, int quarantine,
                    vkvs_cold **out)
{
    vkvs_cold_config cfg;
    vkvs_cold_config_default(&cfg);
    cfg.dir = dir;
    cfg.shards = shards;
    cfg.max_bytes = max_bytes;
    cfg.piece_size = 64u << 10;
    cfg.sync_interval_ms = 20;
    cfg.quarantine_damaged = quarantine;
    *out = NULL;
    return vkvs_cold_open(&cfg, out, NULL, 0);
}

/* try_open that must succeed. */
static vkvs_cold *open_tier(const char *dir, int shards, uint64_t max_bytes, int quarantine)
{
    vkvs_cold *c;
    assert_int_equal(try_open(dir, shards, max_bytes, quarantine, &c), 0);
    assert_non_null(c);
    return c;
}

/* Payload size of key i of the tests: 1 .. ~300 KB, not piece-aligned. */
static size_t size_of(uint64_t i)
{
    return 1 + (size_t)((i * 2654435761u) % 300000u);
}

/* The namespace of key i: two namespaces, so the routing sees both. */
static const char *ns_of(uint64_t i)
{
    return (i & 1) ? "img" : "";
}

/* Spills keys 0..n-1 of series 3 (and waits for each). */
static void spill_keys(vkvs_cold *c, uint64_t n)
{
    for (uint64_t i = 0; i < n; i++) {
        vkv_key k;
        cu_key(&k, 3, i);
        assert_int_equal(cu_spill_sync(c, ns_of(i), &k, size_of(i), i + 1), 0);
    }
}

/* Restores key i and returns 1 when it came back bit-identical, 0 when it
 * is absent (anything else fails the test). */
static int restore_key(vkvs_cold *c, uint64_t i)
{
    vkv_key k;
    cu_key(&k, 3, i);
    uint8_t *buf = NULL;
    size_t got = 0;
    int rc = cu_restore_sync(c, ns_of(i), &k, size_of(i) + 9, 5000 + i, &buf, &got);
    if (rc == VKV_ENOTFOUND)
        return 0;
    assert_int_equal(rc, 0);
    assert_int_equal(got, size_of(i));
    assert_true(cu_check(&k, buf, got));
    free(buf);
    return 1;
}

/* foreach callback: marks the series-3 keys listed in seen[]. */
static int mark_cb(void *ctx, const vkvs_cold_entry_info *e)
{
    uint8_t *seen = ctx;
    uint64_t series, idx;
    assert_int_equal(cu_key_parse(&e->key, &series, &idx), 0);
    assert_true(series == 3 && idx < NKEYS);
    assert_string_equal(e->ns, ns_of(idx));
    assert_int_equal(e->size, size_of(idx));
    seen[idx]++;
    return 0;
}

/* Lists which keys the environment in `dir` holds, opening it as a
 * one-env tier of its own (a shard directory is a whole environment). */
static int list_env(const char *dir, uint8_t *seen)
{
    vkvs_cold *c = open_tier(dir, 1, 1ull << 30, 0);
    vkvs_cold_stats st;
    vkvs_cold_stats_get(c, &st);
    assert_int_equal(st.shards, 1);
    memset(seen, 0, NKEYS);
    assert_int_equal(vkvs_cold_foreach(c, mark_cb, seen), 0);
    assert_int_equal(vkvs_cold_close(c), 0);
    int n = 0;
    for (int i = 0; i < NKEYS; i++)
        n += seen[i];
    return n;
}

/* Counts the entries of `dir` whose name starts with `prefix`. */
static int count_named(const char *dir, const char *prefix)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        n += strncmp(e->d_name, prefix, strlen(prefix)) == 0;
    closedir(d);
    return n;
}

/* verify progress callback: progress never passes its total and never
 * goes back. */
typedef struct progress {
    uint64_t calls, last_done, last_total;
} progress;
static int progress_cb(void *ctx, uint64_t done, uint64_t total, uint64_t db, uint64_t tb)
{
    progress *p = ctx;
    assert_true(done <= total && db <= tb);
    assert_true(done >= p->last_done);
    p->last_done = done;
    p->last_total = total;
    p->calls++;
    return 0;
}

/* Keys spread over both shards, every one in exactly one; they restore
 * bit-identical, also after reopening with another configured count (the
 * tier keeps the 2 it was created with); foreach, lookup, delete, verify
 * and the summed stats cover every shard. */
static void shards_spread_keys_and_keep_their_count(void **state)
{
    cu_fixture *f = *state;
    vkvs_cold *c = open_tier(f->dir, 2, 256u << 20, 0);
    spill_keys(c, NKEYS);
    vkvs_cold_stats st;
    vkvs_cold_stats_get(c, &st);
    assert_int_equal(st.shards, 2);
    assert_int_equal(st.entries, NKEYS);
    assert_int_equal(st.spills, NKEYS);
    assert_int_equal(st.max_bytes, 256u << 20);
    /* one process per tier, and per shard directory */
    vkvs_cold *other;
    assert_int_equal(try_open(f->dir, 2, 256u << 20, 0, &other), VKV_EBUSY);
    char sdir[4200];
    snprintf(sdir, sizeof sdir, "%s/shard-0", f->dir);
    assert_int_equal(try_open(sdir, 1, 256u << 20, 0, &other), VKV_EBUSY);
    assert_int_equal(vkvs_cold_close(c), 0);

    char path[4200];
    snprintf(path, sizeof path, "%s/shards", f->dir);
    FILE *fp = fopen(path, "r");
    assert_non_null(fp);
    int count = 0;
    assert_int_equal(fscanf(fp, "%d", &count), 1);
    fclose(fp);
    assert_int_equal(count, 2);
    snprintf(path, sizeof path, "%s/data.mdb", f->dir);
    assert_int_not_equal(access(path, F_OK), 0); /* no env at the top */
    uint8_t in0[NKEYS], in1[NKEYS];
    snprintf(sdir, sizeof sdir, "%s/shard-0", f->dir);
    int n0 = list_env(sdir, in0);
    snprintf(sdir, sizeof sdir, "%s/shard-1", f->dir);
    int n1 = list_env(sdir, in1);
    fprintf(stderr, "  %d keys in shard 0, %d in shard 1\n", n0, n1);
    assert_true(n0 > 0 && n1 > 0);
    for (int i = 0; i < NKEYS; i++) {
        assert_int_equal(in0[i] + in1[i], 1);
        /* the routing is part of the format (COLD_TIER.md, "Shards"):
         * XXH3-64 of the key bytes, seeded with XXH3-64 of the namespace */
        vkv_key k;
        cu_key(&k, 3, (uint64_t)i);
        const char *ns = ns_of((uint64_t)i);
        uint64_t h = XXH3_64bits_withSeed(k.b, VKV_KEY_LEN, XXH3_64bits(ns, strlen(ns)));
        assert_int_equal(in1[i], h % 2);
    }

    c = open_tier(f->dir, 4, 256u << 20, 0); /* asks for 4: keeps 2 */
    vkvs_cold_stats_get(c, &st);
    assert_int_equal(st.shards, 2);
    assert_int_equal(st.entries, NKEYS);
    uint8_t seen[NKEYS] = {0};
    assert_int_equal(vkvs_cold_foreach(c, mark_cb, seen), 0);
    for (uint64_t i = 0; i < NKEYS; i++) {
        vkv_key k;
        cu_key(&k, 3, i);
        assert_int_equal(vkvs_cold_shard_of(c, ns_of(i), &k), in1[i]); /* where it lives */
        assert_int_equal(seen[i], 1);
        assert_int_equal(restore_key(c, i), 1);
        vkvs_cold_entry_info info;
        assert_int_equal(vkvs_cold_lookup(c, ns_of(i), &k, &info), 0);
        assert_int_equal(info.size, size_of(i));
        /* the same key bytes in the other namespace are another entry */
        assert_int_equal(vkvs_cold_lookup(c, ns_of(i + 1), &k, &info), VKV_ENOTFOUND);
    }
    progress p = {0};
    vkvs_cold_verify_report r;
    assert_int_equal(vkvs_cold_verify(c, 0, progress_cb, &p, &r), 0);
    assert_int_equal(r.entries, NKEYS);
    assert_int_equal(r.corrupt, 0);
    assert_true(p.calls >= NKEYS);
    assert_int_equal(p.last_done, NKEYS);
    assert_int_equal(p.last_total, NKEYS);
    for (uint64_t i = 0; i < NKEYS; i += 3) {
        vkv_key k;
        cu_key(&k, 3, i);
        assert_int_equal(vkvs_cold_delete(c, ns_of(i), &k, 7000 + i), 0);
        vkvs_cold_completion cp;
        assert_int_equal(cu_wait(c, VKVS_COLD_OP_DELETE, 7000 + i, &cp), 0);
        assert_int_equal(cp.status, 0);
    }
    for (uint64_t i = 0; i < NKEYS; i++)
        assert_int_equal(restore_key(c, i), i % 3 != 0);
    vkvs_cold_stats_get(c, &st);
    assert_int_equal(st.entries, NKEYS - NKEYS / 3);
    assert_int_equal(st.deletes, NKEYS / 3);
    assert_int_equal(vkvs_cold_close(c), 0);
}

/* A tier created with one environment (every tier before shards) keeps it
 * when reopened asking for more: same files, every entry served. */
static void one_env_tier_stays_one_env(void **state)
{
    cu_fixture *f = *state;
    vkvs_cold *c = open_tier(f->dir, 1, 256u << 20, 0);
    spill_keys(c, 10);
    assert_int_equal(vkvs_cold_close(c), 0);
    c = open_tier(f->dir, 3, 256u << 20, 0);
    vkvs_cold_stats st;
    vkvs_cold_stats_get(c, &st);
    assert_int_equal(st.shards, 1);
    assert_int_equal(st.entries, 10);
    for (uint64_t i = 0; i < 10; i++)
        assert_int_equal(restore_key(c, i), 1);
    assert_int_equal(vkvs_cold_close(c), 0);
    char path[4200];
    snprintf(path, sizeof path, "%s/shards", f->dir);
    assert_int_not_equal(access(path, F_OK), 0);
    assert_int_equal(count_named(f->dir, "shard-"), 0);
}

/* Each shard holds max_bytes / shards: the sum stays under the bound,
 * entries past it are evicted (EVICTED posted) and a block larger than
 * one shard's share is refused at submit. */
static void each_shard_keeps_its_share_of_the_bound(void **state)
{
    cu_fixture *f = *state;
    const uint64_t bound = 3u << 20;
    vkvs_cold *c = open_tier(f->dir, 2, bound, 0);
    for (uint64_t i = 0; i < 24; i++) {
        vkv_key k;
        cu_key(&k, 4, i);
        assert_int_equal(cu_spill_sync(c, "b", &k, 400000, i + 1), 0);
        vkvs_cold_stats st;
        vkvs_cold_stats_get(c, &st);
        assert_true(st.bytes <= bound);
    }
    cu_drain(c);
    vkvs_cold_stats st;
    vkvs_cold_stats_get(c, &st);
    assert_int_equal(st.max_bytes, bound);
    assert_int_equal(st.evictions, 24 - st.entries);
    assert_int_equal(cu_side_count(VKVS_COLD_OP_EVICTED), (int)st.evictions);
    assert_true(st.entries >= 4); /* at least 3 per shard fit: 1.5 MiB each */
    vkv_key k;
    cu_key(&k, 4, 99);
    uint8_t *big = cu_payload(&k, (bound / 2) + 1);
    assert_int_equal(vkvs_cold_spill(c, "b", &k, big, (bound / 2) + 1, 99), VKV_ETOOBIG);
    free(big);
    assert_int_equal(vkvs_cold_close(c), 0);
}

/* Creates a 2-shard tier in dir holding keys 0..NKEYS-1, closes it and
 * lists which keys shard 1 holds (in1[], its directory in sdir[4200]).
 * Returns how many. */
static int two_shards_listed(const char *dir, char *sdir, uint8_t *in1)
{
    vkvs_cold *c = open_tier(dir, 2, 256u << 20, 0);
    spill_keys(c, NKEYS);
    assert_int_equal(vkvs_cold_close(c), 0);
    snprintf(sdir, 4200, "%s/shard-1", dir);
    return list_env(sdir, in1);
}

/* A damaged shard fails the open (VKV_ECORRUPT) unless quarantine is
 * asked for; then that shard alone is moved aside and starts empty, its
 * keys are absent (never served), every key of the other shard restores
 * bit-identical, and the new shard takes spills. */
static void damaged_shard_is_moved_aside_alone(void **state)
{
    cu_fixture *f = *state;
    vkvs_cold *c;
    char sdir[4200];
    uint8_t in1[NKEYS];
    int n1 = two_shards_listed(f->dir, sdir, in1);
    assert_true(n1 > 0 && n1 < NKEYS);
    assert_int_equal(cu_damage_env(sdir), 0);

    assert_int_equal(try_open(f->dir, 2, 256u << 20, 0, &c), VKV_ECORRUPT);
    assert_null(c);
    c = open_tier(f->dir, 2, 256u << 20, 1);
    vkvs_cold_stats st;
    vkvs_cold_stats_get(c, &st);
    assert_int_equal(st.envs_quarantined, 1);
    assert_int_equal(st.shards, 2);
    assert_int_equal(st.entries, (uint64_t)(NKEYS - n1));
    for (uint64_t i = 0; i < NKEYS; i++)
        assert_int_equal(restore_key(c, i), !in1[i]);
    spill_keys(c, NKEYS); /* the empty shard takes its keys again */
    for (uint64_t i = 0; i < NKEYS; i++)
        assert_int_equal(restore_key(c, i), 1);
    assert_int_equal(vkvs_cold_close(c), 0);
    assert_int_equal(count_named(f->dir, "shard-1.corrupt-"), 1);
    assert_int_equal(count_named(f->dir, "shard-0.corrupt-"), 0);
}

/* A damaged one-env tier, or a damaged shard count, moves the whole
 * directory aside (with quarantine; VKV_ECORRUPT without) and a new tier
 * with the configured count starts empty. */
static void damaged_tier_or_count_moves_the_whole_tier_aside(void **state)
{
    cu_fixture *f = *state;
    char parent[4200], base[4200];
    snprintf(parent, sizeof parent, "%s", f->dir);
    snprintf(base, sizeof base, "%s/tier", f->dir);
    vkvs_cold *c = open_tier(base, 1, 256u << 20, 0);
    spill_keys(c, 6);
    assert_int_equal(vkvs_cold_close(c), 0);
    assert_int_equal(cu_damage_env(base), 0);
    assert_int_equal(try_open(base, 2, 256u << 20, 0, &c), VKV_ECORRUPT);
    char slash[4300]; /* a trailing slash is the same directory */
    snprintf(slash, sizeof slash, "%s/", base);
    c = open_tier(slash, 2, 256u << 20, 1);
    vkvs_cold_stats st;
    vkvs_cold_stats_get(c, &st);
    assert_int_equal(st.envs_quarantined, 1);
    assert_int_equal(st.shards, 2);
    assert_int_equal(st.entries, 0);
    for (uint64_t i = 0; i < 6; i++)
        assert_int_equal(restore_key(c, i), 0);
    assert_int_equal(vkvs_cold_close(c), 0);
    assert_int_equal(count_named(parent, "tier.corrupt-"), 1);

    /* a shard count that is not one (here "1", then text) */
    const char *bad[] = {"1\n", "two\n"};
    for (int b = 0; b < 2; b++) {
        usleep(2000); /* each move-aside gets its own millisecond stamp */
        char path[4300];
        snprintf(path, sizeof path, "%s/shards", base);
        FILE *fp = fopen(path, "w");
        assert_non_null(fp);
        fputs(bad[b], fp);
        assert_int_equal(fclose(fp), 0);
        assert_int_equal(try_open(base, 2, 256u << 20, 0, &c), VKV_ECORRUPT);
        c = open_tier(base, 3, 256u << 20, 1);
        vkvs_cold_stats_get(c, &st);
        assert_int_equal(st.envs_quarantined, 1);
        assert_int_equal(st.shards, 3);
        assert_int_equal(vkvs_cold_close(c), 0);
        assert_int_equal(count_named(parent, "tier.corrupt-"), 2 + b);
    }
}

/* A shard count out of range is a configuration error; the bound is
 * the sum of the shards' shares. */
static void shard_count_out_of_range_is_refused(void **state)
{
    cu_fixture *f = *state;
    vkvs_cold *c;
    assert_int_equal(try_open(f->dir, 0, 256u << 20, 0, &c), VKV_EINVAL);
    assert_int_equal(try_open(f->dir, VKVS_COLD_SHARDS_MAX + 1, 256u << 20, 0, &c), VKV_EINVAL);
    assert_null(c);
    /* a bound that N does not divide: each shard holds max_bytes / N */
    c = open_tier(f->dir, 2, (1u << 20) + 1, 0);
    vkvs_cold_stats st;
    vkvs_cold_stats_get(c, &st);
    assert_int_equal(st.max_bytes, 1u << 20);
    assert_int_equal(vkvs_cold_close(c), 0);
}

/* Opens dir/shard-K's data.mdb, finds 64 bytes from the middle of key i's
 * payload in it and flips 8 bytes there. */
static void corrupt_payload_in(const char *sdir, uint64_t i)
{
    char path[4300];
    snprintf(path, sizeof path, "%s/data.mdb", sdir);
    FILE *fp = fopen(path, "r+b");
    assert_non_null(fp);
    assert_int_equal(fseek(fp, 0, SEEK_END), 0);
    long n = ftell(fp);
    assert_true(n > 0);
    uint8_t *file = malloc((size_t)n);
    assert_non_null(file);
    rewind(fp);
    assert_int_equal(fread(file, 1, (size_t)n, fp), (size_t)n);
    vkv_key k;
    cu_key(&k, 3, i);
    uint8_t *pl = cu_payload(&k, size_of(i));
    size_t off = size_of(i) / 2 - 32;
    uint8_t *hit = memmem(file, (size_t)n, pl + off, 64);
    assert_non_null(hit);
    uint8_t flip[8];
    for (int j = 0; j < 8; j++)
        flip[j] = (uint8_t)(hit[20 + j] ^ 0x5a);
    assert_int_equal(fseek(fp, (long)(hit - file) + 20, SEEK_SET), 0);
    assert_int_equal(fwrite(flip, 1, 8, fp), 8);
    assert_int_equal(fclose(fp), 0);
    free(pl);
    free(file);
}

/* verify with VKVS_COLD_VERIFY_DROP over a 2-shard tier: the one entry
 * corrupted on disk (in shard 1) is reported, dropped (DROPPED posted) and
 * never served; every other entry of both shards passes and restores. */
static void verify_drops_a_corrupt_entry_in_its_shard(void **state)
{
    cu_fixture *f = *state;
    vkvs_cold *c;
    char sdir[4200];
    uint8_t in1[NKEYS];
    assert_true(two_shards_listed(f->dir, sdir, in1) > 0);
    uint64_t bad = 0;
    while (!in1[bad] || size_of(bad) < 4096) /* a shard-1 key with a payload to hit */
        bad++;
    corrupt_payload_in(sdir, bad);
    c = open_tier(f->dir, 2, 256u << 20, 0);
    vkvs_cold_verify_report r;
    assert_int_equal(vkvs_cold_verify(c, VKVS_COLD_VERIFY_DROP, NULL, NULL, &r), 0);
    assert_int_equal(r.entries, NKEYS);
    assert_int_equal(r.corrupt, 1);
    assert_int_equal(r.dropped, 1);
    cu_drain(c);
    assert_int_equal(cu_side_count(VKVS_COLD_OP_DROPPED), 1);
    for (uint64_t i = 0; i < NKEYS; i++)
        assert_int_equal(restore_key(c, i), i != bad);
    assert_int_equal(vkvs_cold_close(c), 0);
}

/* Shard directories without a count file (a crash while the tier was being
 * created: no shard was opened yet) are a new tier: it is created with the
 * configured count and works. */
static void shard_dirs_without_a_count_are_a_new_tier(void **state)
{
    cu_fixture *f = *state;
    char sdir[4200];
    for (int k = 0; k < 2; k++) {
        snprintf(sdir, sizeof sdir, "%s/shard-%d", f->dir, k);
        assert_int_equal(mkdir(sdir, 0700), 0);
    }
    vkvs_cold *c = open_tier(f->dir, 3, 256u << 20, 0);
    vkvs_cold_stats st;
    vkvs_cold_stats_get(c, &st);
    assert_int_equal(st.shards, 3);
    spill_keys(c, 12);
    for (uint64_t i = 0; i < 12; i++)
        assert_int_equal(restore_key(c, i), 1);
    assert_int_equal(vkvs_cold_close(c), 0);
    assert_int_equal(count_named(f->dir, "shard-"), 3);
}

/* A shard directory that went missing is created again, empty: the other
 * shard's entries are all served, the missing shard's are absent. A shard
 * path that is a file fails the open cleanly (the shard opened before it
 * is closed again). */
static void missing_shard_is_recreated_and_a_file_refused(void **state)
{
    cu_fixture *f = *state;
    vkvs_cold *c;
    char sdir[4200];
    uint8_t in1[NKEYS];
    int n1 = two_shards_listed(f->dir, sdir, in1);
    assert_int_equal(cu_rmrf(sdir), 0);
    c = open_tier(f->dir, 2, 256u << 20, 0);
    vkvs_cold_stats st;
    vkvs_cold_stats_get(c, &st);
    assert_int_equal(st.entries, (uint64_t)(NKEYS - n1));
    for (uint64_t i = 0; i < NKEYS; i++)
        assert_int_equal(restore_key(c, i), !in1[i]);
    assert_int_equal(vkvs_cold_close(c), 0);

    assert_int_equal(cu_rmrf(sdir), 0);
    FILE *fp = fopen(sdir, "w");
    assert_non_null(fp);
    assert_int_equal(fclose(fp), 0);
    assert_int_equal(try_open(f->dir, 2, 256u << 20, 1, &c), VKV_EINVAL);
    assert_null(c);
}

/* Creates an LMDB environment of the plain kind in dir (data.mdb and
 * lock.mdb at its top), as a one-environment vkv would on opening it. */
static void plain_env_in(const char *dir)
{
    MDB_env *env;
    assert_int_equal(mdb_env_create(&env), 0);
    assert_int_equal(mdb_env_open(env, dir, 0, 0600), 0);
    mdb_env_close(env);
}

/* Removes dir/name. */
static void unlink_in(const char *dir, const char *name)
{
    char path[4300];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    assert_int_equal(unlink(path), 0);
}

/* Layouts that contradict each other are refused (VKV_ECOLD) and nothing
 * is moved, created or quarantined, even when quarantine is asked for: an
 * environment at the top beside a sharded tier (an older one-env vkv opened
 * it), and shard data whose count file is gone (reopening with another
 * count would route keys to shards that do not hold them). Once the
 * operator removes the stray environment or writes the count back, every
 * committed entry restores bit-identical. */
static void contradicting_layouts_are_refused_and_left_alone(void **state)
{
    cu_fixture *f = *state;
    vkvs_cold *c;
    char sdir[4200], parent[4200], base[4200];
    snprintf(parent, sizeof parent, "%s", f->dir);
    snprintf(base, sizeof base, "%s/tier", f->dir);
    assert_int_equal(mkdir(base, 0700), 0);
    uint8_t in1[NKEYS];
    assert_true(two_shards_listed(base, sdir, in1) > 0);

    plain_env_in(base);
    assert_int_equal(try_open(base, 2, 256u << 20, 1, &c), VKV_ECOLD);
    assert_null(c);
    assert_int_equal(try_open(base, 1, 256u << 20, 1, &c), VKV_ECOLD);
    assert_int_equal(count_named(parent, "tier.corrupt-"), 0);
    assert_int_equal(count_named(base, "shard-"), 2);
    unlink_in(base, "data.mdb");
    unlink_in(base, "lock.mdb");
    c = open_tier(base, 2, 256u << 20, 1);
    for (uint64_t i = 0; i < NKEYS; i++)
        assert_int_equal(restore_key(c, i), 1);
    assert_int_equal(vkvs_cold_close(c), 0);

    unlink_in(base, "shards");
    for (int want = 1; want <= 3; want++) {
        assert_int_equal(try_open(base, want, 256u << 20, 1, &c), VKV_ECOLD);
        assert_null(c);
    }
    assert_int_equal(count_named(base, "shard"), 2); /* no shard-2, no count written */
    assert_int_equal(count_named(base, "data.mdb"), 0);
    assert_int_equal(count_named(parent, "tier.corrupt-"), 0);
    char path[4300];
    snprintf(path, sizeof path, "%s/shards", base);
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    fputs("2\n", fp);
    assert_int_equal(fclose(fp), 0);
    c = open_tier(base, 3, 256u << 20, 1);
    vkvs_cold_stats st;
    vkvs_cold_stats_get(c, &st);
    assert_int_equal(st.shards, 2);
    assert_int_equal(st.envs_quarantined, 0);
    for (uint64_t i = 0; i < NKEYS; i++)
        assert_int_equal(restore_key(c, i), 1);
    assert_int_equal(vkvs_cold_close(c), 0);
}

/* foreach callback: counts the entries and stops after ctx->stop_after
 * of them (0: never). */
typedef struct fe_count {
    int n, stop_after;
} fe_count;
static int count_cb(void *ctx, const vkvs_cold_entry_info *e)
{
    fe_count *fc = ctx;
    (void)e;
    fc->n++;
    return fc->stop_after != 0 && fc->n >= fc->stop_after ? 7 : 0;
}

/* A shard that cannot be walked (here one that has failed) does not stop
 * foreach or verify: every entry of the other shard is listed and checked,
 * and the shard's error comes back at the end; a callback's nonzero value
 * stops the whole walk at once and is returned. */
static void foreach_lists_past_a_shard_that_fails(void **state)
{
    cu_fixture *f = *state;
    char sdir[4200];
    uint8_t in1[NKEYS];
    int n1 = two_shards_listed(f->dir, sdir, in1);
    assert_true(n1 > 0 && n1 < NKEYS);
    vkvs_cold *c = open_tier(f->dir, 2, 256u << 20, 0);
    fe_count fc = {0, 3};
    assert_int_equal(vkvs_cold_foreach(c, count_cb, &fc), 7);
    assert_int_equal(fc.n, 3);
    vkvs_cold_env *e0 = vkvs_cold_shard_env(c, 0);
    assert_non_null(e0);
    assert_null(vkvs_cold_shard_env(c, 2));
    e0->failed = 1; /* what an MDB_PANIC of shard 0 leaves */
    uint8_t seen[NKEYS] = {0};
    assert_int_equal(vkvs_cold_foreach(c, mark_cb, seen), VKV_ECOLD);
    for (int i = 0; i < NKEYS; i++)
        assert_int_equal(seen[i], in1[i]);
    vkvs_cold_verify_report r;
    progress pr = {0, 0, 0};
    assert_int_equal(vkvs_cold_verify(c, 0, progress_cb, &pr, &r), VKV_ECOLD);
    assert_int_equal(r.entries, (uint64_t)n1); /* shard 1 was checked all the same */
    assert_int_equal(r.corrupt, 0);
    assert_true(pr.calls > 0);
    assert_int_equal(vkvs_cold_close(c), 0);
}

/* Spills queued to both shards at once, waited for on the eventfd alone
 * (no polling of the queue between wake-ups): every completion wakes the
 * caller, whichever shard's writer posts it. */
static void completions_of_every_shard_wake_the_eventfd(void **state)
{
    cu_fixture *f = *state;
    vkvs_cold *c = open_tier(f->dir, 2, 256u << 20, 0);
    enum { N = 64 };
    for (uint64_t i = 0; i < N; i++) {
        vkv_key k;
        cu_key(&k, 6, i);
        size_t len = 1000 + (size_t)i * 997;
        uint8_t *buf = cu_payload(&k, len);
        assert_int_equal(vkvs_cold_spill(c, "w", &k, buf, len, i + 1), 0);
    }
    int got = 0;
    uint8_t seen[N] = {0};
    while (got < N) {
        struct pollfd p = {vkvs_cold_fd(c), POLLIN, 0};
        assert_int_equal(poll(&p, 1, 20000), 1); /* a lost wake-up hangs here */
        vkvs_cold_completion cp[16];
        int n;
        while ((n = vkvs_cold_poll(c, cp, 16)) > 0)
            for (int j = 0; j < n; j++) {
                assert_int_equal(cp[j].op, VKVS_COLD_OP_SPILL);
                assert_int_equal(cp[j].status, 0);
                assert_true(cp[j].tag >= 1 && cp[j].tag <= N && !seen[cp[j].tag - 1]);
                seen[cp[j].tag - 1] = 1;
                got++;
            }
    }
    vkvs_cold_stats st;
    vkvs_cold_stats_get(c, &st);
    assert_int_equal(st.entries, N);
    assert_int_equal(vkvs_cold_close(c), 0);
}

int main(void)
{
    vkv_log_init("cold_shard_test", VKV_LOG_WARN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(shards_spread_keys_and_keep_their_count, cu_setup,
                                        cu_teardown),
        cmocka_unit_test_setup_teardown(one_env_tier_stays_one_env, cu_setup, cu_teardown),
        cmocka_unit_test_setup_teardown(each_shard_keeps_its_share_of_the_bound, cu_setup,
                                        cu_teardown),
        cmocka_unit_test_setup_teardown(damaged_shard_is_moved_aside_alone, cu_setup, cu_teardown),
        cmocka_unit_test_setup_teardown(damaged_tier_or_count_moves_the_whole_tier_aside, cu_setup,
                                        cu_teardown),
        cmocka_unit_test_setup_teardown(shard_count_out_of_range_is_refused, cu_setup, cu_teardown),
        cmocka_unit_test_setup_teardown(verify_drops_a_corrupt_entry_in_its_shard, cu_setup,
                                        cu_teardown),
        cmocka_unit_test_setup_teardown(shard_dirs_without_a_count_are_a_new_tier, cu_setup,
                                        cu_teardown),
        cmocka_unit_test_setup_teardown(missing_shard_is_recreated_and_a_file_refused, cu_setup,
                                        cu_teardown),
        cmocka_unit_test_setup_teardown(contradicting_layouts_are_refused_and_left_alone, cu_setup,
                                        cu_teardown),
        cmocka_unit_test_setup_teardown(foreach_lists_past_a_shard_that_fails, cu_setup,
                                        cu_teardown),
        cmocka_unit_test_setup_teardown(completions_of_every_shard_wake_the_eventfd, cu_setup,
                                        cu_teardown),
    };
    return cmocka_run_group_tests_name("cold_shard", tests, NULL, NULL);
}
