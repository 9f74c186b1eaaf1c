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
python3 tests/python/check_report_in_browser.py "$work/demo/runs/demo/report/report.html" "$shot"
