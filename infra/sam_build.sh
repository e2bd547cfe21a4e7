#!/usr/bin/env bash
# `sam build` of the five functions for arm64, as `sam deploy` packages them (template.yaml: BuildMethod
# rust-cargolambda; samconfig.toml turns on the SAM CLI beta feature it needs). Installs what it needs from
# PyPI (the SAM CLI, cargo-lambda, Zig as the cross linker) and the Rust arm64 target, prints the time taken and
# each bootstrap's size (raw and `zip -9`, what `sam deploy` uploads): the figures in BENCHMARKS.md.
#
# usage: bash infra/sam_build.sh [--keep]
#   The build goes to target/sam (never the repository's .aws-sam); without --keep it is deleted afterwards
#   (the arm64 cargo cache under target/aarch64-unknown-linux-gnu stays: a rebuild relinks only).
set -euo pipefail
cd "$(dirname "$0")/.."
keep=false
[ "${1:-}" = "--keep" ] && keep=true

python3 -m pip install --quiet 'aws-sam-cli>=1.140' 'cargo-lambda>=1.8' 'ziglang>=0.13'
scripts="$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))')"
export PATH="$scripts:$PATH" SAM_CLI_TELEMETRY=0
rustup target add aarch64-unknown-linux-gnu >/dev/null

build_dir=target/sam/build
rm -rf "$build_dir"
start=$(date +%s)
sam build --template-file template.yaml --build-dir "$build_dir" --cache-dir target/sam/cache \
  --beta-features --region us-east-1
echo "sam build: $(($(date +%s) - start)) s"

for function in "$build_dir"/*/; do
  bootstrap="$function/bootstrap"
  [ -f "$bootstrap" ] || continue
  zipped=$(mktemp -u).zip
  (cd "$function" && zip -q -9 "$zipped" bootstrap)
  printf '%s: %s B (zip -9 %s B) %s\n' "$(basename "$function")" "$(stat -c %s "$bootstrap")" \
    "$(stat -c %s "$zipped")" "$(file -b "$bootstrap" | cut -d, -f1-2)"
  rm -f "$zipped"
done

if [ "$keep" = false ]; then
  rm -rf target/sam
fi
