"""`lpm bench vae`: the VAE round trip of one or several checkpoints on held-out footage
(PSNR, head PSNR, PSNR along the stream, colour error, mouth survival, lip sync and identity
against ground truth). A registrar for the open `lpm bench` group."""

from __future__ import annotations

import argparse
from pathlib import Path

from model_core.cli.errors import UsageError


def register_vae(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "vae",
        help="VAE round trip: PSNR, colour, mouth, lip sync and identity vs ground truth",
        description="Stream held-out performer footage through each checkpoint's causal VAE "
        "(encoder and decoder, as serving streams) and compare the round trip with the "
        "original: PSNR (whole frame, head, per second), colour error, how much of the mouth "
        "survives, and LPM-Bench-mini's lip sync and identity with ground truth beside.",
    )
    p.add_argument(
        "--checkpoint",
        action="append",
        metavar="PATH",
        help="checkpoint folder, 'shipped' or 'random'; repeat to compare several on the "
        "same samples (default: shipped)",
    )
    p.add_argument("--samples", type=int, default=40, help="held-out samples (default 40)")
    p.add_argument("--seconds", type=int, default=4, help="seconds per sample (default 4)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--preset", default="tiny", help="preset of the 'random' VAE")
    p.add_argument(
        "--chunk", type=int, default=24, help="frames per stream push after frame 0 (default 24)"
    )
    p.add_argument("--judges", metavar="DIR", help="folder with the trained judges")
    p.add_argument("--threads", type=int, help="torch threads")
    p.add_argument("--json", metavar="OUT.json", help="write the full results here")
    p.add_argument("--md", metavar="OUT.md", help="write the Markdown table here")
    p.add_argument("--png", metavar="OUT.png", help="write the figure here")
    p.set_defaults(func=run_vae, _prog=p.prog)


def vae_settings(args: argparse.Namespace):
    from model_core.bench.vae_quality import RANDOM, SHIPPED, VAEBenchSettings, label_of
    from model_core.cli.perform import load_config

    for name in ("samples", "seconds", "threads"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise UsageError(f"--{name} must be >= 1, got {value}")
    if args.chunk < 4 or args.chunk % 4:
        raise UsageError(f"--chunk must be a positive multiple of 4, got {args.chunk}")
    checkpoints = tuple(args.checkpoint or [SHIPPED])
    for c in checkpoints:
        if c == SHIPPED:
            from model_core.bench.quality import SHIPPED_CHECKPOINT

            if not (SHIPPED_CHECKPOINT / "model.safetensors").exists():
                raise UsageError(
                    f"--checkpoint shipped: no shipped checkpoint in {SHIPPED_CHECKPOINT}"
                )
        elif c != RANDOM:
            load_config(args.preset, c)  # missing / not a checkpoint folder -> usage error
        else:
            load_config(args.preset, None)  # unknown preset -> usage error
    labels = [label_of(c) for c in checkpoints]
    if len(set(labels)) != len(labels):
        raise UsageError(f"--checkpoint: the same checkpoint twice ({', '.join(labels)})")
    if args.judges and not Path(args.judges).is_dir():
        raise UsageError(f"--judges {args.judges}: not a folder")
    return VAEBenchSettings(
        checkpoints=checkpoints,
        samples=args.samples,
        seconds=args.seconds,
        seed=args.seed,
        preset=args.preset,
        chunk=args.chunk,
        threads=args.threads,
        judges_dir=args.judges,
    )


def run_vae(args: argparse.Namespace) -> int:
    from model_core.cli.bench_quality import check_judges, output_paths, write_outputs

    settings = vae_settings(args)
    paths = output_paths(args)
    check_judges(settings.judges_dir)
    from model_core.bench.vae_quality import markdown_table, plot_vae, run_vae_bench

    result = run_vae_bench(settings)
    write_outputs(paths, result, markdown_table(result), plot_vae)
    return 0


REGISTRARS = (register_vae,)
