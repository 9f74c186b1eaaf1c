//! Fuzzing the TIFF reader (the image, mask and volume paths and the shape-agnostic decoder) on
//! arbitrary bytes and on mutations of valid files, and the `labels.csv` parser, with the memory each read allocates
//! measured by this binary's allocator. Every input must give a stack or an error naming the
//! file, never a panic (including one the reader catches from the `tiff` crate) and never more
//! memory than the reader's bound.
//!
//! CI runs 1000 cases per property (a second). A longer run is one command:
//!
//! ```sh
//! PROPTEST_CASES=100000 PROPTEST_RNG_SEED=$RANDOM cargo test --release -p dispr-shape -p dispr-proto --test fuzz
//! ```
//!
//! Failures print the smallest input proptest shrank them to; add it to `tiff_io.rs` as a test.

use dispr_shape::hostile;
use dispr_shape::tiff_io::{self, MAX_STACK_BYTES, TiffError};
use dispr_shape::volume::{Image2d, SIDE, Volume};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed};
use std::io::Cursor;
use std::sync::LazyLock;
use tiff::encoder::{Compression, DeflateLevel, TiffEncoder, colortype};

mod common;

use common::peak_of;

#[global_allocator]
static ALLOCATOR: common::Counting = common::Counting;

const MIB: usize = 1 << 20;
/// What reading a cell's input may cost, whatever the file: a few 64^3 float32 volumes.
const CELL_BUDGET: usize = 4 * MIB;

/// Valid files of every kind the reader accepts, and a few it refuses, to mutate.
static SEEDS: LazyLock<Vec<Vec<u8>>> = LazyLock::new(|| {
    let ramp: Vec<u8> = (0..SIDE * SIDE).map(|i| (i * 7 % 251) as u8).collect();
    let image = Image2d { dims: [SIDE, SIDE], data: ramp.clone() };
    let small = Volume { dims: [4, 8, 8], data: (0..256).map(|i| i as u8).collect() };
    let f32_volume = Volume { dims: [SIDE; 3], data: vec![0.25f32; SIDE * SIDE * SIDE] };
    let with = |compression: Compression| {
        let mut out = Cursor::new(Vec::new());
        let mut enc = TiffEncoder::new(&mut out).unwrap().with_compression(compression);
        enc.write_image::<colortype::Gray8>(SIDE as u32, SIDE as u32, &ramp).unwrap();
        enc.write_image::<colortype::Gray8>(SIDE as u32, SIDE as u32, &ramp).unwrap();
        out.into_inner()
    };
    let wide = {
        let mut out = Cursor::new(Vec::new());
        let mut enc = TiffEncoder::new(&mut out).unwrap();
        let data: Vec<u16> = ramp.iter().map(|&v| u16::from(v) * 257).collect();
        enc.write_image::<colortype::Gray16>(SIDE as u32, SIDE as u32, &data).unwrap();
        out.into_inner()
    };
    vec![
        tiff_io::encode_image_u8(&image).unwrap(),
        tiff_io::encode_volume_u8(&small).unwrap(),
        tiff_io::encode_volume_f32(&f32_volume).unwrap(),
        with(Compression::Lzw),
        with(Compression::Deflate(DeflateLevel::Fast)),
        with(Compression::Packbits),
        hostile::deflate_bomb(64, 4096).unwrap(),
        hostile::repeat_first_page(&tiff_io::encode_image_u8(&image).unwrap(), SIDE).unwrap(),
        wide,
    ]
});

/// One way of reading a file: bytes and the file's name in, the outcome out.
type Reader = dyn Fn(&[u8], &str) -> Result<(), TiffError>;

/// Reads `bytes` the four ways the project does and checks each outcome.
fn check_every_reader(bytes: &[u8]) -> Result<(), TestCaseError> {
    let cases: [(&str, usize, &Reader); 4] = [
        ("image/fuzz.tif", CELL_BUDGET, &|b, f| {
            tiff_io::read_image_u8(b, f, "image", [SIDE, SIDE]).map(|_| ())
        }),
        ("obj/fuzz.tif", CELL_BUDGET, &|b, f| {
            tiff_io::read_volume_u8(b, f, "obj volume", [SIDE; 3]).map(|_| ())
        }),
        ("volumes/fuzz/0.tif", CELL_BUDGET, &|b, f| {
            tiff_io::read_volume_f32(b, f, "predicted volume", [SIDE; 3]).map(|_| ())
        }),
        ("any.tif", MAX_STACK_BYTES + CELL_BUDGET, &|b, f| tiff_io::decode(b, f).map(|_| ())),
    ];
    for (file, budget, read) in cases {
        let (result, peak) = peak_of(|| read(bytes, file));
        prop_assert!(peak <= budget, "{file}: {peak} bytes allocated at peak (bound {budget})");
        if let Err(err) = result {
            let msg = err.to_string();
            prop_assert!(msg.starts_with(&format!("{file}: ")), "the error does not name the file: {msg}");
            prop_assert!(!msg.contains("TIFF decoder could not read it"), "the tiff crate panicked: {msg}");
        }
    }
    Ok(())
}

/// `default_cases` cases from a fixed seed, so that CI runs the same inputs every time;
/// `PROPTEST_CASES` and `PROPTEST_RNG_SEED` choose others (see the command above).
fn config(default_cases: u32) -> Config {
    let env = |name: &str| std::env::var(name).ok();
    let cases = env("PROPTEST_CASES").and_then(|v| v.parse().ok()).unwrap_or(default_cases);
    let base = Config::default(); // reads PROPTEST_RNG_SEED
    let rng_seed = if env("PROPTEST_RNG_SEED").is_some() { base.rng_seed } else { RngSeed::Fixed(0x5eed) };
    Config { cases, rng_seed, failure_persistence: None, ..base }
}

/// One change to a file: a byte set, a 16- or 32-bit value written (offsets and counts), a cut.
#[derive(Debug, Clone)]
enum Mutation {
    Byte { at: usize, value: u8 },
    Word { at: usize, value: u32, wide: bool },
    Truncate { keep: usize },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    // Positions are drawn small half of the time: headers and directories are at the start of
    // small files and at the end of large ones, and both ends are where structure lives.
    let at = prop_oneof![0usize..512, any::<usize>()];
    let word = prop_oneof![
        Just(0u32),
        Just(1),
        Just(0xffff),
        Just(0x7fff_ffff),
        Just(u32::MAX),
        Just(4096),
        Just(65),
        any::<u32>()
    ];
    prop_oneof![
        4 => (at.clone(), any::<u8>()).prop_map(|(at, value)| Mutation::Byte { at, value }),
        3 => (at.clone(), word, any::<bool>()).prop_map(|(at, value, wide)| Mutation::Word { at, value, wide }),
        1 => any::<usize>().prop_map(|keep| Mutation::Truncate { keep }),
    ]
}

fn mutate(seed: &[u8], mutations: &[Mutation], from_end: bool) -> Vec<u8> {
    let mut b = seed.to_vec();
    for m in mutations {
        let len = b.len().max(1);
        let place = |at: usize| if from_end { len.saturating_sub(1 + at % len) } else { at % len };
        match *m {
            Mutation::Byte { at, value } => {
                let i = place(at);
                if let Some(x) = b.get_mut(i) {
                    *x = value;
                }
            }
            Mutation::Word { at, value, wide } => {
                let i = place(at);
                let bytes = value.to_le_bytes();
                let n = if wide { 4 } else { 2 };
                for (k, byte) in bytes.iter().take(n).enumerate() {
                    if let Some(x) = b.get_mut(i + k) {
                        *x = *byte;
                    }
                }
            }
            Mutation::Truncate { keep } => b.truncate(keep % len),
        }
    }
    b
}

proptest! {
    #![proptest_config(config(1000))]

    #[test]
    fn arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..1024)) {
        check_every_reader(&bytes)?;
    }

    #[test]
    fn arbitrary_bytes_behind_a_tiff_signature(
        big in any::<bool>(),
        rest in prop::collection::vec(any::<u8>(), 0..1024),
    ) {
        let mut bytes = if big { b"MM\0*".to_vec() } else { b"II*\0".to_vec() };
        bytes.extend(rest);
        check_every_reader(&bytes)?;
    }

    /// `labels.csv` as anything an editor or a spreadsheet may save: labels, or an error with
    /// its line.
    #[test]
    fn labels_files(text in prop::collection::vec(prop_oneof![
        4 => prop::sample::select(b"abc019_-.,;\t\n\r\"\x00\xe9\xff\xef\xbb\xbf ".to_vec()),
        1 => any::<u8>(),
    ], 0..200)) {
        if let Err(err) = dispr_shape::dataset::parse_labels(&text) {
            let msg = err.to_string();
            prop_assert!(msg.starts_with("labels.csv line "), "{msg}");
        }
    }

    #[test]
    fn mutated_valid_files(
        seed in 0..SEEDS.len(),
        mutations in prop::collection::vec(mutation(), 1..8),
        from_end in any::<bool>(),
    ) {
        check_every_reader(&mutate(&SEEDS[seed], &mutations, from_end))?;
    }
}

/// The seeds themselves read as they should: the fuzzing starts from valid files.
#[test]
fn seeds_are_what_they_claim() {
    let seeds = &*SEEDS;
    assert!(tiff_io::read_image_u8(&seeds[0], "s", "image", [SIDE, SIDE]).is_ok());
    assert_eq!(tiff_io::decode(&seeds[1], "s").unwrap().dims, [4, 8, 8]);
    assert!(tiff_io::read_volume_f32(&seeds[2], "s", "sample", [SIDE; 3]).is_ok());
    for packed in &seeds[3..6] {
        assert_eq!(tiff_io::decode(packed, "s").unwrap().dims, [2, SIDE, SIDE]);
    }
    assert!(tiff_io::read_volume_u8(&seeds[6], "s", "obj", [SIDE; 3]).is_err(), "the bomb");
    assert!(tiff_io::read_volume_u8(&seeds[7], "s", "obj", [SIDE; 3]).is_ok());
    assert!(tiff_io::read_image_u8(&seeds[8], "s", "image", [SIDE, SIDE]).is_ok());
}
