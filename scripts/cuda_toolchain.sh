#!/usr/bin/env bash
# Build `llm-mem --features cuda` without NVIDIA's installer: a CUDA 13.4 (or 13.0) toolkit from PyPI
# wheels (no GPU and no driver needed to *build*).
#
#   bash scripts/cuda_toolchain.sh            # set up toolkit (once) + cargo build --features cuda
#   bash scripts/cuda_toolchain.sh env        # only print the exports (eval "$(... env)")
#   bash scripts/cuda_toolchain.sh clippy     # setup + cargo clippy --features cuda --all-targets
#
# Overridable: CUDA_TOOLKIT (13.4, the default, or 13.0: the toolkit version; the driver
# that runs the binary must be at least that version, because candle's kernels are PTX that
# the driver compiles at start — the project's H200 machines have driver 580, CUDA 13.0, so
# bench/gpu/package.sh builds with 13.0), CUDA_VENV (default target/cuda-toolkit/venv;
# target/cuda-toolkit-13.0/venv for 13.0), CUDA_ROOT_DIR (default target/cuda-toolkit/root;
# target/cuda-toolkit-13.0/root), CUDA_COMPUTE_CAP (default 90 = H100/H200; candle-kernels
# builds PTX for compute_90a), CARGO_TARGET_DIR (default target/cuda, target/cuda-13.0 for
# 13.0, so the CPU build's artifacts are not rebuilt), JOBS (default: all cores).
#
# Why each piece:
# * The cu12 nvcc wheels (nvidia-cuda-nvcc-cu12 up to 12.9.86) ship only ptxas, no nvcc;
#   the CUDA 13 wheels (nvidia-cuda-nvcc 13.x) ship nvcc and install, together with
#   nvidia-nvvm / -cuda-crt / -cuda-runtime / -cuda-cccl, into one tree nvidia/cu13/
#   laid out like a toolkit (bin/nvcc, nvvm/bin/cicc, include/, lib/).
# * cudarc 0.19.10 (as candle-core 0.11.1 configures it: dynamic-linking +
#   cuda-version-from-build-system) runs `nvcc --version` from PATH (it accepts 13.0 to
#   13.4; the wheels are pinned per CUDA_TOOLKIT) and links -lcuda -lnvrtc -lcurand -lcublas -lcublasLt from
#   $CUDA_HOME/{lib,lib/stubs,lib64,...}; candle-kernels links -lcudart. The wheels have
#   only versioned sonames, so we add unversioned libX.so symlinks.
# * No wheel ships libcuda (it is the driver). We generate a link-time stub libcuda.so
#   (soname libcuda.so.1) from cudarc's own list of driver entry points; every function
#   returns CUDA_ERROR_STUB_LIBRARY (34), like NVIDIA's stubs. On a GPU machine the real
#   driver's libcuda.so.1 must be found first at run time (do NOT put lib/stubs on
#   LD_LIBRARY_PATH there).
# * cudaforge (candle-kernels' build dep) needs CUDA_COMPUTE_CAP when there is no
#   nvidia-smi, and CUDAFORGE_THREADS limits its parallel nvcc jobs.
#
# Run time: the binary needs $CUDA_ROOT_DIR/lib on LD_LIBRARY_PATH (libcudart.so.13,
# libcublas*.so.13, libcurand.so.10, libnvrtc.so.13) and a driver new enough for $CUDA_TOOLKIT
# (the PTX is JIT-compiled by the driver).
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
CUDA_TOOLKIT=${CUDA_TOOLKIT:-13.4}
case "$CUDA_TOOLKIT" in
    13.4)
        suffix=""
        WHEELS=(nvidia-cuda-nvcc==13.4.92 nvidia-nvvm==13.4.92 nvidia-cuda-crt==13.4.92
            nvidia-cuda-runtime==13.4.92 nvidia-cuda-nvrtc==13.4.92
            nvidia-cuda-cccl==13.3.5.0.6 nvidia-curand==10.4.5.25 nvidia-cublas==13.10.0.20)
        ;;
    13.0)
        suffix=-13.0
        WHEELS=(nvidia-cuda-nvcc==13.0.88 nvidia-nvvm==13.0.88 nvidia-cuda-crt==13.0.88
            nvidia-cuda-runtime==13.0.96 nvidia-cuda-nvrtc==13.0.88
            nvidia-cuda-cccl==13.0.85 nvidia-curand==10.4.0.35 nvidia-cublas==13.0.2.14)
        ;;
    *) echo "CUDA_TOOLKIT=$CUDA_TOOLKIT: expected 13.4 or 13.0" >&2; exit 2 ;;
esac
CUDA_VENV=${CUDA_VENV:-$REPO/target/cuda-toolkit$suffix/venv}
CUDA_ROOT_DIR=${CUDA_ROOT_DIR:-$REPO/target/cuda-toolkit$suffix/root}
export CUDA_COMPUTE_CAP=${CUDA_COMPUTE_CAP:-90}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$REPO/target/cuda$suffix}
JOBS=${JOBS:-$(nproc)}

print_env() {
    cat <<EOF
export CUDA_HOME=$CUDA_ROOT_DIR
export PATH=$CUDA_ROOT_DIR/bin:\$PATH
export CUDA_COMPUTE_CAP=$CUDA_COMPUTE_CAP
export CUDAFORGE_THREADS=$JOBS
export CARGO_TARGET_DIR=$CARGO_TARGET_DIR
# at run time (no GPU here: add $CUDA_ROOT_DIR/lib/stubs too, to get a clean error):
export LD_LIBRARY_PATH=$CUDA_ROOT_DIR/lib\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}
EOF
}

if [ "${1:-}" = env ]; then print_env; exit 0; fi

setup_toolkit() {
    local site tree
    if [ ! -x "$CUDA_VENV/bin/pip" ]; then mkdir -p "$(dirname "$CUDA_VENV")" && python3 -m venv "$CUDA_VENV"; fi
    site=$("$CUDA_VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
    tree=$site/nvidia/cu13
    if [ ! -x "$tree/bin/nvcc" ] || [ ! -e "$tree/lib/libcublasLt.so.13" ]; then
        "$CUDA_VENV/bin/pip" install "${WHEELS[@]}"
    fi

    mkdir -p "$CUDA_ROOT_DIR/lib/stubs"
    ln -sfn "$tree/bin" "$CUDA_ROOT_DIR/bin"
    ln -sfn "$tree/include" "$CUDA_ROOT_DIR/include"
    ln -sfn "$tree/nvvm" "$CUDA_ROOT_DIR/nvvm"
    ln -sfn lib "$CUDA_ROOT_DIR/lib64"
    local f so
    for f in "$tree"/lib/*; do ln -sfn "$f" "$CUDA_ROOT_DIR/lib/$(basename "$f")"; done
    for so in libcublas.so.13 libcublasLt.so.13 libcudart.so.13 libcurand.so.10 libnvrtc.so.13; do
        ln -sfn "$so" "$CUDA_ROOT_DIR/lib/${so%%.so*}.so"
    done

    # Link-time stub libcuda from cudarc's driver bindings (needs `cargo fetch` first).
    local stubs=$CUDA_ROOT_DIR/lib/stubs
    if [ ! -e "$stubs/libcuda.so" ]; then
        (cd "$REPO" && cargo fetch --quiet)
        local cudarc
        cudarc=$(find "${CARGO_HOME:-$HOME/.cargo}"/registry/src -mindepth 2 -maxdepth 2 -type d -name cudarc-0.19.10 | head -1)
        {
            echo '/* link-time stub of libcuda: every entry point returns CUDA_ERROR_STUB_LIBRARY (34) */'
            grep -oE '^pub unsafe fn cu[A-Za-z0-9_]+\(' "$cudarc/src/driver/sys/mod.rs" \
                | sed 's/^pub unsafe fn //; s/($//' | sort -u \
                | sed 's/.*/int &(void) { return 34; }/'
        } > "$stubs/libcuda_stub.c"
        gcc -O1 -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$stubs/libcuda.so" "$stubs/libcuda_stub.c"
        ln -sfn libcuda.so "$stubs/libcuda.so.1"
    fi
}

setup_toolkit
eval "$(print_env)"
nvcc --version | tail -2

cd "$REPO"
case "${1:-build}" in
    build) nice -n 19 cargo build --features cuda -j "$JOBS" ;;
    release) nice -n 19 cargo build --release --features cuda -j "$JOBS" ;;
    clippy) nice -n 19 cargo clippy --features cuda --all-targets -j "$JOBS" -- -D warnings ;;
    setup) ;;
    *) echo "usage: $0 [build|release|clippy|setup|env]" >&2; exit 2 ;;
esac
