//! Conversions between the dataset's fixed sizes (`dispr_shape::volume::SIDE`: 64x64 images,
//! 64^3 volumes, uint8) and a configuration's internal resolution (the binarisation, Otsu on
//! x / max, is `dispr_shape::otsu`).

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
}
