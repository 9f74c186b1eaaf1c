//! Volume samplers: what turns a cell's 2D image and mask into K plausible 3D shapes.
//!
//! [`VolumeSampler`] is the one interface the job pipeline calls; [`NullSampler`] answers at once
//! with a deterministic shape (orchestration tests and benchmarks), the model sampler runs DISPR.
//! Samplers are synchronous and compute-bound: callers run them on a blocking thread, never on
//! the async runtime.

use dispr_proto::CellId;

/// Side of the cube DISPR works in: images are `SIDE x SIDE`, volumes `SIDE^3`.
pub use dispr_shape::volume::SIDE;
/// Pixels of an input image or mask.
pub const PIXELS: usize = SIDE * SIDE;
/// Voxels of a sampled volume.
pub const VOXELS: usize = SIDE * SIDE * SIDE;

/// A sampled volume: `SIDE^3` values in [0, 1], z-major (index `(z * SIDE + y) * SIDE + x`),
/// the layout of a 64-page TIFF with the central slice at z = 32.
pub type Volume = Vec<f32>;

/// The conditioning inputs of one cell, validated: both `SIDE x SIDE`, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct CellInput {
    pub cell: CellId,
    /// Fluorescence image, uint8.
    pub image: Vec<u8>,
    /// Segmentation mask, uint8 0..255 (soft edges); not all zero.
    pub mask: Vec<u8>,
}

/// Sampling progress: `step` of `steps` model evaluations of the current batch are done.
pub type Progress<'a> = &'a mut dyn FnMut(u32, u32);

/// Samples volumes for a batch of cells.
pub trait VolumeSampler: Send + Sync {
    /// A short description for logs, e.g. `null` or `dpmpp2m-25 on small (sha256 1a2b..)`.
    fn describe(&self) -> String;

    /// For each cell `inputs[i]`, one volume per seed in `seeds[i]` (in that order). The output
    /// for a seed depends only on the cell's inputs and that seed, not on the rest of the batch,
    /// so a redelivered job writes identical bytes. Reports progress as it goes.
    fn sample(
        &self,
        inputs: &[CellInput],
        seeds: &[Vec<u64>],
        progress: Progress<'_>,
    ) -> anyhow::Result<Vec<Vec<Volume>>>;
}

/// No model: the mask extruded into a lens whose thickness grows towards the mask's centre and is
/// scaled by a factor drawn from the seed. Deterministic, instant, and non-empty for any
/// non-empty mask, so orchestration can be tested and benchmarked without a model.
#[derive(Debug, Default, Clone, Copy)]
pub struct NullSampler;

impl NullSampler {
    /// The volume for one cell and seed.
    pub fn volume(mask: &[u8], seed: u64) -> Volume {
        debug_assert_eq!(mask.len(), PIXELS);
        // Thickness scale in [0.8, 1.2) from the seed's top bits (any fixed mapping would do).
        let scale = 0.8 + 0.4 * ((seed >> 11) as f64 / (1u64 << 53) as f64);
        let (mut area, mut cy, mut cx) = (0.0f64, 0.0f64, 0.0f64);
        for (i, &m) in mask.iter().enumerate() {
            let w = f64::from(m) / 255.0;
            area += w;
            cy += w * (i / SIDE) as f64;
            cx += w * (i % SIDE) as f64;
        }
        let (cy, cx) = if area > 0.0 { (cy / area, cx / area) } else { (31.5, 31.5) };
        // Radius of the disk with the mask's area; the lens reaches a bit beyond it.
        let reach = (area / std::f64::consts::PI).sqrt().max(0.5) * 1.2;
        let centre_z = (SIDE as f64 - 1.0) / 2.0;

        let mut vol = vec![0f32; VOXELS];
        for (i, &m) in mask.iter().enumerate() {
            if m == 0 {
                continue;
            }
            let w = f64::from(m) / 255.0;
            let (y, x) = ((i / SIDE) as f64, (i % SIDE) as f64);
            let r2 = ((y - cy).powi(2) + (x - cx).powi(2)) / (reach * reach);
            // Half thickness, at least half a voxel so every masked pixel has some volume.
            let half = (scale * 0.6 * reach * (1.0 - r2).max(0.0).sqrt()).clamp(0.5, centre_z);
            for z in 0..SIDE {
                // Anti-aliased: the fraction of the voxel inside [centre - half, centre + half].
                let inside = (half - (z as f64 - centre_z).abs() + 0.5).clamp(0.0, 1.0);
                if inside > 0.0 {
                    vol[z * PIXELS + i] = (w * inside) as f32;
                }
            }
        }
        vol
    }
}

impl VolumeSampler for NullSampler {
    fn describe(&self) -> String {
        "null".into()
    }

    fn sample(
        &self,
        inputs: &[CellInput],
        seeds: &[Vec<u64>],
        progress: Progress<'_>,
    ) -> anyhow::Result<Vec<Vec<Volume>>> {
        anyhow::ensure!(inputs.len() == seeds.len(), "one seed list per cell is needed");
        let out = inputs
            .iter()
            .zip(seeds)
            .map(|(input, seeds)| seeds.iter().map(|&s| Self::volume(&input.mask, s)).collect())
            .collect();
        progress(1, 1);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn disk(radius: f64) -> Vec<u8> {
        (0..PIXELS)
            .map(|i| {
                let (y, x) = ((i / SIDE) as f64 - 31.5, (i % SIDE) as f64 - 31.5);
                if y * y + x * x <= radius * radius { 255 } else { 0 }
            })
            .collect()
    }

    #[test]
    fn null_volumes_are_deterministic_bounded_and_seed_dependent() {
        let mask = disk(15.0);
        let a = NullSampler::volume(&mask, 1);
        assert_eq!(a, NullSampler::volume(&mask, 1));
        assert!(a.iter().all(|v| (0.0..=1.0).contains(v)));
        let sum = |v: &Volume| v.iter().map(|&x| f64::from(x)).sum::<f64>();
        let other = NullSampler::volume(&mask, u64::MAX);
        assert!((sum(&a) - sum(&other)).abs() > 1.0, "the seed changes the shape");
        // Outside the mask there is nothing.
        assert_eq!(a[(32 * SIDE) * SIDE], 0.0);
        // A lens: thicker at the centre than near the rim.
        let column = |y: usize, x: usize| (0..SIDE).filter(|z| a[(z * SIDE + y) * SIDE + x] > 0.5).count();
        assert!(column(32, 32) > column(32, 46) && column(32, 46) > 0);
    }

    #[test]
    fn a_single_pixel_mask_gives_a_non_empty_volume() {
        let mut mask = vec![0u8; PIXELS];
        mask[5 * SIDE + 60] = 40;
        assert!(NullSampler::volume(&mask, 7).iter().any(|&v| v > 0.0));
    }

    #[test]
    fn batch_matches_single_cells() {
        let input = CellInput { cell: CellId::new("c1").unwrap(), image: vec![0; PIXELS], mask: disk(10.0) };
        let mut steps = Vec::new();
        let out = NullSampler
            .sample(&[input.clone(), input.clone()], &[vec![1, 2], vec![3]], &mut |s, n| steps.push((s, n)))
            .unwrap();
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].len(), 2);
        assert_eq!(out[1][0], NullSampler::volume(&input.mask, 3));
        assert_eq!(steps, vec![(1, 1)]);
    }
}
