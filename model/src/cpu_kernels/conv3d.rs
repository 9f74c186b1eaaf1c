//! 3D convolution on the CPU as one GEMM per tile of output rows, written for this network's
//! shapes because Burn's Flex convolution spends most of its time outside the multiply.
//!
//! Measured on the 2-core AMD EPYC dev machine (perf, `dispr-64` forward): Flex's conv3d first
//! copies the input to channels-last, builds im2col tiles of 512 positions as [positions x
//! C*27], multiplies `weights [Co x C*27] x tile^T` (so the GEMM repacks the big operand on
//! every call: 12% of the forward in `pack_operands`), then scatters the result to
//! channels-first. Here the im2col tile is built straight from the channels-first input as
//! [C*27 rows x positions] (rows of W contiguous values, copied with their zero padding), and the
//! GEMM is posed transposed, `out^T [positions x Co] = tile^T x W^T`, so that:
//! - the big operand (the tile) is read in place: its columns are contiguous, which is the layout
//!   gemm's microkernel consumes without packing;
//! - only the small weight matrix is packed;
//! - the result lands directly in the channels-first output (positions contiguous per channel),
//!   with the bias written first and accumulated onto.
//!
//! The multiply is the `gemm` crate's (the one Burn's Flex backend uses); tiles run in parallel on
//! rayon's pool, each thread reusing one tile buffer.

use super::{SendPtr, with_scratch};
use rayon::prelude::*;

/// A convolution's geometry: input `[batch, cin, d, h, w]`, weights `[cout, cin, kd, kh, kw]`,
/// symmetric zero padding, no dilation, one group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conv3dShape {
    pub batch: usize,
    pub cin: usize,
    pub cout: usize,
    pub input: [usize; 3],
    pub kernel: [usize; 3],
    pub stride: [usize; 3],
    pub padding: [usize; 3],
}

impl Conv3dShape {
    /// Output extent along each axis.
    pub fn output(&self) -> [usize; 3] {
        std::array::from_fn(|i| (self.input[i] + 2 * self.padding[i] - self.kernel[i]) / self.stride[i] + 1)
    }

    /// Rows of the im2col matrix: one per input channel and kernel offset.
    fn taps(&self) -> usize {
        self.cin * self.kernel.iter().product::<usize>()
    }

    /// A 1x1x1 kernel with stride 1: the input itself is the im2col matrix.
    fn is_pointwise(&self) -> bool {
        self.kernel == [1, 1, 1] && self.stride == [1, 1, 1] && self.padding == [0, 0, 0]
    }

    /// Whether the geometry is valid: positive sizes and a kernel that fits the padded input.
    pub fn is_valid(&self) -> bool {
        let positive =
            [self.batch, self.cin, self.cout].iter().chain(&self.input).chain(&self.stride).all(|&v| v > 0)
                && self.kernel.iter().all(|&k| k > 0);
        positive && (0..3).all(|i| self.input[i] + 2 * self.padding[i] >= self.kernel[i])
    }
}

/// Bytes of one thread's tile buffer to aim for: big enough for long GEMM panels, small enough
/// to stay in the last-level cache with the other thread's.
const TILE_BYTES: usize = 4 << 20;

/// `out = conv(x, weight) + bias`, all channels-first and contiguous.
/// `x`: batch * cin * d*h*w values; `weight`: cout * cin * kd*kh*kw; `bias`: cout.
pub fn conv3d(shape: &Conv3dShape, x: &[f32], weight: &[f32], bias: Option<&[f32]>) -> Vec<f32> {
    let [od, oh, ow] = shape.output();
    let spatial_in: usize = shape.input.iter().product();
    let spatial = od * oh * ow;
    let taps = shape.taps();
    assert!(shape.is_valid(), "conv3d: invalid geometry {shape:?}");
    assert_eq!(x.len(), shape.batch * shape.cin * spatial_in, "conv3d: input length");
    assert_eq!(weight.len(), shape.cout * taps, "conv3d: weight length");

    let mut out = vec![0f32; shape.batch * shape.cout * spatial];
    // Output rows (one (z, y) pair each, `ow` positions) per tile; a multiple of 2 keeps the
    // tile a multiple of gemm's 16-float panels even at the 8-wide level.
    let rows_total = od * oh;
    let rows = if shape.is_pointwise() {
        (8192 / ow).max(1)
    } else {
        (TILE_BYTES / (4 * taps * ow)).clamp(1, rows_total)
    };
    let rows = if rows > 1 { rows & !1 } else { rows };
    let tiles_per_sample = rows_total.div_ceil(rows);

    // Each task writes only its own tile's columns of every output channel of its sample.
    let out_ptr = SendPtr(out.as_mut_ptr());
    (0..shape.batch * tiles_per_sample).into_par_iter().for_each(|task| {
        with_scratch(|col| {
            let (b, t) = (task / tiles_per_sample, task % tiles_per_sample);
            let row0 = t * rows;
            let nrows = rows.min(rows_total - row0);
            let len = nrows * ow;
            let start = row0 * ow;
            let xb = &x[b * shape.cin * spatial_in..(b + 1) * shape.cin * spatial_in];
            // The tile's im2col matrix, column-major [len x taps] with leading dimension `ld`;
            // pointwise kernels read the input in place.
            let (lhs, ld): (*const f32, usize) = if shape.is_pointwise() {
                (xb[start..].as_ptr(), spatial_in)
            } else {
                // +16: a leading dimension that is not a large power of two avoids cache-set
                // conflicts between the 16 columns a microkernel step reads.
                let ld = len + 16;
                col.resize(ld * taps, 0.0);
                im2col(shape, xb, row0, nrows, [oh, ow], ld, col);
                (col.as_ptr(), ld)
            };
            // SAFETY: the tasks' output ranges [b][co][start..start+len] are disjoint, and `out`
            // outlives the parallel loop.
            let dst = unsafe { out_ptr.get().add(b * shape.cout * spatial + start) };
            for co in 0..shape.cout {
                let value = bias.map_or(0.0, |bias| bias[co]);
                // SAFETY: in bounds of this task's range of channel `co`.
                unsafe { std::slice::from_raw_parts_mut(dst.add(co * spatial), len) }.fill(value);
            }
            // SAFETY: lhs is [len x taps] with row stride 1 and column stride ld inside `col` (or the
            // input); rhs = weight^T is [taps x cout] with row stride 1 and column stride taps; dst is
            // [len x cout] with row stride 1 and column stride `spatial` inside `out`.
            unsafe {
                gemm::gemm(
                    len,
                    shape.cout,
                    taps,
                    dst,
                    spatial as isize,
                    1,
                    true,
                    lhs,
                    ld as isize,
                    1,
                    weight.as_ptr(),
                    taps as isize,
                    1,
                    1.0,
                    1.0,
                    false,
                    false,
                    false,
                    gemm::Parallelism::None,
                );
            }
        })
    });
    out
}

/// Writes the im2col rows of output rows `row0..row0 + nrows` into `col`: row (channel, tap) at
/// `col[(c * taps_per_channel + tap) * ld..]`, one value per output position of the tile, zero
/// where the kernel reaches into the padding.
fn im2col(
    shape: &Conv3dShape,
    xb: &[f32],
    row0: usize,
    nrows: usize,
    [oh, ow]: [usize; 2],
    ld: usize,
    col: &mut [f32],
) {
    let [d, h, w] = shape.input;
    let [kd, kh, kw] = shape.kernel;
    let [sd, sh, sw] = shape.stride;
    let [pd, ph, pw] = shape.padding;
    let mut k = 0;
    for c in 0..shape.cin {
        let xc = &xb[c * d * h * w..(c + 1) * d * h * w];
        for dz in 0..kd {
            for dy in 0..kh {
                for dx in 0..kw {
                    let dst_row = &mut col[k * ld..k * ld + nrows * ow];
                    k += 1;
                    for r in 0..nrows {
                        let (z, y) = ((row0 + r) / oh, (row0 + r) % oh);
                        let dst = &mut dst_row[r * ow..(r + 1) * ow];
                        let (iz, iy) =
                            ((z * sd + dz) as isize - pd as isize, (y * sh + dy) as isize - ph as isize);
                        if iz < 0 || iz >= d as isize || iy < 0 || iy >= h as isize {
                            dst.fill(0.0);
                            continue;
                        }
                        let src = &xc[(iz as usize * h + iy as usize) * w..][..w];
                        copy_row(dst, src, dx, sw, pw);
                    }
                }
            }
        }
    }
}

/// `dst[x] = src[x * stride + dx - pad]`, zero outside `src`.
#[inline]
fn copy_row(dst: &mut [f32], src: &[f32], dx: usize, stride: usize, pad: usize) {
    let w = src.len() as isize;
    if stride == 1 {
        // The valid range is one contiguous run: zeros, a copy, zeros.
        let shift = dx as isize - pad as isize;
        let lo = (-shift).clamp(0, dst.len() as isize) as usize;
        let hi = (w - shift).clamp(lo as isize, dst.len() as isize) as usize;
        dst[..lo].fill(0.0);
        dst[lo..hi].copy_from_slice(&src[(lo as isize + shift) as usize..(hi as isize + shift) as usize]);
        dst[hi..].fill(0.0);
        return;
    }
    for (x, v) in dst.iter_mut().enumerate() {
        let i = (x * stride + dx) as isize - pad as isize;
        *v = if (0..w).contains(&i) { src[i as usize] } else { 0.0 };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The definition, in f64.
    fn naive(s: &Conv3dShape, x: &[f32], wt: &[f32], bias: &[f32]) -> Vec<f64> {
        let [od, oh, ow] = s.output();
        let [d, h, w] = s.input;
        let [kd, kh, kw] = s.kernel;
        let mut out = vec![0.0; s.batch * s.cout * od * oh * ow];
        for b in 0..s.batch {
            for co in 0..s.cout {
                for z in 0..od {
                    for y in 0..oh {
                        for xx in 0..ow {
                            let mut acc = bias[co] as f64;
                            for c in 0..s.cin {
                                for dz in 0..kd {
                                    for dy in 0..kh {
                                        for dx in 0..kw {
                                            let iz = (z * s.stride[0] + dz) as isize - s.padding[0] as isize;
                                            let iy = (y * s.stride[1] + dy) as isize - s.padding[1] as isize;
                                            let ix = (xx * s.stride[2] + dx) as isize - s.padding[2] as isize;
                                            if iz < 0
                                                || iy < 0
                                                || ix < 0
                                                || iz >= d as isize
                                                || iy >= h as isize
                                                || ix >= w as isize
                                            {
                                                continue;
                                            }
                                            let xi = (((b * s.cin + c) * d + iz as usize) * h + iy as usize)
                                                * w
                                                + ix as usize;
                                            let wi = (((co * s.cin + c) * kd + dz) * kh + dy) * kw + dx;
                                            acc += x[xi] as f64 * wt[wi] as f64;
                                        }
                                    }
                                }
                            }
                            out[(((b * s.cout + co) * od + z) * oh + y) * ow + xx] = acc;
                        }
                    }
                }
            }
        }
        out
    }

    fn values(n: usize, seed: u64) -> Vec<f32> {
        let mut h = seed;
        (0..n)
            .map(|_| {
                h = h.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                ((h >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
            })
            .collect()
    }

    #[test]
    fn every_geometry_of_the_network_equals_the_definition() {
        let cases = [
            // 3x3x3, stride 1, padding 1 (the res blocks), odd sizes and a batch of 2.
            Conv3dShape {
                batch: 2,
                cin: 3,
                cout: 5,
                input: [5, 6, 7],
                kernel: [3; 3],
                stride: [1; 3],
                padding: [1; 3],
            },
            // The downsampling: stride 2 in H and W only, and in all three.
            Conv3dShape {
                batch: 1,
                cin: 4,
                cout: 6,
                input: [4, 8, 9],
                kernel: [3; 3],
                stride: [1, 2, 2],
                padding: [1; 3],
            },
            Conv3dShape {
                batch: 2,
                cin: 2,
                cout: 3,
                input: [6, 6, 6],
                kernel: [3; 3],
                stride: [2; 3],
                padding: [1; 3],
            },
            // The 1x1x1 skip projection.
            Conv3dShape {
                batch: 2,
                cin: 7,
                cout: 4,
                input: [3, 4, 5],
                kernel: [1; 3],
                stride: [1; 3],
                padding: [0; 3],
            },
            // No padding, and more output channels than gemm's panel.
            Conv3dShape {
                batch: 1,
                cin: 2,
                cout: 37,
                input: [4, 4, 4],
                kernel: [3; 3],
                stride: [1; 3],
                padding: [0; 3],
            },
        ];
        for s in cases {
            let spatial: usize = s.input.iter().product();
            let x = values(s.batch * s.cin * spatial, 1);
            let wt = values(s.cout * s.cin * s.kernel.iter().product::<usize>(), 2);
            let bias = values(s.cout, 3);
            let got = conv3d(&s, &x, &wt, Some(&bias));
            let want = naive(&s, &x, &wt, &bias);
            assert_eq!(got.len(), want.len(), "{s:?}");
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                assert!((*g as f64 - w).abs() < 1e-5 * (1.0 + w.abs()), "{s:?} at {i}: {g} vs {w}");
            }
        }
    }

    #[test]
    fn a_tile_smaller_than_the_volume_gives_the_same_result() {
        // Enough taps that a tile holds only a few rows, so tiles and their edges are exercised.
        let s = Conv3dShape {
            batch: 1,
            cin: 300,
            cout: 3,
            input: [3, 9, 40],
            kernel: [3; 3],
            stride: [1; 3],
            padding: [1; 3],
        };
        let spatial: usize = s.input.iter().product();
        let x = values(s.cin * spatial, 4);
        let wt = values(s.cout * s.cin * 27, 5);
        let got = conv3d(&s, &x, &wt, None);
        let want = naive(&s, &x, &wt, &[0.0; 3]);
        for (g, w) in got.iter().zip(&want) {
            assert!((*g as f64 - w).abs() < 1e-4 * (1.0 + w.abs()), "{g} vs {w}");
        }
    }
}
