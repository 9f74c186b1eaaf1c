#!/usr/bin/env python3
"""Golden values for the shape features, computed with scikit-image (run by hand, not in CI).

    pip install numpy scikit-image tifffile
    python3 shape/tests/golden/make_golden.py > shape/tests/golden/golden.json

The fixtures are analytic shapes that shape/tests/golden.rs rebuilds with the same formulas, and
a few cells of the real sample in ../shared/data/rbc-real-sample (obj binarised at > 127, mask at
>= 128). Only features that scikit-image also computes are recorded; the Rust test checks them
within 1%.
"""
import json
import math
import os
import sys

import numpy as np
import tifffile
from skimage.feature import graycomatrix, graycoprops
from skimage.filters import threshold_otsu
from skimage.measure import label, marching_cubes, mesh_surface_area, regionprops

HERE = os.path.dirname(os.path.abspath(__file__))
REAL = os.path.normpath(os.path.join(HERE, "../../../../shared/data/rbc-real-sample"))
REAL_CELLS = ["A_cell_clusters000604", "B_keratocytes000673", "C_knizocytes000704", "D_multilobate_cells000727"]


def grid(dims):
    return np.meshgrid(*[np.arange(n, dtype=np.float64) for n in dims], indexing="ij")


def volumes():
    """Analytic 3D fixtures: keep in step with `volume_fixture` in golden.rs."""
    out = {}
    z, y, x = grid((40, 40, 40))
    out["ball"] = (z - 19.5) ** 2 + (y - 19.5) ** 2 + (x - 19.5) ** 2 <= 15.0**2
    z, y, x = grid((32, 48, 56))
    out["ellipsoid"] = ((z - 15.5) / 10.0) ** 2 + ((y - 23.7) / 18.0) ** 2 + ((x - 27.2) / 25.0) ** 2 <= 1.0
    z, y, x = grid((24, 48, 48))
    r = np.sqrt((y - 23.5) ** 2 + (x - 23.5) ** 2)
    out["torus"] = (r - 14.0) ** 2 + (z - 11.5) ** 2 <= 25.0
    z, y, x = grid((16, 16, 16))
    out["box_at_border"] = (z < 10) & (y >= 3) & (x >= 2) & (x < 12)
    z, y, x = grid((30, 30, 50))
    out["two_balls"] = ((z - 14.5) ** 2 + (y - 14.5) ** 2 + (x - 12.0) ** 2 <= 81.0) | (
        (z - 14.5) ** 2 + (y - 14.5) ** 2 + (x - 36.0) ** 2 <= 64.0
    )
    z, y, x = grid((40, 40, 40))
    out["cup"] = ((z - 19.5) ** 2 + (y - 19.5) ** 2 + (x - 19.5) ** 2 <= 196.0) & ~(
        (z - 9.5) ** 2 + (y - 19.5) ** 2 + (x - 19.5) ** 2 <= 100.0
    )
    if os.path.isdir(REAL):
        for cell in REAL_CELLS:
            out["real_" + cell] = tifffile.imread(os.path.join(REAL, "obj", cell + ".tif")) > 127
    return out


def images():
    """Analytic 2D fixtures (mask, image): keep in step with `image_fixture` in golden.rs."""
    out = {}
    r, c = grid((64, 64))
    pattern = ((r * 7 + c * 13) % 97 + 60).astype(np.uint8)
    out["disc"] = ((r - 31.5) ** 2 + (c - 31.5) ** 2 <= 400.0, pattern)
    u = (r - 30.2) * math.cos(0.6) + (c - 33.1) * math.sin(0.6)
    v = -(r - 30.2) * math.sin(0.6) + (c - 33.1) * math.cos(0.6)
    out["tilted_ellipse"] = ((u / 24.0) ** 2 + (v / 11.0) ** 2 <= 1.0, pattern)
    d2 = (r - 31.5) ** 2 + (c - 31.5) ** 2
    out["ring"] = ((d2 <= 576.0) & (d2 >= 196.0), pattern)
    out["l_shape"] = (((r >= 5) & (r < 50) & (c >= 8) & (c < 20)) | ((r >= 38) & (r < 50) & (c >= 8) & (c < 60)), pattern)
    if os.path.isdir(REAL):
        for cell in REAL_CELLS:
            mask = tifffile.imread(os.path.join(REAL, "mask", cell + ".tif")) >= 128
            image = tifffile.imread(os.path.join(REAL, "image", cell + ".tif"))
            out["real_" + cell] = (mask, image)
    return out


def features_3d(vol):
    p = regionprops(vol.astype(np.uint8))[0]
    verts, faces, _, _ = marching_cubes(np.pad(vol, 1).astype(np.float32), 0.5)
    ev = p.inertia_tensor_eigvals
    return {
        "volume": float(p.area),
        "surface_area": float(mesh_surface_area(verts, faces)),
        "equivalent_diameter": float(p.equivalent_diameter_area),
        "convex_volume": float(p.area_convex),
        "solidity": float(p.solidity),
        "inertia_eigenvalue_1": float(ev[0]),
        "inertia_eigenvalue_2": float(ev[1]),
        "inertia_eigenvalue_3": float(ev[2]),
        "axis_major_length": float(p.axis_major_length),
        "axis_minor_length": float(p.axis_minor_length),
        "extent": float(p.extent),
        "euler_number": float(p.euler_number),
        "components": float(label(vol, connectivity=3).max()),
    }


def glcm_in_mask(image, mask):
    """graycoprops over pairs of mask pixels only: level 0 marks the outside and is dropped."""
    shifted = image.astype(np.int64) + 1
    shifted[~mask] = 0
    angles = [0, np.pi / 4, np.pi / 2, 3 * np.pi / 4]
    P = graycomatrix(shifted, [1], angles, levels=257, symmetric=True, normed=False)[1:, 1:, :, :].astype(np.float64)
    totals = P.sum(axis=(0, 1))
    keep = totals[0] > 0
    P = P[:, :, :, keep] / totals[:, keep]
    return {prop: float(np.mean(graycoprops(P, prop))) for prop in ["dissimilarity", "contrast", "homogeneity", "correlation"]}


def features_2d(mask, image):
    p = regionprops(mask.astype(np.uint8), intensity_image=image)[0]
    g = glcm_in_mask(image, mask)
    return {
        "area": float(p.area),
        "perimeter": float(p.perimeter),
        "convex_area": float(p.area_convex),
        "solidity": float(p.solidity),
        "eccentricity": float(p.eccentricity),
        "axis_major_length": float(p.axis_major_length),
        "axis_minor_length": float(p.axis_minor_length),
        "equivalent_diameter": float(p.equivalent_diameter_area),
        "extent": float(p.extent),
        "intensity_mean": float(p.intensity_mean),
        "intensity_std": float(p.intensity_std),
        "intensity_max": float(p.intensity_max),
        "glcm_dissimilarity": g["dissimilarity"],
        "glcm_contrast": g["contrast"],
        "glcm_homogeneity": g["homogeneity"],
        "glcm_correlation": g["correlation"],
    }


def otsu_fixture():
    """A blurred ball with a ramp: keep in step with `otsu_fixture` in golden.rs."""
    z, y, x = grid((32, 32, 32))
    v = np.exp(-((z - 15.0) ** 2 + (y - 17.0) ** 2 + (x - 14.0) ** 2) / 60.0) + 0.002 * x
    v = v.astype(np.float32)
    v = v / v.max()
    t = float(threshold_otsu(v, nbins=256))
    return {"blurred_ball": {"threshold": t, "foreground": int((v > t).sum())}}


def main():
    out = {
        "generator": "shape/tests/golden/make_golden.py",
        "volumes": {k: features_3d(v) for k, v in volumes().items()},
        "images": {k: features_2d(m, i) for k, (m, i) in images().items()},
        "otsu": otsu_fixture(),
    }
    json.dump(out, sys.stdout, indent=1, sort_keys=True)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
