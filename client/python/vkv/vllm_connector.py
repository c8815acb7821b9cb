"""A runnable demo of vkv's vLLM connector core (vkv.connector), no vLLM needed.

The real connector is ``vkv.vllm.VkvConnector`` (docs/VLLM.md); this demo
drives the same cores the way vLLM's scheduler and model runner do, with
numpy paged caches in vLLM's layout (2, pages, block_size, heads, head_dim):

  instance 1: lookup (nothing cached) -> alloc -> "forward pass" writes the
              pages -> wait_for_save stores each full 256-token chunk once
  instance 2: the same system prompt and image, another question: the lookup
              finds the image chunks, the worker decodes them straight into
              its own pages (vkv_decode_paged), text tokens bit-exact
  a prompt with another image matches nothing (vLLM's block hashes carry
  the image's mm hash).

    python3 -m vkv.vllm_connector --demo --vkvd build/daemon/vkvd   # private vkvd
    python3 -m vkv.vllm_connector --demo --rundir DIR               # a running one
"""
import argparse
import hashlib
import struct
import sys

import vkv
from vkv import connector as core

L, H, D, BS = 4, 4, 64, 16
SYS_T, IMG_T = 32, 480  # the image ends on a chunk boundary (2 x 256 tokens)


def _hashes(tokens, images):
    """Stand-in for vLLM's sha256_cbor block hashes: chained SHA-256 per
    16-token block with the image hash in the blocks it overlaps."""
    out, parent = [], hashlib.sha256(b"demo").digest()
    for b in range(len(tokens) // BS):
        h = hashlib.sha256(parent + struct.pack(f"<{BS}I", *tokens[b * BS:(b + 1) * BS]))
        for img, s, e in images:
            if s < (b + 1) * BS and e > b * BS:
                h.update(img)
        parent = h.digest()
        out.append(parent)
    return out


def _instance(rundir, np):
    c = vkv.Client(rundir=rundir, ns=core.namespace("demo-llava", "r1", 0, 1, "f16",
                                                     f"H{H}xD{D}"))
    sched = core.SchedulerCore(lambda keys: c.lookup(keys)[0], BS)
    work = core.WorkerCore(c, BS)
    caches = {f"layers.{l}": np.zeros((2, 64, BS, H, D), np.float16) for l in range(L)}
    work.register(caches)
    return c, sched, work, caches


def _step(sched, work, rid, tokens, images, block_ids):
    hashes = _hashes(tokens, images)
    n = sched.num_new_matched_tokens(rid, hashes, len(tokens), 0)
    sched.on_alloc(rid, block_ids, len(tokens), n, hashes)
    meta = sched.build_meta([(rid, block_ids, True, n, len(tokens) - n)], lambda r: hashes,
                            lambda r: [(s, e) for _, s, e in images])
    work.load(meta.loads)
    return n, meta


def demo(rundir):
    np = vkv._np()
    rng = np.random.default_rng(0)
    cat = hashlib.sha256(b"cat.png").digest()
    prefix = list(range(1000, 1000 + SYS_T)) + [32000] * IMG_T
    images = [(cat, SYS_T, SYS_T + IMG_T)]
    toks_a = prefix + list(range(5000, 5100))
    kv = rng.standard_normal((2, L, len(toks_a), H, D)).astype(np.float16)

    c1, s1, w1, caches1 = _instance(rundir, np)
    ids_a = list(range(-(-len(toks_a) // BS)))
    n, meta = _step(s1, w1, "A", toks_a, images, ids_a)
    pos = np.arange(len(toks_a))
    for l in range(L):  # "the forward pass" writes the pages
        caches1[f"layers.{l}"][:, np.asarray(ids_a)[pos // BS], pos % BS] = kv[:, l]
    stored = w1.save(meta.saves)
    s1.finished("A")
    print(f"instance 1: {n} tokens from vkv, stored {stored} chunks of 256 tokens "
          f"({len(toks_a)} prompt tokens; the 100-token tail is no full chunk)")

    c2, s2, w2, caches2 = _instance(rundir, np)
    toks_b = prefix + list(range(7000, 7040))
    ids_b = list(range(63, 63 - -(-len(toks_b) // BS), -1))
    n, meta = _step(s2, w2, "B", toks_b, images, ids_b)
    assert n == SYS_T + IMG_T and not w2.take_load_errors()
    pos = np.arange(n)
    got = np.stack([caches2[f"layers.{l}"][:, np.asarray(ids_b)[pos // BS], pos % BS]
                    for l in range(L)], axis=1)
    want = kv[:, :, :n]
    assert np.array_equal(got[:, :, :SYS_T].view(np.uint16), want[:, :, :SYS_T].view(np.uint16))
    vis = slice(SYS_T, n)
    rel = np.linalg.norm((got[:, :, vis] - want[:, :, vis]).astype(np.float32)) / \
        np.linalg.norm(want[:, :, vis].astype(np.float32))
    print(f"instance 2: vkv supplies {n} of {len(toks_b)} prompt tokens; text tokens "
          f"bit-exact, image tokens rel. error {rel:.3f}; leases held: "
          f"{c2.stats()['leases_active']}")
    dog = [(hashlib.sha256(b"dog.png").digest(), SYS_T, SYS_T + IMG_T)]
    m = s2.num_new_matched_tokens("C", _hashes(prefix + [1] * 40, dog), len(prefix) + 40, 0)
    assert m == 0
    print("a prompt with another image: 0 tokens matched (keys differ)")
    bpe = core.bits_per_element(L, H, D, 256)
    print(f"one 256-token image chunk: {bpe:.3f} bits/element (fp16: 16)")
    c1.close()
    c2.close()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--demo", action="store_true", help="run the demo")
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
