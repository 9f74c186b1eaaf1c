//! `dispr-worker import`: the reference code's PyTorch checkpoint as a checkpoint of this
//! project (see `dispr_model::reference`).

use std::path::PathBuf;
use std::time::Instant;

use dispr_model::DefaultBackend;
use dispr_model::reference::{ImportOptions, import_checkpoint};

/// Import a checkpoint of the reference DISPR code (guided-diffusion's UNetModel, dims=3): the
/// state dict its training saves, savedmodel<step>.pt or emasavedmodel_<rate>_<step>.pt (the
/// EMA weights, the ones to sample with), in torch.save's zip or legacy format, or a
/// .safetensors file.
///
/// Nothing in the file is executed: its pickle is read by an interpreter that only builds
/// tensors, and a file whose pickle calls anything else (e.g. os.system) is refused. The
/// configuration (levels, widths, residual blocks, attention levels, scale-shift norm) is read
/// from the tensor names and shapes and printed; the attention heads are not in the weights:
/// --heads, or 1 for the README's flavour (dispr-64) and 4 otherwise (the sampling script's).
/// Half-precision weights, optimiser states, classifiers, 2D networks and incomplete or
/// modified state dicts are refused with what to do.
///
/// The checkpoint (--out, its .json sidecar beside it) records the source file's sha256,
/// whether it holds EMA weights, the objective and the preprocessing, and samples DDIM as the
/// reference does (ddim-N strided as guided-diffusion's ddimN). It runs wherever a checkpoint
/// runs: demo --checkpoint, local, submit --model, evaluate, sample.
#[derive(clap::Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct Args {
    /// The reference state dict (.pt, .pth or .safetensors).
    state_dict: PathBuf,
    /// Where to write the checkpoint record (.mpk); its sidecar goes beside it.
    #[arg(long)]
    out: PathBuf,
    /// Attention heads of the network (must divide every attention width).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    heads: Option<u32>,
    /// Groups of every GroupNorm. guided-diffusion's are 32; change it only for a network
    /// built with another normalization (the test fixtures use 4).
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..))]
    norm_groups: u32,
    /// Edge of the cube the network runs on (the reference's image_size).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=64))]
    resolution: u32,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let options = ImportOptions {
        heads: args.heads.map(|h| h as usize),
        norm_groups: args.norm_groups as usize,
        resolution: args.resolution as usize,
    };
    let started = Instant::now();
    let device = Default::default();
    let sidecar = import_checkpoint::<DefaultBackend>(&args.state_dict, &args.out, &options, &device)?;
    let from = sidecar.imported.as_ref();
    println!(
        "imported {} -> {} in {:.1} s",
        args.state_dict.display(),
        args.out.display(),
        started.elapsed().as_secs_f64()
    );
    for a in from.map(|f| f.assumptions.as_slice()).unwrap_or_default() {
        println!("  {a}");
    }
    let ema = match from.and_then(|f| f.ema) {
        Some(true) => format!(
            "EMA weights (rate {})",
            from.and_then(|f| f.ema_rate).map_or("?".into(), |r| r.to_string())
        ),
        Some(false) => {
            "raw (non-EMA) weights: the EMA file emasavedmodel_<rate>_<step>.pt usually samples better".into()
        }
        None => "EMA or not: unknown (the file name does not say)".into(),
    };
    println!("  step {}, {ema}", sidecar.step);
    println!("  source sha256 {}", from.map_or("", |f| f.source_sha256.as_str()));
    println!("  record sha256 {}", sidecar.record_sha256);
    Ok(())
}
