#!/usr/bin/env bash
# Make the folder that bench/gpu_check.sh carries to the GPU machine (which has no cargo):
# the llm-mem binary and the tests/gpu_check.rs test executable, stripped and xz-compressed,
# and manifest.json (commit, toolkit, sizes, sha256 of the stripped files, shared libraries).
#
#   bash bench/gpu/package.sh         # CUDA build -> target/gpu-pack
#   bash bench/gpu/package.sh --cpu   # CPU build  -> target/gpu-pack-cpu (gpu_check.sh --dry-run)
#
# The CUDA build goes through scripts/cuda_toolchain.sh with CUDA_TOOLKIT=13.0 (override by
# setting it): candle's kernels are PTX that the driver compiles at start, and a driver
# older than the toolkit refuses the PTX; the project's H200 machines run driver 580 (CUDA
# 13.0). It uses CARGO_TARGET_DIR=target/cuda-13.0; the first build takes ~45 min on one
# core (dependencies and candle's kernels), later ones minutes. PACK=DIR changes the folder.
#
# Then, on the GPU machine, one command (device tool: run, carry ["target/gpu-pack"],
# timeout_s 600):  bash bench/gpu_check.sh
set -euo pipefail

REPO=$(cd "$(dirname "$0")/../.." && pwd)
cd "$REPO"
MODE=cuda
if [ "${1:-}" = --cpu ]; then MODE=cpu; fi
FEATURES=()
TOOLKIT=null
NVCC=null
if [ "$MODE" = cuda ]; then
    export CUDA_TOOLKIT=${CUDA_TOOLKIT:-13.0}
    bash scripts/cuda_toolchain.sh setup
    eval "$(bash scripts/cuda_toolchain.sh env)"
    FEATURES=(--features cuda)
    PACK=${PACK:-$REPO/target/gpu-pack}
    TOOLKIT="\"$CUDA_TOOLKIT\""
    NVCC="\"$(nvcc --version | tail -1)\""
else
    PACK=${PACK:-$REPO/target/gpu-pack-cpu}
fi

# executable TARGET-NAME: the path cargo reports for that target in its JSON messages.
executable() {
    grep "\"name\":\"$1\"" | sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | tail -1
}
BIN=$(nice -n 19 cargo build "${FEATURES[@]}" --bin llm-mem --message-format=json | executable llm-mem)
TESTS=$(nice -n 19 cargo test "${FEATURES[@]}" --no-run --test gpu_check --message-format=json | executable gpu_check)
if [ -z "$BIN" ] || [ -z "$TESTS" ]; then
    echo "package.sh: cargo reported no executable (llm-mem: '$BIN', gpu_check: '$TESTS')" >&2
    exit 1
fi

rm -rf "$PACK"
mkdir -p "$PACK"
files=""
total=0
for pair in "llm-mem:$BIN" "gpu_check_tests:$TESTS"; do
    name=${pair%%:*}
    src=${pair#*:}
    strip -o "$PACK/$name" "$src"
    stripped=$(wc -c <"$PACK/$name")
    sha=$(sha256sum "$PACK/$name" | cut -d' ' -f1)
    needed=$(readelf -d "$PACK/$name" | sed -n 's/.*Shared library: \[\(.*\)\]/"\1"/p' | paste -sd, -)
    xz -T0 -f "$PACK/$name"
    packed=$(wc -c <"$PACK/$name.xz")
    total=$((total + packed))
    echo "$name: $(wc -c <"$src") bytes built, $stripped stripped, $packed xz ($src)"
    files+="${files:+, }\"$name\": {\"built_bytes\": $(wc -c <"$src"), \"stripped_bytes\": $stripped, \"xz_bytes\": $packed, \"sha256\": \"$sha\", \"needed\": [$needed]}"
done
commit=$(git rev-parse HEAD 2>/dev/null || echo unknown)
dirty=false
if [ -n "$(git status --porcelain 2>/dev/null)" ]; then dirty=true; fi
printf '{"build": "%s", "built_utc": "%s", "commit": "%s", "dirty": %s, "cuda_toolkit": %s, "nvcc": %s, "cuda_compute_cap": "%s", "files": {%s}}\n' \
    "$MODE" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$commit" "$dirty" "$TOOLKIT" "$NVCC" "${CUDA_COMPUTE_CAP:-}" "$files" >"$PACK/manifest.json"
echo "pack: $PACK, $total bytes ($((total / 1048576)) MiB) to carry"
# The device tool carries at most 64 MiB, the working tree (~7 MiB) included.
if [ "$total" -gt $((48 * 1048576)) ]; then
    echo "package.sh: the pack is over 48 MiB; it would not travel with the working tree" >&2
    exit 1
fi
