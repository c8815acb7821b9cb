/*
 * remote/cluster.h - a small Redis Cluster slot router on top of hiredis.
 *
 * Debian 12 ships hiredis 0.14 without cluster support and no hiredis-
 * cluster package, so vkv routes commands itself, following the Redis
 * Cluster specification (https://redis.io/docs/reference/cluster-spec/):
 *
 *   - key slot = CRC16-XMODEM(key) mod 16384, where only the part between
 *     the first '{' and the next '}' is hashed when that part is non-empty
 *     (a "hash tag"); the CRC is table driven (polynomial 0x1021, init 0);
 *   - the slot map comes from CLUSTER SLOTS (reloaded after a connection
 *     error and when a redirect says the map is stale);
 *   - "-MOVED slot host:port" updates that slot and retries there (after a
 *     short, growing pause from the third hop: a slot whose migration is
 *     being finalized may bounce between its old and new owner);
 *     "-ASK slot host:port" sends ASKING then the command to that node once,
 *     without changing the map (a slot being migrated);
 *     "-TRYAGAIN" is retried after a short pause;
 *   - one blocking hiredis connection per node, made lazily, with AUTH when
 *     a password is configured, connect and command timeouts
 *     (redisConnectWithTimeout, redisSetTimeout); a connection that fails is
 *     dropped, the node is not retried for retry_ms (calls fail fast), and
 *     the next call after that reconnects.
 *
 * A vkvr_cluster is NOT thread-safe: each I/O thread of the remote tier owns
 * one (its own connections). No function here logs; errors are returned and
 * the last one is described by vkvr_cluster_errstr.
 */
#ifndef VKV_REMOTE_CLUSTER_H
#define VKV_REMOTE_CLUSTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <hiredis/hiredis.h>

#define VKVR_SLOTS     16384
#define VKVR_NODES_MAX 128
#define VKVR_HOST_MAX  64

typedef struct vkvr_cluster vkvr_cluster;

/* One "host:port" seed. */
typedef struct vkvr_addr {
    char host[VKVR_HOST_MAX];
    int port;
} vkvr_addr;

/* Counters a router keeps (plain values, read by its owner thread). */
typedef struct vkvr_cluster_counters {
    uint64_t moved, ask, tryagain, refreshes, connects, conn_errors, timeouts;
} vkvr_cluster_counters;

/* Parses "host:port[,host:port...]" (an optional "redis://" before each
 * entry) into out[0..max); returns how many (>= 1) or VKV_EINVAL. */
int vkvr_parse_nodes(const char *list, vkvr_addr *out, int max);

/* The cluster slot of key[0..len) (hash tags honoured). */
uint16_t vkvr_key_slot(const char *key, size_t len);

/* CRC16-XMODEM of buf[0..len) (the checksum Redis Cluster uses). */
uint16_t vkvr_crc16(const void *buf, size_t len);

/* Creates a router over the seeds[0..nseeds) (copied). user/password may
 * be NULL (copied when not). Connects to nothing yet. Returns NULL on
 * allocation failure. Free with vkvr_cluster_free. */
vkvr_cluster *vkvr_cluster_new(const vkvr_addr *seeds, int nseeds, const char *user,
                               const char *password, uint32_t timeout_ms, uint32_t retry_ms);

/* Closes every connection and frees c (NULL is a no-op). */
void vkvr_cluster_free(vkvr_cluster *c);

/* Runs one command routed by argv[key_arg] (argv/argvlen as for
 * redisCommandArgv; key_arg < argc). Follows MOVED/ASK/TRYAGAIN (at most 16
 * redirects, about 0.5 s of pauses) and reloads the slot map when needed. On 0, *out is the reply
 * (any type, including a Redis error other than a redirect, which the caller
 * interprets) and the caller frees it with freeReplyObject. Errors: VKV_EIO
 * (connection lost, refused, protocol error, CLUSTERDOWN, too many
 * redirects), VKV_ETIMEDOUT, VKV_EPERM (AUTH refused), VKV_ENOMEM. */
int vkvr_cluster_command(vkvr_cluster *c, int argc, const char **argv, const size_t *argvlen,
                         int key_arg, redisReply **out);

/* Runs n commands that all route to the same slot (the caller makes their
 * keys share a hash tag) as one pipeline on one connection: cmd i is
 * argv[i][0..argc[i]) with lengths argvlen[i], routing key argv[i][key_arg].
 * A reply that is a redirect is re-run alone through vkvr_cluster_command.
 * On 0, out[0..n) hold the replies (caller frees each); on error none is
 * held. Errors as vkvr_cluster_command. */
int vkvr_cluster_pipeline(vkvr_cluster *c, int n, const int *argc, const char *const *const *argv,
                          const size_t *const *argvlen, int key_arg, redisReply **out);

/* Reloads the slot map now (CLUSTER SLOTS from the first node that answers).
 * Returns 0 or an error as vkvr_cluster_command. */
int vkvr_cluster_refresh(vkvr_cluster *c);

/* Whether reads of values are bounded (GETRANGE 0 max): true until
 * vkvr_cluster_no_getrange records that the cluster's ACL refuses GETRANGE
 * (NOPERM), after which values are read whole with GET. */
bool vkvr_cluster_getrange(const vkvr_cluster *c);
void vkvr_cluster_no_getrange(vkvr_cluster *c);

/* The router's counters (pointer valid until vkvr_cluster_free). */
const vkvr_cluster_counters *vkvr_cluster_counts(const vkvr_cluster *c);

/* One line describing the last error (static buffer inside c). */
const char *vkvr_cluster_errstr(const vkvr_cluster *c);

#endif /* VKV_REMOTE_CLUSTER_H */
