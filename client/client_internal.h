/*
 * client/client_internal.h - libvkv internals shared with vkvctl and the
 * tests: one raw request/reply round trip over the client's session.
 */
#ifndef VKV_CLIENT_INTERNAL_H
#define VKV_CLIENT_INTERNAL_H

#include "proto/proto.h"
#include "vkv/vkv.h"

/* Sends `rq` (its req_id is assigned here; a session field in the body must
 * be filled by the caller with vkvc_session()) and waits for the reply.
 * On VKV_OK *rep is a decoded reply the caller frees with vkvp_reply_free.
 * A daemon error status is returned as the error code, and its message is
 * copied into why (if not NULL). */
int vkvc_call(vkv_client *c, vkvp_request *rq, vkvp_reply **rep, char *why, size_t why_len);

/* The lease id of a reservation (tests send COMMIT by hand with it). */
uint64_t vkvc_put_lease(const vkv_put *p);

/* The session id of the client's current session. */
uint64_t vkvc_session(const vkv_client *c);

/* Resolves the runtime directory the same way vkvd does (opts value,
 * $VKV_RUNDIR, $XDG_RUNTIME_DIR/vkv, /tmp/vkv-$UID) into buf. */
void vkvc_default_rundir(const char *given, char *buf, size_t cap);

#endif
