/*
 * kernels/attend_internal.h - private contract between the attention driver
 * (attend.c: validation, query rotation, softmax, per-rule bookkeeping) and
 * its kernels (scalar reference in attend.c, AVX2 in attend_avx2.c). Not
 * installed.
 *
 * Every rule of the block format reduces attention to four loops over the
 * tokens of one KV head, for R query rows at once (R = queries x query heads
 * sharing that KV head):
 *   bitdot  dot[r*ost + t] = sum_d c(bit_td) * u[r*hd + d]
 *   bitacc  acc[r*hd + d] += sum_t c(bit_td) * w[r*wst + t]
 *   rawdot  dot[r*ost + t] = sum_d u[r*hd + d] * x_td      (x: raw rows)
 *   rawacc  acc[r*hd + d] += sum_t w[r*wst + t] * x_td
 * and the softmax's exponentials:
 *   expsum  s[i] = exp(s[i] - m) (0 where s[i] = -Inf), returns sum_i s[i]
 * and the rotations of rotsign TOKEN tensors (fwht).
 * with c(1) = 1 and c(0) = -1 (sgn = 1, the rotsign signs) or 0 (sgn = 0,
 * the level rules' "high level selected" mask). Token t's code row is the
 * hd/8 bytes at bits + t*bstride (bit j of byte b = channel 8b+j); its raw
 * row the hd source-dtype elements at raw + t*rstride bytes. Block pointers
 * may have any alignment. All buffers are caller memory; `scratch` holds
 * VKVK_ATT_SCRATCH_FLOATS(hd, n) floats (n >= every call's token count) the
 * kernel may overwrite; it starts 32-byte aligned.
 */
#ifndef VKVK_ATTEND_INTERNAL_H
#define VKVK_ATTEND_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "vkv/attend.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Checks a call's arguments against a validated block header: pointers,
 * q_dtype, the caller's expected geometry, layer, row limit, mask length and
 * the scale (not the query values). Returns VKV_OK or the error vkv_attend
 * documents. Shared by vkv_attend and vkv_cuda_attend. */
int vkvk_attend_check_args(const vkv_block_header *h, const vkv_attend_args *a);

/* Scratch floats of one kernel call: one 256-entry table per code byte, of
 * 8-lane vectors (8 query rows at once), plus n tokens' 8 weights. */
#define VKVK_ATT_SCRATCH_FLOATS(hd, n) ((size_t)(hd)*256u + 8u * (size_t)(n) + 64u)

typedef struct vkvk_attend_kernels {
    const char *name;
    void (*bitdot)(const uint8_t *bits, size_t bstride, uint32_t n, const float *u, uint32_t R,
                   uint32_t hd, int sgn, float *dot, size_t ost, float *scratch);
    void (*bitacc)(const uint8_t *bits, size_t bstride, uint32_t n, const float *w, size_t wst,
                   uint32_t R, uint32_t hd, int sgn, float *acc, float *scratch);
    void (*rawdot)(const uint8_t *raw, size_t rstride, uint32_t n, int dtype, const float *u,
                   uint32_t R, uint32_t hd, float *dot, size_t ost);
    void (*rawacc)(const uint8_t *raw, size_t rstride, uint32_t n, int dtype, const float *w,
                   size_t wst, uint32_t R, uint32_t hd, float *acc);
    float (*expsum)(float *s, uint32_t n, float m);
    /* vkvk_fwht (codec_math.h) of x[0..n), n a power of two >= 8. */
    void (*fwht)(float *x, uint32_t n);
} vkvk_attend_kernels;

extern const vkvk_attend_kernels vkvk_attend_scalar;
#ifdef VKVK_X86
extern const vkvk_attend_kernels vkvk_attend_avx2;
#endif

#ifdef __cplusplus
}
#endif
#endif /* VKVK_ATTEND_INTERNAL_H */
