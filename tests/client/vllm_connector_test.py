#!/usr/bin/python3
"""vkv.vllm.VkvConnector against vLLM's real classes and a real vkvd.

usage: vllm_connector_test.py VKVD LIBVKV
Exits 77 (skipped, with the reason) when vllm or torch does not import: CI's
default machine has neither (they are ~9 GiB; scripts/install-vllm.sh puts
them into a virtual environment that this test's CMake entry then uses).

What runs here is everything vLLM does with a connector except the model:
vLLM's own VllmConfig (ModelConfig from a local config.json, no weights,
CacheConfig with sha256_cbor, KVTransferConfig with the documented
kv_connector / kv_connector_module_path), KVConnectorFactory.create_connector
for both roles, real Request objects with multimodal features hashed by
vLLM's own get_request_block_hasher (mm hashes in the extra keys),
KVCacheBlocks, NewRequestData/SchedulerOutput, torch KV caches in the
FlashAttention layout, KVConnectorStats and the Prometheus metrics classes.
The forward pass is replaced by writing synthetic KV into the pages (no
GPU here). Records the vLLM version checked.
"""
import hashlib
import inspect
import json
import os
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
if os.environ.get("VKV_TEST_SKIP") and "--instance" not in sys.argv:
    print("skipped: " + os.environ["VKV_TEST_SKIP"])
    sys.exit(77)
sys.path.insert(0, os.path.join(HERE, "..", "..", "client", "python"))
try:
    import numpy as np
    import torch
    import vllm
    from vllm.config import (CacheConfig, DeviceConfig, KVTransferConfig, ModelConfig,
                             VllmConfig)
except Exception as e:  # noqa: BLE001 - any failure to import is a skip with its reason
    print(f"skipped: vllm/torch not importable here ({type(e).__name__}: {e}); "
          "scripts/install-vllm.sh installs them")
    sys.exit(77)

VKVD, LIB = sys.argv[1:3]
os.environ["VKV_LIBRARY"] = LIB
import vkv  # noqa: E402
from vkv.daemon import Vkvd  # noqa: E402

BS, CHUNK, L, H, D, PAGES = 16, 64, 3, 2, 64, 40
SYS_T, IMG_T = 24, 104


def model_dir():
    d = tempfile.mkdtemp(prefix="vkv-tiny-llama-")
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump({"architectures": ["LlamaForCausalLM"], "model_type": "llama",
                   "hidden_size": 128, "intermediate_size": 256, "num_attention_heads": 4,
                   "num_key_value_heads": H, "head_dim": D, "num_hidden_layers": L,
                   "vocab_size": 32064, "max_position_embeddings": 2048,
                   "torch_dtype": "float16", "rms_norm_eps": 1e-5}, f)
    return d


def make_config(mdir, rundir, algo="sha256_cbor", policy="recompute"):
    m = ModelConfig(model=mdir, dtype="float16", skip_tokenizer_init=True, max_model_len=1024)
    cc = CacheConfig(block_size=BS, prefix_caching_hash_algo=algo, enable_prefix_caching=True)
    ktc = KVTransferConfig(kv_connector="VkvConnector", kv_connector_module_path="vkv.vllm",
                           kv_role="kv_both", kv_load_failure_policy=policy,
                           kv_connector_extra_config={"vkv_rundir": rundir,
                                                      "vkv_chunk_tokens": CHUNK})
    return VllmConfig(model_config=m, cache_config=cc, kv_transfer_config=ktc,
                      device_config=DeviceConfig(device="cpu"))


def kv_cache_config(names):
    from vllm.v1.kv_cache_interface import FullAttentionSpec, KVCacheConfig, KVCacheGroupSpec
    spec = FullAttentionSpec(block_size=BS, num_kv_heads=H, head_size=D, dtype=torch.float16)
    return KVCacheConfig(num_blocks=PAGES, kv_cache_tensors=[],
                         kv_cache_groups=[KVCacheGroupSpec(names, spec)])


def connectors(vc, names):
    from vllm.distributed.kv_transfer.kv_connector.factory import KVConnectorFactory
    from vllm.distributed.kv_transfer.kv_connector.v1.base import KVConnectorRole
    kc = kv_cache_config(names)
    s = KVConnectorFactory.create_connector(vc, KVConnectorRole.SCHEDULER, kc)
    w = KVConnectorFactory.create_connector(vc, KVConnectorRole.WORKER, kc)
    return s, w


def make_request(rid, question_seed, image, n_question, hasher):
    from vllm.multimodal.inputs import MultiModalFeatureSpec, PlaceholderRange
    from vllm.sampling_params import SamplingParams
    from vllm.v1.request import Request
    rng = np.random.default_rng(question_seed)
    toks = list(range(1000, 1000 + SYS_T)) + [32000] * IMG_T
    toks += [int(x) for x in rng.integers(2000, 30000, n_question)]
    mm_hash = hashlib.sha256(image.encode()).hexdigest()  # vLLM: a hash of the image content
    feat = MultiModalFeatureSpec(data=None, modality="image", identifier=mm_hash,
                                 mm_position=PlaceholderRange(offset=SYS_T, length=IMG_T),
                                 mm_hash=mm_hash)
    return Request(request_id=rid, prompt_token_ids=toks,
                   sampling_params=SamplingParams(max_tokens=1), pooling_params=None,
                   mm_features=[feat], block_hasher=hasher)


def caches():
    """FlashAttention layout (2, num_blocks, block_size, H, D) per layer, HND
    strides for the second instance (as vLLM's stride order makes them)."""
    return {f"model.layers.{l}.self_attn.attn": torch.full((2, PAGES, BS, H, D), 7.0,
                                                           dtype=torch.float16)
            for l in range(L)}


def synth(n, image, qseed):
    pre = SYS_T + IMG_T
    a = np.random.default_rng(int(hashlib.sha256(image.encode()).hexdigest()[:8], 16)) \
        .standard_normal((2, L, pre, H, D))
    b = np.random.default_rng(qseed).standard_normal((2, L, max(n - pre, 0), H, D))
    return torch.as_tensor(np.concatenate([a, b], axis=2)[:, :, :n]).to(torch.float16)


def write(kvc, names, ids, kv):
    pos = torch.arange(kv.shape[2])
    pg, sl = torch.as_tensor(ids)[pos // BS], pos % BS
    for l, name in enumerate(names):
        for s in range(2):
            kvc[name][s][pg, sl] = kv[s, l]


def read(kvc, names, ids, n):
    pos = torch.arange(n)
    pg, sl = torch.as_tensor(ids)[pos // BS], pos % BS
    return torch.stack([torch.stack([kvc[name][s][pg, sl] for name in names]) for s in range(2)])


def schedule(s, req, ids):
    """The scheduler's calls for a new request: lookup, allocation, meta."""
    from vllm.v1.core.kv_cache_manager import KVCacheBlocks
    from vllm.v1.core.kv_cache_utils import KVCacheBlock
    from vllm.v1.core.sched.output import NewRequestData, SchedulerOutput
    n, asynchronous = s.get_num_new_matched_tokens(req, 0)
    assert asynchronous is False
    s.update_state_after_alloc(req, KVCacheBlocks(blocks=([KVCacheBlock(i) for i in ids],)), n)
    so = SchedulerOutput.make_empty()
    so.scheduled_new_reqs = [NewRequestData.from_request(req, (list(ids),))]
    so.num_scheduled_tokens = {req.request_id: req.num_tokens - n}
    so.total_num_scheduled_tokens = req.num_tokens - n
    so.scheduled_new_reqs[0].num_computed_tokens = n
    return n, s.build_connector_meta(so)


def worker_step(w, meta, compute=None):
    w.bind_connector_metadata(meta)
    w.start_load_kv(None)
    for name in w.worker.geo.layers:
        w.wait_for_layer_load(name)
    if compute:
        compute()
    w.wait_for_save()
    assert w.get_finished(set()) == (None, None)
    errors = w.get_block_ids_with_load_errors()
    w.clear_connector_metadata()
    return errors


def test_signatures():
    """Every method vLLM calls keeps the base class's parameter names."""
    from vllm.distributed.kv_transfer.kv_connector.v1.base import KVConnectorBase_V1
    from vkv.vllm import VkvConnector
    assert issubclass(VkvConnector, KVConnectorBase_V1)
    for name in ("get_num_new_matched_tokens", "update_state_after_alloc", "build_connector_meta",
                 "request_finished", "register_kv_caches", "start_load_kv", "wait_for_layer_load",
                 "save_kv_layer", "wait_for_save", "get_finished",
                 "get_block_ids_with_load_errors", "get_kv_connector_stats", "shutdown",
                 "build_kv_connector_stats", "build_prom_metrics"):
        mine = list(inspect.signature(getattr(VkvConnector, name)).parameters)
        base = list(inspect.signature(getattr(KVConnectorBase_V1, name)).parameters)
        assert mine == base, (name, mine, base)
    abstract = getattr(KVConnectorBase_V1, "__abstractmethods__", set())
    assert not (abstract - set(vars(VkvConnector))), abstract - set(vars(VkvConnector))


def serve_line():
    """(env, args) of the `vllm serve` line documented in docs/VLLM.md."""
    import shlex
    doc = open(os.path.join(HERE, "..", "..", "docs", "VLLM.md")).read()
    block = doc.split("<!-- vllm-serve-line -->")[1].split("<!-- /vllm-serve-line -->")[0]
    line = [x for x in block.splitlines() if "vllm serve" in x][0]
    words = shlex.split(line)
    i = words.index("vllm")
    env = dict(w.split("=", 1) for w in words[:i])
    assert words[i + 1] == "serve"
    return env, words[i + 2:]


def cli_check(rundir):
    """The documented line, model swapped for the local tiny one, parsed by
    vLLM's own `vllm serve` argument parser into EngineArgs and a VllmConfig
    (vLLM's CPU platform: VLLM_TARGET_DEVICE=cpu, set by main for this
    subprocess), then both connector roles made from it."""
    from vllm.engine.arg_utils import EngineArgs
    from vllm.entrypoints.common.cli_args import make_arg_parser
    from vllm.utils.argparse_utils import FlexibleArgumentParser
    env, args = serve_line()
    assert env.get("PYTHONHASHSEED") == os.environ.get("PYTHONHASHSEED"), env
    args = ["--model", model_dir()] + args[1:] + ["--skip-tokenizer-init", "--max-model-len",
                                                  "1024"]
    ns = make_arg_parser(FlexibleArgumentParser()).parse_args(args)
    vc = EngineArgs.from_cli_args(ns).create_engine_config()
    ktc = vc.kv_transfer_config
    assert (ktc.kv_connector, ktc.kv_connector_module_path) == ("VkvConnector", "vkv.vllm")
    assert vc.cache_config.prefix_caching_hash_algo == "sha256_cbor"
    names = [f"model.layers.{l}.self_attn.attn" for l in range(L)]
    from vllm.v1.kv_cache_interface import FullAttentionSpec, KVCacheConfig, KVCacheGroupSpec
    spec = FullAttentionSpec(block_size=vc.cache_config.block_size, num_kv_heads=H, head_size=D,
                             dtype=torch.float16)
    kc = KVCacheConfig(num_blocks=PAGES, kv_cache_tensors=[],
                       kv_cache_groups=[KVCacheGroupSpec(names, spec)])
    from vllm.distributed.kv_transfer.kv_connector.factory import KVConnectorFactory
    from vllm.distributed.kv_transfer.kv_connector.v1.base import KVConnectorRole
    from vkv.vllm import VkvConnector
    for role in (KVConnectorRole.SCHEDULER, KVConnectorRole.WORKER):
        c = KVConnectorFactory.create_connector(vc, role, kc)
        assert type(c) is VkvConnector and c.chunk_tokens == 256
        c.shutdown()
    print(f"documented `vllm serve` line: parsed by vLLM {vllm.__version__}, "
          "VkvConnector created for both roles")


def main():
    if "--cli" in sys.argv:
        with Vkvd(VKVD) as d:
            os.environ["VKV_RUNDIR"] = d.rundir
            cli_check(d.rundir)
        return
    print(f"vLLM {vllm.__version__}, torch {torch.__version__}")
    import subprocess
    env, _ = serve_line()
    r = subprocess.run([sys.executable, os.path.abspath(__file__), VKVD, LIB, "--cli"],
                       env=dict(os.environ, VLLM_TARGET_DEVICE="cpu", **env),
                       capture_output=True, text=True, timeout=200)
    print("\n".join(x for x in r.stdout.splitlines() if "documented" in x))
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    test_signatures()
    from vllm.utils.hashing import sha256_cbor
    from vllm.v1.core.kv_cache_utils import get_request_block_hasher, init_none_hash
    from vkv import connector as core
    init_none_hash(sha256_cbor)  # what EngineCore does before the first request
    hasher = get_request_block_hasher(BS, sha256_cbor)
    mdir = model_dir()
    names = [f"model.layers.{l}.self_attn.attn" for l in range(L)]
    with Vkvd(VKVD) as d:
        try:
            # hash safety at construction: a 128-bit non-crypto hash is refused
            try:
                connectors(make_config(mdir, d.rundir, "xxhash"), names)
                raise AssertionError("xxhash accepted")
            except core.HashSafetyError as e:
                print(f"refused as it should: {e}")
            # vLLM's default load-failure policy fails requests on a cache miss
            try:
                connectors(make_config(mdir, d.rundir, policy="fail"), names)
                raise AssertionError("kv_load_failure_policy=fail accepted")
            except ValueError as e:
                assert "recompute" in str(e)
            vc = make_config(mdir, d.rundir)
            s1, w1 = connectors(vc, names)
            kv1 = caches()
            w1.register_kv_caches(kv1)
            r1 = make_request("r1", 1, "cat.png", 46, hasher)
            assert len(r1.block_hashes) == r1.num_tokens // BS
            assert all(isinstance(h, bytes) and len(h) == 32 for h in r1.block_hashes)
            ids1 = list(range(0, -(-r1.num_tokens // BS)))
            n, meta = schedule(s1, r1, ids1)
            assert n == 0 and not meta.loads and [x.chunk for x in meta.saves] == [0, 1]
            assert meta.saves[0].visual_ranges == [(SYS_T, CHUNK)]
            kva = synth(r1.num_tokens, "cat.png", 1)
            assert worker_step(w1, meta, lambda: write(kv1, names, ids1, kva)) == set()
            assert s1.request_finished(r1, ids1) == (False, None)
            st = w1.get_kv_connector_stats()
            assert st is not None and st.data["num_stored_chunks"] == 2, st
            # instance 2: other caches (HND strides), the same image, another question
            s2, w2 = connectors(vc, names)
            kv2 = {k: torch.full((2, PAGES, H, BS, D), 7.0, dtype=torch.float16)
                   .permute(0, 1, 3, 2, 4) for k in names}
            w2.register_kv_caches(kv2)
            assert w2.worker.geo.layout == "HND"
            r2 = make_request("r2", 2, "cat.png", 70, hasher)
            ids2 = list(range(PAGES - 1, PAGES - 1 - -(-r2.num_tokens // BS), -1))
            n2, meta2 = schedule(s2, r2, ids2)
            assert n2 == 2 * CHUNK, n2
            assert worker_step(w2, meta2) == set()
            got = read(kv2, names, ids2, n2)
            want = kva[:, :, :n2]
            text = torch.ones(n2, dtype=torch.bool)
            text[SYS_T:SYS_T + IMG_T] = False
            assert torch.equal(got[:, :, text].view(torch.int16), want[:, :, text].view(torch.int16))
            g, wv = got[:, :, ~text].float(), want[:, :, ~text].float()
            rel = float((g - wv).norm() / wv.norm())
            assert rel < 0.9, rel
            print(f"instance 2 loaded {n2} tokens through vLLM's classes: text bit-exact, "
                  f"visual rel. error {rel:.3f}")
            # another image (its mm hash differs): no match
            r3 = make_request("r3", 2, "dog.png", 70, hasher)
            assert s2.get_num_new_matched_tokens(r3, 0) == (0, False)
            s2.request_finished(r3, [])
            # eviction between lookup and load: vLLM gets the blocks as load errors
            r4 = make_request("r4", 2, "cat.png", 70, hasher)
            from vllm.v1.core.kv_cache_manager import KVCacheBlocks
            from vllm.v1.core.kv_cache_utils import KVCacheBlock
            n4, _ = s2.get_num_new_matched_tokens(r4, 0)
            ids4 = list(range(10, 10 + -(-r4.num_tokens // BS)))
            s2.update_state_after_alloc(r4, KVCacheBlocks(blocks=([KVCacheBlock(i) for i in ids4],)),
                                        n4)
            from vllm.v1.core.sched.output import NewRequestData, SchedulerOutput
            so = SchedulerOutput.make_empty()
            so.scheduled_new_reqs = [NewRequestData.from_request(r4, (ids4,))]
            so.num_scheduled_tokens = {"r4": r4.num_tokens - n4}
            so.scheduled_new_reqs[0].num_computed_tokens = n4
            meta4 = s2.build_connector_meta(so)
            keys = core.chunk_keys(r4.block_hashes, CHUNK // BS)
            with vkv.Client(rundir=d.rundir, ns=s2._clients[0]._opts.ns.decode()) as c:
                assert c.delete(keys[1:3]) >= 1
                bad = worker_step(w2, meta4)
                assert bad == set(ids4[CHUNK // BS:n4 // BS]), (bad, ids4)
                assert c.stats()["leases_active"] == 0
            s2.request_finished(r4, ids4)
            s2.request_finished(r2, ids2)
            assert not s2.sched.tracked() and not s1.sched.tracked()
            # stats through vLLM's classes
            st2 = w2.get_kv_connector_stats()
            agg = type(st2).__mro__[0](data=dict(st2.data))
            agg.aggregate(st)
            red = agg.reduce()
            assert red["num_hit_tokens"] == n2 + CHUNK and red["num_load_error_blocks"] == len(bad)
            from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
            import prometheus_client
            reg = CollectorRegistry()

            def on(cls):
                return lambda *a, **k: cls(*a, registry=reg, **k)

            from vkv.vllm import VkvConnector
            pm = VkvConnector.build_prom_metrics(vc, {Gauge: on(Gauge), Counter: on(Counter),
                                                      Histogram: on(Histogram)},
                                                 ["engine"], {0: ["0"]})
            pm.observe(st2.data, 0)
            text_out = prometheus_client.generate_latest(reg).decode()
            assert "vkv:num_hit_tokens_total" in text_out, text_out
            print("stats: " + ", ".join(f"{k}={v}" for k, v in sorted(red.items())))
            for x in (s1, w1, s2, w2):
                x.shutdown()
        except BaseException:
            print(d.log(), file=sys.stderr)
            raise
    print(f"vllm connector against vLLM {vllm.__version__}: ok")


if __name__ == "__main__":
    main()
