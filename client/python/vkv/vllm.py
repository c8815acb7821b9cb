"""vkv.vllm: vkv as a vLLM (v1) KV connector.

    PYTHONHASHSEED=0 vllm serve llava-hf/llava-1.5-7b-hf \\
        --prefix-caching-hash-algo sha256_cbor \\
        --kv-transfer-config '{"kv_connector":"VkvConnector",
                               "kv_connector_module_path":"vkv.vllm",
                               "kv_role":"kv_both"}'

``VkvConnector`` subclasses vLLM's ``KVConnectorBase_V1`` when vllm is
importable (``HAVE_VLLM``); otherwise it is a plain class with the same
methods, so that the module imports (and its signatures can be checked)
without vLLM. Every decision is made by ``vkv.connector`` (SchedulerCore,
WorkerCore); this file only converts vLLM's objects. docs/VLLM.md has the
settings (kv_connector_extra_config keys ``vkv_rundir``,
``vkv_chunk_tokens``, ``vkv_codec``, ``vkv_revision``, ``vkv_timeout_ms``).
Checked against vLLM 0.33.0.
"""
import logging
import os

import vkv
from vkv import connector as core

log = logging.getLogger("vkv.vllm")

try:  # vLLM is optional: the module must import without it
    from vllm.distributed.kv_transfer.kv_connector.v1.base import (  # noqa: F401
        KVConnectorBase_V1, KVConnectorMetadata, KVConnectorRole)
    HAVE_VLLM = True
    VLLM_IMPORT_ERROR = None
except Exception as e:  # ImportError, or a vLLM that fails to initialize here
    HAVE_VLLM = False
    VLLM_IMPORT_ERROR = f"{type(e).__name__}: {e}"

    class KVConnectorBase_V1:  # noqa: N801 - the name vLLM uses
        """Stand-in base when vLLM is not importable (same constructor)."""

        def __init__(self, vllm_config, role, kv_cache_config=None):
            self._vllm_config = vllm_config
            self._role = role
            self._kv_cache_config = kv_cache_config
            self._connector_metadata = None

        @property
        def role(self):
            return self._role

        def bind_connector_metadata(self, connector_metadata):
            self._connector_metadata = connector_metadata

        def clear_connector_metadata(self):
            self._connector_metadata = None

        def _get_connector_metadata(self):
            assert self._connector_metadata is not None
            return self._connector_metadata

    class KVConnectorMetadata:  # noqa: D101
        pass

    KVConnectorRole = None

if HAVE_VLLM:
    try:
        from vllm.distributed.kv_transfer.kv_connector.v1.metrics import (
            KVConnectorPromMetrics, KVConnectorStats)
    except Exception:  # older vLLM without connector stats
        KVConnectorStats = KVConnectorPromMetrics = None
else:
    KVConnectorStats = KVConnectorPromMetrics = None


def _is_scheduler(role):
    name = getattr(role, "name", role)
    return str(name).upper().endswith("SCHEDULER") or role == 0


class VkvConnectorMetadata(KVConnectorMetadata):
    """One step's loads and saves (vkv.connector.ConnectorMeta), picklable."""

    def __init__(self, meta):
        self.loads = meta.loads
        self.saves = meta.saves


if KVConnectorStats is not None:
    class VkvConnectorStats(KVConnectorStats):
        """Worker counters (vkv.connector.Stats) summed over workers."""

        def reset(self):
            self.data = {}

        def aggregate(self, other):
            for k, v in (other.data or {}).items():
                if not k.endswith("_rate"):
                    self.data[k] = self.data.get(k, 0) + v
            return self

        def reduce(self):
            d = {k: v for k, v in self.data.items() if not k.endswith("_rate")}
            req = d.get("num_requested_tokens", 0)
            d["retrieve_hit_rate"] = round(d.get("num_hit_tokens", 0) / req, 4) if req else 0.0
            return d

        def is_empty(self):
            return not any(v for k, v in self.data.items() if not k.endswith("_rate"))
else:
    VkvConnectorStats = None

# Prometheus names (counters unless noted); LMCache calls the first two
# lmcache:num_requested_tokens / lmcache:num_hit_tokens.
PROM_COUNTERS = {
    "num_requested_tokens": ("vkv:num_requested_tokens",
                             "Tokens the workers' loads were to supply (promised at scheduling)"),
    "num_hit_tokens": ("vkv:num_hit_tokens", "Tokens vkv decoded into vLLM's KV cache"),
    "num_load_error_blocks": ("vkv:num_load_error_blocks",
                              "vLLM blocks promised but not loaded (recomputed)"),
    "bytes_loaded": ("vkv:bytes_loaded", "Encoded bytes decoded from vkvd"),
    "bytes_stored": ("vkv:bytes_stored", "Encoded bytes stored into vkvd"),
    "num_stored_chunks": ("vkv:num_stored_chunks", "Chunks stored"),
    "load_seconds": ("vkv:load_seconds", "Seconds spent fetching and decoding"),
    "store_seconds": ("vkv:store_seconds", "Seconds spent gathering, encoding and committing"),
}

if KVConnectorPromMetrics is not None:
    class VkvPromMetrics(KVConnectorPromMetrics):
        """Counters per engine for the names in PROM_COUNTERS, plus the
        gauge vkv:retrieve_hit_rate of the last interval."""

        def __init__(self, vllm_config, metric_types, labelnames, per_engine_labelvalues):
            super().__init__(vllm_config, metric_types, labelnames, per_engine_labelvalues)
            self._c = {}
            for key, (name, doc) in PROM_COUNTERS.items():
                m = self._counter_cls(name=name, documentation=doc, labelnames=labelnames)
                self._c[key] = {i: m.labels(*v) for i, v in per_engine_labelvalues.items()}
            g = self._gauge_cls(name="vkv:retrieve_hit_rate", documentation=(
                "Loaded / promised tokens of the last interval"), labelnames=labelnames)
            self._g = {i: g.labels(*v) for i, v in per_engine_labelvalues.items()}

        def observe(self, transfer_stats_data, engine_idx=0):
            d = transfer_stats_data or {}
            for key, per_engine in self._c.items():
                v = d.get(key, 0)
                if v and engine_idx in per_engine:
                    per_engine[engine_idx].inc(v)
            req = d.get("num_requested_tokens", 0)
            if req and engine_idx in self._g:
                self._g[engine_idx].set(d.get("num_hit_tokens", 0) / req)
else:
    VkvPromMetrics = None


def _dtype_name(model_config, cache_config):
    cd = getattr(cache_config, "cache_dtype", "auto")
    if cd not in (None, "auto"):
        raise ValueError(f"kv_cache_dtype={cd!r}: vkv stores float16/bfloat16 KV caches only")
    name = str(getattr(model_config, "dtype", "")).replace("torch.", "")
    dt = {"float16": "f16", "half": "f16", "bfloat16": "bf16"}.get(name)
    if dt is None:
        raise ValueError(f"model dtype {name!r}: vkv stores float16/bfloat16 KV caches only")
    return dt


def _parallel(vllm_config):
    pc = vllm_config.parallel_config
    return (int(getattr(pc, "tensor_parallel_size", 1) or 1),
            int(getattr(pc, "pipeline_parallel_size", 1) or 1))


def _ranks():
    """(tp_rank, pp_rank) of this worker process."""
    try:
        from vllm.distributed.parallel_state import get_pp_group, get_tp_group
        return get_tp_group().rank_in_group, get_pp_group().rank_in_group
    except Exception:
        return 0, 0


def _hash_checks(vllm_config, warn=True):
    """Hash safety at start (see vkv.connector.check_hash_safety). Where vLLM
    resolves the chain's seed itself (a fixed default for SHA-256 since
    ~0.2x), an unset PYTHONHASHSEED is safe; older vLLM needs it."""
    algo = vllm_config.cache_config.prefix_caching_hash_algo
    env = dict(os.environ)
    try:
        from vllm.v1.core import kv_cache_utils as kcu
        from vllm.utils.hashing import get_hash_fn_by_name
        if algo in core.SAFE_HASH_ALGOS and hasattr(kcu, "resolve_none_hash_seed") and \
                "PYTHONHASHSEED" not in env:
            seed = kcu.resolve_none_hash_seed(get_hash_fn_by_name(algo))
            if seed != getattr(kcu, "DEFAULT_NONE_HASH_SEED", None):
                raise core.HashSafetyError(f"vLLM seeds its {algo} block-hash chain randomly "
                                           "here; set PYTHONHASHSEED")
            env["PYTHONHASHSEED"] = seed  # vLLM's own fixed seed: process-independent
    except ImportError:
        pass
    for w in core.check_hash_safety(algo, env):
        if warn:
            log.warning("vkv: %s", w)
    return algo


def _check_none_hash(algo):
    """After vLLM initialized its chain root: it must be hash_fn(seed) of the
    seed in force (not os.urandom)."""
    try:
        from vllm.utils.hashing import get_hash_fn_by_name
        from vllm.v1.core import kv_cache_utils as kcu
    except ImportError:
        return
    nh = getattr(kcu, "NONE_HASH", None)
    if nh is None:
        return
    seed = kcu.get_none_hash_seed() if hasattr(kcu, "get_none_hash_seed") else \
        os.environ.get("PYTHONHASHSEED")
    if seed is None:
        raise core.HashSafetyError("vLLM's block-hash root has no fixed seed")
    core.check_hash_safety(algo, {"PYTHONHASHSEED": seed}, nh, get_hash_fn_by_name(algo)(seed))


class VkvConnector(KVConnectorBase_V1):
    """vkv's KV connector: see the module doc and docs/VLLM.md."""

    def __init__(self, vllm_config, role, kv_cache_config=None):
        super().__init__(vllm_config, role, kv_cache_config)
        ktc = vllm_config.kv_transfer_config
        extra = dict(getattr(ktc, "kv_connector_extra_config", None) or {})
        policy = getattr(ktc, "kv_load_failure_policy", "recompute")
        if policy != "recompute":
            raise ValueError(
                f"kv_load_failure_policy={policy!r}: vkv is a cache, a chunk evicted between "
                "the scheduler's lookup and the worker's load is reported as a load error and "
                "must be recomputed; add \"kv_load_failure_policy\":\"recompute\" to "
                "--kv-transfer-config")
        self._algo = _hash_checks(vllm_config)
        self._none_hash_checked = False
        mc, cc = vllm_config.model_config, vllm_config.cache_config
        self.block_size = int(cc.block_size)
        self.chunk_tokens = int(extra.get("vkv_chunk_tokens", core.DEFAULT_CHUNK_TOKENS))
        groups = getattr(kv_cache_config, "kv_cache_groups", None)
        if groups is not None and len(groups) != 1:
            raise ValueError(f"vkv supports one KV cache group (got {len(groups)}: hybrid "
                             "models are not supported)")
        tp_size, pp_size = _parallel(vllm_config)
        heads = mc.get_num_kv_heads(vllm_config.parallel_config)
        head_size = mc.get_head_size()
        self.kv_format = f"H{heads}xD{head_size}"
        dtype = _dtype_name(mc, cc)
        revision = extra.get("vkv_revision") or getattr(mc, "revision", None) or "main"
        model = getattr(mc, "model", None) or "model"

        def ns(tp, pp):
            return core.namespace(model, revision, tp, tp_size, dtype, self.kv_format, pp, pp_size)

        opts = dict(rundir=extra.get("vkv_rundir"), codec=extra.get("vkv_codec"),
                    timeout_ms=int(extra.get("vkv_timeout_ms", 5000)))
        self.stats = core.Stats()
        self._requests = {}  # scheduler: req_id -> Request (live objects)
        if _is_scheduler(role):
            self._clients = [vkv.Client(ns=ns(t, p), name=f"vllm-sched-tp{t}pp{p}", **opts)
                             for p in range(pp_size) for t in range(tp_size)]

            def lookup(keys):
                return min(c.lookup(keys)[0] for c in self._clients)

            self.sched = core.SchedulerCore(lookup, self.block_size, self.chunk_tokens,
                                            self.stats)
            self.worker = None
        else:
            tp, pp = _ranks()
            self._clients = [vkv.Client(ns=ns(tp, pp), name=f"vllm-worker-tp{tp}pp{pp}", **opts)]
            self.worker = core.WorkerCore(self._clients[0], self.block_size, self.chunk_tokens,
                                          self.stats)
            self.sched = None
        log.info("vkv: %s connector, namespace %s, chunk %d tokens (%d vLLM blocks)",
                 "scheduler" if self.sched else "worker", ns(*(_ranks() if self.worker else (0, 0))),
                 self.chunk_tokens, self.chunk_tokens // self.block_size)

    # ---- scheduler side --------------------------------------------------------------------
    def get_num_new_matched_tokens(self, request, num_computed_tokens):
        if not self._none_hash_checked:
            _check_none_hash(self._algo)
            self._none_hash_checked = True
        n = self.sched.num_new_matched_tokens(request.request_id, request.block_hashes,
                                              request.num_tokens, num_computed_tokens)
        return n, False

    def update_state_after_alloc(self, request, blocks, num_external_tokens):
        ids = blocks.get_block_ids()[0] if hasattr(blocks, "get_block_ids") else blocks
        self._requests[request.request_id] = request
        self.sched.on_alloc(request.request_id, list(ids), request.num_prompt_tokens,
                            num_external_tokens, request.block_hashes)

    def build_connector_meta(self, scheduler_output):
        so = scheduler_output
        scheduled = []
        for nr in so.scheduled_new_reqs:
            scheduled.append((nr.req_id, list(nr.block_ids[0]) if nr.block_ids else None, True,
                              nr.num_computed_tokens, so.num_scheduled_tokens.get(nr.req_id, 0)))
        cr = so.scheduled_cached_reqs
        resumed = getattr(cr, "resumed_req_ids", set()) or set()
        for i, rid in enumerate(cr.req_ids):
            nb = cr.new_block_ids[i]
            scheduled.append((rid, list(nb[0]) if nb else None, rid in resumed,
                              cr.num_computed_tokens[i], so.num_scheduled_tokens.get(rid, 0)))

        def hashes(rid):
            return self._requests[rid].block_hashes

        def ranges(rid):
            out = []
            for f in getattr(self._requests[rid], "mm_features", None) or ():
                p = f.mm_position
                out.append((p.offset, p.offset + p.length))
            return out

        meta = self.sched.build_meta(scheduled, hashes, ranges)
        for rid in so.finished_req_ids or ():
            self._forget(rid)
        return VkvConnectorMetadata(meta)

    def _forget(self, req_id):
        self.sched.finished(req_id)
        self._requests.pop(req_id, None)

    def request_finished(self, request, block_ids):
        """Drops the request's state; saves are synchronous (wait_for_save),
        so vLLM may free the blocks at once."""
        self._forget(request.request_id)
        return False, None

    # ---- worker side -----------------------------------------------------------------------
    def register_kv_caches(self, kv_caches):
        g = self.worker.register(kv_caches)
        if f"H{g.kv_heads}xD{g.head_dim}" != self.kv_format:
            raise ValueError(f"KV caches are H{g.kv_heads}xD{g.head_dim}, namespace says "
                             f"{self.kv_format}")
        log.info("vkv: %d layers, %d pages of %d tokens, %s %s on %s", len(g.layers),
                 g.num_pages, g.page_size, g.layout, g.dtype, g.device)

    def start_load_kv(self, forward_context, **kwargs):
        meta = self._get_connector_metadata()
        if meta.loads:
            self.worker.load(meta.loads)

    def wait_for_layer_load(self, layer_name):
        return None  # start_load_kv decoded every layer before the forward pass

    def save_kv_layer(self, layer_name, kv_layer, attn_metadata, **kwargs):
        return None  # a vkv chunk holds all layers: wait_for_save stores it once

    def wait_for_save(self):
        meta = self._connector_metadata
        if meta is not None and meta.saves:
            self.worker.save(meta.saves)

    def get_finished(self, finished_req_ids):
        return None, None  # loads and saves complete inside the step

    def get_block_ids_with_load_errors(self):
        return self.worker.take_load_errors() if self.worker else set()

    def get_kv_connector_stats(self):
        if VkvConnectorStats is None:
            return None
        d = self.stats.snapshot(reset=True)
        if not any(v for k, v in d.items() if not k.endswith("_rate")):
            return None
        return VkvConnectorStats(data=d)

    @classmethod
    def build_kv_connector_stats(cls, data=None):
        if VkvConnectorStats is None:
            return None
        return VkvConnectorStats(data=dict(data or {}))

    @classmethod
    def build_prom_metrics(cls, vllm_config, metric_types, labelnames, per_engine_labelvalues):
        if VkvPromMetrics is None:
            return None
        return VkvPromMetrics(vllm_config, metric_types, labelnames, per_engine_labelvalues)

    def shutdown(self):
        for c in getattr(self, "_clients", ()):
            c.close()
        self._clients = []
