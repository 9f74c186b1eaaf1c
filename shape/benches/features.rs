//! Speed of the shape features (targets: all 3D features of a 64^3 volume < 20 ms on one core,
//! 2D features < 1 ms). Prints figures; asserts nothing.
//!
//!     cargo bench -p dispr-shape --bench features
//!
//! Uses the real sample's cells where ../shared/data/rbc-real-sample (or DISPR_SAMPLE_DIR)
//! exists, else synthetic ellipsoids.

use dispr_shape::features::{features_2d, features_3d, surface_area, surface_roughness};
use dispr_shape::{otsu, reconstruction};
use std::path::PathBuf;
use std::time::Instant;

fn median_ms(mut f: impl FnMut(), runs: usize) -> f64 {
    f(); // warm-up
    let mut t: Vec<f64> = (0..runs)
        .map(|_| {
            let s = Instant::now();
            f();
            s.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    t.sort_by(f64::total_cmp);
    t[t.len() / 2]
}

struct Cell {
    name: String,
    obj: Vec<u8>,
    image: Vec<u8>,
    mask: Vec<u8>,
}

fn cells() -> Vec<Cell> {
    let dir = std::env::var_os("DISPR_SAMPLE_DIR").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/rbc-real-sample")
    });
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir.join("obj")) {
        let mut names: Vec<String> = entries.filter_map(|e| e.ok()?.file_name().into_string().ok()).collect();
        names.sort();
        for name in names.iter().step_by(6) {
            let cell = name.trim_end_matches(".tif");
            let read = |role: &str| std::fs::read(dir.join(role).join(name)).expect("sample file readable");
            let obj = dispr_shape::tiff_io::read_volume_u8(&read("obj"), cell, "obj", [64, 64, 64])
                .expect("obj")
                .data;
            let image = dispr_shape::tiff_io::read_image_u8(&read("image"), cell, "image", [64, 64])
                .expect("image")
                .data;
            let mask = dispr_shape::tiff_io::read_image_u8(&read("mask"), cell, "mask", [64, 64])
                .expect("mask")
                .data;
            out.push(Cell { name: cell.to_string(), obj, image, mask });
        }
    }
    if out.is_empty() {
        eprintln!("(real sample absent: synthetic ellipsoids)");
        for (i, (a, b, c)) in
            [(20.0, 28.0, 30.0), (10.0, 29.0, 29.0), (25.0, 18.0, 30.0)].into_iter().enumerate()
        {
            let obj: Vec<u8> = (0..64 * 64 * 64)
                .map(|i: usize| {
                    let (z, y, x) =
                        ((i / 4096) as f64 - 31.5, ((i / 64) % 64) as f64 - 31.5, (i % 64) as f64 - 31.5);
                    if (z / a).powi(2) + (y / b).powi(2) + (x / c).powi(2) <= 1.0 { 255 } else { 0 }
                })
                .collect();
            let mask = obj[32 * 4096..33 * 4096].to_vec();
            let image =
                mask.iter().enumerate().map(|(i, &m)| if m > 0 { (100 + i % 50) as u8 } else { 5 }).collect();
            out.push(Cell { name: format!("ellipsoid{i}"), obj, image, mask });
        }
    }
    out
}

fn main() {
    // One core, as the target says: rayon is not used by the features, but make sure.
    let runs = 30;
    println!(
        "{:<28} {:>10} {:>10} {:>10} {:>10} {:>10}",
        "cell", "3D all ms", "mesh ms", "rough ms", "2D ms", "otsu ms"
    );
    let mut all3 = Vec::new();
    let mut all2 = Vec::new();
    for cell in cells() {
        let binary: Vec<bool> = cell.obj.iter().map(|&v| v > 127).collect();
        let dims = [64, 64, 64];
        let t3 = median_ms(|| drop(std::hint::black_box(features_3d(&binary, dims))), runs);
        let tm = median_ms(|| _ = std::hint::black_box(surface_area(&binary, dims)), runs);
        let tr = median_ms(|| _ = std::hint::black_box(surface_roughness(&binary, dims)), runs);
        let t2 =
            median_ms(|| drop(std::hint::black_box(features_2d(&cell.image, &cell.mask, 64, 64))), runs * 10);
        let float: Vec<f32> = cell.obj.iter().map(|&v| v as f32 / 255.0).collect();
        let to = median_ms(|| drop(std::hint::black_box(otsu::binarise(&float))), runs);
        println!("{:<28} {t3:>10.2} {tm:>10.2} {tr:>10.2} {t2:>10.3} {to:>10.2}", cell.name);
        all3.push(t3);
        all2.push(t2);
    }
    let binary: Vec<bool> = cells()[0].obj.iter().map(|&v| v > 127).collect();
    let shifted: Vec<bool> = (0..binary.len()).map(|i| binary[(i + 1) % binary.len()]).collect();
    let tmet = median_ms(
        || drop(std::hint::black_box(reconstruction::reconstruction(&shifted, &binary, [64, 64, 64]))),
        runs,
    );
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    println!(
        "\nmean: all 3D features of a 64^3 volume {:.2} ms (target < 20 ms), 2D features {:.3} ms (target < 1 ms), reconstruction metrics {tmet:.2} ms",
        mean(&all3),
        mean(&all2)
    );
}
