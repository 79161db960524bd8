#!/usr/bin/env bash
# The one test command: the Rust tests (`cargo test`), then the Python package built from this
# tree, installed into a virtual environment without torch, and its pytest suite (offline).
#
#   scripts/test.sh              everything
#   SKIP_CARGO_TEST=1 scripts/test.sh   only the Python package
#
# The venv (default target/py-venv, or $LLM_MEM_TEST_VENV) is created once and reused; it
# gets lm_eval==0.4.13, pandas, pytest, maturin from the package registry on first use.
# The extension is built with cargo's dev profile into the workspace's target directory, so
# it shares what `cargo test` compiled.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -z "${SKIP_CARGO_TEST:-}" ]; then
    cargo test
fi

venv="${LLM_MEM_TEST_VENV:-target/py-venv}"
python="${PYTHON:-python3}"
if [ ! -x "$venv/bin/python" ]; then
    "$python" -m venv "$venv"
    "$venv/bin/pip" install -q "lm_eval==0.4.13" pandas numpy pytest "maturin>=1.16,<2"
fi
if "$venv/bin/python" -c "import torch" 2>/dev/null; then
    echo "error: $venv has torch installed; the package's tests must run without it" >&2
    exit 1
fi

start=$(date +%s)
"$venv/bin/maturin" build --quiet --profile dev --interpreter "$venv/bin/python" \
    --out target/wheels-test
wheel=$(ls -t target/wheels-test/llm_mem-*.whl | head -1)
"$venv/bin/pip" install -q --force-reinstall --no-deps "$wheel"
echo "built and installed $(basename "$wheel") in $(($(date +%s) - start)) s"

HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 "$venv/bin/python" -m pytest -q python/tests "$@"
