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
# without --codec and with "--codec default" roundtrip uses the library's
# default spec, the one "vkv-eval codecs" lists first as "default = SPEC"
first=$("$tool" codecs | head -n 1)
case "$first" in "default = "*) ;; *) echo "codecs does not list the default first: $first" >&2; exit 1 ;; esac
spec=$(echo "$first" | awk '{print $3}')
"$tool" roundtrip "$dir/ref.safetensors" "$dir/def0.safetensors"
"$tool" roundtrip --codec default "$dir/ref.safetensors" "$dir/def1.safetensors"
"$tool" roundtrip --codec "$spec" "$dir/ref.safetensors" "$dir/def2.safetensors"
cmp "$dir/def0.safetensors" "$dir/def1.safetensors"
cmp "$dir/def0.safetensors" "$dir/def2.safetensors"
if cmp -s "$dir/def0.safetensors" "$dir/rot.safetensors"; then
    echo "the default decoded like the eval-only rotsign design: wrong codec?" >&2
    exit 1
fi
test "$("$tool" bits --codec default)" = "$("$tool" bits --codec "$spec")"
if "$tool" roundtrip --codec fp16 --codec rotsign "$dir/ref.safetensors" "$dir/x.safetensors" 2>/dev/null; then
    echo "roundtrip accepted two codecs" >&2
    exit 1
fi
echo "roundtrip smoke: ok"
