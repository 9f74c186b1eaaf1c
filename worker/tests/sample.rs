//! `dispr-worker sample`: one raw sample from a given x_T, read from and written to TIFFs, as
//! the in-process sampler computes it. That the sampler itself computes what the reference
//! computes is `model/tests/reference_parity.rs` (and, at 64^3 through this command,
//! `make_reference_fixture.py check-sample`, docs/reference.md).

mod common;

use burn::module::Module;
use common::{good_image, good_mask};
use dispr_model::agreement::Randomise;
use dispr_model::{CellInput, CpuBackend, ModelConfig, Predictor};
use dispr_proto::SamplerSpec;
use dispr_shape::tiff_io;
use dispr_shape::volume::Volume;
use std::path::Path;
use std::process::Command;

/// A `tiny` checkpoint (16^3) with random non-zero weights: a fresh network's output is zero.
fn random_checkpoint(record: &Path) {
    let config = ModelConfig::tiny();
    let net = dispr_model::UNet::<CpuBackend>::new(&config, &Default::default()).map(&mut Randomise);
    let sidecar = common::sidecar(config, "random weights");
    dispr_model::checkpoint::save_model(net, sidecar, record).unwrap();
}

fn noise(r: usize, seed: u32) -> Vec<f32> {
    // A deterministic, roughly normal field (sum of uniforms), enough to drive the sampler.
    let mut state = seed.wrapping_mul(2_654_435_761).max(1);
    let mut uniform = move || {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        state as f32 / u32::MAX as f32
    };
    (0..r * r * r).map(|_| (0..4).map(|_| uniform()).sum::<f32>() - 2.0).collect()
}

fn sample(dir: &Path, record: &Path, noise_file: &Path, out: &Path) -> std::process::Output {
    let arg = |p: &Path| p.to_str().unwrap().to_string();
    Command::new(env!("CARGO_BIN_EXE_dispr-worker"))
        .args(["sample", "--checkpoint", &arg(record), "--sampler", "ddim-3"])
        .args(["--image", &arg(&dir.join("image.tif")), "--mask", &arg(&dir.join("mask.tif"))])
        .args(["--initial-noise", &arg(noise_file), "--out", &arg(out)])
        .output()
        .unwrap()
}

#[test]
fn sample_writes_what_the_sampler_computes_from_the_given_noise() {
    let dir = tempfile::tempdir().unwrap();
    let record = dir.path().join("m.mpk");
    random_checkpoint(&record);
    std::fs::write(dir.path().join("image.tif"), good_image()).unwrap();
    std::fs::write(dir.path().join("mask.tif"), good_mask()).unwrap();
    let r = ModelConfig::tiny().resolution;
    let write_noise = |name: &str, seed: u32| {
        let path = dir.path().join(name);
        let volume = Volume { dims: [r; 3], data: noise(r, seed) };
        std::fs::write(&path, tiff_io::encode_volume_f32(&volume).unwrap()).unwrap();
        (path, volume.data)
    };
    let (xt, xt_values) = write_noise("xT.tif", 1);
    let (other, _) = write_noise("other.tif", 2);

    let out = dir.path().join("x0.tif");
    let run = sample(dir.path(), &record, &xt, &out);
    let log = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{log}");
    assert!(log.contains("samples at 16^3"), "says the sample is not 64^3: {log}");
    let got =
        tiff_io::read_volume_f32(&std::fs::read(&out).unwrap(), "x0.tif", "sample", [r; 3]).unwrap().data;

    // The same cell, noise and sampler in process.
    let predictor = Predictor::<CpuBackend>::load(&record, &Default::default()).unwrap();
    let (image, mask) = (
        tiff_io::read_image_u8(&good_image(), "image", "image", [64, 64]).unwrap().data,
        tiff_io::read_image_u8(&good_mask(), "mask", "mask", [64, 64]).unwrap().data,
    );
    let input = CellInput { image: &image, mask: &mask };
    let spec = SamplerSpec::Ddim { steps: 3, eta: 0.0 };
    let want = predictor.sample_raw(input, &xt_values, &spec, 0, &mut |_, _| {}).unwrap();
    let max_diff = got.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    assert!(max_diff <= 1e-5, "the command and the sampler differ by {max_diff}");
    // The raw x0: clipped to [-1, 1], and not a constant.
    assert!(got.iter().all(|v| (-1.0..=1.0).contains(v)));
    let (lo, hi) = got.iter().fold((f32::MAX, f32::MIN), |(lo, hi), &v| (lo.min(v), hi.max(v)));
    assert!(hi - lo > 0.1, "a flat sample: {lo}..{hi}");

    // Another x_T gives another sample: the noise is read, not made up.
    let out2 = dir.path().join("x0-other.tif");
    assert!(sample(dir.path(), &record, &other, &out2).status.success());
    let got2 = tiff_io::read_volume_f32(&std::fs::read(&out2).unwrap(), "x0", "sample", [r; 3]).unwrap().data;
    let moved = got.iter().zip(&got2).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    assert!(moved > 1e-2, "another x_T, the same sample (max change {moved})");

    // x_T of another size is refused, naming the file and the size the network needs.
    let big = dir.path().join("xT-64.tif");
    let volume = Volume { dims: [64; 3], data: vec![0.5; 64 * 64 * 64] };
    std::fs::write(&big, tiff_io::encode_volume_f32(&volume).unwrap()).unwrap();
    let refused = sample(dir.path(), &record, &big, &dir.path().join("never.tif"));
    let log = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success() && !dir.path().join("never.tif").exists());
    assert!(log.contains("xT-64.tif") && log.contains("64x64x64 stack") && log.contains("16x16x16"), "{log}");
}
