//! Helpers of the worker's tests: real TIFF files of a small synthetic dataset in a temporary
//! folder, and jobs over it.

#![allow(dead_code)]

use dispr_proto::{CellId, Job, RunId, SCHEMA_VERSION, SamplerSpec};
use std::io::Cursor;
use std::path::Path;
use tiff::encoder::{TiffEncoder, colortype};

pub const SIDE: u32 = dispr_shape::volume::SIDE as u32;

/// A uint8 TIFF of `width x height` with the pixels `f(y, x)`.
pub fn tiff_u8(width: u32, height: u32, f: impl Fn(u32, u32) -> u8) -> Vec<u8> {
    let pixels: Vec<u8> =
        (0..height).flat_map(|y| (0..width).map(move |x| (y, x))).map(|(y, x)| f(y, x)).collect();
    let mut buf = Cursor::new(Vec::new());
    TiffEncoder::new(&mut buf).unwrap().write_image::<colortype::Gray8>(width, height, &pixels).unwrap();
    buf.into_inner()
}

/// A 64-page uint8 stack with the voxels `f(z, y, x)`.
pub fn stack_u8(f: impl Fn(u32, u32, u32) -> u8) -> Vec<u8> {
    let mut buf = Cursor::new(Vec::new());
    let mut enc = TiffEncoder::new(&mut buf).unwrap();
    for z in 0..SIDE {
        let page: Vec<u8> = (0..SIDE * SIDE).map(|i| f(z, i / SIDE, i % SIDE)).collect();
        enc.write_image::<colortype::Gray8>(SIDE, SIDE, &page).unwrap();
    }
    buf.into_inner()
}

fn inside_disk(y: u32, x: u32, r: f64) -> bool {
    let (dy, dx) = (f64::from(y) - 31.5, f64::from(x) - 31.5);
    dy * dy + dx * dx <= r * r
}

/// A disk-shaped cell: a bright ring on the image, a filled disk as the mask.
pub fn good_image() -> Vec<u8> {
    tiff_u8(SIDE, SIDE, |y, x| if inside_disk(y, x, 14.0) && !inside_disk(y, x, 11.0) { 200 } else { 20 })
}
pub fn good_mask() -> Vec<u8> {
    tiff_u8(SIDE, SIDE, |y, x| if inside_disk(y, x, 14.0) { 255 } else { 0 })
}

/// Writes `image/<cell>.tif` and `mask/<cell>.tif` under `root`.
pub fn write_cell(root: &Path, cell: &str, image: &[u8], mask: &[u8]) {
    for (dir, bytes) in [("image", image), ("mask", mask)] {
        std::fs::create_dir_all(root.join(dir)).unwrap();
        std::fs::write(root.join(dir).join(format!("{cell}.tif")), bytes).unwrap();
    }
}

pub fn job(run: &str, dataset: &Path, output: &Path, cells: &[&str], samples: u32) -> Job {
    Job {
        schema_version: SCHEMA_VERSION,
        run_id: RunId::new(run).unwrap(),
        job_id: "j00000001".into(),
        cells: cells.iter().map(|c| CellId::new(*c).unwrap()).collect(),
        dataset_uri: dataset.to_str().unwrap().into(),
        output_uri: output.to_str().unwrap().into(),
        model: None,
        sampler: SamplerSpec::Null,
        samples_per_cell: samples,
        seed: 7,
        volumes: dispr_proto::VolumeFormat::Float32,
    }
}

/// The sidecar of a fresh checkpoint of `config` (`save_model` fills in its format and digest).
pub fn sidecar(config: dispr_model::ModelConfig, note: &str) -> dispr_model::Sidecar {
    dispr_model::Sidecar {
        format: 0,
        config,
        step: 0,
        dataset_digest: String::new(),
        record_sha256: String::new(),
        validation: None,
        note: note.into(),
        z_calibration: None,
        imported: None,
    }
}
