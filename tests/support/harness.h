/*
 * tests/support/harness.h - helpers that run a real vkvd for the
 * multi-process tests: a private runtime and state directory per daemon, a
 * fork/exec of the real binary, readiness by polling its socket, real
 * signals to stop it.
 */
#ifndef VKV_TEST_HARNESS_H
#define VKV_TEST_HARNESS_H

#include <stdint.h>
#include <sys/types.h>

#include "vkv/vkv.h"

typedef struct vkvt_daemon {
    pid_t pid;
    char dir[256];      /* scratch root (mkdtemp), removed by vkvt_cleanup */
    char rundir[300];   /* dir/run */
    char statedir[300]; /* dir/state */
    char logpath[300];  /* dir/vkvd.log: the daemon's stderr */
} vkvt_daemon;

/* Creates the scratch directories (once per daemon object). Returns 0/-1. */
int vkvt_prepare(vkvt_daemon *d);

/* Starts vkvd (path from the VKVD_PATH compile definition) with the given
 * extra flags (NULL-terminated argv tail) on d's directories and waits until
 * its socket answers a PING (up to 10 s). Returns 0 or -1. */
int vkvt_start(vkvt_daemon *d, const char *const *extra);

/* Sends `sig` and waits for exit; returns the exit status (or 128+signal),
 * -1 on error. */
int vkvt_stop(vkvt_daemon *d, int sig);

/* Removes the scratch tree. */
void vkvt_cleanup(vkvt_daemon *d);

/* Connects a client (namespace ns) to d. Returns the error code. */
int vkvt_connect(const vkvt_daemon *d, const char *ns, vkv_client **out);

/* Deterministic test chunk: fills per-layer K/V buffers (fp16, dense
 * [tokens][heads][dim]) from `seed`. Buffers are malloc'ed into *k and *v
 * arrays of `layers` pointers; free with vkvt_chunk_free. */
void vkvt_chunk_make(const vkv_shape *s, uint64_t seed, uint16_t ***k, uint16_t ***v);
void vkvt_chunk_free(const vkv_shape *s, uint16_t **k, uint16_t **v);

/* Encodes the chunk of `seed` locally with `spec` into a malloc'ed block
 * (*size bytes). Returns the block or NULL. */
/* Binds a local encoding `ref` (size bytes) to the identity fetched block i
 * must carry, as libvkv does before COMMIT, so it can be compared byte for
 * byte with the block in the daemon. Returns 0 or a VKV_E* code. */
int vkvt_bind_like(const vkv_fetch *f, size_t i, void *ref, size_t size);

void *vkvt_encode_local(const vkv_shape *s, const vkv_codec_spec *spec, uint64_t seed,
                        size_t *size);

/* A key derived from a test seed and chunk index. */
vkv_key vkvt_key(uint64_t seed, uint32_t index);

/* Counter from STATS, or UINT64_MAX on error. */
uint64_t vkvt_stat(vkv_client *c, const char *name);

/* The small test chunk: 4 layers, 2 KV heads, head dim 64, 64 tokens, fp16,
 * one visual range [vis_start, vis_start + vis_len). About 10 KiB encoded. */
vkv_shape vkvt_small_shape(uint32_t vis_start, uint32_t vis_len);

/* Puts the chunk of data seed `seed + i` under key vkvt_key(seed, i) for i
 * in [from, to) with the client's codec. Returns the first error or 0. */
int vkvt_put_range(vkv_client *c, const vkv_shape *s, uint64_t seed, int from, int to);

/* Fetches key vkvt_key(seed, i) alone: 1 if served bit-identical to a local
 * encoding of data seed `seed + i`, 0 if absent, -1 if served but different
 * (never acceptable), -2 if the fetch failed. */
int vkvt_check_one(vkv_client *c, const vkv_shape *s, uint64_t seed, int i);

/* A "Name: N kB" field of /proc/PID/status (e.g. "VmRSS", "RssAnon") in
 * kB, or -1 if unreadable. */
long vkvt_proc_kb(pid_t pid, const char *field);

/* Milliseconds sleep. */
void vkvt_sleep_ms(int ms);

#endif
