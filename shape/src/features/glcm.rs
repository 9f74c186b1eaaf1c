//! Grey-level co-occurrence statistics of the image inside a mask.
//!
//! scikit-image's `graycomatrix` + `graycoprops` build a 256 x 256 matrix per angle; with a
//! symmetric, normalised matrix every property used here is a mean over the co-occurring pairs,
//! so they are computed straight from the pairs (no matrix, well under a millisecond). Only pairs
//! whose two pixels are both in the mask count: the background would otherwise dominate.

/// GLCM properties averaged over the angles 0, 45, 90 and 135 degrees at distance 1.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Glcm {
    pub dissimilarity: f64,
    pub contrast: f64,
    pub homogeneity: f64,
    pub correlation: f64,
}

/// (row, col) offsets of scikit-image's angles 0, pi/4, pi/2, 3pi/4 at distance 1.
const OFFSETS: [(isize, isize); 4] = [(0, 1), (1, 1), (1, 0), (1, -1)];

/// Properties of the co-occurrences of `image` grey levels between mask pixels. Angles without
/// any pair are left out of the average; with no pair at all every property is 0.
pub fn glcm(image: &[u8], mask: &[bool], h: usize, w: usize) -> Glcm {
    let mut out = Glcm::default();
    let mut angles = 0;
    for (dr, dc) in OFFSETS {
        let mut pairs: Vec<(f64, f64)> = Vec::new();
        for r in 0..h {
            for c in 0..w {
                let (r2, c2) = (r as isize + dr, c as isize + dc);
                if r2 < 0 || c2 < 0 || r2 >= h as isize || c2 >= w as isize {
                    continue;
                }
                let (i, j) = (r * w + c, r2 as usize * w + c2 as usize);
                if mask[i] && mask[j] {
                    pairs.push((image[i] as f64, image[j] as f64));
                }
            }
        }
        if pairs.is_empty() {
            continue;
        }
        angles += 1;
        let n = pairs.len() as f64;
        let mut s = Glcm::default();
        // The symmetric matrix holds (a, b) and (b, a): both levels share one mean and variance.
        let mean = pairs.iter().map(|(a, b)| a + b).sum::<f64>() / (2.0 * n);
        let (mut var, mut cov) = (0.0, 0.0);
        for &(a, b) in &pairs {
            let d = a - b;
            s.dissimilarity += d.abs();
            s.contrast += d * d;
            s.homogeneity += 1.0 / (1.0 + d * d);
            var += (a - mean).powi(2) + (b - mean).powi(2);
            cov += (a - mean) * (b - mean);
        }
        let (var, cov) = (var / (2.0 * n), cov / n);
        out.dissimilarity += s.dissimilarity / n;
        out.contrast += s.contrast / n;
        out.homogeneity += s.homogeneity / n;
        // scikit-image's convention for a constant image: correlation 1.
        out.correlation += if var.sqrt() < 1e-15 { 1.0 } else { cov / var };
    }
    if angles > 0 {
        let k = angles as f64;
        out.dissimilarity /= k;
        out.contrast /= k;
        out.homogeneity /= k;
        out.correlation /= k;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stripes_have_known_statistics() {
        // Vertical stripes 0/10: horizontal pairs always differ by 10, vertical never.
        let (h, w) = (4, 4);
        let image: Vec<u8> = (0..16).map(|i| if i % 2 == 0 { 0 } else { 10 }).collect();
        let mask = vec![true; 16];
        let g = glcm(&image, &mask, h, w);
        // Angles 0, 45 and 135 pair different stripes, 90 the same stripe.
        assert!((g.dissimilarity - 7.5).abs() < 1e-12, "{g:?}");
        assert!((g.contrast - 75.0).abs() < 1e-12, "{g:?}");
        assert!((g.correlation - (-3.0 + 1.0) / 4.0).abs() < 1e-12, "{g:?}");
        let none = glcm(&image, &[false; 16], h, w);
        assert_eq!(none, Glcm::default());
    }
}
