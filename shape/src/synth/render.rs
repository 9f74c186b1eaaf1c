//! Turns a phantom into the files of a dataset cell, the way the real RBC data looks:
//!
//! - `obj`: the shape turned at random, scaled so its largest extent fills most of the cube
//!   (the real cells span about 44-56 of 64 voxels), anti-aliased from the signed distance with
//!   a ramp about 1.9 voxels wide (the real volumes' soft edges), as uint8 0..255;
//! - `mask`: the central slice z = 32 of obj, quantised to the 16 levels of the real masks
//!   (0, 15, 31, ..., 255: the real masks were anti-aliased on a 4x4 sub-grid);
//! - `image`: a membrane stain seen through a microscope: a thin bright shell on the surface
//!   plus a dimmer cytoplasm, blurred along z (the optical section is several slices thick) and
//!   in the plane, scaled to the real images' brightness, with a dark background and noise.

use super::phantoms::Pose;
use super::sdf::{Phantom, V3};
use crate::volume::{Image2d, SIDE, Volume};
use rand::Rng;
use rand_distr::{Distribution, StandardNormal};

type Rng64 = rand_chacha::ChaCha8Rng;

/// The z-slice the mask and image show (the real masks match obj slice 31 or 32).
pub const CENTRAL_SLICE: usize = SIDE / 2;
/// Width in voxels of the anti-aliasing ramp of obj.
const EDGE_WIDTH: f32 = 1.9;
/// Side of the blocks the distance field is evaluated by: a block far from the surface is filled
/// from its centre's distance alone.
const BLOCK: usize = 4;

/// The rendered files of one cell.
pub struct Rendered {
    pub obj: Volume<u8>,
    pub mask: Image2d<u8>,
    pub image: Image2d<u8>,
}

/// Where the phantom sits in the cube: voxel (z, y, x) shows phantom point
/// `centre + (x - c, y - c, z - c) / scale` with `c` the cube's centre.
struct Placement {
    centre: V3,
    scale: f32,
}

impl Placement {
    fn point(&self, z: f32, y: f32, x: f32) -> V3 {
        let c = (SIDE as f32 - 1.0) / 2.0;
        self.centre + V3::new(x - c, y - c, z - c) / self.scale
    }
}

/// Scales the (already turned) phantom so its largest extent spans `extent` voxels and centres
/// its bounding box, found on a coarse grid.
fn place(phantom: &Phantom, extent: f32) -> Placement {
    const GRID: usize = 32;
    let bound = phantom.bound().max(1e-3);
    let step = 2.0 * bound / GRID as f32;
    let (mut lo, mut hi) = (V3::repeat(f32::INFINITY), V3::repeat(f32::NEG_INFINITY));
    for k in 0..GRID {
        for j in 0..GRID {
            for i in 0..GRID {
                let p = V3::new(i as f32 + 0.5, j as f32 + 0.5, k as f32 + 0.5) * step - V3::repeat(bound);
                if phantom.distance(p) < 0.0 {
                    lo = lo.inf(&p);
                    hi = hi.sup(&p);
                }
            }
        }
    }
    if lo.x > hi.x {
        // Nothing inside at this resolution (cannot happen for our shapes): use the bound.
        (lo, hi) = (V3::repeat(-bound), V3::repeat(bound));
    }
    let size = hi - lo + V3::repeat(step);
    // The largest extent gets `extent` voxels; no axis may leave the cube.
    let scale = (extent / size.max()).min((SIDE as f32 - 4.0) / size.max());
    Placement { centre: (lo + hi) / 2.0, scale }
}

/// Signed distance in voxels at every voxel centre. Blocks whose centre is far from the surface
/// take that one value: the distance changes by at most one voxel per voxel (with a margin for
/// the blends, which only bound it), so such a block is all inside or all outside.
fn distance_field(phantom: &Phantom, at: &Placement) -> Volume<f32> {
    let mut field = Volume::<f32>::zeros([SIDE; 3]);
    let half_diagonal = (BLOCK as f32 - 1.0) * 0.5 * 3f32.sqrt();
    let far = 1.5 * half_diagonal + 4.0;
    let nb = SIDE / BLOCK;
    let mid = (BLOCK as f32 - 1.0) / 2.0;
    for bz in 0..nb {
        for by in 0..nb {
            for bx in 0..nb {
                let (z0, y0, x0) = (bz * BLOCK, by * BLOCK, bx * BLOCK);
                let centre = at.point(z0 as f32 + mid, y0 as f32 + mid, x0 as f32 + mid);
                let dc = phantom.distance(centre) * at.scale;
                for z in z0..z0 + BLOCK {
                    for y in y0..y0 + BLOCK {
                        for x in x0..x0 + BLOCK {
                            let d = if dc.abs() > far {
                                dc
                            } else {
                                phantom.distance(at.point(z as f32, y as f32, x as f32)) * at.scale
                            };
                            let i = field.index(z, y, x);
                            field.data[i] = d;
                        }
                    }
                }
            }
        }
    }
    field
}

/// Fraction of a voxel inside the surface, from its signed distance.
fn occupancy(d: f32) -> f32 {
    (0.5 - d / EDGE_WIDTH).clamp(0.0, 1.0)
}

/// Quantises 0..255 to the 16 levels of the real masks: 0, 15, 31, 47, ..., 239, 255.
fn mask_level(v: u8) -> u8 {
    let q = (v as u32 * 16 + 127) / 255;
    if q == 0 { 0 } else { (q * 16 - 1) as u8 }
}

/// A normalised Gaussian kernel of standard deviation `sigma`, radius 3 sigma.
fn gaussian(sigma: f32) -> Vec<f32> {
    let r = (3.0 * sigma).ceil() as i32;
    let k: Vec<f32> = (-r..=r).map(|i| (-(i * i) as f32 / (2.0 * sigma * sigma)).exp()).collect();
    let sum: f32 = k.iter().sum();
    k.into_iter().map(|w| w / sum).collect()
}

/// Separable Gaussian blur of a square image, edges clamped.
fn blur2d(img: &[f32], sigma: f32) -> Vec<f32> {
    let k = gaussian(sigma);
    let r = (k.len() / 2) as isize;
    let n = SIDE as isize;
    let at = |i: isize| i.clamp(0, n - 1) as usize;
    let mut tmp = vec![0f32; img.len()];
    for y in 0..SIDE {
        for x in 0..SIDE {
            tmp[y * SIDE + x] =
                k.iter().enumerate().map(|(j, w)| w * img[y * SIDE + at(x as isize + j as isize - r)]).sum();
        }
    }
    let mut out = vec![0f32; img.len()];
    for y in 0..SIDE {
        for x in 0..SIDE {
            out[y * SIDE + x] =
                k.iter().enumerate().map(|(j, w)| w * tmp[at(y as isize + j as isize - r) * SIDE + x]).sum();
        }
    }
    out
}

/// The fluorescence image of the central slice (see the module doc).
fn stain(field: &Volume<f32>, rng: &mut Rng64) -> Image2d<u8> {
    let membrane_width = rng.random_range(0.9..1.3f32);
    let cytoplasm = rng.random_range(0.45..0.7f32);
    let kz = gaussian(rng.random_range(1.8..2.6));
    let r = kz.len() / 2;
    let plane = SIDE * SIDE;
    let mut emission = vec![0f32; plane];
    for (j, w) in kz.iter().enumerate() {
        let z = (CENTRAL_SLICE + j).saturating_sub(r).min(SIDE - 1);
        let slice = &field.data[z * plane..(z + 1) * plane];
        for (e, &d) in emission.iter_mut().zip(slice) {
            let shell = (-(d / membrane_width).powi(2)).exp();
            *e += w * (shell + cytoplasm * occupancy(d));
        }
    }
    let blurred = blur2d(&emission, rng.random_range(0.7..1.1));
    let peak = blurred.iter().copied().fold(0.0f32, f32::max).max(1e-6);
    let brightest = rng.random_range(195.0..225.0f32);
    let background = rng.random_range(0.0..2.0f32);
    let data = blurred
        .iter()
        .map(|&b| {
            let v = b / peak * brightest + background;
            // Shot-noise-like: grows with the signal.
            let n: f32 = StandardNormal.sample(rng);
            let n = n * (0.7 + 0.05 * v);
            (v + n).round().clamp(0.0, 255.0) as u8
        })
        .collect();
    Image2d { dims: [SIDE, SIDE], data }
}

/// A cell's mask must have at least this many pixels inside (above 127): a central slice that
/// misses the shape (a cluster turned so that its cells lie above and below the slice, a cup
/// cut through its hollow) would give a cell no one can segment, and no 2D features.
pub const MIN_MASK_PIXELS: usize = 64;
/// Turns tried before keeping the one whose slice shows the most cell.
const MAX_TURNS: usize = 32;

/// Pixels of a mask inside the cell (above 127, the middle of its anti-aliasing).
pub fn mask_pixels(mask: &Image2d<u8>) -> usize {
    mask.data.iter().filter(|&&m| m > 127).count()
}

/// Renders `phantom` (in cell units, centred) into obj, mask and image, turned at random as `pose`
/// allows.
/// A turn whose central slice shows less than [`MIN_MASK_PIXELS`] of cell is drawn again (from
/// the same random stream, so the dataset stays a function of its seed); cells whose first turn
/// is fine are unchanged by this.
pub fn render(phantom: Phantom, pose: Pose, rng: &mut Rng64) -> Rendered {
    let turn = |rng: &mut Rng64| {
        let mut turned = phantom.clone();
        turned.rotate(&pose.draw(rng));
        let extent = rng.random_range(48.0..58.0f32);
        let at = place(&turned, extent);
        let field = distance_field(&turned, &at);
        let obj = field.map(|d| (occupancy(d) * 255.0).round() as u8);
        let mask = obj.slice_z(CENTRAL_SLICE).map(mask_level);
        (mask_pixels(&mask), field, obj, mask)
    };
    let mut best = turn(rng);
    for _ in 1..MAX_TURNS {
        if best.0 >= MIN_MASK_PIXELS {
            break;
        }
        let next = turn(rng);
        if next.0 > best.0 {
            best = next;
        }
    }
    let (_, field, obj, mask) = best;
    let image = stain(&field, rng);
    Rendered { obj, mask, image }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mask_levels_are_the_real_ones() {
        assert_eq!(mask_level(0), 0);
        assert_eq!(mask_level(255), 255);
        assert_eq!(mask_level(128), 127);
        let mut levels: Vec<u8> = (0..=255).map(mask_level).collect();
        levels.dedup();
        assert_eq!(levels.len(), 17);
        assert!(levels.iter().all(|&l| l == 0 || l % 16 == 15));
    }

    #[test]
    fn gaussian_kernels_are_normalised() {
        let k = gaussian(2.0);
        assert_eq!(k.len(), 13);
        assert!((k.iter().sum::<f32>() - 1.0).abs() < 1e-5);
        assert!(k[6] > k[5] && k[5] > k[0]);
    }
}
