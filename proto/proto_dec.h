/*
 * proto/proto_dec.h - internal to proto/: the typed field decoder
 * (proto_dec.c) as the frame reader (proto_frame.c) uses it. Nothing outside
 * proto/ includes this.
 */
#ifndef VKVP_PROTO_DEC_H
#define VKVP_PROTO_DEC_H

#include <stddef.h>
#include <stdint.h>

#include <msgpack.h>

#include "proto/proto_desc.h"

/* One decoding: the zone of the message being built (every copied string and
 * array is allocated in it) and the caller's reason buffer (may be NULL). */
typedef struct vkvp_dec {
    msgpack_zone *zone;
    char *why;
    size_t why_len;
} vkvp_dec;

/* The name of a msgpack type for messages ("uint", "map", ...). Static. */
const char *vkvp_type_name(msgpack_object_type t);

/* Decodes a uint in [min, max] into *out. 0 or VKV_EPROTO (reason in d->why,
 * prefixed by path). */
int vkvp_dec_uint(vkvp_dec *d, const msgpack_object *o, uint64_t min, uint64_t max,
                  const char *path, uint64_t *out);

/* Decodes map o into obj by the fields of sd: string keys, known keys only,
 * no duplicates, required ones present, then the cross-field check. obj must
 * be pre-set to the defaults. Variable-length data is copied into d->zone,
 * never pointing into o. 0, VKV_EPROTO, VKV_ETOOBIG or VKV_ENOMEM. */
int vkvp_dec_struct(vkvp_dec *d, const vkvp_sdesc *sd, const msgpack_object *o, const char *path,
                    void *obj);

#endif /* VKVP_PROTO_DEC_H */
