"""Test-time reference check (not part of the product): Python's tifffile must read the volumes
written by dispr_shape::tiff_io as ImageJ (64, 64, 64) ZYX stacks with the right values.

Usage: python3 check_tifffile.py DIR   (DIR holds u8.tif and f32.tif, the ramp volume of the test)
"""
import sys

import numpy as np
import tifffile

d = sys.argv[1]
z, y, x = np.meshgrid(np.arange(64), np.arange(64), np.arange(64), indexing="ij")
expected = ((z * 3 + y + x) % 256).astype(np.uint8)
for name, want in [("u8", expected), ("f32", expected.astype(np.float32) / 255.0)]:
    with tifffile.TiffFile(f"{d}/{name}.tif") as tif:
        assert tif.is_imagej, f"{name}: not recognised as an ImageJ file"
        series = tif.series[0]
        assert series.axes == "ZYX", f"{name}: axes {series.axes}"
        a = series.asarray()
    assert a.shape == (64, 64, 64), f"{name}: shape {a.shape}"
    assert a.dtype == want.dtype, f"{name}: dtype {a.dtype}"
    assert np.array_equal(a, want), f"{name}: values differ"
    print(f"ok {name} {a.shape} {a.dtype}")
