//! Hostile TIFF files, made on the spot for tests and fuzzing: a reader of user files is only as
//! good as the worst file it has been shown, and these are the worst found so far. They are
//! built from what this crate's encoder writes, so they are a few kilobytes and need no fixtures.

use crate::tiff_io::TiffError;
use std::io::Cursor;
use tiff::encoder::{Compression, DeflateLevel, TiffEncoder, colortype};

/// A decompression bomb: `pages` pages of `side`x`side` uint8 that all point at one
/// Deflate-compressed strip of zeros. 512 pages of 4096x4096 (8 GiB once decoded) take 105 KB.
pub fn deflate_bomb(pages: usize, side: u32) -> Result<Vec<u8>, TiffError> {
    let fail = |m: String| TiffError { file: "(bomb)".into(), problem: crate::tiff_io::Problem::Encode(m) };
    let mut out = Cursor::new(Vec::new());
    let mut encoder = TiffEncoder::new(&mut out)
        .map_err(|e| fail(e.to_string()))?
        .with_compression(Compression::Deflate(DeflateLevel::Best));
    let mut image = encoder.new_image::<colortype::Gray8>(side, side).map_err(|e| fail(e.to_string()))?;
    image.rows_per_strip(side).map_err(|e| fail(e.to_string()))?;
    let zeros = vec![0u8; side as usize * side as usize];
    image.write_data(&zeros).map_err(|e| fail(e.to_string()))?;
    repeat_first_page(&out.into_inner(), pages).ok_or_else(|| fail("not a TIFF this crate wrote".into()))
}

/// The first page of a classic (not Big) TIFF `tiff`, declared `pages` times: the copies of its
/// directory are appended to the file and chained, and all share its strips and tag data. `None`
/// when `tiff` is not a classic TIFF with a readable first directory.
pub fn repeat_first_page(tiff: &[u8], pages: usize) -> Option<Vec<u8>> {
    let big_endian = match tiff.get(..4)? {
        b"II*\0" => false,
        b"MM\0*" => true,
        _ => return None,
    };
    let u16_at = |at: usize| -> Option<u16> {
        let b: [u8; 2] = tiff.get(at..at + 2)?.try_into().ok()?;
        Some(if big_endian { u16::from_be_bytes(b) } else { u16::from_le_bytes(b) })
    };
    let u32_at = |at: usize| -> Option<u32> {
        let b: [u8; 4] = tiff.get(at..at + 4)?.try_into().ok()?;
        Some(if big_endian { u32::from_be_bytes(b) } else { u32::from_le_bytes(b) })
    };
    let put_u32 = |v: u32| if big_endian { v.to_be_bytes() } else { v.to_le_bytes() };
    let first = u32_at(4)? as usize;
    let entries = u16_at(first)? as usize;
    let directory = tiff.get(first..first + 2 + 12 * entries)?.to_vec();
    let next_at = first + 2 + 12 * entries;
    u32_at(next_at)?;

    let mut out = tiff.to_vec();
    if out.len() % 2 == 1 {
        out.push(0); // directories start on a word boundary
    }
    // Pointer of the previous directory to the next one, patched as each copy is placed.
    let mut link = next_at;
    for _ in 1..pages {
        let at = out.len();
        out[link..link + 4].copy_from_slice(&put_u32(u32::try_from(at).ok()?));
        out.extend_from_slice(&directory);
        link = out.len();
        out.extend_from_slice(&put_u32(0));
    }
    Some(out)
}
