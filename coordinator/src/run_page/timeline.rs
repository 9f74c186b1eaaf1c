//! The execution timeline of a run, like Nextflow's: one lane per worker, one bar per job from
//! the moment it started to the moment it finished, so idle workers and stragglers stand out.

use crate::report::plots::{render, text};
use dispr_proto::records::JobRecord;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

const LANE: i32 = 26;
const LEFT: i32 = 170;
const WIDTH: i32 = 1100;

/// Draws `jobs` (any order) as a PNG; `None` when there is nothing to draw.
pub fn timeline_png(jobs: &[JobRecord]) -> anyhow::Result<Option<Vec<u8>>> {
    let Some(t0) = jobs.iter().map(|j| j.started_ms).min() else { return Ok(None) };
    let t1 = jobs.iter().map(|j| j.finished_ms).max().unwrap_or(t0).max(t0 + 1);
    let mut workers: Vec<&str> = jobs.iter().map(|j| j.worker.as_str()).collect();
    workers.sort_unstable();
    workers.dedup();
    let top = 40;
    let height = top + LANE * workers.len() as i32 + 50;
    let span = (t1 - t0) as f64 / 1000.0;
    let x_of = |ms: u64| LEFT + (((ms - t0) as f64 / (t1 - t0) as f64) * f64::from(WIDTH - LEFT - 20)) as i32;
    let png = render((WIDTH as u32, height as u32), |root| {
        let title = format!("{} jobs on {} workers over {:.1} s", jobs.len(), workers.len(), span);
        text(root, &title, (WIDTH / 2, 18), 16, Pos::new(HPos::Center, VPos::Center))?;
        for (lane, worker) in workers.iter().enumerate() {
            let y = top + lane as i32 * LANE;
            text(root, worker, (LEFT - 8, y + LANE / 2), 13, Pos::new(HPos::Right, VPos::Center))?;
            let line = [(LEFT, y + LANE), (WIDTH - 20, y + LANE)];
            root.draw(&PathElement::new(line, RGBColor(220, 220, 220)))
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            for job in jobs.iter().filter(|j| j.worker == *worker) {
                let (x0, x1) = (x_of(job.started_ms), x_of(job.finished_ms).max(x_of(job.started_ms) + 2));
                // Jobs with a failed cell are drawn orange, the others blue.
                let colour =
                    if job.cells_failed > 0 { RGBColor(230, 159, 0) } else { RGBColor(86, 140, 233) };
                root.draw(&Rectangle::new([(x0, y + 4), (x1, y + LANE - 4)], colour.filled()))
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
            }
        }
        let axis_y = top + LANE * workers.len() as i32 + 8;
        for i in 0..=5 {
            let frac = f64::from(i) / 5.0;
            let x = LEFT + (frac * f64::from(WIDTH - LEFT - 20)) as i32;
            text(
                root,
                &format!("{:.0} s", frac * span),
                (x, axis_y + 10),
                12,
                Pos::new(HPos::Center, VPos::Center),
            )?;
        }
        text(
            root,
            "time since the first job started",
            (WIDTH / 2, axis_y + 30),
            13,
            Pos::new(HPos::Center, VPos::Center),
        )?;
        Ok(())
    })?;
    Ok(Some(png))
}

#[cfg(test)]
mod tests {
    use super::*;
    use dispr_proto::{CellId, RunId, SCHEMA_VERSION};

    fn job(worker: &str, start: u64, end: u64) -> JobRecord {
        JobRecord {
            schema_version: SCHEMA_VERSION,
            run_id: RunId::new("r").unwrap(),
            job_id: format!("j{start}"),
            worker: worker.into(),
            cells: vec![CellId::new("c1").unwrap()],
            cells_done: 1,
            cells_failed: 0,
            started_ms: start,
            finished_ms: end,
            compute_seconds: 0.5,
        }
    }

    #[test]
    fn draws_one_lane_per_worker() {
        let one = timeline_png(&[job("w1", 1000, 2000)]).unwrap().unwrap();
        let two = timeline_png(&[job("w1", 1000, 2000), job("w2", 1500, 4000)]).unwrap().unwrap();
        assert!(one.starts_with(b"\x89PNG") && two.starts_with(b"\x89PNG"));
        let height = |png: &[u8]| u32::from_be_bytes([png[20], png[21], png[22], png[23]]);
        assert_eq!(height(&two) - height(&one), LANE as u32);
        assert!(timeline_png(&[]).unwrap().is_none());
    }
}
