//! TIFF reading and writing against real files: the real RBC sample's image, mask and obj,
//! files this crate writes (read back here and by Python's tifffile), compressed variants, and
//! broken files (truncated, garbage, oversized, wrong shape, wrong pixel type).

use dispr_shape::tiff_io::{self, MAX_PAGES, Problem, Samples};
use dispr_shape::volume::{Image2d, SIDE, Volume};
use std::io::Cursor;
use std::path::PathBuf;
use tiff::encoder::{Compression, DeflateLevel, TiffEncoder, colortype};

fn real_sample() -> Option<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/rbc-real-sample");
    if dir.is_dir() {
        Some(dir)
    } else {
        eprintln!("real RBC sample not found at {}: the tests on real files do nothing", dir.display());
        None
    }
}

/// A 64^3 volume with a recognisable value at every voxel.
fn ramp() -> Volume<u8> {
    let data = (0..SIDE * SIDE * SIDE)
        .map(|i| ((i / SIDE / SIDE) * 3 + (i / SIDE % SIDE) + i % SIDE) as u8)
        .collect();
    Volume { dims: [SIDE; 3], data }
}

#[test]
fn reads_the_real_sample_files() {
    let Some(dir) = real_sample() else { return };
    let name = "B_keratocytes000673.tif";
    let read = |folder: &str| tiff_io::read_file(&dir.join(folder).join(name)).unwrap();
    let image = tiff_io::read_image_u8(&read("image"), "image", "image", [SIDE, SIDE]).unwrap();
    let mask = tiff_io::read_image_u8(&read("mask"), "mask", "mask", [SIDE, SIDE]).unwrap();
    let obj = tiff_io::read_volume_u8(&read("obj"), "obj", "obj volume", [SIDE; 3]).unwrap();
    assert_eq!(image.data.len(), SIDE * SIDE);
    // Known facts about the real files: a dark background, a bright cell; a soft-edged mask that
    // matches obj's central slice; an obj with 0 outside and 255 inside.
    assert!(image.data.iter().any(|&v| v > 150) && image.get(0, 0) < 30);
    assert_eq!((mask.data.iter().min(), mask.data.iter().max()), (Some(&0), Some(&255)));
    assert!(mask.data.iter().any(|&v| v > 0 && v < 255), "the real masks are anti-aliased");
    let slice = obj.slice_z(32);
    let differ = mask.data.iter().zip(&slice.data).filter(|(m, o)| m.abs_diff(**o) > 40).count();
    assert!(differ < 20, "mask vs obj slice 32: {differ} pixels differ");
    assert_eq!(obj.get(0, 0, 0), 0);
    assert!(obj.data.contains(&255));
}

#[test]
fn volumes_round_trip_in_u8_and_f32() {
    let v = ramp();
    let bytes = tiff_io::encode_volume_u8(&v).unwrap();
    assert_eq!(tiff_io::read_volume_u8(&bytes, "ramp.tif", "obj volume", [SIDE; 3]).unwrap(), v);

    let f = Volume { dims: [SIDE; 3], data: v.data.iter().map(|&x| x as f32 / 255.0).collect() };
    let bytes = tiff_io::encode_volume_f32(&f).unwrap();
    let stack = tiff_io::decode(&bytes, "f.tif").unwrap();
    assert_eq!(stack.dims, [SIDE; 3]);
    assert_eq!(stack.samples, Samples::F32(f.data.clone()));
    assert_eq!(tiff_io::read_volume_f32(&bytes, "f.tif", "sample", [SIDE; 3]).unwrap(), f);
    // Floats in [0, 1] read as 8-bit scale back to the original bytes.
    assert_eq!(tiff_io::read_volume_u8(&bytes, "f.tif", "obj volume", [SIDE; 3]).unwrap(), v);

    let img = Image2d { dims: [SIDE, SIDE], data: v.data[..SIDE * SIDE].to_vec() };
    let bytes = tiff_io::encode_image_u8(&img).unwrap();
    assert_eq!(tiff_io::read_image_u8(&bytes, "i.tif", "image", [SIDE, SIDE]).unwrap(), img);
}

#[test]
fn volumes_carry_the_imagej_hyperstack_description() {
    let bytes = tiff_io::encode_volume_f32(&Volume::zeros([SIDE; 3])).unwrap();
    let mut decoder = tiff::decoder::Decoder::new(Cursor::new(&bytes)).unwrap();
    let description = decoder.get_tag_ascii_string(tiff::tags::Tag::ImageDescription).unwrap();
    assert!(description.starts_with("ImageJ="), "{description}");
    assert!(description.contains("images=64\nslices=64\n"), "{description}");
    assert!(description.contains("min=0.0\nmax=1.0"), "{description}");
}

/// Writes a stack with the `tiff` crate directly, as other tools would.
fn write_u16(pages: usize, h: u32, w: u32, compression: Compression) -> Vec<u8> {
    let mut out = Cursor::new(Vec::new());
    let mut enc = TiffEncoder::new(&mut out).unwrap().with_compression(compression);
    for z in 0..pages {
        let data: Vec<u16> =
            (0..h * w).map(|i| (i as u16).wrapping_mul(257).wrapping_add(z as u16)).collect();
        enc.write_image::<colortype::Gray16>(w, h, &data).unwrap();
    }
    out.into_inner()
}

#[test]
fn reads_lzw_deflate_and_uint16() {
    let plain = tiff_io::decode(&write_u16(3, 16, 16, Compression::Uncompressed), "plain").unwrap();
    for compression in [Compression::Lzw, Compression::Deflate(DeflateLevel::Balanced)] {
        let packed = tiff_io::decode(&write_u16(3, 16, 16, compression), "packed").unwrap();
        assert_eq!(packed, plain);
    }
    assert_eq!(plain.dims, [3, 16, 16]);
    // Full-range uint16 maps onto 0..255.
    let bytes = plain.into_u8("plain").unwrap();
    assert_eq!(bytes[1], 1); // 257 / 257
    assert_eq!(bytes[255], 255); // 65535 -> 255

    let mut out = Cursor::new(Vec::new());
    let mut enc = TiffEncoder::new(&mut out).unwrap().with_compression(Compression::Lzw);
    let img = ramp().slice_z(5);
    enc.write_image::<colortype::Gray8>(64, 64, &img.data).unwrap();
    assert_eq!(tiff_io::read_image_u8(out.get_ref(), "lzw.tif", "image", [64, 64]).unwrap(), img);
}

fn problem(bytes: &[u8]) -> Problem {
    tiff_io::decode(bytes, "bad.tif").unwrap_err().problem
}

#[test]
fn truncated_files_are_errors_not_panics() {
    let bytes = match real_sample() {
        Some(dir) => std::fs::read(dir.join("obj/C_knizocytes000704.tif")).unwrap(),
        None => tiff_io::encode_volume_u8(&ramp()).unwrap(),
    };
    // Cuts inside the header, the IFDs and the pixel data. (Cutting only unused trailing bytes,
    // such as the last byte of the real file, rightly still decodes: all pixels are there.)
    for len in [0, 3, 4, 8, 9, 100, 4096, bytes.len() / 2, bytes.len() * 9 / 10] {
        let err = match tiff_io::decode(&bytes[..len], "obj/C_knizocytes000704.tif") {
            Ok(stack) => panic!("{len} of {} bytes decoded as a {:?} stack", bytes.len(), stack.dims),
            Err(err) => err,
        };
        let msg = err.to_string();
        assert!(msg.starts_with("obj/C_knizocytes000704.tif: "), "{msg}");
        assert!(matches!(err.problem, Problem::Truncated(_) | Problem::Damaged(_)), "{len} bytes: {msg}");
    }
}

#[test]
fn garbage_is_not_a_tiff() {
    assert!(matches!(problem(b"\x89PNG\r\n\x1a\n and more"), Problem::NotTiff(_)));
    let msg = tiff_io::decode(b"hello world", "notes.txt").unwrap_err().to_string();
    assert!(msg.contains("notes.txt") && msg.contains("not a TIFF"), "{msg}");
    // A TIFF header followed by noise: damaged, never a panic.
    let mut noise: Vec<u8> = b"II*\0".to_vec();
    let mut x = 12345u32;
    for _ in 0..2000 {
        x = x.wrapping_mul(1103515245).wrapping_add(12345);
        noise.push((x >> 16) as u8);
    }
    assert!(tiff_io::decode(&noise, "noise.tif").is_err());
}

#[test]
fn flipped_bytes_never_panic() {
    // A small deterministic fuzz: every byte of a real file's header and first IFD, set to a
    // few values. Decoding must return (Ok or an error), never panic or allocate wildly.
    let bytes = tiff_io::encode_volume_u8(&Volume { dims: [2, 8, 8], data: vec![7; 128] }).unwrap();
    for i in 0..bytes.len().min(400) {
        for v in [0x00, 0x01, 0x7f, 0xff] {
            let mut b = bytes.clone();
            b[i] = v;
            let _ = tiff_io::decode(&b, "flipped.tif");
        }
    }
}

#[test]
fn wrong_shapes_are_named() {
    let volume = tiff_io::encode_volume_u8(&ramp()).unwrap();
    let err = tiff_io::read_image_u8(&volume, "mask/x.tif", "mask", [64, 64]).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("mask/x.tif")
            && msg.contains("64x64x64 stack")
            && msg.contains("mask must be a 64x64 image"),
        "{msg}"
    );
    let small = tiff_io::encode_image_u8(&Image2d::zeros([32, 48])).unwrap();
    let msg = tiff_io::read_volume_u8(&small, "obj/y.tif", "obj volume", [64; 3]).unwrap_err().to_string();
    assert!(msg.contains("32x48 image") && msg.contains("64x64x64"), "{msg}");
    // The expected size is a parameter: a 32x48 image is fine where that is what is wanted.
    assert!(tiff_io::read_image_u8(&small, "y.tif", "image", [32, 48]).is_ok());
}

#[test]
fn oversized_declarations_are_refused_before_allocating() {
    // 5000 pixels wide: refused from the header, before reading any pixels.
    let mut out = Cursor::new(Vec::new());
    let mut enc = TiffEncoder::new(&mut out).unwrap();
    enc.write_image::<colortype::Gray8>(5000, 1, &vec![0u8; 5000]).unwrap();
    assert!(matches!(problem(out.get_ref()), Problem::TooLarge { width: 5000, height: 1 }));

    // 513 one-pixel pages: refused at page 513.
    let mut out = Cursor::new(Vec::new());
    let mut enc = TiffEncoder::new(&mut out).unwrap();
    for _ in 0..=MAX_PAGES {
        enc.write_image::<colortype::Gray8>(1, 1, &[1u8]).unwrap();
    }
    let err = tiff_io::decode(out.get_ref(), "many.tif").unwrap_err();
    assert!(matches!(err.problem, Problem::TooManyPages), "{err}");
    assert!(err.to_string().contains("512"));

    // A header that claims a 4096x4096 page but holds a few bytes: an error, not 16 MiB of zeros.
    let mut out = Cursor::new(Vec::new());
    let mut enc = TiffEncoder::new(&mut out).unwrap();
    enc.write_image::<colortype::Gray8>(4096, 4096, &vec![0u8; 4096 * 4096]).unwrap();
    let bytes = out.into_inner();
    assert!(matches!(problem(&bytes[..1000]), Problem::Truncated(_)));
}

#[test]
fn unsupported_pixel_types_are_named() {
    let mut out = Cursor::new(Vec::new());
    let mut enc = TiffEncoder::new(&mut out).unwrap();
    enc.write_image::<colortype::RGB8>(4, 4, &[0u8; 48]).unwrap();
    let msg = tiff_io::decode(out.get_ref(), "rgb.tif").unwrap_err().to_string();
    assert!(
        msg.contains("rgb.tif") && msg.contains("unsupported pixel format") && msg.contains("RGB"),
        "{msg}"
    );

    let mut out = Cursor::new(Vec::new());
    let mut enc = TiffEncoder::new(&mut out).unwrap();
    enc.write_image::<colortype::GrayI16>(4, 4, &[0i16; 16]).unwrap();
    assert!(matches!(problem(out.get_ref()), Problem::Unsupported(_)));

    // Floats out of any 8-bit scale cannot be read as 8-bit data.
    let bytes =
        tiff_io::encode_image_f32(&Image2d { dims: [2, 2], data: vec![0.0, 1.0, 300.0, 2.0] }).unwrap();
    let msg = tiff_io::read_image_u8(&bytes, "f.tif", "image", [2, 2]).unwrap_err().to_string();
    assert!(msg.contains("0..300") || msg.contains("300"), "{msg}");
}

#[test]
fn mixed_page_sizes_are_refused() {
    let mut out = Cursor::new(Vec::new());
    let mut enc = TiffEncoder::new(&mut out).unwrap();
    enc.write_image::<colortype::Gray8>(4, 4, &[0u8; 16]).unwrap();
    enc.write_image::<colortype::Gray8>(4, 2, &[0u8; 8]).unwrap();
    assert!(matches!(problem(out.get_ref()), Problem::MixedPages { page: 1, .. }));
}

/// Python's tifffile must see our volumes as (64, 64, 64) ZYX ImageJ hyperstacks with the right
/// values. Needs `python3` with numpy and tifffile (`pip install numpy tifffile`).
#[test]
fn tifffile_reads_our_volumes() {
    let dir = tempfile::tempdir().unwrap();
    let v = ramp();
    let f = v.map(|x| x as f32 / 255.0);
    std::fs::write(dir.path().join("u8.tif"), tiff_io::encode_volume_u8(&v).unwrap()).unwrap();
    std::fs::write(dir.path().join("f32.tif"), tiff_io::encode_volume_f32(&f).unwrap()).unwrap();
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/check_tifffile.py");
    let out = std::process::Command::new("python3").arg(&script).arg(dir.path()).output();
    let out = match out {
        Ok(out) => out,
        Err(e) => panic!("cannot run python3 ({e}): install python3 and `pip install numpy tifffile`"),
    };
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "tifffile check failed (needs `pip install numpy tifffile`):\n{text}");
    assert!(
        text.contains("ok u8 (64, 64, 64) uint8") && text.contains("ok f32 (64, 64, 64) float32"),
        "{text}"
    );
}

/// Volumes are deflate-compressed (a shape compresses to a few KB), and values in [0, 1] stored
/// as uint8 read back within half a step, out-of-range values clamped to the nearest level.
#[test]
fn volumes_are_compressed_and_uint8_levels_stay_within_half_a_step() {
    let f = ramp().map(|x| x as f32 / 255.0 + 0.3 / 255.0);
    let bytes = tiff_io::encode_volume_unit_u8(&f).unwrap();
    let mut decoder = tiff::decoder::Decoder::new(Cursor::new(&bytes)).unwrap();
    assert_eq!(decoder.get_tag_u32(tiff::tags::Tag::Compression).unwrap(), 8, "deflate");
    let back = tiff_io::read_volume_f32(&bytes, "q.tif", "sample", [SIDE; 3]).unwrap();
    for (a, b) in f.data.iter().zip(&back.data) {
        assert!((a.clamp(0.0, 1.0) - b).abs() <= tiff_io::QUANTISATION_BOUND + 1e-7, "{a} read back as {b}");
    }
    assert_eq!([-0.5, 0.0, 0.5, 1.0, 7.0, f32::NAN].map(tiff_io::quantise_unit), [0, 0, 128, 255, 255, 0]);
    let shape = Volume {
        dims: [SIDE; 3],
        data: (0..SIDE * SIDE * SIDE).map(|i| if i % SIDE < 20 { 255 } else { 0 }).collect(),
    };
    let bytes = tiff_io::encode_volume_u8(&shape).unwrap();
    assert!(bytes.len() < 16 * 1024, "a 256 KiB binary shape compresses to {} bytes", bytes.len());
    assert_eq!(tiff_io::read_volume_u8(&bytes, "m.tif", "mask", [SIDE; 3]).unwrap(), shape);
}
