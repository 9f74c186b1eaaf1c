//! The uncertainty section of report.html: where and how much the model is unsure of the cells'
//! shapes, whether that predicts its error, and per class the most and least certain cell drawn
//! as the maximum projections of its probability and standard-deviation volumes beside its input
//! and its truth. The numbers come from [`crate::report::uncertainty`]; this file reads the
//! pictures' volumes ([`panels`]) and writes the HTML ([`render`]), all of the section in one place.

use super::{cells, esc, img, img_plot, scroll};
use crate::report::reconstruction::Reconstruction;
use crate::report::uncertainty::{self as analysis, Pictured, UncertaintySection};
use anyhow::Context as _;
use dispr_proto::records::CellFeatures;
use dispr_proto::{CellId, RunId, keys};
use dispr_shape::dataset::Dataset;
use dispr_shape::tiff_io;
use dispr_shape::volume::{SIDE, Volume};
use dispr_store::Store;
use futures::StreamExt;
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// One pictured cell.
pub struct Panel {
    pub pictured: Pictured,
    /// The model's IoU against the truth, where it exists.
    pub iou: Option<f64>,
    /// Image and mask side by side.
    pub inputs_png: Option<Vec<u8>>,
    /// Projections along z, y and x of the probability volume (0 black, 1 white).
    pub probability_png: Vec<u8>,
    /// Projections of the standard-deviation volume, scaled by 2 so that its largest possible
    /// value (0.5, samples split evenly) is white.
    pub std_png: Vec<u8>,
    pub truth_png: Option<Vec<u8>>,
}

/// The panels of the most and least certain cell of each class, and a warning for each that
/// could not be drawn (the report goes on without it).
pub async fn panels(
    output: &Store,
    dataset: Option<&Dataset>,
    run: &RunId,
    records: &[CellFeatures],
    reconstruction: Option<&Reconstruction>,
) -> (Vec<Panel>, Vec<String>) {
    let rows = analysis::rows(records, reconstruction, None);
    let iou: BTreeMap<&str, Option<f64>> = rows.iter().map(|r| (r.cell.as_str(), r.iou)).collect();
    let chosen = analysis::pictured(&rows);
    let made: Vec<anyhow::Result<Panel>> = futures::stream::iter(chosen.into_iter().map(|p| {
        let iou = iou.get(p.cell.as_str()).copied().flatten();
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
        let doubled = Volume { dims: spread.dims, data: spread.data.iter().map(|v| v * 2.0).collect() };
        Ok(Panel {
            pictured,
            iou,
            inputs_png: input
                .as_ref()
                .map(|c| cells::strip_png(&[c.image.clone(), c.mask.clone()]))
                .transpose()?,
            probability_png: cells::strip_png(&cells::projections_f32(&probability))?,
            std_png: cells::strip_png(&cells::projections_f32(&doubled))?,
            truth_png: input
                .as_ref()
                .and_then(|c| c.obj.as_ref())
                .map(|obj| cells::strip_png(&cells::projections_u8(obj)))
                .transpose()?,
        })
    })
    .await?
}

fn show(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{v:+.3}"))
}

/// The section: nothing when the report has no uncertainty analysis (no done cell).
pub fn render(
    h: &mut String,
    section: Option<&UncertaintySection>,
    panels: &[Panel],
    plots: &BTreeMap<String, Vec<u8>>,
) {
    let Some(u) = section else { return };
    h.push_str("<h2 id=\"uncertainty\">Uncertainty</h2>");
    let Some(mean) = u.mean_disagreement else {
        h.push_str(
            "<p class=\"muted\">Unknown for every cell: each was sampled once, and one sample says nothing of \
             how sure the model is. Run with <code>--samples 2</code> or more to measure it.</p>",
        );
        return;
    };
    let _ = write!(
        h,
        "<p>How much each cell's samples disagree, from its {} done cells. Headline: <b>{}</b> = {}; mean {:.3}. \
         uncertainty.csv lists every cell, most uncertain first: the order in which to send cells to 3D imaging; \
         the worker's <code>volumes/&lt;cell&gt;/probability.tif</code> and <code>std.tif</code> show where in \
         each cell.{}</p>",
        u.cells,
        esc(&u.headline),
        esc(&u.headline_definition),
        mean,
        if u.unknown > 0 {
            format!(" {} cell(s) were sampled once: their uncertainty is unknown, listed last.", u.unknown)
        } else {
            String::new()
        }
    );
    if u.correlations.is_empty() {
        h.push_str(
            "<p class=\"muted\">The dataset has no ground truth (obj/), so whether the uncertainty predicts the \
             error cannot be measured here.</p>",
        );
    } else {
        h.push_str("<h3>Does it predict the error?</h3>");
        let mut t = String::from(
            "<table><tr><th class=\"l\">uncertainty</th><th>cells</th><th>Spearman with 1 - IoU</th></tr>",
        );
        for c in &u.correlations {
            let _ = write!(
                t,
                "<tr><td class=\"l\">{}</td><td>{}</td><td><b>{}</b></td></tr>",
                esc(&c.scalar),
                c.cells,
                show(c.spearman)
            );
        }
        t.push_str("</table>");
        scroll(h, &t);
        if let Some(rho) = u.headline_spearman().and_then(|c| c.spearman) {
            let verdict = if rho >= 0.3 {
                format!("The headline uncertainty ranks the cells' errors (Spearman {rho:+.3}).")
            } else {
                format!(
                    "The headline uncertainty predicts the error poorly here (Spearman {rho:+.3}, below 0.3): do \
                     not rely on it to choose cells."
                )
            };
            let _ = write!(h, "<p class=\"answer\">{}</p>", esc(&verdict));
        }
        let mut t = String::from("<table><tr><th class=\"l\">most certain cells kept</th>");
        for p in &u.selective {
            let _ = write!(t, "<th>{}%</th>", p.coverage);
        }
        t.push_str("</tr><tr><td class=\"l\">mean IoU</td>");
        for p in &u.selective {
            let _ = write!(t, "<td>{:.3}</td>", p.mean_iou);
        }
        t.push_str("</tr></table>");
        scroll(h, &t);
        for (name, alt) in [
            (analysis::SCATTER_PNG, "uncertainty against the error per cell"),
            (analysis::SELECTIVE_PNG, "mean IoU of the most certain cells"),
        ] {
            if let Some(png) = plots.get(name) {
                h.push_str(&img_plot(png, alt));
            }
        }
    }
    if let Some(q) = &u.quartiles {
        let _ = write!(
            h,
            "<p>Are the uncertain cells the misclassified ones? Classifier on {} (first repetition's out-of-fold \
             predictions): error rate <b>{:.3}</b> ({} of {}) in the most uncertain quarter, <b>{:.3}</b> ({} of {}) in \
             the least uncertain quarter, {:.3} over all.</p>",
            esc(&q.feature_set),
            q.most_uncertain.rate,
            q.most_uncertain.misclassified,
            q.most_uncertain.cells,
            q.least_uncertain.rate,
            q.least_uncertain.misclassified,
            q.least_uncertain.cells,
            q.all.rate
        );
    }
    if panels.is_empty() {
        return;
    }
    h.push_str(
        "<h3>Most and least certain cell of each class</h3><p class=\"muted\">Maximum projections along z, y and x \
         of the probability volume (white: every sample has the voxel) and of the standard deviation (scaled by 2: \
         white where the samples split evenly), beside the input image and mask and the truth.</p>",
    );
    // Probability above standard deviation in one column, so that a row fits a laptop's window.
    let mut t = String::from(
        "<table><tr><th class=\"l\">cell</th><th class=\"l\">inputs</th>\
         <th class=\"l\">probability (z, y, x)<br>standard deviation x 2</th><th class=\"l\">ground truth</th></tr>",
    );
    for p in panels {
        let c = &p.pictured;
        let _ = write!(
            t,
            "<tr><td class=\"l\">{}<br><span class=\"muted\">{}: {}</span><br>disagreement {:.3}<br>IoU {}</td>\
             <td class=\"l\">{}</td><td class=\"l\">{}<br>{}</td><td class=\"l\">{}</td></tr>",
            esc(&c.cell),
            esc(&c.class),
            esc(&c.which),
            c.disagreement,
            p.iou.map_or("-".into(), |v| format!("{v:.3}")),
            p.inputs_png.as_ref().map_or(String::new(), |png| img(png, &format!("{} inputs", c.cell))),
            img(&p.probability_png, &format!("{} probability", c.cell)),
            img(&p.std_png, &format!("{} standard deviation", c.cell)),
            p.truth_png.as_ref().map_or("<span class=\"muted\">none</span>".into(), |png| img(
                png,
                &format!("{} ground truth", c.cell)
            )),
        );
    }
    t.push_str("</table>");
    scroll(h, &t);
}

#[cfg(test)]
mod tests {
    use super::super::tests::run_and_report;

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
