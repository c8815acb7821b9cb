/*
 * proto/proto_desc.h - internal to proto/: the field tables that describe
 * every wire body once (defined in proto_desc.c), shared by the encoder
 * (proto_enc.c), the decoder (proto_dec.c, proto_frame.c) and the JSON
 * renderer (proto_json.c). Nothing outside proto/ includes this.
 */
#ifndef VKVP_PROTO_DESC_H
#define VKVP_PROTO_DESC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum vkvp_kind {
    VKVP_K_UINT,     /* uint64_t, range [min, max] */
    VKVP_K_BOOL,     /* bool */
    VKVP_K_STR,      /* vkvp_str, length [min, max] */
    VKVP_K_KEY,      /* vkv_key (bin of 32) */
    VKVP_K_KEYS,     /* const vkv_key * + uint32_t count at cnt_off */
    VKVP_K_UINTS,    /* const uint64_t * + uint32_t count at cnt_off */
    VKVP_K_ENUM,     /* int-sized enum; wire string from names[] */
    VKVP_K_HANDLE,   /* uint8_t[64] + uint32_t length at cnt_off (0 or 64) */
    VKVP_K_EXTENTS,  /* const vkvp_extent * + count */
    VKVP_K_OBJ,      /* nested struct described by sub */
    VKVP_K_OBJS,     /* array of nested structs: pointer + count */
    VKVP_K_COUNTERS, /* map str -> uint: const vkvp_counter * + count */
};

#define VKVP_F_REQ 1u /* required on the wire */
#define VKVP_F_HAS 2u /* optional with a bool presence flag at has_off */

struct vkvp_sdesc;

typedef struct vkvp_fdesc {
    const char *name;
    enum vkvp_kind kind;
    unsigned flags;
    size_t off;     /* value (or array pointer) */
    size_t cnt_off; /* uint32_t count / handle length */
    size_t has_off; /* bool presence flag (VKVP_F_HAS) */
    uint64_t min, max;
    const char *const *names;     /* ENUM: NULL-terminated wire strings */
    const struct vkvp_sdesc *sub; /* OBJ / OBJS */
} vkvp_fdesc;

typedef struct vkvp_sdesc {
    const vkvp_fdesc *f;
    unsigned n;
    size_t size; /* sizeof the struct (OBJS element size) */
    /* cross-field check after all fields; returns NULL or a reason */
    const char *(*check)(const void *obj);
} vkvp_sdesc;

/* Typed accessors into a struct described by a table (obj + byte offset). */
#define AT(obj, off, T)  ((T *)(void *)((char *)(obj) + (off)))
#define CAT(obj, off, T) ((const T *)(const void *)((const char *)(obj) + (off)))

/* Body descriptor of a request op, or NULL for an unknown op. Static table. */
const vkvp_sdesc *vkvp_req_desc(int op);

/* Body descriptor of the OK reply to a request op, or NULL for an unknown
 * op. Static table. */
const vkvp_sdesc *vkvp_rep_desc(int op);

/* Body descriptor of an error reply ({msg}), whatever the op. Static table. */
const vkvp_sdesc *vkvp_err_desc(void);

/* True when field f of obj goes on the wire (optional fields with a presence
 * flag only when it is set). */
bool vkvp_present(const vkvp_fdesc *f, const void *obj);

/* Looks up names[v] in a NULL-terminated table; "?" when out of range.
 * Returns a static string. */
const char *vkvp_name_of(const char *const *names, int v);

#endif /* VKVP_PROTO_DESC_H */
