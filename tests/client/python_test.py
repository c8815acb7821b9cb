#!/usr/bin/python3
"""Tests of the Python binding (client/python/vkv) against a real vkvd.

usage: python_test.py VKVD LIBVKV VKVCTL
Exits 77 (skipped) when numpy is missing.
"""
import hashlib
import json
import os
import struct
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "client", "python"))
try:
    import numpy as np
except ImportError:
    print("numpy missing: skipped")
    sys.exit(77)

VKVD, LIB, VKVCTL = sys.argv[1:4]
os.environ["VKV_LIBRARY"] = LIB
import vkv  # noqa: E402
from vkv.daemon import Vkvd  # noqa: E402

NS = "test-model@rev1/tp0/f16"
L, T, H, D = 2, 64, 2, 64


def chain_ref(parent, tokens, images=()):
    """docs/KEYS.md, computed independently with hashlib."""
    h = hashlib.sha256()
    h.update(b"vkv-chain-v1")
    h.update(parent if parent is not None else bytes(32))
    h.update(struct.pack("<I", len(tokens)))
    h.update(b"".join(struct.pack("<I", t) for t in tokens))
    h.update(struct.pack("<I", len(images)))
    for img, off, ln in images:
        h.update(img + struct.pack("<II", off, ln))
    return h.digest()


def test_key_chain():
    img = hashlib.sha256(b"image-0").digest()
    k0 = vkv.key_chain(None, [1, 2, 3])
    assert k0 == chain_ref(None, [1, 2, 3])
    k1 = vkv.key_chain(k0, list(range(16)), [(img, 4, 8)])
    assert k1 == chain_ref(k0, list(range(16)), [(img, 4, 8)])
    assert vkv.key_chain(None, []) == chain_ref(None, [])
    # fixed vectors (docs/KEYS.md): any change of the encoding breaks them
    assert k0.hex() == VEC0, k0.hex()
    assert k1.hex() == VEC1, k1.hex()
    try:
        vkv.key_chain(None, [1, 2], [(img, 1, 5)])  # image past the chunk
        raise AssertionError("expected VKV_EINVAL")
    except vkv.VkvError as e:
        assert e.name == "VKV_EINVAL"


VEC0 = "f691474f35553491ff0945d98aed5eaa50168672692d1b899a131a6283d77c28"
VEC1 = "23cc103e077642fe37e4eacdb841f042b2b78f31eb0348d267d84ba531919d45"


def make_chunk(seed):
    rng = np.random.default_rng(seed)
    k = (rng.standard_normal((L, T, H, D)) * 2).astype(np.float16)
    v = rng.standard_normal((L, T, H, D)).astype(np.float16)
    return k, v


def read_safetensors(path):
    with open(path, "rb") as f:
        buf = f.read()
    n = struct.unpack("<Q", buf[:8])[0]
    hdr = json.loads(buf[8:8 + n])
    data = buf[8 + n:]
    out = {}
    for name, t in hdr.items():
        if name == "__metadata__":
            continue
        assert t["dtype"] == "F16"
        b, e = t["data_offsets"]
        out[name] = np.frombuffer(data[b:e], dtype=np.float16).reshape(t["shape"])
    return out, hdr.get("__metadata__", {})


def put_in_child(rundir, key, seed, ranges):
    code = f"""
import sys; sys.path.insert(0, {os.path.join(HERE, '..', '..', 'client', 'python')!r})
import numpy as np, vkv
rng = np.random.default_rng({seed})
k = (rng.standard_normal(({L},{T},{H},{D})) * 2).astype(np.float16)
v = rng.standard_normal(({L},{T},{H},{D})).astype(np.float16)
with vkv.Client(rundir={rundir!r}, ns={NS!r}) as c:
    assert c.put({key.hex()!r}, k, v, visual_ranges={ranges!r})
    assert not c.put({key.hex()!r}, k, v, visual_ranges={ranges!r})
print("ok")
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                       env=dict(os.environ, VKV_LIBRARY=LIB))
    assert r.returncode == 0 and "ok" in r.stdout, r.stderr


def test_put_fetch_decode(d):
    key = vkv.key_chain(None, list(range(T)))
    ranges = [(8, 40)]
    put_in_child(d.rundir, key, 7, ranges)  # another process puts
    k_in, v_in = make_chunk(7)
    with vkv.Client(rundir=d.rundir, ns=NS) as c:
        c.ping()
        assert c.lookup([key, bytes(32)]) == (1, 0)
        assert c.lookup([bytes(32)]) == (0, 0)
        with c.fetch([key]) as f:
            assert len(f) == 1
            sh = f.shape(0)
            assert (sh["layers"], sh["tokens"], sh["kv_heads"], sh["head_dim"]) == (L, T, H, D)
            assert sh["visual_ranges"] == ranges and sh["dtype"] == "f16"
            k, v = f.decode(0)
        assert k.shape == (L, T, H, D) and k.dtype == np.float16
        # raw tokens come back bit-exact, visual tokens quantized but close
        raw = np.r_[0:8, 40:T]
        assert np.array_equal(k[:, raw].view(np.uint16), k_in[:, raw].view(np.uint16))
        assert np.array_equal(v[:, raw].view(np.uint16), v_in[:, raw].view(np.uint16))
        vis = slice(8, 40)
        err = np.linalg.norm((k[:, vis] - k_in[:, vis]).astype(np.float32))
        assert err / np.linalg.norm(k_in[:, vis].astype(np.float32)) < 0.9
        # the C library's decode (vkvctl export) gives bit-identical arrays
        full_ns = None
        r = subprocess.run([VKVCTL, "--rundir", d.rundir, "--json", "ls"], capture_output=True,
                           text=True, timeout=30)
        assert r.returncode == 0, r.stderr
        for e in json.loads(r.stdout):
            if e["key"] == key.hex():
                full_ns = e["ns"]
        assert full_ns and full_ns.startswith(NS + "#"), r.stdout
        with tempfile.TemporaryDirectory() as tmp:
            out = os.path.join(tmp, "x.safetensors")
            r = subprocess.run([VKVCTL, "--rundir", d.rundir, "export", "--ns", full_ns,
                                key.hex(), out, "--json"], capture_output=True, text=True,
                               timeout=30)
            assert r.returncode == 0, r.stdout + r.stderr
            meta = json.loads(r.stdout)
            assert meta["tokens"] == T and meta["visual_ranges"] == "8:40"
            tensors, md = read_safetensors(out)
        assert md["visual_ranges"] == "8:40"
        for l in range(L):
            assert np.array_equal(tensors[f"layers.{l}.k"].view(np.uint16), k[l].view(np.uint16))
            assert np.array_equal(tensors[f"layers.{l}.v"].view(np.uint16), v[l].view(np.uint16))
        st = c.stats()
        assert st["hits"] >= 2 and st["commits"] >= 1
        assert c.delete([key]) == 1
        assert c.lookup([key]) == (0, 0)
        try:
            import torch  # noqa: F401
            have_torch = True
        except ImportError:
            have_torch = False
        if have_torch:
            put_in_child(d.rundir, key, 7, ranges)
            with c.fetch([key]) as f:
                tk, _ = f.decode_torch(0)
            assert tuple(tk.shape) == (L, T, H, D)


def test_identity_and_geometry(d):
    """A fetched block carries the identity of (namespace, key); the decoders
    refuse a destination of another geometry and a block bound to another key
    (nothing written), and error names come from libvkv's own table."""
    import ctypes
    key = vkv.key_chain(None, [5] * T)
    put_in_child(d.rundir, key, 9, [(0, T)])
    lib = vkv.load_library()
    with vkv.Client(rundir=d.rundir, ns=NS) as c:
        with c.fetch([key]) as f:
            ident = f.ident(0)
            assert len(ident) == 16 and ident != bytes(16)
            k, _ = f.decode(0)  # the identity-checked path
            assert k.shape == (L, T, H, D)
            view = f._view(0)
            # a destination with one KV head instead of two: refused
            kb = np.full((L, T, 1, D), 0x7777, dtype=np.uint16)
            vb = np.full((L, T, 1, D), 0x7777, dtype=np.uint16)
            kp = (ctypes.c_void_p * L)(*[kb.ctypes.data + l * kb.strides[0] for l in range(L)])
            vp = (ctypes.c_void_p * L)(*[vb.ctypes.data + l * vb.strides[0] for l in range(L)])
            dst = vkv._Dst(ctypes.cast(kp, ctypes.POINTER(ctypes.c_void_p)),
                           ctypes.cast(vp, ctypes.POINTER(ctypes.c_void_p)), D, D,
                           vkv._Geometry(L, 1, D, T, vkv.DTYPE_F16), None)
            rc = lib.vkv_fetch_decode(f._h, 0, 0, ctypes.byref(dst))
            assert vkv.error_name(rc) == "VKV_EGEOMETRY", rc
            rc = lib.vkv_decode(view.data, view.size, 0, ctypes.byref(dst))
            assert vkv.error_name(rc) == "VKV_EGEOMETRY", rc
            assert (kb == 0x7777).all() and (vb == 0x7777).all()
            # the right geometry but another key's identity: refused
            other = ctypes.create_string_buffer(b"\x01" * 16, 16)
            k2 = np.empty((L, T, H, D), dtype=np.float16)
            v2 = np.empty((L, T, H, D), dtype=np.float16)
            kp = (ctypes.c_void_p * L)(*[k2.ctypes.data + l * k2.strides[0] for l in range(L)])
            vp = (ctypes.c_void_p * L)(*[v2.ctypes.data + l * v2.strides[0] for l in range(L)])
            dst = vkv._Dst(ctypes.cast(kp, ctypes.POINTER(ctypes.c_void_p)),
                           ctypes.cast(vp, ctypes.POINTER(ctypes.c_void_p)), H * D, D,
                           vkv._Geometry(L, H, D, T, vkv.DTYPE_F16),
                           ctypes.cast(other, ctypes.c_void_p))
            rc = lib.vkv_decode(view.data, view.size, 0, ctypes.byref(dst))
            assert vkv.error_name(rc) == "VKV_EIDENT", rc
            f.renew()
    assert vkv.error_name(-25) == "VKV_ELEASE"


def main():
    test_key_chain()
    with Vkvd(VKVD) as d:
        try:
            test_identity_and_geometry(d)
            test_put_fetch_decode(d)
        except BaseException:
            print(d.log(), file=sys.stderr)
            raise
    print("python binding: ok")


if __name__ == "__main__":
    main()
