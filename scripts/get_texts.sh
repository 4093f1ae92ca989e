#!/usr/bin/env bash
# get_texts.sh -- extracts the public-domain prose that the eval tasks use
# (needle-in-a-haystack, perplexity) from Debian packages into plain text files.
#
#   Jane Austen's six novels   r-cran-janeaustenr (R data, read with Rscript)
#   King James Bible           bible-kjv          (`bible -f gen1:1-rev22:21`)
#
# Output (git-ignored), UTF-8, one paragraph per line, paragraphs separated by
# one blank line, runs of spaces collapsed to one, Gutenberg's _italic_ marks
# removed:
#   $LONGKV_DATA_DIR/texts/austen/<book>.txt   one file per novel
#   $LONGKV_DATA_DIR/texts/austen.txt          the six novels, publication order
#   $LONGKV_DATA_DIR/texts/kjv.txt             one paragraph per chapter, verse
#                                              references ("Ge1:1") removed
# LONGKV_DATA_DIR defaults to <repo>/data. Idempotent: installs only missing
# packages and keeps files that already exist (LONGKV_TEXTS_FORCE=1 rebuilds).
set -euo pipefail
cd "$(dirname "$0")/.."

DATA_DIR=${LONGKV_DATA_DIR:-$PWD/data}
OUT=$DATA_DIR/texts
FORCE=${LONGKV_TEXTS_FORCE:-}

# ------------------------------------------------------------ packages
need=()
dpkg -s r-cran-janeaustenr >/dev/null 2>&1 || need+=(r-cran-janeaustenr)
dpkg -s r-base-core >/dev/null 2>&1 || need+=(r-base-core)
dpkg -s bible-kjv >/dev/null 2>&1 || need+=(bible-kjv)
if (( ${#need[@]} )); then
  SUDO=""
  if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi
  echo "get_texts: installing ${need[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
    "${need[@]}" >/dev/null
fi

mkdir -p "$OUT/austen"

# ------------------------------------------------------------ Austen
# janeaustenr stores each novel as a character vector of printed lines; an empty
# string separates paragraphs (several in a row around chapter headings).
austen_books=(sense_and_sensibility pride_and_prejudice mansfield_park emma
              northanger_abbey persuasion)
have_all=1
for b in "${austen_books[@]}"; do
  [[ -s $OUT/austen/$b.txt ]] || have_all=0
done
if [[ -n $FORCE || $have_all -eq 0 ]]; then
  echo "get_texts: extracting Jane Austen (janeaustenr)"
  Rscript --vanilla - "$OUT/austen" <<'EOF'
out_dir <- commandArgs(trailingOnly = TRUE)[1]
suppressPackageStartupMessages(library(janeaustenr))
books <- list(sense_and_sensibility = sensesensibility,
              pride_and_prejudice   = prideprejudice,
              mansfield_park        = mansfieldpark,
              emma                  = emma,
              northanger_abbey      = northangerabbey,
              persuasion            = persuasion)
for (name in names(books)) {
  lines <- gsub("[[:space:]]+", " ", books[[name]])
  lines <- trimws(gsub("_", "", lines, fixed = TRUE))
  blank <- lines == ""
  para_id <- cumsum(blank)            # lines of one paragraph share an id
  paras <- vapply(split(lines[!blank], para_id[!blank]),
                  function(x) paste(x, collapse = " "), "")
  paras <- paras[paras != ""]
  tmp <- file.path(out_dir, paste0(".", name, ".tmp"))
  con <- file(tmp, open = "w", encoding = "UTF-8")
  writeLines(paste(paras, collapse = "\n\n"), con)
  close(con)
  file.rename(tmp, file.path(out_dir, paste0(name, ".txt")))
}
EOF
fi
if [[ -n $FORCE || ! -s $OUT/austen.txt ]]; then
  tmp=$OUT/.austen.tmp
  : > "$tmp"
  first=1
  for b in "${austen_books[@]}"; do
    (( first )) || printf '\n' >> "$tmp"
    cat "$OUT/austen/$b.txt" >> "$tmp"
    first=0
  done
  mv "$tmp" "$OUT/austen.txt"
fi

# ------------------------------------------------------------ King James Bible
# `bible -f` prints one verse per line as "<Book><chapter>:<verse> <text>"
# (continuation lines, if a line width applies, have no reference). A chapter
# becomes one paragraph.
if [[ -n $FORCE || ! -s $OUT/kjv.txt ]]; then
  echo "get_texts: extracting the King James Bible (bible-kjv)"
  COLUMNS=100000 bible -f gen1:1-rev22:21 | awk '
    function flush() { if (para != "") { if (n++) printf "\n"; print para; para = "" } }
    {
      sub(/\r$/, "")
      if (match($0, /^[0-9]?[A-Za-z]+[0-9]+:[0-9]+ /)) {
        ref = substr($0, 1, RLENGTH - 1)
        text = substr($0, RLENGTH + 1)
        chap = ref; sub(/:[0-9]+$/, "", chap)
        if (chap != last_chap) flush()
        last_chap = chap
      } else {
        text = $0
      }
      gsub(/[ \t]+/, " ", text); sub(/^ /, "", text); sub(/ $/, "", text)
      if (text == "") next
      para = (para == "") ? text : para " " text
    }
    END { flush() }' > "$OUT/.kjv.tmp"
  mv "$OUT/.kjv.tmp" "$OUT/kjv.txt"
fi

# ------------------------------------------------------------ sizes
for f in "$OUT/austen.txt" "$OUT/kjv.txt"; do
  if [[ ! -s $f ]]; then
    echo "get_texts: $f is missing or empty" >&2
    exit 1
  fi
  words=$(wc -w < "$f")
  bytes=$(wc -c < "$f")
  paras=$(grep -c . "$f")
  echo "get_texts: $(basename "$f"): $words words, $paras paragraphs, $bytes bytes"
done
