//! Softmax attention on the CPU in blocks of query rows, never holding the whole score matrix
//! (16,384 tokens at the 16x16 level: 1 GiB per head in fp32).
//!
//! Per block of `rows` queries of one head: the scores `S = q k^T / sqrt(c)` are one GEMM into a
//! per-thread buffer (`rows x n`, 4 MiB at 64 rows and 16,384 tokens), each row's softmax is one
//! fused pass (max, then exp and sum with the vectorised exp), and `S v` is a second GEMM whose
//! rows are divided by their sums at the end. Both GEMMs are posed so that gemm reads the large
//! operands in place: keys transposed once per head, scores and values as they lie. Burn's path
//! made five full passes over the scores with libm's scalar `expf` and a temporary per step.

use super::simd::{dispatch, exp};
use super::{SendPtr, with_scratch};
use rayon::prelude::*;

/// Query rows per block.
const ROWS: usize = 64;

/// `softmax(q k^T / sqrt(c)) v` per head. `q`, `k`, `v`: [heads, n, c] contiguous; returns the
/// same shape.
pub fn attention(q: &[f32], k: &[f32], v: &[f32], heads: usize, n: usize, c: usize) -> Vec<f32> {
    assert!(q.len() == heads * n * c && k.len() == q.len() && v.len() == q.len(), "attention: lengths");
    // k^T per head, [c, n]: the scores' GEMM then reads it with unit row stride.
    let mut kt = vec![0f32; k.len()];
    kt.par_chunks_mut(n * c).zip(k.par_chunks(n * c)).for_each(|(kt, k)| {
        for (j, row) in k.chunks_exact(c).enumerate() {
            for (i, &x) in row.iter().enumerate() {
                kt[i * n + j] = x;
            }
        }
    });
    let mut out = vec![0f32; q.len()];
    let blocks = n.div_ceil(ROWS);
    let scale = 1.0 / (c as f32).sqrt();
    // Each task owns rows [r0, r0 + rows) of one head's output.
    let out_ptr = SendPtr(out.as_mut_ptr());
    (0..heads * blocks).into_par_iter().for_each(|task| {
        with_scratch(|scores| {
            let (h, block) = (task / blocks, task % blocks);
            let r0 = block * ROWS;
            let rows = ROWS.min(n - r0);
            scores.resize(rows * n, 0.0);
            let qh = &q[(h * n + r0) * c..(h * n + r0 + rows) * c];
            let kth = &kt[h * n * c..(h + 1) * n * c];
            let vh = &v[h * n * c..(h + 1) * n * c];
            // S^T [n x rows] = k [n x c] (column-major: kt) x q^T [c x rows]; stored as S [rows x n].
            // SAFETY: the strides describe the slices above and `scores` (rows * n values).
            unsafe {
                gemm::gemm(
                    n,
                    rows,
                    c,
                    scores.as_mut_ptr(),
                    n as isize,
                    1,
                    false,
                    kth.as_ptr(),
                    n as isize,
                    1,
                    qh.as_ptr(),
                    c as isize,
                    1,
                    0.0,
                    scale,
                    false,
                    false,
                    false,
                    gemm::Parallelism::None,
                );
            }
            let mut sums = [0f32; ROWS];
            for (r, row) in scores.chunks_exact_mut(n).enumerate() {
                sums[r] = softmax_numerator(row);
            }
            // O^T [c x rows] = v^T [c x n] x P^T [n x rows], written into out[h][r0..r0 + rows][..c].
            // SAFETY: this task's output rows are its own; v^T has unit row stride, P^T is `scores`.
            let dst = unsafe { out_ptr.get().add((h * n + r0) * c) };
            unsafe {
                gemm::gemm(
                    c,
                    rows,
                    n,
                    dst,
                    c as isize,
                    1,
                    false,
                    vh.as_ptr(),
                    c as isize,
                    1,
                    scores.as_ptr(),
                    n as isize,
                    1,
                    0.0,
                    1.0,
                    false,
                    false,
                    false,
                    gemm::Parallelism::None,
                );
            }
            for (r, &sum) in sums[..rows].iter().enumerate() {
                // SAFETY: row r of this task's rows.
                let row = unsafe { std::slice::from_raw_parts_mut(dst.add(r * c), c) };
                let inv = 1.0 / sum;
                row.iter_mut().for_each(|x| *x *= inv);
            }
        })
    });
    out
}

dispatch! {
    /// Replaces `row` by `exp(row - max(row))` and returns the sum of the new values.
    fn softmax_numerator(row: &mut [f32]) -> f32 {
        let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut lanes = [0f32; 8];
        let mut it = row.chunks_exact_mut(8);
        for c in &mut it {
            for (lane, v) in lanes.iter_mut().zip(c) {
                *v = exp(*v - max);
                *lane += *v;
            }
        }
        let mut sum: f32 = lanes.iter().sum();
        for x in it.into_remainder() {
            *x = exp(*x - max);
            sum += *x;
        }
        sum
    }
}
