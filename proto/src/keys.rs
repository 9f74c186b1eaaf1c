//! The object key layout of DESIGN.md, as functions. No key string is assembled anywhere else.
//! Keys are relative to a store root (a dataset URI or an output URI).

use crate::ids::{CellId, RunId};

// Dataset layout.
pub fn dataset_image(cell: &CellId) -> String {
    format!("image/{cell}.tif")
}
pub fn dataset_mask(cell: &CellId) -> String {
    format!("mask/{cell}.tif")
}
pub fn dataset_obj(cell: &CellId) -> String {
    format!("obj/{cell}.tif")
}
pub const DATASET_LABELS: &str = "labels.csv";
pub const DATASET_IMAGE_DIR: &str = "image/";
pub const DATASET_MASK_DIR: &str = "mask/";
pub const DATASET_OBJ_DIR: &str = "obj/";

// Run layout, under the output root.
pub fn run_prefix(run: &RunId) -> String {
    format!("runs/{run}/")
}
pub fn manifest(run: &RunId) -> String {
    format!("runs/{run}/manifest.json")
}
pub fn volume(run: &RunId, cell: &CellId, k: u32) -> String {
    format!("runs/{run}/volumes/{cell}/{k}.tif")
}
/// The voxel-wise occupancy probability of a cell's samples (the mean of the K binarised samples),
/// a float32 ImageJ stack beside them. Written only for K >= 2, before the features record.
pub fn probability_volume(run: &RunId, cell: &CellId) -> String {
    format!("runs/{run}/volumes/{cell}/probability.tif")
}
/// The voxel-wise standard deviation of a cell's binarised samples, sqrt(p (1 - p)), a float32
/// ImageJ stack beside them. Written only for K >= 2, before the features record.
pub fn std_volume(run: &RunId, cell: &CellId) -> String {
    format!("runs/{run}/volumes/{cell}/std.tif")
}
pub fn features_prefix(run: &RunId) -> String {
    format!("runs/{run}/features/")
}
pub fn features(run: &RunId, cell: &CellId) -> String {
    format!("runs/{run}/features/{cell}.json")
}
pub fn failures_prefix(run: &RunId) -> String {
    format!("runs/{run}/failures/")
}
pub fn failure(run: &RunId, cell: &CellId) -> String {
    format!("runs/{run}/failures/{cell}.json")
}
pub fn report_prefix(run: &RunId) -> String {
    format!("runs/{run}/report/")
}
/// A file of the report; `name` is one of the report's own fixed names, never user input.
pub fn report_file(run: &RunId, name: &str) -> String {
    debug_assert!(!name.contains(".."), "report file names are fixed by the program");
    format!("runs/{run}/report/{name}")
}

/// Where `submit` records what it has published, so a restarted submit skips it.
pub fn submitted_prefix(run: &RunId) -> String {
    format!("runs/{run}/submitted/")
}
/// The marker of one batch of published jobs, written after the broker confirmed all of them.
pub fn submitted_batch(run: &RunId, batch: u64) -> String {
    format!("runs/{run}/submitted/batch-{batch:08}.json")
}
/// The sharding of the run (cells per job, jobs per batch): batch markers only mean something
/// under the sharding that wrote them.
pub fn submit_plan(run: &RunId) -> String {
    format!("runs/{run}/submitted/plan.json")
}

pub fn jobs_prefix(run: &RunId) -> String {
    format!("runs/{run}/jobs/")
}
/// The record of a job's last run. Job ids come off the queue, so they are validated like any id
/// before they become part of a key.
pub fn job_record(run: &RunId, job_id: &str) -> Result<String, crate::IdError> {
    let job = crate::ids::JobId::new(job_id)?;
    Ok(format!("runs/{run}/jobs/{job}.json"))
}

/// The lease of the one process computing a run in `local` mode (see the coordinator's `lease`).
pub fn lease(run: &RunId) -> String {
    format!("runs/{run}/lease.json")
}

/// Where a job's hand-backs are counted: `runs/<run>/handbacks/<job>.json` (see
/// [`crate::HandBack`]).
pub fn handback(run: &RunId, job_id: &str) -> Result<String, crate::IdError> {
    let job = crate::ids::JobId::new(job_id)?;
    Ok(format!("runs/{run}/handbacks/{job}.json"))
}

pub fn handbacks_prefix(run: &RunId) -> String {
    format!("runs/{run}/handbacks/")
}

/// The cell a `features/<cell>.json` or `failures/<cell>.json` key belongs to.
pub fn cell_of_record_key(key: &str) -> Option<CellId> {
    let name = key.rsplit('/').next()?;
    CellId::new(name.strip_suffix(".json")?).ok()
}

/// The cell of a dataset file key such as `image/<cell>.tif`.
pub fn cell_of_dataset_key(key: &str) -> Option<CellId> {
    let name = key.rsplit('/').next()?;
    let stem = name.strip_suffix(".tif").or_else(|| name.strip_suffix(".tiff"))?;
    CellId::new(stem).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_matches_design() {
        let r = RunId::new("r7").unwrap();
        let c = CellId::new("B_keratocytes000673").unwrap();
        assert_eq!(manifest(&r), "runs/r7/manifest.json");
        assert_eq!(volume(&r, &c, 3), "runs/r7/volumes/B_keratocytes000673/3.tif");
        assert_eq!(features(&r, &c), "runs/r7/features/B_keratocytes000673.json");
        assert_eq!(probability_volume(&r, &c), "runs/r7/volumes/B_keratocytes000673/probability.tif");
        assert_eq!(std_volume(&r, &c), "runs/r7/volumes/B_keratocytes000673/std.tif");
        assert_eq!(failure(&r, &c), "runs/r7/failures/B_keratocytes000673.json");
        assert_eq!(report_file(&r, "report.html"), "runs/r7/report/report.html");
        assert_eq!(submitted_batch(&r, 12), "runs/r7/submitted/batch-00000012.json");
        assert!(submitted_batch(&r, 12).starts_with(&submitted_prefix(&r)));
        assert_eq!(job_record(&r, "j00000001").unwrap(), "runs/r7/jobs/j00000001.json");
        assert!(job_record(&r, "../x").is_err());
        assert_eq!(handback(&r, "j00000001").unwrap(), "runs/r7/handbacks/j00000001.json");
        assert!(handback(&r, "j1").unwrap().starts_with(&handbacks_prefix(&r)));
        assert_eq!(dataset_image(&c), "image/B_keratocytes000673.tif");
        assert_eq!(cell_of_record_key(&features(&r, &c)), Some(c.clone()));
        assert_eq!(cell_of_dataset_key("mask/B_keratocytes000673.tif"), Some(c));
        assert_eq!(cell_of_dataset_key("mask/notes.txt"), None);
    }
}
