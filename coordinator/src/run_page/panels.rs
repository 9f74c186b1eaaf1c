//! The cells report.html draws: per class the best, median and worst by IoU (or the first by
//! name without ground truth), each read from the stores and drawn as PNG strips.

use super::{CellPanel, cells};
use crate::report::Reconstruction;
use crate::report::ground_truth::{MissingVolume, volume_if_present};
use crate::report::reconstruction::CellReconstruction;
use crate::report::run_cells::{CellSummary, RunCells};
use dispr_proto::{CellId, RunId, keys};
use dispr_shape::dataset::Dataset;
use dispr_shape::tiff_io;
use dispr_shape::volume::SIDE;
use dispr_store::Store;
use std::collections::BTreeMap;

/// Positions of `n` cells spread over a ranking of `m` (best first): best, median, worst for 3;
/// evenly spaced otherwise. With their names.
pub fn gallery_positions(m: usize, n: usize) -> Vec<(usize, String)> {
    if m == 0 || n == 0 {
        return Vec::new();
    }
    let n = n.min(m);
    let mut out: Vec<(usize, String)> = Vec::new();
    for i in 0..n {
        let pos = if n == 1 { 0 } else { (i * (m - 1) + (n - 1) / 2) / (n - 1) };
        if out.last().is_some_and(|(p, _)| *p == pos) {
            continue;
        }
        let name = if pos == 0 {
            "best".to_string()
        } else if pos == m - 1 {
            "worst".to_string()
        } else if pos == (m - 1) / 2 {
            "median".to_string()
        } else {
            format!("rank {} of {m}", pos + 1)
        };
        out.push((pos, name));
    }
    out
}

/// Chooses the cells drawn per class: by model IoU where the report has reconstruction scores
/// (best, median, worst), else the first cells by id.
pub(super) fn choose_panels<'a>(
    cells: &'a RunCells,
    per_class: usize,
    reconstruction: Option<&Reconstruction>,
) -> Vec<(CellSummary<'a>, String, Option<CellReconstruction>)> {
    // Rows are in id order: each class's members are too.
    let mut by_class: BTreeMap<Option<&str>, Vec<usize>> = BTreeMap::new();
    for (row, class) in cells.table.class.iter().enumerate() {
        by_class.entry(class).or_default().push(row);
    }
    let mut chosen = Vec::new();
    for (_, members) in by_class {
        let score = |r: &CellSummary| reconstruction.and_then(|rec| rec.cell(r.id)).cloned();
        let scored: Vec<(CellSummary, CellReconstruction)> =
            members.iter().map(|&row| cells.cell(row)).filter_map(|r| score(&r).map(|s| (r, s))).collect();
        if scored.is_empty() {
            chosen.extend(
                members.into_iter().take(per_class).map(|row| (cells.cell(row), String::new(), None)),
            );
        } else {
            let mut ranked = scored;
            ranked.sort_by(|a, b| b.1.model_iou.total_cmp(&a.1.model_iou).then_with(|| a.0.id.cmp(b.0.id)));
            for (pos, name) in gallery_positions(ranked.len(), per_class) {
                let (rec, s) = &ranked[pos];
                chosen.push((*rec, format!("{name} IoU"), Some(s.clone())));
            }
        }
    }
    chosen
}

pub(super) async fn panel(
    output: &Store,
    dataset: Option<&Dataset>,
    run: &RunId,
    summary: CellSummary<'_>,
    rank: String,
    scores: Option<CellReconstruction>,
) -> anyhow::Result<CellPanel> {
    let cell = CellId::new(summary.id)?;
    // Only the drawn cells' records are read again in full: their samples name the volumes.
    let rec = RunCells::record(output, run, &cell).await?;
    let input = match dataset {
        Some(d) if d.index.get(&cell).is_some() => Some(d.load_cell(&cell).await?),
        _ => None,
    };
    let mut volumes = Vec::new();
    for s in &rec.samples {
        let key = keys::volume(run, &cell, s.k);
        let bytes = volume_if_present(output, &key).await?;
        volumes.push((key, bytes));
    }
    let missing_volumes = (volumes.iter())
        .filter(|(_, bytes)| bytes.is_none())
        .map(|(key, _)| MissingVolume { cell: cell.clone(), uri: output.uri_of(key) })
        .collect();
    let class = rec.class.clone();
    tokio::task::spawn_blocking(move || {
        // Whatever the run's volume format: the reader scales uint8 and mask files to [0, 1].
        let samples_png = volumes
            .iter()
            .map(|(key, bytes)| {
                let Some(bytes) = bytes else { return Ok(None) };
                let v = tiff_io::read_volume_f32(bytes, key, "predicted volume", [SIDE, SIDE, SIDE])?;
                cells::strip_png(&cells::projections_f32(&v)).map(Some)
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let inputs_png =
            input.as_ref().map(|c| cells::strip_png(&[c.image.clone(), c.mask.clone()])).transpose()?;
        let truth_png = input
            .as_ref()
            .and_then(|c| c.obj.as_ref())
            .map(|obj| cells::strip_png(&cells::projections_u8(obj)))
            .transpose()?;
        Ok(CellPanel { cell, class, rank, inputs_png, samples_png, truth_png, scores, missing_volumes })
    })
    .await?
}
