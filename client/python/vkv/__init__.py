"""vkv: Python binding of libvkv (ctypes), for inference worker processes.

    import vkv, numpy as np
    with vkv.Client(ns="llava-1.5-7b@abc/tp0/f16") as c:
        hits, cold = c.lookup(keys)            # longest cached prefix
        with c.fetch(keys[:hits]) as f:        # pins the blocks
            k, v = f.decode(0)                 # np.float16 [layers, tokens, kv_heads, head_dim]
        c.put(key, k, v, visual_ranges=[(0, 256)])

Keys are 32-byte ``bytes`` (or 64-char hex strings). ``key_chain`` derives
them as docs/KEYS.md says; vLLM block hashes (sha256_cbor) can be passed
through unchanged (see vkv.vllm_connector).

The shared library is found via $VKV_LIBRARY, then next to this package,
then in a build tree above it (build*/client/libvkv.so), then the system.
numpy is needed only for put/decode/attend; torch only for ``decode_torch``
(and torch inputs to ``attend``). ``Fetch.attend`` / ``attend_block`` run
attention straight on a block's codes, ``attend_merge`` merges partial
results (docs/ATTEND.md).
"""
import ctypes
import ctypes.util
import glob
import os

__all__ = ["Client", "Fetch", "PagedDst", "VkvError", "attend_block", "attend_merge",
           "encoded_size", "key_chain", "key_hex",
           "key_parse", "load_library"]

KEY_LEN = 32
MAX_RANGES = 8
DTYPE_F16 = 1
DTYPE_BF16 = 2
DECODE_VERIFY = 1
HEADER_SIZE = 256

class VkvError(Exception):
    """A libvkv call failed: ``code`` is the negative vkv_err, ``name`` its symbol."""

    def __init__(self, code, what=""):
        self.code = code
        self.name = error_name(code)
        super().__init__(f"{what}: {self.name} ({code})" if what else f"{self.name} ({code})")


def error_name(code):
    """The symbol of a vkv_err code ("VKV_ELEASE"), from libvkv's own table."""
    try:
        name = load_library().vkv_errname(code)
    except OSError:
        name = None
    return name.decode() if name else f"VKV_E?({code})"


_ERROR_CODES = None


def error_code(name):
    """The code of a vkv_err symbol ("VKV_ENOTSUP" -> -27), read from libvkv's
    own table (vkv_errname over the code range): Python keeps no copy."""
    global _ERROR_CODES
    if _ERROR_CODES is None:
        lib = load_library()
        codes = {}
        for code in range(0, -256, -1):
            n = lib.vkv_errname(code)
            if n and n != b"VKV_E?":
                codes[n.decode()] = code
        _ERROR_CODES = codes
    return _ERROR_CODES[name]


# ---- C structs (must match include/vkv/*.h) ----------------------------------
class _Key(ctypes.Structure):
    _fields_ = [("b", ctypes.c_uint8 * KEY_LEN)]


class _Options(ctypes.Structure):
    _fields_ = [("rundir", ctypes.c_char_p), ("ns", ctypes.c_char_p),
                ("codec", ctypes.c_char_p), ("name", ctypes.c_char_p),
                ("timeout_ms", ctypes.c_int), ("admin", ctypes.c_int),
                ("ns_is_full", ctypes.c_int)]


class _Range(ctypes.Structure):
    _fields_ = [("start", ctypes.c_uint32), ("len", ctypes.c_uint32)]


class _Shape(ctypes.Structure):
    _fields_ = [("layers", ctypes.c_uint32), ("kv_heads", ctypes.c_uint32),
                ("head_dim", ctypes.c_uint32), ("tokens", ctypes.c_uint32),
                ("dtype", ctypes.c_uint8), ("n_ranges", ctypes.c_uint32),
                ("ranges", _Range * MAX_RANGES)]


class _Spec(ctypes.Structure):
    _fields_ = [("rule", ctypes.c_uint8), ("k_mode", ctypes.c_uint8),
                ("v_mode", ctypes.c_uint8), ("iters", ctypes.c_uint8),
                ("k_group", ctypes.c_uint16), ("v_group", ctypes.c_uint16),
                ("k_param", ctypes.c_float), ("v_param", ctypes.c_float)]


class _KV(ctypes.Structure):  # vkv_kv_src
    _fields_ = [("k", ctypes.POINTER(ctypes.c_void_p)), ("v", ctypes.POINTER(ctypes.c_void_p)),
                ("token_stride", ctypes.c_size_t), ("head_stride", ctypes.c_size_t)]


class _Geometry(ctypes.Structure):  # vkv_geometry
    _fields_ = [("layers", ctypes.c_uint32), ("kv_heads", ctypes.c_uint32),
                ("head_dim", ctypes.c_uint32), ("tokens", ctypes.c_uint32),
                ("dtype", ctypes.c_uint8)]


class _Dst(ctypes.Structure):  # vkv_kv_dst
    _fields_ = [("k", ctypes.POINTER(ctypes.c_void_p)), ("v", ctypes.POINTER(ctypes.c_void_p)),
                ("token_stride", ctypes.c_size_t), ("head_stride", ctypes.c_size_t),
                ("geom", _Geometry), ("ident", ctypes.c_void_p)]


class _PagedDst(ctypes.Structure):  # vkv_paged_dst (include/vkv/codec.h)
    _fields_ = [("k_cache", ctypes.POINTER(ctypes.c_void_p)),
                ("v_cache", ctypes.POINTER(ctypes.c_void_p)),
                ("num_pages", ctypes.c_uint32), ("page_size", ctypes.c_uint32),
                ("block_table", ctypes.POINTER(ctypes.c_int32)),
                ("block_table_len", ctypes.c_uint32), ("first_pos", ctypes.c_uint32),
                ("page_stride", ctypes.c_size_t), ("slot_stride", ctypes.c_size_t),
                ("head_stride", ctypes.c_size_t), ("skip_tokens", ctypes.c_uint32),
                ("geom", _Geometry), ("ident", ctypes.c_void_p)]


class _View(ctypes.Structure):
    _fields_ = [("data", ctypes.c_void_p), ("size", ctypes.c_size_t)]


class _Stat(ctypes.Structure):
    _fields_ = [("name", ctypes.c_char * 64), ("value", ctypes.c_uint64)]


class _ImageRef(ctypes.Structure):
    _fields_ = [("hash", ctypes.c_uint8 * 32), ("offset", ctypes.c_uint32),
                ("length", ctypes.c_uint32)]


class _AttendArgs(ctypes.Structure):  # vkv_attend_args (include/vkv/attend.h)
    _fields_ = [("kv_heads", ctypes.c_uint32), ("head_dim", ctypes.c_uint32),
                ("layers", ctypes.c_uint32), ("layer", ctypes.c_uint32),
                ("n_q", ctypes.c_uint32), ("n_heads", ctypes.c_uint32),
                ("q_dtype", ctypes.c_uint8), ("q", ctypes.c_void_p), ("scale", ctypes.c_float),
                ("mask", ctypes.c_void_p), ("mask_tokens", ctypes.c_uint32),
                ("out", ctypes.c_void_p), ("lse", ctypes.c_void_p),
                ("ident", ctypes.c_void_p)]


ATTEND_F16 = 1
ATTEND_BF16 = 2
ATTEND_F32 = 3

_lib = None


def _candidates():
    env = os.environ.get("VKV_LIBRARY")
    if env:
        yield env
    here = os.path.dirname(os.path.abspath(__file__))
    for d in (here, os.path.dirname(here)):
        yield from sorted(glob.glob(os.path.join(d, "libvkv.so*")))
    d = here
    for _ in range(5):  # client/python/vkv -> repo root and its build dirs
        d = os.path.dirname(d)
        yield from sorted(glob.glob(os.path.join(d, "build*", "client", "libvkv.so")))
    found = ctypes.util.find_library("vkv")
    if found:
        yield found
    yield "libvkv.so.0"


def load_library(path=None):
    """Loads libvkv (once) and declares the prototypes; returns the CDLL."""
    global _lib
    if _lib is not None and path is None:
        return _lib
    errors = []
    for cand in ([path] if path else _candidates()):
        try:
            lib = ctypes.CDLL(cand)
            break
        except OSError as e:
            errors.append(f"{cand}: {e}")
    else:
        raise OSError("libvkv not found (set VKV_LIBRARY): " + "; ".join(errors[-3:]))
    P, c_int, c_size = ctypes.POINTER, ctypes.c_int, ctypes.c_size_t
    vp = ctypes.c_void_p
    protos = {
        "vkv_connect": (c_int, [P(_Options), P(vp)]),
        "vkv_close": (None, [vp]),
        "vkv_client_epoch": (ctypes.c_uint64, [vp]),
        "vkv_lookup": (c_int, [vp, P(_Key), c_size, P(c_size), P(c_size)]),
        "vkv_fetch_begin": (c_int, [vp, P(_Key), c_size, P(vp)]),
        "vkv_fetch_count": (c_size, [vp]),
        "vkv_fetch_view": (_View, [vp, c_size]),
        "vkv_fetch_release": (c_int, [vp, vp]),
        "vkv_put_chunk": (c_int, [vp, P(_Key), P(_Shape), P(_KV), P(c_int)]),
        "vkv_delete": (c_int, [vp, P(_Key), c_size, P(c_size)]),
        "vkv_stats": (c_int, [vp, P(_Stat), c_size, P(c_size)]),
        "vkv_ping": (c_int, [vp]),
        "vkv_key_chain": (c_int, [P(_Key), P(ctypes.c_uint32), c_size, P(_ImageRef), c_size,
                                  P(_Key)]),
        "vkv_block_check": (c_int, [vp, c_size, ctypes.c_uint, vp]),
        "vkv_block_shape": (None, [vp, P(_Shape), P(_Spec)]),
        "vkv_decode": (c_int, [vp, c_size, ctypes.c_uint, P(_Dst)]),
        "vkv_decode_paged": (c_int, [vp, c_size, ctypes.c_uint, P(_PagedDst)]),
        "vkv_fetch_decode": (c_int, [vp, c_size, ctypes.c_uint, P(_Dst)]),
        "vkv_fetch_decode_paged": (c_int, [vp, c_size, ctypes.c_uint, P(_PagedDst)]),
        "vkv_fetch_ident": (c_int, [vp, c_size, vp]),
        "vkv_fetch_renew": (c_int, [vp, vp]),
        "vkv_errname": (ctypes.c_char_p, [c_int]),
        "vkv_codec_spec_format": (c_int, [P(_Spec), ctypes.c_char_p, c_size]),
        "vkv_attend": (c_int, [vp, c_size, ctypes.c_uint, P(_AttendArgs)]),
        "vkv_attend_merge": (c_int, [c_size, P(vp), P(vp), c_size, ctypes.c_uint32, vp, vp]),
        "vkv_codec_spec_parse": (c_int, [ctypes.c_char_p, P(_Spec)]),
        "vkv_codec_spec_default": (None, [P(_Spec)]),
        "vkv_codec_encoded_size": (c_int, [P(_Shape), P(_Spec), P(c_size)]),
        "vkv_put_begin": (c_int, [vp, P(_Key), c_size, P(vp)]),
        "vkv_put_data": (vp, [vp]),
        "vkv_put_commit": (c_int, [vp, vp]),
        "vkv_put_abort": (c_int, [vp, vp]),
        "vkv_client_codec": (P(_Spec), [vp]),
    }
    optional = {  # present only in a libvkv built with CUDA
        "vkv_cuda_encode": (c_int, [P(_Shape), P(_Spec), P(_KV), vp, c_size, ctypes.c_uint, vp]),
        "vkv_cuda_decode_paged": (c_int, [vp, c_size, vp, ctypes.c_uint, P(_PagedDst), vp]),
        "vkv_cuda_available": (c_int, []),
    }
    for name, (res, args) in optional.items():
        fn = getattr(lib, name, None)
        if fn is not None:
            fn.restype = res
            fn.argtypes = args
    for name, (res, args) in protos.items():
        fn = getattr(lib, name)
        fn.restype = res
        fn.argtypes = args
    if path is None or _lib is None:
        _lib = lib  # the first library loaded is the process default
    return lib


def _check(rc, what):
    if rc != 0:
        raise VkvError(rc, what)


def key_parse(k):
    """bytes(32) from 32 bytes or 64 hex chars."""
    if isinstance(k, str):
        k = bytes.fromhex(k)
    k = bytes(k)
    if len(k) != KEY_LEN:
        raise ValueError(f"a key is {KEY_LEN} bytes, got {len(k)}")
    return k


def key_hex(k):
    """64 lowercase hex chars of a key."""
    return key_parse(k).hex()


def _keys_array(keys):
    keys = [key_parse(k) for k in keys]
    arr = (_Key * max(len(keys), 1))()
    for i, k in enumerate(keys):
        ctypes.memmove(arr[i].b, k, KEY_LEN)
    return arr, len(keys)


def key_chain(parent, tokens, images=()):
    """Key of one chunk, computed by libvkv's vkv_key_chain (docs/KEYS.md).

    parent: 32 bytes / hex, or None for the first chunk; tokens: ints (u32);
    images: (hash32, offset, length) tuples of images overlapping the chunk.
    """
    lib = load_library()
    par = None
    if parent is not None:
        par = _Key()
        ctypes.memmove(par.b, key_parse(parent), KEY_LEN)
    toks = (ctypes.c_uint32 * max(len(tokens), 1))(*tokens)
    imgs = (_ImageRef * max(len(images), 1))()
    for i, (h, off, ln) in enumerate(images):
        h = key_parse(h)
        ctypes.memmove(imgs[i].hash, h, 32)
        imgs[i].offset, imgs[i].length = off, ln
    out = _Key()
    _check(lib.vkv_key_chain(ctypes.byref(par) if par is not None else None, toks, len(tokens),
                             imgs, len(images), ctypes.byref(out)), "vkv_key_chain")
    return bytes(out.b)


def _np():
    import numpy  # noqa: deferred so that the package imports without numpy
    return numpy


def block_shape(data, size, verify=True):
    """(shape dict, codec string) of a block at address `data` (header
    checked; the payload checksum too unless verify=False)."""
    lib = load_library()
    hdr = ctypes.create_string_buffer(HEADER_SIZE)
    _check(lib.vkv_block_check(data, size, DECODE_VERIFY if verify else 0, hdr),
           "vkv_block_check")
    sh, spec = _Shape(), _Spec()
    lib.vkv_block_shape(hdr, ctypes.byref(sh), ctypes.byref(spec))
    buf = ctypes.create_string_buffer(128)
    lib.vkv_codec_spec_format(ctypes.byref(spec), buf, 128)
    return ({"layers": sh.layers, "tokens": sh.tokens, "kv_heads": sh.kv_heads,
             "head_dim": sh.head_dim, "dtype": "bf16" if sh.dtype == DTYPE_BF16 else "f16",
             "visual_ranges": [(sh.ranges[i].start, sh.ranges[i].start + sh.ranges[i].len)
                               for i in range(sh.n_ranges)]}, buf.value.decode())


def encoded_size(layers, tokens, kv_heads, head_dim, visual_ranges=(), dtype="f16", codec=None):
    """Exact byte size of the block vkv_encode writes for this shape with the
    codec spec string `codec` (None = the project default), every header and
    metadata byte included (vkv_codec_encoded_size)."""
    lib = load_library()
    spec = _Spec()
    if codec is None:
        lib.vkv_codec_spec_default(ctypes.byref(spec))
    else:
        _check(lib.vkv_codec_spec_parse(codec.encode(), ctypes.byref(spec)), "vkv_codec_spec_parse")
    if len(visual_ranges) > MAX_RANGES:
        raise ValueError(f"at most {MAX_RANGES} visual ranges per chunk")
    sh = _Shape(layers, kv_heads, head_dim, tokens, DTYPE_F16 if dtype == "f16" else DTYPE_BF16,
                len(visual_ranges))
    for i, (s, e) in enumerate(visual_ranges):
        sh.ranges[i] = _Range(s, e - s)
    out = ctypes.c_size_t()
    _check(lib.vkv_codec_encoded_size(ctypes.byref(sh), ctypes.byref(spec), ctypes.byref(out)),
           "vkv_codec_encoded_size")
    return out.value


class PagedDst:
    """A paged KV cache to decode into (vkv_paged_dst), built once per set of
    caches and reused for every block: per-layer K and V base addresses
    (ints: host or device pointers the caller keeps alive), page count and
    size, strides in elements (page, slot, head; channels contiguous), and
    what the caches hold (kv_heads, head_dim, dtype "f16"/"bf16"): a block
    of another geometry is refused (VKV_EGEOMETRY) before a byte is written.
    ``decode(view_data, view_size, block_table, first_pos, skip, ident=...)``
    decodes one block; `ident` (16 bytes, Fetch.ident) makes the decoder
    refuse a block bound to another key (VKV_EIDENT). The object owns only
    its ctypes arrays; the caches stay the caller's."""

    def __init__(self, k_ptrs, v_ptrs, num_pages, page_size, page_stride, slot_stride,
                 head_stride, kv_heads, head_dim, dtype="f16", device=False, stream=None):
        n = len(k_ptrs)
        if n == 0 or len(v_ptrs) != n:
            raise ValueError("k_ptrs and v_ptrs: one address per layer, same count")
        self.layers = n
        self._k = (ctypes.c_void_p * n)(*k_ptrs)
        self._v = (ctypes.c_void_p * n)(*v_ptrs)
        self._d = _PagedDst(ctypes.cast(self._k, ctypes.POINTER(ctypes.c_void_p)),
                            ctypes.cast(self._v, ctypes.POINTER(ctypes.c_void_p)),
                            num_pages, page_size, None, 0, 0, page_stride, slot_stride,
                            head_stride, 0,
                            _Geometry(n, kv_heads, head_dim, 0,
                                      DTYPE_F16 if dtype == "f16" else DTYPE_BF16), None)
        self.device = bool(device)
        self.stream = stream
        self._lib = load_library()
        if self.device and getattr(self._lib, "vkv_cuda_decode_paged", None) is None:
            raise VkvError(error_code("VKV_ENOTSUP"),
                           "PagedDst: device caches need a libvkv built with CUDA")

    def decode(self, data, size, block_table, first_pos, skip=0, verify=True, hdr=None,
               ident=None):
        """Decodes the block at (data, size) (its tokens at positions
        first_pos.., tokens before first_pos+skip left alone) through
        block_table (an int32 ctypes array, or a sequence of ints). Raises
        VkvError (VKV_EINVAL when the table does not cover the block, ...);
        nothing is written then. hdr: host address of a copy of a device
        block's header (device caches; None = the decoder copies it)."""
        if not isinstance(block_table, ctypes.Array):
            block_table = (ctypes.c_int32 * max(len(block_table), 1))(*block_table)
        d = self._d
        d.block_table = ctypes.cast(block_table, ctypes.POINTER(ctypes.c_int32))
        d.block_table_len = len(block_table)
        d.first_pos = first_pos
        d.skip_tokens = skip
        idbuf = None
        if ident is not None:
            idbuf = ctypes.create_string_buffer(bytes(ident), 16)
        d.ident = ctypes.cast(idbuf, ctypes.c_void_p) if idbuf is not None else None
        flags = DECODE_VERIFY if verify else 0
        if self.device:
            rc = self._lib.vkv_cuda_decode_paged(data, size, hdr, flags, ctypes.byref(d),
                                                 self.stream)
        else:
            rc = self._lib.vkv_decode_paged(data, size, flags, ctypes.byref(d))
        _check(rc, "vkv_decode_paged")


def decode_block(data, size, _decode=None):
    """Decodes a block (address, size) into (K, V) numpy arrays
    [layers, tokens, kv_heads, head_dim]: float16 for f16 blocks, uint16 bit
    patterns for bf16 blocks (numpy has no bfloat16).

    The arrays are sized from ONE validated copy of the header, and the
    decoder is told that geometry: if the block in shared memory changes in
    between, libvkv refuses it (VKV_EGEOMETRY) instead of writing past the
    arrays. `_decode(dst_pointer)` replaces the plain vkv_decode (Fetch.decode
    passes libvkv's identity-checking vkv_fetch_decode)."""
    np = _np()
    lib = load_library()
    hdr = ctypes.create_string_buffer(HEADER_SIZE)
    _check(lib.vkv_block_check(data, size, 0, hdr), "vkv_block_check")
    sh, spec = _Shape(), _Spec()
    lib.vkv_block_shape(hdr, ctypes.byref(sh), ctypes.byref(spec))
    L, T, H, D = sh.layers, sh.tokens, sh.kv_heads, sh.head_dim
    dt = np.float16 if sh.dtype == DTYPE_F16 else np.uint16
    k = np.empty((L, T, H, D), dtype=dt)
    v = np.empty((L, T, H, D), dtype=dt)
    kp = (ctypes.c_void_p * max(L, 1))(*[k.ctypes.data + l * k.strides[0] for l in range(L)])
    vp = (ctypes.c_void_p * max(L, 1))(*[v.ctypes.data + l * v.strides[0] for l in range(L)])
    dst = _Dst(ctypes.cast(kp, ctypes.POINTER(ctypes.c_void_p)),
               ctypes.cast(vp, ctypes.POINTER(ctypes.c_void_p)), H * D, D,
               _Geometry(L, H, D, T, sh.dtype), None)
    if _decode is None:
        _check(lib.vkv_decode(data, size, DECODE_VERIFY, ctypes.byref(dst)), "vkv_decode")
    else:
        _decode(ctypes.byref(dst))
    return k, v


def _as_numpy(x):
    """(numpy array, was_torch) for a numpy array or a CPU torch tensor (bf16
    torch tensors are widened to float32: numpy has no bfloat16)."""
    np = _np()
    if type(x).__module__.startswith("torch"):
        import torch  # noqa: optional dependency
        t = x.detach()
        if t.device.type != "cpu":
            raise VkvError(error_code("VKV_ENOTSUP"),
                           "attend: CUDA tensors need vkv_cuda_attend (not bound)")
        if t.dtype == torch.bfloat16:
            t = t.float()
        return np.ascontiguousarray(t.numpy()), True
    return np.asarray(x), False


def _back(a, was_torch):
    if was_torch:
        import torch  # noqa: optional dependency
        return torch.from_numpy(a)
    return a


def attend_block(data, size, layer, q, scale=None, mask=None, kv_heads=None, layers=0,
                 ident=None):
    """Attention of decode queries over layer `layer` of the block at address
    `data` (`size` bytes), straight on its 1-bit codes (vkv_attend,
    docs/ATTEND.md). q: [n_q, n_heads, head_dim] or [n_heads, head_dim],
    float16 / float32 numpy arrays or CPU torch tensors (bf16 included).
    scale defaults to 1/sqrt(head_dim); mask: None or [n_q, tokens] (nonzero
    = attend); kv_heads / layers: what the model expects (default: the
    block's kv_heads; layers 0 = any); ident: None or the 16 bytes the block
    must be bound to (VKV_EIDENT otherwise). Returns (out [.., n_heads, head_dim]
    float32, lse [.., n_heads] float32), torch tensors for torch input."""
    np = _np()
    lib = load_library()
    qa, was_torch = _as_numpy(q)
    squeeze = qa.ndim == 2
    if squeeze:
        qa = qa[None]
    if qa.ndim != 3:
        raise ValueError("q must be [n_q, n_heads, head_dim] or [n_heads, head_dim]")
    if qa.dtype == np.float16:
        qdt = ATTEND_F16
    else:
        qa, qdt = qa.astype(np.float32, copy=False), ATTEND_F32
    qa = np.ascontiguousarray(qa)
    hdr = ctypes.create_string_buffer(HEADER_SIZE)
    _check(lib.vkv_block_check(data, size, 0, hdr), "vkv_block_check")
    sh, spec = _Shape(), _Spec()
    lib.vkv_block_shape(hdr, ctypes.byref(sh), ctypes.byref(spec))
    n_q, n_heads, hd = qa.shape
    out = np.empty((n_q, n_heads, hd), dtype=np.float32)
    lse = np.empty((n_q, n_heads), dtype=np.float32)
    a = _AttendArgs()
    a.kv_heads = sh.kv_heads if kv_heads is None else kv_heads
    a.head_dim, a.layers, a.layer = hd, layers, layer
    a.n_q, a.n_heads, a.q_dtype, a.q = n_q, n_heads, qdt, qa.ctypes.data
    a.scale = (1.0 / hd ** 0.5) if scale is None else scale
    m = None
    if mask is not None:
        m, _ = _as_numpy(mask)
        m = np.ascontiguousarray((m != 0).astype(np.uint8).reshape(n_q, -1))
        a.mask, a.mask_tokens = m.ctypes.data, m.shape[1]
    a.out, a.lse = out.ctypes.data, lse.ctypes.data
    idbuf = None
    if ident is not None:
        idbuf = ctypes.create_string_buffer(bytes(ident), 16)
        a.ident = ctypes.cast(idbuf, ctypes.c_void_p)
    _check(lib.vkv_attend(data, size, 0, ctypes.byref(a)), "vkv_attend")
    if squeeze:
        out, lse = out[0], lse[0]
    return _back(out, was_torch), _back(lse, was_torch)


def attend_merge(outs, lses):
    """Merges partial attention results over disjoint token sets (vkv_attend
    results, or any attention that returns its natural-log log-sum-exp) into
    one softmax (vkv_attend_merge). outs: list of [..., head_dim], lses: list
    of [...] of matching shapes. Returns (out float32, lse float32)."""
    np = _np()
    lib = load_library()
    if len(outs) != len(lses) or not outs:
        raise ValueError("need as many lses as outs, at least one")
    conv = [_as_numpy(o) for o in outs]
    was_torch = conv[0][1]
    os_ = [np.ascontiguousarray(o.astype(np.float32, copy=False)) for o, _ in conv]
    ls_ = [np.ascontiguousarray(_as_numpy(x)[0].astype(np.float32, copy=False)) for x in lses]
    shape = os_[0].shape
    for o, l in zip(os_, ls_):
        if o.shape != shape or l.shape != shape[:-1]:
            raise ValueError("outs must share one shape and lses be outs' shape minus head_dim")
    hd = shape[-1]
    rows = int(np.prod(shape[:-1], dtype=np.int64))
    out = np.empty(shape, dtype=np.float32)
    lse = np.empty(shape[:-1], dtype=np.float32)
    po = (ctypes.c_void_p * len(os_))(*[o.ctypes.data for o in os_])
    pl = (ctypes.c_void_p * len(ls_))(*[l.ctypes.data for l in ls_])
    _check(lib.vkv_attend_merge(len(os_), po, pl, rows, hd, out.ctypes.data, lse.ctypes.data),
           "vkv_attend_merge")
    return _back(out, was_torch), _back(lse, was_torch)


class Fetch:
    """Pinned blocks of one FETCH. Use as a context manager; the pins (and the
    memory behind ``block()``) go away at release()."""

    def __init__(self, client, handle):
        self._client = client
        self._h = handle

    def __len__(self):
        return 0 if not self._h else self._client._lib.vkv_fetch_count(self._h)

    def _view(self, i):
        if not self._h or not 0 <= i < len(self):
            raise IndexError(i)
        return self._client._lib.vkv_fetch_view(self._h, i)

    def block(self, i):
        """The raw block bytes of block i (a copy)."""
        v = self._view(i)
        return ctypes.string_at(v.data, v.size)

    def shape(self, i):
        """Shape dict of block i (layers, tokens, kv_heads, head_dim, dtype, visual_ranges)."""
        v = self._view(i)
        return block_shape(v.data, v.size)[0]

    def decode(self, i):
        """(K, V) numpy arrays of block i, decoded straight from the daemon's memory."""
        if self._client.backend_is_cuda:
            raise VkvError(error_code("VKV_ENOTSUP"),
                           "decode: CUDA-backend views are device pointers")
        v = self._view(i)
        lib = self._client._lib
        return decode_block(v.data, v.size, lambda dst: _check(
            lib.vkv_fetch_decode(self._h, i, DECODE_VERIFY, dst), "vkv_fetch_decode"))

    def ident(self, i):
        """The 16-byte identity block i must carry (its namespace and key)."""
        if not self._h or not 0 <= i < len(self):
            raise IndexError(i)
        buf = ctypes.create_string_buffer(16)
        _check(self._client._lib.vkv_fetch_ident(self._h, i, buf), "vkv_fetch_ident")
        return buf.raw

    def renew(self):
        """Extends the pins' lease by the daemon's lease TTL (VkvError
        VKV_ELEASE if it already expired)."""
        _check(self._client._lib.vkv_fetch_renew(self._client._c, self._h), "vkv_fetch_renew")

    def attend(self, i, layer, q, scale=None, mask=None, kv_heads=None):
        """(out, lse) of q over layer `layer` of block i, computed on its 1-bit
        codes in the daemon's memory (attend_block; no fp16 copy)."""
        if self._client.backend_is_cuda:
            raise VkvError(error_code("VKV_ENOTSUP"),
                           "attend: CUDA-backend views are device pointers")
        v = self._view(i)
        return attend_block(v.data, v.size, layer, q, scale, mask, kv_heads,
                            ident=self.ident(i))

    def view(self, i):
        """(address, size) of block i in the daemon's memory (valid until release)."""
        v = self._view(i)
        return v.data, v.size

    def decode_torch(self, i, device=None):
        """(K, V) as torch tensors (via DLPack from the numpy arrays), moved to
        `device` when given. Raises ImportError without torch."""
        import torch  # noqa: optional dependency
        k, v = self.decode(i)
        tk = torch.utils.dlpack.from_dlpack(k)
        tv = torch.utils.dlpack.from_dlpack(v)
        if device is not None:
            tk, tv = tk.to(device), tv.to(device)
        return tk, tv

    def release(self):
        """Unpins the blocks. Raises VkvError VKV_ELEASE if the lease had
        expired (the daemon kept the memory until now; nothing was lost)."""
        if self._h:
            h, self._h = self._h, None
            _check(self._client._lib.vkv_fetch_release(self._client._c, h), "vkv_fetch_release")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()

    def __del__(self):
        try:
            self.release()
        except Exception:
            pass


class Client:
    """One session with the local vkvd (vkv_connect). Not thread-safe per
    object from Python's side beyond what libvkv serializes; use one per thread."""

    def __init__(self, rundir=None, ns=None, codec=None, timeout_ms=0, name=None,
                 admin=False, ns_is_full=False, library=None):
        self._lib = load_library(library)
        enc = lambda s: s.encode() if isinstance(s, str) else s  # noqa: E731
        self._opts = _Options(enc(rundir), enc(ns), enc(codec), enc(name or f"py-{os.getpid()}"),
                              int(timeout_ms), int(bool(admin)), int(bool(ns_is_full)))
        h = ctypes.c_void_p()
        _check(self._lib.vkv_connect(ctypes.byref(self._opts), ctypes.byref(h)), "vkv_connect")
        self._c = h
        self.codec = codec.decode() if isinstance(codec, bytes) else codec
        self._cuda = None

    @property
    def backend_is_cuda(self):
        """True when vkvd runs the CUDA backend (views are device pointers);
        read once from STATS (backend_cuda)."""
        if self._cuda is None:
            self._cuda = bool(self.stats().get("backend_cuda", 0))
        return self._cuda

    def close(self):
        if getattr(self, "_c", None):
            self._lib.vkv_close(self._c)
            self._c = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        self.close()

    @property
    def epoch(self):
        return self._lib.vkv_client_epoch(self._c)

    def lookup(self, keys):
        """(hits, cold): longest cached prefix of keys and how many of it are cold."""
        arr, n = _keys_array(keys)
        hits, cold = ctypes.c_size_t(), ctypes.c_size_t()
        _check(self._lib.vkv_lookup(self._c, arr, n, ctypes.byref(hits), ctypes.byref(cold)),
               "vkv_lookup")
        return hits.value, cold.value

    def fetch(self, keys):
        """Pins the longest cached prefix of keys; returns a Fetch (context manager)."""
        arr, n = _keys_array(keys)
        h = ctypes.c_void_p()
        _check(self._lib.vkv_fetch_begin(self._c, arr, n, ctypes.byref(h)), "vkv_fetch_begin")
        return Fetch(self, h)

    def put(self, key, k, v, visual_ranges=(), dtype="f16"):
        """Encodes and stores one chunk. k, v: arrays [layers, tokens, kv_heads,
        head_dim], float16 (dtype "f16") or uint16 bfloat16 bits (dtype "bf16").
        visual_ranges: (start, end) half-open token ranges. Returns True when
        stored, False when the key existed or another worker is writing it."""
        np = _np()
        want = np.float16 if dtype == "f16" else np.uint16
        k = np.ascontiguousarray(k, dtype=want)
        v = np.ascontiguousarray(v, dtype=want)
        if k.ndim != 4 or k.shape != v.shape:
            raise ValueError("k and v must have the same shape [layers, tokens, kv_heads, head_dim]")
        if len(visual_ranges) > MAX_RANGES:
            raise ValueError(f"at most {MAX_RANGES} visual ranges per chunk")
        L, T, H, D = k.shape
        sh = _Shape(L, H, D, T, DTYPE_F16 if dtype == "f16" else DTYPE_BF16, len(visual_ranges))
        for i, (s, e) in enumerate(visual_ranges):
            sh.ranges[i] = _Range(s, e - s)
        kp = (ctypes.c_void_p * max(L, 1))(*[k.ctypes.data + l * k.strides[0] for l in range(L)])
        vp = (ctypes.c_void_p * max(L, 1))(*[v.ctypes.data + l * v.strides[0] for l in range(L)])
        src = _KV(ctypes.cast(kp, ctypes.POINTER(ctypes.c_void_p)),
                  ctypes.cast(vp, ctypes.POINTER(ctypes.c_void_p)), H * D, D)
        kk = _Key()
        ctypes.memmove(kk.b, key_parse(key), KEY_LEN)
        stored = ctypes.c_int()
        _check(self._lib.vkv_put_chunk(self._c, ctypes.byref(kk), ctypes.byref(sh),
                                       ctypes.byref(src), ctypes.byref(stored)), "vkv_put_chunk")
        return bool(stored.value)

    def put_layers(self, key, k_ptrs, v_ptrs, tokens, kv_heads, head_dim, token_stride,
                   head_stride, visual_ranges=(), dtype="f16"):
        """Encodes and stores one chunk from per-layer host addresses (ints:
        element (t, h, d) of layer l at k_ptrs[l] + 2*(t*token_stride +
        h*head_stride + d)); the memory is the caller's and only read during
        the call. Same result as put()."""
        L = len(k_ptrs)
        if L == 0 or len(v_ptrs) != L:
            raise ValueError("one K and one V address per layer")
        if len(visual_ranges) > MAX_RANGES:
            raise ValueError(f"at most {MAX_RANGES} visual ranges per chunk")
        sh = _Shape(L, kv_heads, head_dim, tokens, DTYPE_F16 if dtype == "f16" else DTYPE_BF16,
                    len(visual_ranges))
        for i, (s, e) in enumerate(visual_ranges):
            sh.ranges[i] = _Range(s, e - s)
        kp = (ctypes.c_void_p * L)(*k_ptrs)
        vp = (ctypes.c_void_p * L)(*v_ptrs)
        src = _KV(ctypes.cast(kp, ctypes.POINTER(ctypes.c_void_p)),
                  ctypes.cast(vp, ctypes.POINTER(ctypes.c_void_p)), token_stride, head_stride)
        kk = _Key()
        ctypes.memmove(kk.b, key_parse(key), KEY_LEN)
        stored = ctypes.c_int()
        _check(self._lib.vkv_put_chunk(self._c, ctypes.byref(kk), ctypes.byref(sh),
                                       ctypes.byref(src), ctypes.byref(stored)), "vkv_put_chunk")
        return bool(stored.value)

    def put_device(self, key, k_ptrs, v_ptrs, tokens, kv_heads, head_dim, token_stride,
                   head_stride, visual_ranges=(), dtype="f16", stream=None):
        """put_layers() for a chunk in GPU memory on vkvd's CUDA backend:
        reserves the block (vkv_put_begin; its memory is device memory there),
        encodes straight into it with vkv_cuda_encode (synchronous: the
        header and checksum are complete) and commits. k_ptrs/v_ptrs are
        device addresses the caller keeps alive during the call. Returns False
        when the key exists or another worker is writing it."""
        fn = getattr(self._lib, "vkv_cuda_encode", None)
        if fn is None:
            raise VkvError(error_code("VKV_ENOTSUP"), "put_device: libvkv was built without CUDA")
        L = len(k_ptrs)
        if L == 0 or len(v_ptrs) != L or len(visual_ranges) > MAX_RANGES:
            raise ValueError("one K and one V address per layer; at most 8 visual ranges")
        sh = _Shape(L, kv_heads, head_dim, tokens, DTYPE_F16 if dtype == "f16" else DTYPE_BF16,
                    len(visual_ranges))
        for i, (s, e) in enumerate(visual_ranges):
            sh.ranges[i] = _Range(s, e - s)
        spec = self._lib.vkv_client_codec(self._c)
        size = ctypes.c_size_t()
        _check(self._lib.vkv_codec_encoded_size(ctypes.byref(sh), spec, ctypes.byref(size)),
               "vkv_codec_encoded_size")
        kk = _Key()
        ctypes.memmove(kk.b, key_parse(key), KEY_LEN)
        p = ctypes.c_void_p()
        rc = self._lib.vkv_put_begin(self._c, ctypes.byref(kk), size.value, ctypes.byref(p))
        if rc in (error_code("VKV_EEXIST"), error_code("VKV_EBUSY")):
            return False
        _check(rc, "vkv_put_begin")
        kp = (ctypes.c_void_p * L)(*k_ptrs)
        vp = (ctypes.c_void_p * L)(*v_ptrs)
        src = _KV(ctypes.cast(kp, ctypes.POINTER(ctypes.c_void_p)),
                  ctypes.cast(vp, ctypes.POINTER(ctypes.c_void_p)), token_stride, head_stride)
        rc = fn(ctypes.byref(sh), spec, ctypes.byref(src), self._lib.vkv_put_data(p), size.value,
                0, stream)
        if rc != 0:
            self._lib.vkv_put_abort(self._c, p)
            raise VkvError(rc, "vkv_cuda_encode")
        _check(self._lib.vkv_put_commit(self._c, p), "vkv_put_commit")
        return True

    def delete(self, keys):
        """Deletes keys of this namespace; returns how many existed."""
        arr, n = _keys_array(keys)
        out = ctypes.c_size_t()
        _check(self._lib.vkv_delete(self._c, arr, n, ctypes.byref(out)), "vkv_delete")
        return out.value

    def stats(self):
        """The daemon's counters as a dict name -> int."""
        cap = 512
        arr = (_Stat * cap)()
        n = ctypes.c_size_t()
        _check(self._lib.vkv_stats(self._c, arr, cap, ctypes.byref(n)), "vkv_stats")
        return {arr[i].name.decode(): arr[i].value for i in range(min(n.value, cap))}

    def ping(self):
        _check(self._lib.vkv_ping(self._c), "vkv_ping")
