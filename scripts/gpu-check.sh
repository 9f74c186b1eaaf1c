#!/usr/bin/env bash
# One command that proves the GPU path on a machine with a GPU and prints one table: CUDA against
# CPU agreement, forward times, seconds per sample, a short training run whose loss must fall,
# and a worker draining a run from RabbitMQ. Made to fit in 8 minutes on one H100.
#
# Usage:
#   scripts/gpu-check.sh --build DIR      here (no GPU needed): build the stripped `--features cuda`
#                                         release binaries into DIR, small enough to carry
#   scripts/gpu-check.sh --bin-dir DIR    on the GPU machine: run the checks with DIR's binaries
#   scripts/gpu-check.sh --cpu            every check on the CPU at small sizes (the script's own
#                                         test, where no GPU is): builds the CPU binaries
# Options: --out DIR (keep the logs and outputs there; default a temporary folder),
#          --config NAME (the network, default dispr-64-ref; --cpu: tiny), --skip-broker
#
# The broker check uses the RabbitMQ on 127.0.0.1:5672 if one answers, or starts Debian's
# rabbitmq-server if it is installed; without either it says so and drains the same 50 cells with
# `dispr-coordinator local` (the same worker pipeline, in one process) instead.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
REPO=$(pwd)

mode="" bin_dir="" out="" config="" skip_broker=0
while (($#)); do
    case $1 in
        --build) mode=build; bin_dir=$2; shift 2 ;;
        --bin-dir) mode=gpu; bin_dir=$2; shift 2 ;;
        --cpu) mode=cpu; shift ;;
        --out) out=$2; shift 2 ;;
        --config) config=$2; shift 2 ;;
        --skip-broker) skip_broker=1; shift ;;
        -h | --help) sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "gpu-check.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done
[[ -n $mode ]] || { echo "gpu-check.sh: say --build DIR, --bin-dir DIR or --cpu (see --help)" >&2; exit 2; }

BINS=(dispr-model-bench dispr-worker dispr-coordinator)
build_into() { # dir [cargo features...]
    local dir=$1
    shift
    cargo build --release --workspace "$@" $(printf -- '--bin %s ' "${BINS[@]}") >&2
    mkdir -p "$dir"
    for b in "${BINS[@]}"; do
        strip -o "$dir/$b" "target/release/$b"
    done
    du -ch "${BINS[@]/#/$dir/}" | tail -1 | sed 's/total/in all (stripped)/' >&2
}

if [[ $mode == build ]]; then
    build_into "$bin_dir" --features cuda
    echo "carry $bin_dir to the GPU machine and run: scripts/gpu-check.sh --bin-dir $bin_dir" >&2
    exit 0
fi
if [[ $mode == cpu ]]; then
    bin_dir=$REPO/target/gpu-check-cpu
    build_into "$bin_dir"
    config=${config:-tiny}
    sizes=(--batches 1,8,32) sample_cells=4 train_steps=20 train_batch=4 drain_cells=50
else
    config=${config:-dispr-64-ref}
    sizes=(--batches 1,8,32) sample_cells=8 train_steps=20 train_batch=4 drain_cells=50
fi
for b in "${BINS[@]}"; do
    [[ -x $bin_dir/$b ]] || { echo "gpu-check.sh: $bin_dir/$b is missing: make it with --build $bin_dir" >&2; exit 1; }
done
if [[ -z $out ]]; then
    out=$(mktemp -d "${TMPDIR:-/tmp}/dispr-gpu-check.XXXXXX")
fi
mkdir -p "$out"
echo "logs and outputs in $out" >&2
export RUST_LOG=${RUST_LOG:-info}
bench=$bin_dir/dispr-model-bench worker=$bin_dir/dispr-worker coordinator=$bin_dir/dispr-coordinator

rows=()
row() { rows+=("| $1 | $2 | $3 |"); printf '%s: %s (%s)\n' "$1" "$2" "$3" >&2; }
timed() { # log-file command...: runs it, returns its status, prints its seconds to fd 3
    local log=$1 start=$SECONDS
    shift
    "$@" >"$log" 2>&1
    local status=$?
    echo $((SECONDS - start)) >&3
    return $status
}

# 1. Agreement of the device's forward pass with the CPU's, on the same random weights.
echo "== agreement" >&2
if "$bench" --agreement "$config" >"$out/agreement.log" 2>&1; then
    row "forward: device vs CPU, $config" pass "$(tail -1 "$out/agreement.log")"
else
    row "forward: device vs CPU, $config" FAIL "$(tail -1 "$out/agreement.log")"
fi

# 2. Forward passes at batch 1, 8 and 32.
echo "== forward" >&2
if "$bench" --configs "$config" "${sizes[@]}" --iters 2 --forward-only >"$out/forward.log" 2>&1; then
    while IFS='|' read -r _ name _ batch secs _ gflops mib _; do
        row "forward, batch $(echo $batch)" pass "$(echo $secs) s, $(echo $gflops) GFLOP/s, peak RSS $(echo $mib) MiB"
    done < <(grep "^| $config " "$out/forward.log")
else
    row "forward" FAIL "$(tail -1 "$out/forward.log")"
fi

# 3. Seconds per sample, DDPM-1000 and DDIM-50, cells sampled together as a worker batches them.
echo "== sampling" >&2
if "$bench" --configs none --sample-config "$config" --samplers ddim-50,ddpm-1000 --cells "$sample_cells" \
    --skip-shipped >"$out/sampling.log" 2>&1; then
    while IFS='|' read -r _ spec per _; do
        row "sampling $(echo $spec), $sample_cells cells together" pass "$(echo $per) s per sample"
    done < <(grep -E '^\| (ddim|ddpm)' "$out/sampling.log")
else
    row "sampling" FAIL "$(tail -1 "$out/sampling.log")"
fi

# 4. Training steps on synthetic cells: the loss must fall.
echo "== training" >&2
"$coordinator" synth --out "$out/synth" --cells 64 --seed 1 >"$out/synth.log" 2>&1 || {
    echo "gpu-check.sh: making synthetic cells failed: $out/synth.log" >&2
    exit 1
}
train_config=$config
if "$worker" train --dataset "$out/synth" --out "$out/train" --config "$train_config" --steps "$train_steps" \
    --batch-size "$train_batch" --lr 1e-3 --validate-every 0 --checkpoint-every 1000 --log-every 1 \
    --log-format json >"$out/train.log" 2>&1; then
    verdict=$(python3 - "$out/train.log" <<'PY'
import json, sys
losses = []
for line in open(sys.argv[1]):
    try:
        f = json.loads(line).get("fields", {})
    except ValueError:
        continue
    if f.get("message") == "training" and "loss" in f:
        losses.append(float(f["loss"]))
if len(losses) < 10:
    print(f"FAIL only {len(losses)} losses logged")
else:
    head, tail = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    print(("pass" if tail < head else "FAIL") + f" loss {head:.4f} (first 5 steps) -> {tail:.4f} (last 5), {len(losses)} steps")
PY
)
    row "training $train_steps steps, $train_config, batch $train_batch" "${verdict%% *}" "${verdict#* }"
else
    row "training" FAIL "$(tail -1 "$out/train.log")"
fi

# 5. One worker draining a run of 50 cells from RabbitMQ onto a local folder.
echo "== worker draining $drain_cells cells" >&2
"$coordinator" synth --out "$out/cells" --cells "$drain_cells" --seed 2 >>"$out/synth.log" 2>&1
broker="" started=""
port_open() { (exec 3<>/dev/tcp/127.0.0.1/5672) 2>/dev/null; }
if ((!skip_broker)); then
    if port_open; then
        broker=running
    elif command -v rabbitmq-server >/dev/null; then
        RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 RABBITMQ_MNESIA_BASE=$out/rabbitmq RABBITMQ_LOG_BASE=$out/rabbitmq \
            rabbitmq-server >"$out/rabbitmq.log" 2>&1 &
        started=$!
        for _ in $(seq 60); do port_open && break; sleep 1; done
        port_open && broker=started
    fi
fi
sampler=ddim-50
[[ $mode == cpu ]] && sampler=ddim-10
# The checkpoint the training step wrote: its network, on this device, through the whole pipeline.
model=()
[[ -f $out/train/latest.mpk ]] && model=(--model "$out/train/latest.mpk")
start=$SECONDS
if [[ -n $broker ]]; then
    export DISPR_QUEUE_PREFIX=gpucheck$$
    "$coordinator" submit --dataset "$out/cells" --output "$out/run" --run-id gpucheck --sampler "$sampler" \
        --samples 1 "${model[@]}" >"$out/submit.log" 2>&1 || true
    "$worker" serve --idle-timeout-secs 15 --http-addr 127.0.0.1:0 --prefetch 2 \
        --model-cache-dir "$out/model-cache" >"$out/serve.log" 2>&1 || true
    "$coordinator" cleanup --run-id gpucheck --output "$out/run" --force >"$out/cleanup.log" 2>&1 || true
    how="dispr-worker serve from RabbitMQ ($broker)"
else
    "$coordinator" local --dataset "$out/cells" --output "$out/run" --run-id gpucheck --sampler "$sampler" \
        --samples 1 --workers 1 "${model[@]}" >"$out/local.log" 2>&1 || true
    how="no RabbitMQ here (install rabbitmq-server): dispr-coordinator local instead"
fi
took=$((SECONDS - start))
done_cells=$(find "$out/run" -path '*features/*.json' 2>/dev/null | wc -l)
[[ -n $started ]] && kill "$started" 2>/dev/null
verdict=FAIL
((done_cells == drain_cells)) && verdict=pass
row "$how, $drain_cells cells x 1 sample, $sampler" "$verdict" "$done_cells done in ${took} s"

echo
echo "$(date -u +%Y-%m-%dT%H:%MZ) $(hostname), $(command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name --format=csv,noheader | head -1 || echo 'CPU only'), config $config"
echo
echo "| check | result | figures |"
echo "|---|---|---|"
printf '%s\n' "${rows[@]}"
! printf '%s\n' "${rows[@]}" | grep -q '| FAIL |'
