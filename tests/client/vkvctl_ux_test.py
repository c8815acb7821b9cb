#!/usr/bin/python3
"""Operator ergonomics (issue 19) with real processes: a real vkvd, the real
vkvctl driven as a user would (what `ls` prints pasted into the next command,
in a pipe and in a pseudo-terminal of a set width), the shell completion
scripts run by real bash/zsh against the daemon, the Grafana dashboard's
queries checked against the metric names the daemon really exports, and
vkvd's start-up line and --check.

usage: vkvctl_ux_test.py VKVD LIBVKV VKVCTL MODE [ARG]
MODE: --ux | --daemon | --dashboard DASHBOARD.json | --completion BUILD_DIR CMAKE
(--completion installs the build into a temporary prefix with CMAKE --install
and runs the installed scripts)
Exits 77 (skipped) when numpy is missing (needed to put blocks).
"""
import fcntl
import json
import os
import re
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import termios
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
MODE = sys.argv[4]
os.environ["VKV_LIBRARY"] = LIB
import vkv  # noqa: E402
from vkv.daemon import Vkvd  # noqa: E402

# A long fingerprint, as real ones are, and two codecs for it: two
# namespaces with the same model part.
FP = "llava-hf/llava-1.5-7b-hf@a1b2c3d4e5f60718293a4b5c6d7e8f9012345678|tp0|f16"
MINMAX = "minmax:kmode=channel,kg=32,kp=0,vmode=token,vg=32,vp=0"
OTHER = "qwen/Qwen2-VL-7B-Instruct@main|tp0|bf16"
ESC = "\x1b["


def env_plain(**extra):
    """The environment without anything that changes vkvctl's output form."""
    e = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "COLUMNS", "TERM")}
    e.update(extra)
    return e


def run(d, *args, rc=0, env=None):
    """vkvctl in a pipe; returns (stdout, stderr) after checking the exit code."""
    cmd = [VKVCTL, "--rundir", d.rundir] + list(args)
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=env or env_plain())
    assert r.returncode == rc, f"{cmd}: rc {r.returncode} (want {rc})\n{r.stdout}\n{r.stderr}"
    return r.stdout, r.stderr


def jrun(d, *args, rc=0):
    out, _ = run(d, "--json", *args, rc=rc)
    return json.loads(out)


def run_pty(d, *args, cols=80, rows=40, env=None):
    """vkvctl with stdout and stderr on a pseudo-terminal of cols x rows;
    returns (exit code, everything it wrote, CR-LF turned into LF)."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
    p = subprocess.Popen([VKVCTL, "--rundir", d.rundir] + list(args), stdin=slave, stdout=slave,
                         stderr=slave, env=env or env_plain(TERM="xterm"), close_fds=True)
    os.close(slave)
    chunks = []
    while True:
        try:
            b = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not b:
            break
        chunks.append(b)
    os.close(master)
    p.wait(60)
    return p.returncode, b"".join(chunks).decode(errors="replace").replace("\r\n", "\n")


def strip_ansi(s):
    return re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", s)


def put(c, key, layers=2, tokens=32, heads=2, dim=64, visual=((0, 24),), seed=0):
    rng = np.random.default_rng(seed)
    k = rng.standard_normal((layers, tokens, heads, dim)).astype(np.float16)
    v = rng.standard_normal((layers, tokens, heads, dim)).astype(np.float16)
    assert c.put(key, k, v, visual_ranges=list(visual))


def ls_rows(text):
    """(key prefix, namespace as printed) of each row of a human `ls`."""
    lines = strip_ansi(text).rstrip("\n").split("\n")
    assert lines[0].startswith("KEY"), text
    start = lines[0].index("NAMESPACE")
    return [(ln.split()[0], ln[start:]) for ln in lines[1:] if ln.strip()]


def test_ux(d):
    a = vkv.Client(rundir=d.rundir, ns=FP)
    m = vkv.Client(rundir=d.rundir, ns=FP, codec=MINMAX)
    o = vkv.Client(rundir=d.rundir, ns=OTHER)
    # two keys sharing 10 hex digits, one key in two namespaces, others
    k1 = bytes.fromhex("afa9cf6f81" + "11" * 27)
    k2 = bytes.fromhex("afa9cf6f81" + "22" * 27)
    shared = bytes.fromhex("5ca1ab1e" + "33" * 28)
    lone = [vkv.key_chain(None, [7, i]) for i in range(3)]
    put(a, k1, seed=1)
    put(a, k2, seed=2)
    put(a, shared, seed=3)
    put(o, shared, seed=4)
    put(m, shared, seed=4)
    put(m, lone[0], seed=5, visual=((4, 20),))
    for i, k in enumerate(lone[1:]):
        put(o, k, seed=6 + i)
    full_a = jrun(d, "show", k1.hex())["ns"]
    assert full_a.startswith(FP + "#rotsign:"), full_a
    full_m = FP + "#" + MINMAX

    # --- the listing, in a pipe (no terminal, no $COLUMNS): whole names
    out, _ = run(d, "ls")
    assert ESC not in out, "colour in a pipe"
    rows = ls_rows(out)
    assert len(rows) == 8, out
    for key, ns in rows:
        assert len(key) == 16 and re.fullmatch(r"[0-9a-f]{16}", key), key
        assert not ns.endswith("..."), ns
    longo, _ = run(d, "ls", "--long")
    keys_long = {r[0] for r in ls_rows(longo)}
    assert {k1.hex(), k2.hex(), shared.hex()} <= keys_long and all(len(k) == 64 for k in keys_long)
    quiet, _ = run(d, "ls", "-q")
    assert len(quiet.split()) == 8 and all(len(k) == 16 for k in quiet.split())

    # --- paste-back: every printed key prefix (and its printed namespace)
    # works in show; without --ns where the key is in one namespace only
    for key, ns in rows:
        if key == shared.hex()[:16]:
            continue
        e = jrun(d, "show", key)
        assert e["key"].startswith(key) and e["ns"] == ns, (key, ns, e)
        assert jrun(d, "show", "--ns", ns, key)["key"] == e["key"]

    # --- prefixes: unique (8 digits), ambiguous, too short, unknown, not hex
    assert jrun(d, "show", lone[1].hex()[:8])["key"] == lone[1].hex()
    assert jrun(d, "show", lone[1].hex()[:8].upper())["key"] == lone[1].hex()
    _, err = run(d, "show", "afa9cf6f81", rc=2)
    assert "ambiguous" in err and k1.hex() in err and k2.hex() in err, err
    j = jrun(d, "show", "afa9cf6f", rc=2)
    assert j["error"] == "ambiguous" and len(j["candidates"]) == 2, j
    assert jrun(d, "show", "afa9cf6f811")["key"] == k1.hex()
    _, err = run(d, "show", "afa9cf6", rc=2)
    assert "too short" in err and "8 hex digits" in err, err
    _, err = run(d, "show", "0123456789", rc=4)
    assert "no entry matches key '0123456789'" in err, err
    _, err = run(d, "show", "afa9cf6g", rc=2)
    assert "not a key" in err, err
    # the same key in two namespaces: ambiguous, candidates name both
    _, err = run(d, "show", shared.hex()[:12], rc=2)
    assert "ambiguous" in err and full_a in err and full_m in err and OTHER in err, err
    assert "add --ns" in err, err

    # --- namespaces: full, unique prefix, model part, ambiguous, unknown
    assert jrun(d, "show", "--ns", "qwen", shared.hex()[:8])["ns"].startswith(OTHER + "#")
    assert jrun(d, "show", "--ns", "qwen/Qwen2-VL-7B-Instruct", shared.hex()[:8])["ns"] \
        .startswith(OTHER + "#")
    # a model part with two codecs names two namespaces: fine for a key that
    # is in one of them, ambiguous for a key in both, and for ls
    assert jrun(d, "show", "--ns", "llava-hf/llava-1.5-7b-hf", k1.hex()[:11])["ns"] == full_a
    assert jrun(d, "show", "--ns", "llava-hf/llava-1.5-7b-hf", lone[0].hex()[:8])["ns"] == full_m
    _, err = run(d, "show", "--ns", "llava-hf/llava-1.5-7b-hf", shared.hex()[:8], rc=2)
    assert "ambiguous" in err and full_a in err and full_m in err and OTHER not in err, err
    _, err = run(d, "ls", "--ns", "llava-hf/llava-1.5-7b-hf", rc=2)
    assert "namespace 'llava-hf/llava-1.5-7b-hf' is ambiguous" in err and full_m in err, err
    assert len(jrun(d, "ls", "--ns", "llava-hf/llava-1.5-7b-hf@a1b2c3d4e5f60718293a4b5c6d7e8f9012345678|tp0|f16#min")) == 2
    _, err = run(d, "show", "--ns", "llava-hf/llava-1.5-7b-hf", lone[1].hex()[:8], rc=4)
    assert "in the 2 namespaces" in err, err
    assert jrun(d, "show", "--ns", FP + "#rot", shared.hex()[:8])["ns"] == full_a
    assert jrun(d, "show", "--ns", FP + "#minmax", lone[0].hex()[:8])["ns"] == full_m
    _, err = run(d, "show", "--ns", "nosuchmodel", shared.hex()[:8], rc=4)
    assert "no namespace matches 'nosuchmodel'" in err, err
    ns_list = jrun(d, "namespaces")
    assert {n["ns"] for n in ns_list} == {full_a, full_m, jrun(d, "show", "--ns", "qwen",
                                                               lone[1].hex())["ns"]}
    assert sum(n["entries"] for n in ns_list) == 8
    assert {n["model"] for n in ns_list} == {"llava-hf/llava-1.5-7b-hf", "qwen/Qwen2-VL-7B-Instruct"}

    # --- a narrow terminal: lines fit, shortened names paste back
    for cols in (100, 72, 60):
        code, text = run_pty(d, "ls", cols=cols)
        assert code == 0, text
        assert ESC in text, "no colour on a terminal"
        plain = strip_ansi(text)
        for ln in plain.rstrip("\n").split("\n"):
            assert len(ln) <= cols, f"{cols} columns: {len(ln)}: {ln!r}"
        rows = ls_rows(plain)
        assert len(rows) == 8
        shortened = [ns for _, ns in rows if ns.endswith("...")]
        assert shortened, plain
        for key, ns in rows:
            if key == shared.hex()[:16]:
                e = jrun(d, "show", "--ns", ns, key)
            else:
                e = jrun(d, "show", "--ns", ns, key)
                assert jrun(d, "show", key)["ns"] == e["ns"]
            assert e["key"].startswith(key)
            assert ns.endswith("...") or ns == e["ns"]
    # too narrow to fit: still shortened, still pasteable
    code, text = run_pty(d, "ls", cols=40)
    rows = ls_rows(strip_ansi(text))
    assert code == 0 and len(rows) == 8
    for key, ns in rows:
        e = jrun(d, "show", "--ns", ns, key)
        assert e["key"].startswith(key) and (ns == e["ns"] or len(ns) < len(e["ns"]) - 20), ns
    # --long on a terminal keeps everything whole
    code, text = run_pty(d, "ls", "--long", cols=60)
    assert code == 0 and k1.hex() in text and full_m in strip_ansi(text)
    # NO_COLOR and --color never on a terminal; --color always in a pipe
    code, text = run_pty(d, "ls", cols=80, env=env_plain(TERM="xterm", NO_COLOR="1"))
    assert code == 0 and ESC not in text and "KEY" in text, text
    code, text = run_pty(d, "--color", "never", "show", k1.hex()[:11], cols=80)
    assert code == 0 and ESC not in text
    out, _ = run(d, "--color", "always", "ls")
    assert ESC in out
    _, err = run(d, "--color", "sometimes", "ls", rc=2)
    assert "--color" in err
    # COLUMNS applies when stdout is not a terminal
    out, _ = run(d, "ls", env=env_plain(COLUMNS="64"))
    assert all(len(ln) <= 64 for ln in out.rstrip("\n").split("\n")), out
    # top fits too
    code, text = run_pty(d, "top", "--once", "--interval-ms", "50", cols=50)
    assert code == 0 and "hits/s" in text
    for ln in strip_ansi(text).replace("\x1b[H", "").split("\n"):
        assert len(ln) <= 50, repr(ln)

    # --- show --layers
    e = jrun(d, "show", k1.hex()[:11], "--layers")
    b = e["block"]
    assert b["codec"] == full_a.split("#", 1)[1]
    assert (b["layers"], b["tokens"], b["kv_heads"], b["head_dim"]) == (2, 32, 2, 64)
    assert b["visual_ranges"] == [[0, 24]] and b["visual_tokens"] == 24 and b["raw_tokens"] == 8
    assert abs(b["raw_token_share"] - 0.25) < 1e-12
    assert b["bytes"] == e["size"]
    assert b["raw_bytes"] == 2 * 2 * 8 * 2 * 64 * 2  # K and V, layers, raw tokens, heads, dims, f16
    assert b["bits_bytes"] == 2 * 2 * 24 * 2 * 64 // 8
    assert b["header_bytes"] + b["raw_bytes"] + b["bits_bytes"] + b["lev_bytes"] + \
        b["padding_bytes"] == b["bytes"]
    assert len(b["per_layer"]) == 2 and b["scale_kind"] == "scale"
    for lay in b["per_layer"]:
        assert lay["bytes"] == lay["raw_bytes"] + lay["bits_bytes"] + lay["lev_bytes"]
        assert lay["raw_bytes"] * 2 == b["raw_bytes"]
        for kv in ("k_scale", "v_scale"):
            st = lay[kv]
            assert st["count"] == 24 * 2 and 0 < st["min"] <= st["mean"] <= st["max"], st
    assert b["per_layer"][0]["k_scale"] != b["per_layer"][1]["k_scale"]  # read per layer
    mm = jrun(d, "show", lone[0].hex()[:8], "--layers")["block"]
    assert mm["codec"] == MINMAX and mm["scale_kind"] == "spread"
    assert mm["visual_ranges"] == [[4, 20]] and mm["raw_tokens"] == 16
    for lay in mm["per_layer"]:
        assert lay["k_scale"]["min"] > 0 and lay["v_scale"]["min"] > 0
    out, _ = run(d, "show", k1.hex()[:11], "--layers")
    assert "LAYER" in out and "K SCALE" in out and "25.0% of the tokens" in out, out
    assert ESC not in out
    run(d, "show", "--layers", rc=2)

    # --- status --watch
    w = subprocess.run([VKVCTL, "--rundir", d.rundir, "--json", "status", "--watch",
                        "--iterations", "2", "--interval-ms", "50"], capture_output=True,
                       text=True, timeout=30)
    assert w.returncode == 0
    screens = [json.loads(x) for x in w.stdout.splitlines()]
    assert len(screens) == 2 and all(s["hot"]["entries"] == 8 for s in screens)
    # vkvd's default cold tier: 2 LMDB shards (cold-shards), none failed
    assert screens[0]["cold"]["shards"] == 2 and screens[0]["cold"]["shards_failed"] == 0
    out, _ = run(d, "status")
    assert "in 2 LMDB shards" in out and "FAILED" not in out, out
    run(d, "status", "--iterations", "2", rc=2)  # --iterations needs --watch

    # --- paste-back into export, evict, delete
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "x.safetensors")
        x = jrun(d, "export", lone[0].hex()[:10], path)
        assert x["key"] == lone[0].hex() and x["ns"] == full_m and os.path.getsize(path) > 0
    ev = jrun(d, "evict", "--to", "drop", lone[1].hex()[:8], lone[2].hex()[:8])
    assert ev == {"evicted": 2}, ev
    run(d, "show", lone[1].hex()[:8], rc=4)
    # delete across two namespaces at once, each key given by its prefix
    dl = jrun(d, "delete", k1.hex()[:11], lone[0].hex()[:8])
    assert dl == {"deleted": 2}, dl
    run(d, "show", k1.hex()[:11], rc=4)
    run(d, "show", lone[0].hex()[:8], rc=4)
    # --ns applies to every key given
    _, err = run(d, "delete", "--ns", "qwen", k2.hex()[:8], rc=4)
    assert "in namespace 'qwen/" in err, err
    assert jrun(d, "delete", "--ns", "qwen", shared.hex()[:8]) == {"deleted": 1}
    assert jrun(d, "delete", "--ns", FP + "#min", shared.hex()[:8]) == {"deleted": 1}
    assert jrun(d, "show", shared.hex()[:8])["ns"] == full_a  # unique again
    assert jrun(d, "delete", k2.hex()[:8]) == {"deleted": 1}
    _, err = run(d, "delete", k2.hex()[:8], rc=4)
    assert "no entry matches" in err
    # --- more entries than one LIST page (VKVP_MAX_LIST = 1000): the
    # listing follows the cursor, and a key on a later page resolves
    many = vkv.Client(rundir=d.rundir, ns="many@r|f16")
    mk = [vkv.key_chain(None, [11, i]) for i in range(1100)]
    for i, k in enumerate(mk):
        put(many, k, layers=1, tokens=8, heads=1, dim=64, visual=((0, 8),), seed=i)
    quiet, _ = run(d, "ls", "-q", "--ns", "many")
    assert sorted(quiet.split()) == sorted(k.hex()[:16] for k in mk)
    assert jrun(d, "show", mk[-1].hex()[:8])["key"] == mk[-1].hex()
    assert {n["model"]: n["entries"] for n in jrun(d, "namespaces")}["many"] == 1100
    many.close()
    for c in (a, m, o):
        c.close()


def test_daemon():
    tmp = tempfile.mkdtemp(prefix="vkvd-check-")
    try:
        good = os.path.join(tmp, "good.ini")
        with open(good, "w") as f:
            f.write("[vkvd]\ncapacity = 64M\nslab-size = 64M\ncold-max = 1G\n")
        bad = {
            "value": ("[vkvd]\ncapacity = lots\n", "bad value 'lots' for 'capacity'"),
            "name": ("[vkvd]\ncapasity = 1G\n", "unknown setting 'capasity'"),
            "section": ("[vkv]\ncapacity = 1G\n", "unknown section [vkv]"),
            "cross": ("[vkvd]\ncapacity = 1M\n", "must hold at least one slab"),
            "syntax": ("[vkvd]\nthis is not ini\n", ":2: invalid line"),
        }
        r = subprocess.run([VKVD, "--check", "--config", good], capture_output=True, text=True,
                           timeout=30)
        assert r.returncode == 0 and "configuration ok" in r.stdout and good in r.stdout, r
        for name, (text, msg) in bad.items():
            p = os.path.join(tmp, name + ".ini")
            with open(p, "w") as f:
                f.write(text)
            r = subprocess.run([VKVD, "--check", "--config", p], capture_output=True, text=True,
                               timeout=30)
            assert r.returncode == 2 and msg in r.stderr, (name, r)
            assert "configuration ok" not in r.stdout
        r = subprocess.run([VKVD, "--check", "--config", os.path.join(tmp, "missing.ini")],
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 2 and "cannot open config file" in r.stderr, r
        # --check never starts a daemon: no socket appears
        rd = os.path.join(tmp, "run")
        r = subprocess.run([VKVD, "--check", "--rundir", rd], capture_output=True, text=True,
                           timeout=30)
        assert r.returncode == 0 and not os.path.exists(os.path.join(rd, "vkvd.sock"))
        # the start-up line
        port = free_port()
        with Vkvd(VKVD, extra=["--metrics-port", str(port), "--cold-max", "1G"]) as d:
            deadline = time.monotonic() + 5
            while "started:" not in d.log() and time.monotonic() < deadline:
                time.sleep(0.05)
            lines = [ln for ln in d.log().splitlines() if "started:" in ln]
            assert len(lines) == 1, d.log()
            ln = lines[0]
            for part in ("backend host", "capacity 64 MiB", "rundir " + d.rundir,
                         "state dir " + d.statedir, "cold bound 1024 MiB",
                         f"metrics http://127.0.0.1:{port}/metrics"):
                assert part in ln, (part, ln)
        with Vkvd(VKVD, extra=["--cold-max", "0"]) as d:
            deadline = time.monotonic() + 5
            while "started:" not in d.log() and time.monotonic() < deadline:
                time.sleep(0.05)
            assert "cold bound off" in d.log() and "metrics off" in d.log(), d.log()
            out, _ = run(d, "status")
            assert "no cold tier: memory only" in out, out
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def scrape(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        text = r.read().decode()
    series = []  # (name, {label: value})
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        mm = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$", line)
        assert mm, line
        labels = dict(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"', mm.group(2) or ""))
        series.append((mm.group(1), labels))
    return series


PROMQL_WORDS = {"sum", "rate", "by", "without", "histogram_quantile", "changes", "max", "min",
                "avg", "count", "irate", "increase", "and", "or", "unless", "on", "ignoring",
                "group_left", "group_right", "bool", "offset", "le", "op", "tier", "state"}


def test_dashboard(path):
    dash = json.load(open(path))
    exprs = []
    for p in dash["panels"]:
        for t in p.get("targets", []):
            exprs.append(t["expr"])
    for v in dash.get("templating", {}).get("list", []):
        q = v.get("query")
        if isinstance(q, dict):
            exprs.append(q["query"])
    assert len(exprs) >= 20, len(exprs)
    port = free_port()
    with Vkvd(VKVD, extra=["--metrics-port", str(port)]) as d:
        # traffic so that every op the dashboard shows has happened
        c = vkv.Client(rundir=d.rundir, ns="dash@r|f16")
        keys = [vkv.key_chain(None, [9, i]) for i in range(3)]
        for i, k in enumerate(keys):
            put(c, k, seed=i)
        with c.fetch(keys) as f:
            assert len(f) == 3
        c.lookup([bytes(32)])
        c.close()
        deadline = time.monotonic() + 5
        while True:
            series = scrape(port)
            names = {n for n, _ in series}
            if "vkvd_commits_total" in names or time.monotonic() > deadline:
                break
            time.sleep(0.1)
    checked = set()
    for e in exprs:
        if e.startswith("label_values("):
            metric = re.match(r"label_values\((\w+)", e).group(1)
            assert metric in names, metric
            checked.add(metric)
            continue
        body = re.sub(r'"(?:[^"\\]|\\.)*"', '""', e)  # no label values
        body = re.sub(r"\[[^\]]*\]", "", body)  # no range selectors
        body = re.sub(r"\{[^}]*\}", "", body)  # no label matchers (checked below)
        body = re.sub(r"\b(by|without)\s*\([^)]*\)", "", body)  # no grouping labels
        for ident in re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", body):
            if ident in PROMQL_WORDS or re.fullmatch(r"[0-9.e]+", ident):
                continue
            assert ident.startswith("vkvd_"), (ident, e)
            assert ident in names, f"dashboard queries {ident}, the exporter has no such series"
            checked.add(ident)
        # every equality matcher selects an existing series (instance is
        # the label Prometheus adds when it scrapes)
        for metric, sel in re.findall(r"(vkvd_\w+)\{([^}]*)\}", e):
            want = dict(re.findall(r'(\w+)="([^"]*)"', sel))
            want.pop("instance", None)
            assert any(n == metric and all(lab.get(k) == v for k, v in want.items())
                       for n, lab in series), (metric, want)
    print(f"dashboard: {len(exprs)} queries, {len(checked)} metric names, all exported")
    assert len(checked) >= 20, checked


def test_completion(build, cmake, d):
    # the scripts as `cmake --install` lays them out
    prefix = tempfile.mkdtemp(prefix="vkv-install-")
    r = subprocess.run([cmake, "--install", build, "--prefix", prefix], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    bash_file = os.path.join(prefix, "share", "bash-completion", "completions", "vkvctl")
    zsh_dir = os.path.join(prefix, "share", "zsh", "site-functions")
    zsh_file = os.path.join(zsh_dir, "_vkvctl")
    assert os.path.isfile(bash_file) and os.path.isfile(zsh_file), prefix
    assert os.path.isfile(os.path.join(prefix, "share", "vkv", "grafana", "vkvd-dashboard.json"))
    r = subprocess.run(["bash", "-n", bash_file], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    a = vkv.Client(rundir=d.rundir, ns=FP)
    o = vkv.Client(rundir=d.rundir, ns=OTHER)
    k1 = bytes.fromhex("afa9cf6f81" + "11" * 27)
    k2 = bytes.fromhex("afa9cf6f82" + "22" * 27)
    k3 = bytes.fromhex("0badcafe" + "44" * 28)
    put(a, k1, seed=1)
    put(a, k2, seed=2)
    put(o, k3, seed=3)
    bindir = tempfile.mkdtemp(prefix="vkvctl-bin-")
    os.symlink(VKVCTL, os.path.join(bindir, "vkvctl"))
    env = dict(os.environ, PATH=bindir + ":" + os.environ["PATH"])

    def bash_complete(*words):
        """COMPREPLY of the bash function for the words typed (last = current)."""
        script = (f"source {bash_file}\n"
                  f"COMP_WORDS=({' '.join(sh_quote(w) for w in words)})\n"
                  f"COMP_CWORD={len(words) - 1}\n_vkvctl\nprintf '%s\\n' \"${{COMPREPLY[@]}}\"\n")
        r = subprocess.run(["bash", "-c", script], capture_output=True, text=True, env=env,
                           timeout=30)
        assert r.returncode == 0, r.stderr
        return [x for x in r.stdout.split("\n") if x]

    rd = d.rundir
    assert set(bash_complete("vkvctl", "st")) == {"status", "stats"}
    assert "--rundir" in bash_complete("vkvctl", "--r")
    assert set(bash_complete("vkvctl", "--rundir", rd, "ls", "--so", )) == {"--sort"}
    assert set(bash_complete("vkvctl", "ls", "--sort", "")) == {"recency", "size", "hits"}
    assert "--layers" in bash_complete("vkvctl", "show", "--l")
    got = bash_complete("vkvctl", "--rundir", rd, "show", "afa")
    assert set(got) == {k1.hex()[:16], k2.hex()[:16]}, got
    assert bash_complete("vkvctl", "--rundir", rd, "delete", "0BAD") == [k3.hex()[:16]]
    got = bash_complete("vkvctl", "--rundir", rd, "show", "--ns", "qwen", "")
    assert got == [k3.hex()[:16]], got
    got = bash_complete("vkvctl", "--rundir", rd, "show", "--ns", "")
    assert set(got) == {"llava-hf/llava-1.5-7b-hf", "qwen/Qwen2-VL-7B-Instruct"}, got
    # what completion offers is accepted by the command
    out, _ = run(d, "show", "--ns", "qwen/Qwen2-VL-7B-Instruct", k3.hex()[:16])
    assert k3.hex() in out
    # without a daemon: no keys, no error
    assert bash_complete("vkvctl", "--rundir", "/nonexistent-vkv", "show", "af") == []

    zsh = shutil.which("zsh")
    if not zsh:
        print("zsh not installed: zsh completion not checked")
    else:
        r = subprocess.run([zsh, "-n", zsh_file], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        # the file's functions without its last line (the call compinit
        # makes), compadd replaced by a printer, run as _vkvctl would
        body = open(zsh_file).read().rstrip("\n").rsplit("\n", 1)[0]
        script = body + f"""
compadd() {{ [[ $1 == -a ]] && print -l -- ${{(P)2}} }}
_vkvctl_bin=vkvctl
_vkvctl_rd=(--rundir {rd})
words=(show af)
_vkvctl_keys
words=(show --ns qwen 0b)
_vkvctl_keys
print -- ---
_vkvctl_namespaces
"""
        r = subprocess.run([zsh, "-f", "-c", script], capture_output=True, text=True, env=env,
                           timeout=30)
        assert r.returncode == 0, r.stderr
        keys_all, nss = r.stdout.split("---\n")
        lines = keys_all.split()
        assert lines[:3] and set(lines[:3]) == {k1.hex()[:16], k2.hex()[:16], k3.hex()[:16]}, r.stdout
        assert lines[3:] == [k3.hex()[:16]], r.stdout
        assert set(nss.split()) == {"llava-hf/llava-1.5-7b-hf", "qwen/Qwen2-VL-7B-Instruct"}
        # and for real: an interactive zsh (zsh/zpty) with compinit and the
        # installed directory on $fpath completes `delete 0b<TAB>`
        want = f"delete {k3.hex()[:16]}"
        script = f"""
setopt extendedglob
zmodload zsh/zpty
zpty z zsh -f -i
zpty -w z "PS1='%% '; fpath=({zsh_dir} \\$fpath); autoload -U compinit; compinit -u -D"
zpty -w -n z "vkvctl --rundir {rd} delete 0b"$'\\t'
out=
for i in {{1..80}}; do
  zpty -r -t z chunk && out+=$chunk
  [[ ${{out//$'\\e'\\[[0-9;?]#[a-zA-Z]/}} == *'{want}'* ]] && break
  sleep 0.25
done
print -r -- "$out"
zpty -d z
"""
        r = subprocess.run([zsh, "-f", "-c", script], capture_output=True, text=True, env=env,
                           timeout=60)
        assert want in strip_ansi(r.stdout), repr(r.stdout[-800:])
    a.close()
    o.close()
    shutil.rmtree(bindir, ignore_errors=True)
    shutil.rmtree(prefix, ignore_errors=True)


def sh_quote(w):
    return "'" + w.replace("'", "'\\''") + "'"


def main():
    if MODE == "--daemon":
        test_daemon()
        print("vkvd start-up line and --check: ok")
        return
    if MODE == "--dashboard":
        test_dashboard(sys.argv[5])
        return
    with Vkvd(VKVD) as d:
        try:
            if MODE == "--completion":
                test_completion(sys.argv[5], sys.argv[6], d)
            else:
                test_ux(d)
        except BaseException:
            print(d.log(), file=sys.stderr)
            raise
    print(f"{MODE}: ok")


if __name__ == "__main__":
    main()
