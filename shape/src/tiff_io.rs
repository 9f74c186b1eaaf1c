//! Reading and writing the TIFF files of datasets and runs.
//!
//! Reading accepts what microscopy tools write for single-channel data: 2D images and multi-page
//! 3D stacks of uint8, uint16 or float32 samples, uncompressed, LZW or Deflate (the codecs of the
//! `tiff` crate). Files come from users and from object stores, so every failure is a
//! [`TiffError`] naming the file and saying what is wrong and what to do; sizes are checked
//! against [`MAX_PAGES`] and [`MAX_SIDE`] before any pixel buffer is allocated.
//!
//! Writing produces ImageJ hyperstacks for volumes (an `ImageJ=` description on the first page
//! with `images=` and `slices=`), so Fiji and Python's `tifffile` read a `(depth, height, width)`
//! ZYX array, and plain single-page TIFFs for images.

use crate::volume::{Image2d, Volume};
use std::io::Cursor;
use std::path::Path;
use tiff::decoder::{Decoder, DecodingResult, Limits};
use tiff::encoder::{TiffEncoder, colortype};
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
        "page {page} is {found:?} (height, width) but the first page is {first:?}: all pages of a stack must have one size"
    )]
    MixedPages { page: usize, found: [usize; 2], first: [usize; 2] },
    #[error(
        "page {page} uses {found} samples but the first page uses {first}: all pages of a stack must have one pixel type"
    )]
    MixedTypes { page: usize, found: &'static str, first: &'static str },
    #[error(
        "it is {found} but a {role} must be {expected}: resample or crop it to that size \
         (DISPR works on 64x64 images and 64x64x64 volumes)"
    )]
    WrongShape { role: String, found: String, expected: String },
    #[error("{0}")]
    BadValues(String),
    #[error("cannot read it: {0}")]
    Io(#[source] std::io::Error),
    #[error("cannot encode it: {0}")]
    Encode(String),
}

/// The samples of a decoded stack, in the type the file stores.
#[derive(Debug, Clone, PartialEq)]
pub enum Samples {
    U8(Vec<u8>),
    U16(Vec<u16>),
    F32(Vec<f32>),
}

impl Samples {
    fn type_name(&self) -> &'static str {
        match self {
            Samples::U8(_) => "uint8",
            Samples::U16(_) => "uint16",
            Samples::F32(_) => "float32",
        }
    }
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
        tiff::TiffError::LimitsExceeded => Problem::Damaged(
            "a tag or strip declares more data than a page of at most 4096x4096 can hold".into(),
        ),
        other => Problem::Damaged(other.to_string()),
    };
    err(file, problem)
}

/// Decodes a 2D or 3D TIFF from memory. `file` names it in errors (a path or an object key).
pub fn decode(bytes: &[u8], file: &str) -> Result<Stack, TiffError> {
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
    let mut limits = Limits::default();
    // One page of the largest accepted size in float32; anything a tag claims beyond it is refused.
    limits.decoding_buffer_size = MAX_SIDE * MAX_SIDE * 4;
    limits.intermediate_buffer_size = MAX_SIDE * MAX_SIDE * 4;
    let mut decoder = Decoder::new(Cursor::new(bytes)).map_err(|e| from_tiff(file, e))?.with_limits(limits);

    let mut first: Option<([usize; 2], Samples)> = None;
    let mut pages = 0usize;
    loop {
        let (w, h) = decoder.dimensions().map_err(|e| from_tiff(file, e))?;
        if w as usize > MAX_SIDE || h as usize > MAX_SIDE {
            return Err(err(file, Problem::TooLarge { width: w.into(), height: h.into() }));
        }
        let page_dims = [h as usize, w as usize];
        let colortype = decoder.colortype().map_err(|e| from_tiff(file, e))?;
        if !matches!(colortype, ColorType::Gray(8 | 16 | 32)) {
            return Err(err(file, Problem::Unsupported(format!("{colortype:?}"))));
        }
        if let Some((first_dims, _)) = &first
            && *first_dims != page_dims
        {
            return Err(err(file, Problem::MixedPages { page: pages, found: page_dims, first: *first_dims }));
        }
        check_chunks_present(&mut decoder, file, bytes.len(), pages)?;
        let page = decoder.read_image().map_err(|e| from_tiff(file, e))?;
        let page_len = page_dims[0] * page_dims[1];
        let page = match page {
            DecodingResult::U8(v) => Samples::U8(v),
            DecodingResult::U16(v) => Samples::U16(v),
            DecodingResult::F32(v) => Samples::F32(v),
            DecodingResult::U32(_) => return Err(err(file, Problem::Unsupported("uint32".into()))),
            DecodingResult::I8(_)
            | DecodingResult::I16(_)
            | DecodingResult::I32(_)
            | DecodingResult::I64(_) => {
                return Err(err(file, Problem::Unsupported("signed integers".into())));
            }
            _ => return Err(err(file, Problem::Unsupported(format!("{colortype:?} samples")))),
        };
        let got_len = match &page {
            Samples::U8(v) => v.len(),
            Samples::U16(v) => v.len(),
            Samples::F32(v) => v.len(),
        };
        if got_len < page_len {
            return Err(err(
                file,
                Problem::Truncated(format!("page {pages} holds {got_len} of its {page_len} pixels")),
            ));
        }
        pages += 1;
        first = Some(match first {
            None => (page_dims, page),
            Some((dims, acc)) => (dims, append(file, pages - 1, acc, page)?),
        });
        if !decoder.more_images() {
            break;
        }
        if pages == MAX_PAGES {
            return Err(err(file, Problem::TooManyPages));
        }
        decoder.next_image().map_err(|e| from_tiff(file, e))?;
    }
    let Some(([h, w], samples)) = first else {
        return Err(err(file, Problem::Damaged("it holds no image".into())));
    };
    Ok(Stack { dims: [pages, h, w], samples })
}

/// Refuses a page whose strips or tiles reach past the end of the file. The decoder reads short
/// uncompressed strips without complaint (the missing pixels come back as zeros), so a truncated
/// upload would otherwise pass as a valid, partly black image.
fn check_chunks_present(
    decoder: &mut Decoder<Cursor<&[u8]>>,
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

fn append(file: &str, page: usize, acc: Samples, next: Samples) -> Result<Samples, TiffError> {
    Ok(match (acc, next) {
        (Samples::U8(mut a), Samples::U8(b)) => {
            a.extend(b);
            Samples::U8(a)
        }
        (Samples::U16(mut a), Samples::U16(b)) => {
            a.extend(b);
            Samples::U16(a)
        }
        (Samples::F32(mut a), Samples::F32(b)) => {
            a.extend(b);
            Samples::F32(a)
        }
        (a, b) => {
            return Err(err(file, Problem::MixedTypes { page, found: b.type_name(), first: a.type_name() }));
        }
    })
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

fn check_shape(stack: &Stack, file: &str, role: &str, expected: [usize; 3]) -> Result<(), TiffError> {
    if stack.dims != expected {
        return Err(err(
            file,
            Problem::WrongShape {
                role: role.to_string(),
                found: describe(stack.dims),
                expected: describe(expected),
            },
        ));
    }
    Ok(())
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
                let (lo, hi) =
                    v.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(l, h), &x| (l.min(x), h.max(x)));
                if v.iter().any(|x| !x.is_finite()) || lo < 0.0 || hi > 255.0 {
                    return Err(err(
                        file,
                        Problem::BadValues(format!(
                            "float values span {lo}..{hi} (or include NaN/infinity); 8-bit data is read \
                             from floats in 0..1 or 0..255: rescale the file"
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
    let stack = decode(bytes, file)?;
    check_shape(&stack, file, role, [1, expected[0], expected[1]])?;
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
    let stack = decode(bytes, file)?;
    check_shape(&stack, file, role, expected)?;
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
    let stack = decode(bytes, file)?;
    check_shape(&stack, file, role, expected)?;
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
}
impl Writable for u8 {
    type Color = colortype::Gray8;
    const RANGE: Option<(f32, f32)> = None;
}
impl Writable for f32 {
    type Color = colortype::Gray32Float;
    const RANGE: Option<(f32, f32)> = Some((0.0, 1.0));
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
    let mut out = Cursor::new(Vec::with_capacity(std::mem::size_of_val(data) + d * 256));
    let mut encoder = TiffEncoder::new(&mut out).map_err(|e| fail(e.to_string()))?;
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
    // The encoder borrows `out` and has written everything; its last use ends the borrow.
    Ok(out.into_inner())
}

/// Encodes an 8-bit volume as an ImageJ hyperstack (one page per z).
pub fn encode_volume_u8(volume: &Volume<u8>) -> Result<Vec<u8>, TiffError> {
    encode_pages(volume.dims, &volume.data, true)
}

/// Encodes a float32 volume (the sampler's output in [0, 1]) as an ImageJ hyperstack with
/// display range 0..1.
pub fn encode_volume_f32(volume: &Volume<f32>) -> Result<Vec<u8>, TiffError> {
    encode_pages(volume.dims, &volume.data, true)
}

/// Encodes an 8-bit image as a single-page TIFF.
pub fn encode_image_u8(image: &Image2d<u8>) -> Result<Vec<u8>, TiffError> {
    encode_pages([1, image.dims[0], image.dims[1]], &image.data, false)
}

/// Encodes a float32 image as a single-page TIFF.
pub fn encode_image_f32(image: &Image2d<f32>) -> Result<Vec<u8>, TiffError> {
    encode_pages([1, image.dims[0], image.dims[1]], &image.data, false)
}
