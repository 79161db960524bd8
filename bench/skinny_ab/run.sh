#!/usr/bin/env bash
# Build into target/skinny-ab and time the skinny kernel against the BLAS (default: the
# system OpenBLAS; `run.sh /path/to/libmkl_rt.so.2` for another).
set -euo pipefail
cd "$(dirname "$0")"
cargo build -q --release --target-dir ../../target/skinny-ab
grep -m1 "model name" /proc/cpuinfo
../../target/skinny-ab/release/skinny-ab "${1:-libopenblas.so.0}"
