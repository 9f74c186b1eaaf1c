"""Test-time reference check (not part of the product): report/features.parquet reads with
pyarrow and pandas as one row per cell with typed columns, says what features.csv says, and
names its run in the file's metadata.

Usage: python3 check_features_parquet.py REPORT_DIR RUN_ID
"""
import pathlib
import sys

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq


def fail(msg: str) -> None:
    print(f"check_features_parquet: FAILED: {msg}", file=sys.stderr)
    sys.exit(1)


def main() -> None:
    report, run = pathlib.Path(sys.argv[1]), sys.argv[2]
    table = pq.read_table(report / "features.parquet")
    file_metadata = pq.read_metadata(report / "features.parquet").metadata or {}
    for where, raw in [("file", file_metadata), ("schema", table.schema.metadata or {})]:
        metadata = {k.decode(): v.decode() for k, v in raw.items()}
        if metadata.get("dispr.run_id") != run:
            fail(f"{where} metadata dispr.run_id is {metadata.get('dispr.run_id')!r}, expected {run!r}: {metadata}")
    types = {f.name: f.type for f in table.schema}
    if types.get("cell") != pa.string() or types.get("samples") != pa.uint32():
        fail(f"cell and samples are {types.get('cell')} and {types.get('samples')}, expected string and uint32")
    features = [n for n in table.column_names if n not in ("cell", "class", "subclass", "samples")]
    if not features or any(types[n] != pa.float64() for n in features):
        fail(f"feature columns are not all float64: {[(n, str(types[n])) for n in features][:5]}")
    frame = pd.read_parquet(report / "features.parquet")
    csv = pd.read_csv(report / "features.csv")
    if len(frame) != len(csv) or frame["cell"].tolist() != csv["cell"].tolist():
        fail(f"{len(frame)} parquet rows for {len(csv)} csv rows, or the cells differ")
    if frame["cell"].duplicated().any():
        fail("a cell has two rows")
    if list(frame.columns) != list(csv.columns):
        fail("the columns differ from features.csv's")
    a, b = frame[features].to_numpy(dtype=float), csv[features].to_numpy(dtype=float)
    if not np.array_equal(np.isnan(a), np.isnan(b)) or not np.allclose(a[~np.isnan(a)], b[~np.isnan(b)], rtol=1e-12):
        fail("feature values differ from features.csv's")
    print(f"check_features_parquet: ok, {len(frame)} cells x {len(features)} float64 features, run {run}")


if __name__ == "__main__":
    main()
