/*
 * vkv_bench_remote - the remote tier's figures beside yardsticks measured in
 * the same run, on one real 3-master Redis Cluster on loopback:
 *   1. Remote image fetch: a LLaVA-1.5-7B image (576 visual tokens in chunks
 *      of 256/256/64, 32 layers, 32 KV heads, head dim 128) that daemon A
 *      published; daemon B (its own dirs and arena, the image not in its
 *      local tiers) is asked by its worker: LOOKUP (fetches the blocks from
 *      the cluster, verifies, installs them), FETCH, decode into the
 *      worker's fp16 buffers. Yardstick: GET of the same image's fp16 bytes
 *      (one value per chunk, from the master owning it), what an fp16 KV
 *      store over Redis does.
 *   2. Publish throughput: images committed on A until the remote tier has
 *      published every block (bytes per second), vs redis-benchmark SET of
 *      values of the tier's piece size against the same cluster, one client
 *      (the tier publishes on one connection at a time).
 *
 * usage: vkv_bench_remote [reps (default 5)] [images to publish (default 4)]
 */
#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "remote/cluster.h"
#include "redis_cluster.h"
#include "service_util.h"
#include "vkv/vkv.h"

static char g_dir[256];

/* Monotonic milliseconds. */
static double now_ms(void)
{
    return now_us() / 1e3;
}

static uint64_t stat_of(vkv_client *c, const char *name)
{
    vkv_stat st[512];
    size_t n = 0;
    if (vkv_stats(c, st, 512, &n) != 0)
        return 0;
    return vkv_stat_get(st, n < 512 ? n : 512, name);
}

static vkv_client *connect_ns(const char *rundir)
{
    vkv_options o = {0};
    o.rundir = rundir;
    o.ns = "bench|llava-1.5-7b|tp0|f16";
    o.timeout_ms = 60000;
    vkv_client *c = NULL;
    if (vkv_connect(&o, &c) != 0) {
        fprintf(stderr, "connect failed\n");
        exit(1);
    }
    return c;
}

int main(int argc, char **argv)
{
    int reps = argc > 1 ? atoi(argv[1]) : 5;
    int images = argc > 2 ? atoi(argv[2]) : 4;
    if (reps < 1 || reps > 32 || images < 1 || images > 64)
        return 2;
    snprintf(g_dir, sizeof g_dir, "/tmp/vkv-bench-remote-XXXXXX");
    if (!mkdtemp(g_dir))
        return 1;
    signal(SIGPIPE, SIG_IGN);
    vkvt_redis rc;
    int r0 = vkvt_redis_start(&rc, 3, NULL);
    if (r0)
        return r0;
    char remote[300];
    snprintf(remote, sizeof remote, "redis://%s", rc.nodes);
    const char *const fa[] = {"--capacity", "768M",     "--slab-size", "128M", "--cold-max",
                              "0",          "--remote", remote,        NULL};
    const char *const fb[] = {
        "--capacity", "256M", "--slab-size",      "64M",   "--cold-max",       "0",
        "--remote",   remote, "--remote-wait-ms", "30000", "--remote-publish", "no",
        NULL};
    char run_a[400], run_b[400];
    pid_t pa = start_vkvd(g_dir, "a", fa, run_a, sizeof run_a);
    pid_t pb = start_vkvd(g_dir, "b", fb, run_b, sizeof run_b);
    vkv_client *ca = connect_ns(run_a), *cb = connect_ns(run_b);

    /* The image, encoded once on A (put_chunk also commits and publishes). */
    const uint32_t L = 32, H = 32, D = 128, CH = 256, IMG = 576;
    const int nch = 3;
    vkv_key keys[3];
    vkv_shape shp[3];
    void *blocks[3];
    size_t bsize[3], fp16_total = 0, block_total = 0;
    size_t per_layer_max = (size_t)CH * H * D;
    uint16_t *k[32], *v[32];
    for (uint32_t l = 0; l < L; l++) {
        k[l] = malloc(per_layer_max * 2);
        v[l] = malloc(per_layer_max * 2);
    }
    for (int ch = 0; ch < nch; ch++) {
        uint32_t t = ch < 2 ? CH : IMG - 2 * CH;
        memset(&shp[ch], 0, sizeof shp[ch]);
        shp[ch].layers = L;
        shp[ch].kv_heads = H;
        shp[ch].head_dim = D;
        shp[ch].tokens = t;
        shp[ch].dtype = VKV_DTYPE_F16;
        shp[ch].n_ranges = 1;
        shp[ch].ranges[0].len = t;
        keys[ch] = key_of(7, (uint32_t)ch);
        fill(k, v, L, (size_t)t * H * D, 1000 + (uint64_t)ch);
        vkv_kv_src src = {(const void *const *)k, (const void *const *)v, (size_t)H * D, D};
        int stored = 0;
        if (vkv_put_chunk(ca, &keys[ch], &shp[ch], &src, &stored) != 0 || !stored) {
            fprintf(stderr, "put failed\n");
            return 1;
        }
        vkv_codec_encoded_size(&shp[ch], vkv_client_codec(ca), &bsize[ch]);
        blocks[ch] = malloc(bsize[ch]);
        vkv_fetch *f;
        if (vkv_fetch_begin(ca, &keys[ch], 1, &f) != 0 || vkv_fetch_count(f) != 1) {
            fprintf(stderr, "fetch on A failed\n");
            return 1;
        }
        memcpy(blocks[ch], vkv_fetch_view(f, 0).data, bsize[ch]);
        vkv_fetch_release(ca, f);
        block_total += bsize[ch];
        fp16_total += (size_t)t * H * D * 2 * 2 * L;
    }
    for (int i = 0; i < 400 && stat_of(ca, "remote_publishes") < (uint64_t)nch; i++)
        usleep(25000);
    if (stat_of(ca, "remote_publishes") < (uint64_t)nch) {
        fprintf(stderr, "A did not publish the image\n");
        return 1;
    }

    /* ---- 1. remote fetch on B vs redis GET of the fp16 bytes ---- */
    double tv[32], tr[32], th[32];
    for (int rep = 0; rep < 2 * reps; rep++) {
        /* even reps: B's local tiers forget the image first (remote path);
         * odd reps: it is hot in B's arena (the local path, for the
         * breakdown) */
        size_t gone = 0;
        if (rep % 2 == 0)
            vkv_delete(cb, keys, (size_t)nch, &gone);
        double t0 = now_ms();
        size_t hits = 0;
        vkv_lookup(cb, keys, (size_t)nch, &hits, NULL);
        vkv_fetch *f;
        if (hits != (size_t)nch || vkv_fetch_begin(cb, keys, hits, &f) != 0 ||
            vkv_fetch_count(f) != (size_t)nch) {
            fprintf(stderr, "remote image not served by B (%zu of %d)\n", hits, nch);
            return 1;
        }
        for (int ch = 0; ch < nch; ch++) {
            vkv_kv_dst dst = {(void *const *)k,
                              (void *const *)v,
                              (size_t)H * D,
                              D,
                              vkv_geometry_of(&shp[ch]),
                              NULL};
            if (vkv_fetch_decode(f, (size_t)ch, 0, &dst) != 0) {
                fprintf(stderr, "decode failed\n");
                return 1;
            }
        }
        vkv_fetch_release(cb, f);
        if (rep % 2 == 0)
            tv[rep / 2] = now_ms() - t0;
        else
            th[rep / 2] = now_ms() - t0;
    }
    uint64_t installed = stat_of(cb, "remote_installed");
    double per_block = (double)stat_of(cb, "remote_fetch_ns") / 1e6 /
                       (double)(stat_of(cb, "remote_hits") ? stat_of(cb, "remote_hits") : 1);
    /* fp16 yardstick: one value per chunk on the master owning its slot */
    redisContext *rcx[3];
    char name[3][32];
    for (int ch = 0; ch < nch; ch++) {
        snprintf(name[ch], sizeof name[ch], "fp16img:%d", ch);
        int o = vkvt_redis_owner(&rc, vkvr_key_slot(name[ch], strlen(name[ch])));
        rcx[ch] = vkvt_redis_conn(&rc, o);
        struct timeval tvl = {60, 0};
        redisSetTimeout(rcx[ch], tvl);
        size_t bytes = (size_t)shp[ch].tokens * H * D * 2 * 2 * L;
        char *blob = malloc(bytes);
        memset(blob, 0x3c, bytes);
        redisReply *x = redisCommand(rcx[ch], "SET %s %b", name[ch], blob, bytes);
        if (!x || x->type == REDIS_REPLY_ERROR) {
            fprintf(stderr, "redis SET of the fp16 chunk failed\n");
            return 1;
        }
        freeReplyObject(x);
        free(blob);
    }
    for (int rep = 0; rep < reps; rep++) {
        double t0 = now_ms();
        for (int ch = 0; ch < nch; ch++) {
            redisReply *x = redisCommand(rcx[ch], "GET %s", name[ch]);
            if (!x || x->type != REDIS_REPLY_STRING) {
                fprintf(stderr, "redis GET failed\n");
                return 1;
            }
            freeReplyObject(x);
        }
        tr[rep] = now_ms() - t0;
    }
    for (int ch = 0; ch < nch; ch++) {
        redisReply *x = redisCommand(rcx[ch], "DEL %s", name[ch]);
        freeReplyObject(x);
        redisFree(rcx[ch]);
    }
    double vk = pct(tv, (size_t)reps, 0.5), rd = pct(tr, (size_t)reps, 0.5);
    double hot = pct(th, (size_t)reps, 0.5);
    printf("== remote image fetch: LLaVA-1.5-7B image (576 tokens x 32 layers x 32 KV heads x "
           "128), %.1f MiB fp16, %.1f MiB as vkv blocks; 3-master Redis Cluster on loopback; "
           "median of %d\n",
           (double)fp16_total / 1048576.0, (double)block_total / 1048576.0, reps);
    printf("vkvd B: lookup (remote fetch + verify + install) + fetch + decode to fp16: %8.1f ms\n",
           vk);
    printf("the same with the image already hot in B (the local part):              %8.1f ms\n",
           hot);
    printf("redis GET of the same fp16 bytes (3 values, owner masters):             %8.1f ms\n",
           rd);
    printf("speed-up: %.1fx (goal >= 10x); blocks installed from the cluster: %llu, mean %.1f ms "
           "per block from submit to verified (remote_fetch_ns / remote_hits)\n",
           rd / vk, (unsigned long long)installed, per_block);

    /* ---- 2. publish throughput on A vs redis-benchmark SET ---- */
    uint64_t before = stat_of(ca, "remote_publishes");
    double t0 = now_ms();
    for (int img = 0; img < images; img++) {
        for (int ch = 0; ch < nch; ch++) {
            vkv_key key = key_of(100 + (uint64_t)img, (uint32_t)ch);
            vkv_put *p;
            if (vkv_put_begin(ca, &key, bsize[ch], &p) != 0) {
                fprintf(stderr, "put_begin failed\n");
                return 1;
            }
            memcpy(vkv_put_data(p), blocks[ch], bsize[ch]);
            if (vkv_put_commit(ca, p) != 0) {
                fprintf(stderr, "commit failed\n");
                return 1;
            }
        }
    }
    uint64_t want = before + (uint64_t)(images * nch);
    while (stat_of(ca, "remote_publishes") < want && now_ms() - t0 < 120000) {
        if (stat_of(ca, "remote_publish_errors") + stat_of(ca, "remote_publish_refused") > 0) {
            fprintf(stderr, "publishes failed or were dropped\n");
            return 1;
        }
        usleep(2000);
    }
    double pub_ms = now_ms() - t0;
    double pub_mbs = (double)block_total * images / 1048576.0 / (pub_ms / 1e3);
    /* yardstick: SET of 2 MiB values (the tier's piece size), one client */
    char cmd[512];
    int n_set = (int)(block_total * (size_t)images / (2u << 20)) + 1;
    snprintf(cmd, sizeof cmd,
             "redis-benchmark --cluster -h 127.0.0.1 -p %d -t set -d %u -n %d -c 1 -r 1000000 -q "
             "2>/dev/null | tr '\\r' '\\n' | grep 'SET:' | tail -1",
             rc.port[0], 2u << 20, n_set);
    FILE *pf = popen(cmd, "r");
    double rps = 0;
    char line[256] = "";
    if (pf && fgets(line, sizeof line, pf)) {
        const char *s = strstr(line, "SET:");
        if (s)
            rps = atof(s + 4);
    }
    if (pf)
        pclose(pf);
    double rb_mbs = rps * 2.0;
    printf("\n== publish throughput: %d images (%d blocks, %.1f MiB) committed on A\n", images,
           images * nch, (double)block_total * images / 1048576.0);
    printf("vkvd A: commit -> published (pieces of 2 MiB + manifest): %8.1f MiB/s (%.0f ms)\n",
           pub_mbs, pub_ms);
    printf("redis-benchmark --cluster SET -d 2097152 -c 1 (%d SETs):   %8.1f MiB/s\n", n_set,
           rb_mbs);
    if (rb_mbs > 0)
        printf("ratio: %.2fx (goal >= 0.7x)\n", pub_mbs / rb_mbs);

    vkv_close(ca);
    vkv_close(cb);
    stop(pa);
    stop(pb);
    vkvt_redis_stop(&rc);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    if (system(cmd) != 0)
        return 1;
    return 0;
}
