//! The uncertainty section of report.html: where and how much the model is unsure of the cells'
//! shapes, whether that predicts its error, and per class the most and least certain cell drawn
//! as projections of its probability and standard-deviation volumes beside its input
//! and its truth. The numbers come from [`crate::report::uncertainty`]; this file reads the
//! pictures' volumes ([`panels`]); the section's HTML is `templates/uncertainty.html`, included
//! by report.html.

use super::cells;
use crate::report::reconstruction::Reconstruction;
use crate::report::run_cells::RunCells;
use crate::report::uncertainty::{self as analysis, Pictured};
use anyhow::Context as _;
use dispr_proto::{CellId, RunId, keys};
use dispr_shape::dataset::Dataset;
use dispr_shape::tiff_io;
use dispr_shape::volume::{SIDE, Volume};
use dispr_store::Store;
use futures::StreamExt;

/// One pictured cell.
pub struct Panel {
    pub pictured: Pictured,
    /// The model's IoU against the truth, where it exists.
    pub iou: Option<f64>,
    /// Image and mask side by side.
    pub inputs_png: Option<Vec<u8>>,
    /// Projections along z, y and x of the probability volume (0 black, 1 white).
    pub probability_png: Vec<u8>,
    /// Along z, y and x, how much of each line of sight the samples disagree on
    /// ([`disagreement_projections`]).
    pub std_png: Vec<u8>,
    pub truth_png: Option<Vec<u8>>,
}

/// The panels of the most and least certain cell of each class, and a warning for each that
/// could not be drawn (the report goes on without it).
pub async fn panels(
    output: &Store,
    dataset: Option<&Dataset>,
    run: &RunId,
    cells: &RunCells,
    reconstruction: Option<&Reconstruction>,
) -> (Vec<Panel>, Vec<String>) {
    let chosen = analysis::pictured(&analysis::rows(cells, reconstruction, None), cells);
    let made: Vec<anyhow::Result<Panel>> = futures::stream::iter(chosen.into_iter().map(|p| {
        let iou = reconstruction.and_then(|rec| rec.cell(&p.cell)).map(|s| s.model_iou);
        panel(output, dataset, run, p, iou)
    }))
    .buffered(4)
    .collect()
    .await;
    let mut warnings = Vec::new();
    let panels = made
        .into_iter()
        .filter_map(|m| {
            m.map_err(|e| warnings.push(format!("an uncertainty picture is left out: {e:#}"))).ok()
        })
        .collect();
    (panels, warnings)
}

async fn panel(
    output: &Store,
    dataset: Option<&Dataset>,
    run: &RunId,
    pictured: Pictured,
    iou: Option<f64>,
) -> anyhow::Result<Panel> {
    let cell = CellId::new(&pictured.cell)?;
    let input = match dataset {
        Some(d) if d.index.get(&cell).is_some() => Some(d.load_cell(&cell).await?),
        _ => None,
    };
    let (p_key, s_key) = (keys::probability_volume(run, &cell), keys::std_volume(run, &cell));
    let read = |key: String| async move {
        let bytes = output.get(&key).await.with_context(|| {
            format!(
                "reading {} (written by the worker for every cell sampled 2 or more times)",
                output.uri_of(&key)
            )
        })?;
        anyhow::Ok((key, bytes))
    };
    let (probability, std) = (read(p_key).await?, read(s_key).await?);
    tokio::task::spawn_blocking(move || {
        let decode = |(key, bytes): &(String, bytes::Bytes), what| {
            tiff_io::read_volume_f32(bytes, key, what, [SIDE, SIDE, SIDE])
        };
        let probability = decode(&probability, "probability volume")?;
        let spread = decode(&std, "standard-deviation volume")?;
        Ok(Panel {
            pictured,
            iou,
            inputs_png: input
                .as_ref()
                .map(|c| cells::strip_png(&[c.image.clone(), c.mask.clone()]))
                .transpose()?,
            probability_png: cells::strip_png(&cells::projections_f32(&probability))?,
            std_png: cells::strip_png(&disagreement_projections(&spread))?,
            truth_png: input
                .as_ref()
                .and_then(|c| c.obj.as_ref())
                .map(|obj| cells::strip_png(&cells::projections_u8(obj)))
                .transpose()?,
        })
    })
    .await?
}

/// Voxels of full disagreement (standard deviation 0.5, samples split evenly) along a line of
/// sight that make its pixel white.
const WHITE_AT_VOXELS: f32 = 8.0;

/// Projections along z, y and x of the standard-deviation volume as the sum along each line of
/// sight, in voxels of full disagreement (2 x std), white at [`WHITE_AT_VOXELS`]. A maximum
/// projection would turn every line that crosses a single doubtful voxel white, so a nearly
/// certain cell and a doubtful one would look alike; the sum keeps them apart, and the fixed
/// scale keeps cells comparable with each other.
fn disagreement_projections(std: &Volume<f32>) -> [dispr_shape::volume::Image2d<u8>; 3] {
    let [d, h, w] = std.dims;
    [0, 1, 2].map(|axis| {
        let (rows, cols) = match axis {
            0 => (h, w),
            1 => (d, w),
            _ => (d, h),
        };
        let mut sum = vec![0f32; rows * cols];
        for z in 0..d {
            for y in 0..h {
                for x in 0..w {
                    let i = match axis {
                        0 => y * w + x,
                        1 => z * w + x,
                        _ => z * h + y,
                    };
                    sum[i] += 2.0 * std.data[(z * h + y) * w + x];
                }
            }
        }
        let data =
            sum.iter().map(|s| ((s / WHITE_AT_VOXELS).clamp(0.0, 1.0) * 255.0).round() as u8).collect();
        dispr_shape::volume::Image2d { dims: [rows, cols], data }
    })
}

#[cfg(test)]
mod tests {
    use super::super::tests::run_and_report;
    use super::*;

    #[test]
    fn disagreement_adds_up_along_each_line_of_sight() {
        let mut std = Volume::<f32>::zeros([4, 4, 4]);
        // Two voxels of full disagreement stacked along z at (y, x) = (1, 2), and one half-sure
        // voxel elsewhere.
        for z in [0, 1] {
            let i = std.index(z, 1, 2);
            std.data[i] = 0.5;
        }
        let i = std.index(3, 3, 0);
        std.data[i] = 0.25;
        let [pz, py, px] = disagreement_projections(&std);
        // Along z: 2 voxels of 8 -> a quarter of white; 0.5 voxel -> 1/16.
        assert_eq!(pz.get(1, 2), 64);
        assert_eq!(pz.get(3, 0), 16);
        assert_eq!(pz.get(0, 0), 0);
        // Along y and x each voxel is seen alone: 1 voxel of 8.
        assert_eq!(py.get(0, 2), 32);
        assert_eq!(px.get(1, 1), 32);
    }

    /// The null sampler's samples differ by seed, so 3 per cell give every done cell an
    /// uncertainty; with ground truth the report correlates it with the error.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_done_cell_is_ranked_and_the_extremes_of_each_class_are_drawn() {
        let (report, html, dir) = run_and_report(true, 3).await;
        let u = report.uncertainty.as_ref().expect("an uncertainty section in report.json");
        assert_eq!((u.cells, u.unknown), (23, 0), "every done cell, none unknown");
        assert_eq!(u.correlations.len(), 5);
        assert!(u.correlations.iter().all(|c| c.cells == 23), "{:?}", u.correlations);
        assert_eq!(u.selective.len(), 10);
        assert_eq!(u.selective.last().map(|p| p.cells), Some(23));
        let q = u.quartiles.as_ref().expect("error rates by quartile");
        assert_eq!(
            (q.feature_set.as_str(), q.most_uncertain.cells, q.least_uncertain.cells),
            ("2D + predicted 3D", 6, 6)
        );
        // 6 classes of 3 or 4 done cells: the most and the least certain of each.
        assert_eq!(u.pictured.len(), 12, "{:?}", u.pictured);

        let csv = std::fs::read_to_string(dir.path().join("out/runs/page/report/uncertainty.csv")).unwrap();
        let mut reader = csv::Reader::from_reader(csv.as_bytes());
        let header = reader.headers().unwrap().clone();
        let col = |name: &str| header.iter().position(|h| h == name).unwrap();
        let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
        assert_eq!(rows.len(), 23, "a row for every done cell");
        let d: Vec<f64> = rows.iter().map(|r| r[col("disagreement")].parse().unwrap()).collect();
        assert!(d.windows(2).all(|w| w[0] >= w[1]), "most uncertain first: {d:?}");
        assert!(d[0] > 0.0);
        let ranks: Vec<&str> = rows.iter().map(|r| &r[col("rank")]).collect();
        assert_eq!(ranks[..3], ["1", "2", "3"]);
        assert!(rows.iter().all(|r| !r[col("iou")].is_empty() && !r[col("predicted_class")].is_empty()));

        for needle in [
            "<h2 id=\"uncertainty\">Uncertainty</h2>",
            "Spearman with 1 - IoU",
            "most certain",
            "least certain",
            "alt=\"uncertainty against the error per cell\"",
            "alt=\"mean IoU of the most certain cells\"",
            "most uncertain quarter",
        ] {
            assert!(html.contains(needle), "report.html lacks {needle:?}");
        }
        let summary = std::fs::read_to_string(dir.path().join("out/runs/page/report/summary.txt")).unwrap();
        assert!(summary.contains("Spearman correlation with the error"), "{summary}");
    }
}
