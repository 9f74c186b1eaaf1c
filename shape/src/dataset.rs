//! The dataset layout of DESIGN.md, on a local folder or an S3 prefix:
//!
//! ```text
//! image/<cell>.tif   64x64 uint8 fluorescence, central slice
//! mask/<cell>.tif    64x64 uint8 0..255 segmentation of that slice
//! obj/<cell>.tif     optional ground truth: 64 pages of 64x64 uint8, z first
//! labels.csv         optional `cell,class[,subclass]`; otherwise the class comes from the name
//! ```
//!
//! The layout logic is pure ([`index_from_listing`] over a key listing and the bytes of
//! `labels.csv`), so it is tested without any storage; [`Dataset`] puts it on a
//! [`dispr_store::Store`] and reads cells.

use crate::tiff_io::{self, TiffError};
use crate::volume::{Image2d, SIDE, Volume};
use dispr_proto::{CellId, IdError, keys};
use dispr_store::{Store, StoreError};
use std::collections::{BTreeMap, BTreeSet};

/// Class names used for the real RBC dataset (and the synthetic one).
pub mod class {
    pub const SDE: &str = "SDE";
    pub const ACANTHOCYTE: &str = "acanthocyte";
    pub const CLUSTER: &str = "cluster";
    pub const KERATOCYTE: &str = "keratocyte";
    pub const KNIZOCYTE: &str = "knizocyte";
    pub const MULTILOBATE: &str = "multilobate";
}

/// A file-name prefix of the real RBC dataset and the label it stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KnownPrefix {
    pub prefix: &'static str,
    pub class: &'static str,
    pub subclass: Option<&'static str>,
}

const fn known(prefix: &'static str, class: &'static str, subclass: Option<&'static str>) -> KnownPrefix {
    KnownPrefix { prefix, class, subclass }
}

/// The prefixes of the real 825-cell RBC dataset (cells are named `<prefix><digits>`). The SDE
/// sub-classes carry their position on the stomatocyte-discocyte-echinocyte scale.
pub const KNOWN_PREFIXES: &[KnownPrefix] = &[
    known("A_cell_clusters", class::CLUSTER, None),
    known("B_keratocytes", class::KERATOCYTE, None),
    known("C_knizocytes", class::KNIZOCYTE, None),
    known("D_multilobate_cells", class::MULTILOBATE, None),
    known("E_acanthocytes", class::ACANTHOCYTE, None),
    known("-0.67_stomatocyte_II", class::SDE, Some("stomatocyte_II")),
    known("-0.33_stomatocyte_I", class::SDE, Some("stomatocyte_I")),
    known("-1.00_spherocyte", class::SDE, Some("spherocyte")),
    known("0.00_discocyte", class::SDE, Some("discocyte")),
    known("0.33_echinocyte_I", class::SDE, Some("echinocyte_I")),
    known("0.67_echinocyte_II", class::SDE, Some("echinocyte_II")),
    known("1.00_echinocyte_III", class::SDE, Some("echinocyte_III")),
];

/// The class of a cell, and its sub-class where the dataset has one (the SDE shapes).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Label {
    pub class: String,
    pub subclass: Option<String>,
}

/// The label a cell's name implies: a known prefix of the real dataset maps to its class (and
/// sub-class); any other name's prefix before the trailing digits is the class itself. `None`
/// when the name has no prefix (all digits).
pub fn label_from_name(cell: &str) -> Option<Label> {
    let prefix = cell.trim_end_matches(|c: char| c.is_ascii_digit());
    if let Some(k) = KNOWN_PREFIXES.iter().find(|k| k.prefix == prefix) {
        return Some(Label { class: k.class.to_string(), subclass: k.subclass.map(str::to_string) });
    }
    let class = prefix.trim_end_matches(['_', '-', '.']);
    (!class.is_empty()).then(|| Label { class: class.to_string(), subclass: None })
}

/// A cell of a dataset index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatasetCell {
    pub id: CellId,
    pub label: Label,
    /// Whether `obj/<cell>.tif` exists (ground truth for training and evaluation).
    pub has_obj: bool,
}

/// The cells of a dataset, sorted by id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatasetIndex {
    pub cells: Vec<DatasetCell>,
    /// Keys under image/, mask/ and obj/ that are not cells of the layout (other files,
    /// sub-folders), which the reader skips; commands warn about them.
    pub ignored: Vec<String>,
}

impl DatasetIndex {
    /// Number of cells per class, sorted by class name.
    pub fn class_counts(&self) -> BTreeMap<&str, usize> {
        let mut counts = BTreeMap::new();
        for c in &self.cells {
            *counts.entry(c.label.class.as_str()).or_insert(0) += 1;
        }
        counts
    }

    /// The cell named `id`, if the dataset has it.
    pub fn get(&self, id: &CellId) -> Option<&DatasetCell> {
        self.cells.binary_search_by(|c| c.id.cmp(id)).ok().map(|i| &self.cells[i])
    }
}

/// Where the dataset layout is documented, for messages.
pub const LAYOUT_DOC: &str = "docs/datasets.md";

/// Why a dataset cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    /// The dataset's location (a local folder) does not exist.
    #[error(
        "the folder does not exist; check the path (a relative one is taken from the folder the \
         command runs in)"
    )]
    Missing,
    #[error(
        "no cells found: a dataset holds image/<cell>.tif and mask/<cell>.tif files (and optionally \
         obj/<cell>.tif and labels.csv, see {LAYOUT_DOC}); check the dataset location, or make a synthetic \
         one with `dispr-coordinator synth --out <folder> --cells 50`"
    )]
    Empty,
    #[error("{key}: {source}")]
    BadId { key: String, source: IdError },
    #[error("{}", unpaired_message(.without_mask, .without_image))]
    Unpaired { without_mask: Vec<String>, without_image: Vec<String> },
    #[error(
        "{} file(s) end in another spelling of .tif: {}; the layout reads <cell>.tif only, so rename them \
         (for example image/x.tiff to image/x.tif)",
        .files.len(), name_list(.files)
    )]
    WrongExtension { files: Vec<String> },
    #[error(
        "cell {cell}: the name has no class prefix before its digits; give its class in labels.csv (cell,class[,subclass])"
    )]
    NoClass { cell: String },
    #[error(
        "labels.csv line {line}: {problem}; labels.csv has one line per cell, `cell,class` or \
         `cell,class,subclass`, comma-separated UTF-8 text (see {LAYOUT_DOC})"
    )]
    Labels { line: u64, problem: String },
    #[error("labels.csv: {0}")]
    LabelsMismatch(String),
    #[error("cell {cell} is not in the dataset index")]
    UnknownCell { cell: String },
    #[error("decoding task failed: {0}")]
    Task(String),
    #[error(transparent)]
    Tiff(#[from] TiffError),
    #[error("{what}: {source}")]
    Store { what: String, source: StoreError },
    /// A dataset that cannot be used, with its location.
    #[error("dataset {uri}: {problem}")]
    At { uri: String, problem: Box<DatasetError> },
}

impl DatasetError {
    /// Whether this is a cell's file that cannot be one (too large, a folder, a FIFO, a link to
    /// nothing): that cell's problem, not the dataset's or the store's.
    pub fn is_unusable_file(&self) -> bool {
        use dispr_store::ErrorKind;
        matches!(self.problem(), DatasetError::Store { source, .. }
            if matches!(source.kind(), ErrorKind::TooLarge | ErrorKind::NotAFile))
    }

    /// The problem itself, without the location [`DatasetError::At`] adds.
    pub fn problem(&self) -> &DatasetError {
        match self {
            DatasetError::At { problem, .. } => problem.problem(),
            other => other,
        }
    }
}

fn name_list(names: &[String]) -> String {
    const SHOWN: usize = 10;
    let mut s = names.iter().take(SHOWN).cloned().collect::<Vec<_>>().join(", ");
    if names.len() > SHOWN {
        s.push_str(&format!(" and {} more", names.len() - SHOWN));
    }
    s
}

fn unpaired_message(without_mask: &[String], without_image: &[String]) -> String {
    let mut parts = Vec::new();
    if !without_mask.is_empty() {
        parts.push(format!(
            "{} cell(s) have an image but no mask/<cell>.tif: {}",
            without_mask.len(),
            name_list(without_mask)
        ));
    }
    if !without_image.is_empty() {
        parts.push(format!(
            "{} cell(s) have a mask or obj but no image/<cell>.tif: {}",
            without_image.len(),
            name_list(without_image)
        ));
    }
    format!(
        "{}; every cell needs both image/<cell>.tif and mask/<cell>.tif: add the missing files or move the \
         others out of the dataset",
        parts.join("; ")
    )
}

/// What one folder of the layout holds.
#[derive(Default)]
struct Listed {
    /// Cells whose `<folder>/<cell>.tif` exists.
    cells: BTreeSet<CellId>,
    /// `<folder>/<cell>.tiff`, `.TIF` and the like, which the layout does not read.
    misspelt: Vec<String>,
    /// Other files and sub-folders.
    ignored: Vec<String>,
}

/// Sorts the keys under one folder of the layout into cells, misspelt TIFFs and other files.
fn cells_under(keys: &[String], folder: &str) -> Result<Listed, DatasetError> {
    let mut listed = Listed::default();
    for key in keys {
        let Some(name) = key.strip_prefix(folder) else { continue };
        // Only direct children; sub-folders and other files (notes, .DS_Store) are not cells.
        if name.contains('/') {
            listed.ignored.push(key.clone());
            continue;
        }
        if let Some(stem) = name.strip_suffix(".tif") {
            let id = CellId::new(stem).map_err(|source| DatasetError::BadId { key: key.clone(), source })?;
            listed.cells.insert(id);
        } else if name
            .rsplit_once('.')
            .is_some_and(|(_, ext)| matches!(ext.to_ascii_lowercase().as_str(), "tif" | "tiff"))
        {
            listed.misspelt.push(key.clone());
        } else {
            listed.ignored.push(key.clone());
        }
    }
    Ok(listed)
}

/// Parses `labels.csv`: `cell,class[,subclass]`, with or without a header row, in UTF-8 (a
/// byte-order mark is allowed). Whatever a spreadsheet or an editor may have made of it instead
/// (UTF-16 or Latin-1 text, `;` or tab separators, a binary file, empty classes, duplicate rows)
/// is refused with its line and what to do.
pub fn parse_labels(bytes: &[u8]) -> Result<BTreeMap<CellId, Label>, DatasetError> {
    let text = check_text(bytes)?;
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes());
    let mut labels = BTreeMap::new();
    for (i, record) in reader.records().enumerate() {
        let record = record.map_err(|e| {
            let line = e.position().map_or(i as u64 + 1, |p| p.line());
            DatasetError::Labels { line, problem: format!("it cannot be read as CSV ({e})") }
        })?;
        let line = record.position().map_or(i as u64 + 1, |p| p.line());
        let bad = |problem: String| DatasetError::Labels { line, problem };
        if record.iter().all(str::is_empty) {
            continue;
        }
        if i == 0 && record.get(0).is_some_and(|f| f.eq_ignore_ascii_case("cell")) {
            continue;
        }
        if record.len() == 1
            && let Some(sep) = [';', '\t', '|'].into_iter().find(|&c| record[0].contains(c))
        {
            let sep = if sep == '\t' { "tabs".to_string() } else { format!("'{sep}'") };
            return Err(bad(format!(
                "its fields are separated by {sep}, not commas: save the file with commas"
            )));
        }
        if !(2..=3).contains(&record.len()) {
            return Err(bad(format!(
                "it has {} field(s) ({:?})",
                record.len(),
                record.iter().collect::<Vec<_>>().join(",")
            )));
        }
        let id = CellId::new(&record[0]).map_err(|e| bad(format!("the cell id is not valid: {e}")))?;
        let class = record[1].to_string();
        if class.is_empty() {
            return Err(bad(format!("cell {id} has an empty class: give its class or remove the line")));
        }
        let subclass = record.get(2).filter(|s| !s.is_empty()).map(str::to_string);
        if let Some(first) = labels.insert(id.clone(), (line, Label { class, subclass })) {
            return Err(bad(format!("cell {id} is listed twice (first on line {}): keep one line", first.0)));
        }
    }
    Ok(labels.into_iter().map(|(id, (_, label))| (id, label)).collect())
}

/// `labels.csv` as UTF-8 text, or why it is not: UTF-16 (a spreadsheet's "Unicode text"),
/// another 8-bit encoding (Latin-1, Windows-1252) or a binary file, with the line where it shows.
fn check_text(bytes: &[u8]) -> Result<&str, DatasetError> {
    let at = |offset: usize| bytes[..offset].iter().filter(|&&b| b == b'\n').count() as u64 + 1;
    let bad = |line: u64, problem: &str| DatasetError::Labels { line, problem: problem.to_string() };
    let utf16 = bytes.starts_with(&[0xff, 0xfe])
        || bytes.starts_with(&[0xfe, 0xff])
        || (bytes.len() >= 4
            && bytes.iter().take(64).filter(|&&b| b == 0).count() * 3 >= bytes.len().min(64));
    if utf16 {
        return Err(bad(
            1,
            "the file is UTF-16 text, not UTF-8: save it as \"CSV UTF-8\" or plain UTF-8 text",
        ));
    }
    let text = bytes.strip_prefix(&[0xef, 0xbb, 0xbf]).unwrap_or(bytes);
    let skipped = bytes.len() - text.len();
    let text = std::str::from_utf8(text).map_err(|e| {
        let offset = skipped + e.valid_up_to();
        bad(
            at(offset),
            &format!(
                "byte 0x{:02x} is not UTF-8 text (a file saved as Latin-1 or Windows-1252?): save it as UTF-8",
                bytes[offset]
            ),
        )
    })?;
    if let Some(offset) = text.find(|c: char| c.is_control() && !matches!(c, '\n' | '\r' | '\t')) {
        return Err(bad(
            at(skipped + offset),
            "it holds binary data, not text: is this the labels file? labels.csv is plain text",
        ));
    }
    Ok(text)
}

/// Writes `labels.csv` (`cell,class,subclass` with a header), the format [`parse_labels`] reads.
pub fn write_labels<'a>(cells: impl IntoIterator<Item = (&'a CellId, &'a Label)>) -> Vec<u8> {
    let mut out = String::from("cell,class,subclass\n");
    for (id, label) in cells {
        // Ids are [A-Za-z0-9._-]; class names are ours or read back from such a file: no quoting needed
        // unless a user's class has a comma, which csv quoting handles below.
        let field = |s: &str| {
            if s.contains([',', '"', '\n']) {
                format!("\"{}\"", s.replace('"', "\"\""))
            } else {
                s.to_string()
            }
        };
        out.push_str(&format!(
            "{id},{},{}\n",
            field(&label.class),
            field(label.subclass.as_deref().unwrap_or(""))
        ));
    }
    out.into_bytes()
}

/// Builds the index of a dataset from the keys of its store (relative to the dataset root) and
/// the bytes of its `labels.csv`, if it has one.
pub fn index_from_listing(keys: &[String], labels_csv: Option<&[u8]>) -> Result<DatasetIndex, DatasetError> {
    let images = cells_under(keys, keys::DATASET_IMAGE_DIR)?;
    let masks = cells_under(keys, keys::DATASET_MASK_DIR)?;
    let objs = cells_under(keys, keys::DATASET_OBJ_DIR)?;
    let misspelt: Vec<String> =
        [&images, &masks, &objs].iter().flat_map(|l| l.misspelt.iter().cloned()).collect();
    if !misspelt.is_empty() {
        return Err(DatasetError::WrongExtension { files: misspelt });
    }
    let without_mask: Vec<String> = images.cells.difference(&masks.cells).map(|c| c.to_string()).collect();
    let without_image: Vec<String> = masks
        .cells
        .union(&objs.cells)
        .filter(|c| !images.cells.contains(*c))
        .map(|c| c.to_string())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    if !without_mask.is_empty() || !without_image.is_empty() {
        return Err(DatasetError::Unpaired { without_mask, without_image });
    }
    if images.cells.is_empty() {
        return Err(DatasetError::Empty);
    }
    let mut labels = labels_csv.map(parse_labels).transpose()?;
    let mut cells = Vec::with_capacity(images.cells.len());
    for id in images.cells {
        let label = match &mut labels {
            Some(labels) => labels.remove(&id).ok_or_else(|| {
                DatasetError::LabelsMismatch(format!(
                    "cell {id} has no row; list every cell of image/ in labels.csv"
                ))
            })?,
            None => {
                label_from_name(id.as_str()).ok_or_else(|| DatasetError::NoClass { cell: id.to_string() })?
            }
        };
        let has_obj = objs.cells.contains(&id);
        cells.push(DatasetCell { id, label, has_obj });
    }
    if let Some(extra) = labels.and_then(|l| l.into_keys().next()) {
        return Err(DatasetError::LabelsMismatch(format!(
            "cell {extra} is listed but has no image/{extra}.tif; remove the row or add the files"
        )));
    }
    let ignored = [images.ignored, masks.ignored, objs.ignored].concat();
    Ok(DatasetIndex { cells, ignored })
}

/// The sizes a dataset's files must have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    /// `[height, width]` of images and masks.
    pub image: [usize; 2],
    /// `[depth, height, width]` of obj volumes.
    pub obj: [usize; 3],
}

impl Geometry {
    /// The DISPR model's: 64x64 images, 64^3 volumes.
    pub const DISPR64: Geometry = Geometry { image: [SIDE, SIDE], obj: [SIDE, SIDE, SIDE] };

    /// The largest file of a cell a reader fetches: four times an uncompressed float32 obj
    /// volume (4 MiB for 64^3), room for any encoding and metadata of a file of the right
    /// shape. A larger file cannot be one and is refused before its bytes are fetched.
    pub fn max_file_bytes(&self) -> u64 {
        let [d, h, w] = self.obj;
        (d * h * w * 4 * 4) as u64
    }
}

/// The files of one cell, decoded.
#[derive(Debug, Clone, PartialEq)]
pub struct CellData {
    pub id: CellId,
    pub label: Label,
    pub image: Image2d<u8>,
    pub mask: Image2d<u8>,
    pub obj: Option<Volume<u8>>,
}

/// Raw bytes of a cell's files, as fetched from a store.
#[derive(Debug, Clone)]
pub struct CellBytes {
    pub image: bytes::Bytes,
    pub mask: bytes::Bytes,
    pub obj: Option<bytes::Bytes>,
}

/// Decodes a cell's files and checks their sizes. Errors name the file by its key.
pub fn decode_cell(cell: &DatasetCell, files: &CellBytes, geometry: Geometry) -> Result<CellData, TiffError> {
    let id = &cell.id;
    let image = tiff_io::read_image_u8(&files.image, &keys::dataset_image(id), "image", geometry.image)?;
    let mask = tiff_io::read_image_u8(&files.mask, &keys::dataset_mask(id), "mask", geometry.image)?;
    let obj = match &files.obj {
        Some(b) => Some(tiff_io::read_volume_u8(b, &keys::dataset_obj(id), "obj volume", geometry.obj)?),
        None => None,
    };
    Ok(CellData { id: id.clone(), label: cell.label.clone(), image, mask, obj })
}

/// Encodes a cell's files, the inverse of [`decode_cell`]: `(key, bytes)` for image, mask and
/// obj (where there is one), keys relative to the dataset root.
pub fn encode_cell(cell: &CellData) -> Result<Vec<(String, Vec<u8>)>, TiffError> {
    let mut files = vec![
        (keys::dataset_image(&cell.id), tiff_io::encode_image_u8(&cell.image)?),
        (keys::dataset_mask(&cell.id), tiff_io::encode_image_u8(&cell.mask)?),
    ];
    if let Some(obj) = &cell.obj {
        files.push((keys::dataset_obj(&cell.id), tiff_io::encode_volume_u8(obj)?));
    }
    Ok(files)
}

/// The largest `labels.csv` read: a line per cell, so 64 MiB is about a million cells.
pub const MAX_LABELS_BYTES: u64 = 64 << 20;

/// The `<cell>.tif` entries of image/, mask/ and obj/ of a local dataset at `root` that are
/// there but are not files: a folder, a FIFO, a symbolic link to nothing. A store lists files
/// only, so without these such a cell would look unpaired ("no image/<cell>.tif") and the whole
/// dataset would be refused; listed, the cell is in the index, and reading its file fails that
/// cell alone with what the entry is and what to do.
fn entries_not_files(root: &std::path::Path) -> Vec<String> {
    let mut keys = Vec::new();
    for folder in [keys::DATASET_IMAGE_DIR, keys::DATASET_MASK_DIR, keys::DATASET_OBJ_DIR] {
        let Ok(entries) = std::fs::read_dir(root.join(folder)) else { continue };
        for entry in entries.flatten() {
            let Ok(name) = entry.file_name().into_string() else { continue };
            if name.ends_with(".tif") && !std::fs::metadata(entry.path()).is_ok_and(|m| m.is_file()) {
                keys.push(format!("{folder}{name}"));
            }
        }
    }
    keys
}

/// A dataset on a store: its index, and access to its cells.
#[derive(Debug, Clone)]
pub struct Dataset {
    store: Store,
    pub index: DatasetIndex,
    pub geometry: Geometry,
}

impl Dataset {
    /// Lists the store and reads `labels.csv` to build the index (64x64 / 64^3 geometry).
    ///
    /// This is the one reader of a dataset's layout: every command that takes a dataset opens it
    /// here, so a dataset that cannot be used is refused before any job is published, with the
    /// same message everywhere. Files it skips (not cells of the layout) are logged as warnings.
    pub async fn open(store: Store) -> Result<Self, DatasetError> {
        let uri = store.uri().to_string();
        let located =
            |problem: DatasetError| DatasetError::At { uri: uri.clone(), problem: Box::new(problem) };
        let list = |dir: &'static str| {
            let store = &store;
            async move {
                store
                    .list(dir)
                    .await
                    .map_err(|source| DatasetError::Store { what: format!("listing {dir}"), source })
            }
        };
        let labels = async {
            store
                .get_opt_at_most(keys::DATASET_LABELS, MAX_LABELS_BYTES)
                .await
                .map_err(|source| DatasetError::Store { what: "reading labels.csv".into(), source })
        };
        let (images, masks, objs, labels) = tokio::try_join!(
            list(keys::DATASET_IMAGE_DIR),
            list(keys::DATASET_MASK_DIR),
            list(keys::DATASET_OBJ_DIR),
            labels
        )
        .map_err(located)?;
        let mut keys = [images, masks, objs].concat();
        if let Some(root) = store.local_path() {
            let root = root.to_path_buf();
            let odd = tokio::task::spawn_blocking(move || entries_not_files(&root)).await.unwrap_or_default();
            keys.extend(odd);
        }
        if keys.is_empty()
            && labels.is_none()
            && let Some(path) = store.local_path()
            && !path.exists()
        {
            return Err(located(DatasetError::Missing));
        }
        let index = index_from_listing(&keys, labels.as_deref()).map_err(located)?;
        if !index.ignored.is_empty() {
            tracing::warn!(
                "dataset {uri}: skipping {} file(s) that are not <cell>.tif files of image/, mask/ or obj/: {}",
                index.ignored.len(),
                name_list(&index.ignored)
            );
        }
        Ok(Self { store, index, geometry: Geometry::DISPR64 })
    }

    /// The store the dataset lives on.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Fetches a cell's files (obj where the dataset has it).
    pub async fn fetch_cell(&self, id: &CellId) -> Result<(DatasetCell, CellBytes), DatasetError> {
        let cell =
            self.index.get(id).ok_or_else(|| DatasetError::UnknownCell { cell: id.to_string() })?.clone();
        let max = self.geometry.max_file_bytes();
        let get = |key: String| async move {
            self.store.get_at_most(&key, max).await.map_err(|source| DatasetError::Store {
                what: format!("{}: {key}", self.store.uri()),
                source,
            })
        };
        let image = get(keys::dataset_image(id)).await?;
        let mask = get(keys::dataset_mask(id)).await?;
        let obj = if cell.has_obj { Some(get(keys::dataset_obj(id)).await?) } else { None };
        Ok((cell, CellBytes { image, mask, obj }))
    }

    /// Fetches and decodes a cell; decoding runs on a blocking thread, off the async runtime.
    pub async fn load_cell(&self, id: &CellId) -> Result<CellData, DatasetError> {
        let (cell, files) = self.fetch_cell(id).await?;
        let geometry = self.geometry;
        let decoded = tokio::task::spawn_blocking(move || decode_cell(&cell, &files, geometry))
            .await
            .map_err(|e| DatasetError::Task(e.to_string()))?;
        Ok(decoded?)
    }
}
