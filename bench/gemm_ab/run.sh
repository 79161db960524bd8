#!/usr/bin/env bash
# Build the A/B pair into target/gemm-ab/{default,v4} and time each on this CPU.
set -euo pipefail
cd "$(dirname "$0")"
grep -m1 "model name" /proc/cpuinfo
grep -o -w -m1 avx512f /proc/cpuinfo >/dev/null && echo "AVX-512: yes" || echo "AVX-512: no"
echo "| build | 2048 × 2048 × 512 | 1024 × 50304 × 512 | 64 × 2048 × 512 | 256 × 512 × 512 |"
echo "|---|---|---|---|---|"
for variant in default v4; do
    features=()
    [ "$variant" = v4 ] && features=(--features v4)
    cargo build -q --release "${features[@]}" --target-dir "../../target/gemm-ab/$variant"
done
for round in 1 2; do
    for variant in default v4; do "../../target/gemm-ab/$variant/release/gemm-ab"; done
done
