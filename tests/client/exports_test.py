#!/usr/bin/python3
"""libvkv.so exports exactly its public API: the functions include/vkv/*.h
mark VKV_API, and nothing else (no vkvk_/vkvp_/vkvc_ internals, no logging).

usage: exports_test.py LIBVKV INCLUDE_DIR
The CUDA functions (vkv_cuda_*) are exported only by a build with CUDA; every
other declared function must be there."""
import glob
import os
import re
import subprocess
import sys

lib, inc = sys.argv[1], sys.argv[2]
declared = set()
for h in glob.glob(os.path.join(inc, "vkv", "*.h")):
    text = open(h).read()
    for m in re.finditer(r"^VKV_API [^;{]*?\b(vkv_[a-z0-9_]+)\s*\(", text, re.M):
        declared.add(m.group(1))
out = subprocess.run(["nm", "-D", "--defined-only", lib], capture_output=True, text=True,
                     check=True).stdout
exported = {ln.split()[-1] for ln in out.splitlines() if ln.strip()}
exported = {s.split("@")[0] for s in exported}
extra = sorted(exported - declared)
missing = sorted(d for d in declared - exported if not d.startswith("vkv_cuda_"))
print(f"declared VKV_API {len(declared)}, exported {len(exported)}")
if extra:
    print("exported but not public API:", " ".join(extra))
if missing:
    print("public API not exported:", " ".join(missing))
if extra or missing or len(declared) < 40:
    sys.exit(1)
print("exports: ok")
