#!/usr/bin/env bash
# Times DISPR's forward pass here and in the reference PyTorch code, on the same machine, in the
# same run, at the same thread count: this project's CPU kernels, Burn's own operations (the
# "before"), and guided-diffusion's UNetModel (dims=3) on torch. Prints one table with the
# figures measured when the comparison was first made (issue 23) beside today's.
#
# Usage: scripts/bench-vs-pytorch.sh [--threads 2] [--batches 1,4] [--configs dispr-64,dispr-64-ref]
#                                    [--no-burn] [--iters 1]
#   --no-burn   skip Burn's own operations (the slowest column)
# PyTorch's column needs `pip install torch guided-diffusion-sdk` (test-time tools, never
# dependencies of the product); without them the script says so and times this project alone.
# Each measurement is one process (its peak memory is its own) and one forward pass after none
# untimed: at 64^3 a pass takes seconds, and the same holds for both sides. A measurement that
# fails (PyTorch's dispr-64-ref at batch 4 holds 4 heads x 16,384^2 scores per sample: more than
# 24 GiB) is shown as failed, with its exit status, and the others go on.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

threads=2 batches=1,4 configs=dispr-64,dispr-64-ref burn=1 iters=1
while (($#)); do
    case $1 in
        --threads) threads=$2; shift 2 ;;
        --batches) batches=$2; shift 2 ;;
        --configs) configs=$2; shift 2 ;;
        --iters) iters=$2; shift 2 ;;
        --no-burn) burn=0; shift ;;
        -h | --help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "bench-vs-pytorch.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done

echo "building dispr-model-bench (release)..." >&2
cargo build --release --workspace --bin dispr-model-bench >&2
bench=target/release/dispr-model-bench
export RAYON_NUM_THREADS=$threads OMP_NUM_THREADS=$threads

torch=1
if ! python3 -c 'import torch, guided_diffusion' 2>/dev/null; then
    torch=0
    echo "PyTorch's column is skipped: run 'pip install torch guided-diffusion-sdk' to time the reference too" >&2
fi

# One forward pass of ours: prints "seconds gflops peak_mib", or "failed (exit N) - -".
ours() { # config batch [env...]
    local config=$1 batch=$2 text status=0
    shift 2
    text=$(env "$@" "$bench" --configs "$config" --batches "$batch" --iters "$iters" --warmup 0 --forward-only) ||
        status=$?
    if ((status)); then echo "failed(exit-$status) - -"; return; fi
    awk -F'|' -v c="$config" '$2 ~ " "c" " { gsub(/ /, ""); print $5, $7, $8 }' <<<"$text"
}
reference() { # flavour batch: prints "seconds peak_mib", or "failed (exit N) -"
    local text status=0
    text=$(python3 -W ignore tests/python/bench_reference_forward.py --flavour "$1" --batch "$2" \
        --threads "$threads" --iters "$iters") || status=$?
    if ((status)); then echo "failed(exit-$status,-out-of-memory?) -"; return; fi
    python3 -c 'import json, sys
r = json.loads(sys.stdin.readlines()[-1])
print("%.1f %.0f" % (r["seconds"], r["peak_rss_mib"]))' <<<"$text"
}
# The figures issue 23 measured on 2026-12-06 (batch 1, 2 threads, quiet 2-core machine).
before_issue() {
    case "$1/$2" in
        dispr-64/1) echo "15.5 s vs 9.1 s" ;;
        dispr-64-ref/1) echo "56.1 s vs 41.2 s" ;;
        *) echo "-" ;;
    esac
}

rows=()
IFS=, read -ra config_list <<<"$configs"
IFS=, read -ra batch_list <<<"$batches"
for config in "${config_list[@]}"; do
    for batch in "${batch_list[@]}"; do
        echo "timing $config, batch $batch..." >&2
        read -r s gflops mib < <(ours "$config" "$batch")
        burn_s=-
        if ((burn)); then read -r burn_s _ _ < <(ours "$config" "$batch" DISPR_CPU_KERNELS=burn); fi
        torch_s=- torch_mib=- ratio=-
        if ((torch)); then
            read -r torch_s torch_mib < <(reference "$config" "$batch")
            if [[ $torch_s != failed* && $s != failed* ]]; then
                ratio=$(awk -v a="$s" -v b="$torch_s" 'BEGIN { printf "%.2fx", a / b }')
            fi
        fi
        [[ $s == failed* ]] || s="$(printf '%.1f' "$s") s, $gflops GFLOP/s"
        rows+=("| $config | $batch | $s | $mib | $burn_s | ${torch_s//-/ } | $torch_mib | $ratio | $(before_issue "$config" "$batch") |")
        echo "${rows[-1]}" >&2
    done
done

echo
echo "$(date -u +%Y-%m-%d), $(lscpu | sed -n 's/^Model name: *//p' | head -1), $threads threads, load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "| network | batch | ours | ours peak MiB | Burn's ops s | PyTorch s | PyTorch peak MiB | ours / PyTorch | issue 23 (ours vs PyTorch) |"
echo "|---|---|---|---|---|---|---|---|---|"
printf '%s\n' "${rows[@]}"
