//! The naive floor every reconstruction is judged against: the 2D mask extruded along z.
//!
//! With no model at all, the best simple guess of a cell's 3D shape from its central-slice mask is
//! the mask itself, repeated over a slab centred on the stack's middle (the dataset centres every
//! cell in z) whose half-height is a fixed multiple of the mask's equivalent radius. On the real
//! red blood cells that guess scores a mean IoU of about 0.56 (against `obj > 0`); a model whose
//! shapes score less has learnt nothing useful. The same volume is the shape prior that the
//! `prior-x0` model objective starts from (see `dispr_model::config::Objective`), so an untrained
//! model of that kind reproduces the floor exactly.

use crate::volume::SIDE;

/// Mask pixels above this (of 255) are inside the cell (the middle of the anti-aliasing).
pub const MASK_THRESHOLD: u8 = 127;

/// Half-height of the extruded slab in units of the mask's equivalent radius sqrt(area / pi).
/// 0.7-0.8 score best on the real cells (0.561 at 0.7, 0.559 at 0.75, 0.558 at 0.8).
pub const HALF_HEIGHT_FACTOR: f64 = 0.75;

/// The equivalent radius (pixels) of a 64x64 uint8 mask: the radius of the disk with its area.
pub fn equivalent_radius(mask: &[u8]) -> f64 {
    let area = mask.iter().filter(|&&m| m > MASK_THRESHOLD).count() as f64;
    (area / std::f64::consts::PI).sqrt()
}

/// The extruded mask as a soft 64^3 volume in [0, 1] (ZYX): the mask's soft value times a z
/// profile that is 1 inside the slab and falls linearly over one voxel at its faces, so that
/// volumes at a coarser resolution (block means) stay faithful. `mask` is 64x64 uint8.
pub fn extrusion(mask: &[u8]) -> Vec<f32> {
    debug_assert_eq!(mask.len(), SIDE * SIDE);
    let half = HALF_HEIGHT_FACTOR * equivalent_radius(mask);
    let centre = (SIDE as f64 - 1.0) / 2.0;
    let mut vol = vec![0f32; SIDE * SIDE * SIDE];
    for (z, page) in vol.chunks_exact_mut(SIDE * SIDE).enumerate() {
        let weight = (half - (z as f64 - centre).abs() + 0.5).clamp(0.0, 1.0) as f32;
        if weight == 0.0 {
            continue;
        }
        for (v, &m) in page.iter_mut().zip(mask) {
            // The soft edge of the mask is kept, but only where the hard mask is inside: the
            // floor's binary shape is exactly "mask > 127 and |z - centre| <= half".
            let inside = if m > MASK_THRESHOLD { 1.0 } else { f32::from(m) / 255.0 * 0.98 };
            *v = weight * inside;
        }
    }
    vol
}

/// The floor's binary shape: voxels of [`extrusion`] at or above one half.
pub fn extruded_shape(mask: &[u8]) -> Vec<bool> {
    extrusion(mask).iter().map(|&v| v >= 0.5).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn disk(radius: f64) -> Vec<u8> {
        (0..SIDE * SIDE)
            .map(|i| {
                let (y, x) = ((i / SIDE) as f64 - 31.5, (i % SIDE) as f64 - 31.5);
                if (y * y + x * x).sqrt() <= radius { 255 } else { 0 }
            })
            .collect()
    }

    #[test]
    fn a_disk_becomes_a_centred_cylinder_of_the_stated_height() {
        let mask = disk(20.0);
        let r = equivalent_radius(&mask);
        assert!((r - 20.0).abs() < 0.5, "{r}");
        let shape = extruded_shape(&mask);
        let page = SIDE * SIDE;
        let slices: Vec<usize> =
            (0..SIDE).filter(|&z| shape[z * page..(z + 1) * page].iter().any(|&v| v)).collect();
        // |z - 31.5| <= 0.75 r: 2 * floor(0.75 r + 0.5) slices, centred.
        let expected = 2 * (HALF_HEIGHT_FACTOR * r + 0.5).floor() as usize;
        assert_eq!(slices.len(), expected);
        assert_eq!(slices[0] + slices[slices.len() - 1], SIDE - 1, "centred: {slices:?}");
        // Every occupied slice is the mask.
        let mid = &shape[31 * page..32 * page];
        assert!(mid.iter().zip(&mask).all(|(&s, &m)| s == (m > MASK_THRESHOLD)));
    }

    #[test]
    fn an_empty_mask_gives_an_empty_volume() {
        assert!(extrusion(&[0; SIDE * SIDE]).iter().all(|&v| v == 0.0));
    }
}
