#!/usr/bin/python3
"""Cross-language check of docs/PROTOCOL.md.

Builds frames with Python's msgpack package exactly as the document describes,
pipes each to vkvp_dump (the C decoder) and checks its JSON reading, field by
field. Also checks that frames breaking the documented rules are refused with
the documented status. Usage: proto_python_test.py PATH/TO/vkvp_dump
Exits 77 (skipped) when /usr/bin/python3 has no msgpack module.
"""
import json
import os
import re
import subprocess
import sys

try:
    import msgpack
except ImportError:
    print("python3-msgpack not installed; skipping")
    sys.exit(77)

DUMP = sys.argv[1]
FAILS = []

DOC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "docs", "PROTOCOL.md")


def doc_ops():
    """The op numbers of docs/PROTOCOL.md's table ("| 2  | LOOKUP  | ..." rows)."""
    ops = {}
    with open(DOC, encoding="utf-8") as f:
        for line in f:
            m = re.match(r"\|\s*(\d+)\s*\|\s*([A-Z]+)\s*\|", line)
            if m:
                ops[m.group(2)] = int(m.group(1))
    return ops


# The ops come from the document this test checks; the C table (VKVP_OPS,
# printed by vkvp_dump --ops) must be the same, name for name.
OPS = doc_ops()
C_OPS = json.loads(subprocess.run([DUMP, "--ops"], stdout=subprocess.PIPE, check=True,
                                  timeout=20).stdout.decode("ascii"))
if OPS != C_OPS or not OPS:
    print("FAIL: op table of docs/PROTOCOL.md %r != vkvp_dump --ops %r" % (OPS, C_OPS))
    sys.exit(1)
NAMES = {v: k for k, v in OPS.items()}
HELLO, LOOKUP, FETCH, ALLOC, COMMIT, ABORT, RELEASE, DELETE = (
    OPS[n] for n in ("HELLO", "LOOKUP", "FETCH", "ALLOC", "COMMIT", "ABORT", "RELEASE", "DELETE"))
EVICT, FLUSH, STATS, LIST, INFO, PING = (
    OPS[n] for n in ("EVICT", "FLUSH", "STATS", "LIST", "INFO", "PING"))


def key(i):
    """A 32-byte cache key (msgpack bin, as the doc requires)."""
    return bytes((i * 31 + j) % 256 for j in range(32))


def pack(obj):
    return msgpack.packb(obj, use_bin_type=True)


def dump(frame, reply_op=None):
    """Runs vkvp_dump on frame; returns (exit code, parsed JSON)."""
    args = [DUMP] + (["--reply", str(reply_op)] if reply_op else [])
    p = subprocess.run(args, input=frame, stdout=subprocess.PIPE, timeout=20)
    return p.returncode, json.loads(p.stdout.decode("ascii"))


def expect_body(name, frame, want_body, reply_op=None):
    """Checks that the C side decodes frame and reads want_body from it."""
    rc, out = dump(frame, reply_op)
    if rc != 0:
        FAILS.append("%s: refused: %s" % (name, out))
        return
    if out["body"] != want_body:
        FAILS.append("%s: body %r != %r" % (name, out["body"], want_body))


def expect_error(name, frame, err, frag, reply_op=None):
    rc, out = dump(frame, reply_op)
    if rc != 1 or out.get("error") != err or frag not in out.get("why", ""):
        FAILS.append("%s: expected %s with %r, got rc %d %r" % (name, err, frag, rc, out))


def hx(b):
    return b.hex()


def text(b):
    """How the C renderer spells a byte string (bytes read as latin-1)."""
    return b.decode("latin-1")


# --- every request, built as the document describes -------------------------
REQS = [
    (HELLO, {"ns": "llava-1.5-7b@r1/tp0/f16|lloyd:g32", "pid": 4242, "name": "w0"},
     {"ns": "llava-1.5-7b@r1/tp0/f16|lloyd:g32", "pid": 4242, "name": "w0", "admin": False}),
    (HELLO, {"ns": "", "pid": 7, "admin": True}, {"ns": "", "pid": 7, "admin": True}),
    (LOOKUP, {"session": 9, "keys": [key(1), key(2)]},
     {"session": 9, "keys": [hx(key(1)), hx(key(2))]}),
    (FETCH, {"keys": [key(3)], "session": 2**64 - 1},
     {"session": 2**64 - 1, "keys": [hx(key(3))]}),
    (ALLOC, {"session": 9, "key": key(4), "size": 2**40},
     {"session": 9, "key": hx(key(4)), "size": 2**40}),
    (COMMIT, {"session": 9, "lease": 5}, {"session": 9, "lease": 5}),
    (ABORT, {"session": 9, "lease": 0}, {"session": 9, "lease": 0}),
    (RELEASE, {"session": 9, "leases": [1, 2, 2**63]}, {"session": 9, "leases": [1, 2, 2**63]}),
    (DELETE, {"session": 9, "keys": []}, {"session": 9, "keys": []}),
    (EVICT, {"session": 9, "keys": [key(5)]},
     {"session": 9, "keys": [hx(key(5))], "all": False, "to": "cold"}),
    (EVICT, {"session": 9, "all": True, "to": "drop"}, {"session": 9, "all": True, "to": "drop"}),
    (FLUSH, {"session": 9}, {"session": 9}),
    (STATS, {}, {}),
    (STATS, {"session": 3}, {"session": 3}),
    (LIST, {"session": 9}, {"session": 9, "cursor": 0, "limit": 100}),
    (LIST, {"session": 9, "cursor": 77, "limit": 1000, "ns": b"raw\x00\xff".decode("latin-1")},
     None),  # str with non-ASCII: checked below
    (INFO, {"session": 9, "key": key(6), "ns": "m"}, {"session": 9, "key": hx(key(6)), "ns": "m"}),
    (PING, {}, {}),
]

for i, (op, body, want) in enumerate(REQS):
    req_id = 0x0123456789ABCDEF + i
    frame = pack([1, op, req_id, body])
    rc, out = dump(frame)
    if rc != 0:
        FAILS.append("request %s #%d refused: %r" % (NAMES[op], i, out))
        continue
    if out["op"] != NAMES[op] or out["req_id"] != req_id or out["version"] != 1:
        FAILS.append("request %s #%d header: %r" % (NAMES[op], i, out))
    if want is not None and out["body"] != want:
        FAILS.append("request %s #%d body %r != %r" % (NAMES[op], i, out["body"], want))

# a namespace that is not UTF-8: bytes are kept as they are
ns_bytes = b"raw\x00\xff"
raw = msgpack.packb([1, LIST, 1, {"session": 9, "ns": ns_bytes}], use_bin_type=False)
expect_body("LIST raw ns", raw, {"session": 9, "cursor": 0, "limit": 100, "ns": text(ns_bytes)})

# --- every reply, built as the document describes ---------------------------
ENTRY = {"ns": "m", "key": key(9), "state": "ready", "tier": "hot", "size": 9000, "hits": 4,
         "last_ms": 1700000000123, "pins": 1, "shape": "32x8x128x256 f16 lloyd:g32"}
ENTRY_J = dict(ENTRY, key=hx(key(9)))
REPS = [
    (HELLO, {"session": 5, "epoch": 3, "backend": "host", "lease_ttl_ms": 30000,
             "page_size": 65536, "fd_path": "/run/user/1000/vkv/vkvd.fd",
             "slabs": [{"id": 0, "size": 2**30, "handle": b""}]},
     {"session": 5, "epoch": 3, "backend": "host", "lease_ttl_ms": 30000, "page_size": 65536,
      "fd_path": "/run/user/1000/vkv/vkvd.fd", "slabs": [{"id": 0, "size": 2**30, "handle": ""}]}),
    (HELLO, {"session": 5, "epoch": 3, "backend": "cuda", "lease_ttl_ms": 1, "page_size": 2**21,
             "fd_path": "", "slabs": [{"id": 7, "size": 2**21, "handle": bytes(range(64))}]},
     {"session": 5, "epoch": 3, "backend": "cuda", "lease_ttl_ms": 1, "page_size": 2**21,
      "fd_path": "", "slabs": [{"id": 7, "size": 2**21, "handle": bytes(range(64)).hex()}]}),
    (LOOKUP, {"hits": 3, "cold": 1}, {"hits": 3, "cold": 1}),
    (FETCH, {"lease": 8, "blocks": [{"len": 5000, "ext": [[0, 10, 1], [1, 0, 1]]}]},
     {"lease": 8, "blocks": [{"len": 5000, "ext": [[0, 10, 1], [1, 0, 1]]}]}),
    (FETCH, {"lease": 8, "blocks": []}, {"lease": 8, "blocks": []}),
    (ALLOC, {"lease": 9, "len": 100, "ext": [[2, 3, 1]]},
     {"lease": 9, "len": 100, "ext": [[2, 3, 1]]}),
    (COMMIT, {}, {}), (ABORT, {}, {}), (PING, {}, {}),
    (RELEASE, {"released": 2}, {"released": 2}),
    (DELETE, {"deleted": 0}, {"deleted": 0}),
    (EVICT, {"evicted": 7}, {"evicted": 7}),
    (FLUSH, {"spilled": 1}, {"spilled": 1}),
    (STATS, {"counters": {"hits": 1, "misses": 2}}, {"counters": {"hits": 1, "misses": 2}}),
    (LIST, {"entries": [ENTRY], "next": 0}, {"entries": [ENTRY_J], "next": 0}),
    (INFO, {"entry": ENTRY}, {"entry": ENTRY_J}),
]
for i, (op, body, want) in enumerate(REPS):
    frame = pack([1, 0, 42 + i, 99, body])
    rc, out = dump(frame, op)
    if rc != 0:
        FAILS.append("reply %s #%d refused: %r" % (NAMES[op], i, out))
        continue
    if out["status"] != 0 or out["req_id"] != 42 + i or out["epoch"] != 99:
        FAILS.append("reply %s #%d header: %r" % (NAMES[op], i, out))
    if out["body"] != want:
        FAILS.append("reply %s #%d body %r != %r" % (NAMES[op], i, out["body"], want))

# error reply: status < 0, body {"msg": str}
rc, out = dump(pack([1, -17, 5, 6, {"msg": "being written"}]), ALLOC)
if rc != 0 or out["status"] != -17 or out["body"] != {"msg": "being written"}:
    FAILS.append("error reply: %r" % (out,))

# --- documented rules, from the other side ----------------------------------
expect_error("unknown key", pack([1, PING, 1, {"sesion": 1}]), "VKV_EPROTO", "unknown key 'sesion'")
expect_error("missing key", pack([1, LOOKUP, 1, {"session": 1}]), "VKV_EPROTO", "missing key 'keys'")
expect_error("31-byte key", pack([1, LOOKUP, 1, {"session": 1, "keys": [b"x" * 31]}]),
             "VKV_EPROTO", "31 bytes")
expect_error("key as str", pack([1, LOOKUP, 1, {"session": 1, "keys": ["x" * 32]}]),
             "VKV_EPROTO", "expected bin, got str")
expect_error("negative uint", pack([1, FLUSH, 1, {"session": -1}]), "VKV_EPROTO", "negative")
expect_error("float", pack([1, FLUSH, 1, {"session": 1.0}]), "VKV_EPROTO", "float")
expect_error("version 2", pack([2, PING, 1, {}]), "VKV_EPROTO", "version 2")
expect_error("unknown op", pack([1, 18, 1, {}]), "VKV_EPROTO", "unknown op 18")
expect_error("3 elements", pack([1, PING, 1]), "VKV_EPROTO", "array of 3")
expect_error("trailing", pack([1, PING, 1, {}]) + pack(None), "VKV_EPROTO", "trailing")
expect_error("ext", pack([1, PING, 1, {"session": msgpack.ExtType(1, b"x")}]),
             "VKV_EPROTO", "ext type")
expect_error("deep", pack([1, LOOKUP, 1, {"session": 1, "keys": [[[[[[[1]]]]]]]}]),
             "VKV_EPROTO", "nesting")
expect_error("too many keys", pack([1, LOOKUP, 1, {"session": 1, "keys": [key(0)] * 4097}]),
             "VKV_ETOOBIG", "4097")
expect_error("long ns", pack([1, HELLO, 1, {"ns": "n" * 257, "pid": 1}]), "VKV_ETOOBIG", "257")
expect_error("empty ns", pack([1, HELLO, 1, {"ns": "", "pid": 1}]), "VKV_EPROTO", "admin")
expect_error("big frame", pack([1, PING, 1, {"session": 1}]) + b"\xc0" * (1 << 20),
             "VKV_ETOOBIG", "exceeds")
expect_error("evict both", pack([1, EVICT, 1, {"session": 1, "keys": [], "all": True}]),
             "VKV_EPROTO", "exactly one")
expect_error("reply of 4", pack([1, 0, 1, {}]), "VKV_EPROTO", "array of 4", reply_op=PING)
expect_error("cold > hits", pack([1, 0, 1, 1, {"hits": 1, "cold": 2}]), "VKV_EPROTO", "cold",
             reply_op=LOOKUP)

if FAILS:
    print("\n".join(FAILS))
    sys.exit(1)
print("ok: %d requests, %d replies, rules checked" % (len(REQS), len(REPS)))
