//! Softmax attention that never holds the whole score matrix. At the published model's 16x16
//! level there are 16,384 tokens: the full fp32 score matrix would be 1 GiB per sample, so the
//! queries are processed in chunks of rows (each row's softmax only needs its own scores).

use burn::tensor::Tensor;
use burn::tensor::activation::softmax;
use burn::tensor::backend::Backend;

/// `softmax((q s)(k s)^T) v` with s = C^-1/4, computed over blocks of `chunk` query rows.
/// `q`, `k`, `v`: [B, N, C]; returns [B, N, C].
pub fn chunked_attention<B: Backend>(
    q: Tensor<B, 3>,
    k: Tensor<B, 3>,
    v: Tensor<B, 3>,
    chunk: usize,
) -> Tensor<B, 3> {
    let [_, n, c] = q.dims();
    let scale = (c as f64).powf(-0.25);
    let q = q.mul_scalar(scale);
    let kt = k.mul_scalar(scale).swap_dims(1, 2);
    if n <= chunk {
        return softmax(q.matmul(kt), 2).matmul(v);
    }
    let parts: Vec<_> = (0..n)
        .step_by(chunk)
        .map(|start| {
            let rows = q.clone().narrow(1, start, chunk.min(n - start));
            softmax(rows.matmul(kt.clone()), 2).matmul(v.clone())
        })
        .collect();
    Tensor::cat(parts, 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TestBackend;
    use burn::tensor::Distribution;

    /// The plain computation, written out on f64 vectors.
    fn reference(q: &[f32], k: &[f32], v: &[f32], b: usize, n: usize, c: usize) -> Vec<f64> {
        let s = (c as f64).powf(-0.5);
        let mut out = vec![0.0; b * n * c];
        for bi in 0..b {
            for i in 0..n {
                let scores: Vec<f64> = (0..n)
                    .map(|j| {
                        (0..c)
                            .map(|x| q[(bi * n + i) * c + x] as f64 * k[(bi * n + j) * c + x] as f64)
                            .sum::<f64>()
                            * s
                    })
                    .collect();
                let m = scores.iter().cloned().fold(f64::MIN, f64::max);
                let e: Vec<f64> = scores.iter().map(|x| (x - m).exp()).collect();
                let z: f64 = e.iter().sum();
                for x in 0..c {
                    out[(bi * n + i) * c + x] =
                        (0..n).map(|j| e[j] / z * v[(bi * n + j) * c + x] as f64).sum();
                }
            }
        }
        out
    }

    #[test]
    fn chunked_attention_equals_the_plain_computation() {
        let dev = Default::default();
        let (b, n, c) = (2, 37, 6);
        let rnd = || Tensor::<TestBackend, 3>::random([b, n, c], Distribution::Normal(0.0, 2.0), &dev);
        let (q, k, v) = (rnd(), rnd(), rnd());
        let data = |t: &Tensor<TestBackend, 3>| t.clone().into_data().to_vec::<f32>().unwrap();
        let want = reference(&data(&q), &data(&k), &data(&v), b, n, c);
        for chunk in [1, 5, 16, 37, 100] {
            let got = chunked_attention(q.clone(), k.clone(), v.clone(), chunk);
            let got: Vec<f32> = got.into_data().to_vec().unwrap();
            for (g, w) in got.iter().zip(&want) {
                assert!((*g as f64 - w).abs() < 1e-4, "chunk {chunk}: {g} vs {w}");
            }
        }
    }
}
