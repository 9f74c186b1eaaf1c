//! `dispr-coordinator synth`: writes a synthetic red blood cell dataset (image/, mask/, obj/,
//! labels.csv) to a local folder or an S3 prefix, and optionally a preview montage; or draws the
//! same montage for an existing dataset (`--preview-dataset`), to compare synthetic and real cells.
//!
//! Cells are generated on a dedicated thread with rayon (compute never runs on the async
//! runtime) and handed over a bounded channel to the async side, which writes them to the store
//! with a few writes in flight.

use anyhow::{Context, bail};
use dispr_proto::keys;
use dispr_shape::dataset::{self, CellData, Dataset, Label};
use dispr_shape::preview;
use dispr_shape::synth::{self, SynthSpec};
use dispr_store::Store;
use futures::stream::{FuturesUnordered, StreamExt, TryStreamExt};
use rayon::prelude::*;
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Where to write the dataset: a local folder or s3://bucket/prefix.
    #[arg(long, required_unless_present = "preview_dataset")]
    pub out: Option<String>,
    /// Number of cells; class sizes follow the real 825-cell RBC dataset scaled to this.
    #[arg(long, default_value_t = synth::REAL_TOTAL)]
    pub cells: usize,
    /// Raise every class to at least this many cells (taken from the largest class) where
    /// --cells allows: 10 gives every test fold of a stratified 5-fold cross-validation 2 cells
    /// of each class (the demo's dataset is `--cells 210 --min-per-class 10`).
    #[arg(long, default_value_t = 1)]
    pub min_per_class: usize,
    /// Seed: the same seed writes byte-identical files.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Also write a PNG montage (image, mask and three maximum projections per cell, a row per
    /// class and sub-class) to this local file.
    #[arg(long)]
    pub preview: Option<PathBuf>,
    /// Generate nothing: draw the --preview montage of this existing dataset (folder or s3://).
    #[arg(long, requires = "preview", conflicts_with = "out")]
    pub preview_dataset: Option<String>,
    /// Cells per montage row.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=20))]
    pub preview_per_row: u16,
    /// Replace a dataset already at --out (its image/, mask/ and obj/ files and labels.csv).
    #[arg(long)]
    pub overwrite: bool,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    crate::runtime::block_on(async move {
        let per_row = args.preview_per_row as usize;
        if let Some(uri) = &args.preview_dataset {
            let png = args.preview.as_deref().context("--preview-dataset needs --preview <png>")?;
            return preview_dataset(uri, png, per_row).await;
        }
        let uri = args.out.as_deref().context("--out is required")?;
        if args.cells == 0 {
            bail!("--cells must be at least 1");
        }
        let store = Store::open(uri).with_context(|| format!("opening the output location {uri:?}"))?;
        prepare_output(&store, args.overwrite).await?;
        let keep = if args.preview.is_some() { per_row } else { 0 };
        let summary = generate_into(&store, args.cells, args.min_per_class, args.seed, keep).await?;
        println!(
            "wrote {} synthetic cells to {} in {:.1} s ({:.0} cells/s), seed {}",
            args.cells,
            store.uri(),
            summary.elapsed.as_secs_f64(),
            args.cells as f64 / summary.elapsed.as_secs_f64().max(1e-9),
            args.seed
        );
        for (class, n) in &summary.class_counts {
            println!("  {class:<12} {n}");
        }
        if let Some(png) = &args.preview {
            write_montage(summary.preview_cells, png, per_row).await?;
        }
        Ok(())
    })?
}

/// Refuses to mix a new dataset into an existing one, unless told to replace it.
async fn prepare_output(store: &Store, overwrite: bool) -> anyhow::Result<()> {
    let mut existing = Vec::new();
    for dir in [keys::DATASET_IMAGE_DIR, keys::DATASET_MASK_DIR, keys::DATASET_OBJ_DIR] {
        existing.extend(store.list(dir).await.with_context(|| format!("listing {}", store.uri_of(dir)))?);
    }
    if store.exists(keys::DATASET_LABELS).await? {
        existing.push(keys::DATASET_LABELS.to_string());
    }
    if existing.is_empty() {
        return Ok(());
    }
    if !overwrite {
        bail!(
            "{} already holds a dataset ({} files, e.g. {}); choose an empty location or pass --overwrite to replace it",
            store.uri(),
            existing.len(),
            existing[0]
        );
    }
    futures::stream::iter(existing.iter().map(|key| async move {
        store.delete(key).await.with_context(|| format!("deleting {}", store.uri_of(key)))
    }))
    .buffer_unordered(16)
    .try_collect::<Vec<()>>()
    .await?;
    Ok(())
}

/// What [`generate_into`] did.
pub struct SynthSummary {
    pub elapsed: Duration,
    /// Cells per class.
    pub class_counts: BTreeMap<String, usize>,
    /// The first `keep_per_label` cells of each label, for a preview montage.
    pub preview_cells: Vec<CellData>,
}

/// One generated cell on its way to the store.
struct Generated {
    files: Vec<(String, Vec<u8>)>,
    kept: Option<CellData>,
}

/// Writes a synthetic dataset of `n` cells (every class at least `min_per_class` where `n`
/// allows) into `store` (which should be empty) and its labels.csv, keeping the first
/// `keep_per_label` cells of each label in memory for a preview.
pub async fn generate_into(
    store: &Store,
    n: usize,
    min_per_class: usize,
    seed: u64,
    keep_per_label: usize,
) -> anyhow::Result<SynthSummary> {
    let start = Instant::now();
    let specs = synth::plan_with_min(n, min_per_class);
    let labels: Vec<Label> = specs.iter().map(|s| s.kind.label()).collect();
    let keep: HashSet<usize> =
        preview::pick(&labels.iter().collect::<Vec<_>>(), keep_per_label).into_iter().collect();

    let (tx, mut rx) = tokio::sync::mpsc::channel::<anyhow::Result<Generated>>(64);
    let generator = std::thread::Builder::new().name("synth".into()).spawn({
        let specs: Vec<SynthSpec> = specs.clone();
        move || {
            specs.par_iter().enumerate().for_each_with(tx, |tx, (i, spec)| {
                if tx.is_closed() {
                    return; // the writer gave up on an error; stop generating
                }
                let cell = synth::generate(seed, spec);
                let msg = dataset::encode_cell(&cell)
                    .map(|files| Generated { files, kept: keep.contains(&i).then_some(cell) })
                    .with_context(|| format!("encoding cell {}", spec.id));
                let _ = tx.blocking_send(msg);
            })
        }
    })?;

    let bar = indicatif::ProgressBar::new(n as u64);
    if let Ok(style) =
        indicatif::ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} cells, {per_sec}, eta {eta}")
    {
        bar.set_style(style);
    }
    bar.set_message("generating");
    let mut preview_cells = Vec::new();
    let mut writes = FuturesUnordered::new();
    let mut open = true;
    while open || !writes.is_empty() {
        tokio::select! {
            msg = rx.recv(), if open && writes.len() < 32 => match msg {
                Some(generated) => {
                    let Generated { files, kept } = generated?;
                    preview_cells.extend(kept);
                    writes.push(write_files(store, files));
                }
                None => open = false,
            },
            Some(written) = writes.next() => {
                written?;
                bar.inc(1);
            }
        }
    }
    bar.finish_and_clear();
    // The generator has sent everything (the channel closed), so joining does not block long.
    tokio::task::spawn_blocking(move || generator.join())
        .await?
        .map_err(|_| anyhow::anyhow!("the generator thread panicked"))?;

    let ids: Vec<_> = specs.iter().map(|s| &s.id).collect();
    let csv = dataset::write_labels(ids.into_iter().zip(&labels));
    store
        .put(keys::DATASET_LABELS, csv.into())
        .await
        .with_context(|| format!("writing {}", store.uri_of(keys::DATASET_LABELS)))?;

    let mut class_counts = BTreeMap::new();
    for label in &labels {
        *class_counts.entry(label.class.clone()).or_insert(0) += 1;
    }
    Ok(SynthSummary { elapsed: start.elapsed(), class_counts, preview_cells })
}

async fn write_files(store: &Store, files: Vec<(String, Vec<u8>)>) -> anyhow::Result<()> {
    for (key, bytes) in files {
        store.put(&key, bytes.into()).await.with_context(|| format!("writing {}", store.uri_of(&key)))?;
    }
    Ok(())
}

/// Draws the montage of `cells` on a blocking thread and writes it to `png`.
async fn write_montage(cells: Vec<CellData>, png: &Path, per_row: usize) -> anyhow::Result<()> {
    let (bytes, rows) = tokio::task::spawn_blocking(move || {
        let m = preview::montage(&cells, per_row);
        preview::encode_png(&m.image).map(|b| (b, m.rows))
    })
    .await??;
    std::fs::write(png, bytes).with_context(|| format!("writing the preview {}", png.display()))?;
    println!("preview: {} (rows top to bottom: {})", png.display(), rows.join(", "));
    Ok(())
}

/// The montage of an existing dataset: the first `per_row` cells of each label.
async fn preview_dataset(uri: &str, png: &Path, per_row: usize) -> anyhow::Result<()> {
    let store = Store::open(uri).with_context(|| format!("opening the dataset {uri:?}"))?;
    let ds = Dataset::open(store).await?;
    let labels: Vec<&Label> = ds.index.cells.iter().map(|c| &c.label).collect();
    let picked = preview::pick(&labels, per_row);
    let cells: Vec<CellData> =
        futures::stream::iter(picked.into_iter().map(|i| ds.load_cell(&ds.index.cells[i].id)))
            .buffered(8)
            .try_collect()
            .await?;
    write_montage(cells, png, per_row).await
}
