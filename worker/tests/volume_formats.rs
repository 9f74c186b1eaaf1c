//! The run's volume formats (`--volumes`) through the real job pipeline: one cell sampled three
//! times with the null sampler (whose lenses have anti-aliased, fractional edges) in each format,
//! into a local-folder store, read back by this project's reader and by Python's tifffile.

mod common;

use common::*;
use dispr_proto::{CellFeatures, CellId, RunId, VolumeFormat, keys};
use dispr_shape::tiff_io::{self, QUANTISATION_BOUND, Samples};
use dispr_worker::pipeline::{JobRunner, RunnerConfig};
use dispr_worker::volume_sampler::NullSampler;
use std::path::{Path, PathBuf};

const SAMPLES: u32 = 3;

/// Runs the one-cell job in `format` under `root/<format>` and returns that output folder.
async fn run_in(root: &Path, data: &Path, format: VolumeFormat) -> PathBuf {
    let out = root.join(format.name());
    let mut job = job("formats", data, &out, &["disc001"], SAMPLES);
    job.volumes = format;
    let mut config = RunnerConfig::new("test-worker");
    config.model_cache_dir = root.join("cache");
    let runner = JobRunner::new(config, Default::default());
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    let summary = runner.run(&job, &tx).await.unwrap();
    assert_eq!(summary.done, 1, "{format}: {summary:?}");
    out
}

fn stack(path: &Path) -> tiff_io::Stack {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut decoder = tiff::decoder::Decoder::new(std::io::Cursor::new(&bytes)).unwrap();
    let compression = decoder.get_tag_u32(tiff::tags::Tag::Compression).unwrap();
    assert_eq!(compression, 8, "{} is deflate-compressed", path.display());
    tiff_io::decode(&bytes, &path.display().to_string()).unwrap()
}

#[tokio::test]
async fn every_format_round_trips_within_its_bound_and_keeps_the_features() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    write_cell(&data, "disc001", &good_image(), &good_mask());
    let (run, cell) = (RunId::new("formats").unwrap(), CellId::new("disc001").unwrap());
    let mut outs = Vec::new();
    for format in VolumeFormat::ALL {
        outs.push((format, run_in(dir.path(), &data, format).await));
    }
    let record = |out: &Path| {
        CellFeatures::decode(&std::fs::read(out.join(keys::features(&run, &cell))).unwrap()).unwrap()
    };
    // The features are measured on the sampler's values whatever the format: the records are
    // identical, byte for byte.
    let float_record = record(&outs[0].1);
    for (format, out) in &outs[1..] {
        assert_eq!(record(out), float_record, "{format}: the features record differs from float32's");
    }

    let mask = tiff_io::read_image_u8(&good_mask(), "mask", "mask", [64, 64]).unwrap().data;
    for (format, out) in &outs {
        for s in &float_record.samples {
            let sampled = NullSampler::volume(&mask, s.seed);
            let path = out.join(keys::volume(&run, &cell, s.k));
            match (format, stack(&path).samples) {
                (VolumeFormat::Float32, Samples::F32(v)) => assert_eq!(v, sampled, "float32 is exact"),
                (VolumeFormat::Uint8, Samples::U8(v)) => {
                    let worst = v
                        .iter()
                        .zip(&sampled)
                        .map(|(&q, &x)| (f32::from(q) / 255.0 - x).abs())
                        .fold(0.0, f32::max);
                    assert!(worst <= QUANTISATION_BOUND + 1e-7, "uint8 is {worst} from the sample");
                    assert!(v.iter().any(|&q| q > 0 && q < 255), "the edges keep their fractions");
                }
                (VolumeFormat::Mask, Samples::U8(v)) => {
                    let binary = dispr_shape::otsu::binarise(&sampled);
                    let expected: Vec<u8> = binary.iter().map(|&b| if b { 255 } else { 0 }).collect();
                    assert_eq!(v, expected, "mask is the Otsu-binarised sample as 0/255");
                    // Read back as the report reads any sample (to [0, 1], binarised again), the
                    // mask gives exactly the shape, and so the features, of the record.
                    let read = tiff_io::read_volume_f32(
                        &std::fs::read(&path).unwrap(),
                        "mask",
                        "sample",
                        [64, 64, 64],
                    )
                    .unwrap();
                    let again = dispr_shape::otsu::binarise(&read.data);
                    assert_eq!(again, binary);
                    // (Equal to the last bit but for the record's trip through JSON text, whose
                    // parser may round the last bit differently.)
                    let features = dispr_shape::features::features_3d(&again, [64, 64, 64]).unwrap();
                    assert_eq!(features.keys().collect::<Vec<_>>(), s.features.keys().collect::<Vec<_>>());
                    for (name, v) in &features {
                        let r = s.features[name];
                        assert!((v - r).abs() <= 1e-12 * r.abs().max(1.0), "mask {name} {v} vs float32 {r}");
                    }
                }
                (format, other) => panic!("{format}: {path:?} holds {other:?}"),
            }
        }
        let p = stack(&out.join(keys::probability_volume(&run, &cell)));
        let Samples::U8(p) = p.samples else { panic!("{format}: probability.tif is not uint8") };
        let levels: Vec<u8> =
            (0..=SAMPLES).map(|j| (255.0 * j as f32 / SAMPLES as f32).round() as u8).collect();
        assert!(p.iter().all(|v| levels.contains(v)), "{format}: probability holds only {levels:?}");
        let std = stack(&out.join(keys::std_volume(&run, &cell))).samples;
        match format {
            VolumeFormat::Float32 => assert!(matches!(std, Samples::F32(_)), "std.tif follows float32"),
            _ => assert!(matches!(std, Samples::U8(_)), "{format}: std.tif follows the format: uint8"),
        }
    }

    // The same files through tifffile (shape, dtype, ImageJ, compression tag, the bounds).
    let folder = |i: usize| outs[i].1.join(format!("runs/{run}/volumes/{cell}"));
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/python/check_volume_formats.py");
    let out = std::process::Command::new("python3")
        .arg(&script)
        .args([folder(0), folder(1), folder(2)])
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run python3 ({e}): install python3 and `pip install numpy tifffile`")
        });
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && text.contains("ok, 3 samples"), "tifffile check failed:\n{text}");
}

/// Not a test: what each format costs and keeps, on the float32 samples of a finished run (the
/// model's own output, which compresses differently from the null sampler's lenses). Run as
/// `DISPR_FLOAT32_VOLUMES=<run>/volumes cargo test -p dispr-worker --test volume_formats --
/// --ignored --nocapture` after e.g. `dispr-coordinator demo --volumes float32 --samples 3`.
/// Prints, per cell: bytes of the samples, probability.tif and std.tif, and the time to encode
/// them on one core; and against float32, the IoU of the shape read back (Otsu on x / max, as
/// the report binarises any sample) and the largest relative change of a 3D feature computed
/// from it.
#[test]
#[ignore]
fn print_what_each_format_costs_and_keeps() {
    use dispr_shape::features::features_3d;
    use dispr_shape::otsu::binarise;
    use dispr_shape::uncertainty::ensemble;
    let Ok(root) = std::env::var("DISPR_FLOAT32_VOLUMES") else {
        panic!("set DISPR_FLOAT32_VOLUMES to the volumes/ folder of a float32 run")
    };
    let mut cells: Vec<PathBuf> =
        std::fs::read_dir(&root).unwrap().map(|e| e.unwrap().path()).filter(|p| p.is_dir()).collect();
    cells.sort();
    let dims = [64, 64, 64];
    println!(
        "{} cells of {root} (one core, {} build)",
        cells.len(),
        if cfg!(debug_assertions) { "debug" } else { "optimised" }
    );
    println!("format   KB/cell  encode ms/cell  min IoU vs float32  mean IoU  max rel. feature change");
    for format in VolumeFormat::ALL {
        let (mut bytes, mut seconds, mut min_iou, mut sum_iou, mut n, mut worst_change) =
            (0usize, 0.0f64, 1.0f64, 0.0f64, 0usize, 0.0f64);
        for cell in &cells {
            let mut samples = Vec::new();
            for k in 0.. {
                let path = cell.join(format!("{k}.tif"));
                let Ok(b) = std::fs::read(&path) else { break };
                samples.push(tiff_io::read_volume_f32(&b, "s", "sample", dims).unwrap().data);
            }
            let binaries: Vec<Vec<bool>> = samples.iter().map(|s| binarise(s)).collect();
            let started = std::time::Instant::now();
            let mut files = Vec::new();
            for (s, b) in samples.iter().zip(&binaries) {
                files.push(dispr_worker::cell::encode_sample(s.clone(), b, format).unwrap());
            }
            let slices: Vec<&[bool]> = binaries.iter().map(Vec::as_slice).collect();
            if let Some(e) = ensemble(&slices) {
                let volume = |data| dispr_shape::volume::Volume { dims, data };
                files.push(tiff_io::encode_volume_unit_u8(&volume(e.probability)).unwrap());
                files.push(match format {
                    VolumeFormat::Float32 => tiff_io::encode_volume_f32(&volume(e.std)).unwrap(),
                    _ => tiff_io::encode_volume_unit_u8(&volume(e.std)).unwrap(),
                });
            }
            seconds += started.elapsed().as_secs_f64();
            bytes += files.iter().map(Vec::len).sum::<usize>();
            for (k, b) in binaries.iter().enumerate() {
                let read = tiff_io::read_volume_f32(&files[k], "s", "sample", dims).unwrap().data;
                let again = binarise(&read);
                let inter = again.iter().zip(b).filter(|(a, b)| **a && **b).count();
                let union = again.iter().zip(b).filter(|(a, b)| **a || **b).count();
                let iou = inter as f64 / union.max(1) as f64;
                (min_iou, sum_iou, n) = (min_iou.min(iou), sum_iou + iou, n + 1);
                let (Ok(f0), Ok(f1)) = (features_3d(b, dims), features_3d(&again, dims)) else { continue };
                for (name, v0) in &f0 {
                    let v1 = f1[name];
                    let change = (v1 - v0).abs() / v0.abs().max(1e-9);
                    if v0.abs() > 1e-6 {
                        worst_change = worst_change.max(change);
                    }
                }
            }
        }
        let per = cells.len().max(1) as f64;
        println!(
            "{:<8} {:>8.1} {:>15.2} {:>19.4} {:>9.4} {:>24.2e}",
            format.name(),
            bytes as f64 / per / 1024.0,
            seconds / per * 1e3,
            min_iou,
            sum_iou / n.max(1) as f64,
            worst_change
        );
    }
}
