"""How a vLLM KV connector maps onto vkv (and a runnable simulation).

vLLM (v1) splits a KV connector in two halves. This module shows, call by
call, what each half does with vkv; ``VkvConnector`` implements the mapping
over plain Python objects so that it runs without vLLM:

scheduler side
  get_num_new_matched_tokens(request, num_computed_tokens) -> (n, async)
      keys = request.block_hashes (vLLM's own 32-byte block hashes, one per
      full block, chained over the prefix: passed through as vkv keys)
      hits, _ = client.lookup(keys)                    # LOOKUP, no side effect
      n = hits * block_size - num_computed_tokens      # tokens vkv can supply
      return max(n, 0), False                          # loaded synchronously
  update_state_after_alloc(request, block_ids, n)
      remembers which vLLM pages the n external tokens go to (load plan)

worker side
  start_load_kv(forward_context)
      for each planned request: client.fetch(keys[first:hits]) pins the blocks
      (FETCH, restoring cold ones), then each block is decoded straight from
      the daemon's memory into the request's pages: vkv_decode_paged() with
      the block table (on GPU: the CUDA decode); the pins are released after.
  wait_for_layer_load(layer_name)
      nothing: start_load_kv decoded every layer (vkv blocks hold all layers)
  save_kv_layer(layer_name, kv_layer, attn_metadata)
      stages this layer's K/V of each new full block (vkv encodes a chunk of
      all layers at once, so layers are gathered until the last one)
  wait_for_save()
      for each staged block: client.put(key, K, V, visual_ranges)  (ALLOC,
      encode, COMMIT); VKV_EEXIST/EBUSY mean another worker stored it: fine.

vLLM settings this needs (docs/PYTHON.md): ``prefix_caching_hash_algo=
"sha256_cbor"`` so block hashes are 32-byte SHA-256 values that agree across
processes and restarts, and a fixed ``PYTHONHASHSEED`` (e.g. 0) for every
vLLM process, so the hash of the first block (seeded by vLLM's NONE_HASH)
is the same everywhere. Multimodal requests must carry the image hashes in
the block hash extra keys (vLLM does this for mm inputs), so two prompts
with different images never share a key. The namespace (``ns``) must name
the model, revision, TP rank and dtype: vkv keys never match across
namespaces.

Run ``python3 -m vkv.vllm_connector --demo --vkvd /path/to/vkvd`` (or
``--rundir DIR`` for a running daemon) to simulate two requests sharing an
image prefix across two "workers".
"""
import argparse
import hashlib
import sys

import vkv


class Request:
    """The parts of vllm.v1.request.Request a connector reads."""

    def __init__(self, request_id, prompt_token_ids, block_hashes, mm_ranges=()):
        self.request_id = request_id
        self.prompt_token_ids = prompt_token_ids
        self.block_hashes = block_hashes  # one 32-byte hash per full block
        self.mm_ranges = list(mm_ranges)  # (start, end) token positions of images


class VkvConnector:
    """KV connector logic over vkv; `kv_caches` maps layer name -> paged
    numpy arrays (K, V) of shape [num_pages, block_size, kv_heads, head_dim]."""

    def __init__(self, client, block_size, kv_caches):
        self.c = client
        self.block_size = block_size
        self.kv_caches = kv_caches
        self.layers = list(kv_caches)
        self._load_plan = {}   # request_id -> (request, block_ids, first_block, n_blocks)
        self._save_stage = {}  # (request_id, block index) -> {layer: (k, v)}
        self._save_meta = {}   # same key -> (key bytes, visual ranges)

    # ---- scheduler side ----------------------------------------------------
    def get_num_new_matched_tokens(self, request, num_computed_tokens):
        hits, _cold = self.c.lookup(request.block_hashes)
        return max(hits * self.block_size - num_computed_tokens, 0), False

    def update_state_after_alloc(self, request, block_ids, num_external_tokens):
        if num_external_tokens:
            first = 0  # a real connector starts at num_computed_tokens // block_size
            n = num_external_tokens // self.block_size
            self._load_plan[request.request_id] = (request, block_ids, first, n)

    # ---- worker side -------------------------------------------------------
    def start_load_kv(self, forward_context=None):
        for rid, (req, block_ids, first, n) in list(self._load_plan.items()):
            keys = req.block_hashes[first:first + n]
            with self.c.fetch(keys) as f:
                for i in range(len(f)):
                    k, v = f.decode(i)  # [layers, block_size, heads, dim]
                    page = block_ids[first + i]
                    for li, name in enumerate(self.layers):
                        kc, vc = self.kv_caches[name]
                        kc[page], vc[page] = k[li], v[li]
            del self._load_plan[rid]

    def wait_for_layer_load(self, layer_name):
        return None

    def save_kv_layer(self, layer_name, kv_layer, attn_metadata):
        """attn_metadata here: list of (request, block index, page id) to save."""
        kc, vc = kv_layer
        for req, bi, page in attn_metadata:
            key = (req.request_id, bi)
            self._save_stage.setdefault(key, {})[layer_name] = (kc[page].copy(), vc[page].copy())
            lo, hi = bi * self.block_size, (bi + 1) * self.block_size
            ranges = [(max(s, lo) - lo, min(e, hi) - lo) for s, e in req.mm_ranges
                      if s < hi and e > lo]
            self._save_meta[key] = (req.block_hashes[bi], ranges)

    def wait_for_save(self):
        np = vkv._np()
        stored = 0
        for key, per_layer in list(self._save_stage.items()):
            if len(per_layer) != len(self.layers):
                continue  # not every layer seen yet
            k = np.stack([per_layer[n][0] for n in self.layers])
            v = np.stack([per_layer[n][1] for n in self.layers])
            h, ranges = self._save_meta.pop(key)
            stored += self.c.put(h, k, v, visual_ranges=ranges)
            del self._save_stage[key]
        return stored


def _block_hashes(tokens, block_size, image_hash, image_range):
    """Stand-in for vLLM's sha256_cbor block hashes: chained SHA-256 per full
    block, with the image hash mixed into blocks the image overlaps."""
    out, parent = [], b"\0" * 32
    for b in range(len(tokens) // block_size):
        lo, hi = b * block_size, (b + 1) * block_size
        h = hashlib.sha256(parent + repr(tokens[lo:hi]).encode())
        if image_range[0] < hi and image_range[1] > lo:
            h.update(image_hash)
        parent = h.digest()
        out.append(parent)
    return out


def demo(rundir):
    np = vkv._np()
    L, H, D, B, PAGES = 2, 2, 64, 32, 16
    rng = np.random.default_rng(0)
    img = hashlib.sha256(b"cat.png").digest()
    prefix = list(range(1000, 1000 + 3 * B))  # system prompt + image, 3 blocks
    image = (8, 8 + 64)
    ns = "demo-llava@rev/tp0/f16"

    def worker():
        caches = {f"layer.{i}": (np.zeros((PAGES, B, H, D), np.float16),
                                 np.zeros((PAGES, B, H, D), np.float16)) for i in range(L)}
        return VkvConnector(vkv.Client(rundir=rundir, ns=ns), B, caches), caches

    # worker 1 computes request A (3 blocks) and saves it
    w1, caches1 = worker()
    a = Request("A", prefix, _block_hashes(prefix, B, img, image), [image])
    assert w1.get_num_new_matched_tokens(a, 0) == (0, False)
    pages_a = [3, 7, 9]
    for name in w1.layers:  # "the model ran": fill the pages, then save each layer
        kc, vc = caches1[name]
        for p in pages_a:
            kc[p] = rng.standard_normal((B, H, D)).astype(np.float16)
            vc[p] = rng.standard_normal((B, H, D)).astype(np.float16)
        w1.save_kv_layer(name, (kc, vc), [(a, i, p) for i, p in enumerate(pages_a)])
    print(f"worker 1: stored {w1.wait_for_save()} blocks of request A")

    # worker 2 gets request B: same prefix and image, one more block
    w2, caches2 = worker()
    toks_b = prefix + list(range(5000, 5000 + B))
    b = Request("B", toks_b, _block_hashes(toks_b, B, img, image), [image])
    n, _ = w2.get_num_new_matched_tokens(b, 0)
    print(f"worker 2: vkv supplies {n} of {len(toks_b)} prompt tokens")
    assert n == 3 * B
    pages_b = [0, 1, 2, 5]
    w2.update_state_after_alloc(b, pages_b, n)
    w2.start_load_kv()
    worst = 0.0
    for name in w2.layers:
        for i in range(3):
            src, dst = caches1[name][0][pages_a[i]], caches2[name][0][pages_b[i]]
            lo = i * B
            raw = [t for t in range(B) if not image[0] <= lo + t < image[1]]
            assert np.array_equal(src[raw], dst[raw]), "raw tokens must be exact"
            vis = [t for t in range(B) if image[0] <= lo + t < image[1]]
            if vis:
                e = np.linalg.norm((src[vis] - dst[vis]).astype(np.float32))
                worst = max(worst, e / np.linalg.norm(src[vis].astype(np.float32)))
    print(f"worker 2: loaded; text tokens bit-exact, image tokens rel. error <= {worst:.3f}")
    # a different image never matches
    other = Request("C", prefix, _block_hashes(prefix, B, hashlib.sha256(b"dog.png").digest(),
                                               image), [image])
    assert w2.get_num_new_matched_tokens(other, 0)[0] == 0
    print("request with another image: 0 tokens matched (keys differ)")
    w1.c.close()
    w2.c.close()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--demo", action="store_true", help="run the simulation")
    ap.add_argument("--rundir", help="runtime dir of a running vkvd")
    ap.add_argument("--vkvd", help="start a private vkvd from this binary")
    args = ap.parse_args(argv)
    if not args.demo:
        print(__doc__)
        return 0
    try:
        vkv._np()
    except ImportError:
        print("numpy missing: skipped")
        return 77
    if args.vkvd:
        from vkv.daemon import Vkvd
        with Vkvd(args.vkvd) as d:
            demo(d.rundir)
    else:
        demo(args.rundir)
    print("demo: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
