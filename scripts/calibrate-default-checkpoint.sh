#!/usr/bin/env bash
# Fits the default checkpoint's height calibration on the real cells and measures it honestly:
# `dispr-worker calibrate` (see its --help) once per fold of a stratified 5-fold split, every
# fold's calibration scored by `evaluate` on the cells it did not see, then once on every cell
# (the calibration to ship). About 2 minutes on the 2-core machine.
#
#   scripts/calibrate-default-checkpoint.sh CHECKPOINT.mpk [WORK_DIR] [REAL_DATASET]
#
# Writes WORK_DIR/fold<K>.mpk (+ .json), WORK_DIR/held-out.md (the per-class table on held-out
# cells, beside the uncalibrated checkpoint on the same cells) and WORK_DIR/calibrated.mpk
# (+ .json): copy the latter two to model/checkpoints/default/model.mpk and model.json. Set
# DISPR_BIN to use prebuilt binaries.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
CHECKPOINT=${1:?usage: $0 CHECKPOINT.mpk [WORK_DIR] [REAL_DATASET]}
WORK=${2:-/tmp/dispr-calibration}
REAL=${3:-../shared/data/rbc-real-sample}
FOLDS=5
if [[ -z "${DISPR_BIN:-}" ]]; then
    cargo build --release --bin dispr-worker
    DISPR_BIN=target/release
fi
worker=$DISPR_BIN/dispr-worker
[[ -d "$REAL/obj" ]] || { echo "no real dataset with obj/ at $REAL: pass its folder as the third argument" >&2; exit 1; }
mkdir -p "$WORK"

folds=()
for ((k = 0; k < FOLDS; k++)); do
    "$worker" calibrate --checkpoint "$CHECKPOINT" --dataset "$REAL" --folds "$FOLDS" --fold "$k" \
        --out "$WORK/fold$k.mpk" > "$WORK/fold$k.log"
    folds+=(--checkpoint "$WORK/fold$k.mpk")
done
{
    echo "## Calibrated: every cell scored by the fold calibration that did not see it"
    "$worker" evaluate "${folds[@]}" --folds "$FOLDS" --dataset "$REAL" --samplers ddim-2 --samples 5 \
        --cell-scores "$WORK/held-out-cells.jsonl"
    echo
    echo "## The same cells, uncalibrated (the bare network)"
    "$worker" evaluate --checkpoint "$CHECKPOINT" --without-z-calibration --all-cells --dataset "$REAL" \
        --samplers ddim-2 --samples 5
} | tee "$WORK/held-out.md"

"$worker" calibrate --checkpoint "$CHECKPOINT" --dataset "$REAL" --out "$WORK/calibrated.mpk" | tee "$WORK/calibrated.log"
echo "done: copy $WORK/calibrated.mpk and calibrated.json to model/checkpoints/default/model.mpk and model.json"
