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
  redis-server libhiredis-dev
  gnuplot-nox
  python3 python3-numpy python3-msgpack
  zsh  # vkvctl_completion_test runs the zsh completion (bash is always there)
  libfaketime  # integration_integrity steps vkvd's wall clock (a_wall_clock_step_expires_nothing)
  clang libclang-rt-14-dev
)

missing=()
for p in "${PKGS[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#PKGS[@]} packages present"
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
