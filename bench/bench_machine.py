"""What the bench scripts print about the machine and the kernels each side runs, so that a
ratio is never compared across machines without them, and the environment llm-mem is run with.

To stand for an AVX2-only CPU on an AVX-512 one, run a bench script with
    LLM_MEM_AVX512=off OPENBLAS_CORETYPE=Haswell MKL_ENABLE_INSTRUCTIONS=AVX2 ATEN_CPU_CAPABILITY=avx2
(llm-mem's own kernels, its OpenBLAS, MKL, and torch's own kernels respectively).
"""

import os
import sys

# Passed through to llm-mem: they choose its kernels (see `llm-mem --help`).
KERNEL_ENV = ("LLM_MEM_BLAS", "LLM_MEM_AVX512", "LLM_MEM_SKINNY", "LLM_MEM_KERNELS",
              "OPENBLAS_CORETYPE", "MKL_ENABLE_INSTRUCTIONS")


def cpu_model():
    """`Intel(R) Xeon(R) Processor (family 6 model 207), avx512` from /proc/cpuinfo."""
    info = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                info.setdefault(key.strip(), value.strip())
    except OSError:
        return "unknown CPU"
    flags = set(info.get("flags", "").split())
    isa = "avx512" if "avx512f" in flags else "avx2" if "avx2" in flags else "baseline"
    return (f"{info.get('model name', '?')} (family {info.get('cpu family', '?')} model "
            f"{info.get('model', '?')}), {isa}, {os.cpu_count()} CPUs")


def python_kernels():
    """torch's BLAS and CPU capability, and numpy's BLAS with its core."""
    import torch
    blas = next((part.split("=")[1] for part in torch.__config__.show().replace(",", "\n").split()
                 if part.startswith("BLAS_INFO=")), "?")
    parts = [f"torch {torch.__version__}: {blas}, {torch.backends.cpu.get_cpu_capability()}"]
    try:
        import threadpoolctl
        for lib in threadpoolctl.threadpool_info():
            if lib["user_api"] == "blas":
                parts.append(f"numpy: {lib['internal_api']} {lib['version']} "
                             f"{lib.get('architecture') or ''}".rstrip())
    except ImportError:
        pass
    return "; ".join(parts)


def llm_mem_env(threads, extra=()):
    """llm-mem's environment: the threads, the kernel switches the caller set, and the active
    Python environment, where the PyPI `mkl` package puts `libmkl_rt` (llm-mem looks in
    `$VIRTUAL_ENV/lib`)."""
    env = {"RAYON_NUM_THREADS": str(threads), "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
           "VIRTUAL_ENV": os.environ.get("VIRTUAL_ENV", sys.prefix)}
    for key in (*KERNEL_ENV, *extra):
        if key in os.environ:
            env[key] = os.environ[key]
    return env


def llm_mem_kernels(report):
    """The kernels llm-mem says it ran, from a result file's `model.kernels`."""
    kernels = report.get("model", {}).get("kernels")
    if not kernels:
        return "not recorded"
    return f"{kernels['matmul']}; fused kernels {kernels['fused']}"
