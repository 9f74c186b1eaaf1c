//! 2D features of a cell's inputs: the segmentation mask's shape and the image inside it.

use super::glcm::glcm;
use super::hull::{convex_area_2d, row_extremes_2d};
use super::moments::Moments;
use super::{FeatureError, check_len, finite_or};
use dispr_proto::records::FeatureMap;
use std::f64::consts::{PI, SQRT_2};

/// Mask values at or above this (of 255) are inside the cell: the mask is anti-aliased.
pub const MASK_THRESHOLD: u8 = 128;

/// The 2D features of [`super::FEATURES_2D`] for a `h` x `w` image and its mask (row-major,
/// 0..255; the mask is thresholded at [`MASK_THRESHOLD`] and taken as one region, as
/// scikit-image's `regionprops` on `mask >= 128`).
///
/// Fails with [`FeatureError::EmptyShape`] when the mask has no pixel at or above the threshold.
pub fn features_2d(image: &[u8], mask: &[u8], h: usize, w: usize) -> Result<FeatureMap, FeatureError> {
    check_len("the 2D image", image.len(), &[h, w])?;
    check_len("the 2D mask", mask.len(), &[h, w])?;
    let m: Vec<bool> = mask.iter().map(|&v| v >= MASK_THRESHOLD).collect();

    let mut moments = Moments::<2>::default();
    let (mut rmin, mut rmax, mut cmin, mut cmax) = (usize::MAX, 0, usize::MAX, 0);
    for (i, _) in m.iter().enumerate().filter(|(_, v)| **v) {
        let (r, c) = (i / w, i % w);
        moments.add([r, c]);
        (rmin, rmax, cmin, cmax) = (rmin.min(r), rmax.max(r), cmin.min(c), cmax.max(c));
    }
    if moments.count == 0 {
        return Err(FeatureError::EmptyShape { what: "2D mask" });
    }
    let area = moments.count as f64;

    // Boundary: mask pixels with a 4-neighbour outside the mask or the image (scikit-image's
    // `perimeter`: the mask minus its erosion by a cross with background beyond the border).
    let inside = |r: isize, c: isize| {
        r >= 0 && c >= 0 && (r as usize) < h && (c as usize) < w && m[r as usize * w + c as usize]
    };
    let border: Vec<bool> = (0..h * w)
        .map(|i| {
            let (r, c) = ((i / w) as isize, (i % w) as isize);
            m[i] && !(inside(r - 1, c) && inside(r + 1, c) && inside(r, c - 1) && inside(r, c + 1))
        })
        .collect();
    let is_border = |r: isize, c: isize| {
        r >= 0 && c >= 0 && (r as usize) < h && (c as usize) < w && border[r as usize * w + c as usize]
    };
    let centroid = moments.centroid();
    let (mut perimeter, mut boundary_length) = (0.0, 0usize);
    let mut radii = Vec::new();
    for i in (0..h * w).filter(|&i| border[i]) {
        let (r, c) = ((i / w) as isize, (i % w) as isize);
        // scikit-image convolves the border image with [[10,2,10],[2,1,2],[10,2,10]] and weighs
        // each border pixel by its code: straight runs 1, diagonal steps sqrt 2, corners (1+sqrt 2)/2.
        let sides = [(r - 1, c), (r + 1, c), (r, c - 1), (r, c + 1)]
            .iter()
            .filter(|&&(a, b)| is_border(a, b))
            .count();
        let diags = [(r - 1, c - 1), (r - 1, c + 1), (r + 1, c - 1), (r + 1, c + 1)]
            .iter()
            .filter(|&&(a, b)| is_border(a, b))
            .count();
        perimeter += match 1 + 2 * sides + 10 * diags {
            5 | 7 | 15 | 17 | 25 | 27 => 1.0,
            21 | 33 => SQRT_2,
            13 | 23 => (1.0 + SQRT_2) / 2.0,
            _ => 0.0,
        };
        boundary_length += 1;
        radii.push(((r as f64 - centroid[0]).powi(2) + (c as f64 - centroid[1]).powi(2)).sqrt());
    }
    let (radius_mean, radius_std) = mean_std(&radii);

    let convex_area = convex_area_2d(&row_extremes_2d(&m, h, w), h, w) as f64;
    let [l1, l2] = moments.covariance_eigenvalues();
    let bbox_area = ((rmax - rmin + 1) * (cmax - cmin + 1)) as f64;

    let inside_values: Vec<f64> = (0..h * w).filter(|&i| m[i]).map(|i| image[i] as f64).collect();
    let (intensity_mean, intensity_std) = mean_std(&inside_values);
    let intensity_max = inside_values.iter().copied().fold(0.0, f64::max);
    let g = glcm(image, &m, h, w);

    let values = [
        ("area", area),
        ("perimeter", perimeter),
        ("convex_area", convex_area),
        ("solidity", area / convex_area.max(1.0)),
        ("eccentricity", if l1 > 0.0 { (1.0 - l2 / l1).max(0.0).sqrt() } else { 0.0 }),
        ("axis_major_length", 4.0 * l1.sqrt()),
        ("axis_minor_length", 4.0 * l2.sqrt()),
        ("equivalent_diameter", (4.0 * area / PI).sqrt()),
        ("extent", area / bbox_area),
        ("circularity", if perimeter > 0.0 { 4.0 * PI * area / (perimeter * perimeter) } else { 0.0 }),
        ("boundary_length", boundary_length as f64),
        ("boundary_roughness", if radius_mean > 0.0 { radius_std / radius_mean } else { 0.0 }),
        ("intensity_mean", intensity_mean),
        ("intensity_std", intensity_std),
        ("intensity_max", intensity_max),
        ("glcm_dissimilarity", g.dissimilarity),
        ("glcm_contrast", g.contrast),
        ("glcm_homogeneity", g.homogeneity),
        ("glcm_correlation", g.correlation),
    ];
    Ok(values.into_iter().map(|(k, v)| (k.to_string(), finite_or(v, 0.0))).collect())
}

/// Mean and population standard deviation; (0, 0) for no values.
pub(super) fn mean_std(v: &[f64]) -> (f64, f64) {
    if v.is_empty() {
        return (0.0, 0.0);
    }
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n;
    (mean, var.sqrt())
}

#[cfg(test)]
mod tests {
    use super::super::FEATURES_2D;
    use super::*;

    fn disc(h: usize, w: usize, r: f64) -> Vec<u8> {
        let (cy, cx) = (h as f64 / 2.0, w as f64 / 2.0);
        (0..h * w)
            .map(|i| {
                let (y, x) = ((i / w) as f64 + 0.5 - cy, (i % w) as f64 + 0.5 - cx);
                if y * y + x * x <= r * r { 255 } else { 0 }
            })
            .collect()
    }

    #[test]
    fn a_disc_is_round_convex_and_has_every_feature() {
        let mask = disc(64, 64, 20.0);
        let image: Vec<u8> = (0..64 * 64).map(|i| (i % 7 * 20) as u8).collect();
        let f = features_2d(&image, &mask, 64, 64).unwrap();
        let names: Vec<_> = FEATURES_2D.iter().map(|d| d.name).collect();
        assert_eq!(
            f.keys().map(String::as_str).collect::<std::collections::BTreeSet<_>>(),
            names.into_iter().collect()
        );
        assert!((f["area"] - PI * 400.0).abs() / (PI * 400.0) < 0.02, "{}", f["area"]);
        assert!(f["solidity"] > 0.97 && f["solidity"] <= 1.0, "{}", f["solidity"]);
        assert!(f["eccentricity"] < 0.1, "{}", f["eccentricity"]);
        assert!((f["axis_major_length"] - 40.0).abs() < 1.0, "{}", f["axis_major_length"]);
        assert!(f["circularity"] > 0.85 && f["circularity"] < 1.1, "{}", f["circularity"]);
        assert!(f["boundary_roughness"] < 0.05, "{}", f["boundary_roughness"]);
        assert!(f.values().all(|v| v.is_finite()));
    }

    #[test]
    fn degenerate_masks_are_defined_or_refused() {
        let image = vec![100u8; 16];
        let err = features_2d(&image, &[0u8; 16], 4, 4).unwrap_err();
        assert!(err.to_string().contains("empty shape"), "{err}");
        let mut one = [0u8; 16];
        one[5] = 255;
        let f = features_2d(&image, &one, 4, 4).unwrap();
        assert_eq!((f["area"], f["perimeter"], f["circularity"], f["eccentricity"]), (1.0, 0.0, 0.0, 0.0));
        assert_eq!((f["glcm_correlation"], f["intensity_mean"]), (0.0, 100.0));
        // The whole image, touching every border.
        let f = features_2d(&image, &[255u8; 16], 4, 4).unwrap();
        assert_eq!((f["area"], f["convex_area"], f["extent"], f["glcm_correlation"]), (16.0, 16.0, 1.0, 1.0));
        assert!(features_2d(&image, &[255u8; 15], 4, 4).unwrap_err().to_string().contains("need 16"));
    }
}
