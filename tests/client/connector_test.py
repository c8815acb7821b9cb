#!/usr/bin/python3
"""Tests of vkv.connector (the vLLM-independent core of vkv.vllm) against a
real vkvd, with KV caches laid out as vLLM lays them out.

usage: connector_test.py VKVD LIBVKV [--require-torch | --cuda]
       connector_test.py --instance A|B CONFIG_JSON   (internal: one "vLLM instance")

Two instances are separate processes, each with its own paged KV tensors
and block tables. Instance A "computes" a prompt (system prompt + image +
question; the KV is synthetic, a function of the prefix only) and saves it
through the scheduler/worker cores; instance B asks another question about
the same image and must load the image prefix: text tokens bit-exact,
visual tokens equal to the codec's own dense decode of the block and within
its error bound. B also checks: another image never matches; eviction
between lookup and load gives load errors and no stale pages; preemption,
abort and failed loads leave no lease in the daemon; a local prefix hit
inside a chunk is left untouched; prompts that end mid-chunk.

Tensors are torch tensors when torch imports, numpy arrays otherwise (bf16
and the torch code paths need torch: those configurations are skipped, and
said so, without it). --cuda (tests/gpu/run.sh): the caches are CUDA
tensors and vkvd runs its CUDA backend, so loads go through
vkv_cuda_decode_paged; exits 77 without a usable GPU. Exits 77 when numpy
is missing.
"""
import hashlib
import json
import os
import pickle
import struct
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
if os.environ.get("VKV_TEST_SKIP") and "--instance" not in sys.argv:
    print("skipped: " + os.environ["VKV_TEST_SKIP"])
    sys.exit(77)
sys.path.insert(0, os.path.join(HERE, "..", "..", "client", "python"))
try:
    import numpy as np
except ImportError:
    print("numpy missing: skipped")
    sys.exit(77)
try:
    import torch
except ImportError:
    torch = None

L, H, D = 3, 2, 64          # layers, KV heads, head dim
CHUNK = 64                  # vkv chunk tokens (4 blocks of 16, 2 of 32)
SYS_T, IMG_T = 24, 104      # system prompt, image tokens: the prefix ends on chunk 2
NS = "test-llava@r1|tp0of1|pp0of1|f16|H2xD64"


# ---- vLLM-like block hashes -------------------------------------------------------------------
def block_hashes(tokens, block_size, images, root=b"seed-0"):
    """Chained 32-byte SHA-256 per full block over (parent, token ids, extra
    keys ("mm", image hash, offset in block)), as vLLM's sha256 hashes are
    built (vkv only relies on: 32 bytes, chained, image hash included)."""
    out, parent = [], hashlib.sha256(root).digest()
    for b in range(len(tokens) // block_size):
        lo, hi = b * block_size, (b + 1) * block_size
        h = hashlib.sha256(parent)
        h.update(struct.pack(f"<{block_size}I", *tokens[lo:hi]))
        for img_hash, s, e in images:
            if s < hi and e > lo:
                h.update(b"mm" + img_hash + struct.pack("<i", s - lo))
        parent = h.digest()
        out.append(parent)
    return out


def prompt(question_seed, image_name, n_question):
    """(tokens, images [(hash, start, end)]) of system prompt + image + question."""
    img = hashlib.sha256(image_name.encode()).digest()
    toks = list(range(1000, 1000 + SYS_T)) + [32000] * IMG_T
    rng = np.random.default_rng(question_seed)
    toks += [int(x) for x in rng.integers(2000, 30000, n_question)]
    return toks, [(img, SYS_T, SYS_T + IMG_T)]


def synth_kv(n_tokens, image_name, question_seed, dtype):
    """Synthetic float32 KV [2][L][T][H][D]: the system prompt + image part
    is a function of the image only (same for every question), the rest of
    the question. dtype only sets the scale of values."""
    pre = SYS_T + IMG_T
    a = np.random.default_rng(int.from_bytes(hashlib.sha256(image_name.encode()).digest()[:4],
                                             "little")).standard_normal((2, L, pre, H, D))
    b = np.random.default_rng(question_seed + 7).standard_normal((2, L, max(n_tokens - pre, 0),
                                                                  H, D))
    kv = np.concatenate([a, b], axis=2)[:, :, :n_tokens].astype(np.float32)
    kv[0] *= 2.0
    return kv


# ---- caches in vLLM's layouts -----------------------------------------------------------------
class Caches:
    """Per-layer paged caches in one of vLLM's layouts: "NHD" (2, P, S, H, D)
    contiguous, "HND" (2, P, H, S, D) storage seen as (2, P, S, H, D), "FI"
    (FlashInfer: (P, 2, S, H, D)). torch or numpy; every element starts at
    the sentinel so that untouched slots can be told."""

    SENTINEL = 1234.0

    def __init__(self, pages, page_size, layout, dtype, lib, device="cpu"):
        self.P, self.S, self.layout, self.dtype, self.lib = pages, page_size, layout, dtype, lib
        self.device = device
        self.t = {}
        for l in range(L):
            if lib == "torch":
                tdt = torch.float16 if dtype == "f16" else torch.bfloat16
                kw = dict(dtype=tdt, device=device)
                if layout == "NHD":
                    x = torch.full((2, pages, page_size, H, D), self.SENTINEL, **kw)
                elif layout == "HND":
                    x = torch.full((2, pages, H, page_size, D), self.SENTINEL,
                                   **kw).permute(0, 1, 3, 2, 4)
                else:
                    x = torch.full((pages, 2, page_size, H, D), self.SENTINEL, **kw)
            else:
                assert dtype == "f16"
                if layout == "NHD":
                    x = np.full((2, pages, page_size, H, D), self.SENTINEL, np.float16)
                elif layout == "HND":
                    x = np.full((2, pages, H, page_size, D), self.SENTINEL,
                                np.float16).transpose(0, 1, 3, 2, 4)
                else:
                    x = np.full((pages, 2, page_size, H, D), self.SENTINEL, np.float16)
            self.t[f"model.layers.{l}.self_attn.attn"] = x

    def kv(self, l, s):
        x = self.t[f"model.layers.{l}.self_attn.attn"]
        return x[:, s] if self.layout == "FI" else x[s]

    def _idx(self, block_ids, positions):
        pos = np.asarray(positions)
        return np.asarray(block_ids)[pos // self.S], pos % self.S

    def write(self, block_ids, positions, kv):
        """kv: float32 [2][L][len(positions)][H][D] -> the pages."""
        pg, sl = self._idx(block_ids, positions)
        for s in range(2):
            for l in range(L):
                dst = self.kv(l, s)
                if self.lib == "torch":
                    dst[torch.as_tensor(pg, device=self.device),
                        torch.as_tensor(sl, device=self.device)] = torch.as_tensor(
                        kv[s, l]).to(device=self.device, dtype=dst.dtype)
                else:
                    dst[pg, sl] = kv[s, l].astype(np.float16)

    def read_bits(self, block_ids, positions):
        """uint16 bit patterns [2][L][len(positions)][H][D] of those slots."""
        pg, sl = self._idx(block_ids, positions)
        out = np.empty((2, L, len(positions), H, D), np.uint16)
        for s in range(2):
            for l in range(L):
                src = self.kv(l, s)
                if self.lib == "torch":
                    out[s, l] = src[torch.as_tensor(pg, device=self.device),
                                    torch.as_tensor(sl, device=self.device)].cpu().contiguous() \
                        .view(torch.int16).numpy().view(np.uint16)
                else:
                    out[s, l] = src[pg, sl].view(np.uint16)
        return out

    def sentinel_bits(self):
        if self.lib == "torch":
            tdt = torch.float16 if self.dtype == "f16" else torch.bfloat16
            return int(torch.tensor([self.SENTINEL], dtype=tdt).view(torch.int16).item()) & 0xffff
        return int(np.array([self.SENTINEL], np.float16).view(np.uint16)[0])


def to_bits(kv32, dtype):
    """float32 array -> uint16 bit patterns of f16 / bf16 (round to nearest even)."""
    if dtype == "f16":
        return kv32.astype(np.float16).view(np.uint16)
    return torch.as_tensor(kv32).to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16)


def bits_to_f32(bits, dtype):
    if dtype == "f16":
        return bits.view(np.float16).astype(np.float32)
    return (bits.astype(np.uint32) << 16).view(np.float32)


# ---- one vLLM instance -------------------------------------------------------------------------
class Instance:
    """A scheduler core and a worker core of one process, with the step
    protocol vLLM drives (lookup, alloc, build_meta, load, save); metadata
    crosses a pickle as it would cross to a worker process."""

    def __init__(self, cfg):
        import vkv
        from vkv import connector as core
        self.vkv, self.core = vkv, core
        self.cfg = cfg
        self.bs = cfg["block_size"]
        self.c = vkv.Client(rundir=cfg["rundir"], ns=NS)
        self.sched = core.SchedulerCore(lambda keys: self.c.lookup(keys)[0], self.bs, CHUNK)
        self.worker = core.WorkerCore(vkv.Client(rundir=cfg["rundir"], ns=NS), self.bs, CHUNK)
        self.caches = Caches(cfg["pages"], self.bs, cfg["layout"], cfg["dtype"], cfg["lib"],
                             cfg.get("device", "cpu"))
        g = self.worker.register(self.caches.t, "kv_first" if cfg["layout"] != "FI" else None)
        assert g.layout == {"NHD": "NHD", "HND": "HND", "FI": "NHD"}[cfg["layout"]], g.layout
        self.free = list(range(cfg["pages"]))[::-1]
        self.reqs = {}

    def leases(self):
        return self.c.stats()["leases_active"]

    def alloc(self, n):
        return [self.free.pop() for _ in range(n)]

    def schedule(self, rid, toks, images, local_computed=0):
        """Scheduler step of a new request: lookup, alloc, meta. Returns
        (promised tokens, block ids, meta after pickling)."""
        hashes = block_hashes(toks, self.bs, images)
        n = self.sched.num_new_matched_tokens(rid, hashes, len(toks), local_computed)
        ids = self.alloc(-(-len(toks) // self.bs))
        self.sched.on_alloc(rid, ids, len(toks), n, hashes)
        self.reqs[rid] = (toks, images, hashes)
        meta = self.sched.build_meta(
            [(rid, ids, True, local_computed + n, len(toks) - local_computed - n)],
            lambda r: self.reqs[r][2], lambda r: [(s, e) for _, s, e in self.reqs[r][1]])
        return n, ids, pickle.loads(pickle.dumps(meta))

    def step(self, meta, compute=None):
        """Worker step: loads, then "the forward pass" (compute: (ids,
        positions, kv32) written to the pages), then saves."""
        self.worker.load(meta.loads)
        if compute:
            self.caches.write(*compute)
        return self.worker.save(meta.saves)

    def finish(self, rid):
        self.sched.finished(rid)


def host_block(data, size, cfg):
    """(address, size) of the block in host memory: the view itself, or (CUDA
    backend) a host copy kept alive in cfg["_keep"]."""
    if cfg.get("device", "cpu") == "cpu":
        return data, size
    import ctypes
    buf = torch.empty(size, dtype=torch.uint8)
    rt = ctypes.CDLL("libcudart.so") if not cfg.get("_rt") else cfg["_rt"]
    cfg["_rt"] = rt
    rt.cudaMemcpy.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    assert rt.cudaMemcpy(buf.data_ptr(), data, size, 2) == 0
    cfg.setdefault("_keep", []).append(buf)
    return buf.data_ptr(), size


def instance_a(cfg):
    """Computes and saves prompt A; checks what was stored."""
    inst = Instance(cfg)
    toks, images = prompt(1, "cat.png", cfg["question"])
    n, ids, meta = inst.schedule("A", toks, images)
    assert n == 0, f"empty cache matched {n} tokens"
    assert not meta.loads
    full = len(toks) // CHUNK
    assert [s.chunk for s in meta.saves] == list(range(full)), meta.saves
    # one save per chunk, each spanning chunk/block_size vLLM blocks
    assert all(len(s.block_ids) == CHUNK // inst.bs for s in meta.saves)
    kv = synth_kv(len(toks), "cat.png", 1, cfg["dtype"])
    stored = inst.step(meta, (ids, range(len(toks)), kv))
    assert stored == full, (stored, full)
    keys = inst.core.chunk_keys(block_hashes(toks, inst.bs, images), CHUNK // inst.bs)
    assert inst.c.lookup(keys) == (full, 0)
    st = inst.worker.stats.snapshot()
    assert st["num_stored_chunks"] == full and st["bytes_stored"] > 0
    # the image chunk holds the image range, relative to the chunk
    assert meta.saves[0].visual_ranges == [(SYS_T, CHUNK)], meta.saves[0]
    r1 = meta.saves[1].visual_ranges
    assert r1 == [(0, min(SYS_T + IMG_T, 2 * CHUNK) - CHUNK)], r1
    inst.finish("A")
    assert not inst.sched.tracked()
    assert inst.leases() == 0
    print(f"A: stored {stored} chunks of {len(toks)} tokens "
          f"({cfg['layout']} {cfg['dtype']} {cfg['lib']}, block {inst.bs})")


def instance_b(cfg):
    inst = Instance(cfg)
    bs = inst.bs
    dt = cfg["dtype"]
    # -- the same image with another question: the image prefix loads
    toks, images = prompt(2, "cat.png", cfg["question_b"])
    n, ids, meta = inst.schedule("B", toks, images)
    cached = (SYS_T + IMG_T) // CHUNK  # chunks that lie inside the shared prefix
    assert n == cached * CHUNK, (n, cached)
    assert len(meta.loads) == 1 and meta.loads[0].end_pos == n
    assert inst.leases() == 0, "the lookup pinned something"
    kv_b = synth_kv(len(toks), "cat.png", 2, dt)
    assert inst.step(meta, (ids, range(n, len(toks)), kv_b[:, :, n:])) == len(meta.saves)
    assert inst.leases() == 0, "load left pins"
    assert not inst.worker.take_load_errors()
    kv_a = synth_kv(n, "cat.png", 1, dt)
    want = to_bits(kv_a, dt)
    got = inst.caches.read_bits(ids, range(n))
    vis = np.zeros(n, bool)
    vis[SYS_T:SYS_T + IMG_T] = True
    assert np.array_equal(got[:, :, ~vis], want[:, :, ~vis]), "text tokens not bit-exact"
    # visual tokens: equal to vkv's dense decode of the same blocks, and close
    keys = inst.core.chunk_keys(block_hashes(toks, bs, images), CHUNK // bs)[:cached]
    with inst.c.fetch(keys) as f:
        dense = np.concatenate([np.stack(inst.vkv.decode_block(*host_block(*f.view(i), cfg)))
                                for i in range(len(f))], axis=2)
    assert np.array_equal(got, dense.view(np.uint16)), "paged decode != dense decode"
    g32, w32 = bits_to_f32(got[:, :, vis], dt), kv_a[:, :, vis]
    rel = np.linalg.norm(g32 - w32) / np.linalg.norm(w32)
    assert rel < 0.9, rel
    assert inst.leases() == 0
    st = inst.worker.stats.snapshot()
    assert st["num_hit_tokens"] == n and st["retrieve_hit_rate"] == 1.0, st
    print(f"B: loaded {n} tokens (text bit-exact, visual rel. error {rel:.3f}; "
          f"{cfg['layout']} {dt} {cfg['lib']}, block {bs})")
    # B's own chunks past the prefix are saved, the loaded ones are not
    assert all(s.chunk >= cached for s in meta.saves), meta.saves
    inst.finish("B")

    # -- another image never matches
    toks_c, images_c = prompt(2, "dog.png", cfg["question_b"])
    nc = inst.sched.num_new_matched_tokens("C", block_hashes(toks_c, bs, images_c),
                                           len(toks_c), 0)
    # the system prompt chunk precedes the image only if it is a whole chunk
    assert nc == (CHUNK if SYS_T >= CHUNK else 0), nc
    inst.finish("C")

    # -- B's own full chunk is cached now too. A local prefix hit inside the
    # first chunk: those pages stay untouched, the rest loads
    full_b = len(toks) // CHUNK
    n = full_b * CHUNK
    keys = inst.core.chunk_keys(block_hashes(toks, bs, images), CHUNK // bs)
    assert inst.c.lookup(keys) == (full_b, 0)
    n2, ids2, meta2 = inst.schedule("B2", toks, images, local_computed=bs)
    assert n2 == n - bs and meta2.loads[0].start_pos == bs, (n2, meta2.loads)
    inst.step(meta2)
    got2 = inst.caches.read_bits(ids2, range(bs))
    assert (got2 == inst.caches.sentinel_bits()).all(), "decode wrote a locally cached block"
    got = inst.caches.read_bits(ids2, range(n))
    assert np.array_equal(got[:, :, bs:cached * CHUNK], dense.view(np.uint16)[:, :, bs:])
    assert np.array_equal(got[:, :, cached * CHUNK:], to_bits(kv_b[:, :, cached * CHUNK:n], dt))
    inst.finish("B2")

    # -- eviction between lookup and load: load errors, no stale pages
    n3 = inst.sched.num_new_matched_tokens("E", block_hashes(toks, bs, images), len(toks), 0)
    assert n3 == n
    ids3 = inst.alloc(-(-len(toks) // bs))
    hashes = block_hashes(toks, bs, images)
    inst.sched.on_alloc("E", ids3, len(toks), n3, hashes)
    meta3 = inst.sched.build_meta([("E", ids3, True, n3, len(toks) - n3)], lambda r: hashes,
                                  lambda r: [(s, e) for _, s, e in images])
    evict_from = 1  # the second chunk (and so the rest of the prefix) is gone
    assert inst.c.delete(keys[evict_from:]) == len(keys) - evict_from
    inst.step(pickle.loads(pickle.dumps(meta3)))
    bad = inst.worker.take_load_errors()
    want_bad = set(ids3[evict_from * CHUNK // bs:n // bs])
    assert bad == want_bad, (sorted(bad), sorted(want_bad))
    assert not inst.worker.take_load_errors(), "errors are reported once"
    # promised pages that failed hold nothing from the cache (still sentinel)
    lost = inst.caches.read_bits(ids3, range(evict_from * CHUNK, n))
    assert (lost == inst.caches.sentinel_bits()).all(), "stale KV in a failed page"
    assert np.array_equal(inst.caches.read_bits(ids3, range(evict_from * CHUNK)),
                          dense.view(np.uint16)[:, :, :evict_from * CHUNK])
    assert inst.leases() == 0
    # vLLM recomputes from the first failed block (its num_computed_tokens
    # drops there): the chunks computed again are saved again
    redo = evict_from * CHUNK
    meta3b = inst.sched.build_meta([("E", None, False, redo, len(toks) - redo)],
                                   lambda r: hashes, lambda r: [(s, e) for _, s, e in images])
    assert [x.chunk for x in meta3b.saves] == list(range(evict_from, full_b)), meta3b.saves
    assert inst.step(meta3b, (ids3, range(redo, len(toks)), kv_b[:, :, redo:])) == \
        full_b - evict_from
    assert inst.c.lookup(keys) == (full_b, 0)
    inst.finish("E")
    print(f"B: eviction after lookup -> {len(bad)} blocks reported as load errors, none stale")

    # -- every chunk evicted: everything promised is an error
    assert inst.c.delete(keys) == full_b
    ids4 = inst.alloc(-(-n // bs))
    spec = inst.core.LoadSpec("F", 0, keys, 0, n, ids4)
    inst.worker.load([spec])
    assert inst.worker.take_load_errors() == set(ids4[:-(-n // bs)])
    assert inst.leases() == 0

    # -- abort after alloc, before the metadata went out: nothing is loaded or kept
    inst.sched.num_new_matched_tokens("G", hashes, len(toks), 0)
    inst.sched.on_alloc("G", inst.alloc(2), len(toks), 0, hashes)
    inst.finish("G")
    assert not inst.sched.tracked()
    m = inst.sched.build_meta([], None, None)
    assert not m.loads and not m.saves
    assert inst.leases() == 0
    print("B: abort / eviction / all-evicted paths leave 0 leases")


def instance_p(cfg):
    """Preemption: a request is scheduled (load planned), preempted before
    its step ran, rescheduled into other pages; a failing decode in the
    middle of a fetch releases the pins too."""
    inst = Instance(cfg)
    bs = inst.bs
    toks, images = prompt(3, "cat.png", cfg["question_b"])
    hashes = block_hashes(toks, bs, images)
    n = inst.sched.num_new_matched_tokens("P", hashes, len(toks), 0)
    assert n > 0
    ids1 = inst.alloc(-(-len(toks) // bs))
    inst.sched.on_alloc("P", ids1, len(toks), n, hashes)
    # preempted before build_meta: vLLM calls lookup + alloc again when it resumes
    n2 = inst.sched.num_new_matched_tokens("P", hashes, len(toks), 0)
    ids2 = inst.alloc(-(-len(toks) // bs))
    inst.sched.on_alloc("P", ids2, len(toks), n2, hashes)
    meta = inst.sched.build_meta([("P", ids2, True, n2, len(toks) - n2)], lambda r: hashes,
                                 lambda r: [(s, e) for _, s, e in images])
    assert len(meta.loads) == 1 and meta.loads[0].block_ids == ids2
    inst.step(meta)
    assert inst.leases() == 0 and not inst.worker.take_load_errors()
    assert (inst.caches.read_bits(ids1, range(n)) == inst.caches.sentinel_bits()).all()
    # resumed mid-way (CachedRequestData.resumed_req_ids): block ids replaced
    meta = inst.sched.build_meta([("P", ids1, True, len(toks), 0)], lambda r: hashes,
                                 lambda r: [])
    assert inst.sched._trackers["P"].block_ids == ids1
    inst.finish("P")
    # blocks that do not fit the caches (here: caches of another layer count)
    # are refused inside the fetch: the chunks are errors, the pins released
    keys = inst.core.chunk_keys(hashes, CHUNK // bs)[:n // CHUNK]
    geo = inst.worker.geo
    inst.worker.geo = type(geo)(**{**geo.__dict__, "layers": geo.layers[:-1]})
    ids3 = inst.alloc(-(-n // bs))
    inst.worker.load([inst.core.LoadSpec("Q", 0, keys, 0, n, ids3)])
    assert inst.worker.take_load_errors() == set(ids3)
    inst.worker.geo = geo
    assert inst.leases() == 0
    print("P: preemption and failed-decode paths leave 0 leases")


# ---- in-process checks --------------------------------------------------------------------------
def test_hash_safety():
    from vkv import connector as core
    for algo in ("builtin", "xxhash", "xxhash_cbor", "md5"):
        try:
            core.check_hash_safety(algo, {"PYTHONHASHSEED": "0"})
            raise AssertionError(f"{algo} accepted")
        except core.HashSafetyError as e:
            assert "sha256_cbor" in str(e)
    try:
        core.check_hash_safety("sha256_cbor", {})
        raise AssertionError("unset PYTHONHASHSEED accepted")
    except core.HashSafetyError as e:
        assert "PYTHONHASHSEED" in str(e)
    assert core.check_hash_safety("sha256_cbor", {"PYTHONHASHSEED": "0"}) == []
    assert core.check_hash_safety("sha256", {"PYTHONHASHSEED": "0"})  # a warning
    root = hashlib.sha256(b"0").digest()
    core.check_hash_safety("sha256_cbor", {"PYTHONHASHSEED": "0"}, root, root)
    try:
        core.check_hash_safety("sha256_cbor", {"PYTHONHASHSEED": "0"}, os.urandom(32), root)
        raise AssertionError("random chain root accepted")
    except core.HashSafetyError:
        pass
    # keys are the full 32 bytes; a short (truncated) hash is refused
    hs = [hashlib.sha256(bytes([i])).digest() for i in range(8)]
    assert core.chunk_keys(hs, 4) == [hs[3], hs[7]]
    assert core.chunk_keys(hs[:7], 4) == [hs[3]]
    try:
        core.chunk_keys([h[:16] for h in hs], 4)
        raise AssertionError("16-byte hash accepted")
    except ValueError:
        pass
    ns = core.namespace("llava-hf/llava-1.5-7b-hf", "abc", 1, 2, "bf16", "H8xD128")
    assert ns == "llava-hf/llava-1.5-7b-hf@abc|tp1of2|pp0of1|bf16|H8xD128", ns
    assert core.namespace("m", None, 0, 2, "bf16", "H8xD128") != \
        core.namespace("m", None, 1, 2, "bf16", "H8xD128")
    print("hash safety, keys, namespace: ok")


def test_scheduler_logic():
    from vkv import connector as core
    looked = []

    def lookup(keys):
        looked.append(len(keys))
        return len(keys)  # everything cached

    for bs in (16, 32):
        s = core.SchedulerCore(lookup, bs, CHUNK)
        hs = [hashlib.sha256(bytes([i])).digest() for i in range(300 // bs)]
        # a prompt ending mid-chunk: only full chunks match
        assert s.num_new_matched_tokens("r", hs, 300, 0) == 256
        # the whole prompt cached: one token is left to compute
        assert s.num_new_matched_tokens("r", hs[:256 // bs], 256, 0) == 255
        # local prefix cache hit beyond vkv's: nothing to load
        assert s.num_new_matched_tokens("r", hs, 300, 288 // bs * bs) == 0
        s.num_new_matched_tokens("r", hs, 300, 0)
        ids = list(range(100, 100 + -(-300 // bs)))
        s.on_alloc("r", ids, 300, 256, hs)
        m = s.build_meta([("r", ids, True, 256, 44)], lambda r: hs, lambda r: [])
        assert len(m.loads) == 1 and m.loads[0].keys == core.chunk_keys(hs, CHUNK // bs)
        assert m.saves == []  # the tail (44 tokens) is no full chunk; cached chunks not re-saved
        s.finished("r")
        assert not s.tracked()
        # chunked prefill: chunk c is saved in the step that computes its last token
        s.num_new_matched_tokens("q", hs, 300, 0)
        s2 = core.SchedulerCore(lambda k: 0, bs, CHUNK)
        s2.num_new_matched_tokens("q", hs, 300, 0)
        s2.on_alloc("q", ids[:100 // bs], 300, 0, hs)
        m = s2.build_meta([("q", ids[:100 // bs], True, 0, 100)], lambda r: hs, lambda r: [])
        assert [x.chunk for x in m.saves] == [0]
        m = s2.build_meta([("q", ids[100 // bs:], False, 100, 200)], lambda r: hs,
                          lambda r: [(10, 90)])
        assert [x.chunk for x in m.saves] == [1, 2, 3]
        assert m.saves[0].block_ids == ids[CHUNK // bs:2 * CHUNK // bs]
        assert m.saves[0].visual_ranges == [(0, 26)]
        s2.finished("q")
    try:
        core.SchedulerCore(lookup, 16, 40)
        raise AssertionError("chunk not a multiple of the block accepted")
    except ValueError:
        pass
    # more than 8 images in a chunk: the largest 8 are quantized, others stay raw
    rs = [(i * 10, i * 10 + 3 + i % 4) for i in range(12)]
    out = core.chunk_visual_ranges(rs, 0, 128)
    assert len(out) == 8 and out == sorted(out)
    print("scheduler logic (block sizes 16, 32; mid-chunk ends; chunked prefill): ok")


def run_instance(which, cfg):
    r = subprocess.run([sys.executable, os.path.abspath(__file__), "--instance", which,
                        json.dumps(cfg)], capture_output=True, text=True, timeout=120)
    sys.stdout.write(r.stdout)
    if r.returncode != 0:
        sys.stderr.write(r.stderr)
        raise AssertionError(f"instance {which} failed ({r.returncode})")


def main():
    if len(sys.argv) >= 3 and sys.argv[1] == "--instance":
        cfg = json.loads(sys.argv[3])
        {"A": instance_a, "B": instance_b, "P": instance_p}[sys.argv[2]](cfg)
        return
    vkvd, lib = sys.argv[1:3]
    cuda = "--cuda" in sys.argv
    if cuda and (torch is None or not torch.cuda.is_available()):
        print("skipped: --cuda needs torch with a usable CUDA device")
        sys.exit(77)
    if "--require-torch" in sys.argv and torch is None:
        print("skipped: torch is not importable by this Python "
              f"({sys.executable}); scripts/install-vllm.sh makes one that has it")
        sys.exit(77)
    os.environ["VKV_LIBRARY"] = lib
    test_hash_safety()
    test_scheduler_logic()
    from vkv.daemon import Vkvd
    lib_name = "torch" if torch is not None else "numpy"
    configs = [  # (block size, A's layout, B's layout, dtype)
        (16, "NHD", "HND", "f16"),
        (32, "HND", "NHD", "f16"),
        (16, "FI", "HND", "bf16"),
        (32, "NHD", "FI", "bf16"),
    ]
    skipped = []
    for bs, la, lb, dt in configs:
        if lib_name == "numpy" and dt == "bf16":
            skipped.append(f"bs{bs} {la}->{lb} {dt} (bf16 needs torch)")
            continue
        with Vkvd(vkvd, backend="cuda" if cuda else "host") as d:
            base = dict(rundir=d.rundir, block_size=bs, pages=64, dtype=dt, lib=lib_name,
                        question=150 - SYS_T - IMG_T, question_b=70,
                        device="cuda" if cuda else "cpu")
            try:
                run_instance("A", dict(base, layout=la))
                run_instance("B", dict(base, layout=lb))
                run_instance("A", dict(base, layout=la))  # stored again after B's deletes
                run_instance("P", dict(base, layout=lb))
            except BaseException:
                print(d.log(), file=sys.stderr)
                raise
    for s in skipped:
        print(f"skipped: {s}")
    print(f"connector core: ok ({lib_name} tensors on {'cuda' if cuda else 'cpu'}, "
          f"{len(configs) - len(skipped)} of "
          f"{len(configs)} layout/dtype configurations)")


if __name__ == "__main__":
    main()
