#!/usr/bin/env bash
# Fails (and lists the files) when a tracked C, header or CUDA file differs
# from what clang-format makes of it with the checked-in .clang-format.
# Fix with: git ls-files '*.c' '*.h' '*.cu' | xargs clang-format -i
set -euo pipefail
cd "$(dirname "$0")/.."
CF=${CLANG_FORMAT:-clang-format}
if ! command -v "$CF" >/dev/null 2>&1; then
  echo "check-format: $CF not installed" >&2
  exit 1
fi
bad=()
while IFS= read -r f; do
  if ! "$CF" --dry-run --Werror "$f" >/dev/null 2>&1; then
    bad+=("$f")
  fi
done < <(git ls-files '*.c' '*.h' '*.cu')
if [ ${#bad[@]} -gt 0 ]; then
  echo "check-format: not clang-format clean (${#bad[@]}): ${bad[*]}" >&2
  exit 1
fi
echo "check-format: $(git ls-files '*.c' '*.h' '*.cu' | wc -l) files clean ($("$CF" --version | head -1))"
