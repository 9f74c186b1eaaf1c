//! `dispr-worker sample`: one raw sample of one cell from a given initial noise, to compare
//! with the reference code's sampler.

use std::path::{Path, PathBuf};

use anyhow::Context;
use dispr_model::{CellInput, DefaultBackend, Predictor};
use dispr_proto::SamplerSpec;
use dispr_shape::tiff_io;
use dispr_shape::volume::{SIDE, Volume};

/// Sample one cell from a given x_T and write the sampler's raw output: the final x_0
/// estimate, clipped to [-1, 1], as a float32 TIFF at the network's resolution (64x64x64 for
/// the reference's networks; z first), exactly as the reference's sampler returns it (no return
/// to [0, 1], no Otsu, no height calibration). Run
/// the reference from the same --initial-noise to compare: DDIM with eta 0 is deterministic.
#[derive(clap::Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct Args {
    /// Checkpoint record (.mpk) with its .json sidecar beside it (the reference's networks and
    /// imported ones run at 64^3; a smaller network samples at its own resolution).
    #[arg(long)]
    checkpoint: PathBuf,
    /// The cell's 64x64 uint8 fluorescence image.
    #[arg(long)]
    image: PathBuf,
    /// The cell's 64x64 uint8 segmentation mask.
    #[arg(long)]
    mask: PathBuf,
    /// x_T: a float32 TIFF of the network's resolution, 64x64x64 for the reference's networks
    /// (z first), e.g. tifffile.imwrite(p, noise.numpy()[0, 0]).
    #[arg(long)]
    initial_noise: PathBuf,
    /// Sampler (ddim-N with eta 0 is deterministic given x_T).
    #[arg(long, default_value = "ddim-50")]
    sampler: SamplerSpec,
    /// Seed of the fresh noise of stochastic samplers (DDPM, DDIM with eta > 0).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Where to write the sample (float32 TIFF).
    #[arg(long)]
    out: PathBuf,
}

fn read(path: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading {}", path.display()))
}

pub fn run(args: Args) -> anyhow::Result<()> {
    if matches!(args.sampler, SamplerSpec::Null) {
        anyhow::bail!("--sampler null does not use the model; give ddim-N, ddpm-N or dpmpp2m-N");
    }
    let name = |p: &Path| p.display().to_string();
    let image = tiff_io::read_image_u8(&read(&args.image)?, &name(&args.image), "image", [SIDE, SIDE])?;
    let mask = tiff_io::read_image_u8(&read(&args.mask)?, &name(&args.mask), "mask", [SIDE, SIDE])?;
    let device = Default::default();
    let predictor = Predictor::<DefaultBackend>::load(&args.checkpoint, &device)
        .with_context(|| format!("loading {}", args.checkpoint.display()))?;
    // x_T lives at the network's resolution: 64^3 for the reference's networks and imported
    // ones; this project's smaller networks sample at theirs (and say so).
    let r = predictor.config().resolution;
    if r != SIDE {
        eprintln!(
            "note: {} ({}) samples at {r}^3: --initial-noise must be {r}x{r}x{r} and the sample is {r}^3, not 64^3 like the reference's",
            args.checkpoint.display(),
            predictor.config().name
        );
    }
    let noise = tiff_io::read_volume_f32(
        &read(&args.initial_noise)?,
        &name(&args.initial_noise),
        "initial noise",
        [r; 3],
    )?;
    let input = CellInput { image: &image.data, mask: &mask.data };
    let x0 = predictor.sample_raw(input, &noise.data, &args.sampler, args.seed, &mut |done, total| {
        eprint!("\rstep {done}/{total}");
    })?;
    eprintln!();
    let bytes = tiff_io::encode_volume_f32(&Volume { dims: [r; 3], data: x0 })?;
    std::fs::write(&args.out, bytes).with_context(|| format!("writing {}", args.out.display()))?;
    println!("wrote {}", args.out.display());
    Ok(())
}
