//! Reading and writing the TIFF files of datasets and runs.
//!
//! Reading accepts what microscopy tools write for single-channel data: 2D images and multi-page
//! 3D stacks of uint8, uint16 or float32 samples, uncompressed, LZW, Deflate or PackBits (the
//! codecs of the `tiff` crate). Files come from users and from object stores, so every failure is
//! a [`TiffError`] naming the file and saying what is wrong and what to do, and no file costs more
//! memory than the shape its reader wants: the headers of every page (size, sample type,
//! compression, strips within the file) are read first, a shape other than the wanted one is
//! refused from them alone, and pixels are then decoded one page at a time under the `tiff`
//! crate's decoder limits of one page. A 75 KB file declaring 512 pages of 4096x4096 that share
//! one deflate strip (a decompression bomb of 8 GiB) is refused after reading its headers.
//!
//! Writing produces ImageJ hyperstacks for volumes (an `ImageJ=` description on the first page
//! with `images=` and `slices=`), deflate-compressed, so Fiji and Python's `tifffile` read a
//! `(depth, height, width)` ZYX array without plugins, and plain single-page TIFFs for images.

use crate::volume::{Image2d, Volume};
use std::io::Cursor;
use std::path::Path;
use tiff::decoder::{Decoder, DecodingResult, Limits};
use tiff::encoder::{Compression, DeflateLevel, Predictor, TiffEncoder, colortype};
use tiff::tags::Tag;
use tiff::{ColorType, TiffFormatError};

/// Most pages a stack may declare: 64 are expected, 512 leave room for other instruments
/// without letting a hostile file make us allocate gigabytes.
pub const MAX_PAGES: usize = 512;
/// Largest width or height of a page.
pub const MAX_SIDE: usize = 4096;

/// A TIFF file that could not be read or written: which file, and what went wrong.
#[derive(Debug, thiserror::Error)]
#[error("{file}: {problem}")]
pub struct TiffError {
    /// The file name or object key, as the caller named it.
    pub file: String,
    /// What is wrong with it.
    pub problem: Problem,
}

/// What is wrong with a TIFF file.
#[derive(Debug, thiserror::Error)]
pub enum Problem {
    #[error(
        "not a TIFF file (it starts with {0:02x?}; a TIFF starts with 49 49 2a 00 or 4d 4d 00 2a): \
         check that this is the file you meant and re-export it as TIFF"
    )]
    NotTiff(Vec<u8>),
    #[error("the file is truncated ({0}): copy or export it again")]
    Truncated(String),
    #[error("the file is damaged ({0}): export it again as a plain TIFF")]
    Damaged(String),
    #[error(
        "unsupported pixel format ({0}): save it as single-channel 8-bit, 16-bit or 32-bit float \
         grayscale, uncompressed, LZW or Deflate"
    )]
    Unsupported(String),
    #[error("a page is {width}x{height} pixels, more than the {MAX_SIDE}x{MAX_SIDE} this reader accepts")]
    TooLarge { width: u64, height: u64 },
    #[error("the file has more than {MAX_PAGES} pages, more than this reader accepts")]
    TooManyPages,
    #[error(
        "it declares {found} of {kind} samples, {} MiB once decoded, more than the {} MiB this reader accepts",
        bytes >> 20, MAX_STACK_BYTES >> 20
    )]
    TooMuchData { found: String, kind: &'static str, bytes: usize },
    #[error(
        "page {page} is {found:?} (height, width) but the first page is {first:?}: all pages of a stack must have one size"
    )]
    MixedPages { page: usize, found: [usize; 2], first: [usize; 2] },
    #[error(
        "page {page} uses {found} samples but the first page uses {first}: all pages of a stack must have one pixel type"
    )]
    MixedTypes { page: usize, found: &'static str, first: &'static str },
    #[error(
        "it is {found} but {} {role} must be {expected}: resample or crop it to that size \
         (DISPR works on 64x64 images and 64x64x64 volumes)",
        article(role)
    )]
    WrongShape { role: String, found: String, expected: String },
    #[error("{0}")]
    BadValues(String),
    #[error("cannot read it: {0}")]
    Io(#[source] std::io::Error),
    #[error("cannot encode it: {0}")]
    Encode(String),
}

/// "a" or "an" before a role's name.
fn article(role: &str) -> &'static str {
    if role.starts_with(['a', 'e', 'i', 'o', 'u']) { "an" } else { "a" }
}

/// The samples of a decoded stack, in the type the file stores.
#[derive(Debug, Clone, PartialEq)]
pub enum Samples {
    U8(Vec<u8>),
    U16(Vec<u16>),
    F32(Vec<f32>),
}

/// A decoded TIFF: `dims = [pages, height, width]` (a 2D image has one page).
#[derive(Debug, Clone, PartialEq)]
pub struct Stack {
    pub dims: [usize; 3],
    pub samples: Samples,
}

fn err(file: &str, problem: Problem) -> TiffError {
    TiffError { file: file.to_string(), problem }
}

/// Maps the `tiff` crate's errors onto problems a user can act on.
fn from_tiff(file: &str, e: tiff::TiffError) -> TiffError {
    let problem = match e {
        tiff::TiffError::IoError(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
            Problem::Truncated("it ends before the data it declares".into())
        }
        tiff::TiffError::IoError(io) => Problem::Io(io),
        tiff::TiffError::FormatError(TiffFormatError::TiffSignatureNotFound)
        | tiff::TiffError::FormatError(TiffFormatError::TiffSignatureInvalid) => Problem::NotTiff(vec![]),
        tiff::TiffError::FormatError(f) => Problem::Damaged(f.to_string()),
        tiff::TiffError::UnsupportedError(u) => Problem::Unsupported(u.to_string()),
        tiff::TiffError::LimitsExceeded => {
            Problem::Damaged("a tag or strip declares more data than the page it belongs to can hold".into())
        }
        other => Problem::Damaged(other.to_string()),
    };
    err(file, problem)
}

/// Most bytes of tag data (strip tables, descriptions) one page may declare: a 4096-row page in
/// single-row strips needs 32 KiB of offsets; ImageJ's metadata stays far below this.
const MAX_TAG_BYTES: usize = 1 << 20;

/// Most decoded bytes [`decode`] accepts for a stack of no particular shape. The `read_*`
/// functions, which know the shape they want, accept exactly that shape and nothing larger.
pub const MAX_STACK_BYTES: usize = 256 << 20;

/// The sample type of a page, as its header declares it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    U8,
    U16,
    F32,
}

impl Kind {
    fn bytes(self) -> usize {
        match self {
            Kind::U8 => 1,
            Kind::U16 => 2,
            Kind::F32 => 4,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Kind::U8 => "uint8",
            Kind::U16 => "uint16",
            Kind::F32 => "float32",
        }
    }
}

/// What the headers of a file declare, read from every page before any pixel is decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Header {
    pages: usize,
    /// `[height, width]` of every page.
    page: [usize; 2],
    kind: Kind,
}

impl Header {
    fn dims(&self) -> [usize; 3] {
        [self.pages, self.page[0], self.page[1]]
    }
}

/// What a caller wants a file to hold: checked against the header, so a file of any other shape
/// is refused before a pixel is decoded and costs no more memory than its headers.
#[derive(Debug, Clone, Copy)]
struct Want<'a> {
    role: &'a str,
    dims: [usize; 3],
}

type TiffDecoder<'a> = Decoder<Cursor<&'a [u8]>>;

/// Decodes a 2D or 3D TIFF of any shape within [`MAX_SIDE`], [`MAX_PAGES`] and
/// [`MAX_STACK_BYTES`] from memory. `file` names it in errors (a path or an object key).
/// Readers of a known shape use [`read_image_u8`], [`read_volume_u8`] or [`read_volume_f32`],
/// which refuse any other shape from the header alone.
pub fn decode(bytes: &[u8], file: &str) -> Result<Stack, TiffError> {
    decode_as(bytes, file, None)
}

/// Decodes a TIFF in two passes: the headers of all pages first (shape, sample type,
/// compression, strips within the file), then, only if they declare what is wanted, the pixels,
/// one page at a time under decoder limits of one page. So a decompression bomb (many huge pages
/// sharing one small compressed strip) is refused for its declared shape after reading a few
/// hundred bytes of headers.
fn decode_as(bytes: &[u8], file: &str, want: Option<Want>) -> Result<Stack, TiffError> {
    // The `tiff` crate has assertions on its input; whatever a file holds, a reader of it must
    // get an error naming the file, not a dead worker.
    match std::panic::catch_unwind(|| decode_unguarded(bytes, file, want)) {
        Ok(result) => result,
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "the decoder failed".into());
            Err(err(file, Problem::Damaged(format!("the TIFF decoder could not read it ({what})"))))
        }
    }
}

fn decode_unguarded(bytes: &[u8], file: &str, want: Option<Want>) -> Result<Stack, TiffError> {
    // The decoder's own message for a non-TIFF is terse; say what a TIFF looks like instead.
    let magic = bytes.get(..4).unwrap_or(bytes);
    if magic.len() < 4 {
        return Err(err(file, Problem::Truncated(format!("it is only {} bytes long", bytes.len()))));
    }
    if !matches!(
        magic,
        [0x49, 0x49, 0x2a, 0x00]
            | [0x4d, 0x4d, 0x00, 0x2a]
            | [0x49, 0x49, 0x2b, 0x00]
            | [0x4d, 0x4d, 0x00, 0x2b]
    ) {
        return Err(err(file, Problem::NotTiff(magic.to_vec())));
    }
    check_first_directory(bytes, file)?;
    let mut limits = Limits::default();
    limits.decoding_buffer_size = MAX_TAG_BYTES;
    limits.intermediate_buffer_size = MAX_TAG_BYTES;
    let mut decoder = Decoder::new(Cursor::new(bytes)).map_err(|e| from_tiff(file, e))?.with_limits(limits);
    let header = read_header(&mut decoder, file, bytes.len())?;
    match want {
        Some(want) if header.dims() != want.dims => {
            return Err(err(
                file,
                Problem::WrongShape {
                    role: want.role.to_string(),
                    found: describe(header.dims()),
                    expected: describe(want.dims),
                },
            ));
        }
        Some(_) => {}
        None => {
            let size = header.pages * header.page[0] * header.page[1] * header.kind.bytes();
            if size > MAX_STACK_BYTES {
                return Err(err(
                    file,
                    Problem::TooMuchData {
                        found: describe(header.dims()),
                        kind: header.kind.name(),
                        bytes: size,
                    },
                ));
            }
        }
    }
    read_pixels(decoder, file, header, bytes.len())
}

/// The tags the `tiff` crate reads from the first page as it opens a file, under its default
/// limits (256 MiB), before [`Decoder::with_limits`] can lower them.
const READ_ON_OPEN: [Tag; 19] = [
    Tag::ImageWidth,
    Tag::ImageLength,
    Tag::BitsPerSample,
    Tag::Compression,
    Tag::PhotometricInterpretation,
    Tag::StripOffsets,
    Tag::SamplesPerPixel,
    Tag::RowsPerStrip,
    Tag::StripByteCounts,
    Tag::PlanarConfiguration,
    Tag::Predictor,
    Tag::TileWidth,
    Tag::TileLength,
    Tag::TileOffsets,
    Tag::TileByteCounts,
    Tag::ExtraSamples,
    Tag::SampleFormat,
    Tag::JPEGTables,
    Tag::ChromaSubsampling,
];

/// Refuses a first page whose tags that the decoder reads on opening declare more values than
/// [`MAX_TAG_BYTES`] allow: the decoder reserves memory for the values a tag declares before
/// reading them, so a count of a few hundred million in an 8 KB file would cost that much. (The
/// other pages are read under the limits.) A directory that does not fit in the file is left to
/// the decoder, which says so.
fn check_first_directory(bytes: &[u8], file: &str) -> Result<(), TiffError> {
    let big_endian = bytes.starts_with(b"MM");
    let big_tiff = matches!(bytes.get(2..4), Some([0x2b, 0x00] | [0x00, 0x2b]));
    let uint = |at: usize, n: usize| -> Option<u64> {
        let b = bytes.get(at..at.checked_add(n)?)?;
        let mut v = 0u64;
        for i in 0..n {
            let byte = if big_endian { b[i] } else { b[n - 1 - i] };
            v = (v << 8) | u64::from(byte);
        }
        Some(v)
    };
    let (offset_size, count_size, entry_size) = if big_tiff { (8, 8, 20) } else { (4, 2, 12) };
    let Some(first) = uint(if big_tiff { 8 } else { 4 }, offset_size).and_then(|o| usize::try_from(o).ok())
    else {
        return Ok(());
    };
    let Some(entries) = uint(first, count_size) else { return Ok(()) };
    let value_size = std::mem::size_of::<tiff::decoder::ifd::Value>() as u64;
    let start = first + count_size;
    for i in 0..entries.min((bytes.len() / entry_size) as u64) as usize {
        let at = start + i * entry_size;
        let (Some(tag), Some(count)) = (uint(at, 2), uint(at + 4, if big_tiff { 8 } else { 4 })) else {
            break;
        };
        let read_on_open = READ_ON_OPEN.iter().any(|t| u64::from(t.to_u16()) == tag);
        if read_on_open && count.saturating_mul(value_size) > MAX_TAG_BYTES as u64 {
            return Err(err(
                file,
                Problem::Damaged(format!(
                    "tag {tag} of the first page declares {count} values, far more than a page of at most \
                     {MAX_SIDE}x{MAX_SIDE} pixels needs"
                )),
            ));
        }
    }
    Ok(())
}

/// Reads the header of every page: sizes, sample type, compression, and where the strips are.
fn read_header(decoder: &mut TiffDecoder, file: &str, len: usize) -> Result<Header, TiffError> {
    let mut first: Option<Header> = None;
    let mut pages = 0usize;
    loop {
        let (w, h) = decoder.dimensions().map_err(|e| from_tiff(file, e))?;
        if w as usize > MAX_SIDE || h as usize > MAX_SIDE {
            return Err(err(file, Problem::TooLarge { width: w.into(), height: h.into() }));
        }
        if w == 0 || h == 0 {
            return Err(err(file, Problem::Damaged(format!("page {pages} is {w}x{h} pixels"))));
        }
        let page = [h as usize, w as usize];
        let kind = sample_kind(decoder, file)?;
        check_compression(decoder, file)?;
        check_chunks_present(decoder, file, len, pages)?;
        if let Some(first) = &first {
            if first.page != page {
                return Err(err(file, Problem::MixedPages { page: pages, found: page, first: first.page }));
            }
            if first.kind != kind {
                return Err(err(
                    file,
                    Problem::MixedTypes { page: pages, found: kind.name(), first: first.kind.name() },
                ));
            }
        } else {
            first = Some(Header { pages: 0, page, kind });
        }
        pages += 1;
        if !decoder.more_images() {
            break;
        }
        if pages == MAX_PAGES {
            return Err(err(file, Problem::TooManyPages));
        }
        decoder.next_image().map_err(|e| from_tiff(file, e))?;
    }
    let Some(first) = first else {
        return Err(err(file, Problem::Damaged("it holds no image".into())));
    };
    Ok(Header { pages, ..first })
}

/// The sample type a page declares; anything but single-channel uint8, uint16 or float32 is
/// refused here, before decoding.
fn sample_kind(decoder: &mut TiffDecoder, file: &str) -> Result<Kind, TiffError> {
    let colortype = decoder.colortype().map_err(|e| from_tiff(file, e))?;
    let format = decoder
        .find_tag_unsigned_vec::<u16>(Tag::SampleFormat)
        .map_err(|e| from_tiff(file, e))?
        .and_then(|f| f.first().copied())
        .unwrap_or(1);
    match (colortype, format) {
        (ColorType::Gray(8), 1) => Ok(Kind::U8),
        (ColorType::Gray(16), 1) => Ok(Kind::U16),
        (ColorType::Gray(32), 3) => Ok(Kind::F32),
        (ColorType::Gray(32), 1) => Err(err(file, Problem::Unsupported("uint32".into()))),
        (ColorType::Gray(_), 2) => Err(err(file, Problem::Unsupported("signed integers".into()))),
        (ColorType::Gray(bits), 3) => Err(err(file, Problem::Unsupported(format!("{bits}-bit floats")))),
        (ColorType::Gray(bits), 1) => Err(err(file, Problem::Unsupported(format!("{bits}-bit samples")))),
        (other, 1..=3) => Err(err(file, Problem::Unsupported(format!("{other:?}")))),
        (other, format) => Err(err(file, Problem::Unsupported(format!("{other:?}, sample format {format}")))),
    }
}

/// Refuses compressions other than none, LZW, Deflate and PackBits before any data is decoded:
/// JPEG and WebP are lossy (a mask must keep its values) and their decoders size their buffers
/// from headers of their own.
fn check_compression(decoder: &mut TiffDecoder, file: &str) -> Result<(), TiffError> {
    let compression = decoder.find_tag_unsigned::<u16>(Tag::Compression).map_err(|e| from_tiff(file, e))?;
    match compression {
        None | Some(1 | 5 | 8 | 32946 | 32773) => Ok(()),
        Some(other) => Err(err(file, Problem::Unsupported(format!("compression {other}")))),
    }
}

/// Decodes the pages a checked header declares, each under decoder limits of one page.
fn read_pixels(decoder: TiffDecoder, file: &str, header: Header, len: usize) -> Result<Stack, TiffError> {
    let page_len = header.page[0] * header.page[1];
    let mut limits = Limits::default();
    limits.decoding_buffer_size = (page_len * header.kind.bytes()).max(MAX_TAG_BYTES);
    // Compressed strips lie within the file (checked with the header), which is in memory.
    limits.intermediate_buffer_size = len;
    let mut decoder = decoder.with_limits(limits);
    let total = header.pages * page_len;
    let mut samples = match header.kind {
        Kind::U8 => Samples::U8(Vec::with_capacity(total)),
        Kind::U16 => Samples::U16(Vec::with_capacity(total)),
        Kind::F32 => Samples::F32(Vec::with_capacity(total)),
    };
    for page in 0..header.pages {
        decoder.seek_to_image(page).map_err(|e| from_tiff(file, e))?;
        let decoded = decoder.read_image().map_err(|e| from_tiff(file, e))?;
        let got = match (&mut samples, decoded) {
            (Samples::U8(all), DecodingResult::U8(v)) => append(all, v, page_len),
            (Samples::U16(all), DecodingResult::U16(v)) => append(all, v, page_len),
            (Samples::F32(all), DecodingResult::F32(v)) => append(all, v, page_len),
            _ => {
                return Err(err(
                    file,
                    Problem::Damaged(format!("page {page} decodes to another type than its header declares")),
                ));
            }
        };
        if got != page_len {
            return Err(err(
                file,
                Problem::Truncated(format!("page {page} holds {got} of its {page_len} pixels")),
            ));
        }
    }
    Ok(Stack { dims: header.dims(), samples })
}

/// Appends a decoded page when it has exactly `page_len` samples; returns how many it has.
fn append<T>(all: &mut Vec<T>, page: Vec<T>, page_len: usize) -> usize {
    let got = page.len();
    if got == page_len {
        all.extend(page);
    }
    got
}

/// Refuses a page whose strips or tiles reach past the end of the file. The decoder reads short
/// uncompressed strips without complaint (the missing pixels come back as zeros), so a truncated
/// upload would otherwise pass as a valid, partly black image.
fn check_chunks_present(
    decoder: &mut TiffDecoder,
    file: &str,
    len: usize,
    page: usize,
) -> Result<(), TiffError> {
    let (offsets, counts) =
        match decoder.find_tag_unsigned_vec::<u64>(Tag::StripOffsets).map_err(|e| from_tiff(file, e))? {
            Some(offsets) => (offsets, decoder.find_tag_unsigned_vec::<u64>(Tag::StripByteCounts)),
            None => (
                decoder
                    .find_tag_unsigned_vec::<u64>(Tag::TileOffsets)
                    .map_err(|e| from_tiff(file, e))?
                    .unwrap_or_default(),
                decoder.find_tag_unsigned_vec::<u64>(Tag::TileByteCounts),
            ),
        };
    let counts = counts.map_err(|e| from_tiff(file, e))?.unwrap_or_default();
    for (offset, count) in offsets.iter().zip(&counts) {
        if offset.saturating_add(*count) > len as u64 {
            return Err(err(
                file,
                Problem::Truncated(format!(
                    "page {page} has data up to byte {} but the file has only {len} bytes",
                    offset.saturating_add(*count)
                )),
            ));
        }
    }
    Ok(())
}

/// Reads a whole file into memory, naming it in the error.
pub fn read_file(path: &Path) -> Result<Vec<u8>, TiffError> {
    std::fs::read(path).map_err(|e| err(&path.display().to_string(), Problem::Io(e)))
}

fn describe(dims: [usize; 3]) -> String {
    match dims {
        [1, h, w] => format!("a {h}x{w} image"),
        [d, h, w] => format!("a {d}x{h}x{w} stack ({d} pages)"),
    }
}

impl Stack {
    /// Converts to 8-bit values in 0..=255, the unit of the dataset's images, masks and objs.
    ///
    /// uint8 is kept as is. uint16 is kept as is when all values are at most 255 (8-bit data
    /// saved in a 16-bit file), otherwise mapped from 0..=65535. float32 in [0, 1] is scaled by
    /// 255, float32 in [0, 255] is rounded; anything else (negative, larger, NaN) is refused
    /// because there is no scale to guess.
    pub fn into_u8(self, file: &str) -> Result<Vec<u8>, TiffError> {
        Ok(match self.samples {
            Samples::U8(v) => v,
            Samples::U16(v) => {
                let wide = v.iter().any(|&x| x > 255);
                v.into_iter().map(|x| if wide { ((x as u32 + 128) / 257) as u8 } else { x as u8 }).collect()
            }
            Samples::F32(v) => {
                let nan = v.iter().filter(|x| x.is_nan()).count();
                let infinite = v.iter().filter(|x| x.is_infinite()).count();
                if nan > 0 || infinite > 0 {
                    let what = match (nan, infinite) {
                        (n, 0) => format!("{n} of its {} pixels are NaN", v.len()),
                        (0, i) => format!("{i} of its {} pixels are infinite", v.len()),
                        (n, i) => format!("{n} of its {} pixels are NaN and {i} infinite", v.len()),
                    };
                    return Err(err(
                        file,
                        Problem::BadValues(format!(
                            "{what}: an image's pixels must be numbers; export it again without them"
                        )),
                    ));
                }
                let (lo, hi) =
                    v.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(l, h), &x| (l.min(x), h.max(x)));
                if lo < 0.0 || hi > 255.0 {
                    return Err(err(
                        file,
                        Problem::BadValues(format!(
                            "float values span {lo}..{hi}; 8-bit data is read from floats in 0..1 or 0..255: \
                             rescale the file"
                        )),
                    ));
                }
                let scale = if hi <= 1.0 { 255.0 } else { 1.0 };
                v.into_iter().map(|x| (x * scale).round() as u8).collect()
            }
        })
    }

    /// Converts to float values in [0, 1]: uint8 / 255, uint16 / 65535, float32 as stored.
    pub fn into_unit_f32(self) -> Vec<f32> {
        match self.samples {
            Samples::U8(v) => v.into_iter().map(|x| x as f32 / 255.0).collect(),
            Samples::U16(v) => v.into_iter().map(|x| x as f32 / 65535.0).collect(),
            Samples::F32(v) => v,
        }
    }
}

/// Reads an 8-bit image (see [`Stack::into_u8`]) that must be `expected = [height, width]`;
/// `role` ("image", "mask") names what it is for in the error.
pub fn read_image_u8(
    bytes: &[u8],
    file: &str,
    role: &str,
    expected: [usize; 2],
) -> Result<Image2d<u8>, TiffError> {
    let stack = decode_as(bytes, file, Some(Want { role, dims: [1, expected[0], expected[1]] }))?;
    let data = stack.into_u8(file)?;
    Ok(Image2d { dims: expected, data })
}

/// Reads an 8-bit volume that must be `expected = [depth, height, width]`.
pub fn read_volume_u8(
    bytes: &[u8],
    file: &str,
    role: &str,
    expected: [usize; 3],
) -> Result<Volume<u8>, TiffError> {
    let stack = decode_as(bytes, file, Some(Want { role, dims: expected }))?;
    let data = stack.into_u8(file)?;
    Ok(Volume { dims: expected, data })
}

/// Reads a volume as floats in [0, 1] (see [`Stack::into_unit_f32`]) that must be `expected`.
pub fn read_volume_f32(
    bytes: &[u8],
    file: &str,
    role: &str,
    expected: [usize; 3],
) -> Result<Volume<f32>, TiffError> {
    let stack = decode_as(bytes, file, Some(Want { role, dims: expected }))?;
    Ok(Volume { dims: expected, data: stack.into_unit_f32() })
}

/// The ImageJ description that makes Fiji and tifffile read the pages as one z-stack.
fn imagej_description(pages: usize, range: Option<(f32, f32)>) -> String {
    let mut s = format!("ImageJ=1.11a\nimages={pages}\nslices={pages}\nloop=false\n");
    if let Some((lo, hi)) = range {
        s.push_str(&format!("min={lo:?}\nmax={hi:?}\n"));
    }
    s
}

/// One colour type per sample type we write, so the volume and image encoders are one function.
trait Writable: Copy {
    type Color: colortype::ColorType<Inner = Self>;
    /// The display range ImageJ should use for this type, if not the type's full range.
    const RANGE: Option<(f32, f32)>;
    /// The predictor before compression: horizontal differencing for integers; the `tiff` crate
    /// has none for floats.
    const PREDICTOR: Predictor;
}
impl Writable for u8 {
    type Color = colortype::Gray8;
    const RANGE: Option<(f32, f32)> = None;
    const PREDICTOR: Predictor = Predictor::Horizontal;
}
impl Writable for f32 {
    type Color = colortype::Gray32Float;
    const RANGE: Option<(f32, f32)> = Some((0.0, 1.0));
    const PREDICTOR: Predictor = Predictor::None;
}

fn encode_pages<T: Writable>(dims: [usize; 3], data: &[T], stack: bool) -> Result<Vec<u8>, TiffError>
where
    [T]: tiff::encoder::TiffValue,
{
    let fail = |m: String| err("(encoding)", Problem::Encode(m));
    let [d, h, w] = dims;
    if data.len() != d * h * w || d == 0 {
        return Err(fail(format!("{} values do not fill dimensions {dims:?}", data.len())));
    }
    let mut out = Cursor::new(Vec::with_capacity(std::mem::size_of_val(data) / 4 + d * 256));
    let encoder = TiffEncoder::new(&mut out).map_err(|e| fail(e.to_string()))?;
    // Volumes are most of what a run writes: deflate (which Fiji, tifffile and every TIFF reader
    // decode without plugins), after the horizontal predictor where the type allows it (integers;
    // it turns a shape's runs of equal values into zeros). Single images stay uncompressed, as
    // the datasets' own files are.
    let mut encoder = if stack {
        encoder.with_compression(Compression::Deflate(DeflateLevel::Balanced)).with_predictor(T::PREDICTOR)
    } else {
        encoder
    };
    let description = imagej_description(d, T::RANGE);
    for (z, page) in data.chunks_exact(h * w).enumerate() {
        let mut image = encoder.new_image::<T::Color>(w as u32, h as u32).map_err(|e| fail(e.to_string()))?;
        if stack && z == 0 {
            image
                .encoder()
                .write_tag(Tag::ImageDescription, description.as_str())
                .map_err(|e| fail(e.to_string()))?;
        }
        image.write_data(page).map_err(|e| fail(e.to_string()))?;
    }
    Ok(out.into_inner())
}

/// Encodes an 8-bit volume as a deflate-compressed ImageJ hyperstack (one page per z).
pub fn encode_volume_u8(volume: &Volume<u8>) -> Result<Vec<u8>, TiffError> {
    encode_pages(volume.dims, &volume.data, true)
}

/// Encodes a float32 volume (the sampler's output in [0, 1]) as a deflate-compressed ImageJ
/// hyperstack with display range 0..1.
pub fn encode_volume_f32(volume: &Volume<f32>) -> Result<Vec<u8>, TiffError> {
    encode_pages(volume.dims, &volume.data, true)
}

/// Largest difference between a value in [0, 1] and its [`quantise_unit`] level read back as
/// `level / 255` (what [`read_volume_f32`] returns for uint8): half a step.
pub const QUANTISATION_BOUND: f32 = 0.5 / 255.0;

/// A value in [0, 1] as the nearest of 256 levels, `round(255 x)`; values outside are clamped
/// (and NaN is 0), so the result is always a valid level.
pub fn quantise_unit(x: f32) -> u8 {
    if x.is_nan() { 0 } else { (x.clamp(0.0, 1.0) * 255.0).round() as u8 }
}

/// Encodes a volume of values in [0, 1] as an 8-bit stack of [`quantise_unit`] levels: a quarter
/// of float32's size before compression, within [`QUANTISATION_BOUND`] of each value.
pub fn encode_volume_unit_u8(volume: &Volume<f32>) -> Result<Vec<u8>, TiffError> {
    let data = volume.data.iter().copied().map(quantise_unit).collect();
    encode_volume_u8(&Volume { dims: volume.dims, data })
}

/// Encodes an 8-bit image as a single-page TIFF.
pub fn encode_image_u8(image: &Image2d<u8>) -> Result<Vec<u8>, TiffError> {
    encode_pages([1, image.dims[0], image.dims[1]], &image.data, false)
}

/// Encodes a float32 image as a single-page TIFF.
pub fn encode_image_f32(image: &Image2d<f32>) -> Result<Vec<u8>, TiffError> {
    encode_pages([1, image.dims[0], image.dims[1]], &image.data, false)
}
