#!/usr/bin/python3
"""vkvctl against a real vkvd: every command with --json parsed by json,
exit codes checked; and the daemon's Prometheus endpoint scraped over HTTP
(urllib) before and after real traffic.

usage: vkvctl_test.py VKVD LIBVKV VKVCTL [--metrics | --ns-ops]
--metrics runs only the scrape test (it needs vkvd to wire daemon/metrics.c);
--ns-ops only evict/delete by namespace (needs server.c to pass the ns).
Exits 77 (skipped) when numpy is missing.
"""
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

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

NS = "ctl-model@r/tp0/f16"


def ctl(d, *args, rc=0, json_out=True):
    cmd = [VKVCTL, "--rundir", d.rundir] + (["--json"] if json_out else []) + list(args)
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    assert r.returncode == rc, f"{cmd}: rc {r.returncode} (want {rc})\n{r.stdout}\n{r.stderr}"
    if json_out and r.stdout.strip():
        lines = [json.loads(x) for x in r.stdout.strip().splitlines()]
        return lines[0] if len(lines) == 1 else lines
    return r.stdout


def put_some(c, n, seed=1):
    keys = []
    rng = np.random.default_rng(seed)
    parent = None
    for i in range(n):
        key = vkv.key_chain(parent, [seed, i])
        k = rng.standard_normal((1, 32, 1, 64)).astype(np.float16)
        assert c.put(key, k, k, visual_ranges=[(0, 32)])
        keys.append(key)
        parent = key
    return keys


def test_commands(d):
    # usage errors and help never need the daemon
    assert "usage" in ctl(d, "ls", "--help", json_out=False)
    ctl(d, "bogus", rc=2, json_out=False)
    ctl(d, "ls", "--sort", "nope", rc=2)
    ctl(d, "show", rc=2)
    ctl(d, "evict", "--ns", "x", "zz", rc=2)
    r = subprocess.run([VKVCTL, "--rundir", "/nonexistent-vkv", "--json", "status"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 3 and json.loads(r.stdout)["error"] == "VKV_ECONN"

    c = vkv.Client(rundir=d.rundir, ns=NS)
    keys = put_some(c, 3)
    with c.fetch(keys[:2]) as f:
        assert len(f) == 2
    c.lookup(keys)

    st = ctl(d, "status")
    assert st["hot"]["entries"] == 3 and st["sessions"] >= 1 and st["hits"] >= 2
    assert ctl(d, "ping") == {"ok": True}
    stats = ctl(d, "stats")
    assert stats["commits"] == 3

    ls = ctl(d, "ls")
    assert len(ls) == 3 and {e["key"] for e in ls} == {k.hex() for k in keys}
    full_ns = ls[0]["ns"]
    assert full_ns.startswith(NS + "#")
    by_hits = ctl(d, "ls", "--sort", "hits")
    assert [e["hits"] for e in by_hits] == sorted([e["hits"] for e in by_hits], reverse=True)
    assert by_hits[-1]["key"] == keys[2].hex()  # never fetched
    assert len(ctl(d, "ls", "--sort", "size", "--limit", "2")) == 2
    assert len(ctl(d, "ls", "--sort", "recency", "--tier", "hot")) == 3

    e = ctl(d, "show", "--ns", full_ns, keys[0].hex())
    assert e["key"] == keys[0].hex() and e["tier"] == "hot" and e["hits"] >= 1
    assert ctl(d, "show", "--ns", full_ns, "00" * 32, rc=4)["error"] == "VKV_ENOTFOUND"

    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "e.safetensors")
        x = ctl(d, "export", "--ns", full_ns, keys[1].hex(), out)
        assert x["layers"] == 1 and x["tokens"] == 32 and x["dtype"] == "f16"
        assert os.path.getsize(out) > 2 * 32 * 64 * 2
        ctl(d, "export", "--ns", full_ns, "11" * 32, out, rc=4)
        ctl(d, "export", "--ns", full_ns, keys[1].hex(), "/nonexistent-dir/x.safetensors", rc=5)

    top = ctl(d, "top", "--once", "--interval-ms", "200")
    for field in ("hits_per_s", "misses_per_s", "fetches_per_s", "puts_per_s", "hot_bytes",
                  "cold_bytes", "sessions", "leases"):
        assert field in top, field
    assert top["hot_entries"] == 3
    assert len(ctl(d, "top", "--iterations", "2", "--interval-ms", "100")) == 2
    assert "hits/s" in ctl(d, "top", "--once", "--interval-ms", "100", json_out=False)

    c.close()


def test_ns_ops(d):
    """evict/delete KEY --ns NS (needs server.c to honour the ns of DELETE/EVICT)."""
    c = vkv.Client(rundir=d.rundir, ns=NS)
    keys = put_some(c, 3, seed=3)
    full_ns = ctl(d, "ls")[0]["ns"]
    ev = ctl(d, "evict", "--ns", full_ns, "--to", "drop", keys[2].hex())
    assert ev == {"evicted": 1}, ev
    assert c.lookup([keys[2]]) == (0, 0)
    assert ctl(d, "delete", "--ns", full_ns, keys[0].hex()) == {"deleted": 1}
    assert ctl(d, "delete", "--ns", full_ns, keys[0].hex(), rc=4) == {"deleted": 0}
    assert c.lookup(keys) == (0, 0)
    assert c.lookup([keys[1]]) == (1, 0)
    assert ctl(d, "evict", "--all", "--to", "drop")["evicted"] >= 1
    c.close()


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def scrape(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        assert r.status == 200
        text = r.read().decode()
    vals = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            m = re.match(r"^(\S+) (\S+)$", line)
            assert m, line
            vals[m.group(1)] = float(m.group(2))
    return vals


def wait_scrape(port, pred, timeout=5.0):
    deadline = time.monotonic() + timeout
    while True:
        v = scrape(port)
        if pred(v) or time.monotonic() > deadline:
            return v
        time.sleep(0.1)


def test_metrics():
    port = free_port()
    with Vkvd(VKVD, extra=["--metrics-port", str(port)]) as d:
        try:
            v0 = wait_scrape(port, lambda v: "vkvd_sessions" in v)
            c = vkv.Client(rundir=d.rundir, ns=NS)
            keys = put_some(c, 4, seed=5)
            with c.fetch(keys) as f:
                assert len(f) == 4
            c.lookup([bytes(32)])
            h = 'vkvd_hits_total{tier="hot"}'
            v1 = wait_scrape(port, lambda v: v.get(h, 0) >= v0.get(h, 0) + 4)
            assert v1[h] >= v0.get(h, 0) + 4, v1
            assert v1["vkvd_commits_total"] >= v0.get("vkvd_commits_total", 0) + 4
            assert v1['vkvd_bytes{tier="hot"}'] > v0.get('vkvd_bytes{tier="hot"}', 0)
            assert v1["vkvd_sessions"] >= 1
            cnt = 'vkvd_request_duration_seconds_count{op="fetch"}'
            assert v1[cnt] >= v0.get(cnt, 0) + 1
            assert v1['vkvd_request_duration_seconds_bucket{op="fetch",le="+Inf"}'] == v1[cnt]
            for fam in ("vkvd_evictions_total", "vkvd_spills_total", "vkvd_restores_total",
                        "vkvd_leases", 'vkvd_hits_total{tier="cold"}', "vkvd_misses_total"):
                assert fam in v1, fam
            c.close()
        except BaseException:
            print(d.log(), file=sys.stderr)
            raise


def main():
    if "--metrics" in sys.argv:
        test_metrics()
        print("metrics over http: ok")
        return
    with Vkvd(VKVD) as d:
        try:
            if "--ns-ops" in sys.argv:
                test_ns_ops(d)
            else:
                test_commands(d)
        except BaseException:
            print(d.log(), file=sys.stderr)
            raise
    print("vkvctl: ok")


if __name__ == "__main__":
    main()
