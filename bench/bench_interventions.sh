#!/usr/bin/env bash
# Speed of the intervention sweeps (issue 14, item 7) on the pythia-70m-shaped bench model:
#   - the per-head sweep (6 layers x 8 heads = 48 settings) against the layer sweep (6
#     settings), which must stay within 8.5x (the head sweep is 8x the settings);
#   - what the effect sizes cost: the layer sweep with residual_deviation (always on) and with
#     --kl-from-base, against BASELINE, a binary from before the effect sizes existed.
# Each command runs REPEATS times, one after the other; the table gives the fastest run.
#
# Usage (after bench/make_bench_models.py and `cargo build`):
#   bench/bench_interventions.sh [BASELINE_BINARY]
# e.g. BASELINE_BINARY built from commit 0ce8a4f (main before the interventions landed).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-target/debug/llm-mem}
BASELINE=${1:-}
MODEL=bench/models/pythia-70m
REPEATS=${REPEATS:-2}
export RAYON_NUM_THREADS=${THREADS:-2}
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT

# Fastest of REPEATS runs of `memorize` with the given binary and extra options, in seconds.
fastest() {
  local bin=$1 name=$2
  shift 2
  local best=""
  for _ in $(seq "$REPEATS"); do
    local start end t
    start=$(date +%s.%N)
    "$bin" memorize --model-path "$MODEL" --dataset-path "$MODEL/memorized.npy" \
      --prefix-len 32 --batch-size 64 --force --output "$OUT/$name.json" "$@" >/dev/null 2>&1
    end=$(date +%s.%N)
    t=$(echo "$end - $start" | bc)
    if [ -z "$best" ] || [ "$(echo "$t < $best" | bc)" = 1 ]; then best=$t; fi
  done
  echo "$best"
}

echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
layer=$(fastest "$BIN" layer)
kl=$(fastest "$BIN" kl --kl-from-base)
head=$(fastest "$BIN" head --sweep head)
settings=$(python3 -c "import json,sys; print(len(json.load(open(sys.argv[1]))['results']))" "$OUT/head.json")
if [ -n "$BASELINE" ]; then base=$(fastest "$BASELINE" baseline); fi
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"

ratio() { echo "scale=2; $1 / $2" | bc; }
echo
echo "| run (settings) | time (fastest of $REPEATS) | ratio |"
echo "|---|---|---|"
if [ -n "$BASELINE" ]; then
  echo "| before the effect sizes ($BASELINE), layer sweep (base + 6) | ${base} s | 1 |"
  echo "| layer sweep with residual_deviation (base + 6) | ${layer} s | $(ratio "$layer" "$base") of before |"
  echo "| layer sweep with residual_deviation and --kl-from-base | ${kl} s | $(ratio "$kl" "$base") of before |"
else
  echo "| layer sweep with residual_deviation (base + 6) | ${layer} s | 1 |"
  echo "| layer sweep with residual_deviation and --kl-from-base | ${kl} s | $(ratio "$kl" "$layer") |"
fi
echo "| --sweep head ($settings settings: base + 6 x 8) | ${head} s | $(ratio "$head" "$layer") of the layer sweep (limit 8.5) |"
