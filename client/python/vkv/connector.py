"""vkv.connector: the vLLM-independent core of vkv's vLLM KV connector.

``vkv.vllm.VkvConnector`` is a thin adapter that turns vLLM's objects into
the plain values used here; everything that decides something lives in this
module and is tested without vLLM (tests/client/connector_test.py).

Model
-----
* vLLM hashes every full block of ``block_size`` tokens (16 by default) with
  a chained hash (``prefix_caching_hash_algo=sha256_cbor``: 32-byte SHA-256
  over the parent hash, the block's token ids and extra keys such as the
  images' mm hashes). A vkv *chunk* is ``chunk_tokens / block_size``
  consecutive vLLM blocks, keyed by the hash of its LAST block, which already
  chains the whole prefix. Only full chunks are stored; a lookup answers the
  longest cached chunk prefix. Keys are the full 32 bytes, never shortened.
* Scheduler side (one process): ``SchedulerCore.num_new_matched_tokens`` is a
  LOOKUP (no side effect in the daemon, nothing pinned), ``on_alloc``
  records a load plan, ``build_meta`` emits the step's loads and the saves
  of chunks that this step completes, ``finished`` forgets the request.
* Worker side (one process per TP rank): ``WorkerCore.register`` checks the
  paged KV tensors and prepares a ``vkv.PagedDst``; ``load`` FETCHes (pins)
  each planned chunk prefix, decodes every chunk straight into the pages
  with ``vkv_decode_paged`` (strides of NHD/HND, tokens the request already
  had left alone) and releases the pins before it returns; chunks it could
  not supply (evicted since the lookup, corrupt, wrong shape) become load
  errors: the ids of the vLLM blocks it promised and did not write, which
  vLLM recomputes. ``save`` encodes each newly full chunk of all layers once
  (one ALLOC + COMMIT per chunk, not per vLLM block).
* Hash safety: ``check_hash_safety`` refuses configurations whose block
  hashes differ between processes; ``namespace`` builds the model
  fingerprint (model, revision, TP/PP rank, dtype, KV format).

Tensors are torch tensors (CPU, or CUDA when libvkv has the CUDA codec) or
numpy arrays; ``_tinfo`` reads their address, shape, strides and dtype.
"""
import ctypes
import logging
import os
import threading
import time
from dataclasses import dataclass, field

import vkv

log = logging.getLogger("vkv.connector")

KEY_LEN = 32
DEFAULT_CHUNK_TOKENS = 256

# vLLM's prefix_caching_hash_algo values and whether their block hashes are
# 32 bytes that agree across processes (given a fixed PYTHONHASHSEED).
SAFE_HASH_ALGOS = {"sha256_cbor": True, "sha256": True}


class HashSafetyError(RuntimeError):
    """Block hashes would not agree across processes: refusing to start."""


def check_hash_safety(hash_algo, env=None, none_hash=None, expected_none_hash=None):
    """Raises HashSafetyError unless vLLM's block hashes are 32-byte values
    that every process computes alike.

    hash_algo: vLLM's prefix_caching_hash_algo. env: the environment
    (os.environ). none_hash: the root of vLLM's hash chain as this process
    computed it (kv_cache_utils.NONE_HASH) and expected_none_hash: the value
    a fixed PYTHONHASHSEED gives (hash_fn(seed)); when both are given they
    must be equal (the chain was seeded from the environment, not from
    os.urandom). Returns a list of warnings (strings) for what is allowed but
    worth saying."""
    env = os.environ if env is None else env
    warnings = []
    if hash_algo not in SAFE_HASH_ALGOS:
        raise HashSafetyError(
            f"prefix_caching_hash_algo={hash_algo!r}: vkv needs 32-byte block hashes that agree "
            "across processes; start vLLM with --prefix-caching-hash-algo sha256_cbor")
    if hash_algo == "sha256":
        warnings.append("prefix_caching_hash_algo=sha256 hashes pickled Python objects: keys agree "
                        "only between identical Python/vLLM versions; sha256_cbor is portable")
    seed = env.get("PYTHONHASHSEED")
    if seed is None or seed == "":
        raise HashSafetyError(
            "PYTHONHASHSEED is not set: vLLM then seeds its block-hash chain with os.urandom, so "
            "no two processes share a key (0% hits). Export PYTHONHASHSEED=0 (any fixed value, the "
            "same for every vLLM instance that shares a vkvd) before starting vLLM")
    if seed == "random":
        warnings.append("PYTHONHASHSEED=random: vLLM's chain root is hash('random'), fixed, but "
                        "Python's own str hashing is randomized; prefer a number")
    if none_hash is not None and expected_none_hash is not None:
        if bytes(none_hash) != bytes(expected_none_hash):
            raise HashSafetyError(
                "vLLM's block-hash root (NONE_HASH) differs from the one PYTHONHASHSEED="
                f"{seed!r} gives: it was initialized before PYTHONHASHSEED was set or with "
                "another hash function; set PYTHONHASHSEED in the environment that starts vLLM")
    return warnings


def namespace(model, revision, tp_rank, tp_size, dtype, kv_format, pp_rank=0, pp_size=1):
    """The model fingerprint every process of one deployment shares (libvkv
    appends the codec spec). kv_format names what a token's KV is, e.g.
    "L32xH8xD128" (layers of this pipeline stage, KV heads of this TP rank,
    head size): two instances match only when all of it is equal."""
    for name, v in (("model", model), ("dtype", dtype), ("kv_format", kv_format)):
        if not v or "#" in str(v):
            raise ValueError(f"namespace: {name} must be non-empty and free of '#'")
    rev = revision or "main"
    return (f"{model}@{rev}|tp{int(tp_rank)}of{int(tp_size)}|pp{int(pp_rank)}of{int(pp_size)}"
            f"|{dtype}|{kv_format}")


def chunk_keys(block_hashes, blocks_per_chunk):
    """Keys of the full chunks of a prompt: the hash of the last vLLM block
    of each chunk (32 bytes, unchanged). block_hashes: vLLM's per-block
    hashes (bytes-like of 32 bytes each). Raises ValueError on a hash that
    is not 32 bytes (a truncated or process-local hash is never a key)."""
    out = []
    for c in range(len(block_hashes) // blocks_per_chunk):
        h = block_hashes[(c + 1) * blocks_per_chunk - 1]
        h = bytes(h) if not isinstance(h, bytes) else h
        if len(h) != KEY_LEN:
            raise ValueError(f"block hash of {len(h)} bytes: vkv keys are the full {KEY_LEN}-byte "
                             "sha256_cbor hashes")
        out.append(h)
    return out


def chunk_visual_ranges(mm_ranges, chunk_start, chunk_tokens, max_ranges=vkv.MAX_RANGES):
    """Half-open visual token ranges of one chunk, relative to its start,
    from the request's image placeholder ranges (absolute (start, end)). At
    most max_ranges are kept (the largest); tokens of the others stay
    unquantized (exact, merely larger)."""
    lo, hi = chunk_start, chunk_start + chunk_tokens
    rs = sorted((max(s, lo) - lo, min(e, hi) - lo) for s, e in mm_ranges if s < hi and e > lo)
    merged = []
    for s, e in rs:
        if merged and s <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], e))
        else:
            merged.append((s, e))
    if len(merged) > max_ranges:
        merged = sorted(sorted(merged, key=lambda r: r[0] - r[1])[:max_ranges])
    return merged


# ---- stats ---------------------------------------------------------------------------------
class Stats:
    """Counters of one connector half, named after LMCache's where the
    meaning is the same, so dashboards compare. Scheduler: num_lookups,
    num_lookup_tokens (prompt tokens of scheduled requests),
    num_lookup_hit_tokens (tokens promised to vLLM) -> lookup_hit_rate.
    Worker: num_requested_tokens (tokens the step's loads were to supply),
    num_hit_tokens (tokens decoded) -> retrieve_hit_rate, load errors,
    chunks and encoded bytes loaded/stored, seconds spent. Thread-safe;
    ``snapshot(reset)`` returns a dict with the two rates added."""

    COUNTERS = ("num_lookups", "num_lookup_tokens", "num_lookup_hit_tokens",
                "num_requested_tokens", "num_hit_tokens", "num_load_error_blocks",
                "num_loaded_chunks", "num_stored_chunks", "num_store_skipped_chunks",
                "bytes_loaded", "bytes_stored", "load_seconds", "store_seconds")

    def __init__(self):
        self._lock = threading.Lock()
        self._v = dict.fromkeys(self.COUNTERS, 0)

    def add(self, **kw):
        with self._lock:
            for k, v in kw.items():
                self._v[k] += v

    def snapshot(self, reset=False):
        with self._lock:
            d = dict(self._v)
            if reset:
                self._v = dict.fromkeys(self.COUNTERS, 0)
        req, look = d["num_requested_tokens"], d["num_lookup_tokens"]
        d["retrieve_hit_rate"] = d["num_hit_tokens"] / req if req else 0.0
        d["lookup_hit_rate"] = d["num_lookup_hit_tokens"] / look if look else 0.0
        return d


# ---- metadata (scheduler -> workers; plain picklable values) -------------------------------
@dataclass
class LoadSpec:
    """Load the chunks c0.. (keys) of a request into its pages: positions
    [start_pos, end_pos) were promised to vLLM; block_ids are the request's
    vLLM block ids from position 0."""
    req_id: str
    c0: int
    keys: list
    start_pos: int
    end_pos: int
    block_ids: list


@dataclass
class SaveSpec:
    """Store chunk `chunk` (key) of a request from its pages block_ids (the
    chunk's own vLLM blocks, in order) with these visual ranges."""
    req_id: str
    chunk: int
    key: bytes
    block_ids: list
    visual_ranges: list


@dataclass
class ConnectorMeta:
    loads: list = field(default_factory=list)
    saves: list = field(default_factory=list)


# ---- scheduler side ------------------------------------------------------------------------
@dataclass
class _Tracker:
    block_ids: list
    num_prompt_tokens: int
    hits: int = 0          # chunks vkv had at the last lookup
    next_save: int = 0     # first chunk not yet saved or found cached


class SchedulerCore:
    """Decides what to load and save. `lookup` is a callable keys -> cached
    chunk prefix length (the minimum over every TP rank's namespace: a rank
    that lacks a chunk cannot load it); it must have no side effects."""

    def __init__(self, lookup, block_size, chunk_tokens=DEFAULT_CHUNK_TOKENS, stats=None):
        if block_size <= 0 or chunk_tokens <= 0 or chunk_tokens % block_size:
            raise ValueError(f"chunk_tokens ({chunk_tokens}) must be a positive multiple of "
                             f"vLLM's block_size ({block_size})")
        self.lookup = lookup
        self.block_size = block_size
        self.chunk_tokens = chunk_tokens
        self.bpc = chunk_tokens // block_size
        self.stats = stats or Stats()
        self._trackers = {}     # req_id -> _Tracker
        self._pending = {}      # req_id -> LoadSpec, until build_meta sends it
        self._last_lookup = {}  # req_id -> (hits, num_computed) of the last lookup (memo only)

    def num_new_matched_tokens(self, req_id, block_hashes, num_tokens, num_computed_tokens):
        """Tokens beyond num_computed_tokens that vkv can supply (a LOOKUP;
        pins nothing). Never all of the prompt: vLLM must compute >= 1 token."""
        keys = chunk_keys(block_hashes, self.bpc)
        hits = self.lookup(keys) if keys else 0
        self._last_lookup[req_id] = (hits, num_computed_tokens)
        self.stats.add(num_lookups=1)
        cached = min(hits * self.chunk_tokens, max(num_tokens - 1, 0))
        return max(cached - num_computed_tokens, 0)

    def on_alloc(self, req_id, block_ids, num_prompt_tokens, num_external_tokens, block_hashes):
        """vLLM allocated pages (block_ids: all of the request's, from
        position 0) and accepted num_external_tokens from us after the
        num_computed_tokens it gave the last num_new_matched_tokens call.
        Records the load plan (sent by the next build_meta) and (re)starts
        tracking the request for saves; after a preemption the request comes
        through here again."""
        hits, num_computed_tokens = self._last_lookup.pop(req_id, (0, None))
        if num_external_tokens > 0 and num_computed_tokens is None:
            raise ValueError(f"request {req_id}: external tokens without a lookup")
        tr = self._trackers.get(req_id)
        if tr is None:
            tr = self._trackers[req_id] = _Tracker(list(block_ids), num_prompt_tokens)
            self.stats.add(num_lookup_tokens=num_prompt_tokens)
        else:
            tr.block_ids = list(block_ids)
        tr.hits = hits
        self._pending.pop(req_id, None)
        if num_external_tokens <= 0:
            return
        end = num_computed_tokens + num_external_tokens
        c0 = num_computed_tokens // self.chunk_tokens
        c1 = -(-end // self.chunk_tokens)
        keys = chunk_keys(block_hashes, self.bpc)[c0:c1]
        if len(keys) != c1 - c0:
            raise ValueError(f"request {req_id}: {num_external_tokens} external tokens but only "
                             f"{len(keys) + c0} full chunks hashed")
        self._pending[req_id] = LoadSpec(req_id, c0, keys, num_computed_tokens, end,
                                         list(block_ids))
        self.stats.add(num_lookup_hit_tokens=num_external_tokens)

    def build_meta(self, scheduled, block_hashes_of, visual_ranges_of):
        """Metadata of one step. scheduled: iterable of (req_id, block_ids or
        None, replace, num_computed_tokens before this step,
        num_scheduled_tokens): block_ids replace the request's (replace, a new
        or resumed request) or are appended to them.
        block_hashes_of(req_id) / visual_ranges_of(req_id): the request's
        current block hashes and image ranges (absolute (start, end)).
        Loads go out once; a chunk is saved in the step that computes its
        last token (prompt chunks only; not when a LOOKUP finds it cached;
        again when vLLM recomputes it after a load error)."""
        meta = ConnectorMeta(loads=list(self._pending.values()))
        self._pending.clear()
        for req_id, new_ids, replace, computed, scheduled_n in scheduled:
            tr = self._trackers.get(req_id)
            if tr is None:
                continue
            if replace and new_ids is not None:
                tr.block_ids = list(new_ids)
            elif new_ids:
                tr.block_ids.extend(new_ids)
            if computed < tr.next_save * self.chunk_tokens:
                # vLLM recomputes from `computed` (load errors, preemption):
                # chunks past it are computed again and may be saved again
                tr.next_save = computed // self.chunk_tokens
            done = min(computed + scheduled_n, tr.num_prompt_tokens)
            full = done // self.chunk_tokens
            if full <= tr.next_save:
                continue
            keys = chunk_keys(block_hashes_of(req_id), self.bpc)
            full = min(full, len(keys))
            # chunks vkv has now (loaded ones, or another worker's) are not
            # saved again; a LOOKUP, no side effect
            have = self.lookup(keys[:full])
            ranges = visual_ranges_of(req_id)
            for c in range(tr.next_save, full):
                if c < have:
                    tr.next_save = c + 1
                    continue
                ids = tr.block_ids[c * self.bpc:(c + 1) * self.bpc]
                if len(ids) != self.bpc:
                    break
                meta.saves.append(SaveSpec(req_id, c, keys[c], ids,
                                           chunk_visual_ranges(ranges, c * self.chunk_tokens,
                                                               self.chunk_tokens)))
                tr.next_save = c + 1
        return meta

    def finished(self, req_id):
        """The request finished, was aborted or is gone: forget every bit of
        its state (a load plan not yet sent is dropped; nothing is pinned on
        the scheduler side, and workers hold pins only inside load())."""
        self._trackers.pop(req_id, None)
        self._pending.pop(req_id, None)
        self._last_lookup.pop(req_id, None)

    def tracked(self):
        """Request ids with state (for tests and leak checks)."""
        return set(self._trackers) | set(self._pending) | set(self._last_lookup)


# ---- tensors -------------------------------------------------------------------------------
@dataclass
class _TInfo:
    ptr: int
    shape: tuple
    strides: tuple  # elements
    dtype: str      # "f16" | "bf16" | other
    device: str     # "cpu" | "cuda:N"


def _tinfo(t):
    """Address, shape, strides (elements), dtype and device of a torch tensor
    or numpy array (bf16 numpy arrays are uint16 bit patterns: give them as
    torch tensors, or name the dtype at register())."""
    if hasattr(t, "data_ptr") and hasattr(t, "stride"):  # torch
        name = str(t.dtype).replace("torch.", "")
        dt = {"float16": "f16", "bfloat16": "bf16"}.get(name, name)
        return _TInfo(t.data_ptr(), tuple(t.shape), tuple(t.stride()), dt, str(t.device))
    if hasattr(t, "__array_interface__"):  # numpy
        ai = t.__array_interface__
        isz = t.itemsize
        strides = ai["strides"]
        if strides is None:  # C-contiguous
            strides, acc = [], 1
            for n in reversed(t.shape):
                strides.insert(0, acc * isz)
                acc *= n
        dt = {"float16": "f16", "uint16": "u16"}.get(str(t.dtype), str(t.dtype))
        return _TInfo(ai["data"][0], tuple(t.shape), tuple(s // isz for s in strides), dt, "cpu")
    raise TypeError(f"not a tensor: {type(t).__name__}")


@dataclass
class CacheGeometry:
    """What register() found: per-layer K/V views and the common geometry."""
    layers: list          # layer names, in model order
    k: list               # per layer: the K view [num_pages, page_size, H, D]
    v: list
    num_pages: int
    page_size: int
    kv_heads: int
    head_dim: int
    dtype: str            # "f16" | "bf16"
    strides: tuple        # (page, slot, head) in elements
    device: str
    layout: str           # "NHD" | "HND" | "other"


def split_kv(t, layout_hint=None):
    """(K view, V view) of one layer's cache: a (K, V) pair of 4-D tensors,
    a 5-D tensor (2, num_pages, page_size, H, D) (FlashAttention's logical
    shape; NHD or HND strides), or (num_pages, 2, page_size, H, D)
    (FlashInfer's). layout_hint "kv_first"/"pages_first" settles the
    ambiguous case num_pages == 2."""
    if isinstance(t, (tuple, list)):
        if len(t) != 2:
            raise ValueError("a (K, V) pair of tensors")
        return t[0], t[1]
    shape = tuple(t.shape)
    if len(shape) != 5:
        raise ValueError(f"KV cache of shape {shape}: vkv handles (2, pages, page_size, heads, "
                         "head_dim) caches (MLA and other latent caches are not supported)")
    kv_first = shape[0] == 2
    pages_first = shape[1] == 2
    if kv_first and pages_first:
        kv_first = layout_hint != "pages_first"
    if kv_first:
        return t[0], t[1]
    if pages_first:
        return t[:, 0], t[:, 1]
    raise ValueError(f"KV cache of shape {shape}: neither dimension 0 nor 1 is K/V (2)")


def cache_geometry(kv_caches, block_size, layout_hint=None):
    """Checks vLLM's per-layer caches (dict name -> tensor, model order) and
    returns their CacheGeometry. Every layer must have the same shape,
    dtype (f16/bf16), strides and device; channels contiguous; K and V the
    same strides; page_size == block_size."""
    if not kv_caches:
        raise ValueError("no KV caches registered")
    names, ks, vs, geo = [], [], [], None
    for name, t in kv_caches.items():
        k, v = split_kv(t, layout_hint)
        ki, vi = _tinfo(k), _tinfo(v)
        if len(ki.shape) != 4 or ki.shape != vi.shape:
            raise ValueError(f"{name}: K and V must be [pages, page_size, heads, head_dim]")
        if ki.strides != vi.strides or ki.dtype != vi.dtype or ki.device != vi.device:
            raise ValueError(f"{name}: K and V differ in strides, dtype or device")
        if ki.dtype not in ("f16", "bf16"):
            raise ValueError(f"{name}: KV cache dtype {ki.dtype}: vkv stores float16/bfloat16 "
                             "caches (an fp8 kv_cache_dtype is not supported)")
        if ki.strides[3] != 1:
            raise ValueError(f"{name}: head_dim elements must be contiguous")
        g = (ki.shape, ki.strides, ki.dtype, ki.device)
        if geo is None:
            geo = g
        elif g != geo:
            raise ValueError(f"{name}: shape/strides/dtype/device differ from the first layer's")
        names.append(name)
        ks.append(k)
        vs.append(v)
    (P, S, H, D), (ps, ss, hs, _), dt, dev = geo
    if S != block_size:
        raise ValueError(f"KV cache page size {S} != vLLM block_size {block_size}")
    if D % 8:
        raise ValueError(f"head_dim {D}: vkv needs a multiple of 8")
    layout = "NHD" if (ss == H * D and hs == D) else "HND" if (hs == S * D and ss == D) else "other"
    return CacheGeometry(names, ks, vs, P, S, H, D, dt, (ps, ss, hs), dev, layout)


# ---- worker side ---------------------------------------------------------------------------
class WorkerCore:
    """Loads and saves chunks between vkvd and this worker's paged caches.
    `client` is a vkv.Client in this rank's namespace."""

    def __init__(self, client, block_size, chunk_tokens=DEFAULT_CHUNK_TOKENS, stats=None,
                 verify=True):
        if block_size <= 0 or chunk_tokens <= 0 or chunk_tokens % block_size:
            raise ValueError("chunk_tokens must be a positive multiple of block_size")
        self.c = client
        self.block_size = block_size
        self.chunk_tokens = chunk_tokens
        self.bpc = chunk_tokens // block_size
        self.stats = stats or Stats()
        self.verify = verify
        self.geo = None
        self._dst = None
        self._errors = set()

    def register(self, kv_caches, layout_hint=None):
        """Checks the caches (see cache_geometry) and prepares the decoder.
        Device caches need the daemon's CUDA backend and a CUDA libvkv
        (blocks are then device memory) ; host caches need the host backend."""
        g = cache_geometry(kv_caches, self.block_size, layout_hint)
        device = g.device != "cpu"
        if device != bool(self.c.backend_is_cuda):
            raise vkv.VkvError(vkv.error_code("VKV_ENOTSUP"),
                               f"register_kv_caches: {g.device} caches with vkvd's "
                               f"{'cuda' if self.c.backend_is_cuda else 'host'} backend (decode "
                               "reads blocks where the caches are: host backend for CPU caches, "
                               "cuda backend for GPU caches)")
        stream = None
        if device:
            import torch  # noqa: device caches are torch tensors
            stream = ctypes.c_void_p(torch.cuda.current_stream().cuda_stream)
        self._dst = vkv.PagedDst([_tinfo(k).ptr for k in g.k], [_tinfo(v).ptr for v in g.v],
                                 g.num_pages, g.page_size, *g.strides, g.kv_heads, g.head_dim,
                                 g.dtype, device=device, stream=stream)
        self.geo = g
        return g

    # -- load ---------------------------------------------------------------------------------
    def load(self, loads):
        """Runs the step's loads (LoadSpecs). For each: FETCH (pins) the
        chunks' longest cached prefix, decodes each chunk into the pages
        (positions before start_pos untouched), releases the pins. Promised
        blocks it did not write are added to the load errors. Returns the
        number of tokens written."""
        g = self.geo
        if g is None:
            raise RuntimeError("load before register")
        written = 0
        for spec in loads:
            t0 = time.perf_counter()
            table = (ctypes.c_int32 * max(len(spec.block_ids), 1))(*spec.block_ids)
            ok = 0
            nbytes = 0
            try:
                f = self.c.fetch(spec.keys)
            except vkv.VkvError as e:
                log.warning("vkv: fetch for %s failed (%s): recomputing", spec.req_id, e)
                f = None
            if f is not None:
                try:
                    for i in range(len(f)):
                        c = spec.c0 + i
                        data, size = f.view(i)
                        hdr = self._header(data, size)
                        if not self._shape_ok(hdr, size, spec.req_id, c):
                            break
                        first = c * self.chunk_tokens
                        skip = max(spec.start_pos - first, 0)
                        try:
                            self._dst.decode(data, size, table, first, skip, verify=self.verify,
                                             hdr=hdr if self._dst.device else None,
                                             ident=f.ident(i))
                        except vkv.VkvError as e:
                            log.warning("vkv: chunk %d of %s not loaded (%s)", c, spec.req_id, e)
                            break
                        ok += 1
                        nbytes += size
                        written += min(first + self.chunk_tokens, spec.end_pos) - max(
                            first, spec.start_pos)
                finally:
                    f.release()
            got_to = (spec.c0 + ok) * self.chunk_tokens
            if got_to < spec.end_pos:
                lo = max(got_to, spec.start_pos) // self.block_size
                hi = -(-spec.end_pos // self.block_size)
                bad = set(spec.block_ids[lo:hi])
                self._errors |= bad
                self.stats.add(num_load_error_blocks=len(bad))
            self.stats.add(num_loaded_chunks=ok, bytes_loaded=nbytes,
                           num_requested_tokens=spec.end_pos - spec.start_pos,
                           num_hit_tokens=max(min(got_to, spec.end_pos) - spec.start_pos, 0),
                           load_seconds=time.perf_counter() - t0)
        if g.device != "cpu":
            import torch  # noqa
            torch.cuda.current_stream().synchronize()
        return written

    def _header(self, data, size):
        """Address of the block's 256-byte header in host memory: the view
        itself (host backend), or a host copy of a device block's header
        (CUDA backend; cudaMemcpy through ctypes). The copy is kept alive
        by self._hbuf until the next call."""
        if not self._dst.device:
            return data
        if getattr(self, "_cudart", None) is None:
            for name in ("libcudart.so", "libcudart.so.13", "libcudart.so.12"):
                try:
                    self._cudart = ctypes.CDLL(name)
                    break
                except OSError:
                    continue
            else:
                raise vkv.VkvError(vkv.error_code("VKV_ENOTSUP"),
                                   "libcudart not found: cannot read a device block header")
            self._cudart.cudaMemcpy.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t,
                                                ctypes.c_int]
        self._hbuf = ctypes.create_string_buffer(vkv.HEADER_SIZE)
        n = min(vkv.HEADER_SIZE, size)
        if self._cudart.cudaMemcpy(self._hbuf, data, n, 2) != 0:  # cudaMemcpyDeviceToHost
            raise vkv.VkvError(vkv.error_code("VKV_EIO"), "cudaMemcpy of a block header failed")
        return ctypes.addressof(self._hbuf)

    def _shape_ok(self, hdr, size, req_id, c):
        """True when the block whose header is at host address hdr fits the
        registered caches (layers, chunk tokens, heads, head_dim, dtype); its
        header is checked (not the payload: the decode verifies that)."""
        g = self.geo
        try:
            sh, _ = vkv.block_shape(hdr, size, verify=False)
        except vkv.VkvError as e:
            log.warning("vkv: chunk %d of %s: bad block (%s)", c, req_id, e)
            return False
        want = (len(g.layers), self.chunk_tokens, g.kv_heads, g.head_dim, g.dtype)
        have = (sh["layers"], sh["tokens"], sh["kv_heads"], sh["head_dim"], sh["dtype"])
        if have != want:
            log.warning("vkv: chunk %d of %s has shape %s, caches need %s", c, req_id, have, want)
            return False
        return True

    def take_load_errors(self):
        """vLLM block ids promised but not loaded since the last call (then cleared)."""
        out, self._errors = self._errors, set()
        return out

    # -- save ---------------------------------------------------------------------------------
    def save(self, saves):
        """Stores each SaveSpec's chunk: gathers its pages of every layer into
        one [layers][tokens][heads][head_dim] staging buffer (one copy per
        layer, no per-token loop), encodes and commits it in one put. A chunk
        another worker already has (or is writing) is skipped. Returns how
        many were stored."""
        g = self.geo
        if g is None or not saves:
            return 0
        stored = 0
        t0 = time.perf_counter()
        if g.device != "cpu":
            import torch  # noqa
            torch.cuda.current_stream().synchronize()  # the forward pass wrote the pages
        device = g.device != "cpu"
        for s in saves:
            if len(s.block_ids) != self.bpc:
                continue
            kst, vst = self._gather(s.block_ids)
            L, T, H, D = len(g.layers), self.chunk_tokens, g.kv_heads, g.head_dim
            kp = [_tinfo(kst).ptr + l * T * H * D * 2 for l in range(L)]
            vp = [_tinfo(vst).ptr + l * T * H * D * 2 for l in range(L)]
            try:
                if device:  # CUDA backend: encode on the GPU into the reservation
                    ok = self.c.put_device(s.key, kp, vp, T, H, D, H * D, D, s.visual_ranges,
                                           g.dtype, self._dst.stream)
                else:
                    ok = self.c.put_layers(s.key, kp, vp, T, H, D, H * D, D, s.visual_ranges,
                                           g.dtype)
            except vkv.VkvError as e:
                log.warning("vkv: chunk %d of %s not stored (%s)", s.chunk, s.req_id, e)
                continue
            if ok:
                stored += 1
                self.stats.add(num_stored_chunks=1, bytes_stored=vkv.encoded_size(
                    L, T, H, D, s.visual_ranges, g.dtype, self.c.codec))
            else:
                self.stats.add(num_store_skipped_chunks=1)
        self.stats.add(store_seconds=time.perf_counter() - t0)
        return stored

    def _gather(self, block_ids):
        """Contiguous copies [layers][chunk_tokens][H][D] of K and V of these
        pages, on the caches' device (torch or numpy, as the caches are)."""
        g = self.geo
        L, T, H, D = len(g.layers), self.chunk_tokens, g.kv_heads, g.head_dim
        k0 = g.k[0]
        if hasattr(k0, "index_select"):
            import torch  # noqa
            idx = torch.tensor(block_ids, dtype=torch.long, device=k0.device)
            kst = torch.empty((L, T, H, D), dtype=k0.dtype, device=k0.device)
            vst = torch.empty((L, T, H, D), dtype=k0.dtype, device=k0.device)
            for l in range(L):
                kst[l].view(len(block_ids), self.block_size, H, D).copy_(
                    g.k[l].index_select(0, idx))
                vst[l].view(len(block_ids), self.block_size, H, D).copy_(
                    g.v[l].index_select(0, idx))
            if k0.device.type != "cpu":
                torch.cuda.current_stream().synchronize()  # the encoder's stream may differ
            return kst, vst
        np = vkv._np()
        kst = np.empty((L, T, H, D), dtype=k0.dtype)
        vst = np.empty((L, T, H, D), dtype=k0.dtype)
        for l in range(L):
            kst[l].reshape(len(block_ids), self.block_size, H, D)[...] = g.k[l][block_ids]
            vst[l].reshape(len(block_ids), self.block_size, H, D)[...] = g.v[l][block_ids]
        return kst, vst


def bits_per_element(layers, kv_heads, head_dim, tokens, visual=True, codec=None):
    """Bits per element of one vkv block of `tokens` tokens (all visual, or
    all raw), every header and metadata byte included."""
    size = vkv.encoded_size(layers, tokens, kv_heads, head_dim, [(0, tokens)] if visual else [],
                            "f16", codec)
    return 8.0 * size / (2 * layers * tokens * kv_heads * head_dim)

