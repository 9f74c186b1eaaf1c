"""Test-time reference check (not part of the product): Python's tifffile reads the volumes of
each volume format as written by the worker, with no plugin (no imagecodecs).

Usage: python3 check_volume_formats.py FLOAT32_DIR UINT8_DIR MASK_DIR

Each DIR is one cell's volumes/<cell>/ folder of the same cell sampled with the same seeds in
that format: 0.tif .. (K-1).tif, probability.tif and std.tif. Checks shape, dtype, the ImageJ
hyperstack, the deflate compression tag, that uint8 is float32 quantised to within 0.5/255,
that mask holds only 0 and 255, and that probability is uint8 with K + 1 levels.
"""
import pathlib
import sys

import numpy as np
import tifffile

DEFLATE = 8  # TIFF compression tag (tifffile's COMPRESSION.ADOBE_DEFLATE)


def fail(msg: str) -> None:
    print(f"check_volume_formats: FAILED: {msg}", file=sys.stderr)
    sys.exit(1)


def read(path: pathlib.Path, dtype: str) -> np.ndarray:
    with tifffile.TiffFile(path) as tif:
        if not tif.is_imagej:
            fail(f"{path} is not an ImageJ hyperstack")
        if tif.series[0].axes != "ZYX":
            fail(f"{path}: axes {tif.series[0].axes}, expected ZYX")
        compression = int(tif.pages[0].compression)
        if compression != DEFLATE:
            fail(f"{path}: compression {compression}, expected {DEFLATE} (deflate)")
        a = tif.asarray()
    if a.shape != (64, 64, 64):
        fail(f"{path}: shape {a.shape}, expected (64, 64, 64)")
    if a.dtype != np.dtype(dtype):
        fail(f"{path}: dtype {a.dtype}, expected {dtype}")
    return a


def main() -> None:
    dirs = dict(zip(["float32", "uint8", "mask"], map(pathlib.Path, sys.argv[1:4])))
    samples = sorted(p.name for p in dirs["float32"].glob("[0-9]*.tif"))
    if not samples:
        fail(f"no samples in {dirs['float32']}")
    k = len(samples)
    for name in samples:
        f = read(dirs["float32"] / name, "float32")
        if not (np.isfinite(f).all() and f.min() >= 0.0 and f.max() <= 1.0):
            fail(f"{name}: float32 values outside [0, 1]")
        q = read(dirs["uint8"] / name, "uint8")
        error = np.abs(q.astype(np.float64) / 255.0 - f.astype(np.float64)).max()
        if error > 0.5 / 255.0 + 1e-7:
            fail(f"{name}: uint8 is {error} from float32, more than half a step (0.5/255)")
        m = read(dirs["mask"] / name, "uint8")
        if not np.isin(m, [0, 255]).all() or not m.any():
            fail(f"{name}: mask holds values other than 0 and 255, or nothing")
    levels = np.round(255.0 * np.arange(k + 1) / k).astype(np.uint8)
    for fmt, d in dirs.items():
        p = read(d / "probability.tif", "uint8")
        if not np.isin(p, levels).all():
            fail(f"{fmt}: probability.tif holds values outside the {k + 1} levels {levels.tolist()}")
        read(d / "std.tif", "float32" if fmt == "float32" else "uint8")
    print(f"check_volume_formats: ok, {k} samples, probability and std in float32, uint8 and mask")


if __name__ == "__main__":
    main()
