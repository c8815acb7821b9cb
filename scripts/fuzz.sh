#!/bin/sh
# scripts/fuzz.sh - builds the libFuzzer targets with clang and runs each for
# a bounded time on a scratch copy of its checked-in corpus.
#
# Usage: scripts/fuzz.sh [SECONDS] [TARGET...]
#   SECONDS  per target (default 60; env VKV_FUZZ_SECONDS also works)
#   TARGET   any of proto block st (default: all three)
# Env: VKV_FUZZ_SEED (libFuzzer -seed; CI fixes it so a run is repeatable),
#      VKV_FUZZ_BUILD (default build-fuzz), VKV_FUZZ_JOBS (build -j, default 2),
#      VKV_FUZZ_KEEP=1 keeps the grown corpora in $VKV_FUZZ_BUILD/fuzz-work.
# Exit status: 0 when no target found a crash; 1 otherwise. A crash input is
# left in $VKV_FUZZ_BUILD/fuzz-work/<target>/ as crash-*/leak-*/timeout-*;
# fix the bug, then copy the input into tests/fuzz/corpus/<target>/ with a
# name starting with "regress-" so the replay unit test keeps covering it.
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
secs=${1:-${VKV_FUZZ_SECONDS:-60}}
[ $# -gt 0 ] && shift
targets=${*:-proto block st}
build=${VKV_FUZZ_BUILD:-$root/build-fuzz}
jobs=${VKV_FUZZ_JOBS:-2}

command -v clang >/dev/null 2>&1 || { echo "fuzz.sh: clang not found" >&2; exit 1; }
CC=clang cmake -S "$root" -B "$build" -DVKV_FUZZ=ON -DVKV_CUDA=OFF \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo >"$build.configure.log" 2>&1 ||
    { cat "$build.configure.log" >&2; exit 1; }
bins=""
for t in $targets; do bins="$bins vkv_fuzz_$t"; done
# shellcheck disable=SC2086
cmake --build "$build" -j"$jobs" --target $bins

status=0
for t in $targets; do
    work=$build/fuzz-work/$t
    rm -rf "$work"
    mkdir -p "$work/corpus"
    cp "$root/tests/fuzz/corpus/$t/"* "$work/corpus/"
    echo "== fuzz $t for ${secs}s"
    # -rss_limit_mb bounds a runaway allocation; -max_len covers the seeds.
    seedopt=""
    [ -n "${VKV_FUZZ_SEED:-}" ] && seedopt="-seed=$VKV_FUZZ_SEED"
    # shellcheck disable=SC2086
    if ! (cd "$work" && "$build/tests/fuzz/vkv_fuzz_$t" $seedopt -max_total_time="$secs" \
            -max_len=65536 -rss_limit_mb=2048 -timeout=25 -print_final_stats=1 \
            corpus >"$work/log" 2>&1); then
        echo "fuzz.sh: $t FAILED; input(s):" >&2
        ls "$work"/crash-* "$work"/leak-* "$work"/timeout-* "$work"/oom-* 2>/dev/null >&2 || true
        tail -n 60 "$work/log" >&2
        status=1
    else
        grep -E "stat::number_of_executed_units|stat::peak_rss_mb" "$work/log" || true
        echo "   corpus: $(ls "$work/corpus" | wc -l) inputs"
    fi
    [ "${VKV_FUZZ_KEEP:-0}" = 1 ] || rm -rf "$work/corpus"
done
exit $status
