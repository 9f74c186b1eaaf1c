//! How long the synthetic dataset takes: 825 cells (the real dataset's size) generated and encoded
//! to TIFF in memory with rayon on all cores, as `dispr-coordinator synth` does before writing.
//! Run with `cargo bench -p dispr-shape --bench synth [-- CELLS]`. Target: under 30 s on 2 cores.

use dispr_shape::{dataset, synth};
use rayon::prelude::*;
use std::time::Instant;

fn main() {
    let n = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(synth::REAL_TOTAL);
    let specs = synth::plan(n);
    let start = Instant::now();
    let bytes: usize = specs
        .par_iter()
        .map(|spec| {
            let files = dataset::encode_cell(&synth::generate(0, spec)).expect("encoding an in-memory cell");
            files.iter().map(|(_, b)| b.len()).sum::<usize>()
        })
        .sum();
    let secs = start.elapsed().as_secs_f64();
    println!(
        "synth: {n} cells in {secs:.2} s ({:.1} ms per cell per thread, {} threads, {:.0} MB encoded)",
        secs * 1000.0 * rayon::current_num_threads() as f64 / n as f64,
        rayon::current_num_threads(),
        bytes as f64 / 1e6
    );
    // Per kind, single-threaded: where the time goes.
    let mut seen = std::collections::BTreeSet::new();
    for spec in synth::plan(40) {
        if seen.insert(spec.kind) {
            let t = Instant::now();
            let _ = synth::generate(0, &spec);
            println!("  {:<14?} {:6.1} ms", spec.kind, t.elapsed().as_secs_f64() * 1000.0);
        }
    }
}
