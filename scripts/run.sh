#!/usr/bin/env bash
# The main job: build (installing what is missing), start vkvd on its
# embedded defaults (host-memory backend, cold tier under the user's state
# dir) unless one is already serving, and run the demo: two worker processes,
# the second reusing the first one's image prefix. Stops the vkvd it started.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/build.sh
B=${BUILD_DIR:-build}

started=""
if ! "$B/client/vkvctl" status >/dev/null 2>&1; then
  LOG=${TMPDIR:-/tmp}/vkvd-demo.$$.log
  echo "starting vkvd on its defaults (log: $LOG)"
  "$B/daemon/vkvd" 2>"$LOG" &
  started=$!
  trap '[ -n "$started" ] && kill -TERM "$started" 2>/dev/null && wait "$started"' EXIT
  for _ in $(seq 100); do
    "$B/client/vkvctl" status >/dev/null 2>&1 && break
    sleep 0.1
  done
fi
"$B/client/vkv-demo"
"$B/client/vkvctl" status
