#!/usr/bin/env bash
# The main job end to end, read back with the tools people use: runs a small `demo` (synthetic
# cells, local mode, the classifier and report.html), then opens its volumes and
# features.csv with Python's tifffile and pandas, and its report.html in headless Chromium.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

work=$(mktemp -d "${TMPDIR:-/tmp}/dispr-demo-check.XXXXXX")
trap 'rm -rf "$work"' EXIT

echo "installing the Python readers (tifffile, pandas, selenium) if missing"
python3 -m pip install --quiet --disable-pip-version-check numpy tifffile pandas selenium
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
    echo "installing Debian's chromium and chromium-driver"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
fi

# The null sampler keeps this check to seconds on 2 CPU cores: it checks the pipeline, the files
# and the page; the model's own tests check the model (a 12-cell model demo takes minutes here).
echo "running a 12-cell demo into $work"
# Built with the test command's selection, so this reuses its build instead of compiling the
# network stack again with another feature set (as `cargo run --bin` would).
cargo build --quiet --workspace --all-targets
target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
"$target_dir/debug/dispr-coordinator" demo --out "$work/demo" --cells 12 --samples 2 --sampler null

python3 tests/python/check_outputs.py "$work/demo" demo
shot=${DISPR_REPORT_SCREENSHOT:-$work/report.png}
# The synthetic dataset has ground truth: the ceiling rows and the reconstruction are there.
python3 tests/python/check_report_in_browser.py "$work/demo/runs/demo/report/report.html" "$shot" --ceiling yes

# The same cells without ground truth, one of them with an all-zero mask: no ceiling rows, and
# the cell is named in the list of cells not classified (never dropped silently).
echo "running the demo on a copy without obj/ and with one empty mask"
mkdir -p "$work/no-truth"
cp -r "$work/demo/dataset/image" "$work/demo/dataset/mask" "$work/no-truth/"
blank=$(ls "$work/no-truth/mask" | head -n 1)
python3 -c 'import sys, numpy, tifffile; tifffile.imwrite(sys.argv[1], numpy.zeros((64, 64), numpy.uint8))' \
    "$work/no-truth/mask/$blank"
# The empty mask fails its cell: the demo still writes the report and exits 3 (some cells failed).
status=0
"$target_dir/debug/dispr-coordinator" demo --out "$work/demo2" --dataset "$work/no-truth" --samples 1 --sampler null ||
    status=$?
if ((status != 3)); then
    echo "the demo with one empty mask exited $status; expected 3 (some cells failed)" >&2
    exit 1
fi
python3 tests/python/check_report_in_browser.py "$work/demo2/runs/demo/report/report.html" \
    "${shot%.png}-no-truth.png" --ceiling no --unclassified "${blank%.tif}"
