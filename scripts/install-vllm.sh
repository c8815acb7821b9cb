#!/usr/bin/env bash
# Installs torch and vLLM (from PyPI) into a virtual environment for the vLLM
# connector tests (tests/client: connector_torch_test, vllm_connector_test,
# which skip without it). Not part of install-deps.sh: it is ~9.4 GiB and took
# 8.5 minutes on the 2-core CI machine (docs/VLLM.md). Idempotent: does
# nothing when the environment already has this vLLM version.
#   VKV_VLLM_VENV     where (default /opt/vkv-vllm-venv, what CMake looks for)
#   VKV_VLLM_VERSION  which vLLM (default 0.33.0, the version vkv.vllm was checked with)
set -euo pipefail
VENV=${VKV_VLLM_VENV:-/opt/vkv-vllm-venv}
VER=${VKV_VLLM_VERSION:-0.33.0}
if [ -x "$VENV/bin/python" ] &&
   "$VENV/bin/python" -c "import sys, importlib.metadata as m; sys.exit(m.version('vllm') != '$VER')" 2>/dev/null; then
  echo "install-vllm: vllm $VER present in $VENV"
  exit 0
fi
if ! python3 -c "import ensurepip" 2>/dev/null; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-venv
fi
python3 -m venv "$VENV"
"$VENV/bin/pip" install -q "vllm==$VER"
"$VENV/bin/python" -c "import vllm, torch; print('install-vllm: vllm', vllm.__version__, 'torch', torch.__version__)"
