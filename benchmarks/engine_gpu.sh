#!/usr/bin/env bash
# The engine's figures on one GPU, most wanted first, each stage under its own time limit so a
# slow one cannot eat the next one's time. Logs go to $OUT (or ./engine-figures); the summary
# lines print as each stage ends.
#
#   bash benchmarks/engine_gpu.sh [stage ...]  # the stages below, in the order named
#   LIMIT_gsm8k=200 bash benchmarks/engine_gpu.sh gsm8k  # a stage under another limit (s)
#   FLEX='{"SPLIT_KV": 4}' bash benchmarks/engine_gpu.sh gsm8k v12  # the engine's flex options
#   FLEX='{}' PARTIAL=1 bash benchmarks/engine_gpu.sh gsm8k  # the engine as it was before
#       its measured defaults: torch's own kernel options, the mask computed on every page
#
# check: tests/unit/test_engine.py on the GPU (PTB_TEST_DEVICE=cuda): the GPU-only paths (CUDA
#        graphs, pinned uploads, the step in flight behind an event) give the tokens `generate`
#        gives, before anything is timed
# flex-check: the check's flex-options test alone (on the H100 the compiler refused SPLIT_KV=4;
#        the failure's message is the compiler's reason)
# tail:  one decode step with 30 of 256 slots running (a batch's tail, sampled as v1.2 samples),
#        with its kernels
# full:  one decode step with every slot running, with its kernels
# split: the tail and full steps with flex decoding's SPLIT_KV at 2, 4 and 8 (by default each
#        row's KV is one program's: 256 slots x KV heads outnumber the SMs); SPLITS="4" for fewer;
#        every page partial (with full blocks flex decoding splits the pool's length, not a row's)
# page64: the tail step with pages of 64 positions
# flex-sweep: the flex decode kernel alone (benchmarks/flex_sweep.py) per option set in SWEEP
#        (a JSON list; by default the pipelining stages torch leaves at 1 on the H100, warps,
#        and SPLIT_KV), on tail, long-tail, GSM8K-like and full batches
# flex-sweep-gemma: the same with Gemma 3 4B's attention (8 query heads, 4 KV heads, head 256)
# gsm8k: Qwen3-1.7B shape, 1,319 GSM8K-shaped requests
# reference: 64 GSM8K-shaped requests (outputs cut at 1,000) by the engine and by `generate`
#        with a static cache (which runs each batch to its longest output: 4,000 steps took past
#        240 s), and the bf16 agreement of the two
# uniform: 128 requests of 1,024 prompt and 1,024 generated tokens each, 128 slots (lengths as
#        servers' throughput benchmarks use them; vLLM's 15.7k was at batch 128)
# v12:   a whole v1.2 evaluation's generation (6 benchmarks, each one's seeds together)
# v12-gsm8k, v12-rest: the same in two parts (GSM8K's five seeds, then the other five
#        benchmarks), each under one call's 600 s
# harness: the harness's own path (evaluate_model, gsm8k, 256 tokens per item): the stock
#        inspect provider (64 items, 1 seed), the same with the free settings, and the engine
#        (256 items, 5 seeds); HARNESS="engine --limit 256;hf --stock --limit 64 --seeds 1"
#        for runs of your choosing, in that order
#        (inspect-ai and the rest the device image lacks: benchmarks/device_wheels.sh's wheels)
# 4b, gemma: Qwen3-4B and Gemma 3 4B shapes, 512 requests, peak memory
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH=src${PYTHONPATH:+:$PYTHONPATH}  # and what the caller installed (the harness stage: inspect-ai)
out=${OUT:-engine-figures}
mkdir -p "$out"
stages=("$@")
flex=()
[ -n "${FLEX:-}" ] && flex=(--flex-options "$FLEX")
[ -n "${PARTIAL:-}" ] && flex+=(--partial-blocks)
SWEEP_DEFAULT='[{}, {"num_stages": 2}, {"num_stages": 3}, {"num_stages": 3, "num_warps": 4},
 {"BLOCK_N": 128, "num_stages": 2, "num_warps": 4}, {"SPLIT_KV": 2}, {"SPLIT_KV": 4},
 {"SPLIT_KV": 8}, {"SPLIT_KV": 4, "num_stages": 3}, {"SPLIT_KV": 8, "num_stages": 3},
 {"SPLIT_KV": 16, "num_stages": 2}, {"full_blocks": true}, {"full_blocks": true, "num_stages": 3}]'
[ ${#stages[@]} -eq 0 ] && stages=(check tail full gsm8k reference v12 harness 4b gemma)

run() {  # name seconds lines command...: the log's last `lines` lines that are not warnings
    local name=$1 lines=$3 limit_var="LIMIT_${1//-/_}"
    local limit=${!limit_var:-$2}  # LIMIT_<stage>=seconds overrides a stage's limit
    shift 3
    echo "== $name (limit ${limit} s)"
    timeout "$limit" "${PYTHON:-python}" -u "$@" >"$out/$name.log" 2>&1
    echo "$name rc $?"
    grep -v -i -e warn -e '^ *$' "$out/$name.log" | tail -"$lines"
}

profile() {  # name seconds args...: the step's figures and its ten costliest kernels
    local name=$1 limit=$2
    shift 2
    run "$name" "$limit" 0 benchmarks/engine_profile.py "$@"
    grep -E 'prefill|COMPILE|set-up|steps x|nothing timed|^stats|^inductor|^graph_break' "$out/$name.log"
    grep -m1 -A12 'Name  ' "$out/$name.log" | cut -c1-60,150-230
    grep -A18 '^HOST' "$out/$name.log" | cut -c1-100
}

gpu_tests() {  # name seconds pytest-args...: tests/unit/test_engine.py on the GPU
    local name=$1 limit=$2
    shift 2
    PTB_TEST_DEVICE=cuda run "$name" "$limit" 30 -m pytest --noconftest -p no:cacheprovider -ra \
        "$@" tests/unit/test_engine.py
}

for stage in "${stages[@]}"; do
    case $stage in
    check) gpu_tests check 420 -v --durations=5 ;;
    flex-check) gpu_tests flex-check 90 -k flex_decode_kernel ;;
    tail) profile tail 150 --slots 256 --active 30 --prompt 1024 --steps 40 --trace 3 --sample \
        "${flex[@]}" ;;
    full) profile full 150 --slots 256 --prompt 1024 --steps 40 --trace 3 ;;
    split)
        for k in ${SPLITS:-2 4 8}; do
            profile "tail-split$k" 100 --slots 256 --active 30 --prompt 1024 --steps 40 --sample \
                --flex-options "{\"SPLIT_KV\": $k}" --partial-blocks
            profile "full-split$k" 100 --slots 256 --prompt 1024 --steps 40 \
                --flex-options "{\"SPLIT_KV\": $k}" --partial-blocks
        done ;;
    page64) profile tail-page64 100 --slots 256 --active 30 --prompt 1024 --steps 40 --sample \
        --page 64 ;;
    flex-sweep) run flex-sweep 300 60 benchmarks/flex_sweep.py --options "${SWEEP:-$SWEEP_DEFAULT}" ;;
    flex-sweep-gemma) run flex-sweep-gemma 200 40 benchmarks/flex_sweep.py --attn 8,4,256 \
        --options "${SWEEP:-$SWEEP_DEFAULT}" ;;
    gsm8k) run gsm8k 200 8 benchmarks/eval_engine.py --n 1319 --slots 256 --gen-batch 0 \
        --agree 0 "${flex[@]}" ;;
    uniform) run uniform 200 8 benchmarks/eval_engine.py --n 128 --slots 128 --fixed-out 1024 \
        --prompt-mean 1024 --shared-prefix 0 --gen-batch 0 --agree 0 "${flex[@]}" ;;
    reference) run reference 200 8 benchmarks/eval_engine.py --n 64 --slots 64 --max-out 1000 \
        --gen-batch 64 --agree 4 "${flex[@]}" ;;
    v12) run v12 590 32 benchmarks/eval_engine.py --workload v1.2 --slots 256 "${flex[@]}" ;;
    v12-gsm8k) run v12-gsm8k 590 8 benchmarks/eval_engine.py --workload v1.2 --slots 256 \
        --only gsm8k "${flex[@]}" ;;
    v12-rest) run v12-rest 590 24 benchmarks/eval_engine.py --workload v1.2 --slots 256 \
        --only aime2025,arenahardwriting,gpqamain,healthbench,humaneval "${flex[@]}" ;;
    harness)
        "${PYTHON:-python}" benchmarks/eval_throughput.py make-data "$out/hf-home" >/dev/null 2>&1
        # hf: 64 items and one seed, one batch of its default size (its seeds run in turn: the
        # rate is a batch's; 256 items x 5 seeds took past 170 s on the H100); the engine: 256
        # items x GSM8K's five seeds, run together as the harness runs them
        hows=("hf --stock --limit 64 --seeds 1" "hf --limit 64 --seeds 1" "engine --limit 256")
        [ -n "${HARNESS:-}" ] && IFS=';' read -r -a hows <<<"$HARNESS"  # runs of your choosing
        for how in "${hows[@]}"; do
            name=${how%% --limit*}
            # shellcheck disable=SC2086
            run "harness-${name// /}" 200 9 benchmarks/eval_throughput.py run "$out/hf-home" \
                --max-tokens 256 --backend $how
        done
        rm -rf "$out/hf-home" ;;
    4b) run 4b 240 6 benchmarks/eval_engine.py --shape qwen3-4b --n 512 --slots 256 \
        --gen-batch 0 --agree 2 "${flex[@]}" ;;
    gemma) run gemma 240 6 benchmarks/eval_engine.py --shape gemma-3-4b --n 512 --slots 256 \
        --gen-batch 0 --agree 2 "${flex[@]}" ;;
    *) echo "unknown stage $stage (see the stages at the top of $0)" >&2 ;;
    esac
done
