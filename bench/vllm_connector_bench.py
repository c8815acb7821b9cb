#!/usr/bin/python3
"""vkv's vLLM connector core at vLLM's block sizes.

usage: vllm_connector_bench.py VKVD LIBVKV [--tokens N] [--reps R]

1. Bits per element of one vkv block (every header and metadata byte) when a
   block holds one vLLM block (16 or 32 tokens, what a connector that keys
   each vLLM block separately stores) and when it aggregates a chunk of
   64..512 tokens; yardstick fp16's 16 bits, printed as the ratio.
2. Time to save and to load N image tokens (Qwen2-VL-7B's KV shape per
   rank: 28 layers, 4 KV heads, head dim 128, fp16) through
   WorkerCore.save/load against a private vkvd, with chunks of 16 tokens
   (one vLLM block per key) and of 256 tokens; yardstick: copying the same
   fp16 bytes from one set of vLLM pages into another with numpy (a
   gather/scatter of pages, what a fp16 offload connector moves), measured in
   the same run.
"""
import argparse
import hashlib
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "client", "python"))
import numpy as np  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("vkvd")
    ap.add_argument("lib")
    ap.add_argument("--tokens", type=int, default=1024)
    ap.add_argument("--reps", type=int, default=5)
    a = ap.parse_args()
    os.environ["VKV_LIBRARY"] = a.lib
    import vkv
    from vkv import connector as core
    from vkv.daemon import Vkvd

    print("bits/element of one block, all tokens visual (fp16 = 16):")
    print(f"{'model shape':28} " + " ".join(f"{t:>8}" for t in (16, 32, 64, 128, 256, 512)))
    for name, (L, H, D) in (("LLaVA-1.5-7B L32 H32 D128", (32, 32, 128)),
                            ("Qwen2-VL-7B L28 H4 D128", (28, 4, 128))):
        row = [core.bits_per_element(L, H, D, t) for t in (16, 32, 64, 128, 256, 512)]
        print(f"{name:28} " + " ".join(f"{b:8.3f}" for b in row))
        print(f"{'  ratio to fp16':28} " + " ".join(f"{b / 16:8.4f}" for b in row))

    L, H, D, BS, N = 28, 4, 128, 16, a.tokens
    pages = N // BS
    rng = np.random.default_rng(0)
    src = {f"l{l}": rng.standard_normal((2, pages, BS, H, D)).astype(np.float16) for l in range(L)}
    dst = {f"l{l}": np.zeros((2, 2 * pages, BS, H, D), np.float16) for l in range(L)}
    ids_src = list(range(pages))
    ids_dst = list(range(2 * pages - 1, pages - 1, -1))
    # yardstick: fp16 page gather + scatter of the same bytes
    ys = []
    for _ in range(a.reps):
        t0 = time.perf_counter()
        for l in range(L):
            dst[f"l{l}"][:, ids_dst] = src[f"l{l}"][:, ids_src]
        ys.append(time.perf_counter() - t0)
    y = min(ys)
    fp16_bytes = 2 * L * N * H * D * 2
    print(f"\n{N} image tokens, L{L} H{H} D{D} fp16 ({fp16_bytes / 2**20:.1f} MiB), "
          f"best of {a.reps}; yardstick fp16 page copy {y * 1e3:.2f} ms")
    print(f"{'chunk':>6} {'blocks':>7} {'save ms':>9} {'x copy':>7} {'load ms':>9} {'x copy':>7}")
    with Vkvd(a.vkvd, capacity="512M") as d:
        for chunk in (16, 256):
            c = vkv.Client(rundir=d.rundir, ns=f"bench|c{chunk}")
            w = core.WorkerCore(c, BS, chunk)
            saves, loads = [], []
            for r in range(a.reps):
                keys = [hashlib.sha256(f"{chunk}-{r}-{i}".encode()).digest()
                        for i in range(N // chunk)]
                bpc = chunk // BS
                w.register(src)
                specs = [core.SaveSpec("r", i, k, ids_src[i * bpc:(i + 1) * bpc], [(0, chunk)])
                         for i, k in enumerate(keys)]
                t0 = time.perf_counter()
                assert w.save(specs) == len(keys)
                saves.append(time.perf_counter() - t0)
                w.register(dst)
                t0 = time.perf_counter()
                w.load([core.LoadSpec("r", 0, keys, 0, N, ids_dst)])
                loads.append(time.perf_counter() - t0)
                assert not w.take_load_errors()
                c.delete(keys)
            s, ld = min(saves), min(loads)
            print(f"{chunk:6d} {N // chunk:7d} {s * 1e3:9.2f} {s / y:7.2f} {ld * 1e3:9.2f} "
                  f"{ld / y:7.2f}")
            c.close()


if __name__ == "__main__":
    main()
