#!/usr/bin/env bash
# Regenerate the README's quick-start figure (docs/quickstart.svg) and report page
# (docs/quickstart_report.html, with its memorized text) and print the tables the README shows
# beside them: the three quick-start commands, run offline in an empty directory with the
# llm-mem built from this tree (or $LLM_MEM), then the same report as an SVG.
#
#   bash scripts/make_readme_figure.sh
#
# Paste the printed tables into the README's Quick start; the figure is written in place.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
if [ -z "${LLM_MEM:-}" ]; then
    cargo build --quiet --manifest-path "$repo/Cargo.toml"
    LLM_MEM="$repo/target/debug/llm-mem"
fi
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$work"
export HF_HUB_OFFLINE=1 HF_HOME="$work/no-hub-cache"

start=$SECONDS
"$LLM_MEM" memorize --per-sample >memorize.txt
"$LLM_MEM" benchmark >benchmark.txt
"$LLM_MEM" report >report.md 2>/dev/null
seconds=$((SECONDS - start))
"$LLM_MEM" report -o quickstart.svg >/dev/null 2>&1

mkdir -p "$repo/docs"
cp quickstart.svg "$repo/docs/quickstart.svg"
cp memorization_scores/tiny-pythia_prefix32_report.html "$repo/docs/quickstart_report.html"
echo "== llm-mem memorize"; cat memorize.txt
echo "== llm-mem benchmark"; cat benchmark.txt
echo "== llm-mem report"; cat report.md
echo "== the three commands took ${seconds} s; wrote docs/quickstart.svg and docs/quickstart_report.html"
