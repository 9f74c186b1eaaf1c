//! Per-sample noise streams. Every sample owns a ChaCha stream seeded with its own u64 seed
//! (from `dispr_proto::seed::sample_seed`), and draws its initial noise and each step's noise from
//! it in order, so a sample's volume does not depend on which other samples share its batch.

use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

/// One random stream per batch element.
pub struct NoiseStreams {
    rngs: Vec<ChaCha8Rng>,
}

impl NoiseStreams {
    pub fn new(seeds: &[u64]) -> Self {
        Self { rngs: seeds.iter().map(|&s| ChaCha8Rng::seed_from_u64(s)).collect() }
    }

    /// Number of streams (the batch size).
    pub fn len(&self) -> usize {
        self.rngs.len()
    }

    /// True when there are no streams.
    pub fn is_empty(&self) -> bool {
        self.rngs.is_empty()
    }

    /// Standard normal noise of shape [streams, c, d, h, w], element `b` from stream `b`.
    pub fn normal<B: Backend>(&mut self, shape: [usize; 4], device: &B::Device) -> Tensor<B, 5> {
        let [c, d, h, w] = shape;
        let per = c * d * h * w;
        let mut data = Vec::with_capacity(per * self.rngs.len());
        for rng in &mut self.rngs {
            data.extend((0..per).map(|_| -> f32 { StandardNormal.sample(rng) }));
        }
        Tensor::from_data(TensorData::new(data, [self.rngs.len(), c, d, h, w]), device)
    }
}
