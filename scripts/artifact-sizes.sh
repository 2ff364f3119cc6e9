#!/usr/bin/env bash
# Prints each Lambda artifact's size: as built, stripped (a stripped copy; the release
# profile already strips, so the two should match) and zipped the way SAM uploads it
# (deflate of the single `bootstrap`). Exits 1 if any stripped binary is over the 6 MB
# budget (issue 4; MB = 10^6 bytes).
#
#   scripts/artifact-sizes.sh                 # the newer of .aws-sam/build (sam build) and target/lambda (make lambda)
#   scripts/artifact-sizes.sh DIR/bootstrap…  # explicit binaries (the name is the parent folder)
set -euo pipefail
cd "$(dirname "$0")/.."
LIMIT=${SIZE_LIMIT_BYTES:-6000000}

# The newer of the two builds, so that an old `sam build` does not hide a fresh `make lambda`.
newest() { find "$@" -name bootstrap -printf '%T@\n' 2>/dev/null | sort -n | tail -1; }
sam_built=$(compgen -G ".aws-sam/build/*/bootstrap" >/dev/null && newest .aws-sam/build || echo 0)
cargo_built=$(compgen -G "target/lambda/*/bootstrap" >/dev/null && newest target/lambda || echo 0)

if [[ $# -gt 0 ]]; then
  bins=("$@")
elif [[ $sam_built != 0 ]] && awk -v a="$sam_built" -v b="$cargo_built" 'BEGIN { exit !(a >= b) }'; then
  bins=(.aws-sam/build/*/bootstrap)
elif [[ $cargo_built != 0 ]]; then
  bins=(target/lambda/*/bootstrap)
else
  echo "no artifacts: run \`make lambda\` or \`make sam-build\` first" >&2
  exit 2
fi

# llvm-strip reads any ELF architecture; GNU strip only the host's.
strip=$(command -v llvm-strip || true)
if [[ -z $strip ]]; then strip=$(command -v strip || true); fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

mb() { awk -v b="$1" 'BEGIN { printf "%.2f", b / 1000000 }'; }

printf '%-24s %-8s %10s %10s %10s  %s\n' function arch "built MB" "strip MB" "zip MB" "≤ $(mb "$LIMIT") MB"
over=0
total_zip=0
for bin in "${bins[@]}"; do
  name=$(basename "$(dirname "$bin")")
  arch=$(file -b "$bin" | grep -oE 'x86-64|ARM aarch64|aarch64' | head -1 | sed 's/ARM //')
  built=$(stat -c %s "$bin")
  if [[ -n $strip ]] && "$strip" -o "$tmp/bootstrap" "$bin" 2>/dev/null; then
    :
  else
    cp "$bin" "$tmp/bootstrap"
  fi
  stripped=$(stat -c %s "$tmp/bootstrap")
  python3 - "$tmp/bootstrap" "$tmp/a.zip" <<'PY'
import sys, zipfile
with zipfile.ZipFile(sys.argv[2], "w", zipfile.ZIP_DEFLATED) as z:
    z.write(sys.argv[1], "bootstrap")
PY
  zipped=$(stat -c %s "$tmp/a.zip")
  total_zip=$((total_zip + zipped))
  ok=yes
  if ((stripped > LIMIT)); then ok=OVER; over=1; fi
  printf '%-24s %-8s %10s %10s %10s  %s\n' "$name" "${arch:-?}" "$(mb "$built")" "$(mb "$stripped")" "$(mb "$zipped")" "$ok"
done
printf '%-24s %-8s %10s %10s %10s\n' total "" "" "" "$(mb "$total_zip")"
exit $over
