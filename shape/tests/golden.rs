//! The features against scikit-image: golden values made by `golden/make_golden.py` (run by
//! hand) on analytic shapes rebuilt here with the same formulas, and on real cells of the shared
//! sample. Every feature that scikit-image also computes must agree within 1%.

use dispr_shape::features::{features_2d, features_3d};
use dispr_shape::otsu;
use std::collections::BTreeMap;
use std::path::PathBuf;

type Golden = BTreeMap<String, BTreeMap<String, f64>>;

fn golden() -> serde_json::Value {
    let text = include_str!("golden/golden.json");
    serde_json::from_str(text).expect("golden.json is valid JSON")
}

fn section(name: &str) -> Golden {
    serde_json::from_value(golden()[name].clone()).expect("golden section is a map of maps")
}

fn real_sample() -> Option<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/rbc-real-sample");
    if dir.is_dir() {
        Some(dir)
    } else {
        eprintln!(
            "SKIPPED real-cell fixtures: {} is absent (it ships with the team's shared/ folder)",
            dir.display()
        );
        None
    }
}

fn grid3(dims: [usize; 3], f: impl Fn(f64, f64, f64) -> bool) -> (Vec<bool>, [usize; 3]) {
    let [d, h, w] = dims;
    ((0..d * h * w).map(|i| f((i / (h * w)) as f64, ((i / w) % h) as f64, (i % w) as f64)).collect(), dims)
}

/// The analytic volumes of make_golden.py's `volumes()`.
fn volume_fixture(name: &str) -> Option<(Vec<bool>, [usize; 3])> {
    let sq = |v: f64| v * v;
    Some(match name {
        "ball" => grid3([40, 40, 40], |z, y, x| sq(z - 19.5) + sq(y - 19.5) + sq(x - 19.5) <= sq(15.0)),
        "ellipsoid" => grid3([32, 48, 56], |z, y, x| {
            sq((z - 15.5) / 10.0) + sq((y - 23.7) / 18.0) + sq((x - 27.2) / 25.0) <= 1.0
        }),
        "torus" => grid3([24, 48, 48], |z, y, x| {
            let r = (sq(y - 23.5) + sq(x - 23.5)).sqrt();
            sq(r - 14.0) + sq(z - 11.5) <= 25.0
        }),
        "box_at_border" => grid3([16, 16, 16], |z, y, x| z < 10.0 && y >= 3.0 && (2.0..12.0).contains(&x)),
        "two_balls" => grid3([30, 30, 50], |z, y, x| {
            sq(z - 14.5) + sq(y - 14.5) + sq(x - 12.0) <= 81.0
                || sq(z - 14.5) + sq(y - 14.5) + sq(x - 36.0) <= 64.0
        }),
        "cup" => grid3([40, 40, 40], |z, y, x| {
            sq(z - 19.5) + sq(y - 19.5) + sq(x - 19.5) <= 196.0
                && sq(z - 9.5) + sq(y - 19.5) + sq(x - 19.5) > 100.0
        }),
        real => {
            let cell = real.strip_prefix("real_")?;
            let path = real_sample()?.join(format!("obj/{cell}.tif"));
            let bytes = std::fs::read(&path).expect("real sample obj readable");
            let v = dispr_shape::tiff_io::read_volume_u8(&bytes, cell, "obj", [64, 64, 64])
                .expect("real obj decodes");
            (v.data.iter().map(|&x| x > 127).collect(), v.dims)
        }
    })
}

/// The analytic (mask, image) pairs of make_golden.py's `images()`.
fn image_fixture(name: &str) -> Option<(Vec<u8>, Vec<u8>)> {
    let sq = |v: f64| v * v;
    let pattern: Vec<u8> = (0..64 * 64).map(|i| (((i / 64) * 7 + (i % 64) * 13) % 97 + 60) as u8).collect();
    let mask = |f: &dyn Fn(f64, f64) -> bool| -> Vec<u8> {
        (0..64 * 64).map(|i| if f((i / 64) as f64, (i % 64) as f64) { 255 } else { 0 }).collect()
    };
    let (c6, s6) = (0.6f64.cos(), 0.6f64.sin());
    let m = match name {
        "disc" => mask(&|r, c| sq(r - 31.5) + sq(c - 31.5) <= 400.0),
        "tilted_ellipse" => mask(&|r, c| {
            let u = (r - 30.2) * c6 + (c - 33.1) * s6;
            let v = -(r - 30.2) * s6 + (c - 33.1) * c6;
            sq(u / 24.0) + sq(v / 11.0) <= 1.0
        }),
        "ring" => mask(&|r, c| {
            let d2 = sq(r - 31.5) + sq(c - 31.5);
            (196.0..=576.0).contains(&d2)
        }),
        "l_shape" => mask(&|r, c| {
            ((5.0..50.0).contains(&r) && (8.0..20.0).contains(&c))
                || ((38.0..50.0).contains(&r) && (8.0..60.0).contains(&c))
        }),
        real => {
            let cell = real.strip_prefix("real_")?;
            let dir = real_sample()?;
            let read = |role: &str| {
                let bytes =
                    std::fs::read(dir.join(format!("{role}/{cell}.tif"))).expect("real sample readable");
                dispr_shape::tiff_io::read_image_u8(&bytes, cell, role, [64, 64])
                    .expect("real image decodes")
                    .data
            };
            return Some((read("mask"), read("image")));
        }
    };
    Some((m, pattern))
}

fn assert_close(fixture: &str, feature: &str, got: f64, want: f64) {
    let ok = if want.abs() < 1e-9 { got.abs() < 1e-6 } else { ((got - want) / want).abs() <= 0.01 };
    assert!(ok, "{fixture}: {feature} = {got}, scikit-image gives {want} (more than 1% apart)");
}

#[test]
fn features_3d_agree_with_scikit_image() {
    let mut checked = 0;
    for (name, want) in section("volumes") {
        let Some((vol, dims)) = volume_fixture(&name) else { continue };
        let got = features_3d(&vol, dims).unwrap();
        for (feature, value) in &want {
            assert_close(&name, feature, got[feature], *value);
        }
        checked += 1;
    }
    assert!(checked >= 6, "only {checked} volume fixtures were checked");
}

#[test]
fn features_2d_agree_with_scikit_image() {
    let mut checked = 0;
    for (name, want) in section("images") {
        let Some((mask, image)) = image_fixture(&name) else { continue };
        let got = features_2d(&image, &mask, 64, 64).unwrap();
        for (feature, value) in &want {
            assert_close(&name, feature, got[feature], *value);
        }
        checked += 1;
    }
    assert!(checked >= 4, "only {checked} image fixtures were checked");
}

#[test]
fn otsu_agrees_with_scikit_image() {
    let want = &golden()["otsu"]["blurred_ball"];
    let (n, sq) = (32usize, |v: f64| v * v);
    let raw: Vec<f32> = (0..n * n * n)
        .map(|i| {
            let (z, y, x) = ((i / (n * n)) as f64, ((i / n) % n) as f64, (i % n) as f64);
            ((-(sq(z - 15.0) + sq(y - 17.0) + sq(x - 14.0)) / 60.0).exp() + 0.002 * x) as f32
        })
        .collect();
    let max = raw.iter().copied().fold(f32::MIN, f32::max);
    let scaled: Vec<f32> = raw.iter().map(|v| v / max).collect();
    let t = otsu::threshold(&scaled).unwrap() as f64;
    let want_t = want["threshold"].as_f64().unwrap();
    assert!((t - want_t).abs() < 1.0 / 256.0, "threshold {t}, scikit-image {want_t}");
    let fg = otsu::binarise(&raw).iter().filter(|&&v| v).count() as f64;
    let want_fg = want["foreground"].as_f64().unwrap();
    assert!((fg - want_fg).abs() / want_fg < 0.01, "foreground {fg}, scikit-image {want_fg}");
}
