/* tests/cold/cold_util.h - helpers shared by the cold-tier tests: scratch
 * directories, deterministic payloads derived from keys, completion waits. */
#ifndef VKV_TESTS_COLD_UTIL_H
#define VKV_TESTS_COLD_UTIL_H

#include <stddef.h>
#include <stdint.h>

#include "cold/cold.h"

/* Creates a fresh directory under $TMPDIR (or /tmp) named after `tag` and
 * returns it (malloc'ed; caller frees), or NULL. */
char *cu_mkdtemp(const char *tag);

/* The per-test scratch directory of the cmocka tests. */
typedef struct cu_fixture {
    char *dir; /* malloc'ed, removed and freed by cu_teardown */
} cu_fixture;

/* cmocka setup: creates a fresh scratch directory (cu_mkdtemp("cold")) in
 * a cu_fixture (*state; freed by cu_teardown) and empties the side list.
 * Returns 0 or -1. */
int cu_setup(void **state);

/* cmocka teardown: removes the fixture's directory and frees it. */
int cu_teardown(void **state);

/* Writes garbage over both meta pages of the LMDB environment in `dir`
 * (dir/data.mdb), so LMDB refuses to open it. Returns 0 or -1. */
int cu_damage_env(const char *dir);

/* Removes `path` recursively (like rm -rf). Returns 0 or -1. */
int cu_rmrf(const char *path);

/* Builds key number `idx` of series `series` (bytes 0..7 idx LE, 8..11
 * series, the rest mixed from both). */
void cu_key(vkv_key *k, uint64_t series, uint64_t idx);

/* Reads back the idx/series of a key made by cu_key; 0 if it is one. */
int cu_key_parse(const vkv_key *k, uint64_t *series, uint64_t *idx);

/* Fills buf[0..len) with bytes derived deterministically from key. */
void cu_fill(const vkv_key *k, uint8_t *buf, size_t len);

/* Returns a malloc'ed payload of len bytes for key (caller frees). */
uint8_t *cu_payload(const vkv_key *k, size_t len);

/* 1 if buf[0..len) equals the payload of key. */
int cu_check(const vkv_key *k, const uint8_t *buf, size_t len);

/* Waits (poll on the eventfd, hang guard 60 s) for the completion of `op`
 * with `tag`; other completions seen meanwhile are appended to the side
 * list (cu_side_*). Returns 0 and fills *out, or -1 on the hang guard. */
int cu_wait(vkvs_cold *c, int op, uint64_t tag, vkvs_cold_completion *out);

/* Side list of completions cu_wait set aside (EVICTED, DROPPED, ...). */
extern vkvs_cold_completion cu_side[4096];
extern int cu_nside;

/* Drains every ready completion into the side list. */
void cu_drain(vkvs_cold *c);

/* Counts side-list completions of `op`. */
int cu_side_count(int op);

/* Spills payload(key, len) and waits for its completion; returns its
 * status (or the submit error). */
int cu_spill_sync(vkvs_cold *c, const char *ns, const vkv_key *k, size_t len, uint64_t tag);

/* Restores (ns, key) into a fresh buffer of cap bytes and waits; returns
 * the completion status and, on 0, sets *buf (malloc'ed, caller frees) and
 * *len. */
int cu_restore_sync(vkvs_cold *c, const char *ns, const vkv_key *k, size_t cap, uint64_t tag,
                    uint8_t **buf, size_t *len);

#endif
