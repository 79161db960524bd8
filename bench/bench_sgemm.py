"""Single-threaded sgemm speed of each CBLAS library llm-mem can load, on llm-mem's product
shapes, so that its kernel choice (src/ops/kernel_choice.rs) rests on numbers taken on the
machine at hand.

Each library is loaded the way llm-mem loads it (by path, one thread) and timed on row-major
`A · Bᵀ` (llm-mem's linear layers), best of several calls. OpenBLAS is timed once per core
type given (`OPENBLAS_CORETYPE` is read when the library initializes, so each runs in a
child process).

Run: venv/bin/python bench/bench_sgemm.py [--openblas-cores Haswell,SkylakeX] [--mkl PATH]
"""

import argparse
import ctypes
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_machine import cpu_model  # noqa: E402

# (m, n, k): the pythia-70m-shaped sweep's products: a batch's MLP, its LM head, a decode
# step's MLP, and one attention projection of a small batch.
SHAPES = [(2048, 2048, 512), (1024, 50304, 512), (64, 2048, 512), (256, 512, 512)]
ROW_MAJOR, NO_TRANS, TRANS = 101, 111, 112


def load(path):
    lib = ctypes.CDLL(path)
    for name in ("openblas_set_num_threads", "MKL_Set_Num_Threads"):
        if hasattr(lib, name):
            getattr(lib, name)(1)
    return lib


def describe(lib):
    if hasattr(lib, "openblas_get_corename"):
        lib.openblas_get_corename.restype = ctypes.c_char_p
        lib.openblas_get_config.restype = ctypes.c_char_p
        version = lib.openblas_get_config().decode().split()[1]
        return f"OpenBLAS {version}, {lib.openblas_get_corename().decode()} core"
    if hasattr(lib, "MKL_Get_Version_String"):
        buf = ctypes.create_string_buffer(256)
        lib.MKL_Get_Version_String(buf, 256)
        return buf.value.decode().strip()
    return "unknown CBLAS"


def gflops(lib, m, n, k):
    rng = np.random.default_rng(0)
    a = rng.standard_normal((m, k), dtype=np.float32)
    b = rng.standard_normal((n, k), dtype=np.float32)
    c = np.zeros((m, n), dtype=np.float32)
    ptr = ctypes.POINTER(ctypes.c_float)
    args = [ROW_MAJOR, NO_TRANS, TRANS, m, n, k, ctypes.c_float(1.0),
            a.ctypes.data_as(ptr), k, b.ctypes.data_as(ptr), k, ctypes.c_float(0.0),
            c.ctypes.data_as(ptr), n]
    flop = 2.0 * m * n * k
    repeats = max(3, min(50, int(2e10 / flop)))
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        lib.cblas_sgemm(*args)
        best = min(best, time.perf_counter() - start)
    if not np.allclose(c[:2, :2], a[:2] @ b[:2].T, rtol=1e-3, atol=1e-3):
        raise SystemExit(f"{describe(lib)}: wrong product for {m}x{n}x{k}")
    return flop / best / 1e9


def child(path):
    lib = load(path)
    print(json.dumps({"library": describe(lib),
                      "gflops": [round(gflops(lib, *s), 1) for s in SHAPES]}))


def run_child(path, env):
    out = subprocess.run([sys.executable, __file__, "--child", path], env={**os.environ, **env},
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--openblas", default="libopenblas.so.0")
    parser.add_argument("--openblas-cores", default="auto,Haswell,SkylakeX")
    venv_mkl = Path(os.environ.get("VIRTUAL_ENV", sys.prefix)) / "lib" / "libmkl_rt.so.3"
    parser.add_argument("--mkl", default=str(venv_mkl))
    parser.add_argument("--child")
    args = parser.parse_args()
    if args.child:
        return child(args.child)
    print(f"CPU: {cpu_model()}")
    print("| library | " + " | ".join(f"{m} × {n} × {k}" for m, n, k in SHAPES) + " |")
    print("|---|" + "---|" * len(SHAPES))
    runs = [(args.openblas, {} if core == "auto" else {"OPENBLAS_CORETYPE": core})
            for core in args.openblas_cores.split(",")]
    if Path(args.mkl).exists():
        runs += [(args.mkl, {}), (args.mkl, {"MKL_ENABLE_INSTRUCTIONS": "AVX512"})]
    for path, env in runs:
        result = run_child(path, {"OMP_NUM_THREADS": "1", **env})
        label = result["library"] + "".join(f" ({k}={v})" for k, v in env.items()
                                            if k != "OPENBLAS_CORETYPE")
        print(f"| {label} | " + " | ".join(f"{g:.1f}" for g in result["gflops"]) + " |")


if __name__ == "__main__":
    main()
