//! Otsu binarisation of a sampled volume, as the reference study does it: the volume is divided
//! by its maximum, then thresholded with Otsu's method on a 256-bin histogram.
//!
//! The histogram follows scikit-image's `threshold_otsu(x, nbins=256)`: 256 equal bins spanning
//! the data's own range [min, max], the threshold being the centre of the bin that maximises the
//! between-class variance, and foreground being `x > threshold`. A golden test checks the
//! threshold against scikit-image.

/// Number of histogram bins, as the reference study.
pub const BINS: usize = 256;

/// Otsu's threshold of `values` (any scale). `None` when the values are all equal (or there
/// are none, or they are not finite): no threshold separates two classes then.
pub fn threshold(values: &[f32]) -> Option<f32> {
    let (mut lo, mut hi) = (f32::INFINITY, f32::NEG_INFINITY);
    for &v in values {
        if !v.is_finite() {
            return None;
        }
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if values.is_empty() || lo >= hi {
        return None;
    }
    // Bins as numpy.histogram(range=(lo, hi)): the last bin is closed on the right.
    let width = (hi - lo) as f64 / BINS as f64;
    let mut hist = [0u64; BINS];
    for &v in values {
        let b = (((v - lo) as f64 / width) as usize).min(BINS - 1);
        hist[b] += 1;
    }
    let centre = |b: usize| lo as f64 + width * (b as f64 + 0.5);

    // Between-class variance for a split after bin b, with cumulative weights and means, as
    // scikit-image computes it (weight1 from the left, weight2 from the right).
    let total: u64 = hist.iter().sum();
    let sum_all: f64 = (0..BINS).map(|b| hist[b] as f64 * centre(b)).sum();
    let (mut w1, mut s1) = (0u64, 0.0f64);
    let mut best = (f64::NEG_INFINITY, 0usize);
    for (b, &count) in hist.iter().enumerate().take(BINS - 1) {
        w1 += count;
        s1 += count as f64 * centre(b);
        let w2 = total - w1;
        if w1 == 0 || w2 == 0 {
            continue;
        }
        let m1 = s1 / w1 as f64;
        let m2 = (sum_all - s1) / w2 as f64;
        let between = w1 as f64 * w2 as f64 * (m1 - m2) * (m1 - m2);
        if between > best.0 {
            best = (between, b);
        }
    }
    Some(centre(best.1) as f32)
}

/// Binarises a sampled volume: `x / max(x)`, Otsu threshold, foreground where above it.
///
/// A volume whose maximum is not positive, or that is constant, has no foreground (all false):
/// the features then report an empty shape rather than inventing one.
pub fn binarise(volume: &[f32]) -> Vec<bool> {
    let max = volume.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    // NaN compares false: `max > 0.0` also refuses a NaN maximum.
    if !max.is_finite() || max.partial_cmp(&0.0) != Some(std::cmp::Ordering::Greater) {
        return vec![false; volume.len()];
    }
    let scaled: Vec<f32> = volume.iter().map(|&v| v / max).collect();
    match threshold(&scaled) {
        Some(t) => scaled.iter().map(|&v| v > t).collect(),
        None => vec![false; volume.len()],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_two_clear_populations() {
        let mut v = vec![0.1f32; 100];
        v.extend(vec![0.9f32; 50]);
        let t = threshold(&v).unwrap();
        assert!(t > 0.1 && t < 0.9, "{t}");
        let b = binarise(&v);
        assert_eq!(b.iter().filter(|&&x| x).count(), 50);
    }

    #[test]
    fn constant_or_non_positive_volumes_have_no_foreground() {
        assert_eq!(threshold(&[0.5; 10]), None);
        assert!(binarise(&[0.5; 10]).iter().all(|&x| !x));
        assert!(binarise(&[0.0; 10]).iter().all(|&x| !x));
        assert!(binarise(&[-1.0, -0.5]).iter().all(|&x| !x));
        assert!(binarise(&[]).is_empty());
        assert_eq!(threshold(&[0.0, f32::NAN]), None);
    }

    #[test]
    fn is_scale_invariant_after_division_by_max() {
        let v: Vec<f32> = (0..1000).map(|i| ((i * 37) % 101) as f32 / 100.0).collect();
        let w: Vec<f32> = v.iter().map(|x| x * 7.5).collect();
        assert_eq!(binarise(&v), binarise(&w));
    }
}
