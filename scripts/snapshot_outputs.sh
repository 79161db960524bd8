#!/usr/bin/env bash
# Runs every kind of output llm-mem writes on the committed fixtures, offline, into one
# directory, so that two builds can be compared byte for byte (a refactor must change no
# output):
#
#   bash scripts/snapshot_outputs.sh target/debug/llm-mem /tmp/before
#   ... change the code, rebuild ...
#   bash scripts/snapshot_outputs.sh target/debug/llm-mem /tmp/after
#   diff -r /tmp/before /tmp/after && echo identical
#
# Covers memorize (built-in model, --per-sample, --sweep head, --ablate/--bypass settings of
# every kind, a family fixture, a revision sweep from the fixture hub cache, a parquet set),
# benchmark (built-in tasks, and a fixture model on the committed task files), shards and
# merge, report (HTML and figures) and extract (.npy and Megatron input). Stdout of each
# command is kept too, since the tables are an output.
set -euo pipefail
BIN=$(realpath "$1")
OUT=$2
REPO=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$OUT"
cd "$OUT"
# A relative link, so that the paths the results record are the same from every checkout.
ln -sfn "$REPO/tests/fixtures" fx
FIX=fx
export HF_HUB_OFFLINE=1 HF_HOME=$REPO/tests/fixtures/hub RAYON_NUM_THREADS=2
run() { local name=$1; shift; "$BIN" "$@" >"$name.stdout" 2>/dev/null; }

run mem-default memorize --per-sample --output mem-default.json
run mem-settings memorize --sweep attn --sweep head --sweep mlp=mean --num-layers 3 \
    --ablate 'attn:1-2' --ablate 'mlp:3=mean' --ablate 'head:5.0-1=zero' \
    --ablate 'attn:3=zero+mlp:3' --bypass 2,4 --kl-from-base --per-sample --batch-size 50 \
    --output mem-settings.json
run mem-llama memorize --model-path "$FIX/models/llama-gqa" \
    --dataset-path "$FIX/models/llama-gqa/data.npy" --prefix-len 4 --per-sample \
    --ablate 'head:1.0=mean' --output mem-llama.json
run mem-revisions memorize --model-path llm-mem/tiny-pythia \
    --dataset-path "$FIX/tiny-pythia/../models/neox-parallel/data.npy" --prefix-len 4 \
    --revision step1000,step2000,step3000 --batch-size 4 --output mem-revisions.json \
    2>/dev/null || true
run mem-parquet memorize --model-path "$FIX/tiny-pythia" \
    --dataset-path "$FIX/memorized-evals/evals.parquet" --per-sample --num-layers 2 \
    --output mem-parquet.json
for k in 0 1; do
    run "shard$k" memorize --num-layers 4 --ablate 'mlp:2=mean' --shard "$k/2" \
        --output "shard$k.json"
done
run merge merge shard0.json shard1.json -o merged.json
run bench-default benchmark --output bench-default.json
run bench-neox benchmark --model-path "$FIX/bench-models/neox" --data-dir "$FIX/tasks" \
    --tasks lambada_openai,piqa,arc_easy,hellaswag,winogrande,wikitext --limit 6 \
    --ablate 'head:0.1=zero' --output bench-neox.json
run report report mem-default.json bench-default.json -o report.html
run report-svg report mem-default.json bench-default.json -o report.svg
run extract-npy extract --model-path "$FIX/tiny-pythia" \
    --input "$FIX/memorized-evals/evals.npy" --prefix-len 32 --suffix-len 16 --stride 16 \
    --output extract-npy.npy
run extract-idx extract --model-path "$FIX/tiny-pythia" \
    --input "$FIX/megatron/whole/document.idx" --stride 48 --output extract-idx.npy
rm fx
ls -1 | wc -l
