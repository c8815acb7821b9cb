/*
 * daemon/fdchan.h - the fd side channel: passes the host backend's memfd
 * slabs to clients over AF_UNIX with SCM_RIGHTS (nanomsg cannot carry file
 * descriptors).
 *
 * Protocol (docs/PROTOCOL.md, "fd side channel"): the client connects to the
 * SOCK_STREAM socket at the path HELLO returned, sends its 8-byte
 * little-endian session id, and receives one message per slab: a 16-byte
 * payload [slab id u64 LE, size u64 LE] with the slab's memfd attached, then
 * the server closes the connection. A client that also sends the 8 bytes
 * VKVD_FDCHAN_WANT_INDEX (LE) right after its session id, in the same write,
 * gets one more message after the slabs: [VKVD_FDCHAN_INDEX_ID, size] with
 * the lookup index segment's memfd (proto/shmidx.h), when the daemon has one. The peer is checked
 * with SO_PEERCRED before anything is sent: its uid must be ours (or root), or its gid the
 * configured allow_gid.
 *
 * The channel runs its own thread so a slow or hostile client can never stall
 * the request loop; every connection has a short I/O timeout.
 */
#ifndef VKVD_FDCHAN_H
#define VKVD_FDCHAN_H

#include <stdint.h>
#include <sys/types.h>

#include "proto/shmidx.h"

typedef struct vkvd_fdchan vkvd_fdchan;

/* "VKVLIDX1" read as a little-endian u64: the client asks for the index. */
#define VKVD_FDCHAN_WANT_INDEX VKVP_SHMIDX_WANT
/* The id of the index message (no slab has it: slab ids are 32-bit). */
#define VKVD_FDCHAN_INDEX_ID VKVP_SHMIDX_FD_ID

/* Session check: returns nonzero if `session` is live, and records `pid`,
 * the peer's pid as the kernel reported it (SO_PEERCRED, in the daemon's
 * pid namespace), as the session's process. Called on the channel's
 * thread; must be thread-safe. */
typedef int (*vkvd_session_check_fn)(void *arg, uint64_t session, pid_t pid);

/* Binds `path` (unlinking a stale socket first), mode 0600, and starts the
 * server thread. `allow_gid` < 0 means own uid only. The slab table is set
 * with vkvd_fdchan_set_slabs. Returns 0 or a negative VKV_E* code; *out is
 * owned by the caller until vkvd_fdchan_close. */
int vkvd_fdchan_open(const char *path, long allow_gid, vkvd_session_check_fn check, void *arg,
                     vkvd_fdchan **out);

/* Publishes the slabs to pass (fds are borrowed: the store owns and closes
 * them after vkvd_fdchan_close). Thread-safe; replaces the previous table.
 * Returns 0 or VKV_ENOMEM. */
int vkvd_fdchan_set_slabs(vkvd_fdchan *fc, const uint32_t *ids, const uint64_t *sizes,
                          const int *fds, uint32_t n);

/* Publishes the lookup index segment to pass to clients that ask (`fd` is
 * borrowed: its owner closes it after vkvd_fdchan_close). Thread-safe.
 * Returns 0. */
int vkvd_fdchan_set_index(vkvd_fdchan *fc, int fd, uint64_t size);

/* Stops accepting, joins the thread, unlinks the socket and frees `fc`. */
void vkvd_fdchan_close(vkvd_fdchan *fc);

/* Counters for STATS: connections served and refused. */
void vkvd_fdchan_counts(vkvd_fdchan *fc, uint64_t *served, uint64_t *refused);

#endif
