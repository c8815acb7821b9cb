#!/usr/bin/env python3
"""tests/kernels/attend_python_test.py LIBVKV - the Python binding of
vkv_attend / vkv_attend_merge (client/python/vkv) on numpy arrays (and torch
CPU tensors when torch is installed), against a numpy softmax over the
block's decoded K/V. Exits 77 (skipped) without numpy.

Bound (the dtype rounding of the decode, docs/ATTEND.md): |d out| <
4 * 2^-11 * max|v| and |d lse| < 4 * 2^-11 * scale * max_t sum_d |q_d k_td|
+ 1e-5 for fp16 rotsign blocks.
"""
import ctypes
import os
import sys

if os.environ.get("VKV_TEST_SKIP"):
    print("skipped: " + os.environ["VKV_TEST_SKIP"])
    sys.exit(77)

try:
    import numpy as np
except ImportError:
    print("numpy missing: skipped")
    sys.exit(77)

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "client", "python"))
import vkv  # noqa: E402

lib = vkv.load_library(sys.argv[1])
lib.vkv_codec_spec_parse.argtypes = [ctypes.c_char_p, ctypes.POINTER(vkv._Spec)]
lib.vkv_codec_encoded_size.argtypes = [ctypes.POINTER(vkv._Shape), ctypes.POINTER(vkv._Spec),
                                       ctypes.POINTER(ctypes.c_size_t)]
lib.vkv_encode.argtypes = [ctypes.POINTER(vkv._Shape), ctypes.POINTER(vkv._Spec),
                           ctypes.POINTER(vkv._KV), ctypes.c_void_p, ctypes.c_size_t]
U = 4 * 2.0 ** -11


def make_block(L, T, H, D, ranges, seed):
    """Encodes random fp16 K/V [L, T, H, D] with the default codec; returns
    (ctypes buffer, size)."""
    rng = np.random.default_rng(seed)
    k = (rng.standard_normal((L, T, H, D)) * 0.7 + rng.standard_normal((1, 1, H, D))).astype(np.float16)
    v = rng.standard_normal((L, T, H, D)).astype(np.float16)
    sh = vkv._Shape(L, H, D, T, vkv.DTYPE_F16, len(ranges))
    for i, (s, e) in enumerate(ranges):
        sh.ranges[i].start, sh.ranges[i].len = s, e - s
    spec = vkv._Spec()
    assert lib.vkv_codec_spec_parse(b"rotsign", ctypes.byref(spec)) == 0
    size = ctypes.c_size_t()
    assert lib.vkv_codec_encoded_size(ctypes.byref(sh), ctypes.byref(spec), ctypes.byref(size)) == 0
    buf = ctypes.create_string_buffer(size.value)
    kp = (ctypes.c_void_p * L)(*[k.ctypes.data + l * k.strides[0] for l in range(L)])
    vp = (ctypes.c_void_p * L)(*[v.ctypes.data + l * v.strides[0] for l in range(L)])
    src = vkv._KV(ctypes.cast(kp, ctypes.POINTER(ctypes.c_void_p)),
                  ctypes.cast(vp, ctypes.POINTER(ctypes.c_void_p)), H * D, D)
    assert lib.vkv_encode(ctypes.byref(sh), ctypes.byref(spec), ctypes.byref(src), buf,
                          size.value) == 0
    return buf, size.value


def naive(K, V, q, scale, keep=None):
    """Exact attention in float64: K/V [T, H, D], q [n_q, nh, D]."""
    nq, nh, D = q.shape
    H = K.shape[1]
    g = nh // H
    out = np.zeros((nq, nh, D))
    lse = np.zeros((nq, nh))
    for i in range(nq):
        for j in range(nh):
            s = scale * (K[:, j // g, :].astype(np.float64) @ q[i, j].astype(np.float64))
            if keep is not None:
                s = np.where(keep[i] != 0, s, -np.inf)
            m = s.max()
            p = np.exp(s - m)
            lse[i, j] = m + np.log(p.sum())
            out[i, j] = (p / p.sum()) @ V[:, j // g, :].astype(np.float64)
    return out, lse


def main():
    L, T, H, D = 2, 40, 2, 64
    buf, size = make_block(L, T, H, D, [(2, 20), (24, 38)], 1)
    addr = ctypes.addressof(buf)
    K, V = vkv.decode_block(addr, size)
    rng = np.random.default_rng(2)
    q = rng.standard_normal((3, 6, D)).astype(np.float32)
    scale = 1.0 / np.sqrt(D)
    for layer in range(L):
        for dt in (np.float32, np.float16):
            qq = q.astype(dt)
            out, lse = vkv.attend_block(addr, size, layer, qq)
            ro, rl = naive(K[layer], V[layer], qq.astype(np.float64), scale)
            vmax = np.abs(V[layer].astype(np.float64)).max()
            assert out.shape == (3, 6, D) and lse.shape == (3, 6) and out.dtype == np.float32
            assert np.abs(out - ro).max() < U * vmax, np.abs(out - ro).max()
            assert np.abs(lse - rl).max() < U * scale * np.abs(K[layer]).max() * np.abs(qq).sum(-1).max() + 1e-5
    # masks, and a 2-D query
    keep = (rng.random((3, T)) < 0.6).astype(np.uint8)
    out, lse = vkv.attend_block(addr, size, 1, q, mask=keep)
    ro, rl = naive(K[1], V[1], q.astype(np.float64), scale, keep)
    assert np.abs(out - ro).max() < U * np.abs(V[1]).max()
    o2, l2 = vkv.attend_block(addr, size, 0, q[0])
    assert o2.shape == (6, D) and l2.shape == (6,)
    # merge: block A + block B + own tokens == one softmax over all
    buf2, size2 = make_block(L, 25, H, D, [(0, 25)], 3)
    K2, V2 = vkv.decode_block(ctypes.addressof(buf2), size2)
    Kw = rng.standard_normal((9, H, D)).astype(np.float16)
    Vw = rng.standard_normal((9, H, D)).astype(np.float16)
    oa, la = vkv.attend_block(addr, size, 0, q)
    ob, lb = vkv.attend_block(ctypes.addressof(buf2), size2, 0, q)
    ow, lw = naive(Kw, Vw, q.astype(np.float64), scale)
    om, lm = vkv.attend_merge([oa, ob, ow.astype(np.float32)], [la, lb, lw.astype(np.float32)])
    Ka = np.concatenate([K[0], K2[0], Kw]).astype(np.float64)
    Va = np.concatenate([V[0], V2[0], Vw]).astype(np.float64)
    ro, rl = naive(Ka, Va, q.astype(np.float64), scale)
    assert np.abs(om - ro).max() < U * np.abs(Va).max(), np.abs(om - ro).max()
    assert np.abs(lm - rl).max() < 1e-2
    # errors surface as VkvError with the code
    try:
        vkv.attend_block(addr, size, 5, q)
        raise AssertionError("layer 5 accepted")
    except vkv.VkvError as e:
        assert e.code == -1, e.code
    try:
        vkv.attend_block(addr, size, 0, q, kv_heads=4)
        raise AssertionError("kv_heads 4 accepted")
    except vkv.VkvError as e:
        assert e.code == -3, e.code
    bad = q.copy()
    bad[0, 0, 0] = np.nan
    try:
        vkv.attend_block(addr, size, 0, bad)
        raise AssertionError("NaN accepted")
    except vkv.VkvError as e:
        assert e.code == -5, e.code
    try:
        import torch
    except ImportError:
        if "--require-torch" in sys.argv:
            print("torch not installed for this interpreter: skipped")
            sys.exit(77)
        print("attend python binding: numpy ok (torch not installed)")
        return
    tq = torch.from_numpy(q).to(torch.bfloat16)
    out, lse = vkv.attend_block(addr, size, 0, tq)
    assert isinstance(out, torch.Tensor)
    ro, rl = naive(K[0], V[0], tq.float().numpy().astype(np.float64), scale)
    assert np.abs(out.numpy() - ro).max() < U * np.abs(V[0]).max()
    om, lm = vkv.attend_merge([out, torch.from_numpy(ob)], [lse, torch.from_numpy(lb)])
    assert isinstance(om, torch.Tensor)
    print("attend python binding: numpy and torch ok")


if __name__ == "__main__":
    main()
