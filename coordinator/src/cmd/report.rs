//! `dispr-coordinator report`: the classification report of a run, written under
//! `runs/<run>/report/` and summarised on stdout.

use crate::classify::{CvConfig, ForestConfig};
use crate::cmd::run_args::RunRef;
use crate::report::{Level, ground_truth};
use crate::run_page::{self, ReportInputs, ReportOptions};
use anyhow::Context as _;
use dispr_proto::keys;
use dispr_shape::dataset::Dataset;
use dispr_store::Store;

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub run: RunRef,
    /// Instead of the run's features, compute features from this dataset's ground truth
    /// (image/, mask/ and obj/ volumes standing in for predicted ones).
    #[arg(long)]
    pub ground_truth_dataset: Option<String>,
    /// Classify the 6 classes or the sub-classes.
    #[arg(long, value_enum, default_value_t = Level::Class)]
    pub level: Level,
    /// Cross-validation folds (stratified).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(2..=50))]
    pub folds: u32,
    /// Trees in each random forest.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub trees: u32,
    /// Maximum depth of the trees.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub max_depth: u32,
    /// Seed of the folds and the forests (repetition r uses seed + r).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Repetitions of the whole cross-validation, each with its own seed: figures are reported
    /// as mean and standard deviation over them (one split of small classes is noisy).
    #[arg(long, default_value_t = crate::classify::DEFAULT_REPEATS as u32, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub repeats: u32,
    /// Most cells of one class the classifier is cross-validated on: a class with more is
    /// represented by a seeded random sample of this many, while every cell of the smaller (rare)
    /// classes is used, so a run of a million cells is classified in minutes (forests grow faster
    /// than linearly with the cells). The report says so in one line. 0: every cell, whatever the
    /// run's size. Every cell stays in features.csv and features.parquet.
    #[arg(long, default_value_t = crate::classify::DEFAULT_CAP_PER_CLASS)]
    pub cv_cap_per_class: usize,
    /// Cells drawn per class in report.html: the best, median and worst by IoU for 3, evenly
    /// spread over the IoU ranking for more (all cells are in features.csv).
    #[arg(long, default_value_t = run_page::DEFAULT_CELLS_PER_CLASS)]
    pub cells_per_class: usize,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let output = args.run.output_store()?;
    let options = ReportOptions {
        level: args.level,
        cv: CvConfig {
            folds: args.folds as usize,
            repeats: args.repeats as usize,
            forest: ForestConfig {
                trees: args.trees as usize,
                max_depth: args.max_depth as usize,
                seed: args.seed,
            },
            cap_per_class: (args.cv_cap_per_class > 0).then_some(args.cv_cap_per_class),
        },
        cells_per_class: args.cells_per_class,
    };
    let written = crate::runtime::block_on(async {
        match &args.ground_truth_dataset {
            Some(uri) => {
                let inputs = ground_truth_inputs(uri, &args.run.run_id).await?;
                // A dataset's ground truth has no run: no manifest, outputs or page.
                run_page::write_report(&output, &args.run.run_id, inputs, &options, None).await
            }
            None => {
                let prefix = keys::features_prefix(&args.run.run_id);
                // Only whether there is any: the report lists them again as it reads them (a
                // million keys held here through the report would be about 70 MB).
                let none = output
                    .list(&prefix)
                    .await
                    .with_context(|| format!("listing {}", output.uri_of(&prefix)))?
                    .is_empty();
                if none {
                    let run = &args.run.run_id;
                    let finished = crate::cells::Finished::read(&output, run).await?;
                    if !finished.failed.is_empty() {
                        let groups =
                            crate::failures::FailureGroups::read(&output, run, &finished.failed).await?;
                        anyhow::bail!(
                            "every cell of run {run} that finished failed ({} cells), so there is nothing to classify; \
                             fix the cause and run the cells again (`--retry-failed` on `local` or `submit`).\n{groups}",
                            finished.failed.len()
                        );
                    }
                    anyhow::bail!(
                        "no cell features under {}: the run has finished no cell yet (see `dispr-coordinator status`), \
                         or the run id or output location is wrong; use --ground-truth-dataset to report on a dataset's true shapes",
                        output.uri_of(&prefix)
                    );
                }
                run_page::write_run_report(&output, &args.run.run_id, &options).await
            }
        }
    })??;
    for w in &written.warnings {
        eprintln!("warning: {w}");
    }
    println!("{}", written.summary);
    println!("{} files written to {}", written.files, output.uri_of(&keys::report_prefix(&args.run.run_id)));
    Ok(())
}

/// A report's inputs from a dataset's ground truth alone: its true shapes are the ceiling rows
/// (no predicted ones); cells whose files cannot be used are listed with the reason.
async fn ground_truth_inputs(uri: &str, run: &dispr_proto::RunId) -> anyhow::Result<ReportInputs> {
    let store = Store::open(uri).with_context(|| format!("opening the dataset {uri:?}"))?;
    let dataset = Dataset::open(store).await?;
    let (truth, unclassified) = ground_truth::records(&dataset, run).await?;
    Ok(ReportInputs {
        predicted: Default::default(),
        truth,
        unclassified,
        reconstruction: None,
        source: format!("ground truth of dataset {uri} (obj > {})", ground_truth::OBJ_THRESHOLD),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::Report;
    use dispr_proto::records::{CellFeatures, FeatureMap};
    use dispr_proto::{CellId, RunId, SCHEMA_VERSION};
    use std::path::{Path, PathBuf};

    fn args(output: &Path, run: &str) -> Args {
        Args {
            run: RunRef { output: output.to_string_lossy().into_owned(), run_id: RunId::new(run).unwrap() },
            ground_truth_dataset: None,
            level: Level::Class,
            folds: 5,
            trees: 20,
            max_depth: 6,
            seed: 0,
            repeats: 2,
            cv_cap_per_class: 0,
            cells_per_class: 2,
        }
    }

    fn read_report(out: &Path, run: &str) -> Report {
        serde_json::from_slice(&std::fs::read(out.join(format!("runs/{run}/report/report.json"))).unwrap())
            .unwrap()
    }

    #[test]
    fn reports_on_a_runs_feature_records_in_a_folder_store() {
        let out = tempfile::tempdir().unwrap();
        let store = Store::open(out.path().to_str().unwrap()).unwrap();
        let run_id = RunId::new("run1").unwrap();
        crate::runtime::block_on(async {
            for i in 0..20 {
                let class = if i % 2 == 0 { "round" } else { "flat" };
                let rec = CellFeatures {
                    schema_version: SCHEMA_VERSION,
                    run_id: run_id.clone(),
                    cell: CellId::new(format!("{class}{i:03}")).unwrap(),
                    class: Some(class.into()),
                    subclass: None,
                    features_2d: FeatureMap::from([("area".into(), i as f64)]),
                    samples: vec![],
                    mean_3d: FeatureMap::from([("flatness".into(), if i % 2 == 0 { 0.9 } else { 0.2 })]),
                    std_3d: FeatureMap::new(),
                    mean_metrics: None,
                    truth_skipped: None,
                    uncertainty: None,
                };
                store.put(&keys::features(&run_id, &rec.cell), rec.encode().into()).await.unwrap();
            }
        })
        .unwrap();
        run(args(out.path(), "run1")).unwrap();
        let report = read_report(out.path(), "run1");
        assert_eq!(report.cells.len(), 20);
        assert_eq!(report.feature_sets[1].macro_f1.mean, 1.0);
        for f in [
            "features.csv",
            "metrics.csv",
            "predictions.csv",
            "summary.txt",
            "confusion_predicted3d.png",
            "confusion_2dpredicted3d.png",
            "unclassified.csv",
            "f1_per_class.png",
        ] {
            assert!(out.path().join("runs/run1/report").join(f).is_file(), "{f} missing");
        }
    }

    #[test]
    fn a_run_without_features_is_explained() {
        let out = tempfile::tempdir().unwrap();
        let err = format!("{:#}", run(args(out.path(), "nothing")).unwrap_err());
        assert!(err.contains("no cell features under") && err.contains("--ground-truth-dataset"), "{err}");
    }

    /// The real 25-cell sample's true shapes standing in for predictions: 4 classes.
    #[test]
    fn reports_on_the_ground_truth_of_the_real_sample() {
        let sample = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/rbc-real-sample");
        if !sample.is_dir() {
            eprintln!("SKIPPED: {} is absent (it ships with the team's shared/ folder)", sample.display());
            return;
        }
        let out = tempfile::tempdir().unwrap();
        let mut a = args(out.path(), "gt");
        a.ground_truth_dataset = Some(sample.to_string_lossy().into_owned());
        run(a).unwrap();
        let report = read_report(out.path(), "gt");
        assert_eq!(report.cells.len(), 25);
        assert_eq!(report.classes.len(), 4);
        let csv = std::fs::read_to_string(out.path().join("runs/gt/report/features.csv")).unwrap();
        assert_eq!(csv.lines().count(), 26);
        assert!(csv.lines().next().unwrap().contains("true_3d_surface_area"));
        // The true shapes are the ceiling rows; there are no predicted ones to compare.
        let names: Vec<_> = report.feature_sets.iter().map(|r| (r.name.as_str(), r.ceiling)).collect();
        assert_eq!(names, [("2D", false), ("true 3D", true), ("2D + true 3D", true)]);
        for r in &report.feature_sets {
            assert!(r.macro_f1.mean > 0.0 && r.macro_f1.mean <= 1.0, "{}: {:?}", r.name, r.macro_f1);
            assert_eq!(r.repetitions.len(), 2);
        }
        assert_eq!(report.recovered, None);
        // No class holds half of the 25 cells: all 4 are minority classes.
        assert_eq!(report.minority_classes.len(), 4);
    }
}
