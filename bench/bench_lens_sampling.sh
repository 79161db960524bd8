#!/usr/bin/env bash
# What `--logit-lens` and `--sampling` add to a layer sweep of the pythia-70m-shaped bench
# model (issue 26, item 8; each may add at most 15 %), and whether `edit_similarity` (always
# on) costs anything against BASELINE, a binary from before it existed. The runs alternate
# (plain, lens, sampling[, baseline]) REPEATS times, so that a host loaded by other work slows
# them alike; the table gives each run's fastest wall time and its user CPU time.
#
# Usage (after bench/make_bench_models.py pythia-70m and `cargo build`):
#   bench/bench_lens_sampling.sh [BASELINE_BINARY]
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-target/debug/llm-mem}
BASELINE=${1:-}
MODEL=bench/models/pythia-70m
REPEATS=${REPEATS:-2}
export RAYON_NUM_THREADS=${THREADS:-2}
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT

# One run: "wall user" seconds.
timed() {
  local bin=$1 name=$2
  shift 2
  /usr/bin/time -f "%e %U" -o "$OUT/$name.time" "$bin" memorize --model-path "$MODEL" \
    --dataset-path "$MODEL/memorized.npy" --prefix-len 32 --batch-size 64 --force \
    --output "$OUT/$name.json" "$@" >/dev/null 2>&1
  cat "$OUT/$name.time"
}

declare -A best_wall best_user
record() {
  local name=$1 wall user
  read -r wall user <<<"$2"
  if [ -z "${best_wall[$name]:-}" ] || [ "$(echo "$wall < ${best_wall[$name]}" | bc)" = 1 ]; then
    best_wall[$name]=$wall
    best_user[$name]=$user
  fi
}

echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
for _ in $(seq "$REPEATS"); do
  record plain "$(timed "$BIN" plain)"
  record lens "$(timed "$BIN" lens --logit-lens)"
  record sampling "$(timed "$BIN" sampling --sampling 1,top_k=40)"
  if [ -n "$BASELINE" ]; then record baseline "$(timed "$BASELINE" baseline)"; fi
done
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"

ratio() { echo "scale=3; $1 / $2" | bc; }
echo
echo "| run (base + 6 settings) | wall, fastest of $REPEATS | its user CPU | wall ratio | user ratio |"
echo "|---|---|---|---|---|"
for name in plain lens sampling baseline; do
  [ -n "${best_wall[$name]:-}" ] || continue
  echo "| $name | ${best_wall[$name]} s | ${best_user[$name]} s | $(ratio "${best_wall[$name]}" "${best_wall[plain]}") | $(ratio "${best_user[$name]}" "${best_user[plain]}") |"
done
