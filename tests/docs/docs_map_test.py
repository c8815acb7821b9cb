#!/usr/bin/env python3
"""docs/ARCHITECTURE.md's map matches the tree (issue 17).

The map is the table whose rows start with a folder in backticks
("| `store/` | ... |"). For every row this checks, against the files git
tracks:
  * every file or folder the row names in backticks (`store.c`, `cuda/`,
    `vkv/block.h`) exists: under that folder, from the root (`tensor/`), or
    as a file of that name elsewhere (a row may point at another module's
    file), so a renamed or removed file cannot stay in the map;
  * every C or CUDA source (.c, .cu) in the folder, and in any sub-folder the
    row does not name itself, is named in the row, so a new source file
    cannot land without its line in the map;
  * every top-level source folder of the tree has a row.
Usage: docs_map_test.py REPO_ROOT. Exits 0 when all hold, 1 listing what
does not.
"""
import os
import re
import subprocess
import sys

# Folders that are not modules of the product (their own READMEs say what
# they hold) and so have no row in the map.
NOT_MODULES = {"tests", "bench", "docs", "scripts", "packaging", "cmake",
               ".ci", "include"}
SOURCE = (".c", ".cu")


def tracked(root):
    """Returns the repository's tracked paths (relative, '/'-separated); outside
    a git checkout, every file under root except build folders and dot-dirs."""
    try:
        out = subprocess.check_output(["git", "-C", root, "ls-files"], text=True,
                                      stderr=subprocess.DEVNULL)
        return [p for p in out.splitlines() if os.path.exists(os.path.join(root, p))]
    except (OSError, subprocess.CalledProcessError):
        paths = []
        for d, dirs, names in os.walk(root):
            dirs[:] = [x for x in dirs if not x.startswith((".", "build"))]
            rel = os.path.relpath(d, root)
            paths += [n if rel == "." else rel + "/" + n for n in names]
        return paths


def exists(files, path):
    """True if path names a tracked file, or (ending in '/') a folder holding one."""
    if path.endswith("/"):
        return any(f.startswith(path) for f in files)
    return path in files or path.startswith("vkv/") and ("include/" + path) in files


def map_rows(text):
    """Returns {folder: row text} for the map table's rows."""
    rows = {}
    for line in text.splitlines():
        m = re.match(r"^\|\s*`([\w./-]+/)`\s*\|(.*)$", line)
        if m:
            rows[m.group(1)] = m.group(2)
    return rows


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else "."
    text = open(os.path.join(root, "docs", "ARCHITECTURE.md"), encoding="utf-8").read()
    rows = map_rows(text)
    files = tracked(root)
    problems = []
    if not rows:
        problems.append("no map table found in docs/ARCHITECTURE.md")
    for folder, row in rows.items():
        names = set(re.findall(r"`([\w./-]+)`", row))
        named_paths = {n for n in names if re.search(r"\.(c|h|cu|cuh|py|md)$|/$", n)}
        for n in sorted(named_paths):
            if not (exists(files, folder + n) or exists(files, n) or
                    any(os.path.basename(f) == n for f in files)):
                problems.append(f"{folder}: names `{n}`, which is nowhere in the tree")
        subdirs = {n for n in named_paths if n.endswith("/")}
        for f in files:
            if not f.startswith(folder) or not f.endswith(SOURCE):
                continue
            rel = f[len(folder):]
            if any(rel.startswith(s) for s in subdirs):
                continue  # a named sub-folder covers its own files
            if "/" in rel and (rel.split("/")[0] + "/") in rows:
                continue
            if rel not in names and os.path.basename(rel) not in names:
                problems.append(f"{folder}: source {f} is not named in its map row")
    for top in sorted({f.split("/")[0] for f in files if "/" in f}):
        if top in NOT_MODULES or (top + "/") in rows:
            continue
        if any(f.startswith(top + "/") and f.endswith(SOURCE) for f in files):
            problems.append(f"source folder {top}/ has no row in the map")
    for p in problems:
        print(p)
    print(f"{len(rows)} map rows checked, {len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
