//! Conversions between the dataset's fixed sizes (64x64 images, 64^3 volumes, uint8) and a
//! configuration's internal resolution, and the reference binarisation (Otsu on x / max).

/// Edge length of the dataset's images and volumes.
pub const SIZE: usize = 64;

/// Averages `factor`^2 blocks of a `n`x`n` image (n = 64). `factor` = 1 copies.
pub fn downsample_2d(img: &[f32], n: usize, factor: usize) -> Vec<f32> {
    let m = n / factor;
    let mut out = vec![0.0; m * m];
    for y in 0..n {
        for x in 0..n {
            out[(y / factor) * m + x / factor] += img[y * n + x];
        }
    }
    let norm = (factor * factor) as f32;
    out.iter_mut().for_each(|v| *v /= norm);
    out
}

/// Averages `factor`^3 blocks of an `n`^3 volume.
pub fn downsample_3d(vol: &[f32], n: usize, factor: usize) -> Vec<f32> {
    let m = n / factor;
    let mut out = vec![0.0; m * m * m];
    for z in 0..n {
        for y in 0..n {
            for x in 0..n {
                out[((z / factor) * m + y / factor) * m + x / factor] += vol[(z * n + y) * n + x];
            }
        }
    }
    let norm = (factor * factor * factor) as f32;
    out.iter_mut().for_each(|v| *v /= norm);
    out
}

/// Trilinear upsampling of an `m`^3 volume by `factor` (PyTorch's `align_corners=False`
/// convention: sample centres map to (i + 0.5) / factor - 0.5, clamped at the borders).
pub fn upsample_3d(vol: &[f32], m: usize, factor: usize) -> Vec<f32> {
    if factor == 1 {
        return vol.to_vec();
    }
    let n = m * factor;
    // Per output coordinate: the two source indices and the weight of the second.
    let axis: Vec<(usize, usize, f32)> = (0..n)
        .map(|i| {
            let src = ((i as f32 + 0.5) / factor as f32 - 0.5).max(0.0);
            let i0 = (src.floor() as usize).min(m - 1);
            let i1 = (i0 + 1).min(m - 1);
            (i0, i1, src - i0 as f32)
        })
        .collect();
    let at = |z: usize, y: usize, x: usize| vol[(z * m + y) * m + x];
    let mut out = Vec::with_capacity(n * n * n);
    for &(z0, z1, wz) in &axis {
        for &(y0, y1, wy) in &axis {
            for &(x0, x1, wx) in &axis {
                let lerp = |a: f32, b: f32, w: f32| a + (b - a) * w;
                let c00 = lerp(at(z0, y0, x0), at(z0, y0, x1), wx);
                let c01 = lerp(at(z0, y1, x0), at(z0, y1, x1), wx);
                let c10 = lerp(at(z1, y0, x0), at(z1, y0, x1), wx);
                let c11 = lerp(at(z1, y1, x0), at(z1, y1, x1), wx);
                out.push(lerp(lerp(c00, c01, wy), lerp(c10, c11, wy), wz));
            }
        }
    }
    out
}

/// Otsu's threshold of values in [0, 1] over 256 bins (the bin centre that maximises the
/// between-class variance). Local stand-in for `dispr_shape::otsu`, which was not there yet
/// when this crate was written; the model crate only needs it for validation IoU.
pub fn otsu_threshold(values: &[f32]) -> f32 {
    let mut hist = [0u64; 256];
    for &v in values {
        hist[((v.clamp(0.0, 1.0) * 255.0).round()) as usize] += 1;
    }
    let total: u64 = hist.iter().sum();
    let sum_all: f64 = hist.iter().enumerate().map(|(i, &c)| i as f64 * c as f64).sum();
    let (mut w0, mut sum0, mut best, mut best_t) = (0u64, 0.0f64, -1.0f64, 0usize);
    for (t, &c) in hist.iter().enumerate() {
        w0 += c;
        sum0 += t as f64 * c as f64;
        let w1 = total - w0;
        if w0 == 0 || w1 == 0 {
            continue;
        }
        let (m0, m1) = (sum0 / w0 as f64, (sum_all - sum0) / w1 as f64);
        let between = w0 as f64 * w1 as f64 * (m0 - m1).powi(2);
        if between > best {
            best = between;
            best_t = t;
        }
    }
    best_t as f32 / 255.0
}

/// Binarises a sampled volume as the reference does: Otsu's threshold on x / max(x).
pub fn binarise(vol: &[f32]) -> Vec<bool> {
    let max = vol.iter().cloned().fold(0.0f32, f32::max);
    if max <= 0.0 {
        return vec![false; vol.len()];
    }
    let scaled: Vec<f32> = vol.iter().map(|&v| (v / max).max(0.0)).collect();
    let t = otsu_threshold(&scaled);
    scaled.iter().map(|&v| v > t).collect()
}

/// Intersection over union of two masks (1 when both are empty).
pub fn iou(a: &[bool], b: &[bool]) -> f64 {
    let (mut inter, mut union) = (0usize, 0usize);
    for (&x, &y) in a.iter().zip(b) {
        inter += (x && y) as usize;
        union += (x || y) as usize;
    }
    if union == 0 { 1.0 } else { inter as f64 / union as f64 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn down_then_up_keeps_constant_volumes_and_sizes() {
        let v = vec![0.25f32; 64 * 64 * 64];
        let d = downsample_3d(&v, 64, 2);
        assert_eq!(d.len(), 32 * 32 * 32);
        let u = upsample_3d(&d, 32, 2);
        assert_eq!(u.len(), v.len());
        assert!(u.iter().all(|&x| (x - 0.25).abs() < 1e-6));
        let img = downsample_2d(&(0..64 * 64).map(|i| (i % 2) as f32).collect::<Vec<_>>(), 64, 2);
        assert!(img.iter().all(|&x| (x - 0.5).abs() < 1e-6));
    }

    #[test]
    fn trilinear_upsampling_interpolates_a_ramp() {
        // A linear ramp along x stays linear inside the volume.
        let m = 4;
        let v: Vec<f32> = (0..m * m * m).map(|i| (i % m) as f32).collect();
        let u = upsample_3d(&v, m, 2);
        let row: Vec<f32> = u[..8].to_vec();
        assert_eq!(row, vec![0.0, 0.25, 0.75, 1.25, 1.75, 2.25, 2.75, 3.0]);
    }

    #[test]
    fn otsu_separates_two_modes_and_iou_counts() {
        let mut v = vec![0.1f32; 100];
        v.extend(vec![0.8f32; 50]);
        let t = otsu_threshold(&v);
        assert!((0.1..0.8).contains(&t), "{t}");
        let b = binarise(&v);
        assert_eq!(b.iter().filter(|&&x| x).count(), 50);
        assert_eq!(iou(&[true, true, false], &[true, false, false]), 0.5);
    }
}
