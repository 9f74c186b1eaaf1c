"""Builds random-weight checkpoints of the reference DISPR network (guided-diffusion's UNetModel,
dims=3) and writes what the reference computes from them, so that `dispr-worker import` and this
project's network and samplers can be checked against it without torch.

    pip install torch guided-diffusion-sdk
    python3 make_reference_fixture.py make OUT_DIR [--flavour tiny|tiny-ref|dispr-64|dispr-64-ref]
            [--ddim 5,10] [--threads 2] [--time]
    python3 make_reference_fixture.py check-export OUT_DIR STATE_DICT.safetensors
    python3 make_reference_fixture.py check-sample OUT_DIR X0.tif [--ddim 50]

`make` writes into OUT_DIR (and for the tiny flavour an optimiser state, optsavedmodel000100.pt):
- the state dict, saved with torch.save as the reference training loop saves it
  (`emasavedmodel_0.9999_000100.pt` or `savedmodel000100.pt`). Every weight is drawn non-zero
  (the reference zero-initialises output layers: a zero layer would hide a mapping error);
- `reference.safetensors`: the inputs and the reference's outputs, float32:
  planes [B, 2, R, R] (mask, image x mask in [0, 1]), x_t [B, 1, R, R, R]; out_<case>
  [B, 2, R, R, R] for every forward case (its timesteps in the metadata, one per element);
  ddim_noise and ddim<N>_x0 (DDIM, eta 0, clip_denoised, respaced as guided-diffusion respaces
  `ddimN`, from ddim_noise, conditioned on the first cell); ddpm_t<t>_{mean,logvar,x0} (the
  posterior mean, the learned-range log variance and the clipped x0 of one DDPM step at t of
  the 1000-step schedule, given x_t[0]). The metadata (`fixture`, JSON) names the cases and the
  network's settings, and with --time the reference's forward time;
- at 64^3, `cell0_image.tif`, `cell0_mask.tif` (uint8) and `ddim_noise.tif` (float32, z first):
  the first cell and the DDIM noise, for `dispr-worker sample` (see check-sample).

The tiny flavours use GroupNorm with 4 groups instead of guided-diffusion's hard-coded 32 (the
module's `normalization` is swapped before the network is built): widths of 8 and 16 at 8^3 keep
the committed fixture small and fast, and no weight depends on the number of groups. The full-size flavours
are the reference's, unchanged.

`check-export` loads a state dict written by `dispr-worker export` into the network that OUT_DIR
was made with, with load_state_dict(strict=True), and checks its forward against OUT_DIR's
outputs for the same weights (export the checkpoint imported from OUT_DIR's state dict).

`check-sample` compares what `dispr-worker sample` wrote for the first cell from the fixture's
DDIM noise with the reference's DDIM sample (within 1e-3).
"""

import argparse
import json
import pathlib
import struct
import sys
import time

import numpy as np
import torch as th

from guided_diffusion import nn as gd_nn
from guided_diffusion import unet as gd_unet
from guided_diffusion.script_util import create_gaussian_diffusion

FLAVOURS = {
    # The README's MODEL_FLAGS: 1 res block, 1 head, attention at 16 (ds 4), no scale-shift.
    "dispr-64": dict(res=64, channels=32, mult=(1, 2, 3, 4), blocks=1, attn_ds=(4,), heads=1,
                     scale_shift=False, groups=32, ckpt="savedmodel000100.pt"),
    # The sampling script's model_and_diffusion_defaults(): 2 blocks, 4 heads, attention at 16
    # and 8 (ds 4 and 8), scale-shift norm.
    "dispr-64-ref": dict(res=64, channels=32, mult=(1, 2, 3, 4), blocks=2, attn_ds=(4, 8), heads=4,
                         scale_shift=True, groups=32, ckpt="emasavedmodel_0.9999_000100.pt"),
    # Small stand-ins of each for the committed fixture (see the module's doc).
    "tiny": dict(res=8, channels=8, mult=(1, 2), blocks=1, attn_ds=(2,), heads=1,
                 scale_shift=False, groups=4, ckpt="savedmodel000100.pt"),
    "tiny-ref": dict(res=8, channels=8, mult=(1, 2), blocks=2, attn_ds=(1, 2), heads=2,
                     scale_shift=True, groups=4, ckpt="emasavedmodel_0.9999_000100.pt"),
}


def fail(msg):
    print(f"make_reference_fixture: FAILED: {msg}", file=sys.stderr)
    sys.exit(1)


def build(f):
    if f["groups"] != 32:
        groups = f["groups"]
        gd_unet.normalization = lambda ch: gd_nn.GroupNorm32(groups, ch)
    return gd_unet.UNetModel(
        image_size=f["res"], in_channels=3, model_channels=f["channels"], out_channels=2,
        num_res_blocks=f["blocks"], attention_resolutions=f["attn_ds"], dropout=0.0,
        channel_mult=f["mult"], dims=3, num_heads=f["heads"],
        use_scale_shift_norm=f["scale_shift"],
    ).eval()


def randomise(model, gen):
    """Every weight non-zero, scaled by fan-in so that activations stay of order one."""
    with th.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 1:
                base = 1.0 if name.endswith("weight") else 0.0  # norm gains around 1
                v = base + 0.1 * th.randn(p.shape, generator=gen)
            else:
                fan_in = p[0].numel()
                v = th.randn(p.shape, generator=gen) / np.sqrt(fan_in)
            v[v == 0] = 1e-3
            p.copy_(v)
            assert (p != 0).all(), name


def write_safetensors(path, tensors, metadata):
    """The safetensors format by hand (8-byte header length, JSON header, raw little-endian
    data), so the script needs no more than torch and numpy."""
    header, blobs, offset = {"__metadata__": metadata}, [], 0
    for name, a in tensors.items():
        a = np.ascontiguousarray(a, dtype="<f4")
        b = a.tobytes()
        header[name] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [offset, offset + len(b)]}
        blobs.append(b)
        offset += len(b)
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as out:
        out.write(struct.pack("<Q", len(h)) + h)
        for b in blobs:
            out.write(b)


def read_safetensors(path):
    raw = pathlib.Path(path).read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    data = raw[8 + n:]
    meta = header.pop("__metadata__", {})
    out = {}
    for name, h in header.items():
        if h["dtype"] != "F32":
            fail(f"{path}: {name} is {h['dtype']}, expected F32")
        s, e = h["data_offsets"]
        out[name] = th.from_numpy(np.frombuffer(data[s:e], dtype="<f4").reshape(h["shape"]).copy())
    return out, meta


def network_input(planes, x):
    """[mask, image x mask] repeated over depth, then x_t: the reference's conditioning."""
    d = x.shape[2]
    return th.cat([planes[:, :, None].expand(-1, -1, d, -1, -1), x], dim=1)


def make(args):
    f = FLAVOURS[args.flavour]
    th.set_num_threads(args.threads)
    gen = th.Generator().manual_seed(20261206)
    model = build(f)
    randomise(model, gen)
    out_dir = pathlib.Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    th.save(model.state_dict(), out_dir / f["ckpt"])

    r, b = f["res"], 2
    # Two cells: a disc-like mask with a textured image, and a smaller off-centre one. They are
    # uint8 images, as a dataset's are, so that the first can also be given to `dispr-worker
    # sample` as TIFFs: the planes are exactly [mask/255, (image/255) * (mask/255)] in float32.
    yy, xx = np.mgrid[0:r, 0:r] / r
    masks_u8 = [np.where((yy - 0.5) ** 2 + (xx - 0.5) ** 2 < 0.12, 255, 0).astype(np.uint8),
                np.where((yy - 0.4) ** 2 + (xx - 0.6) ** 2 < 0.05, 255, 0).astype(np.uint8)]
    images_u8 = [np.round(255 * np.clip(v, 0, 1)).astype(np.uint8)
                 for v in (0.5 + 0.4 * np.sin(9 * xx + 5 * yy), 0.3 + 0.6 * np.cos(7 * yy))]
    f255 = np.float32(255)
    planes = th.tensor(np.stack([[m.astype(np.float32) / f255,
                                  (im.astype(np.float32) / f255) * (m.astype(np.float32) / f255)]
                                 for m, im in zip(masks_u8, images_u8)]))
    x_t = th.randn((b, 1, r, r, r), generator=gen)
    tensors = {"planes": planes.numpy(), "x_t": x_t.numpy()}
    # Each case gives one timestep per batch element; a case with fewer runs the first cells.
    cases = {"t0": [0, 0], "t1_999": [1, 999], "t500": [500, 500], "t250_750": [250, 750],
             "b1_t750": [750]}
    if args.cases:
        cases = {k: v for k, v in cases.items() if k in args.cases.split(",")}
    meta = {"flavour": args.flavour, "checkpoint": f["ckpt"], "cases": cases,
            "settings": {k: v for k, v in f.items() if k != "ckpt"}}
    with th.no_grad():
        for name, ts in cases.items():
            n = len(ts)
            out = model(network_input(planes[:n], x_t[:n]), th.tensor(ts))
            tensors[f"out_{name}"] = out.numpy()
        if args.time:
            inp = network_input(planes[:1], x_t[:1])
            model(inp, th.tensor([500]))  # warm-up
            start = time.perf_counter()
            model(inp, th.tensor([500]))
            meta["forward_seconds_batch1"] = time.perf_counter() - start
            meta["threads"] = args.threads
            print(f"{args.flavour}: reference forward, batch 1, {args.threads} threads: "
                  f"{meta['forward_seconds_batch1']:.2f} s")

        cond = planes[:1]
        model_fn = lambda x, t: model(network_input(cond, x), t)
        noise = th.randn((1, 1, r, r, r), generator=gen)
        tensors["ddim_noise"] = noise.numpy()
        if r == 64:
            # The first cell and the DDIM noise as `dispr-worker sample` reads them (check-sample).
            import tifffile
            tifffile.imwrite(out_dir / "cell0_image.tif", images_u8[0])
            tifffile.imwrite(out_dir / "cell0_mask.tif", masks_u8[0])
            tifffile.imwrite(out_dir / "ddim_noise.tif", noise.numpy()[0, 0])
        meta["ddim"] = []
        for steps in [int(s) for s in args.ddim.split(",") if s]:
            diffusion = create_gaussian_diffusion(steps=1000, learn_sigma=True, noise_schedule="linear",
                                                  timestep_respacing=f"ddim{steps}")
            x0 = diffusion.ddim_sample_loop(model_fn, noise.shape, noise=noise.clone(),
                                            clip_denoised=True, eta=0.0, device=th.device("cpu"))
            tensors[f"ddim{steps}_x0"] = x0.numpy()
            meta["ddim"].append(steps)

        full = create_gaussian_diffusion(steps=1000, learn_sigma=True, noise_schedule="linear",
                                         timestep_respacing="")
        meta["ddpm"] = [int(t) for t in args.ddpm.split(",") if t]
        for t in meta["ddpm"]:
            o = full.p_mean_variance(model_fn, x_t[:1], th.tensor([t]), clip_denoised=True)
            tensors[f"ddpm_t{t}_mean"] = o["mean"].numpy()
            tensors[f"ddpm_t{t}_logvar"] = o["log_variance"].numpy()
            tensors[f"ddpm_t{t}_x0"] = o["pred_xstart"].numpy()
    write_safetensors(out_dir / "reference.safetensors", tensors, {"fixture": json.dumps(meta)})
    if args.flavour == "tiny":
        # An optimiser state as the reference training saves it beside the model
        # (optsavedmodel<step>.pt), for the importer's refusal test: AdamW after one step, over
        # one small parameter (the structure matters, not the size).
        p = th.nn.Parameter(th.ones(3))
        opt = th.optim.AdamW([p], lr=1e-4)
        p.sum().backward()
        opt.step()
        th.save(opt.state_dict(), out_dir / "optsavedmodel000100.pt")
    print(f"wrote {out_dir} ({args.flavour}, {sum(p.numel() for p in model.parameters())} parameters)")


def check_export(args):
    _, meta = read_safetensors(pathlib.Path(args.out) / "reference.safetensors")
    meta = json.loads(meta["fixture"])
    ref, _ = read_safetensors(pathlib.Path(args.out) / "reference.safetensors")
    f = FLAVOURS[meta["flavour"]]
    model = build(f)
    state, _ = read_safetensors(args.state_dict)
    model.load_state_dict(state, strict=True)  # raises on a missing, unexpected or misshapen key
    with th.no_grad():
        for name, ts in meta["cases"].items():
            n = len(ts)
            out = model(network_input(ref["planes"][:n], ref["x_t"][:n]), th.tensor(ts))
            want = ref[f"out_{name}"]
            err = (out - want).abs().max().item()
            tol = 1e-4 * want.std().item()
            print(f"{name}: max |exported - reference| = {err:.3g} (tolerance {tol:.3g})")
            if err > tol:
                fail(f"the exported state dict computes another network ({name})")
    print("check-export: loaded with strict=True and matches the reference")


def check_sample(args):
    """Compares `dispr-worker sample --initial-noise OUT_DIR/ddim_noise.tif --image
    OUT_DIR/cell0_image.tif --mask OUT_DIR/cell0_mask.tif --sampler ddim-N` with the reference's
    DDIM-N sample of the same cell from the same noise (the fixture's ddimN_x0)."""
    import tifffile
    ref, meta = read_safetensors(pathlib.Path(args.out) / "reference.safetensors")
    meta = json.loads(meta["fixture"])
    key = f"ddim{args.ddim}_x0"
    if key not in ref:
        fail(f"the fixture has no DDIM-{args.ddim} sample; it has DDIM {meta.get('ddim', [])}")
    want = ref[key][0, 0].numpy()
    got = tifffile.imread(args.sample)
    if got.shape != want.shape or got.dtype != np.float32:
        fail(f"{args.sample}: {got.dtype} {got.shape}, expected float32 {want.shape} (z first)")
    err = float(np.abs(got - want).max())
    print(f"ddim-{args.ddim}: max |dispr-worker sample - reference| = {err:.3g} (tolerance 1e-3)")
    if err > 1e-3:
        fail("dispr-worker sample differs from the reference's sampler")
    print("check-sample: dispr-worker sample matches the reference")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("make")
    m.add_argument("out")
    m.add_argument("--flavour", choices=sorted(FLAVOURS), default="tiny")
    m.add_argument("--ddim", default="5,10", help="DDIM step counts, comma-separated ('' for none)")
    m.add_argument("--cases", default="", help="forward cases to keep, comma-separated (t0,t1_999,t500,t250_750; default all)")
    m.add_argument("--ddpm", default="999,500,1", help="DDPM steps t to check, comma-separated ('' for none)")
    m.add_argument("--threads", type=int, default=2)
    m.add_argument("--time", action="store_true", help="time one batch-1 forward pass")
    c = sub.add_parser("check-export")
    c.add_argument("out")
    c.add_argument("state_dict")
    cs = sub.add_parser("check-sample")
    cs.add_argument("out")
    cs.add_argument("sample", help="the TIFF dispr-worker sample wrote")
    cs.add_argument("--ddim", type=int, default=50, help="the DDIM step count it sampled with")
    args = p.parse_args()
    {"make": make, "check-export": check_export, "check-sample": check_sample}[args.cmd](args)


if __name__ == "__main__":
    main()
