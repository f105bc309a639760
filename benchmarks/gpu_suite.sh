#!/usr/bin/env bash
# Every GPU measurement of the speed targets, one log per part in LOG_DIR (default benchmarks/logs), run from the
# repository root with the project's Python on PATH (python3 -m pytest / python3 benchmarks/...).
#   benchmarks/gpu_suite.sh [LOG_DIR] [PART ...]      parts: tests epoch profile eval throughput grid overhead
#   (default all)
# Each part stays within a few minutes on one H100, so the parts can also run as separate commands.
set -uo pipefail
cd "$(dirname "$0")/.."
logs=${1:-benchmarks/logs}
shift || true
parts=("$@")
known=(tests epoch profile eval throughput grid overhead)
[ ${#parts[@]} -eq 0 ] && parts=("${known[@]}")
for part in "${parts[@]}"; do  # refuse a misspelt part before anything runs
    [[ " ${known[*]} " == *" $part "* ]] || { echo "unknown part $part (${known[*]})" >&2; exit 2; }
done
mkdir -p "$logs"
python=${PYTHON:-python3}

run() {  # run NAME COMMAND...: the command's output into NAME.log and onto the terminal, its status remembered
    local name=$1
    shift
    echo "== $name: $*"
    local started=$SECONDS
    "$@" 2>&1 | tee "$logs/$name.log"
    local status=${PIPESTATUS[0]}
    echo "== $name: exit $status after $((SECONDS - started)) s" | tee -a "$logs/$name.log"
    [ "$status" -eq 0 ] || failed+=("$name")
}

failed=()
for part in "${parts[@]}"; do
    case $part in
        tests) run tests "$python" -m pytest -q tests/test_cuda_graphs.py tests/test_compile.py ;;
        epoch) run epoch_time "$python" benchmarks/epoch_time.py --n 70000 --epochs 4 --interval 20 --compile ;;
        profile)
            run profile_tf32 "$python" benchmarks/profile_step.py --precision tf32
            run profile_tf32_compiled "$python" benchmarks/profile_step.py --precision tf32 --compile
            run profile_population "$python" benchmarks/profile_step.py --precision tf32 --population 16 ;;
        eval) run eval_time "$python" benchmarks/eval_time.py --device cuda --n 70000 --members 1 8 32 64 ;;
        throughput)
            run throughput_tf32 "$python" benchmarks/throughput.py --device cuda --n 70000 --epochs 3 --warmup 2 \
                --packs 1 --population 16 32 64 --precision tf32
            run throughput_tf32_compiled "$python" benchmarks/throughput.py --device cuda --n 70000 --epochs 3 \
                --warmup 2 --packs --population 32 64 --precision tf32 --compile
            run throughput_bf16_compiled "$python" benchmarks/throughput.py --device cuda --n 70000 --epochs 3 \
                --warmup 2 --packs --population 32 64 --precision bf16 --compile ;;
        grid)  # target 3's own figure: Fig 8's settings and algorithms; epoch 5 is timed, so T = 5 members step in it
            run throughput_fig8 "$python" benchmarks/throughput.py --device cuda --n 70000 --epochs 4 --warmup 2 \
                --packs 1 --population 64 --grid fig8 --algorithm dec idec dcn --precision tf32 ;;
        overhead)
            run recluster_time "$python" benchmarks/recluster_time.py --device cuda --repeats 7
            run brb_overhead "$python" benchmarks/brb_overhead.py --n 70000 --epochs 3 --interval 20 \
                --subsample 10000 ;;
    esac
done
echo "logs in $logs; failed: ${failed[*]:-none}"
[ ${#failed[@]} -eq 0 ]
