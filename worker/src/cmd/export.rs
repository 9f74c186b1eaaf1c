//! `dispr-worker export`: a checkpoint of this project as the reference code's state dict.

use std::path::PathBuf;

use dispr_model::DefaultBackend;
use dispr_model::reference::export_checkpoint;

/// Write an eps-objective checkpoint (dispr-64, dispr-64-ref, or one imported) as the state
/// dict of the reference's network (guided-diffusion's UNetModel, dims=3), in safetensors:
///
///     model.load_state_dict(safetensors.torch.load_file("OUT.safetensors"), strict=True)
///
/// loads it into the network built with the checkpoint's settings (printed; the heads are in
/// the file's metadata). tests/python/make_reference_fixture.py check-export checks a round trip.
#[derive(clap::Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct Args {
    /// Checkpoint record (.mpk) with its .json sidecar beside it.
    #[arg(long)]
    checkpoint: PathBuf,
    /// Where to write the state dict (.safetensors).
    #[arg(long)]
    out: PathBuf,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    if args.out.extension().is_none_or(|e| e != "safetensors") {
        anyhow::bail!(
            "--out {}: the state dict is written as safetensors; name the file <name>.safetensors",
            args.out.display()
        );
    }
    let n = export_checkpoint::<DefaultBackend>(&args.checkpoint, &args.out, &Default::default())?;
    println!("wrote {} ({n} tensors)", args.out.display());
    Ok(())
}
