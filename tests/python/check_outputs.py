"""Reads a finished run's outputs with the tools biologists already use (tifffile, pandas).

Usage: python3 check_outputs.py <output root> <run id>

Checks that every predicted volume opens as a deflate-compressed (64, 64, 64) array in the run's
volume format (manifest.json's "volumes": float32 in [0, 1], uint8, or mask of 0 and 255), that
features.csv is one row per done cell with the documented columns, and that both agree with the
per-cell features/<cell>.json records; for cells of 2 samples or more, that the probability and
standard-deviation volumes are the mean and spread of the binarised samples as their records say,
and that uncertainty.csv has a row per done cell, most uncertain first. Exits non-zero with a
message on the first problem.
"""

import json
import pathlib
import sys

import numpy as np
import pandas as pd
import tifffile


def fail(msg: str) -> None:
    print(f"check_outputs: FAILED: {msg}", file=sys.stderr)
    sys.exit(1)


def main() -> None:
    root, run = pathlib.Path(sys.argv[1]), sys.argv[2]
    run_dir = root / "runs" / run
    records = sorted((run_dir / "features").glob("*.json"))
    if not records:
        fail(f"no features/*.json under {run_dir}")

    manifest = json.loads((run_dir / "manifest.json").read_text())
    # Manifests of releases before the formats existed have none: their volumes are float32.
    fmt = manifest.get("volumes", "float32")
    dtype = np.float32 if fmt == "float32" else np.uint8
    checked = 0
    for rec_path in records:
        rec = json.loads(rec_path.read_text())
        cell = rec["cell"]
        for sample in rec["samples"]:
            tif = run_dir / "volumes" / cell / f"{sample['k']}.tif"
            with tifffile.TiffFile(tif) as t:
                if not t.is_imagej:
                    fail(f"{tif} is not an ImageJ hyperstack")
                if int(t.pages[0].compression) != 8:
                    fail(f"{tif} is not deflate-compressed (compression {t.pages[0].compression})")
                vol = t.asarray()
            if vol.shape != (64, 64, 64):
                fail(f"{tif} reads as {vol.shape}, expected (64, 64, 64)")
            if vol.dtype != dtype:
                fail(f"{tif} has dtype {vol.dtype}, expected {np.dtype(dtype)} (volumes: {fmt})")
            if fmt == "float32" and not (np.isfinite(vol).all() and vol.min() >= 0.0 and vol.max() <= 1.0):
                fail(f"{tif} has values outside [0, 1]: {vol.min()}..{vol.max()}")
            if fmt == "mask" and not np.isin(vol, [0, 255]).all():
                fail(f"{tif} is a mask with values other than 0 and 255")
            checked += 1

    table = pd.read_csv(run_dir / "report" / "features.csv")
    if len(table) != len(records):
        fail(f"features.csv has {len(table)} rows for {len(records)} done cells")
    for column in ["cell", "class"]:
        if column not in table.columns:
            fail(f"features.csv lacks the column {column!r}; it has {list(table.columns)[:10]}...")
    cols_2d = [c for c in table.columns if c.startswith("2d_")]
    cols_3d = [c for c in table.columns if c.startswith("3d_")]
    if len(cols_2d) < 14 or len(cols_3d) < 30:
        fail(f"features.csv has {len(cols_2d)} 2D and {len(cols_3d)} 3D columns; expected >= 14 and >= 30")
    numeric = table[cols_2d + cols_3d]
    if not np.isfinite(numeric.to_numpy(dtype=float)).all():
        fail("features.csv has non-finite values")
    # The table must say what the records say.
    first = json.loads(records[0].read_text())
    row = table.set_index("cell").loc[first["cell"]]
    for name, value in first["features_2d"].items():
        if not np.isclose(row[f"2d_{name}"], value, rtol=1e-6, atol=1e-9):
            fail(f"features.csv 2d_{name} = {row[f'2d_{name}']} but the record says {value}")
    uncertain = check_uncertainty(run_dir, records, fmt)
    print(f"check_outputs: {checked} volumes read as (64,64,64) {fmt}; "
          f"{uncertain} cells' probability and std volumes agree with their records; "
          f"features.csv: {len(table)} cells x {len(cols_2d)} 2D + {len(cols_3d)} 3D columns")


def check_uncertainty(run_dir: pathlib.Path, records: list, fmt: str) -> int:
    """The ensemble outputs of each cell against its record, and uncertainty.csv; returns the
    number of cells with a known uncertainty."""
    known = 0
    for rec_path in records:
        rec = json.loads(rec_path.read_text())
        cell, u = rec["cell"], rec.get("uncertainty")
        prob_path = run_dir / "volumes" / cell / "probability.tif"
        if len(rec["samples"]) < 2:
            if u is not None or prob_path.exists():
                fail(f"{cell} has one sample but an uncertainty: it must be unknown (null), never measured")
            continue
        if u is None:
            fail(f"{cell} has {len(rec['samples'])} samples but no uncertainty in its record")
        levels = tifffile.imread(prob_path)
        s = tifffile.imread(run_dir / "volumes" / cell / "std.tif")
        k = len(rec["samples"])
        if levels.dtype != np.uint8 or levels.shape != (64, 64, 64) or s.shape != (64, 64, 64):
            fail(f"{prob_path}: {levels.dtype} {levels.shape}, expected uint8 (64, 64, 64)")
        # uint8 level round(255 j / K) of j samples of K: exact for K <= 255.
        j = np.round(levels.astype(np.float64) * k / 255.0)
        if not np.array_equal(np.round(255.0 * j / k).astype(np.uint8), levels):
            fail(f"{prob_path} is not the uint8 level of a mean of {k} binary samples")
        p = j / k
        if s.dtype == np.uint8:
            s = s.astype(np.float64) / 255.0
            tolerance = 0.5 / 255 + 1e-9
        else:
            tolerance = 1e-6
        if s.dtype != (np.float32 if fmt == "float32" else np.float64):
            fail(f"{cell}: std.tif has dtype {s.dtype} in a {fmt} run")
        if not np.allclose(s, np.sqrt(p * (1 - p)), atol=tolerance):
            fail(f"{cell}: std.tif is not sqrt(p (1 - p)) of probability.tif")
        entropy = -(p * np.log2(np.where(p > 0, p, 1)) + (1 - p) * np.log2(np.where(p < 1, 1 - p, 1)))
        if not np.isclose(entropy.mean(), u["mean_entropy"], rtol=1e-4, atol=1e-9):
            fail(f"{cell}: mean entropy of probability.tif {entropy.mean()} but the record says {u['mean_entropy']}")
        known += 1
    table = pd.read_csv(run_dir / "report" / "uncertainty.csv")
    if len(table) != len(records):
        fail(f"uncertainty.csv has {len(table)} rows for {len(records)} done cells")
    ranked = table["disagreement"].dropna().to_numpy()
    if (np.diff(ranked) > 0).any() or table["disagreement"].isna().to_numpy()[: len(ranked)].any():
        fail("uncertainty.csv is not sorted most uncertain first with the unknown cells last")
    return known


if __name__ == "__main__":
    main()
