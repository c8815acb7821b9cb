/*
 * vkv/error.h - the one error list of vkv.
 *
 * Every vkv function that can fail returns an int: 0 (VKV_OK) on success or
 * one of the negative codes below. The list is an X-macro so that the enum,
 * vkv_strerror() and vkv_errname() can never drift apart. Codes are stable:
 * they travel on the wire as the reply status (negated), so never renumber.
 */
#ifndef VKV_ERROR_H
#define VKV_ERROR_H

#include "vkv/api.h"

#ifdef __cplusplus
extern "C" {
#endif

/* X(NAME, value, "message") */
#define VKV_ERRORS(X)                                                                              \
    X(VKV_OK, 0, "success")                                                                        \
    X(VKV_EINVAL, -1, "invalid argument")                                                          \
    X(VKV_ENOMEM, -2, "out of memory")                                                             \
    X(VKV_ESHAPE, -3, "invalid tensor shape")                                                      \
    X(VKV_EGROUP, -4, "invalid group size for this shape")                                         \
    X(VKV_ENONFINITE, -5, "input holds NaN or Inf")                                                \
    X(VKV_ERANGES, -6, "visual-token ranges overlap, are unsorted or out of range")                \
    X(VKV_EMAGIC, -7, "not a vkv block (bad magic)")                                               \
    X(VKV_EVERSION, -8, "unsupported block format version")                                        \
    X(VKV_ETRUNC, -9, "block truncated or buffer too small")                                       \
    X(VKV_ECORRUPT, -10, "block header inconsistent")                                              \
    X(VKV_ECHECKSUM, -11, "checksum mismatch")                                                     \
    X(VKV_ESPEC, -12, "invalid codec spec")                                                        \
    X(VKV_EPROTO, -13, "malformed protocol message")                                               \
    X(VKV_ETOOBIG, -14, "message or value too large")                                              \
    X(VKV_ENOTFOUND, -15, "no such entry")                                                         \
    X(VKV_EEXIST, -16, "entry already exists")                                                     \
    X(VKV_EBUSY, -17, "entry is being written by another client")                                  \
    X(VKV_ENOSPC, -18, "no space: cache full of pinned or in-flight entries")                      \
    X(VKV_ETIMEDOUT, -19, "timed out")                                                             \
    X(VKV_ECONN, -20, "cannot reach the daemon")                                                   \
    X(VKV_EPERM, -21, "permission denied")                                                         \
    X(VKV_ESTALE, -22, "daemon restarted (epoch changed); reconnect")                              \
    X(VKV_EIO, -23, "I/O error")                                                                   \
    X(VKV_ESTATE, -24, "entry is in the wrong state for this operation")                           \
    X(VKV_ELEASE, -25, "unknown or expired lease")                                                 \
    X(VKV_ESESSION, -26, "unknown or expired session")                                             \
    X(VKV_ENOTSUP, -27, "operation not supported")                                                 \
    X(VKV_ESYS, -28, "system call failed")                                                         \
    X(VKV_ESHUTDOWN, -29, "daemon is shutting down")                                               \
    X(VKV_ECOLD, -30, "cold tier unavailable")                                                     \
    X(VKV_EIDENT, -31, "block is bound to another key or namespace")                               \
    X(VKV_EGEOMETRY, -32, "block shape or dtype differs from the destination")

typedef enum vkv_err {
#define VKV_ERR_ENUM_(name, value, msg) name = value,
    VKV_ERRORS(VKV_ERR_ENUM_)
#undef VKV_ERR_ENUM_
        VKV_ERR_MIN_ = -32
} vkv_err;

/* Returns a static, human-readable message for code `err` (never NULL; an
 * unknown code yields "unknown error"). The caller does not free it. */
VKV_API const char *vkv_strerror(int err);

/* Returns the static symbolic name of `err` ("VKV_ENOMEM"), or "VKV_E?" for
 * an unknown code. The caller does not free it. */
VKV_API const char *vkv_errname(int err);

#ifdef __cplusplus
}
#endif
#endif /* VKV_ERROR_H */
