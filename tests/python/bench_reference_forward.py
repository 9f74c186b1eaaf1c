"""Times the reference network's forward pass: guided-diffusion's UNetModel with dims=3, built as
`make_reference_fixture.py` builds it (same flavours, random weights), on random inputs at 64^3.
One process per measurement, so that its peak memory is that measurement's.

    pip install torch guided-diffusion-sdk
    python3 bench_reference_forward.py --flavour dispr-64 --batch 1 --threads 2 [--iters 1]

Prints one JSON line: flavour, batch, threads, seconds (mean forward time after one warm-up
pass), peak_rss_mib (this process's peak resident memory, torch's libraries included).
A test-time tool: torch is never a dependency of the product.
"""

import argparse
import json
import resource
import sys
import time

import torch as th

from make_reference_fixture import FLAVOURS, build


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--flavour", choices=sorted(FLAVOURS), default="dispr-64")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--iters", type=int, default=1)
    args = p.parse_args()
    if args.batch < 1 or args.iters < 1 or args.threads < 1:
        sys.exit("bench_reference_forward: --batch, --iters and --threads must be at least 1")

    th.set_num_threads(args.threads)
    th.manual_seed(0)
    f = FLAVOURS[args.flavour]
    model = build(f)
    r = f["res"]
    x = th.randn(args.batch, 3, r, r, r)
    t = th.full((args.batch,), 500, dtype=th.long)
    with th.no_grad():
        model(x, t)  # warm-up: allocations, kernel selection
        start = time.perf_counter()
        for _ in range(args.iters):
            model(x, t)
        seconds = (time.perf_counter() - start) / args.iters
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(dict(flavour=args.flavour, batch=args.batch, threads=args.threads,
                          seconds=seconds, peak_rss_mib=peak, torch=th.__version__)))


if __name__ == "__main__":
    main()
