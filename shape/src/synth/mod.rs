//! Synthetic red blood cells: a stand-in for the real 825-cell RBC dataset, with its layout,
//! class sizes and look (see DESIGN.md, "Data").
//!
//! [`plan`] decides which cells a dataset of N cells holds and names them like the real files;
//! [`generate`] draws one cell's phantom and renders its obj, mask and image. Each cell draws from
//! its own random stream, seeded by (dataset seed, cell index), so cells can be generated in any
//! order or in parallel and the same seed always gives byte-identical files.

mod phantoms;
mod render;
mod roster;
pub mod sdf;

pub use render::{CENTRAL_SLICE, MIN_MASK_PIXELS, mask_pixels};
pub use roster::{Kind, REAL_COUNTS, REAL_TOTAL, SynthSpec, kind_counts, plan, plan_with_min};

use crate::dataset::CellData;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// The random stream of one cell: the dataset seed picks the key, the cell index the stream.
fn cell_rng(seed: u64, index: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(index);
    rng
}

/// Generates one cell of a synthetic dataset: image, mask, obj and label.
pub fn generate(seed: u64, spec: &SynthSpec) -> CellData {
    let mut rng = cell_rng(seed, spec.index);
    let phantom = phantoms::phantom(spec.kind, &mut rng);
    let r = render::render(phantom, phantoms::Pose::of(spec.kind), &mut rng);
    CellData { id: spec.id.clone(), label: spec.kind.label(), image: r.image, mask: r.mask, obj: Some(r.obj) }
}
