/* tests/store/store_arena_test.c - the memfd backend and the paged arena
 * under churn, through the public store API. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cmocka.h>

#include "store_test_util.h"
#include "vkv/error.h"

/* Each slab is a memfd sealed against shrink, grow and further sealing; a
 * shrink fails with EPERM; bytes written by the daemon are visible through a
 * second (client-style) mapping of the fd. */
static void slabs_are_sealed_memfds(void **state)
{
    vkvs_config c = small_config(2, 16, VKVS_POLICY_LRU);
    vkvs_store *st;
    const vkvs_slab *s;
    int seals;
    void *map;

    (void)state;
    assert_int_equal(vkvs_open(&c, &st), 0);
    assert_int_equal(vkvs_slab_count(st), 2);
    s = vkvs_slab_get(st, 1);
    assert_non_null(s);
    assert_int_equal(s->id, 1);
    assert_int_equal(s->size, 16 * 4096);
    seals = fcntl(s->fd, F_GET_SEALS);
    assert_true(seals >= 0);
    assert_true(seals & F_SEAL_SHRINK);
    assert_true(seals & F_SEAL_GROW);
    assert_true(seals & F_SEAL_SEAL);
    errno = 0;
    assert_int_equal(ftruncate(s->fd, 4096), -1);
    assert_int_equal(errno, EPERM);
    assert_int_equal(fcntl(s->fd, F_ADD_SEALS, F_SEAL_WRITE), -1);
    assert_true(fcntl(s->fd, F_GETFD) & FD_CLOEXEC);
    memcpy((char *)s->host + 4096, "hello", 6);
    map = mmap(NULL, s->size, PROT_READ, MAP_SHARED, s->fd, 0);
    assert_true(map != MAP_FAILED);
    assert_string_equal((char *)map + 4096, "hello");
    munmap(map, s->size);
    assert_null(vkvs_slab_get(st, 2));
    vkvs_close(st);
}

/* When no contiguous run is long enough, an allocation takes several runs
 * rather than failing, and its bytes round-trip through vkvs_write/read. */
static void allocation_falls_back_to_several_runs(void **state)
{
    vkvs_config c = small_config(1, 16, VKVS_POLICY_LRU);
    vkvs_store *st;
    uint64_t sid, lease;
    vkvs_block b;
    vkv_key k;
    char in[6 * 4096], out[6 * 4096];

    (void)state;
    assert_int_equal(vkvs_open(&c, &st), 0);
    assert_int_equal(vkvs_session_open(st, "m", 1, false, &sid), 0);
    for (uint32_t i = 0; i < 16; i++) {
        k = tkey(i);
        assert_int_equal(vkvs_alloc(st, sid, &k, 4096, &lease, &b), 0);
        assert_int_equal(vkvs_commit(st, sid, lease, NULL, NULL), 0);
    }
    /* delete every other page: 8 free pages, no run longer than 1 */
    for (uint32_t i = 0; i < 16; i += 2) {
        k = tkey(i);
        assert_int_equal(vkvs_delete(st, sid, NULL, &k, 1, NULL), 0);
    }
    /* pin the rest so nothing can be evicted */
    vkv_key odd[8];
    vkvs_block ob[8];
    vkvs_fetch_result fr;
    for (uint32_t i = 0; i < 8; i++)
        odd[i] = tkey(2 * i + 1);
    for (uint32_t i = 0; i < 8; i++) {
        assert_int_equal(vkvs_fetch(st, sid, &odd[i], 1, ob, &fr), 0);
        assert_int_equal(fr.nready, 1);
    }
    k = tkey(100);
    assert_int_equal(vkvs_alloc(st, sid, &k, sizeof(in), &lease, &b), 0);
    assert_int_equal(b.nextents, 6);
    for (size_t i = 0; i < sizeof(in); i++)
        in[i] = (char)(i * 7 + 3);
    assert_int_equal(vkvs_write(st, b.extents, b.nextents, 0, in, sizeof(in)), 0);
    assert_int_equal(vkvs_read(st, b.extents, b.nextents, 0, out, sizeof(out)), 0);
    assert_memory_equal(in, out, sizeof(in));
    assert_int_equal(vkvs_read(st, b.extents, b.nextents, 4000, out, 5000), 0);
    assert_memory_equal(in + 4000, out, 5000);
    assert_int_equal(vkvs_read(st, b.extents, b.nextents, 1, out, sizeof(out)), VKV_EINVAL);
    /* 2 free pages left, everything pinned or writing: too big is ENOSPC */
    k = tkey(101);
    assert_int_equal(vkvs_alloc(st, sid, &k, 3 * 4096, &lease, &b), VKV_ENOSPC);
    vkvs_close(st);
}

enum { NSLAB = 3, PPS = 64, NKEYS = 400, NLEASE = 8 };

/* Test-side model of one key. */
typedef struct tk {
    bool live;
    uint8_t fill;
} tk;

/* Checks that all hot entries' extents are disjoint, lie inside the slabs,
 * cover exactly the used pages, and that every entry still holds its fill
 * byte (so pages of pinned entries were never handed to someone else). */
static void check_ownership(vkvs_store *st, uint64_t admin, const tk *keys)
{
    static uint8_t owned[NSLAB][PPS];
    vkvs_info info[64];
    uint64_t cur = 0, pages = 0;
    vkvs_stats s;
    size_t n;
    char buf[4096];

    memset(owned, 0, sizeof(owned));
    do {
        assert_int_equal(vkvs_list(st, admin, NULL, cur, 64, info, &n, &cur), 0);
        for (size_t i = 0; i < n; i++) {
            uint32_t idx;
            memcpy(&idx, info[i].key.b, 4);
            assert_true(idx < NKEYS && keys[idx].live);
            assert_int_equal(info[i].state, VKVS_READY);
            for (uint32_t e = 0; e < info[i].nextents; e++) {
                const vkvs_extent *x = &info[i].extents[e];
                assert_true(x->slab < NSLAB && x->npages >= 1);
                assert_true(x->first_page + x->npages <= PPS);
                for (uint32_t p = 0; p < x->npages; p++) {
                    assert_int_equal(owned[x->slab][x->first_page + p], 0);
                    owned[x->slab][x->first_page + p] = 1;
                    pages++;
                }
            }
            size_t len = info[i].size < sizeof(buf) ? info[i].size : sizeof(buf);
            uint64_t off = info[i].size - len;
            assert_int_equal(vkvs_read(st, info[i].extents, info[i].nextents, off, buf, len), 0);
            for (size_t j = 0; j < len; j++)
                assert_int_equal((uint8_t)buf[j], keys[idx].fill);
        }
    } while (cur != 0);
    /* pinned entries deleted meanwhile still hold pages until released */
    vkvs_stats_get(st, &s);
    assert_true(pages <= s.pages_total - s.pages_free);
    if (s.leases_active == 0)
        assert_int_equal(pages, s.pages_total - s.pages_free);
}

/* Random allocs (with eviction), deletes, pins and releases: an allocation
 * succeeds exactly when free + evictable pages suffice, extents never
 * overlap, and pinned entries keep their bytes. */
static void churn_never_fails_while_space_is_evictable(void **state)
{
    vkvs_config c = small_config(NSLAB, PPS, VKVS_POLICY_S3FIFO);
    vkvs_store *st;
    uint64_t sid, admin, leases[NLEASE] = {0};
    static tk keys[NKEYS];
    static char fillbuf[40 * 4096];
    uint32_t rng = 12345, ok = 0, nospc = 0;

    (void)state;
    memset(keys, 0, sizeof(keys));
    assert_int_equal(vkvs_open(&c, &st), 0);
    assert_int_equal(vkvs_session_open(st, "model-a", 1, false, &sid), 0);
    assert_int_equal(vkvs_session_open(st, NULL, 1, true, &admin), 0);
    for (int step = 0; step < 4000; step++) {
        rng = rng * 1103515245u + 12345u;
        uint32_t r = rng >> 8, idx = r % NKEYS, op = (r >> 12) % 10;
        vkv_key k = tkey(idx);
        /* entries evicted by the store are no longer live in the model */
        vkvs_info inf;
        for (uint32_t i = 0; i < NKEYS; i++) {
            if (keys[i].live) {
                vkv_key ki = tkey(i);
                keys[i].live = vkvs_info_get(st, admin, "model-a", &ki, &inf) == 0;
            }
        }
        if (op < 6 && !keys[idx].live) {
            uint64_t size = 1 + (uint64_t)((r >> 3) % (40 * 4096));
            uint32_t need = (uint32_t)((size + 4095) / 4096);
            vkvs_stats s;
            uint64_t lease;
            vkvs_block b;
            vkvs_stats_get(st, &s);
            int rv = vkvs_alloc(st, sid, &k, size, &lease, &b);
            if (s.pages_free + s.pages_evictable >= need) {
                assert_int_equal(rv, 0);
                keys[idx].fill = (uint8_t)(step | 1);
                memset(fillbuf, keys[idx].fill, size);
                assert_int_equal(vkvs_write(st, b.extents, b.nextents, 0, fillbuf, size), 0);
                assert_int_equal(vkvs_commit(st, sid, lease, NULL, NULL), 0);
                keys[idx].live = true;
                ok++;
            } else {
                assert_int_equal(rv, VKV_ENOSPC);
                nospc++;
            }
        } else if (op < 8 && keys[idx].live) {
            size_t slot = r % NLEASE;
            vkvs_block b;
            vkvs_fetch_result fr;
            if (leases[slot])
                assert_int_equal(vkvs_release(st, sid, &leases[slot], 1, NULL), 0);
            assert_int_equal(vkvs_fetch(st, sid, &k, 1, &b, &fr), 0);
            assert_int_equal(fr.nready, 1);
            leases[slot] = fr.lease;
        } else if (op < 10) {
            size_t nd;
            assert_int_equal(vkvs_delete(st, sid, NULL, &k, 1, &nd), 0);
            assert_int_equal(nd, keys[idx].live ? 1 : 0);
            keys[idx].live = false;
        }
        if (step % 50 == 0)
            check_ownership(st, admin, keys);
    }
    assert_int_equal(vkvs_release(st, sid, leases, NLEASE, NULL), 0);
    check_ownership(st, admin, keys);
    assert_true(ok > 1000); /* the churn really allocated */
    vkvs_close(st);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(slabs_are_sealed_memfds),
        cmocka_unit_test(allocation_falls_back_to_several_runs),
        cmocka_unit_test(churn_never_fails_while_space_is_evictable),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
