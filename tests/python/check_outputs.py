"""Reads a finished run's outputs with the tools biologists already use (tifffile, pandas).

Usage: python3 check_outputs.py <output root> <run id>

Checks that every predicted volume opens as a (64, 64, 64) float32 array in [0, 1], that
features.csv is one row per done cell with the documented columns, and that both agree with the
per-cell features/<cell>.json records. Exits non-zero with a message on the first problem.
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

    checked = 0
    for rec_path in records:
        rec = json.loads(rec_path.read_text())
        cell = rec["cell"]
        for sample in rec["samples"]:
            tif = run_dir / "volumes" / cell / f"{sample['k']}.tif"
            with tifffile.TiffFile(tif) as t:
                if not t.is_imagej:
                    fail(f"{tif} is not an ImageJ hyperstack")
                vol = t.asarray()
            if vol.shape != (64, 64, 64):
                fail(f"{tif} reads as {vol.shape}, expected (64, 64, 64)")
            if vol.dtype != np.float32:
                fail(f"{tif} has dtype {vol.dtype}, expected float32")
            if not (np.isfinite(vol).all() and vol.min() >= 0.0 and vol.max() <= 1.0):
                fail(f"{tif} has values outside [0, 1]: {vol.min()}..{vol.max()}")
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
    print(f"check_outputs: {checked} volumes read as (64,64,64) float32 in [0,1]; "
          f"features.csv: {len(table)} cells x {len(cols_2d)} 2D + {len(cols_3d)} 3D columns")


if __name__ == "__main__":
    main()
