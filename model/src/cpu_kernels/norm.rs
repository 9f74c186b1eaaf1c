//! GroupNorm fused with what follows it in the network, in two passes over the data where
//! Burn's composite GroupNorm, the time-embedding add or scale-shift and the SiLU made about ten
//! (each a full-size temporary: at 64^3 x 32 channels, 32 MiB apiece).

use super::simd::{dispatch, silu};
use rayon::prelude::*;

/// What surrounds one GroupNorm: an optional per-(sample, channel) offset added before it
/// (`norm(h + emb)`), an optional per-(sample, channel) scale and shift after its affine map
/// (`norm(h) * (1 + scale) + shift`), and whether a SiLU follows.
pub struct NormOps<'a> {
    pub groups: usize,
    pub epsilon: f64,
    /// gamma and beta, one per channel.
    pub affine: Option<(&'a [f32], &'a [f32])>,
    /// [batch * channels], added to the input before the statistics.
    pub add_before: Option<&'a [f32]>,
    /// ([batch * channels] scale, [batch * channels] shift) after the affine map.
    pub scale_shift: Option<(&'a [f32], &'a [f32])>,
    pub silu: bool,
}

/// `x`: [batch, channels, spatial], contiguous. Returns the same shape.
pub fn group_norm(x: &[f32], batch: usize, channels: usize, ops: &NormOps<'_>) -> Vec<f32> {
    let spatial = x.len() / (batch * channels).max(1);
    assert_eq!(x.len(), batch * channels * spatial, "group_norm: input length");
    assert!(ops.groups > 0 && channels.is_multiple_of(ops.groups), "group_norm: groups must divide channels");
    let per_group = channels / ops.groups;
    let mut out = vec![0f32; x.len()];
    // One task per (sample, group): its channels are one contiguous block of the input.
    out.par_chunks_mut(per_group * spatial).enumerate().for_each(|(task, out)| {
        let (b, g) = (task / ops.groups, task % ops.groups);
        let block = &x[task * per_group * spatial..(task + 1) * per_group * spatial];
        let channel = |i: usize| b * channels + g * per_group + i;
        let offset = |i: usize| ops.add_before.map_or(0.0, |a| a[channel(i)]);
        // Statistics in f64, two passes (mean, then squared deviations) as PyTorch's: no
        // cancellation however large the mean.
        let mut sum = 0f64;
        for i in 0..per_group {
            sum += sum_f32(&block[i * spatial..(i + 1) * spatial]) + offset(i) as f64 * spatial as f64;
        }
        let n = (per_group * spatial) as f64;
        let mean = sum / n;
        let mut sq = 0f64;
        for i in 0..per_group {
            sq +=
                squared_deviations(&block[i * spatial..(i + 1) * spatial], (mean - offset(i) as f64) as f32);
        }
        let inv_std = 1.0 / (sq / n + ops.epsilon).sqrt();
        for i in 0..per_group {
            let c = g * per_group + i;
            let (gamma, beta) = ops.affine.map_or((1.0, 0.0), |(w, b)| (w[c], b[c]));
            // y = ((x + offset - mean) * inv_std * gamma + beta) * (1 + scale) + shift
            //   = (x - centre) * a + k, the centre subtracted first (in f32, exactly enough).
            let (scale, shift) = ops.scale_shift.map_or((0.0, 0.0), |(s, t)| (s[channel(i)], t[channel(i)]));
            let centre = (mean - offset(i) as f64) as f32;
            let a = (inv_std * gamma as f64 * (1.0 + scale as f64)) as f32;
            let k = (beta as f64 * (1.0 + scale as f64) + shift as f64) as f32;
            let range = i * spatial..(i + 1) * spatial;
            affine_map(&block[range.clone()], &mut out[range], centre, a, k, ops.silu);
        }
    });
    out
}

dispatch! {
    fn sum_f32(values: &[f32]) -> f64 {
        // Eight f32 lanes summed in blocks of 1024, each block's total added in f64.
        let mut total = 0f64;
        for block in values.chunks(1024) {
            let mut lanes = [0f32; 8];
            let mut it = block.chunks_exact(8);
            for c in &mut it {
                for (lane, &v) in lanes.iter_mut().zip(c) {
                    *lane += v;
                }
            }
            total += lanes.iter().map(|&v| v as f64).sum::<f64>() + it.remainder().iter().map(|&v| v as f64).sum::<f64>();
        }
        total
    }
}

dispatch! {
    fn squared_deviations(values: &[f32], mean: f32) -> f64 {
        let mut total = 0f64;
        for block in values.chunks(1024) {
            let mut lanes = [0f32; 8];
            let mut it = block.chunks_exact(8);
            for c in &mut it {
                for (lane, &v) in lanes.iter_mut().zip(c) {
                    *lane += (v - mean) * (v - mean);
                }
            }
            total += lanes.iter().map(|&v| v as f64).sum::<f64>()
                + it.remainder().iter().map(|&v| ((v - mean) as f64).powi(2)).sum::<f64>();
        }
        total
    }
}

dispatch! {
    fn affine_map(src: &[f32], dst: &mut [f32], centre: f32, a: f32, k: f32, then_silu: bool) {
        if then_silu {
            for (d, &s) in dst.iter_mut().zip(src) {
                *d = silu((s - centre) * a + k);
            }
        } else {
            for (d, &s) in dst.iter_mut().zip(src) {
                *d = (s - centre) * a + k;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fused_norm_equals_the_composition() {
        let (batch, channels, spatial, groups) = (2, 6, 50, 3);
        let x: Vec<f32> =
            (0..batch * channels * spatial).map(|i| ((i * 37 % 101) as f32 - 40.0) * 0.3 + 100.0).collect();
        let gamma: Vec<f32> = (0..channels).map(|c| 0.5 + c as f32 * 0.1).collect();
        let beta: Vec<f32> = (0..channels).map(|c| c as f32 * -0.2).collect();
        let add: Vec<f32> = (0..batch * channels).map(|i| i as f32 * 0.7).collect();
        let scale: Vec<f32> = (0..batch * channels).map(|i| i as f32 * 0.05 - 0.3).collect();
        let shift: Vec<f32> = (0..batch * channels).map(|i| 1.0 - i as f32 * 0.1).collect();
        for (with_add, with_ss, with_silu) in
            [(false, false, true), (true, false, true), (false, true, false), (true, true, true)]
        {
            let ops = NormOps {
                groups,
                epsilon: 1e-5,
                affine: Some((&gamma, &beta)),
                add_before: with_add.then_some(add.as_slice()),
                scale_shift: with_ss.then_some((scale.as_slice(), shift.as_slice())),
                silu: with_silu,
            };
            let got = group_norm(&x, batch, channels, &ops);
            let per = channels / groups;
            for b in 0..batch {
                for g in 0..groups {
                    let val = |c: usize, s: usize| {
                        x[(b * channels + c) * spatial + s] as f64
                            + if with_add { add[b * channels + c] as f64 } else { 0.0 }
                    };
                    let vals: Vec<f64> = (g * per..(g + 1) * per)
                        .flat_map(|c| (0..spatial).map(move |s| (c, s)))
                        .map(|(c, s)| val(c, s))
                        .collect();
                    let mean = vals.iter().sum::<f64>() / vals.len() as f64;
                    let var = vals.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / vals.len() as f64;
                    for c in g * per..(g + 1) * per {
                        for s in 0..spatial {
                            let mut y =
                                (val(c, s) - mean) / (var + 1e-5).sqrt() * gamma[c] as f64 + beta[c] as f64;
                            if with_ss {
                                y = y * (1.0 + scale[b * channels + c] as f64)
                                    + shift[b * channels + c] as f64;
                            }
                            if with_silu {
                                y /= 1.0 + (-y).exp();
                            }
                            let g = got[(b * channels + c) * spatial + s] as f64;
                            assert!((g - y).abs() < 2e-5 * (1.0 + y.abs()), "{g} vs {y}");
                        }
                    }
                }
            }
        }
    }
}
