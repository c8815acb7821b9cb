/*
 * kernels/cuda/header_check.cu - compiles the shared block-format header and
 * the per-group math under nvcc, so CI proves the CUDA side can include them.
 * The kernel is never launched by vkv; it only has to build.
 */
#include "vkv/block.h"
#include "kernels/codec_math.h"
#include "kernels/codec_tc.h"

/* Rounds each element's float value through the source dtype and back, then
 * computes the levels of the whole array as one group (all three rules). */
__global__ void vkvk_header_check_kernel(const float *in, uint16_t *out, int n, int dtype)
{
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n)
        out[i] = vkvk_from_f32(vkvk_to_f32(vkvk_from_f32(in[i], dtype), dtype), dtype);
    if (i == 0 && n > 0) {
        float s[VKVK_TOKEN_LANES];
        for (int j = 0; j < VKVK_TOKEN_LANES; j++)
            s[j] = j < n ? in[j] : 0.0f;
        float lo, hi, mn = vkvk_tree32_min(s), mx = vkvk_tree32_max(s);
        vkvk_minmax_levels(mn, mx, 0.5f, &lo, &hi);
        float thr = vkvk_lloyd_start(vkvk_tree32_sum(s), VKVK_TOKEN_LANES);
        thr = vkvk_lloyd_update(lo, 1, hi, 1, &lo, &hi);
        vkvk_quantile_levels(s, VKVK_TOKEN_LANES, 0.2f, &lo, &hi);
        uint16_t lh, hh;
        (void)vkvk_group_finish(dtype, lo, hi, mn, mx, &lh, &hh);
        vkv_block_header h = {};
        h.head_dim = 128;
        h.kv_heads = 8;
        h.layers = 32;
        h.tokens = 256;
        h.k_mode = VKV_GROUP_CHANNEL;
        h.v_mode = VKV_GROUP_TOKEN;
        h.k_group = 256;
        h.v_group = 128;
        vkvk_layout L;
        out[0] = (uint16_t)(vkvk_layout_of(&h, &L) == 0 ? L.total & 0xffffu : thr);
        out[n > 1 ? 1 : 0] = lh ^ hh;
        /* rule 5: the layout and one token of one head decoded from in[] */
        h.rule = VKV_RULE_TC;
        h.k_mode = VKV_GROUP_TOKEN;
        h.k_group = 72;
        h.v_mode = VKV_GROUP_CHANNEL;
        h.v_group = 0;
        uint8_t lev[4 * 8 + 8 / 4 + 2 + 1] = {}, codes[2] = {0x5a, 0xa5};
        float mu[8], sc[8], row[8];
        uint8_t nb[8];
        vkvk_tc_head th = {0, 0, 0.0f, mu, sc, nb};
        h.head_dim = 8;
        vkvk_tc_head_load(&h, 0, lev, 0, &th);
        vkvk_tc_dec_f32(&th, codes, (uint32_t)n & 255u, row);
        out[0] ^= (uint16_t)(vkvk_tc_layout_of(&h, &L) == 0 ? L.total & 0xffffu : 0u) ^
                  vkvk_rot_out(row[0], dtype);
    }
}
