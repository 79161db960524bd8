#!/usr/bin/env bash
# The GPU check of issue 16, in one command on a bare GPU machine (no cargo, no network):
# a CUDA build of llm-mem made on the CPU machine by bench/gpu/package.sh, the fixtures in
# tests/fixtures/models/, and python3 with torch + transformers.
#
#   bash bench/gpu_check.sh                        # on the GPU machine (~5 min on an H200)
#   bash bench/gpu_check.sh --dry-run              # CPU build, CPU device, tiny sizes
#   bash bench/gpu_check.sh --dry-run --no-python  # its llm-mem steps only (what CI runs)
#
# Options: --pack DIR (default target/gpu-pack, with --dry-run target/gpu-pack-cpu: the
# folder package.sh fills), --budget S (whole run, default 540), --hf-budget S (default 240),
# --device D (default cuda; cpu with --dry-run), --python PY (default $PYTHON, else ./venv or
# /work/venv with --dry-run, else python3), --no-python.
# Environment: LLM_MEM_BIN / LLM_MEM_PARITY_EXE override the pack's two executables;
# results go to $GPU_CHECK_RESULTS, else $OUT, else target/gpu-check: gpu_check.json (every
# step's numbers) and gpu_check.log (everything printed), plus llm_mem_sweep.json (the timed
# sweep's output); scratch files to $GPU_CHECK_WORK (default a new /tmp/gpu-check.*).
#
# Steps (a failed step is recorded and the next ones still run; exit 1 if any failed; the
# summary names the first that failed, and a failed llm-mem step gives no time or ratio):
#   preflight     the executables start; CUDA libraries found (the pack's lib/, the Python
#                 packages' nvidia/*/lib, /usr/local/cuda); GPU, driver
#   parity_f32    tests/gpu_check.rs `device_parity` on the device in f32, every fixture
#                 family, base + every single-layer bypass: logits <= 1e-4 relative to CPU
#                 f32, identical greedy metrics except logged f32 ties
#   parity_bf16   the same in bf16 (tolerances in tests/gpu_check.rs)
#   timing_model  [Python] bench/gpu/make_timing_model.py: random pythia-1.4b shape (24
#                 layers, hidden 2048, vocab 50304), 1000 x 64 rows of its own greedy
#                 continuations (--no-python: the neox-parallel fixture instead)
#   llm_mem_sweep llm-mem memorize, base + all 24 single-layer bypasses, bf16, timed; GPU
#                 memory peak sampled with nvidia-smi, host RSS peak from /proc
#   hf_pipeline   [Python] bench/gpu/hf_pipeline.py: bench/bench_memorize.py's HF recipe on
#                 as many settings as fit its budget, extrapolated to all; metrics compared
#   llm_mem_same  [Python run only] llm-mem on exactly the settings HF ran: an
#                 unextrapolated ratio
set -uo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
cd "$REPO" || exit 1
SECONDS=0

MODE=gpu
USE_PYTHON=1
PACK=""
BUDGET=540
HF_BUDGET=240
DEVICE=""
PY=${PYTHON:-}
while [ $# -gt 0 ]; do
    case "$1" in
        --dry-run) MODE=dry-run ;;
        --no-python) USE_PYTHON=0 ;;
        --pack) PACK=$2; shift ;;
        --budget) BUDGET=$2; shift ;;
        --hf-budget) HF_BUDGET=$2; shift ;;
        --device) DEVICE=$2; shift ;;
        --python) PY=$2; shift ;;
        -h | --help) sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "gpu_check.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done

if [ "$MODE" = gpu ]; then
    PACK=${PACK:-target/gpu-pack}
    # candle's kernels are PTX the driver compiles at start: let its cache keep them all.
    export CUDA_CACHE_MAXSIZE=${CUDA_CACHE_MAXSIZE:-1073741824}
    DEVICE=${DEVICE:-cuda}
    # pythia-1.4b: 24 layers, hidden 2048, 16 heads, intermediate 8192, vocab 50304
    LAYERS=24 HIDDEN=2048 HEADS=16 INTER=8192 VOCAB=50304 ROWS=1000 SEQ=64 PREFIX=32 BATCH=64
else
    PACK=${PACK:-target/gpu-pack-cpu}
    DEVICE=${DEVICE:-cpu}
    LAYERS=4 HIDDEN=64 HEADS=4 INTER=256 VOCAB=1024 ROWS=16 SEQ=24 PREFIX=12 BATCH=8
    BUDGET=300 HF_BUDGET=60
fi
TIMING_DTYPE=bf16
if [ "$USE_PYTHON" = 1 ] && [ -z "$PY" ]; then
    PY=python3
    if [ "$MODE" = dry-run ]; then
        for p in "$REPO/venv/bin/python" /work/venv/bin/python; do
            if [ -x "$p" ]; then PY=$p; break; fi
        done
    fi
fi

RESULTS=${GPU_CHECK_RESULTS:-${OUT:-$REPO/target/gpu-check}}
WORK=${GPU_CHECK_WORK:-$(mktemp -d /tmp/gpu-check.XXXXXX)}
mkdir -p "$RESULTS" "$WORK/steps" || exit 1
LOG=$RESULTS/gpu_check.log
SUMMARY=$RESULTS/gpu_check.json
: >"$LOG"
exec > >(tee -a "$LOG") 2>&1
TEE_PID=$!
STARTED=$(date -u +%Y-%m-%dT%H:%M:%SZ)
STEPS=(preflight parity_f32 parity_bf16 timing_model llm_mem_sweep hf_pipeline llm_mem_same)
CUDA_LIB_DIRS=()

now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.3f", b - a }'; }
# JSON string of $1 (control characters dropped).
jstr() {
    local s
    s=$(printf '%s' "$1" | tr -d '\000-\010\013-\037')
    s=${s//\\/\\\\}
    s=${s//\"/\\\"}
    s=${s//$'\t'/ }
    s=${s//$'\n'/\\n}
    printf '"%s"' "$s"
}
# The JSON in file $1, or null.
jfile() { if [ -s "$1" ]; then cat "$1"; else printf null; fi; }
# Seconds left for a step that would like $1: never past the whole run's budget less $2.
# At least 10 s, so a late step still reports how it failed.
limit_for() {
    local left=$((BUDGET - SECONDS - ${2:-0}))
    if [ "$left" -lt 10 ]; then left=10; fi
    if [ "$left" -lt "$1" ]; then echo "$left"; else echo "$1"; fi
}
status_of() { sed -n 's/^{"status": *"\([a-z_-]*\)".*/\1/p' "$WORK/steps/$1.json" 2>/dev/null | head -1; }
# A value from a flat KEY=VALUE file.
kv() { sed -n "s/^$2=//p" "$1" 2>/dev/null | head -1; }
banner() { printf '\n== %s (%ss of %ss used) ==\n' "$1" "$SECONDS" "$BUDGET"; }

write_summary() {
    local name first=1 failed=() ok=true st
    {
        printf '{"check": "llm-mem GPU check (issue 16)", "mode": "%s", "device": %s, ' "$MODE" "$(jstr "$DEVICE")"
        printf '"started_utc": "%s", "elapsed_s": %s, ' "$STARTED" "$SECONDS"
        printf '"commit": %s, "pack": %s, "budget_s": %s, ' "$(jstr "$(git rev-parse HEAD 2>/dev/null || echo unknown)")" "$(jstr "$PACK")" "$BUDGET"
        printf '"steps": {'
        for name in "${STEPS[@]}"; do
            [ "$first" = 1 ] || printf ', '
            first=0
            printf '"%s": ' "$name"
            if [ -s "$WORK/steps/$name.json" ]; then cat "$WORK/steps/$name.json"; else printf '{"status": "not_run"}'; fi
            st=$(status_of "$name")
            case "$st" in ok | skipped | fixture | "") ;; *) failed+=("$name"); ok=false ;; esac
        done
        printf '}, "failed_steps": ['
        first=1
        for name in "${failed[@]}"; do
            [ "$first" = 1 ] || printf ', '
            first=0
            printf '"%s"' "$name"
        done
        printf '], "first_failed_step": %s, "ok": %s}\n' \
            "$(if [ ${#failed[@]} -gt 0 ]; then jstr "${failed[0]}"; else printf null; fi)" "$ok"
    } >"$SUMMARY.tmp" && mv "$SUMMARY.tmp" "$SUMMARY"
    FINAL_OK=$ok
    FIRST_FAILED=${failed[0]:-}
}

gpu_mem_used() {
    nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -i "$GPU_INDEX" 2>/dev/null | head -1 | tr -dc '0-9'
}

# run_sampled LIMIT TAG CMD...: run CMD, killing it after LIMIT s; sets RS_RC, RS_SECONDS,
# RS_TIMED_OUT, RS_GPU_BASE / RS_GPU_PEAK (MiB used on the GPU, nvidia-smi every ~0.1 s),
# RS_RSS_PEAK (the process's VmHWM, MiB).
run_sampled() {
    local limit=$1 tag=$2 t0 pid sampler
    shift 2
    : >"$WORK/$tag.gpu"
    : >"$WORK/$tag.rss"
    rm -f "$WORK/$tag.timeout"
    RS_GPU_BASE=null
    if [ "$HAVE_SMI" = 1 ]; then RS_GPU_BASE=$(gpu_mem_used); fi
    t0=$(now)
    "$@" &
    pid=$!
    (
        kill_at=$(($(date +%s) + limit))
        while kill -0 "$pid" 2>/dev/null; do
            if [ "$HAVE_SMI" = 1 ]; then gpu_mem_used >>"$WORK/$tag.gpu"; fi
            awk '/^VmHWM/ { print int($2 / 1024) }' "/proc/$pid/status" >>"$WORK/$tag.rss" 2>/dev/null
            if [ "$(date +%s)" -ge "$kill_at" ]; then
                : >"$WORK/$tag.timeout"
                kill "$pid" 2>/dev/null
                break
            fi
            sleep 0.1
        done
    ) &
    sampler=$!
    wait "$pid"
    RS_RC=$?
    RS_SECONDS=$(since "$t0")
    wait "$sampler" 2>/dev/null
    RS_TIMED_OUT=false
    if [ -e "$WORK/$tag.timeout" ]; then RS_TIMED_OUT=true; fi
    RS_GPU_PEAK=$(sort -n "$WORK/$tag.gpu" | tail -1)
    RS_RSS_PEAK=$(sort -n "$WORK/$tag.rss" | tail -1)
    RS_GPU_PEAK=${RS_GPU_PEAK:-null}
    RS_RSS_PEAK=${RS_RSS_PEAK:-null}
}

# ---------------------------------------------------------------------------------------
banner "preflight: $MODE, device $DEVICE, pack $PACK"
HAVE_SMI=0
GPU_INDEX=0
case "$DEVICE" in cuda:*) GPU_INDEX=${DEVICE#cuda:} ;; esac
pre_status=ok
pre_notes=()
SMI_LINE=""
DRIVER_CUDA=""
if [ "$DEVICE" != cpu ]; then
    if command -v nvidia-smi >/dev/null; then
        HAVE_SMI=1
        SMI_LINE=$(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader -i "$GPU_INDEX" 2>&1 | head -1)
        DRIVER_CUDA=$(nvidia-smi 2>/dev/null | sed -n 's/.*CUDA Version: *\([0-9.]*\).*/\1/p' | head -1)
        echo "GPU: $SMI_LINE; driver's CUDA version $DRIVER_CUDA"
    else
        pre_notes+=("no nvidia-smi on PATH: GPU memory is not sampled")
    fi
fi
MANIFEST=$PACK/manifest.json
PACK_CUDA=$(sed -n 's/.*"cuda_toolkit": *"\([0-9.]*\)".*/\1/p' "$MANIFEST" 2>/dev/null | head -1)
if [ -n "$PACK_CUDA" ] && [ -n "$DRIVER_CUDA" ] &&
    [ "$(printf '%s\n%s\n' "$PACK_CUDA" "$DRIVER_CUDA" | sort -V | tail -1)" != "$DRIVER_CUDA" ]; then
    pre_notes+=("the pack was built with CUDA $PACK_CUDA, newer than the driver's $DRIVER_CUDA: its PTX will not load (rebuild with CUDA_TOOLKIT=$DRIVER_CUDA bash bench/gpu/package.sh)")
fi
# The pack's executables are xz-compressed (package.sh): unpacked into the work folder and
# checked against the manifest's sha256. Prints the path to run.
unpack() {
    local name=$1 dest=$WORK/bin/$1 want got
    if [ -x "$PACK/$name" ] || [ ! -s "$PACK/$name.xz" ]; then
        echo "$PACK/$name"
        return
    fi
    mkdir -p "$WORK/bin"
    if command -v xz >/dev/null; then
        xz -dc "$PACK/$name.xz" >"$dest"
    elif [ "$USE_PYTHON" = 1 ] && command -v "$PY" >/dev/null; then
        "$PY" -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], "wb"))' \
            "$PACK/$name.xz" "$dest"
    fi
    chmod +x "$dest" 2>/dev/null
    want=$(sed -n "s/.*\"$name\": {[^}]*\"sha256\": \"\([0-9a-f]*\)\".*/\1/p" "$MANIFEST" 2>/dev/null)
    got=$(sha256sum "$dest" 2>/dev/null | cut -d' ' -f1)
    if [ -n "$want" ] && [ "$want" != "$got" ]; then
        echo "preflight: $dest: sha256 $got, the manifest says $want" >&2
        rm -f "$dest"
    fi
    echo "$dest"
}
BIN=${LLM_MEM_BIN:-$(unpack llm-mem)}
PARITY_EXE=${LLM_MEM_PARITY_EXE:-$(unpack gpu_check_tests)}
for exe in "$BIN" "$PARITY_EXE"; do
    if [ ! -x "$exe" ]; then
        pre_status=failed
        pre_notes+=("$exe: missing or not executable (make it with bench/gpu/package.sh and carry the pack)")
    fi
done
# CUDA libraries the binaries need and this machine's loader does not find on its own.
missing_libs() { ldd "$@" 2>/dev/null | awk '/not found/ { print $1 }' | sort -u; }
if [ -x "$BIN" ] && command -v ldd >/dev/null; then
    missing=$(missing_libs "$BIN" "$PARITY_EXE")
    if [ -n "$missing" ]; then
        candidates=("$PACK/lib")
        if [ "$USE_PYTHON" = 1 ] && command -v "$PY" >/dev/null; then
            while IFS= read -r site; do
                for d in "$site"/nvidia/*/lib "$site"/nvidia/cu*/lib "$site"/torch/lib; do candidates+=("$d"); done
            done < <("$PY" -c 'import site; print("\n".join(site.getsitepackages()))' 2>/dev/null)
        fi
        for d in /usr/local/nvidia/lib64 /usr/local/nvidia/lib /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib /usr/local/cuda-*/lib64 /usr/lib/x86_64-linux-gnu; do
            candidates+=("$d")
        done
        for lib in $missing; do
            for d in "${candidates[@]}"; do
                if [ -e "$d/$lib" ]; then
                    case ":${LD_LIBRARY_PATH:-}:" in *":$d:"*) ;; *)
                        export LD_LIBRARY_PATH=$d${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
                        CUDA_LIB_DIRS+=("$d")
                        ;;
                    esac
                    break
                fi
            done
        done
        still=$(missing_libs "$BIN" "$PARITY_EXE" | tr '\n' ' ')
        if [ -n "$still" ]; then
            pre_status=failed
            pre_notes+=("libraries not found: $still")
        fi
    fi
    echo "library directories added to LD_LIBRARY_PATH: ${CUDA_LIB_DIRS[*]:-none}"
fi
VERSION=""
if [ -x "$BIN" ]; then
    if VERSION=$("$BIN" --version 2>&1); then
        echo "$BIN: $VERSION ($(wc -c <"$BIN") bytes)"
    else
        pre_status=failed
        pre_notes+=("$BIN --version failed: $VERSION")
        VERSION=""
    fi
fi
for n in "${pre_notes[@]}"; do echo "preflight: $n"; done
{
    printf '{"status": "%s", "llm_mem_bin": %s, "parity_exe": %s, "llm_mem_version": %s, ' \
        "$pre_status" "$(jstr "$BIN")" "$(jstr "$PARITY_EXE")" "$(jstr "$VERSION")"
    printf '"llm_mem_bin_bytes": %s, "gpu": %s, "driver_cuda_version": %s, "pack_manifest": %s, ' \
        "$(if [ -f "$BIN" ]; then wc -c <"$BIN"; else echo null; fi)" "$(jstr "$SMI_LINE")" "$(jstr "$DRIVER_CUDA")" "$(jfile "$MANIFEST")"
    printf '"ld_library_path_added": ['
    sep=""
    for d in "${CUDA_LIB_DIRS[@]}"; do printf '%s%s' "$sep" "$(jstr "$d")"; sep=", "; done
    printf '], "notes": ['
    sep=""
    for n in "${pre_notes[@]}"; do printf '%s%s' "$sep" "$(jstr "$n")"; sep=", "; done
    printf ']}'
} >"$WORK/steps/preflight.json"
write_summary

# ---------------------------------------------------------------------------------------
for dtype in f32 bf16; do
    step=parity_$dtype
    banner "$step: every fixture family on $DEVICE in $dtype against CPU f32"
    lim=$(limit_for 120 60)
    report=$WORK/$step.report.json
    rm -f "$report"
    t0=$(now)
    LLM_MEM_TEST_DEVICE=$DEVICE LLM_MEM_TEST_DTYPE=$dtype LLM_MEM_BIN=$BIN \
        LLM_MEM_TEST_FIXTURES=$REPO/tests/fixtures/models LLM_MEM_PARITY_REPORT=$report \
        timeout "$lim" "$PARITY_EXE" device_parity --exact --include-ignored --nocapture --test-threads 1 2>&1 |
        tee "$WORK/$step.log" | grep -v '^\s*$'
    rc=${PIPESTATUS[0]}
    secs=$(since "$t0")
    st=ok
    if [ "$rc" -ne 0 ]; then st=failed; fi
    if [ "$rc" -eq 124 ]; then st=timed_out; fi
    printf '{"status": "%s", "rc": %s, "seconds": %s, "limit_s": %s, "summary": %s, "report": %s}' \
        "$st" "$rc" "$secs" "$lim" "$(jstr "$(grep '^device parity .*failures' "$WORK/$step.log" | tail -1)")" \
        "$(jfile "$report")" >"$WORK/steps/$step.json"
    write_summary
done

# ---------------------------------------------------------------------------------------
banner "timing_model"
MODEL_DIR=$WORK/timing-model
if [ "$USE_PYTHON" = 1 ]; then
    lim=$(limit_for 180 120)
    t0=$(now)
    PYTHONUNBUFFERED=1 timeout "$lim" "$PY" bench/gpu/make_timing_model.py --out "$MODEL_DIR" \
        --device "$DEVICE" --dtype "$TIMING_DTYPE" --layers "$LAYERS" --hidden "$HIDDEN" --heads "$HEADS" \
        --intermediate "$INTER" --vocab "$VOCAB" --rows "$ROWS" --seq "$SEQ" --prefix "$PREFIX" \
        --info "$WORK/timing_model.info.json"
    rc=$?
    st=ok
    if [ "$rc" -ne 0 ]; then st=failed; fi
    if [ "$rc" -eq 124 ]; then st=timed_out; fi
    printf '{"status": "%s", "rc": %s, "seconds": %s, "info": %s}' "$st" "$rc" "$(since "$t0")" \
        "$(jfile "$WORK/timing_model.info.json")" >"$WORK/steps/timing_model.json"
    ROWS_FILE=$MODEL_DIR/memorized.npy
else
    # No Python: the parallel-residual GPT-NeoX fixture and its rows stand in.
    MODEL_DIR=$REPO/tests/fixtures/models/neox-parallel
    ROWS_FILE=$MODEL_DIR/data.npy
    ROWS=6 SEQ=24 PREFIX=8
    echo "no Python: timing the neox-parallel fixture (6 rows x 24 tokens, prefix $PREFIX) instead"
    printf '{"status": "fixture", "model": %s, "rows": %s, "prefix_len": %s}' \
        "$(jstr "$MODEL_DIR")" "$(jstr "$ROWS_FILE")" "$PREFIX" >"$WORK/steps/timing_model.json"
fi
write_summary

# ---------------------------------------------------------------------------------------
# llm_mem_run STEP LIMIT OUTPUT EXTRA-ARGS...: one timed `llm-mem memorize` on the timing data.
llm_mem_run() {
    local step=$1 lim=$2 out=$3 st
    shift 3
    local cmd=("$BIN" memorize --model-path "$MODEL_DIR" --dataset-path "$ROWS_FILE" --prefix-len "$PREFIX"
        --batch-size "$BATCH" --device "$DEVICE" --dtype "$TIMING_DTYPE" --per-sample --force --output "$out" "$@")
    echo "${cmd[*]}"
    run_sampled "$lim" "$step" "${cmd[@]}"
    local settings
    settings=$(grep -o '"bypass"' "$out" 2>/dev/null | wc -l)
    st=ok
    if [ "$RS_RC" -ne 0 ] || [ ! -s "$out" ] || [ "$settings" -eq 0 ]; then st=failed; fi
    if [ "$RS_TIMED_OUT" = true ]; then st=timed_out; fi
    # Only a run that did its work has a time worth comparing.
    RUN_SECONDS=""
    if [ "$st" = ok ]; then RUN_SECONDS=$RS_SECONDS; fi
    printf '{"status": "%s", "rc": %s, "seconds": %s, "limit_s": %s, "settings": %s, "rows": %s, "seq_len": %s, "prefix_len": %s, "batch_size": %s, "dtype": "%s", "gpu_mem_baseline_mib": %s, "gpu_mem_peak_mib": %s, "host_rss_peak_mib": %s, "command": %s}' \
        "$st" "$RS_RC" "$RS_SECONDS" "$lim" "$settings" "$ROWS" "$SEQ" "$PREFIX" "$BATCH" "$TIMING_DTYPE" \
        "$RS_GPU_BASE" "$RS_GPU_PEAK" "$RS_RSS_PEAK" "$(jstr "${cmd[*]}")" >"$WORK/steps/$step.json"
    local gpu="no GPU sampled"
    if [ "$RS_GPU_PEAK" != null ]; then gpu="GPU memory peak $RS_GPU_PEAK MiB used (before: $RS_GPU_BASE MiB)"; fi
    echo "$step: $st in $RS_SECONDS s ($settings settings); $gpu; host RSS peak $RS_RSS_PEAK MiB (sampled every 0.1 s)"
}

banner "llm_mem_sweep: base + every single-layer bypass, $TIMING_DTYPE"
SWEEP_OUT=$WORK/llm_mem_sweep.json
if [ -s "$ROWS_FILE" ]; then
    llm_mem_run llm_mem_sweep "$(limit_for 240 60)" "$SWEEP_OUT"
    LLM_SECONDS=$RUN_SECONDS
    if [ -s "$SWEEP_OUT" ]; then cp "$SWEEP_OUT" "$RESULTS/llm_mem_sweep.json"; fi
else
    echo "llm_mem_sweep: no rows (the timing model step failed)"
    printf '{"status": "failed", "note": "no timing rows"}' >"$WORK/steps/llm_mem_sweep.json"
    LLM_SECONDS=""
fi
write_summary

# ---------------------------------------------------------------------------------------
banner "hf_pipeline: bench_memorize.py's recipe on $DEVICE, $TIMING_DTYPE"
HF_ENV=$WORK/hf_summary.env
if [ "$USE_PYTHON" = 1 ] && [ -s "$ROWS_FILE" ]; then
    hf_budget=$(limit_for "$HF_BUDGET" 90)
    lim=$((hf_budget + 60))
    cmd=("$PY" bench/gpu/hf_pipeline.py --model "$MODEL_DIR" --rows "$ROWS_FILE" --prefix "$PREFIX"
        --batch "$BATCH" --device "$DEVICE" --dtype "$TIMING_DTYPE" --budget-s "$hf_budget"
        --llm-mem-json "$SWEEP_OUT" --llm-mem-seconds "${LLM_SECONDS:-0}"
        --out "$WORK/hf_pipeline.report.json" --env-out "$HF_ENV")
    PYTHONUNBUFFERED=1 run_sampled "$lim" hf_pipeline "${cmd[@]}"
    st=ok
    if [ "$RS_RC" -ne 0 ]; then st=failed; fi
    if [ "$RS_TIMED_OUT" = true ]; then st=timed_out; fi
    printf '{"status": "%s", "rc": %s, "seconds": %s, "budget_s": %s, "gpu_mem_baseline_mib": %s, "gpu_mem_peak_mib_nvidia_smi": %s, "host_rss_peak_mib": %s, "report": %s}' \
        "$st" "$RS_RC" "$RS_SECONDS" "$hf_budget" "$RS_GPU_BASE" "$RS_GPU_PEAK" "$RS_RSS_PEAK" \
        "$(jfile "$WORK/hf_pipeline.report.json")" >"$WORK/steps/hf_pipeline.json"
else
    if [ "$USE_PYTHON" = 1 ]; then why="no timing rows"; else why="--no-python"; fi
    echo "hf_pipeline: skipped ($why)"
    printf '{"status": "skipped"}' >"$WORK/steps/hf_pipeline.json"
fi
write_summary

# ---------------------------------------------------------------------------------------
banner "llm_mem_same: llm-mem on the settings the HF pipeline ran"
HF_LAYERS=$(kv "$HF_ENV" HF_LAYERS)
if [ -n "$(kv "$HF_ENV" HF_SECONDS)" ]; then
    extra=(--num-layers 0)
    for l in ${HF_LAYERS//,/ }; do extra+=(--bypass "$l"); done
    llm_mem_run llm_mem_same "$(limit_for 120 10)" "$WORK/llm_mem_same.json" "${extra[@]}"
    SAME_SECONDS=$RUN_SECONDS
else
    echo "llm_mem_same: skipped (no HF timing)"
    printf '{"status": "skipped"}' >"$WORK/steps/llm_mem_same.json"
    SAME_SECONDS=""
fi
write_summary

# ---------------------------------------------------------------------------------------
banner "summary"
for step in "${STEPS[@]}"; do printf '  %-14s %s\n' "$step" "$(status_of "$step")"; done
write_summary
if [ -n "$FIRST_FAILED" ]; then
    echo "  FIRST FAILED STEP: $FIRST_FAILED (later steps may have failed because of it; no ratio is printed for a failed llm-mem step)"
fi
for dtype in f32 bf16; do
    line=$(grep '^device parity .*failures' "$WORK/parity_$dtype.log" 2>/dev/null | tail -1)
    echo "  parity $dtype: ${line:-no result}"
done
if [ -n "${LLM_SECONDS:-}" ]; then
    echo "  llm-mem sweep: $LLM_SECONDS s for $(grep -o '"settings": [0-9]*' "$WORK/steps/llm_mem_sweep.json" | grep -o '[0-9]*$') settings, $ROWS rows x $SEQ tokens (prefix $PREFIX), batch $BATCH, $TIMING_DTYPE"
    peak=$(sed -n 's/.*"gpu_mem_peak_mib": \([0-9a-z]*\).*/\1/p' "$WORK/steps/llm_mem_sweep.json")
    if [ "$peak" != null ]; then
        echo "  llm-mem GPU memory peak: $peak MiB used on the GPU (nvidia-smi every 0.1 s, CUDA context included; before the run: $(sed -n 's/.*"gpu_mem_baseline_mib": \([0-9a-z]*\).*/\1/p' "$WORK/steps/llm_mem_sweep.json") MiB)"
    fi
fi
if [ -s "$HF_ENV" ]; then
    hf_sec=$(kv "$HF_ENV" HF_SECONDS)
    hf_n=$(kv "$HF_ENV" HF_SETTINGS_RUN)
    hf_all=$(kv "$HF_ENV" HF_SETTINGS_ALL)
    hf_ext=$(kv "$HF_ENV" HF_SECONDS_EXTRAPOLATED)
    how="EXTRAPOLATED from $hf_n settings by the mean time per setting"
    if [ "$hf_n" = "$hf_all" ]; then how="all ran, nothing extrapolated"; fi
    echo "  HF pipeline: $hf_sec s measured on $hf_n of $hf_all settings -> $hf_ext s for all $hf_all ($how)"
    if [ "$(kv "$HF_ENV" HF_MAX_MEMORY_ALLOCATED_MIB)" != n/a ]; then
        echo "  HF GPU memory peak: $(kv "$HF_ENV" HF_MAX_MEMORY_ALLOCATED_MIB) MiB (torch.cuda.max_memory_allocated); $(sed -n 's/.*"gpu_mem_peak_mib_nvidia_smi": \([0-9a-z]*\).*/\1/p' "$WORK/steps/hf_pipeline.json") MiB used on the GPU (nvidia-smi, as for llm-mem)"
    fi
    if [ -n "${LLM_SECONDS:-}" ]; then
        echo "  speed-up, full sweep: $(awk -v h="$hf_ext" -v l="$LLM_SECONDS" 'BEGIN { printf "%.2f", h / l }')x (HF extrapolated / llm-mem measured)"
    fi
    if [ -n "${SAME_SECONDS:-}" ]; then
        echo "  speed-up, same $hf_n settings, both measured: $(awk -v h="$hf_sec" -v l="$SAME_SECONDS" 'BEGIN { printf "%.2f", h / l }')x (HF $hf_sec s / llm-mem $SAME_SECONDS s, llm-mem's startup and model load included, HF's load not)"
    fi
    echo "  metrics: $(kv "$HF_ENV" HF_METRICS)"
fi
if [ "$MODE" = gpu ] && [ -n "${LLM_SECONDS:-}" ]; then
    echo "  target sweep < 60 s: $(awk -v l="$LLM_SECONDS" 'BEGIN { print (l < 60) ? "met" : "not met" }')"
    if [ -s "$HF_ENV" ]; then
        echo "  target >= 10x HF: $(awk -v h="$hf_ext" -v l="$LLM_SECONDS" 'BEGIN { print (h / l >= 10) ? "met" : "not met" }')"
    fi
fi
write_summary
echo "  results: $SUMMARY, $LOG; ok: $FINAL_OK"
exec >&- 2>&-
wait "$TEE_PID" 2>/dev/null
if [ "$FINAL_OK" = true ]; then exit 0; else exit 1; fi
