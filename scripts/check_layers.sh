#!/usr/bin/env bash
# check_layers.sh -- fails when a source file includes a header from a higher
# layer than its own (DESIGN.md: a layer includes only layers below it), or when
# a front end (tools/, bench/, python/) reaches past the public header.
set -euo pipefail
cd "$(dirname "$0")/.."
layers=(common kernels kv press model eval)
rank() { local i; for i in "${!layers[@]}"; do [[ ${layers[$i]} == "$1" ]] && { echo "$i"; return; }; done; echo -1; }
bad=0
while IFS= read -r f; do
  own=$(echo "$f" | cut -d/ -f2)
  r_own=$(rank "$own")
  while IFS= read -r inc; do
    target=${inc%%/*}
    r_t=$(rank "$target")
    if (( r_t > r_own )); then
      echo "layer violation: $f ($own) includes \"$inc\" ($target is above $own)"; bad=1
    fi
  done < <(grep -oE '^\s*#\s*include\s+"[^"]+"' "$f" | sed -E 's/.*"([^"]+)"/\1/')
done < <(find src -name '*.[ch]' | sort)
while IFS= read -r f; do
  while IFS= read -r inc; do
    target=${inc%%/*}
    if [[ $inc == */* ]] && (( $(rank "$target") >= 0 )); then
      echo "front-end violation: $f includes private header \"$inc\" (use longkv.h)"; bad=1
    fi
  done < <(grep -oE '^\s*#\s*include\s+"[^"]+"' "$f" | sed -E 's/.*"([^"]+)"/\1/')
done < <(find tools bench python -name '*.[ch]' 2>/dev/null | sort)
if (( bad )); then echo "check_layers: FAILED"; exit 1; fi
echo "check_layers: ok ($(find src -name '*.[ch]' | wc -l) files)"
