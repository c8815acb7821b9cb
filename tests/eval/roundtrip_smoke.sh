#!/bin/sh
# gen -> roundtrip -> read-back: a synthetic dump survives the codec with the
# same tensor names and shapes, and its error stays bounded; a decode of the
# wrong profile is refused by compare. Usage: roundtrip_smoke.sh VKV_EVAL DIR
set -eu
tool=$1
dir=$2
mkdir -p "$dir"
"$tool" gen --profile tiny "$dir/ref.safetensors"
"$tool" roundtrip --codec "lloyd:kg=16,vmode=token,vg=0" "$dir/ref.safetensors" "$dir/dec.safetensors"
"$tool" compare --max-nmse 0.5 "$dir/ref.safetensors" "$dir/dec.safetensors"
"$tool" roundtrip --codec rotsign "$dir/ref.safetensors" "$dir/rot.safetensors"
"$tool" compare --max-nmse 0.5 "$dir/ref.safetensors" "$dir/rot.safetensors"
# the identity must read back exactly: nmse 0
"$tool" roundtrip --codec fp16 "$dir/ref.safetensors" "$dir/id.safetensors"
"$tool" compare --max-nmse 0 "$dir/ref.safetensors" "$dir/id.safetensors"
# a different seed is a different cache: compare must flag it
"$tool" gen --profile tiny --seed 77 "$dir/other.safetensors"
if "$tool" compare --max-nmse 0.5 "$dir/ref.safetensors" "$dir/other.safetensors"; then
    echo "compare accepted an unrelated cache" >&2
    exit 1
fi
# a truncated file is a clear error, not a crash
head -c 100 "$dir/ref.safetensors" > "$dir/trunc.safetensors"
if "$tool" run --input "$dir/trunc.safetensors" --codec fp16 2> "$dir/err.txt"; then
    echo "truncated input accepted" >&2
    exit 1
fi
grep -q "runs past\|truncated\|outside" "$dir/err.txt"
echo "roundtrip smoke: ok"
